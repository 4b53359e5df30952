//! The forwarding snapshot: everything a worker needs to forward a packet, immutable.
//!
//! A [`Snapshot`] is built on the control side from a config (Maglev rings included) and
//! handed to workers whole; a worker never changes it and never waits for it. It holds:
//! - the port's own identity (MAC, next hop, addresses answered for ARP/ND/ping);
//! - the VIP subnets, in a longest-prefix table whose lookup cost depends on the number of
//!   distinct prefix lengths (at most 33 or 129), not on the number of subnets;
//! - the VIPs, in an open-addressing table keyed by (address, protocol, port), with
//!   wildcard entries for "any port" and "any protocol", and a per-address record that says
//!   which of those exist, so that most lookups are one probe;
//! - the pools ([`crate::pool`]), one per VIP with the numbers its flows remember
//!   ([`crate::numbering`]), around a Maglev ring built once per distinct backend set, so
//!   that a thousand VIP:port pairs on one backend set cost one ring;
//! - tunnel sources, MTU, GUE port, hash seed, flow timeouts and a generation number.
//!
//! Lookups here never allocate and never panic on any address or port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use crate::express::{Lane, LaneSource};
use crate::maglev::{self, FastMap, MaglevError, Ring};
use crate::numbering::{Numbering, Target};
use crate::pool::build_ring;
use crate::wire::{EthernetAddress, IpProtocol};

pub use crate::encap::Tunnel;
pub use crate::flow::Timeouts;
pub use crate::pool::{BackendSpec, BackendState, Pool, PoolBackend};
pub use crate::port::Interface;
pub use crate::vip::{vip_name, Encap, Vip, VipId, VipProtocol};

/// What the snapshot is built from.
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    /// Generation number.
    pub generation: u64,
    /// The fleet-wide Maglev seed.
    pub hash_seed: u64,
    /// Ring size, one of [`maglev::TABLE_SIZES`].
    pub table_size: u32,
    /// Tunnel parameters.
    pub tunnel: Tunnel,
    /// Flow idle timeouts.
    pub timeouts: Timeouts,
    /// Our port.
    pub interface: Interface,
    /// VIP subnets: (address, prefix length).
    pub subnets: Vec<(IpAddr, u8)>,
    /// VIPs with their backends.
    pub vips: Vec<VipSpec>,
}

impl SnapshotSpec {
    /// A spec in the documentation ranges for tests, benchmarks and examples, with no VIP
    /// yet: our MAC 02:00:00:00:00:01 at 198.51.100.1 and 2001:db8:ffff::1 (the tunnel's
    /// sources as well), the router at 02:00:00:00:00:fe, the VIP subnets 203.0.113.0/24
    /// and 2001:db8:ab::/48, MTU 1500, GUE port 6080, hash seed 24301, M = 65537, the
    /// default timeouts, generation 1. Change what a case needs with struct update syntax.
    pub fn example() -> SnapshotSpec {
        let (v4, v6) = (Ipv4Addr::new(198, 51, 100, 1), Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1));
        SnapshotSpec {
            generation: 1,
            hash_seed: 24301,
            table_size: 65537,
            tunnel: Tunnel { source_v4: Some(v4), source_v6: Some(v6), mtu: 1500, gue_port: 6080 },
            timeouts: Timeouts::default(),
            interface: Interface {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                next_hop_mac: EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
                addresses: vec![IpAddr::V4(v4), IpAddr::V6(v6)],
            },
            subnets: vec![
                (IpAddr::V4(Ipv4Addr::new(203, 0, 113, 0)), 24),
                (IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xab, 0, 0, 0, 0, 0)), 48),
            ],
            vips: Vec::new(),
        }
    }
}

/// A VIP as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    /// Address.
    pub addr: IpAddr,
    /// Port, or `None` for any.
    pub port: Option<u16>,
    /// Protocol.
    pub protocol: VipProtocol,
    /// Tunnel.
    pub encap: Encap,
    /// Backends.
    pub backends: Vec<BackendSpec>,
}

/// Why a snapshot could not be built. Config validation reports these with positions;
/// here they are the last line of defence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A pool's ring could not be built.
    #[error("VIP {vip}: {source}")]
    Maglev {
        /// Which VIP.
        vip: String,
        /// Why.
        source: MaglevError,
    },
    /// Two VIPs with the same address, protocol and port.
    #[error("VIP {0} is configured twice")]
    DuplicateVip(String),
    /// A prefix longer than its family allows.
    #[error("prefix {0}/{1} is longer than the address")]
    BadPrefix(IpAddr, u8),
    /// A ring was not built (a builder thread failed).
    #[error("the Maglev rings could not all be built")]
    Incomplete,
    /// Every number is taken: more distinct (VIP, backend) pairs than the flow table can
    /// name have been configured since the process started.
    #[error("more than {} distinct (VIP, backend) pairs were configured since vipgate started", crate::flow::MAX_BACKEND + 1)]
    TooManyBackends,
}

/// A prefix table: per distinct prefix length, a hash set of masked prefixes.
#[derive(Debug, Clone, Default)]
struct Lpm {
    /// Lengths present, longest first, with their prefixes.
    by_len: Vec<(u8, HashMap<u128, u32>)>,
}

impl Lpm {
    fn insert(&mut self, bits: u128, len: u8, width: u8, value: u32) {
        let key = mask(bits, len, width);
        match self.by_len.iter_mut().find(|(l, _)| *l == len) {
            Some((_, map)) => {
                map.insert(key, value);
            }
            None => {
                let mut map = HashMap::new();
                map.insert(key, value);
                self.by_len.push((len, map));
                self.by_len.sort_by_key(|e| core::cmp::Reverse(e.0));
            }
        }
    }

    #[inline]
    fn lookup(&self, bits: u128, width: u8) -> Option<u32> {
        self.by_len.iter().find_map(|(len, map)| map.get(&mask(bits, *len, width)).copied())
    }
}

#[inline]
fn mask(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let shift = u32::from(width - len);
        (bits >> shift) << shift
    }
}

/// A VIP map key: the address as 128 bits (IPv4 mapped) and `protocol << 16 | port`
/// (0 for "any"), hashed as one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VipKey(u128, u32);

impl core::hash::Hash for VipKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((self.0 as u64) ^ ((self.0 >> 64) as u64).rotate_left(21) ^ u64::from(self.1) << 40);
    }
}

#[inline]
fn vip_key(addr: IpAddr, protocol: u8, port: u16) -> VipKey {
    let bits = match addr {
        // The IPv4-mapped form ::ffff:a.b.c.d, computed without going through bytes.
        IpAddr::V4(a) => 0xffff_u128 << 32 | u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    VipKey(bits, u32::from(protocol) << 16 | u32::from(port))
}

/// The VIP lookup table: open addressing with linear probing over a power-of-two array at
/// most a quarter full, so a probe is one hash and, nearly always, one entry. Keys come
/// from the config, so a fixed hash is fine here.
#[derive(Debug, Clone)]
struct VipTable {
    slots: Box<[VipSlot]>,
    mask: usize,
}

#[derive(Debug, Clone, Copy)]
struct VipSlot {
    addr: u128,
    proto_port: u32,
    /// Index into the VIP list; `u32::MAX` marks an empty slot.
    vip: u32,
}

const EMPTY: u32 = u32::MAX;

/// What kinds of VIP one address has, by protocol (TCP, UDP, any): the VIP taking any port
/// (or [`EMPTY`]), and whether some VIP takes a single port.
#[derive(Debug, Clone, Copy)]
struct AddrRecord {
    wildcard: [u32; 3],
    has_ports: [bool; 3],
}

impl Default for AddrRecord {
    fn default() -> Self {
        AddrRecord { wildcard: [EMPTY; 3], has_ports: [false; 3] }
    }
}

impl VipTable {
    fn new(entries: &[(VipKey, u32)]) -> VipTable {
        let n = (entries.len() * 4).max(8).next_power_of_two();
        let mut t = VipTable {
            slots: vec![VipSlot { addr: 0, proto_port: 0, vip: EMPTY }; n].into_boxed_slice(),
            mask: n - 1,
        };
        for &(k, v) in entries {
            let mut i = t.home(&k);
            while t.slots[i].vip != EMPTY {
                i = (i + 1) & t.mask;
            }
            t.slots[i] = VipSlot { addr: k.0, proto_port: k.1, vip: v };
        }
        t
    }

    #[inline(always)]
    fn home(&self, k: &VipKey) -> usize {
        let w = (k.0 as u64) ^ ((k.0 >> 64) as u64).rotate_left(21) ^ u64::from(k.1) << 40;
        maglev::fmix64(w) as usize & self.mask
    }

    #[inline]
    fn get(&self, k: VipKey) -> Option<u32> {
        let mut i = self.home(&k);
        loop {
            let s = self.slots.get(i)?;
            if s.vip == EMPTY {
                return None;
            }
            if s.addr == k.0 && s.proto_port == k.1 {
                return Some(s.vip);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// The immutable forwarding state of one generation.
#[derive(Debug, Clone)]
pub struct Snapshot {
    generation: u64,
    hash_seed: u64,
    tunnel: Tunnel,
    timeouts: Timeouts,
    interface: Interface,
    subnets_v4: Lpm,
    subnets_v6: Lpm,
    vip_map: VipTable,
    /// Per VIP address, which kinds of VIP it has (see [`AddrRecord`]): one probe answers
    /// most lookups.
    addr_map: VipTable,
    addr_records: Vec<AddrRecord>,
    /// The VIP that fragments of (address, protocol) go to (see [`Snapshot::find_fragment_vip`]).
    fragment_map: HashMap<(IpAddr, u8), u32>,
    vip_addrs: hashbrown::HashSet<IpAddr>,
    vips: Vec<Vip>,
    /// One per VIP, in VIP order.
    pools: Vec<Pool>,
    /// The distinct backend sets as configured, sorted: what [`Snapshot::build_from`]
    /// matches.
    sets: Vec<Vec<BackendSpec>>,
    /// Each set's ring (the pools of its VIPs share its slots).
    set_rings: Vec<Option<Ring>>,
    table_size: u32,
    traffic_slots: usize,
    /// What the express lane reads.
    lane: Lane,
}

impl Snapshot {
    /// Builds the snapshot, numbering its (VIP, backend) pairs afresh: one pool per VIP,
    /// one ring per distinct backend set.
    pub fn build(spec: &SnapshotSpec) -> Result<Snapshot, TableError> {
        Snapshot::build_from(spec, None, &mut Numbering::new())
    }

    /// Builds the snapshot, numbering its (VIP, backend) pairs with `numbering` (so that a
    /// pair keeps the number the snapshots before gave it, and a flow keeps its backend),
    /// and taking from `previous` every ring whose backend set (weights and states
    /// included), hash seed and table size are unchanged, rather than building it again: a
    /// reload that changes a few VIPs builds a few rings. The result is the same as a
    /// build without `previous`.
    pub fn build_from(
        spec: &SnapshotSpec,
        previous: Option<&Snapshot>,
        numbering: &mut Numbering,
    ) -> Result<Snapshot, TableError> {
        Snapshot::build_with(spec, previous, 1, numbering)
    }

    /// [`Snapshot::build_from`], building the new rings on up to `threads` threads (the
    /// rings do not depend on each other, nor on the order they are built in).
    pub fn build_with(
        spec: &SnapshotSpec,
        previous: Option<&Snapshot>,
        threads: usize,
        numbering: &mut Numbering,
    ) -> Result<Snapshot, TableError> {
        let reusable: HashMap<&[BackendSpec], usize> = match previous {
            Some(p) if p.hash_seed == spec.hash_seed && p.table_size == spec.table_size => {
                p.sets.iter().enumerate().map(|(i, s)| (s.as_slice(), i)).collect()
            }
            _ => HashMap::new(),
        };
        let mut subnets_v4 = Lpm::default();
        let mut subnets_v6 = Lpm::default();
        for (i, &(addr, len)) in spec.subnets.iter().enumerate() {
            match addr {
                IpAddr::V4(a) if len <= 32 => subnets_v4.insert(u128::from(u32::from(a)), len, 32, i as u32),
                IpAddr::V6(a) if len <= 128 => subnets_v6.insert(u128::from(a), len, 128, i as u32),
                _ => return Err(TableError::BadPrefix(addr, len)),
            }
        }
        // The distinct backend sets, each with its ring: taken from `previous`, or built.
        let mut set_index: HashMap<Vec<BackendSpec>, u32> = HashMap::new();
        let mut sets: Vec<Vec<BackendSpec>> = Vec::new();
        let mut rings: Vec<Option<Option<Ring>>> = Vec::new();
        // Sets whose rings must be built: (set index, the first VIP that has it).
        let mut to_build: Vec<(usize, String)> = Vec::new();
        let mut set_of_vip: Vec<u32> = Vec::with_capacity(spec.vips.len());
        let mut vips = Vec::with_capacity(spec.vips.len());
        let mut vip_map: FastMap<VipKey, u32> = FastMap::default();
        let mut traffic_slots = 0usize;
        for v in &spec.vips {
            let name = vip_name(v.addr, v.protocol, v.port);
            let mut set = v.backends.clone();
            set.sort_by_key(|b| b.id);
            let s = match set_index.get(&set) {
                Some(&s) => s,
                None => {
                    let s = sets.len() as u32;
                    match (reusable.get(set.as_slice()), previous) {
                        (Some(&i), Some(prev)) => rings.push(Some(prev.set_rings[i].clone())),
                        _ => {
                            rings.push(None);
                            to_build.push((s as usize, name.clone()));
                        }
                    }
                    sets.push(set.clone());
                    set_index.insert(set, s);
                    s
                }
            };
            let key = vip_key(v.addr, v.protocol.number(), v.port.unwrap_or(0));
            if vip_map.insert(key, vips.len() as u32).is_some() {
                return Err(TableError::DuplicateVip(name));
            }
            let counter_base = traffic_slots as u32;
            traffic_slots += sets[s as usize].len();
            set_of_vip.push(s);
            vips.push(Vip {
                addr: v.addr,
                port: v.port,
                protocol: v.protocol,
                encap: v.encap,
                pool: vips.len() as u32,
                counter_base,
            });
        }
        // Build the new rings, on several threads when there are several to build.
        let build = |(s, name): &(usize, String)| {
            build_ring(&sets[*s], spec.hash_seed, spec.table_size)
                .map_err(|source| TableError::Maglev { vip: name.clone(), source })
        };
        let threads = threads.clamp(1, to_build.len().max(1));
        let built: Vec<Result<Option<Ring>, TableError>> = if threads == 1 {
            to_build.iter().map(build).collect()
        } else {
            let chunk = to_build.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = to_build
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || part.iter().map(build).collect::<Vec<_>>()))
                    .collect();
                // A builder thread cannot panic on a config's content; if one did, the
                // rings it owed are missing and the build fails like a bad table would.
                handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
            })
        };
        if built.len() != to_build.len() {
            return Err(TableError::Incomplete);
        }
        // Sparse rings (see `maglev::is_sparse`), in one line for the whole snapshot.
        let mut sparse: Option<(&str, usize, usize)> = None;
        for ((s, name), ring) in to_build.iter().zip(built) {
            let ring = ring?;
            let active = sets[*s].iter().filter(|b| b.state == BackendState::Active && b.weight > 0).count();
            if ring.is_some() && maglev::is_sparse(spec.table_size, active) {
                let (first, most, count) = sparse.unwrap_or((name, 0, 0));
                sparse = Some((first, most.max(active), count + 1));
            }
            rings[*s] = Some(ring);
        }
        if let Some((first, most, count)) = sparse {
            let (m, least) = (spec.table_size, maglev::SPARSE_FACTOR * most);
            let which = match count {
                1 => format!("table of {m} slots is sparse for the {most} backends of VIP {first}"),
                _ => format!("tables of {m} slots are sparse for {count} pools (the first for VIP {first}; up to {most} backends)"),
            };
            log::warn!("Maglev {which}: shares may differ by more than 1%; use at least {least} slots");
        }
        let set_rings: Vec<Option<Ring>> =
            rings.into_iter().map(|r| r.ok_or(TableError::Incomplete)).collect::<Result<_, _>>()?;
        // One pool per VIP: its set's ring, and the VIP's own numbers, given here in VIP
        // order and each VIP's in identity order, so that a config's new VIPs get their
        // numbers in a row, which the express lane turns back into indexes without a lookup.
        let pools: Vec<Pool> = vips
            .iter()
            .zip(&set_of_vip)
            .map(|(v, &s)| {
                let set = &sets[s as usize];
                let mut backends = Vec::with_capacity(set.len());
                for b in set {
                    let number = numbering
                        .number(Target { vip: v.id(), backend: b.id })
                        .ok_or(TableError::TooManyBackends)?;
                    backends.push(PoolBackend { id: b.id, weight: b.weight, state: b.state, number });
                }
                Ok(Pool::new(backends, set_rings[s as usize].clone()))
            })
            .collect::<Result<_, TableError>>()?;
        let fragment_map = fragment_vips(&vips, &set_of_vip);
        let entries: Vec<(VipKey, u32)> = vip_map.into_iter().collect();
        let vip_map = VipTable::new(&entries);
        let mut addr_index: FastMap<u128, u32> = FastMap::default();
        let mut addr_records: Vec<AddrRecord> = Vec::new();
        for &(VipKey(bits, proto_port), v) in &entries {
            let n = addr_records.len() as u32;
            let r = *addr_index.entry(bits).or_insert(n);
            if r == n {
                addr_records.push(AddrRecord::default());
            }
            let rec = &mut addr_records[r as usize];
            let (proto, port) = ((proto_port >> 16) as u8, proto_port & 0xffff);
            let kind = match proto {
                6 => 0,
                17 => 1,
                _ => 2,
            };
            if port == 0 {
                rec.wildcard[kind] = v;
            } else {
                rec.has_ports[kind] = true;
            }
        }
        let addr_map =
            VipTable::new(&addr_index.into_iter().map(|(bits, r)| (VipKey(bits, 0), r)).collect::<Vec<_>>());
        let vip_addrs = vips.iter().map(|v| v.addr).collect();
        let mut snap = Snapshot {
            generation: spec.generation,
            hash_seed: spec.hash_seed,
            tunnel: spec.tunnel,
            timeouts: spec.timeouts,
            interface: spec.interface.clone(),
            subnets_v4,
            subnets_v6,
            vip_map,
            addr_map,
            addr_records,
            fragment_map,
            vip_addrs,
            vips,
            pools,
            sets,
            set_rings,
            table_size: spec.table_size,
            traffic_slots,
            lane: Lane::empty(),
        };
        let find_vip = |addr, protocol, port| snap.find_vip(addr, protocol, port).map(|(i, _)| i);
        snap.lane = Lane::build(&LaneSource {
            vips: &snap.vips,
            pools: &snap.pools,
            sets: &set_of_vip,
            tunnel: &snap.tunnel,
            interface: &snap.interface,
            timeouts: &snap.timeouts,
            find_vip: &find_vip,
        });
        Ok(snap)
    }

    /// The heap memory the snapshot holds, in bytes (hash tables counted at their
    /// capacity with one control byte per bucket; allocator overhead not included).
    pub fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        fn map<K, V, S>(m: &HashMap<K, V, S>) -> usize {
            m.capacity() * (size_of::<(K, V)>() + 1)
        }
        let lpm = |l: &Lpm| l.by_len.iter().map(|(_, m)| map(m)).sum::<usize>();
        let pools: usize = self.pools.iter().map(|p| size_of::<Pool>() + p.heap_bytes()).sum();
        // A set's ring once: its VIPs' pools share it.
        let sets: usize = self
            .sets
            .iter()
            .zip(&self.set_rings)
            .map(|(s, r)| {
                s.capacity() * size_of::<BackendSpec>()
                    + r.as_ref().map_or(0, |r| {
                        core::mem::size_of_val(r.slots()) + core::mem::size_of_val(r.backends())
                    })
            })
            .sum();
        lpm(&self.subnets_v4)
            + lpm(&self.subnets_v6)
            + (self.vip_map.slots.len() + self.addr_map.slots.len()) * size_of::<VipSlot>()
            + self.addr_records.capacity() * size_of::<AddrRecord>()
            + map(&self.fragment_map)
            + self.vip_addrs.capacity() * (size_of::<IpAddr>() + 1)
            + self.vips.capacity() * size_of::<Vip>()
            + self.lane.heap_bytes()
            + pools
            + sets
    }

    /// How many (VIP, backend) traffic counters a worker keeps for this snapshot: one per
    /// backend of every VIP's pool, VIP after VIP.
    pub fn traffic_slots(&self) -> usize {
        self.traffic_slots
    }

    /// The generation number.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The fleet-wide hash seed.
    pub fn hash_seed(&self) -> u64 {
        self.hash_seed
    }

    /// Tunnel parameters.
    pub fn tunnel(&self) -> &Tunnel {
        &self.tunnel
    }

    /// Flow idle timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Our port.
    pub fn interface(&self) -> &Interface {
        &self.interface
    }

    /// The flow table's idle timeouts by class.
    #[inline]
    pub fn idle_timeouts(&self) -> &crate::flow::IdleTimeouts {
        &self.lane.timeouts
    }

    /// Whether this snapshot has `target` under `number` ([`PoolBackend::number`], given by
    /// [`Numbering`]). Flows may remember pairs a snapshot no longer has.
    pub fn has_pair(&self, number: u32, target: &Target) -> bool {
        let v = target.vip;
        let Some(i) = self.vip_map.get(vip_key(v.addr, v.protocol.number(), v.port.unwrap_or(0))) else {
            return false;
        };
        let pool = &self.pools[self.vips[i as usize].pool as usize];
        pool.by_number(number).is_some_and(|(_, b)| b.id == target.backend)
    }

    /// What the express lane reads.
    #[inline]
    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    /// The VIPs, in config order.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    /// The pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Whether `addr` is one of the port's own addresses.
    #[inline]
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.interface.addresses.contains(&addr)
    }

    /// Whether `addr` falls in a VIP subnet.
    #[inline]
    pub fn in_subnet(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.subnets_v4.lookup(u128::from(u32::from(a)), 32).is_some(),
            IpAddr::V6(a) => self.subnets_v6.lookup(u128::from(a), 128).is_some(),
        }
    }

    /// The VIP for a packet to `addr`, `protocol`, `port`: exact VIP:port:protocol first,
    /// then VIP:any-port, then the any-protocol VIP with this port, then with any port.
    #[inline(always)]
    pub fn find_vip(&self, addr: IpAddr, protocol: IpProtocol, port: u16) -> Option<(u32, &Vip)> {
        let key = vip_key(addr, 0, 0);
        let rec = self.addr_records.get(self.addr_map.get(key)? as usize)?;
        let found = |i: u32| (i != EMPTY).then_some(i);
        let kind = match protocol {
            IpProtocol::Tcp => 0,
            IpProtocol::Udp => 1,
            // Other protocols have no ports: only an any-protocol, any-port VIP takes them.
            _ => return found(rec.wildcard[2]).and_then(|i| Some((i, self.vips.get(i as usize)?))),
        };
        let p = u32::from(u8::from(protocol)) << 16;
        let port = u32::from(port);
        let exact = || if rec.has_ports[kind] { self.vip_map.get(VipKey(key.0, p | port)) } else { None };
        let any_proto = || if rec.has_ports[2] { self.vip_map.get(VipKey(key.0, port)) } else { None };
        let i = exact()
            .or_else(|| found(rec.wildcard[kind]))
            .or_else(any_proto)
            .or_else(|| found(rec.wildcard[2]))?;
        Some((i, self.vips.get(i as usize)?))
    }

    /// The VIP for IP fragments to `addr` over `protocol`. Fragments after the first carry
    /// no ports, so every fragment of a datagram, the first included, goes to the VIP that
    /// takes any port of this address and protocol (or of any protocol), or else to the one
    /// port-specific VIP of the address and protocol; where there are several, which one is
    /// not knowable and there is none.
    #[inline]
    pub fn find_fragment_vip(&self, addr: IpAddr, protocol: IpProtocol) -> Option<(u32, &Vip)> {
        let p = match protocol {
            IpProtocol::Tcp | IpProtocol::Udp => u8::from(protocol),
            _ => 0,
        };
        let &i = self.fragment_map.get(&(addr, p))?;
        Some((i, &self.vips[i as usize]))
    }

    /// Whether any VIP has this address (whatever its protocol and port).
    #[inline]
    pub fn is_vip_addr(&self, addr: IpAddr) -> bool {
        self.vip_addrs.contains(&addr)
    }
}

/// See [`Snapshot::find_fragment_vip`].
fn fragment_vips(vips: &[Vip], set_of_vip: &[u32]) -> HashMap<(IpAddr, u8), u32> {
    let mut map: HashMap<(IpAddr, u8), u32> = HashMap::new();
    for proto in [6u8, 17] {
        let mut specific: HashMap<IpAddr, Option<u32>> = HashMap::new();
        for (i, v) in vips.iter().enumerate() {
            let fits = v.protocol.number() == proto || v.protocol == VipProtocol::Any;
            if !fits {
                continue;
            }
            if v.port.is_none() {
                // A wildcard-port VIP of this very protocol beats an any-protocol one.
                let better = match map.get(&(v.addr, proto)) {
                    Some(&j) => {
                        vips[j as usize].protocol == VipProtocol::Any && v.protocol != VipProtocol::Any
                    }
                    None => true,
                };
                if better {
                    map.insert((v.addr, proto), i as u32);
                }
            } else {
                specific
                    .entry(v.addr)
                    .and_modify(|e| {
                        if e.is_some_and(|j| set_of_vip[j as usize] != set_of_vip[i]) {
                            *e = None;
                        }
                    })
                    .or_insert(Some(i as u32));
            }
        }
        for (addr, only) in specific {
            if let Some(i) = only {
                map.entry((addr, proto)).or_insert(i);
            }
        }
    }
    // Other protocols have no ports: only any-protocol, any-port VIPs.
    for (i, v) in vips.iter().enumerate() {
        if v.protocol == VipProtocol::Any && v.port.is_none() {
            map.insert((v.addr, 0), i as u32);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::BackendId;

    fn spec(vips: Vec<(&str, Option<u16>, VipProtocol)>) -> SnapshotSpec {
        SnapshotSpec {
            hash_seed: 1,
            table_size: 251,
            vips: vips
                .into_iter()
                .enumerate()
                .map(|(i, (a, port, protocol))| VipSpec {
                    addr: a.parse().unwrap(),
                    port,
                    protocol,
                    encap: Encap::Ipip,
                    backends: vec![BackendSpec {
                        id: BackendId::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8 + 1))),
                        weight: 1,
                        state: BackendState::Active,
                    }],
                })
                .collect(),
            ..SnapshotSpec::example()
        }
    }

    /// Every address, kind and port that matters answers as `find_vip` does: the ports
    /// VIPs name, their neighbours, and the ends of the range.
    #[test]
    fn the_express_lookup_answers_as_find_vip_does() {
        use VipProtocol::*;
        let configs: Vec<Vec<(&str, Option<u16>, VipProtocol)>> = vec![
            vec![
                ("203.0.113.10", Some(80), Tcp),
                ("203.0.113.10", None, Tcp),
                ("203.0.113.10", Some(53), Any),
                ("203.0.113.10", None, Any),
                ("203.0.113.11", Some(53), Udp),
                ("203.0.113.12", None, Udp),
                ("203.0.113.13", Some(0), Tcp),
                ("203.0.113.13", Some(65535), Any),
                ("203.0.113.14", None, Any),
                ("2001:db8::10", None, Udp),
            ],
            (0..200u16)
                .map(|p| ("203.0.113.20", Some(1000 + p), if p % 3 == 0 { Any } else { Udp }))
                .collect(),
            // Too far apart to index directly: hashed.
            vec![("203.0.113.1", None, Tcp), ("203.0.113.250", Some(80), Udp)],
            vec![],
        ];
        for (n, config) in configs.into_iter().enumerate() {
            let snap = Snapshot::build(&spec(config.clone())).unwrap();
            let vips = snap.lane().vips();
            assert_eq!(vips.is_direct(), n < 2, "config {n}");
            for host in [0u8, 1, 2, 9, 10, 11, 12, 13, 14, 20, 21, 249, 250, 251, 255] {
                let addr = Ipv4Addr::new(203, 0, 113, host);
                let mut ports =
                    vec![0u16, 1, 52, 53, 54, 79, 80, 81, 999, 1000, 1001, 1199, 1200, 65534, 65535];
                ports.extend(config.iter().filter_map(|v| v.1));
                for port in ports {
                    for (udp, protocol) in [(false, IpProtocol::Tcp), (true, IpProtocol::Udp)] {
                        let want = snap.find_vip(IpAddr::V4(addr), protocol, port).map(|(i, _)| i);
                        assert_eq!(vips.find(u32::from(addr), udp, port), want, "{addr} {protocol:?} {port}");
                    }
                }
            }
        }
    }

    /// The IPv6 lane's VIP table answers as `find_vip` does, and its classification takes
    /// plain IPv6 TCP and UDP to a VIP and nothing else.
    #[test]
    fn the_ipv6_lane_answers_as_find_vip_does_and_takes_plain_tcp_and_udp() {
        use VipProtocol::*;
        let config = vec![
            ("2001:db8:ab::10", Some(443), Tcp),
            ("2001:db8:ab::10", None, Udp),
            ("2001:db8:ab::11", Some(53), Any),
            ("2001:db8:ab::11", None, Any),
            ("2001:db8:ab::12", Some(8000), Udp),
            ("203.0.113.10", None, Tcp),
        ];
        let snap = Snapshot::build(&spec(config.clone())).unwrap();
        let vips = &snap.lane().vips6;
        for host in [0u16, 0x10, 0x11, 0x12, 0x13] {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, 0xab, 0, 0, 0, 0, host);
            for port in [0u16, 52, 53, 54, 442, 443, 444, 7999, 8000, 65535] {
                for (udp, protocol) in [(false, IpProtocol::Tcp), (true, IpProtocol::Udp)] {
                    let want = snap.find_vip(IpAddr::V6(addr), protocol, port).map(|(i, _)| i);
                    assert_eq!(vips.find(u128::from(addr), udp, port), want, "{addr} {protocol:?} {port}");
                }
            }
        }
        let flows = crate::flow::FlowTable::with_keys(64, (1, 2));
        let mac = u64::from_le_bytes([2, 0, 0, 0, 0, 1, 0, 0]);
        let frame = |build: etherparse::PacketBuilderStep<etherparse::IpHeaders>, tcp: bool, port: u16| {
            let mut f = Vec::new();
            if tcp {
                build.tcp(40000, port, 1, 1024).ack(1).write(&mut f, &[7; 10]).unwrap();
            } else {
                build.udp(40000, port).write(&mut f, &[7; 10]).unwrap();
            }
            f
        };
        let to = |host: u16, hop: u8| {
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1]).ipv6(
                Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 7).octets(),
                Ipv6Addr::new(0x2001, 0xdb8, 0xab, 0, 0, 0, 0, host).octets(),
                hop,
            )
        };
        let classify =
            |f: &[u8]| crate::express::classify_v6(vips, &flows, 1, mac, f).map(|(x, _)| (x.vip, x.ip_len()));
        assert_eq!(classify(&frame(to(0x10, 64), true, 443)), Some((0, 40 + 20 + 10)));
        assert_eq!(classify(&frame(to(0x10, 64), false, 9)), Some((1, 40 + 8 + 10)));
        assert_eq!(classify(&frame(to(0x10, 64), true, 80)), None, "no VIP takes TCP 80");
        assert_eq!(classify(&frame(to(0x13, 64), false, 9)), None, "no VIP");
        assert_eq!(classify(&frame(to(0x10, 0), true, 443)), None, "hop limit 0");
        let mut f = frame(to(0x10, 64), true, 443);
        f[0] = 3;
        assert_eq!(classify(&f), None, "another MAC");
        let mut f = frame(to(0x10, 64), true, 443);
        f[14 + 6] = 0;
        assert_eq!(classify(&f), None, "a hop-by-hop header first");
        let f = frame(to(0x10, 64), true, 443);
        assert_eq!(classify(&f[..f.len() - 1]), None, "cut short");
    }

    #[test]
    fn vip_lookup_order() {
        use VipProtocol::*;
        let s = Snapshot::build(&spec(vec![
            ("203.0.113.10", Some(80), Tcp), // 0
            ("203.0.113.10", None, Tcp),     // 1
            ("203.0.113.10", Some(53), Any), // 2
            ("203.0.113.10", None, Any),     // 3
            ("203.0.113.11", Some(53), Udp), // 4
            ("2001:db8:ab::10", None, Udp),  // 5
        ]))
        .unwrap();
        let find =
            |a: &str, p: IpProtocol, port: u16| s.find_vip(a.parse().unwrap(), p, port).map(|(i, _)| i);
        assert_eq!(find("203.0.113.10", IpProtocol::Tcp, 80), Some(0));
        assert_eq!(find("203.0.113.10", IpProtocol::Tcp, 81), Some(1));
        assert_eq!(
            find("203.0.113.10", IpProtocol::Tcp, 53),
            Some(1),
            "TCP any-port before any-protocol :53"
        );
        assert_eq!(find("203.0.113.10", IpProtocol::Udp, 53), Some(2));
        assert_eq!(find("203.0.113.10", IpProtocol::Udp, 54), Some(3));
        assert_eq!(find("203.0.113.10", IpProtocol::Icmp, 0), Some(3));
        assert_eq!(find("203.0.113.11", IpProtocol::Udp, 53), Some(4));
        assert_eq!(find("203.0.113.11", IpProtocol::Udp, 54), None);
        assert_eq!(find("203.0.113.11", IpProtocol::Tcp, 53), None);
        assert_eq!(find("203.0.113.11", IpProtocol::Icmp, 0), None);
        assert_eq!(find("203.0.113.12", IpProtocol::Udp, 53), None);
        assert_eq!(find("2001:db8:ab::10", IpProtocol::Udp, 1), Some(5));
        assert_eq!(find("2001:db8:ab::10", IpProtocol::Tcp, 1), None);
        assert!(s.in_subnet("203.0.113.200".parse().unwrap()));
        assert!(!s.in_subnet("203.0.114.1".parse().unwrap()));
        assert!(s.is_vip_addr("203.0.113.11".parse().unwrap()));
        // Fragments: the TCP any-port VIP; for .11 the only UDP port VIP; ICMP: any/any.
        let frag = |a: &str, p: IpProtocol| s.find_fragment_vip(a.parse().unwrap(), p).map(|(i, _)| i);
        assert_eq!(frag("203.0.113.10", IpProtocol::Tcp), Some(1));
        assert_eq!(frag("203.0.113.10", IpProtocol::Udp), Some(3));
        assert_eq!(frag("203.0.113.11", IpProtocol::Udp), Some(4));
        assert_eq!(frag("203.0.113.10", IpProtocol::Icmp), Some(3));
        assert_eq!(frag("203.0.113.11", IpProtocol::Tcp), None);
    }

    #[test]
    fn rings_are_shared_and_duplicates_refused() {
        use VipProtocol::*;
        let mut sp = spec(vec![("203.0.113.10", Some(80), Tcp), ("203.0.113.10", Some(443), Tcp)]);
        sp.vips[1].backends = sp.vips[0].backends.clone();
        let s = Snapshot::build(&sp).unwrap();
        assert_eq!(s.pools().len(), 2, "a pool per VIP");
        let slots = |p: &Pool| p.ring().unwrap().slots().as_ptr();
        assert_eq!(slots(&s.pools()[0]), slots(&s.pools()[1]), "equal backend sets share one ring");
        let number = |p: &Pool| p.backends()[0].number;
        assert_ne!(number(&s.pools()[0]), number(&s.pools()[1]), "the shared backend has a number per VIP");
        // Their numbers are dense (a config's when first read): the lane's outer headers are
        // shared too, and each VIP finds its own numbers there and not the other's.
        assert_eq!(s.lane().vip[0].outer_base(), s.lane().vip[1].outer_base());
        assert_the_lane_finds_every_backend(&s);
        let dup = spec(vec![("203.0.113.10", Some(80), Tcp), ("203.0.113.10", Some(80), Tcp)]);
        assert!(matches!(Snapshot::build(&dup), Err(TableError::DuplicateVip(_))));
    }

    #[test]
    fn rings_built_on_several_threads_are_the_rings_built_on_one() {
        use VipProtocol::*;
        let mut sp = spec(vec![
            ("203.0.113.10", Some(80), Tcp),
            ("203.0.113.11", Some(443), Tcp),
            ("203.0.113.12", Some(53), Udp),
            ("203.0.113.13", None, Any),
        ]);
        for (i, v) in sp.vips.iter_mut().enumerate() {
            v.backends[0].weight += i as u32;
        }
        let one = Snapshot::build(&sp).unwrap();
        for threads in [2, 3, 8] {
            let many = Snapshot::build_with(&sp, None, threads, &mut Numbering::new()).unwrap();
            assert_eq!(many.pools().len(), 4);
            for (a, b) in one.pools().iter().zip(many.pools()) {
                assert_eq!(a.ring().unwrap().slots(), b.ring().unwrap().slots(), "{threads} threads");
                assert_eq!(a.backends(), b.backends());
            }
            assert_eq!(many.traffic_slots(), one.traffic_slots());
        }
    }

    #[test]
    fn a_rebuild_takes_unchanged_rings_from_the_previous_snapshot() {
        use VipProtocol::*;
        let sp = spec(vec![("203.0.113.10", Some(80), Tcp), ("203.0.113.11", Some(443), Tcp)]);
        let mut numbering = Numbering::new();
        let old = Snapshot::build_from(&sp, None, &mut numbering).unwrap();
        let mut changed = sp.clone();
        changed.vips[1].backends[0].weight += 1;
        let new = Snapshot::build_from(&changed, Some(&old), &mut numbering).unwrap();
        let fresh = Snapshot::build(&changed).unwrap();
        let ring =
            |s: &Snapshot, v: usize| s.pools()[s.vips()[v].pool as usize].ring().unwrap().slots().as_ptr();
        assert_eq!(ring(&new, 0), ring(&old, 0), "the unchanged pool's ring is shared");
        assert_ne!(ring(&new, 1), ring(&old, 1), "the changed pool's ring is new");
        for v in 0..2 {
            let slots = |s: &Snapshot| s.pools()[s.vips()[v].pool as usize].ring().unwrap().slots().to_vec();
            assert_eq!(slots(&new), slots(&fresh), "the same tables as a build from scratch");
        }
        // Another seed: nothing can be taken over.
        let mut reseeded = sp.clone();
        reseeded.hash_seed ^= 1;
        let other = Snapshot::build_from(&reseeded, Some(&old), &mut numbering).unwrap();
        assert_ne!(ring(&other, 0), ring(&old, 0));
    }

    #[test]
    fn a_pair_keeps_its_number_in_every_snapshot_and_no_other_takes_it() {
        use VipProtocol::*;
        let mut sp = spec(vec![("203.0.113.10", Some(80), Tcp), ("203.0.113.11", Some(443), Tcp)]);
        let other = |last: u8| BackendSpec {
            id: BackendId::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))),
            weight: 1,
            state: BackendState::Active,
        };
        // 192.0.2.1 in both VIPs: a pair in each.
        let shared = sp.vips[0].backends[0];
        sp.vips[1].backends.push(shared);
        let mut numbering = Numbering::new();
        let a = Snapshot::build_from(&sp, None, &mut numbering).unwrap();
        let mut changed = sp.clone();
        changed.vips[0].backends.insert(0, other(200));
        changed.vips[1].backends = vec![other(201)];
        let b = Snapshot::build_from(&changed, Some(&a), &mut numbering).unwrap();
        let numbers = |s: &Snapshot| -> Vec<(Target, u32)> {
            s.vips()
                .iter()
                .flat_map(|v| {
                    let pool = &s.pools()[v.pool as usize];
                    pool.backends().iter().map(|b| (Target { vip: v.id(), backend: b.id }, b.number))
                })
                .collect()
        };
        let (na, nb) = (numbers(&a), numbers(&b));
        assert_eq!(na.len(), 3);
        let kept = nb.iter().filter(|(t, n)| na.iter().any(|(u, m)| u == t && m == n)).count();
        assert_eq!(kept, 1, "192.0.2.1 in VIP 0, in both, kept its number");
        for (t, n) in na.iter().chain(&nb) {
            assert_eq!(numbering.target(*n), Some(t));
            assert!(na.iter().chain(&nb).all(|(u, m)| (u == t) == (m == n)), "one number per pair");
            assert_eq!(
                b.has_pair(*n, t),
                nb.iter().any(|(u, _)| u == t),
                "{t:?} found by number where present"
            );
        }
        // A fresh numbering numbers one config alike.
        let again = Snapshot::build(&sp).unwrap();
        assert_eq!(numbers(&again), na);
    }

    /// Numbers `backends` of the VIP of `spec` at `vip` in their order.
    fn number_in_order(
        numbering: &mut Numbering,
        spec: &VipSpec,
        backends: impl IntoIterator<Item = BackendId>,
    ) {
        let vip = VipId { addr: spec.addr, protocol: spec.protocol, port: spec.port };
        for backend in backends {
            numbering.number(Target { vip, backend }).unwrap();
        }
    }

    #[test]
    fn the_lane_finds_every_backend_by_number_near_or_far() {
        use VipProtocol::*;
        let mut sp = spec(vec![
            ("203.0.113.10", Some(80), Tcp),
            ("203.0.113.11", Some(443), Tcp),
            ("203.0.113.12", Some(443), Tcp),
            ("203.0.113.13", Some(443), Tcp),
        ]);
        let backend = |last: u16| BackendSpec {
            id: BackendId::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xfe, 0, 0, 0, 0, last))),
            weight: 1,
            state: BackendState::Active,
        };
        // Numbered in this order: VIP 0's backends as one config reads them; VIP 1's first
        // thousands of numbers before its others, so that its pool's numbers are looked up
        // hashed; VIP 2's close together, but against the pool's order; VIP 3's first 400
        // numbers before its other 20 (as when a reload adds backends to many pools): more
        // than four places a backend apart, less than sixteen.
        let mut numbering = Numbering::new();
        let (v0, v1, v2, v3) = (&sp.vips[0], &sp.vips[1], &sp.vips[2], &sp.vips[3]);
        let ids = |r: core::ops::Range<u16>| r.map(|n| backend(n).id);
        number_in_order(&mut numbering, v0, ids(1..21));
        number_in_order(&mut numbering, v1, ids(1000..1001));
        number_in_order(&mut numbering, v2, ids(2000..4000));
        number_in_order(&mut numbering, v1, ids(5000..5010));
        number_in_order(&mut numbering, v2, (400..410).rev().map(|n| backend(n).id));
        number_in_order(&mut numbering, v3, ids(6000..6001));
        number_in_order(&mut numbering, v2, ids(6100..6500));
        number_in_order(&mut numbering, v3, ids(7000..7020));
        sp.vips[0].backends = (1..=20).map(backend).collect();
        sp.vips[1].backends = std::iter::once(1000).chain(5000..5010).map(backend).collect();
        sp.vips[2].backends = (400..410).map(backend).collect();
        sp.vips[3].backends = std::iter::once(6000).chain(7000..7020).map(backend).collect();
        let snap = Snapshot::build_from(&sp, None, &mut numbering).unwrap();
        let lane = snap.lane();
        assert!(lane.vip[1].hashed());
        assert!(!lane.vip[2].hashed(), "laid out by number, against its order");
        let spread = lane.vip[3].number_span() as usize;
        assert!(!lane.vip[3].hashed() && spread > 4 * 21 + 256, "laid out by number, {spread} places");
        assert_the_lane_finds_every_backend(&snap);
    }

    /// Every backend of every VIP's pool is found by its number and by its index, and no
    /// other pool's backend, nor a number never given, is.
    fn assert_the_lane_finds_every_backend(snap: &Snapshot) {
        let lane = snap.lane();
        for (i, v) in snap.vips().iter().enumerate() {
            let pool = &snap.pools()[v.pool as usize];
            for (k, b) in pool.backends().iter().enumerate() {
                let index = lane.outer_of_number(&lane.vip[i], b.number).map(|o| usize::from(o.index));
                assert_eq!(index, Some(k), "VIP {i}, {}", b.id);
                let by_index = lane.outer_of_index(&lane.vip[i], pool, k).map(|o| usize::from(o.index));
                assert_eq!(by_index, Some(k), "VIP {i}, {}", b.id);
            }
            // Not the other pools' backends, nor a number never given.
            for other in snap.pools().iter().filter(|&o| !std::ptr::eq(o, pool)) {
                for b in other.backends() {
                    assert!(lane.outer_of_number(&lane.vip[i], b.number).is_none(), "VIP {i}, {}", b.id);
                }
            }
            assert!(lane.outer_of_number(&lane.vip[i], crate::flow::MAX_BACKEND).is_none());
        }
    }

    #[test]
    fn spread_pools_past_the_hole_budget_are_looked_up_hashed() {
        // 64 pools of 64 backends, each group of 32 pools numbered turn about (as when
        // reloads add a backend to every pool at once): each pool spans 2 017 numbers, 1 953
        // of them holes, spread enough for the budget, which is 8 × 4 096 + 65 536 = 98 304
        // holes: 50 pools fit, the other 14 are looked up hashed.
        const POOLS: usize = 64;
        const GROUP: usize = 32;
        const N: usize = 64;
        let backend = |pool: usize, j: usize| BackendSpec {
            id: BackendId::new(IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xfd,
                0,
                0,
                0,
                pool as u16,
                j as u16,
            ))),
            weight: 1,
            state: BackendState::Active,
        };
        let addrs: Vec<String> = (0..POOLS).map(|p| format!("203.0.113.{}", p + 100)).collect();
        let mut sp = spec(addrs.iter().map(|a| (a.as_str(), Some(80), VipProtocol::Tcp)).collect());
        for (p, v) in sp.vips.iter_mut().enumerate() {
            v.backends = (0..N).map(|j| backend(p, j)).collect();
        }
        let mut numbering = Numbering::new();
        for group in 0..POOLS / GROUP {
            for j in 0..N {
                for p in group * GROUP..(group + 1) * GROUP {
                    number_in_order(&mut numbering, &sp.vips[p], [backend(p, j).id]);
                }
            }
        }
        let snap = Snapshot::build_from(&sp, None, &mut numbering).unwrap();
        let lane = snap.lane();
        let span = (N - 1) * GROUP + 1;
        let budget = 8 * POOLS * N + 65_536;
        let by_number: Vec<usize> = (0..POOLS).filter(|&p| !lane.vip[p].hashed()).collect();
        for &p in &by_number {
            assert_eq!(lane.vip[p].number_span() as usize, span, "VIP {p}");
        }
        assert_eq!(by_number.len(), budget / (span - N), "as many pools as the budget holds: {by_number:?}");
        assert_the_lane_finds_every_backend(&snap);
    }

    #[test]
    fn a_removed_pair_is_named_by_number_and_not_found_in_the_snapshot() {
        use VipProtocol::*;
        let sp = spec(vec![("203.0.113.10", Some(80), Tcp), ("203.0.113.11", Some(443), Tcp)]);
        let mut numbering = Numbering::new();
        let old = Snapshot::build_from(&sp, None, &mut numbering).unwrap();
        let number = |s: &Snapshot, v: usize| s.pools()[s.vips()[v].pool as usize].backends()[0].number;
        let (kept, gone) = (number(&old, 0), number(&old, 1));
        let mut changed = sp.clone();
        changed.vips.truncate(1);
        let new = Snapshot::build_from(&changed, Some(&old), &mut numbering).unwrap();
        let target = |n: u32| *numbering.target(n).unwrap();
        assert!(new.has_pair(kept, &target(kept)) && !new.has_pair(gone, &target(gone)));
        assert!(!new.has_pair(gone, &target(kept)), "a number is one pair's");
        let name = |n: u32| numbering.target(n).map(|t| format!("{} {}", t.vip, t.backend));
        assert_eq!(name(kept).as_deref(), Some("tcp://203.0.113.10:80 192.0.2.1"));
        assert_eq!(name(gone).as_deref(), Some("tcp://203.0.113.11:443 192.0.2.2"));
        assert_eq!(name(crate::flow::MAX_BACKEND), None);
    }
}
