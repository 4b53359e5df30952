//! Whole frames from their headers' `Repr`s: Ethernet, IPv4 or IPv6, TCP or UDP, and a
//! payload. What tests, the benchmarks and the bench command send; the writers that must
//! be fast (the synth port, the bench command's per-packet writer) keep templates of their
//! own and are checked against this.

use core::net::IpAddr;

use super::{ethernet, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress, IpProtocol};

/// The transport header of a [`FrameRepr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment.
    Tcp(tcp::Repr),
    /// A UDP datagram from `src_port` to `dst_port`.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
}

impl Transport {
    /// A TCP segment with `flags`, sequence and acknowledgement numbers 0, window 0.
    pub fn tcp(src_port: u16, dst_port: u16, flags: tcp::TcpFlags) -> Transport {
        Transport::Tcp(tcp::Repr {
            src_port,
            dst_port,
            seq_number: 0,
            ack_number: 0,
            flags,
            window_len: 0,
            urgent_at: 0,
        })
    }

    fn header_len(&self) -> usize {
        match self {
            Transport::Tcp(_) => tcp::HEADER_LEN,
            Transport::Udp { .. } => udp::HEADER_LEN,
        }
    }

    fn protocol(&self) -> IpProtocol {
        match self {
            Transport::Tcp(_) => IpProtocol::Tcp,
            Transport::Udp { .. } => IpProtocol::Udp,
        }
    }
}

/// A frame: who sends it to whom at each layer, and its payload. The IP header has no
/// options (IPv4: identification `ident`, DF as `dont_frag`; IPv6: flow label 0), and a
/// frame shorter than Ethernet's minimum of 60 bytes (without FCS) is padded with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    /// The sender's MAC.
    pub src_mac: EthernetAddress,
    /// The receiver's MAC.
    pub dst_mac: EthernetAddress,
    /// The IP source (of the same family as `dst`).
    pub src: IpAddr,
    /// The IP destination.
    pub dst: IpAddr,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 Don't Fragment.
    pub dont_frag: bool,
    /// The transport header.
    pub transport: Transport,
    /// What follows it.
    pub payload: &'a [u8],
    /// Whether the transport checksum is computed; without it, it is zero (allowed for UDP
    /// over IPv4, a bad checksum for TCP, which vipgate does not check). IPv6 always has it.
    pub l4_checksum: bool,
}

/// The shortest Ethernet frame without its FCS: shorter frames are padded to it.
pub const MIN_FRAME: usize = 60;

impl FrameRepr<'_> {
    fn ip_header_len(&self) -> usize {
        if self.src.is_ipv4() {
            ipv4::HEADER_LEN
        } else {
            ipv6::HEADER_LEN
        }
    }

    /// The frame's length, padding included.
    pub fn buffer_len(&self) -> usize {
        let unpadded =
            ethernet::HEADER_LEN + self.ip_header_len() + self.transport.header_len() + self.payload.len();
        unpadded.max(MIN_FRAME)
    }

    /// Writes the frame into the first [`buffer_len`](Self::buffer_len) bytes of `out`
    /// and returns that length; `None` (nothing written) when `out` is shorter, or `src`
    /// and `dst` are of different families.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len();
        let out = out.get_mut(..len)?;
        out.fill(0);
        let l3 = ethernet::HEADER_LEN;
        let l4 = l3 + self.ip_header_len();
        let l4_len = self.transport.header_len() + self.payload.len();
        let ethertype = match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => EtherType::Ipv4,
            (IpAddr::V6(_), IpAddr::V6(_)) => EtherType::Ipv6,
            _ => return None,
        };
        ethernet::Repr { src_addr: self.src_mac, dst_addr: self.dst_mac, ethertype }
            .emit(&mut ethernet::Frame::new_unchecked(&mut out[..]));
        let protocol = self.transport.protocol();
        match (self.src, self.dst) {
            (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => ipv4::Repr {
                src_addr,
                dst_addr,
                protocol,
                payload_len: l4_len,
                ttl: self.ttl,
                dscp_ecn: 0,
                ident: self.ident,
                dont_frag: self.dont_frag,
                more_frags: false,
                frag_offset: 0,
            }
            .emit(&mut ipv4::Packet::new_unchecked(&mut out[l3..l4])),
            (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => ipv6::Repr {
                src_addr,
                dst_addr,
                next_header: protocol,
                payload_len: l4_len,
                hop_limit: self.ttl,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut ipv6::Packet::new_unchecked(&mut out[l3..l4])),
            _ => return None,
        }
        let segment = &mut out[l4..l4 + l4_len];
        segment[self.transport.header_len()..].copy_from_slice(self.payload);
        let checksum = self.l4_checksum || self.src.is_ipv6();
        match self.transport {
            Transport::Tcp(t) => {
                let mut packet = tcp::Packet::new_unchecked(segment);
                t.emit(&mut packet, self.src, self.dst);
                if !checksum {
                    packet.set_checksum(0);
                }
            }
            Transport::Udp { src_port, dst_port } => {
                let repr = udp::Repr { src_port, dst_port, payload_len: self.payload.len() };
                repr.emit(&mut udp::Packet::new_unchecked(segment), checksum.then_some((self.src, self.dst)));
            }
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_frame_is_padded_and_parses_back() {
        let repr = FrameRepr {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 0xc1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            src: "198.51.100.7".parse().unwrap(),
            dst: "203.0.113.10".parse().unwrap(),
            ttl: 60,
            ident: 0,
            dont_frag: true,
            transport: Transport::Udp { src_port: 40000, dst_port: 8000 },
            payload: b"hb",
            l4_checksum: true,
        };
        let mut out = [0xaa; 80];
        assert_eq!(repr.emit(&mut out), Some(MIN_FRAME));
        assert!(out[44..60].iter().all(|&b| b == 0), "padded with zeros");
        let ip = ipv4::Packet::new_checked(&out[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.total_len(), ip.ttl(), ip.dont_frag()), (30, 60, true));
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.payload()), (40000, 8000, &b"hb"[..]));
        assert!(u.verify_checksum(repr.src, repr.dst));
        assert_eq!(repr.emit(&mut [0; 59]), None, "too short");
        let mixed = FrameRepr { dst: "2001:db8::1".parse().unwrap(), ..repr };
        assert_eq!(mixed.emit(&mut out), None, "two families");
    }

    #[test]
    fn a_tcp_frame_over_ipv6_has_its_checksum_always() {
        let repr = FrameRepr {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 0xc1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            src: "2001:db8:c::7".parse().unwrap(),
            dst: "2001:db8:ab::10".parse().unwrap(),
            ttl: 64,
            ident: 0,
            dont_frag: false,
            transport: Transport::tcp(30000, 443, tcp::TcpFlags::SYN),
            payload: &[],
            l4_checksum: false,
        };
        let mut out = [0; 100];
        assert_eq!(repr.emit(&mut out), Some(74));
        let ip = ipv6::Packet::new_checked(&out[14..74]).unwrap();
        assert_eq!((ip.payload_len(), ip.hop_limit(), ip.next_header()), (20, 64, IpProtocol::Tcp));
        let t = tcp::Packet::new_checked(&out[54..74]).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.flags()), (30000, 443, tcp::TcpFlags::SYN));
        assert!(t.verify_checksum(repr.src, repr.dst));
    }
}
