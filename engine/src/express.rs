//! The express lane: what the pipeline does for the packet that nearly all traffic is, an
//! untagged IPv4 TCP or UDP packet to one of our VIPs, with as few instructions as it
//! takes; and, out of the IPv4 loop's way, the same for IPv6 TCP and UDP to an IPv6 VIP
//! over IPIP (IPv6 in IPv6) to an IPv6 backend.
//!
//! The lane reads the frame at fixed offsets and answers the VIP from [`V4Vips`] (or
//! [`V6Vips`]), a table that has already resolved the order of [`crate::table::Snapshot::find_vip`] for
//! every VIP address (the general path asks these tables too, for TCP and UDP that are
//! not fragments; the tests check their answers against `find_vip`'s). Whatever the lane
//! does not take (another frame, an option or an extension header, a fragment, a packet
//! too big for the tunnel, a backend of the other family, for IPv6 a tunnel other than
//! IPIP) goes to the general path, which reaches the same verdict, bytes and counters for
//! what the lane takes: the tests and the `lanes` fuzz target run both on the same
//! traffic, the general path as an independent oracle that asks the snapshot itself
//! ([`crate::pipeline::PipelineOptions::oracle`]), not these tables.

use std::net::{IpAddr, Ipv6Addr};

use crate::announce::Announcer;
use crate::buf::PacketBuf;
use crate::counters::Counters;
use crate::encap::{gue_source_port, write_gue, write_outer_v4, OuterV4, Tunnel};
use crate::flow::Timeouts;
use crate::flow::{Absent, FlowKey, FlowTable, IdleTimeouts, Inserted, NewFlow, TimeoutClass};
use crate::pool::{BackendState, Pool};
use crate::port::Interface;
use crate::vip::{Encap, Vip, VipProtocol};
use crate::wire::{checksum, ethernet, gre, gue, ipv4, ipv6, udp, EtherType, IpProtocol};

/// What a lane is built from: a snapshot's VIPs, pools and parameters, and its own VIP
/// lookup ([`crate::table::Snapshot::find_vip`]), which the lane's VIP tables resolve in
/// advance.
pub struct LaneSource<'a> {
    /// The VIPs, in config order.
    pub vips: &'a [Vip],
    /// The pools, which [`Vip::pool`] indexes.
    pub pools: &'a [Pool],
    /// Per VIP, which distinct backend set its pool has (VIPs of one set may share their
    /// outer headers).
    pub sets: &'a [u32],
    /// Tunnel parameters.
    pub tunnel: &'a Tunnel,
    /// The port's identity (its MAC and next hop).
    pub interface: &'a Interface,
    /// Flow idle timeouts.
    pub timeouts: &'a Timeouts,
    /// The VIP (its index) a packet to (address, protocol, port) goes to.
    pub find_vip: &'a dyn Fn(IpAddr, IpProtocol, u16) -> Option<u32>,
}

/// Everything the lane reads of a snapshot, built with it: the VIP lookup, per VIP what
/// its tunnel costs, and per backend the outer headers ready to copy (records of 64
/// bytes), in groups: a backend set's group per tunnel, shared by the set's VIPs whose
/// numbers are dense (`number_lo + index`, as a config's are when first read: a
/// thousand VIP:port pairs on one set cost one group), or a VIP's own.
#[derive(Debug, Clone)]
pub struct Lane {
    pub(crate) vips: V4Vips,
    /// The IPv6 VIPs, for TCP and UDP.
    pub(crate) vips6: V6Vips,
    /// By VIP index.
    pub(crate) vip: Box<[LaneVip]>,
    /// By group (see [`Lane`]), then backend number or index: see [`LaneVip::number_lo`].
    pub(crate) outer: Box<[Outer]>,
    /// For IPv6 VIPs over IPIP (IPv6 in IPv6): the IPv6 outer headers, laid out as their
    /// group's [`Outer`] records are (see [`LaneVip::outer6_base`]).
    pub(crate) outer6: Box<[Outer6]>,
    pub(crate) mtu: usize,
    pub(crate) timeouts: IdleTimeouts,
    /// Where each backend number is in each pool whose numbers are too far apart to lay
    /// its outer headers out by number.
    numbers: Numbers,
}

/// What the lane needs of a VIP (32 bytes, so that finding one is a shift).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub(crate) struct LaneVip {
    pub(crate) pool: u32,
    /// Where its backends' traffic counters start.
    counter_base: u32,
    /// Where its backends' outer headers start in [`Lane::outer`].
    outer_base: u32,
    /// What the tunnel adds after the Ethernet header: 20 (IPIP), 24 (GRE), 32 (GUE).
    overhead: u32,
    /// Where the pool's backends are in its outer headers: backend number `lo + j` at
    /// `outer_base + j` for every `j < span` (holes where the pool has no such number),
    /// when the pool's numbers lie close enough together (see [`Lane::build`]; a config's
    /// do when first read, and through most reloads): a flow's number finds its headers,
    /// and in them the backend's index, in one read. Otherwise (`hashed`) by
    /// index, with the pool's map in [`Lane::numbers`] (starting at `number_lo`, mask
    /// `number_span`) to turn a number into an index.
    number_lo: u32,
    number_span: u32,
    hashed: bool,
    /// An IPv6 VIP over IPIP: where its group's records start in [`Lane::outer6`], at the
    /// same places as in [`Lane::outer`]; [`NO_OUTER6`] for every other VIP.
    outer6_base: u32,
}

/// The layout the table's tests check.
#[cfg(test)]
impl LaneVip {
    pub(crate) fn outer_base(&self) -> u32 {
        self.outer_base
    }

    pub(crate) fn number_span(&self) -> u32 {
        self.number_span
    }

    pub(crate) fn hashed(&self) -> bool {
        self.hashed
    }
}

/// [`LaneVip::outer6_base`] of a VIP the IPv6 lane does not take.
pub(crate) const NO_OUTER6: u32 = u32::MAX;

/// One backend's IPv6 outer headers (Ethernet and IPv6, IPv6 in IPv6) in one group, at the
/// end of the block as in [`Outer`], with the fields that change per packet (traffic
/// class, flow label, payload length) written over for each packet.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Outer6 {
    pub(crate) header: [u8; BLOCK6],
    /// Its place in its group ([`NO_PLACE`] for a hole).
    pub(crate) place: u32,
    /// The backend's index in its pool.
    pub(crate) index: u16,
    pub(crate) down: bool,
    /// Up, with an IPv6 address, and a tunnel with an IPv6 source: the lane's to send to.
    pub(crate) taken: bool,
}

/// Ethernet and IPv6.
pub(crate) const OUTER6_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN;

/// The block that [`Outer6::header`] keeps the headers in.
pub(crate) const BLOCK6: usize = OUTER6_LEN.next_multiple_of(16);

const HOLE6: Outer6 = Outer6 { header: [0; BLOCK6], place: NO_PLACE, index: 0, down: true, taken: false };

/// [`Outer::place`] of a hole.
pub(crate) const NO_PLACE: u32 = u32::MAX;

/// One backend's outer headers in one group (see [`Lane`]): Ethernet, IPv4 and the GRE
/// or UDP and GUE headers, as the general path writes them, with the fields that change
/// per packet (IPv4 DSCP/ECN, total length, identification, DF, checksum; UDP source port
/// and length) written over for each packet.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Outer {
    /// The headers, at the end of the block (its first `BLOCK - len` bytes are zero): the
    /// whole block is copied in front of the inner packet, whatever the tunnel (see
    /// [`crate::buf::PacketBuf::reframe`]).
    header: [u8; BLOCK],
    /// Its place in its group ([`NO_PLACE`] for a hole): a number that leads here is the
    /// VIP's when it finds the place it leads to.
    place: u32,
    /// The one's complement sum of the IPv4 header's fixed 16-bit words.
    sum: u32,
    /// The header's length: 34 (IPIP), 38 (GRE), 46 (GUE), or 0 where the lane does not
    /// take the backend (an IPv6 backend, or no IPv4 tunnel source).
    len: u8,
    down: bool,
    /// Up, and the lane's to send to (`len` not 0).
    taken: bool,
    /// The backend's index in its pool.
    pub(crate) index: u16,
}

/// Ethernet, IPv4, UDP and GUE.
pub(crate) const OUTER_MAX: usize =
    ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + gue::BASE_HEADER_LEN;

/// The block that [`Outer::header`] keeps the headers in: the longest, rounded up to 16
/// bytes. The lane takes a packet only with this much room in front of its IP header.
pub(crate) const BLOCK: usize = OUTER_MAX.next_multiple_of(16);

/// A hole: no backend has this place (a number is at most [`crate::flow::MAX_BACKEND`]).
const HOLE: Outer =
    Outer { header: [0; BLOCK], place: NO_PLACE, sum: 0, len: 0, down: true, taken: false, index: 0 };

impl Lane {
    /// An empty lane.
    pub fn empty() -> Lane {
        Lane {
            vips: V4Vips::empty(),
            vips6: V6Vips::build_from(Vec::new()),
            vip: Box::new([]),
            outer: Box::new([]),
            outer6: Box::new([]),
            mtu: 0,
            timeouts: IdleTimeouts::new(0, 0, 0),
            numbers: Numbers::build(&[], |_| true).0,
        }
    }

    /// The lane of a snapshot's VIPs, pools and parameters.
    pub fn build(src: &LaneSource<'_>) -> Lane {
        let tunnel = src.tunnel;
        let iface = src.interface;
        let mut outer: Vec<Outer> = Vec::new();
        let mut outer6: Vec<Outer6> = Vec::new();
        // A group of records: a backend set's, shared by its VIPs whose numbers are dense (a
        // config's, when first read: `number_lo + index`, so that a place is the index for
        // each of them), or one VIP's own.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        enum Group {
            Set(u32),
            Vip(u32),
        }
        let mut groups: std::collections::HashMap<(Group, Encap), u32> = std::collections::HashMap::new();
        let mut groups6: std::collections::HashMap<Group, u32> = std::collections::HashMap::new();
        let mut vip = Vec::with_capacity(src.vips.len());
        // Per pool: the range of its numbers, when they are close enough to lay its outer
        // headers out by number (see `LaneVip::number_lo`): always within four places a
        // backend (and 256 more), and within sixteen (and 1 024) while the holes of all such
        // pools stay within a budget (eight a backend of the snapshot and 65 536 more, 262 144
        // at most: 64 bytes each, so 16 MiB at most). Numbers spread so as reloads add
        // backends to many pools at once: each pool's new ones are numbered after the
        // others' old ones.
        let spans: Vec<(u32, usize, usize)> = src
            .pools
            .iter()
            .map(|p| {
                let numbers = p.backends().iter().map(|b| b.number);
                let (lo, hi) = (numbers.clone().min().unwrap_or(0), numbers.max().unwrap_or(0));
                (lo, (hi - lo) as usize + 1, p.backends().len())
            })
            .collect();
        let mut holes = (8 * spans.iter().map(|s| s.2).sum::<usize>() + 65_536).min(262_144);
        let by_number: Vec<Option<(u32, u32)>> = spans
            .iter()
            .map(|&(lo, span, n)| {
                let near = span <= 4 * n + 256;
                let spread = !near && span <= 16 * n + 1024 && span - n <= holes;
                if spread {
                    holes -= span - n;
                }
                (near || spread).then_some((lo, span as u32))
            })
            .collect();
        let (numbers, maps) = Numbers::build(src.pools, |p| by_number[p].is_none());
        for (i, v) in src.vips.iter().enumerate() {
            let pool = &src.pools[v.pool as usize];
            let (protocol, extra) = match v.encap {
                Encap::Ipip => (IpProtocol::Ipv4, 0),
                Encap::Gre => (IpProtocol::Gre, gre::BASE_HEADER_LEN),
                Encap::Gue => (IpProtocol::Udp, udp::HEADER_LEN + gue::BASE_HEADER_LEN),
            };
            let layout = by_number[v.pool as usize];
            let (number_lo, number_span) = layout.unwrap_or(maps[v.pool as usize]);
            let dense = layout.is_some()
                && pool
                    .backends()
                    .iter()
                    .enumerate()
                    .all(|(i, b)| b.number.wrapping_sub(number_lo) as usize == i);
            let group = match src.sets.get(i) {
                Some(&set) if dense => Group::Set(set),
                _ => Group::Vip(v.pool),
            };
            let (outer_base, new_group) = match groups.get(&(group, v.encap)) {
                Some(&base) => (base, false),
                None => (outer.len() as u32, true),
            };
            // The group's places: by number (holes between), or by index.
            let places = layout.map_or(pool.backends().len(), |(_, span)| span as usize);
            let place =
                |i: usize, number: u32| if layout.is_some() { (number - number_lo) as usize } else { i };
            let mut outer6_base = NO_OUTER6;
            if v.addr.is_ipv6() && v.encap == Encap::Ipip {
                outer6_base = match groups6.get(&group) {
                    Some(&base) => base,
                    None => {
                        let base = outer6.len() as u32;
                        groups6.insert(group, base);
                        outer6.resize(outer6.len() + places, HOLE6);
                        for (i, b) in pool.backends().iter().enumerate() {
                            let at = place(i, b.number);
                            let Some(o) = outer6.get_mut(base as usize + at) else {
                                continue;
                            };
                            let down = b.state == BackendState::Down;
                            *o = Outer6 { place: at as u32, index: i as u16, down, ..HOLE6 };
                            let (IpAddr::V6(dst), Some(src)) = (b.id.addr, tunnel.source_v6) else {
                                continue;
                            };
                            o.header = outer6_header(iface.mac, iface.next_hop_mac, src, dst);
                            o.taken = !down;
                        }
                        base
                    }
                };
            }
            vip.push(LaneVip {
                pool: v.pool,
                counter_base: v.counter_base,
                outer_base,
                overhead: (ipv4::HEADER_LEN + extra) as u32,
                number_lo,
                number_span,
                hashed: layout.is_none(),
                outer6_base,
            });
            if !new_group {
                continue;
            }
            groups.insert((group, v.encap), outer_base);
            outer.resize(outer.len() + places, HOLE);
            for (i, b) in pool.backends().iter().enumerate() {
                let place = place(i, b.number) as u32;
                let at = outer_base as usize + place as usize;
                let Some(o) = outer.get_mut(at) else {
                    continue;
                };
                // The lane does not take it, but the general path finds it here.
                *o = Outer { place, index: i as u16, down: b.state == BackendState::Down, ..HOLE };
                let (IpAddr::V4(dst), Some(src)) = (b.id.addr, tunnel.source_v4) else {
                    continue;
                };
                // The general path's own writers, with this packet's fields left for later.
                let mut h = [0u8; OUTER_MAX];
                let (l2, rest) = h.split_at_mut(ethernet::HEADER_LEN);
                let (ip, rest) = rest.split_at_mut(ipv4::HEADER_LEN);
                let fixed = OuterV4 {
                    src: u32::from(src),
                    dst: u32::from(dst),
                    protocol: protocol.into(),
                    total_len: 0,
                    tos: 0,
                    ident: 0,
                    dont_frag: false,
                };
                write_outer_v4(l2, ip, iface.mac, iface.next_hop_mac, &fixed);
                ip[10..12].fill(0);
                let sum = u32::from(checksum::data(ip));
                match v.encap {
                    Encap::Ipip => {}
                    Encap::Gre => {
                        gre::Repr { protocol: EtherType::Ipv4, checksum: false, key: None, sequence: None }
                            .emit(&mut rest[..gre::BASE_HEADER_LEN])
                    }
                    Encap::Gue => write_gue(rest, IpProtocol::Ipv4, 0, tunnel.gue_port, 0, None),
                }
                let len = ethernet::HEADER_LEN + ipv4::HEADER_LEN + extra;
                let mut header = [0u8; BLOCK];
                header[BLOCK - len..].copy_from_slice(&h[..len]);
                if let Some(o) = outer.get_mut(at) {
                    *o = Outer {
                        header,
                        place,
                        sum,
                        len: len as u8,
                        down: b.state == BackendState::Down,
                        taken: b.state != BackendState::Down,
                        index: i as u16,
                    };
                }
            }
        }
        let t = src.timeouts;
        Lane {
            vips: V4Vips::build(src),
            vips6: V6Vips::build(src),
            vip: vip.into_boxed_slice(),
            outer: outer.into_boxed_slice(),
            outer6: outer6.into_boxed_slice(),
            mtu: usize::from(tunnel.mtu),
            timeouts: IdleTimeouts::new(t.tcp, t.udp, t.closing),
            numbers,
        }
    }

    /// The outer headers of the backend numbered `number` (what a flow remembers) in the
    /// pool of VIP `v`, with its index there, if the pool has it.
    #[inline(always)]
    pub(crate) fn outer_of_number(&self, v: &LaneVip, number: u32) -> Option<&Outer> {
        let at = self.place_of_number(v, number)?;
        self.outer.get(v.outer_base as usize + at).filter(|o| o.place as usize == at)
    }

    /// Where backend `number` would be in the records of VIP `v`'s group (it may be a hole).
    #[inline(always)]
    fn place_of_number(&self, v: &LaneVip, number: u32) -> Option<usize> {
        if v.hashed {
            self.numbers.find(v.number_lo, v.number_span, number)
        } else {
            let j = number.wrapping_sub(v.number_lo);
            (j < v.number_span).then_some(j as usize)
        }
    }

    /// Where backend `index` of `pool` (VIP `v`'s) is in the records of `v`'s group.
    #[inline(always)]
    fn place_of_index(&self, v: &LaneVip, pool: &Pool, index: usize) -> Option<usize> {
        if v.hashed {
            Some(index)
        } else {
            Some(pool.backends().get(index)?.number.wrapping_sub(v.number_lo) as usize)
        }
    }

    /// [`outer_of_number`](Lane::outer_of_number) for an IPv6 VIP over IPIP.
    #[inline(always)]
    pub(crate) fn outer6_of_number(&self, v: &LaneVip, number: u32) -> Option<&Outer6> {
        let at = self.place_of_number(v, number)?;
        self.outer6.get((v.outer6_base as usize).wrapping_add(at)).filter(|o| o.place as usize == at)
    }

    /// [`outer_of_index`](Lane::outer_of_index) for an IPv6 VIP over IPIP.
    #[inline(always)]
    pub(crate) fn outer6_of_index(&self, v: &LaneVip, pool: &Pool, index: usize) -> Option<&Outer6> {
        let at = self.place_of_index(v, pool, index)?;
        self.outer6.get((v.outer6_base as usize).wrapping_add(at))
    }

    /// The outer headers of backend `index` (Maglev's pick) of `pool`, the pool of VIP `v`.
    #[inline(always)]
    pub(crate) fn outer_of_index(&self, v: &LaneVip, pool: &Pool, index: usize) -> Option<&Outer> {
        let at = self.place_of_index(v, pool, index)?;
        self.outer.get(v.outer_base as usize + at)
    }

    /// The VIP lookup.
    pub fn vips(&self) -> &V4Vips {
        &self.vips
    }

    /// The memory the lane takes, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.vips.heap_bytes()
            + self.vips6.heap_bytes()
            + core::mem::size_of_val(&*self.vip)
            + core::mem::size_of_val(&*self.outer)
            + core::mem::size_of_val(&*self.outer6)
            + core::mem::size_of_val(&*self.numbers.slots)
    }
}

/// Backend number → index in the pool, for each pool whose numbers are too far apart to lay
/// its outer headers out by number: a map of its own per pool, open addressing, at most half
/// full, eight bytes a slot (one probe nearly always).
#[derive(Debug, Clone)]
struct Numbers {
    slots: Box<[NumberSlot]>,
}

#[derive(Debug, Clone, Copy)]
struct NumberSlot {
    /// `u32::MAX` marks an empty slot (a number is at most [`crate::flow::MAX_BACKEND`]).
    number: u32,
    index: u32,
}

const NO_NUMBER: NumberSlot = NumberSlot { number: u32::MAX, index: 0 };

impl Numbers {
    /// The maps of the pools `take` says, and per pool where its map starts and its mask
    /// ((0, 0) for the others).
    fn build(pools: &[Pool], take: impl Fn(usize) -> bool) -> (Numbers, Vec<(u32, u32)>) {
        let mut slots: Vec<NumberSlot> = Vec::new();
        let mut maps = Vec::with_capacity(pools.len());
        for (p, pool) in pools.iter().enumerate() {
            if !take(p) {
                maps.push((0, 0));
                continue;
            }
            let (base, n) = (slots.len(), (2 * pool.backends().len()).next_power_of_two());
            slots.resize(base + n, NO_NUMBER);
            for (i, b) in pool.backends().iter().enumerate() {
                let mut j = home(u64::from(b.number), n - 1);
                while slots[base + j].number != u32::MAX {
                    j = (j + 1) & (n - 1);
                }
                slots[base + j] = NumberSlot { number: b.number, index: i as u32 };
            }
            maps.push((base as u32, (n - 1) as u32));
        }
        (Numbers { slots: slots.into_boxed_slice() }, maps)
    }

    /// The index of `number` in the pool whose map starts at `base` with mask `mask`.
    #[inline(always)]
    fn find(&self, base: u32, mask: u32, number: u32) -> Option<usize> {
        let (base, mask) = (base as usize, mask as usize);
        let mut j = home(u64::from(number), mask);
        loop {
            let s = self.slots.get(base + j)?;
            if s.number == number {
                return Some(s.index as usize);
            }
            if s.number == u32::MAX {
                return None;
            }
            j = (j + 1) & mask;
        }
    }
}

/// The VIPs of IPv4 addresses, for TCP and UDP, with the lookup order of
/// [`crate::table::Snapshot::find_vip`] resolved in advance: one probe by address answers a packet to an
/// address whose VIPs take any port, and one more by port where some take single ports.
#[derive(Debug, Clone)]
pub struct V4Vips {
    /// By address, open addressing (`addr_mask`); or, when `span` is not 0, the slot of
    /// address `lo + i` at `addrs[i]` for every `i < span` (VIPs close together, as a
    /// VIP subnet's are: no hashing and no probing).
    addrs: Box<[AddrSlot]>,
    ports: Box<[PortSlot]>,
    addr_mask: usize,
    port_mask: usize,
    lo: u32,
    span: u32,
}

/// An address's answers without a port: per kind (TCP, UDP), the VIP that takes the
/// packet when no single-port VIP does, with [`BY_PORT`] set when single-port VIPs need
/// a probe first.
#[derive(Debug, Clone, Copy)]
struct AddrSlot {
    /// `addr | 1 << 32`; 0 marks an empty slot.
    key: u64,
    any_port: [u32; 2],
}

/// A (address, kind, port) that some single-port VIP names, and the VIP that takes it.
#[derive(Debug, Clone, Copy)]
struct PortSlot {
    /// [`port_key`]; 0 marks an empty slot.
    key: u64,
    vip: u32,
}

/// No VIP (a snapshot has far fewer than 2^31).
const NONE: u32 = u32::MAX >> 1;
/// In [`AddrSlot::any_port`]: some VIP of the address takes single ports of that kind.
const BY_PORT: u32 = 1 << 31;
const EMPTY_ADDR: AddrSlot = AddrSlot { key: 0, any_port: [NONE; 2] };

/// What [`crate::table::Snapshot::find_vip`] answers for the TCP and UDP packets to `addr`, whose VIPs
/// are `here` (protocol and port of each): per kind, the VIP of a port no single-port VIP
/// names, with [`BY_PORT`] set where some do; and each (kind, named port, VIP).
fn resolve(
    src: &LaneSource<'_>,
    addr: IpAddr,
    here: &[(VipProtocol, Option<u16>)],
) -> ([u32; 2], Vec<(usize, u16, u32)>) {
    let mut any_port = [NONE; 2];
    let mut named = Vec::new();
    for (kind, (protocol, vip_protocol)) in
        [(IpProtocol::Tcp, VipProtocol::Tcp), (IpProtocol::Udp, VipProtocol::Udp)].into_iter().enumerate()
    {
        let mut ports: Vec<u16> = here
            .iter()
            .filter(|(p, _)| *p == vip_protocol || *p == VipProtocol::Any)
            .filter_map(|&(_, port)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let find = |port: u16| (src.find_vip)(addr, protocol, port).unwrap_or(NONE);
        // A port no single-port VIP names gets the answer of any such port.
        any_port[kind] = (0..=u16::MAX).find(|p| ports.binary_search(p).is_err()).map_or(NONE, find);
        if !ports.is_empty() {
            any_port[kind] |= BY_PORT;
        }
        named.extend(ports.into_iter().map(|p| (kind, p, find(p))));
    }
    (any_port, named)
}

#[inline(always)]
fn port_key(addr: u32, kind: usize, port: u16) -> u64 {
    1 << 63 | (kind as u64) << 48 | u64::from(port) << 32 | u64::from(addr)
}

#[inline(always)]
fn home(key: u64, mask: usize) -> usize {
    // Keys come from the config, not from packets: a multiplicative hash will do.
    (key ^ key >> 29).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize >> 20 & mask
}

/// Slots for `n` keys at most a quarter full, so that a probe nearly always ends at its
/// first slot and always at an empty one.
fn slots_for(n: usize) -> usize {
    (n * 4).max(8).next_power_of_two()
}

/// The VIPs of `src` by address (those `key` gives one, in its order): the (protocol,
/// port) of each.
fn by_addr<K: Ord>(
    src: &LaneSource<'_>,
    key: impl Fn(IpAddr) -> Option<K>,
) -> std::collections::BTreeMap<K, Vec<(VipProtocol, Option<u16>)>> {
    let mut by_addr: std::collections::BTreeMap<K, Vec<_>> = std::collections::BTreeMap::new();
    for v in src.vips {
        if let Some(k) = key(v.addr) {
            by_addr.entry(k).or_default().push((v.protocol, v.port));
        }
    }
    by_addr
}

impl V4Vips {
    /// No VIPs.
    pub fn empty() -> V4Vips {
        V4Vips {
            addrs: vec![EMPTY_ADDR; 8].into_boxed_slice(),
            ports: vec![PortSlot { key: 0, vip: NONE }; 8].into_boxed_slice(),
            addr_mask: 7,
            port_mask: 7,
            lo: 0,
            span: 0,
        }
    }

    /// The IPv4 VIPs of `src`, resolved with its own lookup.
    pub fn build(src: &LaneSource<'_>) -> V4Vips {
        let by_addr = by_addr(src, |a| match a {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        });
        let mut port_entries: Vec<(u64, u32)> = Vec::new();
        let mut addr_entries: Vec<AddrSlot> = Vec::new();
        for (&a, here) in &by_addr {
            let (any_port, named) = resolve(src, IpAddr::V4(a.into()), here);
            port_entries.extend(named.into_iter().map(|(kind, p, vip)| (port_key(a, kind, p), vip)));
            addr_entries.push(AddrSlot { key: 1 << 32 | u64::from(a), any_port });
        }
        // Addresses close together (at most 4 slots an address, 64 more): direct.
        let (lo, hi) =
            (by_addr.keys().next().copied().unwrap_or(0), by_addr.keys().last().copied().unwrap_or(0));
        let span = u64::from(hi - lo) + 1;
        let direct = !addr_entries.is_empty() && span <= 4 * addr_entries.len() as u64 + 64;
        let n = if direct { span as usize } else { slots_for(addr_entries.len()) };
        let mut addrs = vec![EMPTY_ADDR; n].into_boxed_slice();
        for s in addr_entries {
            if direct {
                addrs[(s.key as u32 - lo) as usize] = s;
                continue;
            }
            let mut i = home(s.key, n - 1);
            while addrs[i].key != 0 {
                i = (i + 1) & (n - 1);
            }
            addrs[i] = s;
        }
        let m = slots_for(port_entries.len());
        let mut ports = vec![PortSlot { key: 0, vip: NONE }; m].into_boxed_slice();
        for (key, vip) in port_entries {
            let mut i = home(key, m - 1);
            while ports[i].key != 0 {
                i = (i + 1) & (m - 1);
            }
            ports[i] = PortSlot { key, vip };
        }
        let (lo, span) = if direct { (lo, span as u32) } else { (0, 0) };
        V4Vips { addrs, ports, addr_mask: n - 1, port_mask: m - 1, lo, span }
    }

    /// The VIP (its index in [`crate::table::Snapshot::vips`]) of a packet to `addr:port` over TCP
    /// (`udp` false) or UDP: what [`crate::table::Snapshot::find_vip`] answers.
    #[inline(always)]
    pub fn find(&self, addr: u32, udp: bool, port: u16) -> Option<u32> {
        let kind = usize::from(udp);
        let key = 1 << 32 | u64::from(addr);
        let slot = if self.span != 0 {
            // Addresses in the range without VIPs have empty slots, whose key is 0.
            let s = self.addrs.get(addr.wrapping_sub(self.lo) as usize)?;
            if s.key != key {
                return None;
            }
            s
        } else {
            let mut i = home(key, self.addr_mask);
            loop {
                let s = self.addrs.get(i)?;
                if s.key == key {
                    break s;
                }
                if s.key == 0 {
                    return None;
                }
                i = (i + 1) & self.addr_mask;
            }
        };
        let any_port = slot.any_port[kind];
        if any_port & BY_PORT != 0 {
            let key = port_key(addr, kind, port);
            let mut j = home(key, self.port_mask);
            loop {
                let p = self.ports.get(j)?;
                if p.key == key {
                    return (p.vip != NONE).then_some(p.vip);
                }
                if p.key == 0 {
                    break;
                }
                j = (j + 1) & self.port_mask;
            }
        }
        let v = any_port & !BY_PORT;
        (v != NONE).then_some(v)
    }

    /// The memory the tables take, in bytes.
    pub fn heap_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.addrs) + core::mem::size_of_val(&*self.ports)
    }

    /// Whether addresses index the table directly.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.span != 0
    }
}

/// The fixed part of an IPv6-in-IPv6 header block, as the general path writes it (traffic
/// class, flow label and payload length left 0), at the end of the block.
fn outer6_header(
    mac: crate::wire::EthernetAddress,
    next_hop: crate::wire::EthernetAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> [u8; BLOCK6] {
    let mut h = [0u8; BLOCK6];
    let (l2, ip) = h[BLOCK6 - OUTER6_LEN..].split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr { src_addr: mac, dst_addr: next_hop, ethertype: EtherType::Ipv6 }
        .emit(&mut ethernet::Frame::new_unchecked(l2));
    ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Ipv6,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(ip));
    h
}

/// The VIPs of IPv6 addresses, for TCP and UDP, with the lookup order of
/// [`crate::table::Snapshot::find_vip`] resolved in advance, as [`V4Vips`] does for IPv4 (hashed only:
/// IPv6 VIPs need not lie close together).
#[derive(Debug, Clone)]
pub struct V6Vips {
    /// By address, open addressing, at most a quarter full.
    addrs: Box<[AddrSlot6]>,
    /// By (address, kind, port).
    ports: Box<[PortSlot6]>,
}

/// As [`AddrSlot`], keyed by an IPv6 address.
#[derive(Debug, Clone, Copy)]
struct AddrSlot6 {
    addr: u128,
    /// Whether the slot holds an address.
    used: bool,
    any_port: [u32; 2],
}

/// As [`PortSlot`]: `kind_port` is `1 << 31 | kind << 16 | port` (0 marks an empty slot).
#[derive(Debug, Clone, Copy)]
struct PortSlot6 {
    addr: u128,
    kind_port: u32,
    vip: u32,
}

const EMPTY_ADDR6: AddrSlot6 = AddrSlot6 { addr: 0, used: false, any_port: [NONE; 2] };
const EMPTY_PORT6: PortSlot6 = PortSlot6 { addr: 0, kind_port: 0, vip: NONE };

#[inline(always)]
fn home6(addr: u128, extra: u32, mask: usize) -> usize {
    home((addr as u64) ^ ((addr >> 64) as u64).rotate_left(29) ^ u64::from(extra) << 40, mask)
}

impl V6Vips {
    /// The IPv6 VIPs of `src`, resolved with its own lookup.
    pub fn build(src: &LaneSource<'_>) -> V6Vips {
        let by_addr = by_addr(src, |a| match a {
            IpAddr::V6(a) => Some(u128::from(a)),
            IpAddr::V4(_) => None,
        });
        let slots = by_addr
            .iter()
            .map(|(&a, here)| {
                let (any_port, named) = resolve(src, IpAddr::V6(a.into()), here);
                let ports = named.into_iter().map(|(kind, p, vip)| ((kind as u32) << 16 | u32::from(p), vip));
                (AddrSlot6 { addr: a, used: true, any_port }, ports.collect())
            })
            .collect();
        V6Vips::build_from(slots)
    }

    fn build_from(slots: Vec<(AddrSlot6, Vec<(u32, u32)>)>) -> V6Vips {
        let n = slots_for(slots.len());
        let m = slots_for(slots.iter().map(|s| s.1.len()).sum());
        let mut addrs = vec![EMPTY_ADDR6; n].into_boxed_slice();
        let mut ports = vec![EMPTY_PORT6; m].into_boxed_slice();
        for (slot, named) in slots {
            let mut i = home6(slot.addr, 0, n - 1);
            while addrs[i].used {
                i = (i + 1) & (n - 1);
            }
            addrs[i] = slot;
            for (kind_port, vip) in named {
                let kind_port = 1 << 31 | kind_port;
                let mut j = home6(slot.addr, kind_port, m - 1);
                while ports[j].kind_port != 0 {
                    j = (j + 1) & (m - 1);
                }
                ports[j] = PortSlot6 { addr: slot.addr, kind_port, vip };
            }
        }
        V6Vips { addrs, ports }
    }

    /// The VIP (its index in [`crate::table::Snapshot::vips`]) of a packet to `addr:port` over TCP
    /// (`udp` false) or UDP: what [`crate::table::Snapshot::find_vip`] answers.
    #[inline(always)]
    pub fn find(&self, addr: u128, udp: bool, port: u16) -> Option<u32> {
        let kind = usize::from(udp);
        let mask = self.addrs.len() - 1;
        let mut i = home6(addr, 0, mask);
        let slot = loop {
            let s = self.addrs.get(i)?;
            if !s.used {
                return None;
            }
            if s.addr == addr {
                break s;
            }
            i = (i + 1) & mask;
        };
        let any_port = slot.any_port[kind];
        if any_port & BY_PORT != 0 {
            let kind_port = 1 << 31 | (kind as u32) << 16 | u32::from(port);
            let mask = self.ports.len() - 1;
            let mut j = home6(addr, kind_port, mask);
            loop {
                let p = self.ports.get(j)?;
                if p.kind_port == kind_port && p.addr == addr {
                    return (p.vip != NONE).then_some(p.vip);
                }
                if p.kind_port == 0 {
                    break;
                }
                j = (j + 1) & mask;
            }
        }
        let v = any_port & !BY_PORT;
        (v != NONE).then_some(v)
    }

    /// The memory the tables take, in bytes.
    pub fn heap_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.addrs) + core::mem::size_of_val(&*self.ports)
    }
}

/// What the lane learns of a packet before its flow-table windows arrive from memory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Express {
    /// The flow table's hash and check of the 5-tuple.
    pub(crate) hash: u64,
    pub(crate) check: u64,
    /// The VIP's index.
    pub(crate) vip: u32,
    /// Length of the IP packet.
    ip_len: u16,
    class: TimeoutClass,
    /// DSCP/ECN, copied to the outer header.
    tos: u8,
    /// The DF bit where it sits in its byte (0x40 or 0), copied to the outer header.
    dont_frag: u8,
}

#[cfg(test)]
impl Express {
    pub(crate) fn ip_len(&self) -> u16 {
        self.ip_len
    }
}

/// The Maglev hash (with the snapshot's `seed`) of a frame [`classify`] took.
#[inline(always)]
pub(crate) fn maglev_hash(seed: u64, f: &[u8]) -> Option<u32> {
    let h = f.first_chunk::<{ L4 + 4 }>()?;
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let (src, dst, protocol) = (be32(L3 + 12), be32(L3 + 16), h[L3 + 9]);
    Some(crate::maglev::flow_hash_v4(seed, src, dst, protocol, be16(L4), be16(L4 + 2)))
}

/// Offsets in the frame: Ethernet, then a 20-byte IPv4 header.
pub(crate) const L3: usize = 14;
pub(crate) const L4: usize = L3 + 20;

/// Reads a frame at fixed offsets: an untagged Ethernet frame to `mac` (its six bytes,
/// little-endian, in a word) with an IPv4 header without options, not a fragment, TTL
/// above 0, carrying a whole TCP or UDP header, to a VIP. Anything else is `None`, and so
/// is a frame shorter than 54 bytes (a TCP header's worth: any frame off the wire, at least
/// 60 bytes, has it).
#[inline(always)]
pub(crate) fn classify(vips: &V4Vips, flows: &FlowTable, mac: u64, f: &[u8]) -> Option<Express> {
    let h = f.first_chunk::<{ L4 + 20 }>()?;
    let word = |at: usize| u64::from_le_bytes(*h[at..].first_chunk::<8>().unwrap_or(&[0; 8]));
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    // Destination MAC; EtherType 0x0800 and version 4 with a 20-byte header.
    if (word(0) ^ mac) & 0xffff_ffff_ffff != 0 || word(8) >> 32 & 0x00ff_ffff != 0x45_0008 {
        return None;
    }
    // Total length, identification, flags and fragment offset, TTL, protocol.
    let w = word(L3 + 2);
    let ip_len = usize::from((w as u16).swap_bytes());
    // Neither MF nor an offset; a TTL.
    if L3 + ip_len > f.len() || w & 0x0000_ff3f_0000_0000 != 0 || w & 0x00ff_0000_0000_0000 == 0 {
        return None;
    }
    let protocol = (w >> 56) as u8;
    let class = transport_class(protocol, &h[L4..], 20, ip_len)?;
    let (src, dst) = (be32(L3 + 12), be32(L3 + 16));
    let (sport, dport) = (be16(L4), be16(L4 + 2));
    let vip = vips.find(dst, protocol == 17, dport)?;
    let (hash, check) = flows.hash_check_v4(src, dst, protocol, sport, dport);
    let (tos, dont_frag) = (h[L3 + 1], h[L3 + 6] & 0x40);
    Some(Express { hash, check, vip, ip_len: ip_len as u16, class, tos, dont_frag })
}

/// The timeout class of a TCP (6) or UDP (17) header at the start of `l4`, whole and within
/// an IP length of `len` bytes, `header` of which come before `l4`: a TCP header of 20 bytes
/// at least and as long as its data offset says, closing with FIN or RST; a UDP header of 8
/// bytes at least and as long as its length says. `None` for anything else.
#[inline(always)]
fn transport_class(protocol: u8, l4: &[u8], header: usize, len: usize) -> Option<TimeoutClass> {
    match protocol {
        6 => {
            let t = l4.first_chunk::<20>()?;
            let doff = usize::from(t[12] >> 4) * 4;
            if doff < 20 || header + doff > len {
                return None;
            }
            Some(if t[13] & 0x05 != 0 { TimeoutClass::Closing } else { TimeoutClass::Tcp })
        }
        17 => {
            let u = l4.first_chunk::<8>()?;
            let udp_len = usize::from(u16::from_be_bytes([u[4], u[5]]));
            if udp_len < 8 || header + udp_len > len {
                return None;
            }
            Some(TimeoutClass::Udp)
        }
        _ => None,
    }
}

/// The flow key of a frame [`classify`] took (its addresses, protocol and ports at fixed
/// offsets).
#[inline(always)]
fn v4_key(f: &[u8]) -> Option<FlowKey> {
    let h = f.first_chunk::<{ L4 + 4 }>()?;
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    Some(FlowKey::new_v4(be32(L3 + 12), be32(L3 + 16), h[L3 + 9], be16(L4), be16(L4 + 2)))
}

/// Where the L4 header starts in a frame the IPv6 lane takes: Ethernet, then a 40-byte
/// IPv6 header without extension headers.
pub(crate) const L4_6: usize = L3 + ipv6::HEADER_LEN;

/// The source and destination addresses and the L4 ports of a frame [`classify_v6`] took.
#[inline(always)]
fn v6_tuple(f: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u8, u16, u16)> {
    let h = f.first_chunk::<{ L4_6 + 4 }>()?;
    let addr = |at: usize| h[at..].first_chunk::<16>().map(|a| Ipv6Addr::from(*a));
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    Some((addr(L3 + 8)?, addr(L3 + 24)?, h[L3 + 6], be16(L4_6), be16(L4_6 + 2)))
}

/// [`classify`] for IPv6: an untagged Ethernet frame to `mac` with an IPv6 header whose
/// next header is TCP or UDP (no extension headers), hop limit above 0, carrying a whole
/// TCP or UDP header, to a VIP, with the packet's Maglev hash (under `seed`), which every
/// packet needs for its flow label. Anything else is `None`.
#[inline(always)]
pub(crate) fn classify_v6(
    vips: &V6Vips,
    flows: &FlowTable,
    seed: u64,
    mac: u64,
    f: &[u8],
) -> Option<(Express, u32)> {
    let h = f.first_chunk::<{ L4_6 + 8 }>()?;
    let word = |at: usize| u64::from_le_bytes(*h[at..].first_chunk::<8>().unwrap_or(&[0; 8]));
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    // Destination MAC; EtherType 0x86DD and version 6.
    if (word(0) ^ mac) & 0xffff_ffff_ffff != 0 || word(8) >> 32 & 0x00f0_ffff != 0x0060_dd86 {
        return None;
    }
    let payload_len = usize::from(be16(L3 + 4));
    let (next_header, hop_limit) = (h[L3 + 6], h[L3 + 7]);
    // (The lane's IP length is 16 bits: a payload of nearly 64 KiB goes the general way.)
    if L4_6 + payload_len > f.len()
        || hop_limit == 0
        || payload_len > usize::from(u16::MAX) - ipv6::HEADER_LEN
    {
        return None;
    }
    let class = transport_class(next_header, &f[L4_6..], 0, payload_len)?;
    let (src, dst, protocol, sport, dport) = v6_tuple(f)?;
    let vip = vips.find(u128::from(dst), protocol == 17, dport)?;
    let (src, dst) = (u128::from(src), u128::from(dst));
    let maglev = crate::maglev::flow_hash_v6(seed, src, dst, protocol, sport, dport);
    let (hash, check) = flows.hash_check_v6(src, dst, protocol, sport, dport);
    let tos = (be16(L3) >> 4) as u8;
    let ip_len = (ipv6::HEADER_LEN + payload_len) as u16;
    Some((Express { hash, check, vip, ip_len, class, tos, dont_frag: 0 }, maglev))
}

/// What the lane changes as it forwards a packet: the worker's flow table, counters and
/// outer IPv4 identification.
pub(crate) struct LaneState<'a> {
    /// The worker's flow table.
    pub(crate) flows: &'a mut FlowTable,
    /// The worker's counters.
    pub(crate) counters: &'a mut Counters,
    /// The last outer IPv4 identification given.
    pub(crate) ip_ident: &'a mut u16,
    /// Where new flows are announced to the fleet, if anywhere.
    pub(crate) announce: Option<&'a Announcer>,
}

impl LaneState<'_> {
    /// Announces the new flow `key` of pair `number`, when the fleet wants new flows.
    #[inline(always)]
    fn announce(&mut self, key: impl FnOnce() -> Option<FlowKey>, number: u32) {
        crate::announce::announce(self.announce, self.counters, key, number);
    }

    /// The flow counts of a packet the lane finishes (`known` flow, or a new one; `moved`
    /// off a backend that is down or gone), and a new flow remembered (`found` is what the
    /// lookup said, `number` the backend).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn count(
        &mut self,
        x: &Express,
        known: bool,
        moved: bool,
        found: Result<u32, Absent>,
        number: u32,
        now: u64,
        timeouts: &IdleTimeouts,
    ) {
        if moved {
            self.counters.flow_moved += 1;
        }
        if known {
            self.counters.flow_hits += 1;
        } else {
            self.counters.flow_misses += 1;
            // A RST or FIN of an unknown flow opens none.
            if x.class != TimeoutClass::Closing {
                let absent = found == Err(Absent(true));
                let flow = NewFlow { check: x.check, hash: x.hash, backend: number, class: x.class };
                if self.flows.remember(absent, flow, now, timeouts) == Inserted::Evicted {
                    self.counters.flow_table_full += 1;
                }
            }
        }
    }
}

impl Lane {
    /// The lane's second half: the flow, the backend, the tunnel. `Some((traffic slot,
    /// length))` when the packet is forwarded (the caller counts it in its VIP's and
    /// backend's traffic, [`crate::table::Vip::counter_base`] + index). `None` (with
    /// nothing changed but the flow's last-seen time) leaves the packet to the general path:
    /// a packet too big for the tunnel, an IPv6 backend, a pool without backends, a buffer
    /// with less room in front of its IP header than the lane's header block
    /// ([`BLOCK`], 48 bytes: 34 in front of the frame).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        pools: &[Pool],
        seed: u64,
        mut st: LaneState<'_>,
        now: u64,
        buf: &mut PacketBuf,
        x: &Express,
        hash: Option<u32>,
    ) -> Option<(usize, usize)> {
        let lane = self;
        let v = lane.vip.get(x.vip as usize)?;
        let ip_len = usize::from(x.ip_len);
        // The tunnel's headers are written as one block in front of the IP header.
        if ip_len + v.overhead as usize > lane.mtu || buf.headroom() + L3 < BLOCK {
            return None;
        }
        let mut moved = false;
        let mut known: Option<(usize, &Outer)> = None;
        let found = st.flows.lookup_absent(x.check, x.hash, now, &lane.timeouts, Some(x.class));
        if let Ok(number) = found {
            match lane.outer_of_number(v, number) {
                Some(o) if o.taken => known = Some((usize::from(o.index), o)),
                // Up, but not the lane's to send to.
                Some(o) if !o.down => return None,
                // Down, or no longer in the pool.
                _ => moved = true,
            }
        }
        let (tos, dont_frag) = (x.tos, x.dont_frag);
        // The Maglev hash: for a new flow, and for GUE's source port (`hash` when the
        // caller computed it after the first pass, as it does while new flows are many).
        let flow_hash = |buf: &PacketBuf| match hash {
            Some(h) => Some(h),
            None => maglev_hash(seed, buf.as_slice()),
        };
        // (`number`: what a new flow is remembered by.)
        let (index, outer, hash, number) = match known {
            Some((i, o)) => (i, o, if usize::from(o.len) != OUTER_MAX { 0 } else { flow_hash(buf)? }, 0),
            None => {
                let hash = flow_hash(buf)?;
                let pool = pools.get(v.pool as usize)?;
                let (i, b) = pool.pick(hash)?;
                let outer = lane.outer_of_index(v, pool, usize::from(i))?;
                if outer.len == 0 {
                    return None;
                }
                (usize::from(i), outer, hash, b.number)
            }
        };
        // From here on the lane finishes the packet.
        st.count(x, known.is_some(), moved, found, number, now, &lane.timeouts);
        if known.is_none() && x.class != TimeoutClass::Closing {
            st.announce(|| v4_key(buf.as_slice()), number);
        }
        // Cannot refuse: the first pass checked that the frame holds the IP packet, the top
        // of this function that the headroom holds the block.
        let len = usize::from(outer.len);
        let block = buf.reframe::<{ BLOCK }>(L3, ip_len, len)?;
        *block = outer.header;
        let ident = st.ip_ident.wrapping_add(1);
        *st.ip_ident = ident;
        let total_len = (len - ethernet::HEADER_LEN + ip_len) as u16;
        let ip =
            block.get_mut(BLOCK - len + ethernet::HEADER_LEN..)?.first_chunk_mut::<{ ipv4::HEADER_LEN }>()?;
        ip[1] = tos;
        ip[2..4].copy_from_slice(&total_len.to_be_bytes());
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
        ip[6] = dont_frag;
        let mut sum = outer.sum
            + u32::from(tos)
            + u32::from(total_len)
            + u32::from(ident)
            + (u32::from(dont_frag) << 8);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        if len == OUTER_MAX {
            // GUE: the source port from the flow, the length covering GUE's header and the
            // inner packet.
            const UDP_AT: usize = BLOCK - OUTER_MAX + ethernet::HEADER_LEN + ipv4::HEADER_LEN;
            let udp = block.get_mut(UDP_AT..)?.first_chunk_mut::<{ udp::HEADER_LEN }>()?;
            udp[0..2].copy_from_slice(&gue_source_port(hash).to_be_bytes());
            udp[4..6]
                .copy_from_slice(&((udp::HEADER_LEN + gue::BASE_HEADER_LEN + ip_len) as u16).to_be_bytes());
        }
        Some((v.counter_base as usize + index, len + ip_len))
    }

    /// [`forward`](Lane::forward) for IPv6 (`hash` is the packet's Maglev hash, from the
    /// first pass): an IPv6 VIP over IPIP to an IPv6 backend (IPv6 in IPv6). The rest
    /// (other tunnels, IPv4 backends, a packet too big) is left to the general path, as
    /// there.
    #[inline(always)]
    pub(crate) fn forward_v6(
        &self,
        pools: &[Pool],
        mut st: LaneState<'_>,
        now: u64,
        buf: &mut PacketBuf,
        x: &Express,
        hash: u32,
    ) -> Option<(usize, usize)> {
        let lane = self;
        let v = lane.vip.get(x.vip as usize)?;
        let ip_len = usize::from(x.ip_len);
        if v.outer6_base == NO_OUTER6 || ip_len + ipv6::HEADER_LEN > lane.mtu || buf.headroom() + L3 < BLOCK6
        {
            return None;
        }
        // Every packet's flow label comes from the Maglev hash (`hash`, from the first pass).
        let mut moved = false;
        let mut known: Option<&Outer6> = None;
        let found = st.flows.lookup_absent(x.check, x.hash, now, &lane.timeouts, Some(x.class));
        if let Ok(number) = found {
            match lane.outer6_of_number(v, number) {
                Some(o) if o.taken => known = Some(o),
                Some(o) if !o.down => return None,
                _ => moved = true,
            }
        }
        let (outer, number) = match known {
            Some(o) => (o, 0),
            None => {
                let pool = pools.get(v.pool as usize)?;
                let (i, b) = pool.pick(hash)?;
                let outer = lane.outer6_of_index(v, pool, usize::from(i))?;
                if !outer.taken {
                    return None;
                }
                (outer, b.number)
            }
        };
        st.count(x, known.is_some(), moved, found, number, now, &lane.timeouts);
        if known.is_none() && x.class != TimeoutClass::Closing {
            let key = || {
                let (src, dst, protocol, sport, dport) = v6_tuple(buf.as_slice())?;
                Some(FlowKey::new(src.into(), dst.into(), protocol, sport, dport))
            };
            st.announce(key, number);
        }
        let block = buf.reframe::<{ BLOCK6 }>(L3, ip_len, OUTER6_LEN)?;
        *block = outer.header;
        let ip = block.get_mut(BLOCK6 - ipv6::HEADER_LEN..)?.first_chunk_mut::<8>()?;
        let first = 6 << 28 | u32::from(x.tos) << 20 | (hash & 0x000f_ffff);
        ip[0..4].copy_from_slice(&first.to_be_bytes());
        ip[4..6].copy_from_slice(&(ip_len as u16).to_be_bytes());
        Some((v.counter_base as usize + usize::from(outer.index), OUTER6_LEN + ip_len))
    }
}
