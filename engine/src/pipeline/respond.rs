//! The answers the pipeline sends itself: ARP replies, neighbour advertisements, echo
//! replies, and ICMP "fragmentation needed" / "packet too big" (rate limited).

use super::*;

/// A token bucket for the ICMP messages a worker generates.
#[derive(Debug, Clone)]
pub(super) struct RateLimit {
    pub(super) per_second: u64,
    pub(super) burst: u64,
    pub(super) tokens: u64,
    pub(super) last: u64,
}

impl RateLimit {
    fn allow(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last);
        let refill = elapsed.saturating_mul(self.per_second) / 1_000_000_000;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

impl Pipeline {
    /// Turns `buf` into an ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6)
    /// to the client, quoting its packet, from the VIP.
    ///
    /// The packet counts as dropped (`too_big`) whether or not the error is sent; the error
    /// is counted in `icmp_too_big_sent`, not in `replied`.
    pub(super) fn too_big(
        &mut self,
        snap: &Snapshot,
        now: u64,
        buf: &mut PacketBuf,
        p: &ToVip,
        mtu: usize,
    ) -> Verdict {
        // Never an ICMP error about an ICMP error (RFC 1122 §3.2.2).
        if p.icmp_error {
            return Verdict::Drop(DropReason::TooBig);
        }
        if !self.icmp.allow(now) {
            self.counters.icmp_rate_limited += 1;
            return Verdict::Drop(DropReason::TooBig);
        }
        let iface = snap.interface();
        let frame = buf.as_slice();
        let router = EthernetAddress::from_bytes(&frame[6..12]);
        let client = p.key.src_addr();
        let vip = p.key.dst_addr();
        let v6 = p.v6;
        // The quote: as much of the packet as keeps the error within 576 bytes (IPv4,
        // RFC 1812 §4.3.2.3) or 1280 bytes (IPv6, RFC 4443 §2.4).
        let (ip_header, icmp_header, limit) = if v6 {
            (ipv6::HEADER_LEN, icmpv6::HEADER_LEN, 1280)
        } else {
            (ipv4::HEADER_LEN, icmpv4::HEADER_LEN, 576)
        };
        // Checked before the buffer changes: a dropped packet stays as received.
        if buf.headroom() + p.l3 < ethernet::HEADER_LEN + ip_header + icmp_header || v6 != vip.is_ipv6() {
            return Verdict::Drop(DropReason::TooBig);
        }
        buf.truncate(p.l3 + p.ip_len);
        buf.adj(p.l3);
        buf.truncate(limit - ip_header - icmp_header);
        let quoted_len = buf.len();
        let Some(out) = buf.prepend(ethernet::HEADER_LEN + ip_header + icmp_header) else {
            return Verdict::Drop(DropReason::TooBig);
        };
        ethernet::Repr {
            src_addr: iface.mac,
            dst_addr: router,
            ethertype: if v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
        }
        .emit(&mut ethernet::Frame::new_unchecked(&mut out[..ethernet::HEADER_LEN]));
        let (ip_part, icmp_part) = out[ethernet::HEADER_LEN..].split_at_mut(ip_header);
        match (vip, client) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                self.ip_ident = self.ip_ident.wrapping_add(1);
                ipv4::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    protocol: IpProtocol::Icmp,
                    payload_len: icmp_header + quoted_len,
                    ttl: 64,
                    dscp_ecn: 0,
                    ident: self.ip_ident,
                    dont_frag: false,
                    more_frags: false,
                    frag_offset: 0,
                }
                .emit(&mut ipv4::Packet::new_unchecked(ip_part));
                let mut icmp = icmpv4::Packet::new_unchecked(icmp_part);
                icmp.set_msg_type(icmpv4::Message::DstUnreachable);
                icmp.set_msg_code(icmpv4::CODE_FRAG_NEEDED);
                icmp.set_rest_of_header(mtu.min(0xffff) as u32);
                icmp.fill_checksum();
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                ipv6::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Icmpv6,
                    payload_len: icmp_header + quoted_len,
                    hop_limit: 64,
                    traffic_class: 0,
                    flow_label: 0,
                }
                .emit(&mut ipv6::Packet::new_unchecked(ip_part));
                let mut icmp = icmpv6::Packet::new_unchecked(icmp_part);
                icmp.set_msg_type(icmpv6::Message::PacketTooBig);
                icmp.set_msg_code(0);
                icmp.set_rest_of_header(mtu as u32);
                icmp.fill_checksum(src, dst);
            }
            _ => return Verdict::Drop(DropReason::TooBig),
        }
        self.counters.icmp_too_big_sent += 1;
        Verdict::TooBigReply
    }

    pub(super) fn answer_arp(&mut self, snap: &Snapshot, buf: &mut PacketBuf, l3: usize) -> Verdict {
        let frame = buf.as_mut_slice();
        let packet = match arp::Packet::new_checked(&frame[l3..]) {
            Ok(p) => p,
            Err(e) => return Verdict::Drop(DropReason::from_wire(e)),
        };
        let req = match arp::Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return Verdict::Drop(DropReason::from_wire(e)),
        };
        if req.operation != arp::Operation::Request {
            return Verdict::Drop(DropReason::Unsupported);
        }
        if !snap.is_local(IpAddr::V4(req.target_protocol_addr)) {
            return Verdict::Drop(DropReason::NotVip);
        }
        let mac = snap.interface().mac;
        let reply = arp::Repr {
            operation: arp::Operation::Reply,
            source_hardware_addr: mac,
            source_protocol_addr: req.target_protocol_addr,
            target_hardware_addr: req.source_hardware_addr,
            target_protocol_addr: req.source_protocol_addr,
        };
        reply.emit(&mut arp::Packet::new_unchecked(&mut frame[l3..]));
        let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(req.source_hardware_addr);
        eth.set_src_addr(mac);
        buf.truncate(l3 + arp::ETHERNET_IPV4_LEN);
        self.counters.arp_replies += 1;
        Verdict::Reply
    }

    pub(super) fn answer_echo_v4(
        &mut self,
        mac: EthernetAddress,
        buf: &mut PacketBuf,
        l3: usize,
        ip_len: usize,
    ) -> Verdict {
        let packet = turn_around(buf, mac, l3, ip_len);
        let mut ip = ipv4::Packet::new_unchecked(&mut *packet);
        ip.swap_addrs();
        ip.set_ttl(64);
        ip.fill_checksum();
        let hl = ip.header_len();
        let mut icmp = icmpv4::Packet::new_unchecked(&mut packet[hl..]);
        // Type 8 → 0 in the first word: RFC 1624 incremental update.
        let old = u16::from_be_bytes([8, icmp.msg_code()]);
        let new = u16::from_be_bytes([0, icmp.msg_code()]);
        icmp.set_msg_type(icmpv4::Message::EchoReply);
        let ck = checksum::update(icmp.checksum(), old, new);
        icmp.set_checksum(ck);
        self.counters.echo_replies += 1;
        Verdict::Reply
    }

    pub(super) fn answer_echo_v6(
        &mut self,
        mac: EthernetAddress,
        buf: &mut PacketBuf,
        l3: usize,
        ip_len: usize,
        l4_offset: usize,
    ) -> Verdict {
        // Pings to a multicast group are not answered (and the packet stays as received).
        if ipv6::Packet::new_unchecked(&buf.as_slice()[l3..]).dst_addr().is_multicast() {
            return Verdict::Drop(DropReason::Unsupported);
        }
        let packet = turn_around(buf, mac, l3, ip_len);
        let mut ip = ipv6::Packet::new_unchecked(&mut *packet);
        ip.swap_addrs();
        ip.set_hop_limit(64);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut icmp = icmpv6::Packet::new_unchecked(&mut packet[l4_offset..]);
        icmp.set_msg_type(icmpv6::Message::EchoReply);
        icmp.fill_checksum(src, dst);
        self.counters.echo_replies += 1;
        Verdict::Reply
    }

    pub(super) fn answer_solicit(
        &mut self,
        snap: &Snapshot,
        buf: &mut PacketBuf,
        l3: usize,
        l4_offset: usize,
    ) -> Verdict {
        let frame = buf.as_slice();
        let ip = ipv6::Packet::new_unchecked(&frame[l3..]);
        let soliciter = ip.src_addr();
        let Ok(icmp) = icmpv6::Packet::new_checked(&frame[l3 + l4_offset..l3 + ip.total_len()]) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let Ok(icmpv6::Repr::NeighborSolicit { target_addr, source_lladdr }) = icmpv6::Repr::parse(&icmp)
        else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if !snap.is_local(IpAddr::V6(target_addr)) {
            return Verdict::Drop(DropReason::NotVip);
        }
        let mac = snap.interface().mac;
        let from_unspecified = soliciter.is_unspecified();
        // RFC 4861 §7.2.4: to the soliciter, or to all nodes when it has no address yet.
        let (dst_ip, dst_mac) = if from_unspecified {
            (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]))
        } else {
            (soliciter, source_lladdr.unwrap_or_else(|| EthernetAddress::from_bytes(&frame[6..12])))
        };
        let flags = if from_unspecified {
            icmpv6::NdFlags::OVERRIDE
        } else {
            icmpv6::NdFlags::SOLICITED | icmpv6::NdFlags::OVERRIDE
        };
        let advert = icmpv6::Repr::NeighborAdvert { flags, target_addr, target_lladdr: Some(mac) };
        let len = advert.buffer_len();
        // The answer has no extension headers: it goes right after the fixed header.
        let need = l3 + ipv6::HEADER_LEN + len;
        if buf.len() < need && buf.tailroom() < need - buf.len() {
            return Verdict::Drop(DropReason::Unsupported);
        }
        buf.truncate(need);
        if buf.len() < need {
            let _ = buf.append(need - buf.len());
        }
        let frame = buf.as_mut_slice();
        let mut eth = ethernet::Frame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(mac);
        ipv6::Repr {
            src_addr: target_addr,
            dst_addr: dst_ip,
            next_header: IpProtocol::Icmpv6,
            payload_len: len,
            hop_limit: 255,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut frame[l3..]));
        let start = l3 + ipv6::HEADER_LEN;
        advert.emit(&mut icmpv6::Packet::new_unchecked(&mut frame[start..start + len]), target_addr, dst_ip);
        self.counters.nd_replies += 1;
        Verdict::Reply
    }
}

/// Addresses an answer back to the frame's sender, from us.
fn reply_macs(frame: &mut [u8], mac: EthernetAddress) {
    let mut eth = ethernet::Frame::new_unchecked(frame);
    let sender = eth.src_addr();
    eth.set_dst_addr(sender);
    eth.set_src_addr(mac);
}

/// Cuts the frame to its IP packet (at `l3`, `ip_len` bytes long) and addresses it back to
/// its sender from `mac`; the IP packet, to turn around too.
fn turn_around(buf: &mut PacketBuf, mac: EthernetAddress, l3: usize, ip_len: usize) -> &mut [u8] {
    buf.truncate(l3 + ip_len);
    let frame = buf.as_mut_slice();
    reply_macs(frame, mac);
    &mut frame[l3..]
}
