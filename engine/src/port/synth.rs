//! The synth driver: generated 2G-gateway traffic, seeded and reproducible.
//!
//! What the traffic looks like (DESIGN.md): a few carrier-gateway (CGNAT) source addresses
//! with thousands of source ports each; long-lived TCP connections that mostly send small
//! heartbeats, and UDP, to the VIPs, the busier VIPs far more often (Zipf weights: the
//! k-th VIP gets a share proportional to 1/k); frames of 60–300 bytes; a connection now
//! and then replaced by a new one; and, in the `2g-gateway` profile, some noise: packets
//! to subnet addresses without a VIP and to addresses outside every subnet, broken IPv4
//! headers, non-first fragments, and pings to a VIP.
//!
//! Every queue generates its own connections from source ports no other queue uses, so a
//! flow always meets the same worker, as with a NIC's RSS. The same seed, targets and
//! queue count give the same packets in the same order. Generating a packet writes its
//! headers into a buffer; nothing allocates after [`SynthQueue::new`].
//!
//! Transmitted packets are counted and given to an optional observer, then the buffers
//! are reused: the port is its own sink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::Port;
use crate::buf::PacketBuf;
use crate::wire::checksum;

/// A VIP the traffic goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The VIP's address.
    pub addr: IpAddr,
    /// 6 (TCP), 17 (UDP), or 0 for either.
    pub protocol: u8,
    /// The port, or `None` for a VIP that takes any.
    pub port: Option<u16>,
}

/// What sees every frame a synth port transmits.
pub type Observer = Box<dyn FnMut(&[u8]) + Send>;

/// The traffic profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// 2G-gateway traffic with about 2% noise.
    Gateway2g,
    /// The same without noise: every packet goes to a VIP.
    Clean,
}

impl Profile {
    /// The names a config may give.
    pub const NAMES: [&'static str; 2] = ["2g-gateway", "clean"];

    /// The profile called `name`.
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "2g-gateway" => Some(Profile::Gateway2g),
            "clean" => Some(Profile::Clean),
            _ => None,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSpec {
    /// The seed: the same seed gives the same packets.
    pub seed: u64,
    /// The VIPs, busiest first.
    pub targets: Vec<Target>,
    /// The port's MAC (the frames' destination).
    pub mac: [u8; 6],
    /// The frames' source MAC (the router).
    pub router_mac: [u8; 6],
    /// An address inside a VIP subnet that is no VIP (noise), if any.
    pub unused_in_subnet: Option<IpAddr>,
    /// An address outside every subnet (noise).
    pub outside: IpAddr,
    /// The profile.
    pub profile: Profile,
    /// Packets per second over all queues; 0 for as fast as the worker takes them.
    pub rate: u64,
    /// Live connections per gateway address, per queue.
    pub flows_per_gateway: usize,
    /// Packets each queue sends before it falls silent; `None` for no end.
    pub limit: Option<u64>,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            seed: 0x2626_2626_2626_2626,
            targets: Vec::new(),
            mac: [2, 0, 0, 0, 0, 1],
            router_mac: [2, 0, 0, 0, 0, 0xfe],
            unused_in_subnet: None,
            outside: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 250)),
            profile: Profile::Gateway2g,
            rate: 0,
            flows_per_gateway: 4000,
            limit: None,
        }
    }
}

/// How many carrier gateways the traffic comes from.
pub const GATEWAYS: usize = 6;

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next() >> 32) * u128::from(n)) >> 32) as u64
    }
}

/// One live connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    gateway: u8,
    target: u16,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
}

/// Common destination ports for VIPs that take any port.
const ANY_PORTS: [u16; 4] = [80, 443, 5222, 8080];

/// One queue of a synth port.
pub struct SynthQueue {
    spec: SynthSpec,
    rng: Rng,
    /// Cumulative Zipf weights of the targets, scaled to 2^32.
    cumulative: Vec<u64>,
    conns: Vec<Conn>,
    /// The source ports of this queue: `first_port + k * stride`.
    first_port: u16,
    stride: u16,
    next_port: u32,
    ports_per_gateway: u32,
    rate_per_queue: u64,
    started: Option<Instant>,
    sent: u64,
    scratch: [u8; 400],
    tx_packets: u64,
    tx_bytes: u64,
    observer: Option<Observer>,
}

impl core::fmt::Debug for SynthQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SynthQueue").field("sent", &self.sent).field("tx_packets", &self.tx_packets).finish()
    }
}

fn gateway_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 101 + i)
}

fn gateway_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 0, 0, 0, 0, 0x101 + u16::from(i))
}

impl SynthQueue {
    /// Queue `queue` of `queues` of a synth port generating `spec`.
    pub fn new(spec: SynthSpec, queue: usize, queues: usize) -> SynthQueue {
        let queues = queues.max(1);
        let mut rng = Rng::new(spec.seed ^ (queue as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut cumulative = Vec::with_capacity(spec.targets.len());
        let total: f64 = (1..=spec.targets.len()).map(|k| 1.0 / k as f64).sum();
        let mut acc = 0.0;
        for k in 1..=spec.targets.len() {
            acc += 1.0 / k as f64 / total;
            cumulative.push((acc * 4_294_967_296.0) as u64);
        }
        if let Some(last) = cumulative.last_mut() {
            *last = u64::MAX;
        }
        // Source ports 1024..65535, dealt out to the queues.
        let stride = queues.min(1024) as u16;
        let first_port = 1024 + (queue % usize::from(stride)) as u16;
        let ports_per_gateway = u32::from((65535 - first_port) / stride);
        let mut q = SynthQueue {
            rate_per_queue: spec.rate / queues as u64,
            spec,
            rng: Rng(0),
            cumulative,
            conns: Vec::new(),
            first_port,
            stride,
            next_port: 0,
            ports_per_gateway,
            started: None,
            sent: 0,
            scratch: [0; 400],
            tx_packets: 0,
            tx_bytes: 0,
            observer: None,
        };
        let n = q.spec.flows_per_gateway.clamp(1, ports_per_gateway as usize / 2) * GATEWAYS;
        if !q.spec.targets.is_empty() {
            q.conns = (0..n).map(|i| q.new_conn(&mut rng, (i % GATEWAYS) as u8)).collect();
        }
        q.rng = rng;
        q
    }

    /// Gives every transmitted frame to `observer` (before the buffer is reused).
    pub fn set_observer(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Packets generated so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// `(packets, bytes)` transmitted to this port so far.
    pub fn transmitted(&self) -> (u64, u64) {
        (self.tx_packets, self.tx_bytes)
    }

    fn new_conn(&mut self, rng: &mut Rng, gateway: u8) -> Conn {
        let x = rng.next() >> 32;
        let target = self.cumulative.partition_point(|&c| c <= x).min(self.cumulative.len() - 1);
        let t = self.spec.targets[target];
        let protocol = match t.protocol {
            0 => {
                if rng.below(2) == 0 {
                    6
                } else {
                    17
                }
            }
            p => p,
        };
        let dst_port = t.port.unwrap_or(ANY_PORTS[rng.below(ANY_PORTS.len() as u64) as usize]);
        let k = self.next_port % self.ports_per_gateway;
        self.next_port = self.next_port.wrapping_add(1);
        let src_port = self.first_port + (k as u16) * self.stride;
        Conn { gateway, target: target as u16, protocol, src_port, dst_port }
    }

    /// Writes the next packet into `buf`.
    fn generate(&mut self, buf: &mut PacketBuf) {
        let mut rng = std::mem::replace(&mut self.rng, Rng(0));
        let i = rng.below(self.conns.len() as u64) as usize;
        // About one packet in 256 opens a new connection in place of an old one.
        if rng.below(256) == 0 {
            let g = self.conns[i].gateway;
            self.conns[i] = self.new_conn(&mut rng, g);
        }
        let c = self.conns[i];
        // Heartbeats are small; one packet in four carries a message of up to 240 bytes.
        let payload = if rng.below(4) == 0 { 20 + rng.below(220) as usize } else { rng.below(16) as usize };
        let noise = self.spec.profile == Profile::Gateway2g && rng.below(50) == 0;
        let kind = rng.below(5);
        self.rng = rng;
        let dst = self.spec.targets[usize::from(c.target)].addr;
        let len = match (noise, kind) {
            (false, _) => self.write(c, dst, c.protocol, payload, Noise::None),
            (true, 0) => {
                let d = self.spec.unused_in_subnet.unwrap_or(self.spec.outside);
                self.write(c, d, c.protocol, payload, Noise::None)
            }
            (true, 1) => self.write(c, self.spec.outside, c.protocol, payload, Noise::None),
            (true, 2) => self.write(c, dst, c.protocol, payload, Noise::BadHeader),
            (true, 3) => self.write(c, dst, 17, payload.max(16), Noise::Fragment),
            (true, _) => self.write(c, dst, if dst.is_ipv4() { 1 } else { 58 }, payload.max(8), Noise::Echo),
        };
        if buf.set_frame(&self.scratch[..len]).is_err() {
            buf.clear();
        }
    }

    /// Writes a frame into the scratch area; returns its length.
    fn write(&mut self, c: Conn, dst: IpAddr, protocol: u8, payload: usize, noise: Noise) -> usize {
        let f = &mut self.scratch;
        f.fill(0);
        f[..6].copy_from_slice(&self.spec.mac);
        f[6..12].copy_from_slice(&self.spec.router_mac);
        let l4_len = match protocol {
            6 => 20 + payload,
            _ => 8 + payload,
        };
        let (l4, ip_len) = match dst {
            IpAddr::V4(d) => {
                let s = gateway_v4(c.gateway);
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                let total = 20 + l4_len;
                f[14] = if noise == Noise::BadHeader { 0x44 } else { 0x45 };
                f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
                f[18..20].copy_from_slice(&c.src_port.to_be_bytes());
                f[20] = 0x40; // DF
                if noise == Noise::Fragment {
                    // A non-first fragment: offset 1480 bytes, no DF.
                    f[20..22].copy_from_slice(&185u16.to_be_bytes());
                }
                f[22] = 57;
                f[23] = protocol;
                f[26..30].copy_from_slice(&s.octets());
                f[30..34].copy_from_slice(&d.octets());
                let ck = !checksum::data(&f[14..34]);
                f[24..26].copy_from_slice(&ck.to_be_bytes());
                (34, total)
            }
            IpAddr::V6(d) => {
                let s = gateway_v6(c.gateway);
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                f[14] = 0x60;
                f[18..20].copy_from_slice(&(l4_len as u16).to_be_bytes());
                f[20] = protocol;
                f[21] = 57;
                f[22..38].copy_from_slice(&s.octets());
                f[38..54].copy_from_slice(&d.octets());
                (54, 40 + l4_len)
            }
        };
        let src = match dst {
            IpAddr::V4(_) => IpAddr::V4(gateway_v4(c.gateway)),
            IpAddr::V6(_) => IpAddr::V6(gateway_v6(c.gateway)),
        };
        match protocol {
            // A non-first fragment carries data, no transport header.
            _ if noise == Noise::Fragment => {}
            6 => {
                f[l4..l4 + 2].copy_from_slice(&c.src_port.to_be_bytes());
                f[l4 + 2..l4 + 4].copy_from_slice(&c.dst_port.to_be_bytes());
                f[l4 + 4..l4 + 8].copy_from_slice(&(self.sent as u32).to_be_bytes());
                f[l4 + 12] = 0x50;
                f[l4 + 13] = 0x18; // PSH ACK
                f[l4 + 14..l4 + 16].copy_from_slice(&512u16.to_be_bytes());
            }
            17 => {
                f[l4..l4 + 2].copy_from_slice(&c.src_port.to_be_bytes());
                f[l4 + 2..l4 + 4].copy_from_slice(&c.dst_port.to_be_bytes());
                f[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            }
            1 => f[l4] = 8,   // echo request
            _ => f[l4] = 128, // ICMPv6 echo request
        }
        if noise != Noise::Fragment && noise != Noise::BadHeader {
            // The payload is zeros, so the checksum covers the pseudo-header and the header.
            let (at, pseudo) = match protocol {
                6 => (l4 + 16, true),
                17 => (l4 + 6, true),
                1 => (l4 + 2, false),
                _ => (l4 + 2, true),
            };
            let head = if protocol == 6 { 20 } else { 8 };
            let mut sum = checksum::data(&f[l4..l4 + head]);
            if pseudo {
                let p = crate::wire::IpProtocol::from(protocol);
                sum = checksum::combine(&[sum, checksum::pseudo_header(src, dst, p, l4_len as u32)]);
            }
            let mut ck = !sum;
            if ck == 0 && protocol == 17 {
                ck = 0xffff;
            }
            f[at..at + 2].copy_from_slice(&ck.to_be_bytes());
        }
        debug_assert_eq!(l4 + l4_len, 14 + ip_len);
        (l4 + l4_len).max(60)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noise {
    None,
    BadHeader,
    Fragment,
    Echo,
}

impl Port for SynthQueue {
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        if self.conns.is_empty() {
            return 0;
        }
        let mut n = bufs.len() as u64;
        if let Some(limit) = self.spec.limit {
            n = n.min(limit.saturating_sub(self.sent));
        }
        if self.rate_per_queue > 0 {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started.elapsed().as_nanos() * u128::from(self.rate_per_queue) / 1_000_000_000;
            n = n.min((due as u64).saturating_sub(self.sent));
        }
        for b in bufs.iter_mut().take(n as usize) {
            self.generate(b);
        }
        self.sent += n;
        n as usize
    }

    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        for b in bufs.iter() {
            self.tx_packets += 1;
            self.tx_bytes += b.len() as u64;
            if let Some(o) = self.observer.as_mut() {
                o(b.as_slice());
            }
        }
        bufs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SynthSpec {
        SynthSpec {
            targets: vec![
                Target { addr: "203.0.113.10".parse().unwrap(), protocol: 17, port: Some(8000) },
                Target { addr: "203.0.113.10".parse().unwrap(), protocol: 6, port: None },
                Target { addr: "2001:db8:ab::10".parse().unwrap(), protocol: 0, port: None },
            ],
            unused_in_subnet: Some("203.0.113.77".parse().unwrap()),
            flows_per_gateway: 100,
            limit: Some(1000),
            ..SynthSpec::default()
        }
    }

    fn frames(queue: usize, queues: usize) -> Vec<Vec<u8>> {
        let mut q = SynthQueue::new(spec(), queue, queues);
        let mut bufs: Vec<PacketBuf> = (0..32).map(|_| PacketBuf::new()).collect();
        let mut out = Vec::new();
        loop {
            let n = q.rx_burst(&mut bufs);
            if n == 0 {
                break;
            }
            out.extend(bufs[..n].iter().map(|b| b.as_slice().to_vec()));
        }
        out
    }

    /// The fast writer writes what the frame builder of the wire layer does, for TCP and
    /// UDP over IPv4 and IPv6, short and long.
    #[test]
    fn the_writer_agrees_with_the_frame_builder() {
        use crate::wire::frame::{FrameRepr, Transport};
        use crate::wire::tcp::{self, TcpFlags};
        use crate::wire::EthernetAddress;
        let mut q = SynthQueue::new(spec(), 0, 1);
        q.sent = 77;
        let dsts: [IpAddr; 2] = ["203.0.113.10".parse().unwrap(), "2001:db8:ab::10".parse().unwrap()];
        for dst in dsts {
            for (protocol, payload) in [(6, 0), (6, 200), (17, 3), (17, 240)] {
                let c = Conn { gateway: 9, target: 0, protocol, src_port: 41000, dst_port: 5222 };
                let len = q.write(c, dst, protocol, payload, Noise::None);
                let src = match dst {
                    IpAddr::V4(_) => IpAddr::V4(gateway_v4(9)),
                    IpAddr::V6(_) => IpAddr::V6(gateway_v6(9)),
                };
                let transport = match protocol {
                    6 => Transport::Tcp(tcp::Repr {
                        src_port: 41000,
                        dst_port: 5222,
                        seq_number: 77,
                        ack_number: 0,
                        flags: TcpFlags(TcpFlags::PSH.0 | TcpFlags::ACK.0),
                        window_len: 512,
                        urgent_at: 0,
                    }),
                    _ => Transport::Udp { src_port: 41000, dst_port: 5222 },
                };
                let repr = FrameRepr {
                    src_mac: EthernetAddress(q.spec.router_mac),
                    dst_mac: EthernetAddress(q.spec.mac),
                    src,
                    dst,
                    ttl: 57,
                    ident: 41000,
                    dont_frag: true,
                    transport,
                    payload: &vec![0; payload],
                    l4_checksum: true,
                };
                let mut want = vec![0; repr.buffer_len()];
                assert_eq!(repr.emit(&mut want), Some(len));
                assert_eq!(&q.scratch[..len], &want[..], "{dst} protocol {protocol}, {payload} bytes");
            }
        }
    }

    #[test]
    fn same_seed_same_packets_and_the_limit_holds() {
        let a = frames(0, 2);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, frames(0, 2));
        assert_ne!(a, frames(1, 2));
    }

    #[test]
    fn frames_are_well_formed_and_sized_like_gateway_traffic() {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let mut to_vip = 0;
        for f in frames(0, 1) {
            assert!((60..=14 + 40 + 20 + 240).contains(&f.len()), "{} bytes", f.len());
            let Ok(p) = SlicedPacket::from_ethernet(&f) else { continue };
            if let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) = (&p.net, &p.transport) {
                if !ip.is_payload_fragmented() {
                    let ok = u
                        .to_header()
                        .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
                        .is_ok_and(|c| c == u.checksum());
                    assert!(ok, "UDP checksum");
                    to_vip += 1;
                }
            }
        }
        assert!(to_vip > 100);
    }

    #[test]
    fn queues_never_share_a_flow() {
        // IPv4 TCP and UDP: (source address, source port).
        let flows = |q| {
            frames(q, 2)
                .into_iter()
                .filter(|f| f[12..14] == [8, 0] && (f[23] == 6 || f[23] == 17))
                .filter(|f| u16::from_be_bytes([f[20], f[21]]) & 0x3fff == 0) // no fragments
                .map(|f| f[26..36].to_vec())
                .collect::<std::collections::HashSet<_>>()
        };
        let (a, b) = (flows(0), flows(1));
        assert!(a.len() > 100 && b.len() > 100);
        assert!(a.is_disjoint(&b));
    }
}
