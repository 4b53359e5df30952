//! What a VIP is: its identity (address, protocol, port), its tunnel, and its place in a
//! snapshot.

use core::fmt;
use std::net::IpAddr;

/// How packets are tunnelled to a VIP's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    /// IP in IP: IPv4 in IPv4 (RFC 2003), IPv6 in IPv6 (RFC 2473), or either in the other
    /// when the backend's family differs from the client's.
    Ipip,
    /// Generic UDP Encapsulation, variant 0, to the tunnel's GUE port.
    Gue,
    /// GRE (RFC 2784) without optional fields.
    Gre,
}

/// Which transport protocol a VIP takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VipProtocol {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// Any IP protocol (TCP, UDP, ICMP errors...).
    Any,
}

impl VipProtocol {
    /// The IP protocol number (0 for any).
    pub fn number(self) -> u8 {
        match self {
            VipProtocol::Tcp => 6,
            VipProtocol::Udp => 17,
            VipProtocol::Any => 0,
        }
    }
}

/// A VIP's identity: its address, protocol and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipId {
    /// The address clients send to.
    pub addr: IpAddr,
    /// The protocol.
    pub protocol: VipProtocol,
    /// The port, or `None` for any.
    pub port: Option<u16>,
}

impl fmt::Display for VipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&vip_name(self.addr, self.protocol, self.port))
    }
}

/// A VIP: an address, optionally a port, a protocol, how to tunnel, and which pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// The address clients send to.
    pub addr: IpAddr,
    /// The port, or `None` for any.
    pub port: Option<u16>,
    /// The protocol.
    pub protocol: VipProtocol,
    /// The tunnel toward backends.
    pub encap: Encap,
    /// Index into [`Snapshot::pools`](crate::table::Snapshot::pools) (each VIP has its own
    /// pool; VIPs with the same backend set share its ring).
    pub pool: u32,
    /// Where this VIP's per-backend traffic counters start (see
    /// [`Snapshot::traffic_slots`](crate::table::Snapshot::traffic_slots)): slot
    /// `counter_base + i` counts the pool's backend `i`.
    pub counter_base: u32,
}

impl Vip {
    /// Its identity: what its flows' numbers are given under.
    pub fn id(&self) -> VipId {
        VipId { addr: self.addr, protocol: self.protocol, port: self.port }
    }
}

/// A VIP's name for errors and logs: `udp://203.0.113.10:8000`, `any://[2001:db8::10]`.
pub fn vip_name(addr: IpAddr, protocol: VipProtocol, port: Option<u16>) -> String {
    let proto = match protocol {
        VipProtocol::Tcp => "tcp",
        VipProtocol::Udp => "udp",
        VipProtocol::Any => "any",
    };
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("{proto}://[{a}]:{p}"),
        (IpAddr::V6(a), None) => format!("{proto}://[{a}]"),
        (a, Some(p)) => format!("{proto}://{a}:{p}"),
        (a, None) => format!("{proto}://{a}"),
    }
}
