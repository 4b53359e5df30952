//! What IPv4 and IPv6 share: the protocol number space.

use super::enum_with_unknown;

enum_with_unknown! {
    /// The IPv4 protocol / IPv6 next-header number (IANA "Assigned Internet Protocol
    /// Numbers").
    pub enum IpProtocol(u8) {
        /// IPv6 hop-by-hop options (RFC 8200, §4.3).
        HopByHop = 0,
        /// ICMP for IPv4 (RFC 792).
        Icmp = 1,
        /// IPv4 in IP (RFC 2003): the IPIP encapsulation.
        Ipv4 = 4,
        /// TCP (RFC 9293).
        Tcp = 6,
        /// UDP (RFC 768).
        Udp = 17,
        /// IPv6 in IP (RFC 2473).
        Ipv6 = 41,
        /// IPv6 routing header (RFC 8200, §4.4).
        Ipv6Route = 43,
        /// IPv6 fragment header (RFC 8200, §4.5).
        Ipv6Frag = 44,
        /// GRE (RFC 2784).
        Gre = 47,
        /// IPsec ESP.
        Esp = 50,
        /// IPsec AH.
        Ah = 51,
        /// ICMP for IPv6 (RFC 4443).
        Icmpv6 = 58,
        /// No next header (RFC 8200, §4.7).
        Ipv6NoNxt = 59,
        /// IPv6 destination options (RFC 8200, §4.6).
        Ipv6Opts = 60,
    }
}

/// The flow of a datagram quoted in an ICMP error: whom the original packet was from and
/// to, and its ports when the quote reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// Source of the original packet.
    pub src_addr: std::net::IpAddr,
    /// Destination of the original packet.
    pub dst_addr: std::net::IpAddr,
    /// Its upper-layer protocol.
    pub protocol: IpProtocol,
    /// `(source, destination)` ports for TCP and UDP, when the quote holds them and is not
    /// of a non-first fragment.
    pub ports: Option<(u16, u16)>,
}

/// The ports of a quoted TCP or UDP header: its first four bytes.
pub(crate) fn quoted_ports(protocol: IpProtocol, l4: &[u8], first_fragment: bool) -> Option<(u16, u16)> {
    match protocol {
        IpProtocol::Tcp | IpProtocol::Udp if first_fragment && l4.len() >= 4 => {
            Some((u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])))
        }
        _ => None,
    }
}
