//! Forwarding on the general path: the flow, the backend, the tunnel, and outer
//! fragments where the tunnel is too big for the MTU and the packet may be fragmented.

use super::*;

impl Pipeline {
    /// Forwards packet `at` of the burst, which classification left pending (in its
    /// chunk's slot, `at % MAX_BURST`).
    pub(super) fn forward(&mut self, snap: &Snapshot, now: u64, buf: &mut PacketBuf, at: usize) -> Verdict {
        let Some(p) = self.pending[at % MAX_BURST] else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let p = &p;
        let vip = &snap.vips()[p.vip as usize];
        let pool = &snap.pools()[vip.pool as usize];
        let timeouts = *snap.idle_timeouts();
        let class = if p.icmp_error { None } else { Some(p.class) };
        let mut backend: Option<(u16, &PoolBackend)> = None;
        let found = self.flows.lookup_absent(p.check, p.hash, now, &timeouts, class);
        if let Ok(number) = found {
            let known = if self.oracle {
                // The pool's own index of numbers (see `PipelineOptions::oracle`).
                pool.by_number(number)
            } else {
                let lane = snap.lane();
                lane.vip.get(p.vip as usize).and_then(|v| lane.outer_of_number(v, number)).and_then(|o| {
                    let i = usize::from(o.index);
                    let b = pool.backends().get(i)?;
                    Some((i as u16, b))
                })
            };
            match known {
                Some(b) if b.1.state != BackendState::Down => {
                    self.counters.flow_hits += 1;
                    backend = Some(b);
                }
                _ => self.counters.flow_moved += 1,
            }
        }
        // The Maglev flow hash: needed for a new flow, and for GUE's source port and the
        // outer IPv6 flow label.
        let hash_of = |k: &FlowKey| {
            maglev::flow_hash(
                snap.hash_seed(),
                k.src_addr(),
                k.dst_addr(),
                k.protocol(),
                k.src_port(),
                k.dst_port(),
            )
        };
        let needs_hash = backend.is_none_or(|(_, b)| vip.encap == Encap::Gue || b.id.addr.is_ipv6());
        let flow_hash = if needs_hash { hash_of(&p.key) } else { 0 };
        let (index, backend) = match backend {
            Some((i, b)) => (i, *b),
            None => {
                self.counters.flow_misses += 1;
                let Some((i, b)) = pool.pick(flow_hash) else {
                    return Verdict::Drop(DropReason::NoBackend);
                };
                // An ICMP error opens no flow; a RST or FIN of an unknown flow needs none.
                if !p.icmp_error && !p.closing {
                    let flow = NewFlow { check: p.check, hash: p.hash, backend: b.number, class: p.class };
                    self.remember(found == Err(Absent(true)), flow, now, &timeouts);
                    let key = p.key;
                    crate::announce::announce(
                        self.announce.as_deref(),
                        &mut self.counters,
                        || Some(key),
                        b.number,
                    );
                }
                (i, *b)
            }
        };
        if p.fragment {
            self.counters.fragments += 1;
        }
        if p.icmp_error {
            self.counters.icmp_errors_forwarded += 1;
        }
        let verdict = self.encapsulate(snap, now, buf, p, vip, &backend, flow_hash, at);
        if verdict == Verdict::Forward {
            self.count_traffic(vip.counter_base as usize + usize::from(index), buf.len(), at);
        }
        verdict
    }

    /// Remembers a new flow; counts `flow_table_full` when it took a live flow's place.
    #[inline(always)]
    pub(super) fn remember(&mut self, absent: bool, flow: NewFlow, now: u64, timeouts: &IdleTimeouts) {
        if self.flows.remember(absent, flow, now, timeouts) == Inserted::Evicted {
            self.counters.flow_table_full += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encapsulate(
        &mut self,
        snap: &Snapshot,
        now: u64,
        buf: &mut PacketBuf,
        p: &ToVip,
        vip: &Vip,
        backend: &PoolBackend,
        flow_hash: u32,
        at: usize,
    ) -> Verdict {
        let tunnel = snap.tunnel();
        let iface = snap.interface();
        let outer_v6 = backend.id.addr.is_ipv6();
        let ip_header = if outer_v6 { ipv6::HEADER_LEN } else { ipv4::HEADER_LEN };
        let extra = match vip.encap {
            Encap::Ipip => 0,
            Encap::Gue => udp::HEADER_LEN + gue::BASE_HEADER_LEN,
            Encap::Gre => gre::BASE_HEADER_LEN,
        };
        let overhead = ip_header + extra;
        let mtu = usize::from(tunnel.mtu);
        // IPv4 without DF in an IPv4 tunnel: the outer packet is fragmented below.
        if p.ip_len + overhead > mtu && (p.dont_frag || outer_v6) {
            return self.too_big(snap, now, buf, p, mtu.saturating_sub(overhead));
        }
        // Everything that could refuse the packet is checked before the buffer changes: a
        // dropped packet stays as received.
        let has_source = match backend.id.addr {
            IpAddr::V4(_) => tunnel.source_v4.is_some(),
            IpAddr::V6(_) => tunnel.source_v6.is_some(),
        };
        if !has_source || buf.headroom() + p.l3 < ethernet::HEADER_LEN + overhead {
            return Verdict::Drop(DropReason::Unsupported);
        }
        if !outer_v6 && p.ip_len + overhead > mtu {
            let chunk = (mtu - ipv4::HEADER_LEN) & !7;
            if (extra + p.ip_len).div_ceil(chunk) - 1 > self.spare.len() {
                return Verdict::Drop(DropReason::TooBig);
            }
        }
        // The inner packet as received, without L2 header and Ethernet padding.
        buf.truncate(p.l3 + p.ip_len);
        buf.adj(p.l3);
        let inner_len = p.ip_len;
        let inner_proto = if p.v6 { IpProtocol::Ipv6 } else { IpProtocol::Ipv4 };
        let outer_proto = match vip.encap {
            Encap::Ipip => inner_proto,
            Encap::Gue => IpProtocol::Udp,
            Encap::Gre => IpProtocol::Gre,
        };
        let Some(out) = buf.prepend(ethernet::HEADER_LEN + overhead) else {
            return Verdict::Drop(DropReason::Unsupported);
        };
        let (l2_part, after_l2) = out.split_at_mut(ethernet::HEADER_LEN);
        let (ip_part, rest) = after_l2.split_at_mut(ip_header);
        let outer_src: IpAddr;
        match backend.id.addr {
            IpAddr::V4(dst) => {
                let Some(src) = tunnel.source_v4 else {
                    return Verdict::Drop(DropReason::Unsupported);
                };
                outer_src = IpAddr::V4(src);
                self.ip_ident = self.ip_ident.wrapping_add(1);
                let outer = OuterV4 {
                    src: u32::from(src),
                    dst: u32::from(dst),
                    protocol: outer_proto.into(),
                    total_len: (ipv4::HEADER_LEN + extra + inner_len) as u16,
                    tos: p.tos,
                    ident: self.ip_ident,
                    dont_frag: p.dont_frag,
                };
                write_outer_v4(l2_part, ip_part, iface.mac, iface.next_hop_mac, &outer);
            }
            IpAddr::V6(dst) => {
                let Some(src) = tunnel.source_v6 else {
                    return Verdict::Drop(DropReason::Unsupported);
                };
                outer_src = IpAddr::V6(src);
                ethernet::Repr {
                    src_addr: iface.mac,
                    dst_addr: iface.next_hop_mac,
                    ethertype: EtherType::Ipv6,
                }
                .emit(&mut ethernet::Frame::new_unchecked(l2_part));
                ipv6::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: outer_proto,
                    payload_len: extra + inner_len,
                    hop_limit: 64,
                    traffic_class: p.tos,
                    flow_label: flow_hash & 0x000f_ffff,
                }
                .emit(&mut ipv6::Packet::new_unchecked(ip_part));
            }
        }
        match vip.encap {
            Encap::Ipip => {}
            Encap::Gre => gre::Repr {
                protocol: if p.v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
                checksum: false,
                key: None,
                sequence: None,
            }
            .emit(&mut rest[..gre::BASE_HEADER_LEN]),
            // IPv4: no UDP checksum (RFC 8086 §4.1.1 allows it); IPv6: a full one, which
            // every receiver accepts (zero checksums there need RFC 6935 opt-in).
            Encap::Gue => write_gue(
                rest,
                inner_proto,
                flow_hash,
                tunnel.gue_port,
                inner_len,
                outer_v6.then_some((outer_src, backend.id.addr)),
            ),
        }
        if !outer_v6 && p.ip_len + overhead > mtu {
            return self.fragment_outer(buf, mtu, at);
        }
        Verdict::Forward
    }

    /// Splits the outer IPv4 packet in `buf` (packet `at` of the burst) into fragments of
    /// at most `mtu` bytes: the first stays in `buf`, the others go to the extra queue.
    fn fragment_outer(&mut self, buf: &mut PacketBuf, mtu: usize, at: usize) -> Verdict {
        const L2: usize = ethernet::HEADER_LEN;
        const H: usize = ipv4::HEADER_LEN;
        let total = buf.len() - L2;
        let chunk = (mtu - H) & !7;
        let pieces = (total - H).div_ceil(chunk);
        if pieces - 1 > self.spare.len() {
            return Verdict::Drop(DropReason::TooBig);
        }
        let frame = buf.as_slice();
        let mut offset = chunk;
        while offset < total - H {
            let len = chunk.min(total - H - offset);
            let Some(mut piece) = self.spare.pop() else {
                return Verdict::Drop(DropReason::TooBig);
            };
            piece.clear();
            let Some(out) = piece.append(L2 + H + len) else {
                self.spare.push(piece);
                return Verdict::Drop(DropReason::TooBig);
            };
            out[..L2 + H].copy_from_slice(&frame[..L2 + H]);
            out[L2 + H..].copy_from_slice(&frame[L2 + H + offset..L2 + H + offset + len]);
            let mut ip = ipv4::Packet::new_unchecked(&mut out[L2..]);
            ip.set_total_len((H + len) as u16);
            ip.set_flags_and_offset(false, offset + len < total - H, offset as u16);
            ip.fill_checksum();
            self.extra.push((at, piece));
            self.counters.outer_fragments += 1;
            offset += len;
        }
        buf.truncate(L2 + H + chunk);
        let mut ip = ipv4::Packet::new_unchecked(&mut buf.as_mut_slice()[L2..]);
        ip.set_total_len((H + chunk) as u16);
        ip.set_flags_and_offset(false, true, 0);
        ip.fill_checksum();
        self.counters.outer_fragments += 1;
        Verdict::Forward
    }
}
