//! `vipgate bench`: the throughput harness.
//!
//! Each worker thread (pinned, from core 1 up where the machine has it) runs the engine's
//! burst loop: load a burst of frames into the buffers (what a NIC's receive does; its
//! time is measured apart, as the floor), run the pipeline, hand what is to be sent to the
//! port (here: counted and dropped). The frames are written per packet from a compact
//! description of the flow, so ten million live flows cost no memory for frames.
//!
//! Workloads:
//! - `64b`: 60-byte frames (64 on the wire), TCP and UDP, random packets of `flows` live
//!   flows (each flow sent once to warm the table before timing starts);
//! - `gateway`: the synth driver's 2G-gateway mix (60–300 bytes, heartbeats, noise);
//! - `syn`: a new flow every packet (TCP SYN from ever-new source ports), the table full.
//!
//! Measured per worker: packets, Mpps and nanoseconds per packet in the engine, TSC cycles
//! per packet (x86_64), and the latency of a packet's time in the engine (its burst's
//! processing time) as p50/p99/p99.9 from an HDR histogram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use vipgate_engine::buf::PacketBuf;
use vipgate_engine::maglev::BackendId;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};
use vipgate_engine::port::synth::{Profile, SynthQueue, SynthSpec, Target};
use vipgate_engine::port::Port;
use vipgate_engine::table::{BackendSpec, BackendState, Encap, Snapshot, SnapshotSpec, VipProtocol, VipSpec};
use vipgate_engine::wire::{checksum, IpProtocol};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 64-byte frames of established flows.
    Small,
    /// The synth 2G-gateway mix.
    Gateway,
    /// A new flow every packet.
    Syn,
}

impl Workload {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Small => "64b",
            Workload::Gateway => "gateway",
            Workload::Syn => "syn",
        }
    }

    /// The workload called `s`.
    pub fn parse(s: &str) -> Result<Workload, String> {
        match s {
            "64b" => Ok(Workload::Small),
            "gateway" => Ok(Workload::Gateway),
            "syn" => Ok(Workload::Syn),
            other => Err(format!("workload \"{other}\" is not one of 64b, gateway, syn")),
        }
    }
}

/// One run's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchSpec {
    /// What traffic.
    pub workload: Workload,
    /// Live flows (for `syn`: the flow table's capacity).
    pub flows: u32,
    /// VIPs.
    pub vips: u32,
    /// Backends per VIP.
    pub backends: u32,
    /// Worker threads.
    pub workers: usize,
    /// How long to measure, unless `packets` is given.
    pub seconds: f64,
    /// Exactly this many packets per worker after warm-up (for instruction counts).
    pub packets: Option<u64>,
    /// The express lane off: every packet takes the general path, as packets to IPv6 VIPs
    /// and the IPv4 ones the lane does not take do.
    pub general_path: bool,
    /// IPv6 VIPs, backends (IPv6 in IPv6) and clients (64b and syn).
    pub ipv6: bool,
    /// Frames pushed out of the CPU caches before the pipeline reads them (the memory
    /// driver only, x86-64): see [`flush_frames`].
    pub cold_frames: bool,
}

/// What one worker measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerResult {
    /// Packets through the engine while timed.
    pub packets: u64,
    /// Nanoseconds in the pipeline.
    pub engine_ns: u64,
    /// Nanoseconds loading frames (the NIC's share, the floor).
    pub load_ns: u64,
    /// TSC cycles in the pipeline (0 where there is no TSC).
    pub engine_cycles: u64,
    /// Forwarded.
    pub forwarded: u64,
    /// Of those, forwarded by the express lane.
    pub express_forwarded: u64,
    /// Latency percentiles of a packet's time in the engine, nanoseconds: p50, p99, p99.9.
    pub latency_ns: [u64; 3],
}

impl WorkerResult {
    /// Millions of packets per second of engine time.
    pub fn mpps(&self) -> f64 {
        self.packets as f64 / self.engine_ns.max(1) as f64 * 1e3
    }
    /// Nanoseconds per packet in the engine.
    pub fn ns_per_packet(&self) -> f64 {
        self.engine_ns as f64 / self.packets.max(1) as f64
    }
    /// TSC cycles per packet.
    pub fn cycles_per_packet(&self) -> f64 {
        self.engine_cycles as f64 / self.packets.max(1) as f64
    }
}

/// The burst size.
const BURST: usize = 32;
/// VIPs share this many backend sets (pools): distinct rings without a ring per VIP.
const POOLS: u32 = 16;

fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions; it reads the time-stamp counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// The VIP `v` of `n`: addresses 203.0.113.1..=250, then ports from 8000.
fn vip_of(v: u32) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(203, 0, 113, 1 + (v % 250) as u8), 8000 + (v / 250) as u16)
}

/// The IPv6 counterpart of an IPv4 address of the bench: the same last octet under
/// `prefix` (a /48 of 2001:db8::/32).
fn v6_of(prefix: u16, a: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, prefix, 0, 0, 0, 0, u16::from(a.octets()[3]))
}

/// The bench's snapshot: `vips` UDP-or-TCP VIPs (even: UDP, odd: TCP) each with
/// `backends` backends, IPIP (IPv6 in IPv6 with `ipv6`), in [`POOLS`] pools.
pub fn snapshot(vips: u32, backends: u32, ipv6: bool) -> Result<Snapshot, String> {
    let addr = |prefix: u16, a: Ipv4Addr| if ipv6 { IpAddr::V6(v6_of(prefix, a)) } else { IpAddr::V4(a) };
    let vip_specs = (0..vips)
        .map(|v| {
            let (vip, port) = vip_of(v);
            let pool = v % POOLS;
            VipSpec {
                addr: addr(0xab, vip),
                port: Some(port),
                protocol: if v % 2 == 0 { VipProtocol::Udp } else { VipProtocol::Tcp },
                encap: Encap::Ipip,
                backends: (0..backends)
                    .map(|b| BackendSpec {
                        id: BackendId {
                            addr: addr(1, Ipv4Addr::new(192, 0, 2, 1 + (b % 250) as u8)),
                            port: Some(10_000 + (b / 250) as u16 * 16 + pool as u16),
                        },
                        weight: 100,
                        state: BackendState::Active,
                    })
                    .collect(),
            }
        })
        .collect();
    Snapshot::build(&SnapshotSpec { vips: vip_specs, ..SnapshotSpec::example() }).map_err(|e| e.to_string())
}

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// The most distinct flows the bench writes: 200 gateway addresses x 64 000 ports.
pub const MAX_FLOWS: u32 = 200 * 64_000;

/// Writes the 60-byte frame of flow `i` (of `vips` VIPs) into `buf`: from carrier gateway
/// 198.51.100.(i mod 200) port 1024 + i / 200 to the flow's VIP; TCP ACK (SYN with `syn`)
/// or UDP, as the VIP takes. Flows are distinct up to [`MAX_FLOWS`]. With `ipv6`, the
/// same over IPv6 (from 2001:db8:c::(i mod 200), 74 or 80 bytes).
fn write_small(buf: &mut PacketBuf, i: u32, vips: u32, syn: bool, ipv6: bool) {
    if ipv6 {
        return write_small_v6(buf, i, vips, syn);
    }
    let v = i.wrapping_mul(0x9e37_79b9) % vips;
    let (dst, dport) = vip_of(v);
    let udp = v.is_multiple_of(2);
    let src = Ipv4Addr::new(198, 51, 100, (i % 200) as u8);
    let sport = (1024 + (i / 200) % 64_000) as u16;
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&OUR_MAC);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xfe]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total: u16 = if udp { 20 + 8 + 18 } else { 20 + 20 };
    f[14] = 0x45;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[20] = 0x40;
    f[22] = 60;
    f[23] = if udp { 17 } else { 6 };
    f[26..30].copy_from_slice(&src.octets());
    f[30..34].copy_from_slice(&dst.octets());
    let ck = !checksum::data(&f[14..34]);
    f[24..26].copy_from_slice(&ck.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    if udp {
        f[38..40].copy_from_slice(&26u16.to_be_bytes());
    } else {
        f[46] = 0x50;
        f[47] = if syn { 0x02 } else { 0x10 };
    }
    let _ = buf.set_frame(&f);
}

/// [`write_small`] over IPv6.
fn write_small_v6(buf: &mut PacketBuf, i: u32, vips: u32, syn: bool) {
    let v = i.wrapping_mul(0x9e37_79b9) % vips;
    let (dst, dport) = vip_of(v);
    let udp = v.is_multiple_of(2);
    let src = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, (i % 200) as u16);
    let dst = v6_of(0xab, dst);
    let sport = (1024 + (i / 200) % 64_000) as u16;
    let l4_len: u16 = if udp { 8 + 18 } else { 20 };
    let mut f = [0u8; 14 + 40 + 26];
    f[..6].copy_from_slice(&OUR_MAC);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xfe]);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&l4_len.to_be_bytes());
    f[20] = if udp { 17 } else { 6 };
    f[21] = 64;
    f[22..38].copy_from_slice(&src.octets());
    f[38..54].copy_from_slice(&dst.octets());
    f[54..56].copy_from_slice(&sport.to_be_bytes());
    f[56..58].copy_from_slice(&dport.to_be_bytes());
    if udp {
        f[58..60].copy_from_slice(&l4_len.to_be_bytes());
    } else {
        f[66] = 0x50;
        f[67] = if syn { 0x02 } else { 0x10 };
    }
    // IPv6 has no header checksum: the L4 one is mandatory (UDP's too).
    let end = 14 + 40 + usize::from(l4_len);
    let protocol = if udp { IpProtocol::Udp } else { IpProtocol::Tcp };
    let pseudo = checksum::pseudo_header_v6(src, dst, protocol, u32::from(l4_len));
    let sum = checksum::finish(checksum::combine(&[pseudo, checksum::data(&f[54..end])]));
    let at = if udp { 60 } else { 70 };
    f[at..at + 2].copy_from_slice(&(if udp && sum == 0 { 0xffff } else { sum }).to_be_bytes());
    let _ = buf.set_frame(&f[..end]);
}

/// A worker's source of frames.
enum Source {
    Small { vips: u32, flows: u32, rng: u64, ipv6: bool },
    Syn { vips: u32, next: u32, ipv6: bool },
    Gateway(Box<SynthQueue>),
}

impl Source {
    /// The next frame of a 64b or syn source into `b`.
    fn write_one(&mut self, b: &mut PacketBuf) {
        match self {
            Source::Small { vips, flows, rng, ipv6 } => {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                let i = (((*rng >> 32) * u64::from(*flows)) >> 32) as u32;
                write_small(b, i, *vips, false, *ipv6);
            }
            Source::Syn { vips, next, ipv6 } => {
                write_small(b, *next, *vips, true, *ipv6);
                *next = next.wrapping_add(1);
            }
            Source::Gateway(_) => {
                unreachable!("the gateway mix comes from its synth queue a burst at a time")
            }
        }
    }

    fn load(&mut self, bufs: &mut [PacketBuf]) {
        if let Source::Gateway(q) = self {
            let n = q.rx_burst(bufs);
            debug_assert_eq!(n, bufs.len());
            return;
        }
        for b in bufs.iter_mut() {
            self.write_one(b);
        }
    }
}

/// Pushes each buffer's frame, and the line in front of it where the tunnel's headers go,
/// out of every CPU cache, as a NIC's DMA leaves the frames it receives on machines
/// without cache injection (Intel's DDIO puts them in the last-level cache instead): the
/// pipeline then meets its packets as it does behind such a NIC, not hot from the bench's
/// own writing.
#[cfg(target_arch = "x86_64")]
fn flush_frames(bufs: &[PacketBuf]) {
    use core::arch::x86_64::{_mm_clflush, _mm_mfence};
    for b in bufs {
        let frame = b.as_slice();
        let start = frame.as_ptr() as usize - b.headroom().min(64);
        let end = frame.as_ptr() as usize + frame.len();
        for line in (start & !63..end).step_by(64) {
            // SAFETY: an address in the buffer's own allocation, or in the same cache line
            // (and page) as one; clflush moves no data, it only evicts the line.
            unsafe { _mm_clflush(line as *const u8) };
        }
    }
    // SAFETY: a fence has no preconditions.
    unsafe { _mm_mfence() };
}

#[cfg(not(target_arch = "x86_64"))]
fn flush_frames(_: &[PacketBuf]) {}

/// What a bench worker measures, burst by burst, until its time or packet count is done.
struct Meter<'a> {
    spec: &'a BenchSpec,
    progress: &'a AtomicU64,
    started: Instant,
    hist: Histogram<u64>,
    packets: u64,
    engine_ns: u64,
    load_ns: u64,
    cycles: u64,
    forwarded: u64,
}

impl<'a> Meter<'a> {
    fn new(spec: &'a BenchSpec, progress: &'a AtomicU64) -> Meter<'a> {
        Meter {
            spec,
            progress,
            started: Instant::now(),
            hist: Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            packets: 0,
            engine_ns: 0,
            load_ns: 0,
            cycles: 0,
            forwarded: 0,
        }
    }

    fn done(&self) -> bool {
        match self.spec.packets {
            Some(limit) => self.packets >= limit,
            None => {
                self.packets.is_multiple_of(BURST as u64 * 256)
                    && self.started.elapsed() >= Duration::from_secs_f64(self.spec.seconds)
            }
        }
    }

    /// A burst of `n` packets: loaded from `at[0]` to `at[1]`, in the engine until `at[2]`.
    fn record(&mut self, at: [Instant; 3], cycles: u64, n: usize, forwarded: usize) {
        let burst_ns = (at[2] - at[1]).as_nanos() as u64;
        self.load_ns += (at[1] - at[0]).as_nanos() as u64;
        self.engine_ns += burst_ns;
        self.cycles += cycles;
        self.packets += n as u64;
        self.forwarded += forwarded as u64;
        let _ = self.hist.record_n(burst_ns.max(1), n.max(1) as u64);
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn result(self) -> WorkerResult {
        WorkerResult {
            packets: self.packets,
            engine_ns: self.engine_ns,
            load_ns: self.load_ns,
            engine_cycles: self.cycles,
            forwarded: self.forwarded,
            express_forwarded: 0,
            latency_ns: [
                self.hist.value_at_quantile(0.5),
                self.hist.value_at_quantile(0.99),
                self.hist.value_at_quantile(0.999),
            ],
        }
    }
}

/// A pipeline as a worker has one: its flow table, and per-(VIP, backend) counters.
fn bench_pipeline(capacity: usize, snap: &Snapshot, general_path: bool) -> Pipeline {
    let mut pipeline = Pipeline::new(PipelineOptions {
        flow_capacity: capacity,
        general_path_only: general_path,
        ..PipelineOptions::default()
    });
    pipeline.set_traffic(std::sync::Arc::new(vipgate_engine::stats::TrafficCounters::new(
        snap.generation(),
        snap.traffic_slots(),
    )));
    pipeline
}

/// Runs one worker's share: warm-up, then the timed loop. `progress` counts packets.
fn run_worker(spec: &BenchSpec, worker: usize, snap: &Snapshot, progress: &AtomicU64) -> WorkerResult {
    let per_worker_flows = (spec.flows / spec.workers as u32).max(1);
    let capacity = match spec.workload {
        Workload::Syn => per_worker_flows as usize,
        _ => (2 * per_worker_flows as usize).max(1024),
    };
    let mut pipeline = bench_pipeline(capacity, snap, spec.general_path);
    let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let mut verdicts = vec![Verdict::Forward; BURST];
    let base = worker as u32 * per_worker_flows;
    let mut source = match spec.workload {
        Workload::Small => Source::Small {
            vips: spec.vips,
            flows: per_worker_flows,
            rng: 0x2545_f491_4f6c_dd1d ^ worker as u64,
            ipv6: spec.ipv6,
        },
        Workload::Syn => Source::Syn { vips: spec.vips, next: base, ipv6: spec.ipv6 },
        Workload::Gateway => {
            let targets = (0..spec.vips.min(1000))
                .map(|v| {
                    let (a, p) = vip_of(v);
                    Target { addr: IpAddr::V4(a), protocol: if v % 2 == 0 { 17 } else { 6 }, port: Some(p) }
                })
                .collect();
            let synth = SynthSpec {
                targets,
                unused_in_subnet: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 251))),
                profile: Profile::Gateway2g,
                flows_per_gateway: (per_worker_flows as usize / vipgate_engine::port::synth::GATEWAYS).max(1),
                ..SynthSpec::default()
            };
            Source::Gateway(Box::new(SynthQueue::new(synth, worker, spec.workers)))
        }
    };
    let mut now: u64 = 1_000_000_000;
    // Warm-up: every flow once (64b), or a second of the mix.
    match spec.workload {
        Workload::Small => {
            for start in (0..per_worker_flows).step_by(BURST) {
                let n = (per_worker_flows - start).min(BURST as u32) as usize;
                for (k, b) in bufs[..n].iter_mut().enumerate() {
                    write_small(b, start + k as u32, spec.vips, false, spec.ipv6);
                }
                pipeline.process(snap, now, &mut bufs[..n], &mut verdicts[..n]);
            }
        }
        Workload::Gateway => {
            for _ in 0..(u64::from(per_worker_flows) * 4 / BURST as u64).max(1000) {
                source.load(&mut bufs);
                pipeline.process(snap, now, &mut bufs, &mut verdicts);
            }
        }
        Workload::Syn => {}
    }
    let mut meter = Meter::new(spec, progress);
    let lane_before = pipeline.counters().express_forwarded;
    let mut extra: Vec<PacketBuf> = Vec::with_capacity(2 * vipgate_engine::port::MAX_BURST);
    // As a worker's loop does, one burst is received ahead of the one processed (see
    // `vipgate_engine::worker`): `ahead` is loaded (the NIC's share, untimed), and its
    // frames are asked for while `bufs` is processed.
    let mut ahead: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    source.load(&mut bufs);
    if spec.cold_frames {
        flush_frames(&bufs);
    }
    while !meter.done() {
        let t0 = Instant::now();
        source.load(&mut ahead);
        if spec.cold_frames {
            flush_frames(&ahead);
        }
        let t1 = Instant::now();
        let c0 = tsc();
        // 2 µs of clock per burst: flows stay live (timeouts are minutes).
        now += 2_000;
        pipeline.process_ahead(snap, now, &mut bufs, &mut verdicts, &ahead);
        let c1 = tsc();
        let t2 = Instant::now();
        extra.extend(pipeline.take_extra().map(|(_, b)| b));
        for b in extra.drain(..) {
            pipeline.recycle(b);
        }
        let forwarded = verdicts.iter().filter(|v| **v == Verdict::Forward).count();
        meter.record([t0, t1, t2], c1.wrapping_sub(c0), BURST, forwarded);
        core::mem::swap(&mut bufs, &mut ahead);
    }
    let mut result = meter.result();
    result.express_forwarded = pipeline.counters().express_forwarded - lane_before;
    result
}

/// Runs `spec` on a DPDK port's queue, one worker pinned to core 1 (where the machine has
/// it): per burst, mbufs from the port's pool get the workload's frames (the stand-in for
/// a device's receive: DPDK's net_null has no frames a VIP would take), the pipeline
/// encapsulates them in place, and what it forwards goes to the device's TX (net_null
/// frees it; a NIC sends it). `load_ns` is the receive stand-in, `engine_ns` the pipeline
/// and TX.
#[cfg(feature = "dpdk")]
pub fn run_dpdk(
    spec: &BenchSpec,
    queue: &mut vipgate_engine::port::dpdk::DpdkQueue,
    mut on_progress: impl FnMut(f64),
) -> Result<Vec<WorkerResult>, String> {
    if spec.workers != 1 {
        return Err("--driver dpdk measures one worker (--workers 1)".into());
    }
    if spec.workload == Workload::Gateway {
        return Err("--driver dpdk takes the 64b and syn workloads".into());
    }
    if spec.flows == 0 || spec.flows > MAX_FLOWS || spec.vips == 0 || spec.backends == 0 {
        return Err(format!("--flows 1..={MAX_FLOWS}, --vips and --backends at least 1"));
    }
    let snap = snapshot(spec.vips, spec.backends, spec.ipv6)?;
    let progress = AtomicU64::new(0);
    let core = core_affinity::get_core_ids().unwrap_or_default().get(1).copied();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            run_dpdk_worker(spec, &snap, queue, &progress)
        });
        let started = Instant::now();
        while !worker.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
            let share = match spec.packets {
                Some(p) => progress.load(Ordering::Relaxed) as f64 / (p as f64).max(1.0),
                None => started.elapsed().as_secs_f64() / spec.seconds.max(1e-3),
            };
            on_progress(share.min(1.0));
        }
        worker.join().map_err(|_| "the bench worker panicked".to_string()).map(|r| vec![r])
    })
}

#[cfg(feature = "dpdk")]
fn run_dpdk_worker(
    spec: &BenchSpec,
    snap: &Snapshot,
    queue: &mut vipgate_engine::port::dpdk::DpdkQueue,
    progress: &AtomicU64,
) -> WorkerResult {
    let flows = spec.flows;
    let capacity =
        if spec.workload == Workload::Syn { flows as usize } else { (2 * flows as usize).max(1024) };
    let mut pipeline = bench_pipeline(capacity, snap, spec.general_path);
    let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::empty()).collect();
    let mut verdicts = [Verdict::Forward; BURST];
    let mut source = match spec.workload {
        Workload::Syn => Source::Syn { vips: spec.vips, next: 0, ipv6: spec.ipv6 },
        _ => Source::Small { vips: spec.vips, flows, rng: 0x2545_f491_4f6c_dd1d, ipv6: spec.ipv6 },
    };
    let mut now: u64 = 1_000_000_000;
    // Forwards what the pipeline says to forward, in order; returns how many the device took.
    let send =
        |bufs: &mut [PacketBuf], verdicts: &[Verdict], queue: &mut vipgate_engine::port::dpdk::DpdkQueue| {
            let mut k = 0;
            for (i, v) in verdicts.iter().enumerate().take(bufs.len()) {
                if v.sends() {
                    bufs.swap(i, k);
                    k += 1;
                }
            }
            if k == 0 {
                0
            } else {
                queue.tx_burst(&mut bufs[..k])
            }
        };
    if spec.workload == Workload::Small {
        for start in (0..flows).step_by(BURST) {
            let n = (flows - start).min(BURST as u32) as usize;
            let mut i = start;
            let got = queue.rx_generated(&mut bufs[..n], |b| {
                write_small(b, i, spec.vips, false, spec.ipv6);
                i += 1;
            });
            pipeline.process(snap, now, &mut bufs[..got], &mut verdicts[..got]);
            send(&mut bufs[..got], &verdicts[..got], queue);
        }
    }
    let mut meter = Meter::new(spec, progress);
    let lane_before = pipeline.counters().express_forwarded;
    // One burst ahead, as a worker's loop polls (see `vipgate_engine::worker`).
    let mut ahead: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::empty()).collect();
    let mut n = queue.rx_generated(&mut bufs, |b| source.write_one(b));
    while !meter.done() {
        let t0 = Instant::now();
        let next = queue.rx_generated(&mut ahead, |b| source.write_one(b));
        let t1 = Instant::now();
        let c0 = tsc();
        now += 2_000;
        pipeline.process_ahead(snap, now, &mut bufs[..n], &mut verdicts[..n], &ahead[..next]);
        let sent = send(&mut bufs[..n], &verdicts[..n], queue);
        let c1 = tsc();
        let t2 = Instant::now();
        meter.record([t0, t1, t2], c1.wrapping_sub(c0), n, sent);
        if n == 0 {
            // The pool ran dry: a leak would end here rather than spin.
            break;
        }
        core::mem::swap(&mut bufs, &mut ahead);
        n = next;
    }
    let mut result = meter.result();
    result.express_forwarded = pipeline.counters().express_forwarded - lane_before;
    result
}

/// Runs `spec`: one thread per worker, pinned from core 1 up when the machine has the
/// cores (core 0 left to the rest). `on_progress` is called about every 200 ms with the
/// share done (0.0..=1.0).
pub fn run(spec: &BenchSpec, mut on_progress: impl FnMut(f64)) -> Result<Vec<WorkerResult>, String> {
    if spec.vips == 0 || spec.backends == 0 || spec.flows == 0 || spec.workers == 0 {
        return Err("--vips, --backends, --flows and --workers must be at least 1".into());
    }
    if spec.flows > MAX_FLOWS {
        return Err(format!(
            "--flows {} is more than the {MAX_FLOWS} distinct flows this bench writes",
            spec.flows
        ));
    }
    if spec.ipv6 && spec.workload == Workload::Gateway {
        return Err("--ipv6 takes the 64b and syn workloads".into());
    }
    if spec.cold_frames && !cfg!(target_arch = "x86_64") {
        return Err("--cold-frames needs an x86-64 machine (it flushes cache lines with clflush)".into());
    }
    if spec.vips > 250 * 4000 {
        return Err(format!("--vips {} is more than this bench generates (1000000)", spec.vips));
    }
    if spec.backends > 4000 {
        return Err(format!("--backends {} is above the engine's limit per pool", spec.backends));
    }
    let snap = Arc::new(snapshot(spec.vips, spec.backends, spec.ipv6)?);
    let progress = Arc::new(AtomicU64::new(0));
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let handles: Vec<_> = (0..spec.workers)
        .map(|w| {
            let (snap, progress, spec) = (Arc::clone(&snap), Arc::clone(&progress), *spec);
            let core = cores.get((w + 1) % cores.len().max(1)).copied();
            std::thread::Builder::new()
                .name(format!("vipgate-bench{w}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    run_worker(&spec, w, &snap, &progress)
                })
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let share = match spec.packets {
            Some(p) => progress.load(Ordering::Relaxed) as f64 / (p as f64 * spec.workers as f64).max(1.0),
            None => started.elapsed().as_secs_f64() / spec.seconds.max(1e-3),
        };
        on_progress(share.min(1.0));
    }
    handles.into_iter().map(|h| h.join().map_err(|_| "a bench worker panicked".to_string())).collect()
}

/// A run as JSON.
pub fn to_json(spec: &BenchSpec, results: &[WorkerResult]) -> Value {
    let mut run = json!({
        "workload": spec.workload.name(),
        "flows": spec.flows,
        "vips": spec.vips,
        "backends": spec.backends,
        "workers": results.iter().map(|r| json!({
            "packets": r.packets,
            "mpps": (r.mpps() * 1000.0).round() / 1000.0,
            "ns_per_packet": (r.ns_per_packet() * 10.0).round() / 10.0,
            "cycles_per_packet": (r.cycles_per_packet() * 10.0).round() / 10.0,
            "load_ns_per_packet": (r.load_ns as f64 / r.packets.max(1) as f64 * 10.0).round() / 10.0,
            "loop_mpps": (r.packets as f64 / (r.engine_ns + r.load_ns).max(1) as f64 * 1e6).round() / 1e3,
            "forwarded": r.forwarded,
            "express_forwarded": r.express_forwarded,
            "lane_percent": (r.express_forwarded as f64 * 1000.0 / r.forwarded.max(1) as f64).round() / 10.0,
            "latency_ns": { "p50": r.latency_ns[0], "p99": r.latency_ns[1], "p99.9": r.latency_ns[2] },
        })).collect::<Vec<_>>(),
    });
    // Only when set, so that runs saved before these options compare as IPv4 lane runs.
    if spec.general_path {
        run["general_path"] = Value::from(true);
    }
    if spec.ipv6 {
        run["ipv6"] = Value::from(true);
    }
    if spec.cold_frames {
        run["cold_frames"] = Value::from(true);
    }
    run
}

/// The header of the table.
pub const TABLE_HEADER: &str =
    "workload   flows      VIPs  backends worker    packets    Mpps  ns/pkt  cycles/pkt  p50 ns  p99 ns  p99.9 ns  floor ns/pkt  lane %\n\
     (ns, cycles: in the engine per packet; p50..p99.9: a packet's time in the engine, its burst's; floor: writing the frames, the NIC's share; lane: forwarded packets the express lane took)";

/// Table rows of a run (one per worker), with ratios to `baseline` (the same run from
/// `--compare`) appended where given.
pub fn to_rows(run: &Value, baseline: Option<&Value>) -> Vec<String> {
    let mut rows = Vec::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    for (i, w) in run["workers"].as_array().into_iter().flatten().enumerate() {
        let mut row = format!(
            "{:<10} {:<10} {:<5} {:<8} {:<6} {:>10} {:>7.2} {:>7.1} {:>11.1} {:>7} {:>7} {:>9} {:>13.1} {:>7.1}",
            format!(
                "{}{}{}{}",
                run["workload"].as_str().unwrap_or(""),
                if run["ipv6"] == true { " v6" } else { "" },
                if run["general_path"] == true { " gp" } else { "" },
                if run["cold_frames"] == true { " cold" } else { "" }
            ),
            run["flows"].to_string(),
            run["vips"].to_string(),
            run["backends"].to_string(),
            i,
            w["packets"].to_string(),
            f(&w["mpps"]),
            f(&w["ns_per_packet"]),
            f(&w["cycles_per_packet"]),
            w["latency_ns"]["p50"].to_string(),
            w["latency_ns"]["p99"].to_string(),
            w["latency_ns"]["p99.9"].to_string(),
            f(&w["load_ns_per_packet"]),
            f(&w["lane_percent"]),
        );
        if let Some(b) = baseline.and_then(|b| b["workers"].get(i)) {
            row.push_str(&format!(
                "   Mpps x{:.2}  ns/pkt x{:.2} vs baseline",
                f(&w["mpps"]) / f(&b["mpps"]).max(1e-9),
                f(&w["ns_per_packet"]) / f(&b["ns_per_packet"]).max(1e-9)
            ));
        }
        rows.push(row);
    }
    rows
}

/// The run of `baseline` (a saved `--json` output) with the same workload, sizes and path.
pub fn find_baseline<'a>(baseline: &'a Value, run: &Value) -> Option<&'a Value> {
    baseline["runs"].as_array()?.iter().find(|b| {
        ["workload", "flows", "vips", "backends", "general_path", "ipv6", "cold_frames"]
            .iter()
            .all(|k| b[*k] == run[*k])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse as ep;

    /// The per-packet writer writes what the frame builder of the wire layer does.
    #[test]
    fn the_writer_agrees_with_the_frame_builder() {
        use vipgate_engine::wire::frame::{FrameRepr, Transport};
        use vipgate_engine::wire::tcp::TcpFlags;
        use vipgate_engine::wire::EthernetAddress;
        for ipv6 in [false, true] {
            for (i, syn) in [(0, false), (1, false), (401, false), (2, true), (3, true)] {
                let mut buf = PacketBuf::new();
                write_small(&mut buf, i, 16, syn, ipv6);
                let v = i.wrapping_mul(0x9e37_79b9) % 16;
                let (dst, dst_port) = vip_of(v);
                let src_port = (1024 + (i / 200) % 64_000) as u16;
                let src4 = Ipv4Addr::new(198, 51, 100, (i % 200) as u8);
                let (src, dst) = if ipv6 {
                    let src = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, (i % 200) as u16);
                    (IpAddr::V6(src), IpAddr::V6(v6_of(0xab, dst)))
                } else {
                    (IpAddr::V4(src4), IpAddr::V4(dst))
                };
                let udp = v.is_multiple_of(2);
                let flags = if syn { TcpFlags::SYN } else { TcpFlags::ACK };
                let repr = FrameRepr {
                    src_mac: EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
                    dst_mac: EthernetAddress(OUR_MAC),
                    src,
                    dst,
                    ttl: if ipv6 { 64 } else { 60 },
                    ident: 0,
                    dont_frag: true,
                    transport: if udp {
                        Transport::Udp { src_port, dst_port }
                    } else {
                        Transport::tcp(src_port, dst_port, flags)
                    },
                    payload: if udp { &[0; 18] } else { &[] },
                    l4_checksum: false,
                };
                let mut want = vec![0; repr.buffer_len()];
                repr.emit(&mut want).unwrap();
                assert_eq!(buf.as_slice(), &want[..], "frame {i}, syn {syn}, ipv6 {ipv6}");
            }
        }
    }

    /// The IPv6 frames parse as what they say, with valid L4 checksums, to the VIPs of the
    /// IPv6 snapshot.
    #[test]
    fn ipv6_frames_are_valid_and_go_to_vips() {
        let snap = snapshot(16, 2, true).unwrap();
        for (i, syn) in [(0, false), (1, false), (2, true), (3, true)] {
            let mut b = PacketBuf::new();
            write_small(&mut b, i, 16, syn, true);
            let h = ep::PacketHeaders::from_ethernet_slice(b.as_slice()).unwrap();
            let Some(ep::NetHeaders::Ipv6(ip, _)) = &h.net else { panic!("not IPv6: {h:?}") };
            let payload = h.payload.slice();
            let dst = IpAddr::V6(Ipv6Addr::from(ip.destination));
            let (protocol, port) = match h.transport.as_ref().unwrap() {
                ep::TransportHeader::Udp(u) => {
                    assert_eq!(u.checksum, u.calc_checksum_ipv6(ip, payload).unwrap(), "flow {i}");
                    (vipgate_engine::wire::IpProtocol::Udp, u.destination_port)
                }
                ep::TransportHeader::Tcp(t) => {
                    assert_eq!(t.checksum, t.calc_checksum_ipv6(ip, payload).unwrap(), "flow {i}");
                    assert_eq!(t.syn, syn);
                    (vipgate_engine::wire::IpProtocol::Tcp, t.destination_port)
                }
                other => panic!("flow {i}: {other:?}"),
            };
            assert!(snap.find_vip(dst, protocol, port).is_some(), "flow {i}: {dst} {port}");
        }
    }
}
