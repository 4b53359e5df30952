//! The outer headers of a tunnel, written one way for both paths (the express lane and
//! the general path): the outer Ethernet and IPv4 headers with their checksum, and GUE's
//! UDP and GUE headers with the flow's source port.

use std::net::{Ipv4Addr, Ipv6Addr};

use std::net::IpAddr;

use crate::wire::{gue, udp, EthernetAddress, IpProtocol};

/// The variable fields of an outer IPv4 header (the rest is fixed: no options, TTL 64).
pub(crate) struct OuterV4 {
    pub(crate) src: u32,
    pub(crate) dst: u32,
    pub(crate) protocol: u8,
    pub(crate) total_len: u16,
    pub(crate) tos: u8,
    pub(crate) ident: u16,
    pub(crate) dont_frag: bool,
}

/// Writes the outer Ethernet and IPv4 headers at fixed offsets, with the header checksum
/// summed from the fields directly (RFC 1071) instead of re-reading the bytes: the hot path
/// of every IPv4 tunnel.
#[inline]
pub(crate) fn write_outer_v4(
    l2: &mut [u8],
    ip: &mut [u8],
    mac: EthernetAddress,
    next_hop: EthernetAddress,
    o: &OuterV4,
) {
    let (Ok(l2), Ok(ip)) = (<&mut [u8; 14]>::try_from(l2), <&mut [u8; 20]>::try_from(ip)) else {
        return;
    };
    l2[0..6].copy_from_slice(&next_hop.0);
    l2[6..12].copy_from_slice(&mac.0);
    l2[12..14].copy_from_slice(&[0x08, 0x00]);
    let flags: u16 = if o.dont_frag { 0x4000 } else { 0 };
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = o.tos;
    h[2..4].copy_from_slice(&o.total_len.to_be_bytes());
    h[4..6].copy_from_slice(&o.ident.to_be_bytes());
    h[6..8].copy_from_slice(&flags.to_be_bytes());
    h[8] = 64;
    h[9] = o.protocol;
    h[12..16].copy_from_slice(&o.src.to_be_bytes());
    h[16..20].copy_from_slice(&o.dst.to_be_bytes());
    // The one's complement sum in the machine's own byte order, five 32-bit words at a
    // time: it comes out byte-swapped exactly as the words went in (RFC 1071, 2(B)), so
    // it goes back in the same order.
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let mut sum = word(0) + word(4) + word(8) + word(12) + word(16);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    h[10..12].copy_from_slice(&(!(sum as u16)).to_ne_bytes());
    *ip = h;
}

/// Writes the UDP and GUE headers of a GUE tunnel at the start of `rest` (the rest of the
/// datagram follows them), the UDP checksum over `checksum`'s addresses when given.
#[inline]
pub(crate) fn write_gue(
    rest: &mut [u8],
    inner: IpProtocol,
    flow_hash: u32,
    gue_port: u16,
    inner_len: usize,
    checksum: Option<(IpAddr, IpAddr)>,
) {
    gue::Repr::data(inner).emit(&mut rest[udp::HEADER_LEN..]);
    let udp_repr = udp::Repr {
        src_port: gue_source_port(flow_hash),
        dst_port: gue_port,
        payload_len: gue::BASE_HEADER_LEN + inner_len,
    };
    udp_repr.emit(&mut udp::Packet::new_unchecked(rest), checksum);
}

/// GUE's UDP source port for a flow: it spreads flows over the backend's receive queues
/// (RFC 8086, §3.2 style): the top 14 bits of the flow's Maglev hash, in 49152..65535.
#[inline(always)]
pub(crate) fn gue_source_port(flow_hash: u32) -> u16 {
    0xc000 | (flow_hash >> 18) as u16
}

/// Tunnel parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// Outer source for IPv4 tunnels.
    pub source_v4: Option<Ipv4Addr>,
    /// Outer source for IPv6 tunnels.
    pub source_v6: Option<Ipv6Addr>,
    /// Egress MTU: the largest IP packet (outer header included) we send.
    pub mtu: u16,
    /// The UDP destination port of GUE.
    pub gue_port: u16,
}
