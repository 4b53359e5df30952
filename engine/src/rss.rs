//! Software RSS: the hash that spreads packets over workers where no NIC does it (the
//! memory and pcap ports, a DPDK device without RSS), so that a flow always meets the
//! same worker and its flow table. Drivers use it; it knows the wire formats and nothing
//! of forwarding.

use std::net::IpAddr;

use crate::maglev;
use crate::wire::{icmpv4, icmpv6, ipv4, ipv6, vlan, EtherType, IpProtocol};

/// The hash that spreads packets over workers where no NIC does (software RSS): the
/// 5-tuple (the 3-tuple for fragments) through [`maglev::flow_hash`] with seed 0, so a flow
/// always meets the same worker and flow table. An ICMP error is spread by the flow it
/// quotes, turned around, so that it meets the worker that knows that flow. Frames that do
/// not parse hash to 0.
pub fn rss_hash(frame: &[u8]) -> u32 {
    rss_tuple(frame).map_or(0, |(s, d, p, sp, dp)| maglev::flow_hash(0, s, d, p, sp, dp))
}

fn rss_tuple(frame: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    let l2 = vlan::parse_l2(frame).ok()?;
    let l3 = &frame[l2.payload_offset..];
    let (src, dst, protocol, l4, fragment): (IpAddr, IpAddr, IpProtocol, &[u8], bool) = match l2.ethertype {
        EtherType::Ipv4 => {
            let ip = ipv4::Packet::new_checked(l3).ok()?;
            let (start, end) = (ip.header_len(), usize::from(ip.total_len()));
            (ip.src_addr().into(), ip.dst_addr().into(), ip.protocol(), &l3[start..end], ip.is_fragment())
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(l3).ok()?;
            let upper = ip.upper_layer().ok()?;
            let fragment = upper.fragment.is_some_and(|f| f.is_fragment());
            let end = ip.total_len();
            (ip.src_addr().into(), ip.dst_addr().into(), upper.protocol, &l3[upper.offset..end], fragment)
        }
        _ => return None,
    };
    if fragment {
        return Some((src, dst, protocol.into(), 0, 0));
    }
    let quoted = match protocol {
        IpProtocol::Icmp => icmpv4::Packet::new_checked(l4).ok().and_then(|icmp| match icmp.msg_type() {
            icmpv4::Message::DstUnreachable | icmpv4::Message::TimeExceeded => {
                icmpv4::quoted(icmp.data()).ok()
            }
            _ => None,
        }),
        IpProtocol::Icmpv6 => icmpv6::Packet::new_checked(l4).ok().and_then(|icmp| match icmp.msg_type() {
            icmpv6::Message::DstUnreachable
            | icmpv6::Message::PacketTooBig
            | icmpv6::Message::TimeExceeded
            | icmpv6::Message::ParamProblem => icmpv6::quoted(icmp.data()).ok(),
            _ => None,
        }),
        _ => None,
    };
    if let Some(q) = quoted {
        let (sp, dp) = q.ports.unwrap_or((0, 0));
        return Some((q.dst_addr, q.src_addr, q.protocol.into(), dp, sp));
    }
    let (sp, dp) = match protocol {
        IpProtocol::Tcp | IpProtocol::Udp if l4.len() >= 4 => {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        }
        _ => (0, 0),
    };
    Some((src, dst, protocol.into(), sp, dp))
}
