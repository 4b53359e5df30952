//! Classification: from a frame to what becomes of it, on the general path (the express
//! lane classifies its own packets, [`crate::express`]): the checks in the order the
//! pipeline's documentation gives, the VIP and the flow key of a packet for a VIP.

use super::*;

/// What classifying an IP packet comes to: a step, or why the packet is dropped.
type Classified = Result<Step, DropReason>;

impl Pipeline {
    /// Classifies the frame in `buf`, in the chunk's `slot`: a verdict, or (for a packet to
    /// a VIP) `Step::Pending` with the packet written into the pending record of `slot`.
    #[inline(never)]
    pub(super) fn classify_general(&mut self, snap: &Snapshot, buf: &mut PacketBuf, slot: usize) -> Step {
        let frame = buf.as_slice();
        let l2 = match vlan::parse_l2(frame) {
            Ok(l2) => l2,
            Err(e) => return Step::Done(Verdict::Drop(DropReason::from_wire(e))),
        };
        let iface = snap.interface();
        let dst = l2.ethernet.dst_addr;
        let ipv6_multicast = dst.0[0] == 0x33 && dst.0[1] == 0x33;
        if dst != iface.mac && !dst.is_broadcast() && !ipv6_multicast {
            return Step::Done(Verdict::Drop(DropReason::OtherMac));
        }
        let l3 = l2.payload_offset;
        match l2.ethertype {
            EtherType::Arp => Step::Done(self.answer_arp(snap, buf, l3)),
            EtherType::Ipv4 => {
                self.classify_v4(snap, buf, l3, slot).unwrap_or_else(|r| Step::Done(Verdict::Drop(r)))
            }
            EtherType::Ipv6 => {
                self.classify_v6(snap, buf, l3, slot).unwrap_or_else(|r| Step::Done(Verdict::Drop(r)))
            }
            _ => Step::Done(Verdict::Drop(DropReason::NotIp)),
        }
    }

    fn classify_v4(&mut self, snap: &Snapshot, buf: &mut PacketBuf, l3: usize, slot: usize) -> Classified {
        let frame = buf.as_slice();
        let ip = ipv4::Packet::new_checked(&frame[l3..]).map_err(DropReason::from_wire)?;
        let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
        let dst_ip = IpAddr::V4(dst);
        if ip.ttl() == 0 {
            return Err(DropReason::TtlExpired);
        }
        let fragment = ip.is_fragment();
        let first_fragment = ip.frag_offset() == 0;
        let payload = ip.payload();
        let ip_len = usize::from(ip.total_len());
        let tos = ip.dscp_ecn();
        let dont_frag = ip.dont_frag();

        if protocol == IpProtocol::Icmp && first_fragment && !fragment {
            let Ok(icmp) = icmpv4::Packet::new_checked(payload) else {
                return Err(DropReason::Malformed);
            };
            let is_ours = snap.is_local(dst_ip) || snap.is_vip_addr(dst_ip);
            match icmp.msg_type() {
                icmpv4::Message::EchoRequest if is_ours => {
                    if !ip.verify_checksum() || !icmp.verify_checksum() {
                        return Err(DropReason::Malformed);
                    }
                    return Ok(Step::Done(self.answer_echo_v4(snap.interface().mac, buf, l3, ip_len)));
                }
                icmpv4::Message::DstUnreachable | icmpv4::Message::TimeExceeded
                    if snap.is_vip_addr(dst_ip) =>
                {
                    // About a packet a backend sent from the VIP to a client: the quoted
                    // packet's source is the VIP, its destination the client.
                    let Ok(q) = icmpv4::quoted(icmp.data()) else {
                        return Err(DropReason::Malformed);
                    };
                    let frame =
                        Frame { l3, ip_len, v6: false, tos, dont_frag, fragment: false, icmp_error: true };
                    return Ok(self.icmp_error_step(snap, &q, frame, slot));
                }
                _ => {}
            }
        }
        let frame = Frame { l3, ip_len, v6: false, tos, dont_frag, fragment, icmp_error: false };
        self.transport_step(snap, IpAddr::V4(src), dst_ip, protocol, payload, frame, slot)
    }

    fn classify_v6(&mut self, snap: &Snapshot, buf: &mut PacketBuf, l3: usize, slot: usize) -> Classified {
        let frame = buf.as_slice();
        let ip = ipv6::Packet::new_checked(&frame[l3..]).map_err(DropReason::from_wire)?;
        let upper = ip.upper_layer().map_err(DropReason::from_wire)?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let dst_ip = IpAddr::V6(dst);
        let ip_len = ip.total_len();
        let tos = ip.traffic_class();
        let fragment = upper.fragment.is_some_and(|f| f.is_fragment());
        let first_fragment = upper.fragment.is_none_or(|f| f.offset == 0);
        let l4 = &frame[l3 + upper.offset..l3 + ip_len];
        let protocol = upper.protocol;

        if protocol == IpProtocol::Icmpv6 && !fragment {
            let Ok(icmp) = icmpv6::Packet::new_checked(l4) else {
                return Err(DropReason::Malformed);
            };
            let checksum_ok = icmp.verify_checksum(src, dst);
            match icmp.msg_type() {
                icmpv6::Message::NeighborSolicit => {
                    if !checksum_ok || ip.hop_limit() != 255 {
                        return Err(DropReason::Malformed);
                    }
                    return Ok(Step::Done(self.answer_solicit(snap, buf, l3, upper.offset)));
                }
                icmpv6::Message::EchoRequest if snap.is_local(dst_ip) || snap.is_vip_addr(dst_ip) => {
                    if !checksum_ok {
                        return Err(DropReason::Malformed);
                    }
                    return Ok(Step::Done(self.answer_echo_v6(
                        snap.interface().mac,
                        buf,
                        l3,
                        ip_len,
                        upper.offset,
                    )));
                }
                icmpv6::Message::DstUnreachable
                | icmpv6::Message::PacketTooBig
                | icmpv6::Message::TimeExceeded
                | icmpv6::Message::ParamProblem
                    if snap.is_vip_addr(dst_ip) =>
                {
                    let Ok(q) = icmpv6::quoted(icmp.data()) else {
                        return Err(DropReason::Malformed);
                    };
                    let frame = Frame {
                        l3,
                        ip_len,
                        v6: true,
                        tos,
                        dont_frag: true,
                        fragment: false,
                        icmp_error: true,
                    };
                    return Ok(self.icmp_error_step(snap, &q, frame, slot));
                }
                icmpv6::Message::RouterSolicit
                | icmpv6::Message::RouterAdvert
                | icmpv6::Message::NeighborAdvert
                | icmpv6::Message::Redirect => return Err(DropReason::Unsupported),
                _ => {}
            }
        }
        if ip.hop_limit() == 0 {
            return Err(DropReason::TtlExpired);
        }
        let frame = Frame { l3, ip_len, v6: true, tos, dont_frag: true, fragment, icmp_error: false };
        let l4 = if first_fragment { l4 } else { &[] };
        self.transport_step(snap, IpAddr::V6(src), dst_ip, protocol, l4, frame, slot)
    }

    /// A packet from `src` to `dst` over `protocol` (its transport header at the start of
    /// `l4`): its ports and flow key, then its VIP.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn transport_step(
        &mut self,
        snap: &Snapshot,
        src: IpAddr,
        dst: IpAddr,
        protocol: IpProtocol,
        l4: &[u8],
        frame: Frame,
        slot: usize,
    ) -> Classified {
        let (sport, dport, flags) = ports(protocol, l4, frame.fragment)?;
        let key = FlowKey::new(src, dst, protocol.into(), sport, dport);
        Ok(self.vip_step(snap, dst, protocol, dport, key, frame, flags, slot))
    }

    /// An ICMP error about a packet that a backend sent from a VIP to a client: the quoted
    /// packet's source is the VIP, its destination the client, so the flow it belongs to is
    /// the quoted one turned around.
    fn icmp_error_step(&mut self, snap: &Snapshot, q: &wire::ip::Quoted, frame: Frame, slot: usize) -> Step {
        let (sport, dport) = q.ports.unwrap_or((0, 0));
        let key = FlowKey::new(q.dst_addr, q.src_addr, q.protocol.into(), dport, sport);
        self.vip_step(snap, q.src_addr, q.protocol, sport, key, frame, None, slot)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn vip_step(
        &mut self,
        snap: &Snapshot,
        vip_addr: IpAddr,
        protocol: IpProtocol,
        vip_port: u16,
        key: FlowKey,
        frame: Frame,
        tcp_flags: Option<tcp::TcpFlags>,
        slot: usize,
    ) -> Step {
        let lane = snap.lane();
        let found = match (frame.fragment, vip_addr, protocol) {
            (true, ..) => snap.find_fragment_vip(vip_addr, protocol).map(|(i, _)| i),
            // The oracle asks the snapshot itself (see `PipelineOptions::oracle`).
            (false, ..) if self.oracle => snap.find_vip(vip_addr, protocol, vip_port).map(|(i, _)| i),
            // TCP and UDP: the lane's tables, which answer as `find_vip` does in one or two
            // probes.
            (false, IpAddr::V4(a), IpProtocol::Tcp | IpProtocol::Udp) => {
                lane.vips.find(u32::from(a), protocol == IpProtocol::Udp, vip_port)
            }
            (false, IpAddr::V6(a), IpProtocol::Tcp | IpProtocol::Udp) => {
                lane.vips6.find(u128::from(a), protocol == IpProtocol::Udp, vip_port)
            }
            (false, ..) => snap.find_vip(vip_addr, protocol, vip_port).map(|(i, _)| i),
        };
        let Some(vip) = found else {
            // Our own addresses take nothing but what was answered above.
            let reason = if snap.is_local(vip_addr) {
                DropReason::NotVip
            } else if snap.in_subnet(vip_addr) || snap.is_vip_addr(vip_addr) {
                DropReason::NoVip
            } else {
                DropReason::NotVip
            };
            return Step::Done(Verdict::Drop(reason));
        };
        let closing =
            tcp_flags.is_some_and(|f| f.contains(tcp::TcpFlags::FIN) || f.contains(tcp::TcpFlags::RST));
        let class = match protocol {
            IpProtocol::Tcp if closing => TimeoutClass::Closing,
            IpProtocol::Tcp => TimeoutClass::Tcp,
            _ => TimeoutClass::Udp,
        };
        let (hash, check) = self.flows.hash_check(&key);
        self.pending[slot % MAX_BURST] = Some(ToVip {
            vip,
            hash,
            check,
            key,
            l3: frame.l3,
            ip_len: frame.ip_len,
            v6: frame.v6,
            class,
            closing,
            dont_frag: frame.dont_frag,
            tos: frame.tos,
            fragment: frame.fragment,
            icmp_error: frame.icmp_error,
        });
        Step::Pending
    }
}

/// Where the IP packet sits in the frame, and what the outer header copies from it.
#[derive(Debug, Clone, Copy)]
struct Frame {
    l3: usize,
    ip_len: usize,
    v6: bool,
    tos: u8,
    dont_frag: bool,
    fragment: bool,
    icmp_error: bool,
}

/// Source and destination ports (0 for fragments and portless protocols) and TCP flags.
fn ports(
    protocol: IpProtocol,
    l4: &[u8],
    fragment: bool,
) -> Result<(u16, u16, Option<tcp::TcpFlags>), DropReason> {
    if fragment {
        return Ok((0, 0, None));
    }
    match protocol {
        IpProtocol::Tcp => {
            let t = tcp::Packet::new_checked(l4).map_err(DropReason::from_wire)?;
            Ok((t.src_port(), t.dst_port(), Some(t.flags())))
        }
        IpProtocol::Udp => {
            let u = udp::Packet::new_checked(l4).map_err(DropReason::from_wire)?;
            Ok((u.src_port(), u.dst_port(), None))
        }
        _ => Ok((0, 0, None)),
    }
}
