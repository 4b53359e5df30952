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

use crate::announce::Announcer;
use crate::buf::PacketBuf;
use crate::express::{self, Express, LaneState};
use crate::flow::{Absent, FlowKey, FlowTable, IdleTimeouts, Inserted, NewFlow, TimeoutClass};
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

mod classify;
mod forward;
mod respond;

use respond::RateLimit;

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
    /// How many frames of the next burst the last [`Pipeline::process_ahead`] asked for:
    /// the next call does not ask for those again.
    asked: usize,
    /// Where new flows are announced to the fleet (see [`crate::announce`]), if anywhere.
    announce: Option<Arc<Announcer>>,
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
            // Outer fragments are at most one MTU; the config allows jumbo MTUs up to 9216.
            spare: (0..SPARE_BUFFERS).map(|_| PacketBuf::with_capacity(SPARE_CAPACITY)).collect(),
            traffic: Arc::new(TrafficCounters::new(0, 0)),
            burst_traffic: Box::new([(u32::MAX, 0); TX_RECORDS]),
            defer_traffic: false,
            prefetch_rings: false,
            maglev: Box::new([0; MAX_BURST]),
            lane6: 0,
            asked: 0,
            announce: None,
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
        self.process_ahead(snap, now, bufs, verdicts, &[]);
    }

    /// [`process`](Pipeline::process), asking the CPU for the headers of `ahead`'s frames as
    /// it goes: the burst received after this one (see [`crate::worker`]), whose frames a
    /// NIC's DMA may have left in memory. One frame's lines are asked for as each packet of
    /// this burst is finished, so that the misses spread over the burst's time (asked for
    /// all at once, they would wait on each other: a core tracks only so many). The next
    /// call is taken to be for `ahead`'s packets, and asks for their frames no more.
    pub fn process_ahead(
        &mut self,
        snap: &Snapshot,
        now: u64,
        bufs: &mut [PacketBuf],
        verdicts: &mut [Verdict],
        ahead: &[PacketBuf],
    ) {
        let n = bufs.len().min(verdicts.len());
        // Both of length n: indexes below n need no further bounds checks.
        let (bufs, verdicts) = (&mut bufs[..n], &mut verdicts[..n]);
        let mac = snap.interface().mac.0;
        let mac = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
        let express = !self.general_path_only;
        let asked = core::mem::take(&mut self.asked);
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
            for b in bufs.get(chunk_start.max(asked)..end).unwrap_or_default() {
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
                match self.classify_general(snap, &mut bufs[i], slot) {
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
                // (`i % MAX_BURST`: chunks start at multiples of it, which `forward` and
                // `finish_v6` rely on.)
                let slot = i - chunk_start;
                if let Some(b) = ahead.get(i) {
                    b.prefetch_headers();
                }
                if lane & 1 << slot != 0 {
                    let x = self.express[slot % MAX_BURST];
                    let hash = if self.prefetch_rings { Some(self.maglev[slot % MAX_BURST]) } else { None };
                    let st = LaneState {
                        flows: &mut self.flows,
                        counters: &mut self.counters,
                        ip_ident: &mut self.ip_ident,
                        announce: self.announce.as_deref(),
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
                    verdicts[i] = match self.classify_general(snap, &mut bufs[i], slot) {
                        Step::Done(v) => v,
                        Step::Pending => self.forward(snap, now, &mut bufs[i], i),
                    };
                } else if self.lane6 & 1 << slot != 0 {
                    verdicts[i] = self.finish_v6(snap, now, &mut bufs[i], i);
                } else if self.pending[slot % MAX_BURST].is_some() {
                    verdicts[i] = self.forward(snap, now, &mut bufs[i], i);
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
        self.asked = ahead.len().min(n);
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

    /// The second pass of packet `at` of the burst, which the IPv6 lane took (in its
    /// chunk's slot, `at % MAX_BURST`): the lane's, or else the general path's from the start.
    #[inline(never)]
    fn finish_v6(&mut self, snap: &Snapshot, now: u64, buf: &mut PacketBuf, at: usize) -> Verdict {
        let slot = at % MAX_BURST;
        let x = self.express[slot];
        let hash = self.maglev[slot];
        let st = LaneState {
            flows: &mut self.flows,
            counters: &mut self.counters,
            ip_ident: &mut self.ip_ident,
            announce: self.announce.as_deref(),
        };
        if let Some((traffic, len)) = snap.lane().forward_v6(snap.pools(), st, now, buf, &x, hash) {
            self.count_traffic(traffic, len, at);
            self.counters.express_forwarded += 1;
            return Verdict::Forward;
        }
        match self.classify_general(snap, buf, slot) {
            Step::Done(v) => v,
            Step::Pending => self.forward(snap, now, buf, at),
        }
    }

    /// Announces every flow remembered anew from now on to `announcer` (`None`: to
    /// nobody).
    pub fn set_announcer(&mut self, announcer: Option<Arc<Announcer>>) {
        self.announce = announcer;
    }

    /// Remembers flow `key` as going to pair `number`, as another appliance of the fleet
    /// decided it. A live entry of the same decision is kept alive (as a packet would); a
    /// live entry of another decision stands, untouched. Returns whether the flow was new
    /// here.
    pub fn adopt(&mut self, key: &FlowKey, number: u32, now: u64, timeouts: &IdleTimeouts) -> bool {
        let (hash, check) = (self.flows.hash(key), self.flows.check(key));
        match self.flows.peek(check, hash, now, timeouts) {
            Some(n) if n == number => {
                let _ = self.flows.lookup_absent(check, hash, now, timeouts, None);
                false
            }
            Some(_) => false,
            None => {
                let class = if key.protocol() == 6 { TimeoutClass::Tcp } else { TimeoutClass::Udp };
                self.remember(false, NewFlow { check, hash, backend: number, class }, now, timeouts);
                self.counters.flows_adopted += 1;
                true
            }
        }
    }

    /// Whether the flow `key` is live here (seen within its idle timeout).
    pub fn is_live(&self, key: &FlowKey, now: u64, timeouts: &IdleTimeouts) -> bool {
        self.flows.peek(self.flows.check(key), self.flows.hash(key), now, timeouts).is_some()
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
}
