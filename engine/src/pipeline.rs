//! The forwarding pipeline: from a received frame to a verdict, per packet, with no I/O.
//!
//! [`Pipeline::process`] takes a burst of frames, the current time and the snapshot, and
//! turns every frame into a [`Verdict`]:
//! - [`Verdict::Forward`]: the buffer now holds the packet encapsulated toward its backend
//!   (IPIP / IPv6-in-IPv6 / GUE / GRE), the inner packet byte-for-byte as received;
//! - [`Verdict::Reply`]: the buffer now holds our answer (ARP reply, neighbour
//!   advertisement, echo reply, ICMP "too big");
//! - [`Verdict::Drop`]: the buffer is as received, and the reason is counted.
//!
//! Every verdict is counted in [`Counters`]. Nothing a frame contains can make this code
//! panic, allocate or loop without bound: parsing goes through the checked views of
//! [`crate::wire`], and every write is into the buffer's own headroom.
//!
//! # Two passes, two paths
//! A burst is taken in two passes: the first classifies every packet and prefetches its
//! flow-table windows, the second (by then the windows are on their way from memory)
//! looks the flows up and encapsulates. The packet nearly all traffic is, an untagged
//! IPv4 TCP or UDP packet to a VIP with an IPv4 backend, takes the express lane
//! ([`crate::express`]): fixed offsets, a VIP lookup resolved in advance, outer headers
//! made with the snapshot. Everything else takes the general path below, and so does a
//! lane packet the lane cannot finish (too big for the tunnel, an IPv6 backend); both
//! reach the same verdicts, bytes and counters (the tests run both). While new flows are a
//! quarter of a chunk or more (a flood, a cut-over), the lane's packets also get their
//! Maglev hash and a prefetch of their ring slot between the passes: a new flow's ring
//! read would otherwise wait on memory.
//!
//! # Order of the checks
//! 1. L2: unicast to our MAC, broadcast, or IPv6 multicast (neighbour discovery) only;
//!    one VLAN tag at most.
//! 2. ARP requests for our addresses are answered; IPv4 and IPv6 go on; the rest is
//!    `not_ip`.
//! 3. Packets to our own addresses: echo requests and neighbour solicitations are
//!    answered; nothing else is ours to take.
//! 4. Echo requests to a VIP address are answered; ICMP errors about a VIP's flow go to
//!    the backend that owns it.
//! 5. The VIP: exact address:protocol:port, then any port, then any protocol; none is
//!    `no_vip` inside a VIP subnet and `not_vip` outside.
//! 6. The backend: the flow table, or on a miss Maglev on the flow hash, remembered.
//!    Fragments use the 3-tuple (Maglev paper, §4.3).
//! 7. Encapsulation; a result above the MTU gets ICMP "fragmentation needed" / "packet
//!    too big" back to the client (rate limited), or, for IPv4 without DF, outer
//!    fragmentation.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::express::{self, Express, LaneState};
use crate::flow::{Absent, FlowKey, FlowTable, IdleTimeouts, Inserted, TimeoutClass};
use crate::maglev;
use crate::stats::TrafficCounters;
use crate::table::{BackendState, Encap, PoolBackend, Snapshot, Vip};
use crate::wire::{
    self, arp, checksum, ethernet, gre, gue, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, vlan, EtherType,
    EthernetAddress, IpProtocol,
};

use crate::counters::{Counters, DropReason};
use crate::encap::{write_gue, write_outer_v4, OuterV4};
use crate::port::MAX_BURST;

/// What became of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Encapsulated toward a backend: send the buffer.
    Forward,
    /// Answered: send the buffer (it holds the answer).
    Reply,
    /// Too big for the tunnel: send the buffer, which holds our ICMP "too big" (or
    /// "fragmentation needed") to the sender; the packet counts as a `too_big` drop.
    TooBigReply,
    /// Dropped; the buffer holds the packet as received.
    Drop(DropReason),
}

impl Verdict {
    /// Whether the buffer is to be sent (forwarded, or holding our answer).
    #[inline(always)]
    pub fn sends(self) -> bool {
        matches!(self, Verdict::Forward | Verdict::Reply | Verdict::TooBigReply)
    }
}

/// A token bucket for the ICMP messages a worker generates.
#[derive(Debug, Clone)]
struct RateLimit {
    per_second: u64,
    burst: u64,
    tokens: u64,
    last: u64,
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

/// Options of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Flow table capacity.
    pub flow_capacity: usize,
    /// ICMP messages generated per second, at most.
    pub icmp_per_second: u64,
    /// ICMP messages in a burst, at most.
    pub icmp_burst: u64,
    /// Take every packet through the general path, never the express lane (to check that
    /// both reach the same verdicts, bytes and counters).
    pub general_path_only: bool,
    /// Have the general path find VIPs and backends the snapshot's own way
    /// ([`Snapshot::find_vip`], the pools' numbers) rather than through the express lane's
    /// tables, which answer the same in fewer instructions: the independent oracle the
    /// tests compare the lane against. Off in the appliance.
    pub oracle: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            flow_capacity: 1 << 16,
            icmp_per_second: 1000,
            icmp_burst: 100,
            general_path_only: false,
            oracle: false,
        }
    }
}

/// A packet on its way to a VIP, between classification and forwarding.
#[derive(Debug, Clone, Copy)]
struct ToVip {
    vip: u32,
    key: FlowKey,
    /// The flow table's hash and check of the key.
    hash: u64,
    check: u64,
    /// Offset of the IP header in the frame.
    l3: usize,
    /// Length of the IP packet (Total Length / 40 + Payload Length).
    ip_len: usize,
    v6: bool,
    class: TimeoutClass,
    /// The TCP segment had FIN or RST.
    closing: bool,
    /// IPv4 DF, or always for IPv6.
    dont_frag: bool,
    /// DSCP/ECN or traffic class, copied to the outer header.
    tos: u8,
    fragment: bool,
    icmp_error: bool,
}

/// What classification did. A packet for a VIP is written straight into the pipeline's
/// pending slot rather than returned: the record is large, and moving it around per packet
/// costs more than the lookups it carries.
enum Step {
    Done(Verdict),
    Pending,
}

/// One worker's pipeline: its flow table, counters and rate limiter.
pub struct Pipeline {
    flows: FlowTable,
    counters: Counters,
    icmp: RateLimit,
    ip_ident: u16,
    general_path_only: bool,
    /// See [`PipelineOptions::oracle`].
    oracle: bool,
    pending: Box<[Option<ToVip>; MAX_BURST]>,
    /// What the express lane learnt of each packet it took, by slot in the burst.
    express: Box<[Express; MAX_BURST]>,
    /// Outer fragments made by the last `process` call, to send after the burst, with the
    /// index (in that call's slice) of the packet whose first fragment stayed in place.
    extra: Vec<(usize, PacketBuf)>,
    /// The index of the packet being forwarded, in the slice `process` was given.
    current: usize,
    /// The pending slot that classification fills.
    slot: usize,
    spare: Vec<PacketBuf>,
    /// Packets and bytes forwarded per (VIP, backend) of the snapshot in use.
    traffic: Arc<TrafficCounters>,
    /// Per packet of the last `process` call (its index there, below [`TX_RECORDS`]), the
    /// traffic slot and bytes it was counted in, to take back what the port refuses.
    burst_traffic: Box<[(u32, u32); TX_RECORDS]>,
    /// The traffic counters are too many to stay in the cache: count them at the end of
    /// each chunk (see `count_traffic`).
    defer_traffic: bool,
    /// New flows were a quarter of the last chunk or more: after the first pass, each
    /// express packet's Maglev hash is computed, into `maglev`, and its ring slot fetched
    /// (see `process`).
    prefetch_rings: bool,
    /// The Maglev hashes of the chunk's express packets, by slot: IPv4 ones when
    /// `prefetch_rings`, IPv6 ones always (their flow label).
    maglev: Box<[u32; MAX_BURST]>,
    /// Which packets of the chunk the express lane took for IPv6 (bit per slot): the
    /// second pass takes them out of line. (A field rather than a local: the IPv4 loop
    /// keeps its registers.)
    lane6: u64,
}

impl core::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pipeline").field("flows", &self.flows).field("counters", &self.counters).finish()
    }
}

/// Above this many (VIP, backend) traffic counters (16 bytes each: 256 KiB), they are
/// counted at the end of each chunk rather than as each packet is forwarded.
const DEFER_TRAFFIC_SLOTS: usize = 16 * 1024;

/// The longest burst whose every packet [`Pipeline::count_tx_full`] can take out of its
/// (VIP, backend) traffic: the largest `burst` the config allows. A packet past it is
/// counted, and taken back from the totals only.
pub const TX_RECORDS: usize = 256;

/// How many spare buffers a pipeline keeps for outer fragments.
const SPARE_BUFFERS: usize = 2 * MAX_BURST;

/// The size of a spare buffer: a 9216-byte MTU packet with its Ethernet header.
const SPARE_CAPACITY: usize = crate::buf::HEADROOM + 9216 + 64;

impl Pipeline {
    /// A pipeline with a flow table of `options.flow_capacity` entries. Everything it
    /// will use is allocated here.
    pub fn new(options: PipelineOptions) -> Pipeline {
        Pipeline::with_flow_table(FlowTable::new(options.flow_capacity), options)
    }

    /// A pipeline around a given flow table (tests pin its keys).
    pub fn with_flow_table(flows: FlowTable, options: PipelineOptions) -> Pipeline {
        Pipeline {
            flows,
            counters: Counters::default(),
            icmp: RateLimit {
                per_second: options.icmp_per_second,
                burst: options.icmp_burst,
                tokens: options.icmp_burst,
                last: 0,
            },
            ip_ident: 0,
            general_path_only: options.general_path_only,
            oracle: options.oracle,
            pending: Box::new([None; MAX_BURST]),
            express: Box::new([Express::default(); MAX_BURST]),
            extra: Vec::with_capacity(SPARE_BUFFERS),
            current: 0,
            slot: 0,
            // Outer fragments are at most one MTU; the config allows jumbo MTUs up to 9216.
            spare: (0..SPARE_BUFFERS).map(|_| PacketBuf::with_capacity(SPARE_CAPACITY)).collect(),
            traffic: Arc::new(TrafficCounters::new(0, 0)),
            burst_traffic: Box::new([(u32::MAX, 0); TX_RECORDS]),
            defer_traffic: false,
            prefetch_rings: false,
            maglev: Box::new([0; MAX_BURST]),
            lane6: 0,
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts traffic per (VIP, backend) of the snapshot of `traffic.generation()` into
    /// `traffic` from now on (sized for it: [`Snapshot::traffic_slots`]), and returns the
    /// counters used so far. Counters of another size than the snapshot's count nothing.
    pub fn set_traffic(&mut self, traffic: Arc<TrafficCounters>) -> Arc<TrafficCounters> {
        self.defer_traffic = traffic.len() > DEFER_TRAFFIC_SLOTS;
        std::mem::replace(&mut self.traffic, traffic)
    }

    /// Counts a forwarded packet in its (VIP, backend) slot and remembers the slot for
    /// [`count_tx_full`](Pipeline::count_tx_full). A small set of counters stays in the
    /// cache and is counted at once; a large one (thousands of VIPs) would make every
    /// count a cache miss, so its counter is prefetched now and counted at the end of the
    /// chunk.
    #[inline(always)]
    fn count_traffic(&mut self, slot: usize, bytes: usize, at: usize) {
        match self.burst_traffic.get_mut(at) {
            Some(t) => {
                *t = (slot as u32, bytes as u32);
                if self.defer_traffic {
                    self.traffic.prefetch(slot);
                } else {
                    self.traffic.count(slot, bytes);
                }
            }
            // Past the records (a burst longer than any the config allows): at once.
            None => self.traffic.count(slot, bytes),
        }
    }

    /// The per-(VIP, backend) counters in use.
    pub fn traffic(&self) -> &Arc<TrafficCounters> {
        &self.traffic
    }

    /// The flow table.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// The outer fragments the last [`process`](Pipeline::process) made, to be sent after
    /// the burst, each with the index of the packet it belongs to (which holds the first
    /// fragment), in order; give the buffers back with [`recycle`](Pipeline::recycle).
    pub fn take_extra(&mut self) -> std::vec::Drain<'_, (usize, PacketBuf)> {
        self.extra.drain(..)
    }

    /// Returns a buffer taken from [`take_extra`](Pipeline::take_extra).
    pub fn recycle(&mut self, mut buf: PacketBuf) {
        if self.spare.len() < SPARE_BUFFERS {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Processes a burst: `verdicts[i]` is what became of `bufs[i]` (a longer burst than
    /// [`MAX_BURST`] is taken in pieces of that size).
    pub fn process(&mut self, snap: &Snapshot, now: u64, bufs: &mut [PacketBuf], verdicts: &mut [Verdict]) {
        let n = bufs.len().min(verdicts.len());
        // Both of length n: indexes below n need no further bounds checks.
        let (bufs, verdicts) = (&mut bufs[..n], &mut verdicts[..n]);
        let mac = snap.interface().mac.0;
        let mac = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
        let express = !self.general_path_only;
        for chunk_start in (0..n).step_by(MAX_BURST) {
            let end = (chunk_start + MAX_BURST).min(n);
            let misses = self.counters.flow_misses;
            // Which packets of the chunk the express lane took (bit per slot); its IPv6
            // ones are in `lane6`.
            let mut lane = 0u64;
            self.lane6 = 0;
            // A frame that a NIC has just written is in memory, not in a cache (on machines
            // without cache injection): ask for every frame's headers before reading any,
            // or each packet would wait on memory in turn.
            for b in &bufs[chunk_start..end] {
                b.prefetch_headers();
            }
            // Classify the burst and prefetch every flow-table window before touching any:
            // past the cache, the lookups would otherwise wait on memory one at a time.
            let mut rx_bytes = 0;
            for i in chunk_start..end {
                let slot = i - chunk_start;
                rx_bytes += bufs[i].len() as u64;
                if express {
                    if let Some(x) =
                        express::classify(&snap.lane().vips, &self.flows, mac, bufs[i].as_slice())
                    {
                        self.flows.prefetch(x.hash, x.check);
                        self.express[slot % MAX_BURST] = x;
                        lane |= 1 << slot;
                        continue;
                    }
                    if let Some(x) = self.lane_classify_v6(snap, mac, &bufs[i], slot) {
                        self.flows.prefetch(x.hash, x.check);
                        self.express[slot % MAX_BURST] = x;
                        self.lane6 |= 1 << slot;
                        continue;
                    }
                }
                self.slot = slot;
                match self.classify_general(snap, &mut bufs[i]) {
                    Step::Done(v) => {
                        self.pending[slot % MAX_BURST] = None;
                        verdicts[i] = v;
                    }
                    Step::Pending => {
                        if let Some(p) = &self.pending[slot % MAX_BURST] {
                            self.flows.prefetch(p.hash, p.check);
                        }
                    }
                }
            }
            self.counters.rx_packets += (end - chunk_start) as u64;
            self.counters.rx_bytes += rx_bytes;
            // While new flows are many (a flood of them, a cut-over), their Maglev ring slots
            // are fetched a pass ahead too: a ring is 128 KiB at the default size, read at
            // random. A loop of its own, so that the usual case carries none of it.
            if self.prefetch_rings {
                self.prefetch_ring_slots(snap, &bufs[chunk_start..end], lane);
            }
            // What the express lane forwards is counted here, the rest by `count`.
            let (mut forwarded, mut forwarded_bytes) = (0, 0);
            for i in chunk_start..end {
                let slot = i - chunk_start;
                if lane & 1 << slot != 0 {
                    let x = self.express[slot % MAX_BURST];
                    let hash = if self.prefetch_rings { Some(self.maglev[slot % MAX_BURST]) } else { None };
                    let st = LaneState {
                        flows: &mut self.flows,
                        counters: &mut self.counters,
                        ip_ident: &mut self.ip_ident,
                    };
                    let lane = snap.lane();
                    if let Some((traffic, len)) =
                        lane.forward(snap.pools(), snap.hash_seed(), st, now, &mut bufs[i], &x, hash)
                    {
                        self.count_traffic(traffic, len, i);
                        verdicts[i] = Verdict::Forward;
                        forwarded += 1;
                        forwarded_bytes += len as u64;
                        continue;
                    }
                    // Not the lane's to finish: the general path from the start.
                    self.slot = slot;
                    self.current = i;
                    verdicts[i] = match self.classify_general(snap, &mut bufs[i]) {
                        Step::Done(v) => v,
                        Step::Pending => self.forward(snap, now, &mut bufs[i], slot),
                    };
                } else if self.lane6 & 1 << slot != 0 {
                    verdicts[i] = self.finish_v6(snap, now, &mut bufs[i], slot, i);
                } else if self.pending[slot % MAX_BURST].is_some() {
                    self.current = i;
                    verdicts[i] = self.forward(snap, now, &mut bufs[i], slot);
                }
                self.pending[slot % MAX_BURST] = None;
                self.count(verdicts[i], &bufs[i]);
            }
            self.counters.forwarded += forwarded;
            self.counters.forwarded_bytes += forwarded_bytes;
            self.counters.express_forwarded += forwarded;
            self.prefetch_rings = (self.counters.flow_misses - misses) * 4 >= (end - chunk_start) as u64;
            // Large counter sets are counted at the end of the chunk: each counter was
            // prefetched as its packet was forwarded (see `count_traffic`).
            if self.defer_traffic {
                // (Packets past the records were counted at once.)
                let recorded = chunk_start..end.min(TX_RECORDS);
                if let (Some(verdicts), Some(records)) =
                    (verdicts.get(recorded.clone()), self.burst_traffic.get(recorded))
                {
                    for (verdict, &(slot, bytes)) in verdicts.iter().zip(records) {
                        if *verdict == Verdict::Forward {
                            self.traffic.count(slot as usize, bytes as usize);
                        }
                    }
                }
            }
        }
    }

    /// The Maglev hash of each packet of the chunk `bufs` the express lane took (bit per slot
    /// in `lane`) into `maglev`, and a prefetch of its ring slot, and of the IPv6 lane's
    /// packets' (bits in `self.lane6`, their hashes in `maglev` already).
    #[inline(never)]
    fn prefetch_ring_slots(&mut self, snap: &Snapshot, bufs: &[PacketBuf], lane: u64) {
        for (slot, buf) in bufs.iter().enumerate().take(MAX_BURST) {
            let hash = if lane & 1 << slot != 0 {
                let hash = express::maglev_hash(snap.hash_seed(), buf.as_slice()).unwrap_or(0);
                self.maglev[slot % MAX_BURST] = hash;
                hash
            } else if self.lane6 & 1 << slot != 0 {
                // (The IPv6 lane's first pass has it already.)
                self.maglev[slot % MAX_BURST]
            } else {
                continue;
            };
            let x = &self.express[slot % MAX_BURST];
            let v = snap.lane().vip.get(x.vip as usize);
            if let Some(ring) = v.and_then(|v| snap.pools().get(v.pool as usize)?.ring()) {
                ring.prefetch(hash);
            }
        }
    }

    /// The express lane's first half for IPv6 (out of line: IPv4 is the lane's first
    /// business), the packet's Maglev hash into `maglev` at `slot`.
    #[inline(never)]
    fn lane_classify_v6(
        &mut self,
        snap: &Snapshot,
        mac: u64,
        buf: &PacketBuf,
        slot: usize,
    ) -> Option<Express> {
        let frame = buf.as_slice();
        let (x, hash) = express::classify_v6(&snap.lane().vips6, &self.flows, snap.hash_seed(), mac, frame)?;
        self.maglev[slot % MAX_BURST] = hash;
        Some(x)
    }

    /// The second pass of a packet the IPv6 lane took (`at` in the burst, `slot` in its
    /// chunk): the lane's, or else the general path's from the start.
    #[inline(never)]
    fn finish_v6(
        &mut self,
        snap: &Snapshot,
        now: u64,
        buf: &mut PacketBuf,
        slot: usize,
        at: usize,
    ) -> Verdict {
        let x = self.express[slot % MAX_BURST];
        let hash = self.maglev[slot % MAX_BURST];
        let st =
            LaneState { flows: &mut self.flows, counters: &mut self.counters, ip_ident: &mut self.ip_ident };
        if let Some((traffic, len)) = snap.lane().forward_v6(snap.pools(), st, now, buf, &x, hash) {
            self.count_traffic(traffic, len, at);
            self.counters.express_forwarded += 1;
            return Verdict::Forward;
        }
        self.slot = slot;
        self.current = at;
        match self.classify_general(snap, buf) {
            Step::Done(v) => v,
            Step::Pending => self.forward(snap, now, buf, slot),
        }
    }

    /// Processes one packet.
    pub fn process_one(&mut self, snap: &Snapshot, now: u64, buf: &mut PacketBuf) -> Verdict {
        let mut verdict = [Verdict::Drop(DropReason::Malformed)];
        self.process(snap, now, core::slice::from_mut(buf), &mut verdict);
        verdict[0]
    }

    /// Counts packet `index` of the last burst, which the port refused to send, as
    /// `tx_full` instead of as forwarded or replied (and takes it out of its VIP's and
    /// backend's traffic, for the first [`TX_RECORDS`] packets of a burst).
    pub fn count_tx_full(&mut self, index: usize, verdict: Verdict) {
        match verdict {
            Verdict::Forward => {
                self.counters.forwarded = self.counters.forwarded.saturating_sub(1);
                if let Some(&(slot, bytes)) = self.burst_traffic.get(index) {
                    self.traffic.uncount(slot as usize, bytes as usize);
                }
            }
            Verdict::Reply => self.counters.replied = self.counters.replied.saturating_sub(1),
            // The packet counts as a too_big drop already, whether its answer goes or not.
            Verdict::TooBigReply | Verdict::Drop(_) => return,
        }
        self.counters.drops[DropReason::TxFull as usize] += 1;
    }

    #[inline(always)]
    fn count(&mut self, verdict: Verdict, buf: &PacketBuf) {
        match verdict {
            Verdict::Forward => {
                self.counters.forwarded += 1;
                self.counters.forwarded_bytes += buf.len() as u64;
            }
            Verdict::TooBigReply => self.counters.drops[DropReason::TooBig as usize] += 1,
            Verdict::Reply => self.counters.replied += 1,
            Verdict::Drop(r) => self.counters.drops[r as usize] += 1,
        }
    }

    #[inline(never)]
    fn classify_general(&mut self, snap: &Snapshot, buf: &mut PacketBuf) -> Step {
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
            EtherType::Ipv4 => self.classify_v4(snap, buf, l3),
            EtherType::Ipv6 => self.classify_v6(snap, buf, l3),
            _ => Step::Done(Verdict::Drop(DropReason::NotIp)),
        }
    }

    fn classify_v4(&mut self, snap: &Snapshot, buf: &mut PacketBuf, l3: usize) -> Step {
        let drop = |r| Step::Done(Verdict::Drop(r));
        let frame = buf.as_slice();
        let ip = match ipv4::Packet::new_checked(&frame[l3..]) {
            Ok(ip) => ip,
            Err(e) => return drop(DropReason::from_wire(e)),
        };
        let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
        let dst_ip = IpAddr::V4(dst);
        if ip.ttl() == 0 {
            return drop(DropReason::TtlExpired);
        }
        let fragment = ip.is_fragment();
        let first_fragment = ip.frag_offset() == 0;
        let payload = ip.payload();
        let ip_len = usize::from(ip.total_len());
        let tos = ip.dscp_ecn();
        let dont_frag = ip.dont_frag();

        if protocol == IpProtocol::Icmp && first_fragment && !fragment {
            let Ok(icmp) = icmpv4::Packet::new_checked(payload) else {
                return drop(DropReason::Malformed);
            };
            let is_ours = snap.is_local(dst_ip) || snap.is_vip_addr(dst_ip);
            match icmp.msg_type() {
                icmpv4::Message::EchoRequest if is_ours => {
                    if !ip.verify_checksum() || !icmp.verify_checksum() {
                        return drop(DropReason::Malformed);
                    }
                    return Step::Done(self.answer_echo_v4(snap.interface().mac, buf, l3, ip_len));
                }
                icmpv4::Message::DstUnreachable | icmpv4::Message::TimeExceeded
                    if snap.is_vip_addr(dst_ip) =>
                {
                    // About a packet a backend sent from the VIP to a client: the quoted
                    // packet's source is the VIP, its destination the client.
                    let Ok(q) = icmpv4::quoted(icmp.data()) else {
                        return drop(DropReason::Malformed);
                    };
                    let frame =
                        Frame { l3, ip_len, v6: false, tos, dont_frag, fragment: false, icmp_error: true };
                    return self.icmp_error_step(snap, &q, frame);
                }
                _ => {}
            }
        }
        let (sport, dport, flags) = match ports(protocol, payload, fragment) {
            Ok(p) => p,
            Err(r) => return drop(r),
        };
        let key = FlowKey::new_v4(u32::from(src), u32::from(dst), protocol.into(), sport, dport);
        self.vip_step(
            snap,
            dst_ip,
            protocol,
            dport,
            key,
            Frame { l3, ip_len, v6: false, tos, dont_frag, fragment, icmp_error: false },
            flags,
        )
    }

    fn classify_v6(&mut self, snap: &Snapshot, buf: &mut PacketBuf, l3: usize) -> Step {
        let drop = |r| Step::Done(Verdict::Drop(r));
        let frame = buf.as_slice();
        let ip = match ipv6::Packet::new_checked(&frame[l3..]) {
            Ok(ip) => ip,
            Err(e) => return drop(DropReason::from_wire(e)),
        };
        let upper = match ip.upper_layer() {
            Ok(u) => u,
            Err(e) => return drop(DropReason::from_wire(e)),
        };
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
                return drop(DropReason::Malformed);
            };
            let checksum_ok = icmp.verify_checksum(src, dst);
            match icmp.msg_type() {
                icmpv6::Message::NeighborSolicit => {
                    if !checksum_ok || ip.hop_limit() != 255 {
                        return drop(DropReason::Malformed);
                    }
                    return Step::Done(self.answer_solicit(snap, buf, l3, upper.offset));
                }
                icmpv6::Message::EchoRequest if snap.is_local(dst_ip) || snap.is_vip_addr(dst_ip) => {
                    if !checksum_ok {
                        return drop(DropReason::Malformed);
                    }
                    return Step::Done(self.answer_echo_v6(
                        snap.interface().mac,
                        buf,
                        l3,
                        ip_len,
                        upper.offset,
                    ));
                }
                icmpv6::Message::DstUnreachable
                | icmpv6::Message::PacketTooBig
                | icmpv6::Message::TimeExceeded
                | icmpv6::Message::ParamProblem
                    if snap.is_vip_addr(dst_ip) =>
                {
                    let Ok(q) = icmpv6::quoted(icmp.data()) else {
                        return drop(DropReason::Malformed);
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
                    return self.icmp_error_step(snap, &q, frame);
                }
                icmpv6::Message::RouterSolicit
                | icmpv6::Message::RouterAdvert
                | icmpv6::Message::NeighborAdvert
                | icmpv6::Message::Redirect => return drop(DropReason::Unsupported),
                _ => {}
            }
        }
        if ip.hop_limit() == 0 {
            return drop(DropReason::TtlExpired);
        }
        let (sport, dport, flags) = match ports(protocol, if first_fragment { l4 } else { &[] }, fragment) {
            Ok(p) => p,
            Err(r) => return drop(r),
        };
        let key = FlowKey::new(IpAddr::V6(src), dst_ip, protocol.into(), sport, dport);
        self.vip_step(
            snap,
            dst_ip,
            protocol,
            dport,
            key,
            Frame { l3, ip_len, v6: true, tos, dont_frag: true, fragment, icmp_error: false },
            flags,
        )
    }

    /// An ICMP error about a packet that a backend sent from a VIP to a client: the quoted
    /// packet's source is the VIP, its destination the client, so the flow it belongs to is
    /// the quoted one turned around.
    fn icmp_error_step(&mut self, snap: &Snapshot, q: &wire::ip::Quoted, frame: Frame) -> Step {
        let (sport, dport) = q.ports.unwrap_or((0, 0));
        let key = FlowKey::new(q.dst_addr, q.src_addr, q.protocol.into(), dport, sport);
        self.vip_step(snap, q.src_addr, q.protocol, sport, key, frame, None)
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
        self.pending[self.slot % MAX_BURST] = Some(ToVip {
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

    fn forward(&mut self, snap: &Snapshot, now: u64, buf: &mut PacketBuf, slot: usize) -> Verdict {
        let Some(p) = self.pending[slot % MAX_BURST] else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let p = &p;
        let vip = &snap.vips()[p.vip as usize];
        let pool = &snap.pools()[vip.pool as usize];
        let timeouts = *snap.idle_timeouts();
        let class = if p.icmp_error { None } else { Some(p.class) };
        let mut backend: Option<(u16, &PoolBackend)> = None;
        let found = self.flows.lookup_absent(p.check, p.hash, now, &timeouts, class);
        if let Ok(number) = found {
            let known = if self.oracle {
                // The pool's own index of numbers (see `PipelineOptions::oracle`).
                pool.by_number(number)
            } else {
                let lane = snap.lane();
                lane.vip.get(p.vip as usize).and_then(|v| lane.outer_of_number(v, number)).and_then(|o| {
                    let i = usize::from(o.index);
                    let b = pool.backends().get(i)?;
                    Some((i as u16, b))
                })
            };
            match known {
                Some(b) if b.1.state != BackendState::Down => {
                    self.counters.flow_hits += 1;
                    backend = Some(b);
                }
                _ => self.counters.flow_moved += 1,
            }
        }
        // The Maglev flow hash: needed for a new flow, and for GUE's source port and the
        // outer IPv6 flow label.
        let hash_of = |k: &FlowKey| {
            maglev::flow_hash(
                snap.hash_seed(),
                k.src_addr(),
                k.dst_addr(),
                k.protocol(),
                k.src_port(),
                k.dst_port(),
            )
        };
        let needs_hash = backend.is_none_or(|(_, b)| vip.encap == Encap::Gue || b.id.addr.is_ipv6());
        let flow_hash = if needs_hash { hash_of(&p.key) } else { 0 };
        let (index, backend) = match backend {
            Some((i, b)) => (i, *b),
            None => {
                self.counters.flow_misses += 1;
                let Some((i, b)) = pool.pick(flow_hash) else {
                    return Verdict::Drop(DropReason::NoBackend);
                };
                // An ICMP error opens no flow; a RST or FIN of an unknown flow needs none.
                if !p.icmp_error && !p.closing {
                    self.remember(
                        found == Err(Absent(true)),
                        p.check,
                        p.hash,
                        b.number,
                        now,
                        &timeouts,
                        p.class,
                    );
                }
                (i, *b)
            }
        };
        if p.fragment {
            self.counters.fragments += 1;
        }
        if p.icmp_error {
            self.counters.icmp_errors_forwarded += 1;
        }
        let verdict = self.encapsulate(snap, now, buf, p, vip, &backend, flow_hash);
        if verdict == Verdict::Forward {
            let slot = vip.counter_base as usize + usize::from(index);
            self.count_traffic(slot, buf.len(), self.current);
        }
        verdict
    }

    /// Remembers a new flow; counts `flow_table_full` when it took a live flow's place.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn remember(
        &mut self,
        absent: bool,
        check: u64,
        hash: u64,
        number: u32,
        now: u64,
        timeouts: &IdleTimeouts,
        class: TimeoutClass,
    ) {
        if self.flows.remember(absent, check, hash, number, now, timeouts, class) == Inserted::Evicted {
            self.counters.flow_table_full += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encapsulate(
        &mut self,
        snap: &Snapshot,
        now: u64,
        buf: &mut PacketBuf,
        p: &ToVip,
        vip: &Vip,
        backend: &PoolBackend,
        flow_hash: u32,
    ) -> Verdict {
        let tunnel = snap.tunnel();
        let iface = snap.interface();
        let outer_v6 = backend.id.addr.is_ipv6();
        let ip_header = if outer_v6 { ipv6::HEADER_LEN } else { ipv4::HEADER_LEN };
        let extra = match vip.encap {
            Encap::Ipip => 0,
            Encap::Gue => udp::HEADER_LEN + gue::BASE_HEADER_LEN,
            Encap::Gre => gre::BASE_HEADER_LEN,
        };
        let overhead = ip_header + extra;
        let mtu = usize::from(tunnel.mtu);
        // IPv4 without DF in an IPv4 tunnel: the outer packet is fragmented below.
        if p.ip_len + overhead > mtu && (p.dont_frag || outer_v6) {
            return self.too_big(snap, now, buf, p, mtu.saturating_sub(overhead));
        }
        // Everything that could refuse the packet is checked before the buffer changes: a
        // dropped packet stays as received.
        let has_source = match backend.id.addr {
            IpAddr::V4(_) => tunnel.source_v4.is_some(),
            IpAddr::V6(_) => tunnel.source_v6.is_some(),
        };
        if !has_source || buf.headroom() + p.l3 < ethernet::HEADER_LEN + overhead {
            return Verdict::Drop(DropReason::Unsupported);
        }
        if !outer_v6 && p.ip_len + overhead > mtu {
            let chunk = (mtu - ipv4::HEADER_LEN) & !7;
            if (extra + p.ip_len).div_ceil(chunk) - 1 > self.spare.len() {
                return Verdict::Drop(DropReason::TooBig);
            }
        }
        // The inner packet as received, without L2 header and Ethernet padding.
        buf.truncate(p.l3 + p.ip_len);
        buf.adj(p.l3);
        let inner_len = p.ip_len;
        let inner_proto = if p.v6 { IpProtocol::Ipv6 } else { IpProtocol::Ipv4 };
        let outer_proto = match vip.encap {
            Encap::Ipip => inner_proto,
            Encap::Gue => IpProtocol::Udp,
            Encap::Gre => IpProtocol::Gre,
        };
        let Some(out) = buf.prepend(ethernet::HEADER_LEN + overhead) else {
            return Verdict::Drop(DropReason::Unsupported);
        };
        let (l2_part, after_l2) = out.split_at_mut(ethernet::HEADER_LEN);
        let (ip_part, rest) = after_l2.split_at_mut(ip_header);
        let outer_src: IpAddr;
        match backend.id.addr {
            IpAddr::V4(dst) => {
                let Some(src) = tunnel.source_v4 else {
                    return Verdict::Drop(DropReason::Unsupported);
                };
                outer_src = IpAddr::V4(src);
                self.ip_ident = self.ip_ident.wrapping_add(1);
                let outer = OuterV4 {
                    src: u32::from(src),
                    dst: u32::from(dst),
                    protocol: outer_proto.into(),
                    total_len: (ipv4::HEADER_LEN + extra + inner_len) as u16,
                    tos: p.tos,
                    ident: self.ip_ident,
                    dont_frag: p.dont_frag,
                };
                write_outer_v4(l2_part, ip_part, iface.mac, iface.next_hop_mac, &outer);
            }
            IpAddr::V6(dst) => {
                let Some(src) = tunnel.source_v6 else {
                    return Verdict::Drop(DropReason::Unsupported);
                };
                outer_src = IpAddr::V6(src);
                ethernet::Repr {
                    src_addr: iface.mac,
                    dst_addr: iface.next_hop_mac,
                    ethertype: EtherType::Ipv6,
                }
                .emit(&mut ethernet::Frame::new_unchecked(l2_part));
                ipv6::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: outer_proto,
                    payload_len: extra + inner_len,
                    hop_limit: 64,
                    traffic_class: p.tos,
                    flow_label: flow_hash & 0x000f_ffff,
                }
                .emit(&mut ipv6::Packet::new_unchecked(ip_part));
            }
        }
        match vip.encap {
            Encap::Ipip => {}
            Encap::Gre => gre::Repr {
                protocol: if p.v6 { EtherType::Ipv6 } else { EtherType::Ipv4 },
                checksum: false,
                key: None,
                sequence: None,
            }
            .emit(&mut rest[..gre::BASE_HEADER_LEN]),
            // IPv4: no UDP checksum (RFC 8086 §4.1.1 allows it); IPv6: a full one, which
            // every receiver accepts (zero checksums there need RFC 6935 opt-in).
            Encap::Gue => write_gue(
                rest,
                inner_proto,
                flow_hash,
                tunnel.gue_port,
                inner_len,
                outer_v6.then_some((outer_src, backend.id.addr)),
            ),
        }
        if !outer_v6 && p.ip_len + overhead > mtu {
            return self.fragment_outer(buf, mtu);
        }
        Verdict::Forward
    }

    /// Splits the outer IPv4 packet in `buf` into fragments of at most `mtu` bytes: the
    /// first stays in `buf`, the others go to the extra queue.
    fn fragment_outer(&mut self, buf: &mut PacketBuf, mtu: usize) -> Verdict {
        const L2: usize = ethernet::HEADER_LEN;
        const H: usize = ipv4::HEADER_LEN;
        let total = buf.len() - L2;
        let chunk = (mtu - H) & !7;
        let pieces = (total - H).div_ceil(chunk);
        if pieces - 1 > self.spare.len() {
            return Verdict::Drop(DropReason::TooBig);
        }
        let frame = buf.as_slice();
        let mut offset = chunk;
        while offset < total - H {
            let len = chunk.min(total - H - offset);
            let Some(mut piece) = self.spare.pop() else {
                return Verdict::Drop(DropReason::TooBig);
            };
            piece.clear();
            let Some(out) = piece.append(L2 + H + len) else {
                self.spare.push(piece);
                return Verdict::Drop(DropReason::TooBig);
            };
            out[..L2 + H].copy_from_slice(&frame[..L2 + H]);
            out[L2 + H..].copy_from_slice(&frame[L2 + H + offset..L2 + H + offset + len]);
            let mut ip = ipv4::Packet::new_unchecked(&mut out[L2..]);
            ip.set_total_len((H + len) as u16);
            ip.set_flags_and_offset(false, offset + len < total - H, offset as u16);
            ip.fill_checksum();
            self.extra.push((self.current, piece));
            self.counters.outer_fragments += 1;
            offset += len;
        }
        buf.truncate(L2 + H + chunk);
        let mut ip = ipv4::Packet::new_unchecked(&mut buf.as_mut_slice()[L2..]);
        ip.set_total_len((H + chunk) as u16);
        ip.set_flags_and_offset(false, true, 0);
        ip.fill_checksum();
        self.counters.outer_fragments += 1;
        Verdict::Forward
    }

    /// Turns `buf` into an ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6)
    /// to the client, quoting its packet, from the VIP.
    ///
    /// The packet counts as dropped (`too_big`) whether or not the error is sent; the error
    /// is counted in `icmp_too_big_sent`, not in `replied`.
    fn too_big(&mut self, snap: &Snapshot, now: u64, buf: &mut PacketBuf, p: &ToVip, mtu: usize) -> Verdict {
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

    fn answer_arp(&mut self, snap: &Snapshot, buf: &mut PacketBuf, l3: usize) -> Verdict {
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

    fn answer_echo_v4(
        &mut self,
        mac: EthernetAddress,
        buf: &mut PacketBuf,
        l3: usize,
        ip_len: usize,
    ) -> Verdict {
        buf.truncate(l3 + ip_len);
        let frame = buf.as_mut_slice();
        reply_macs(frame, mac);
        let mut ip = ipv4::Packet::new_unchecked(&mut frame[l3..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        let hl = ip.header_len();
        let mut icmp = icmpv4::Packet::new_unchecked(&mut frame[l3 + hl..]);
        // Type 8 → 0 in the first word: RFC 1624 incremental update.
        let old = u16::from_be_bytes([8, icmp.msg_code()]);
        let new = u16::from_be_bytes([0, icmp.msg_code()]);
        icmp.set_msg_type(icmpv4::Message::EchoReply);
        let ck = checksum::update(icmp.checksum(), old, new);
        icmp.set_checksum(ck);
        self.counters.echo_replies += 1;
        Verdict::Reply
    }

    fn answer_echo_v6(
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
        buf.truncate(l3 + ip_len);
        let frame = buf.as_mut_slice();
        reply_macs(frame, mac);
        let mut ip = ipv6::Packet::new_unchecked(&mut frame[l3..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(64);
        let mut icmp = icmpv6::Packet::new_unchecked(&mut frame[l3 + l4_offset..]);
        icmp.set_msg_type(icmpv6::Message::EchoReply);
        icmp.fill_checksum(dst, src);
        self.counters.echo_replies += 1;
        Verdict::Reply
    }

    fn answer_solicit(
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

/// Addresses an answer back to the frame's sender, from us.
fn reply_macs(frame: &mut [u8], mac: EthernetAddress) {
    let mut eth = ethernet::Frame::new_unchecked(frame);
    let sender = eth.src_addr();
    eth.set_dst_addr(sender);
    eth.set_src_addr(mac);
}
