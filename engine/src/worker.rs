//! A worker: the poll loop of one pinned core.
//!
//! ```text
//! loop {
//!     take commands (snapshot updates, flow counts)   -- between bursts, never blocking
//!     rx burst into `ahead`                           -- one burst ahead (below)
//!     `current` -> pipeline -> tx burst               -- `ahead`'s frames asked for meanwhile;
//!                                                     -- what TX refuses is counted tx_full
//!     a piece of a flow count under way               -- when the queue is drained, and
//!     swap `ahead` and `current`                      -- once in 64 full bursts
//! }
//! ```
//!
//! The loop polls one burst ahead: it receives the next burst before it processes the one
//! it has, and asks the CPU for the next burst's frame headers as it goes, so that frames
//! a NIC's DMA left in memory arrive in the cache while the burst before them is worked
//! on, rather than as their own burst starts. A burst waits one turn of the loop for that
//! (a poll, when traffic is light); on a stop, the burst in hand is processed before the
//! worker exits.
//!
//! A worker owns its pipeline (flow table, counters, spare buffers) and its port queue; it
//! shares only its [`WorkerStats`], which it writes and the control thread reads. A new
//! snapshot arrives with the traffic counters made for it; the worker swaps both in at a
//! burst boundary and sends the old ones back in its acknowledgement, so that they are
//! freed on the control thread, never here. Nothing on the packet path allocates, locks or
//! blocks: commands come through `try_recv`, acknowledgements go through an unbounded
//! channel whose send never waits. (A count of flows that an operator asks for keeps its
//! tallies per backend in memory of its own, and walks the flow table a piece at a time, so
//! that counting millions of flows never stalls the queue.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::buf::PacketBuf;
use crate::counters::Counters;
use crate::flow::{FlowState, IdleTimeouts};
use crate::pipeline::{Pipeline, PipelineOptions, Verdict};
use crate::port::Port;
use crate::stats::{TrafficCounters, WorkerStats};
use crate::table::Snapshot;

/// A snapshot and the traffic counters made for it.
#[derive(Debug, Clone)]
pub struct Update {
    /// The forwarding state.
    pub snapshot: Arc<Snapshot>,
    /// Per-(VIP, backend) counters sized for it.
    pub traffic: Arc<TrafficCounters>,
}

impl Update {
    /// `snapshot` with fresh counters.
    pub fn new(snapshot: Arc<Snapshot>) -> Update {
        let traffic = Arc::new(TrafficCounters::new(snapshot.generation(), snapshot.traffic_slots()));
        Update { snapshot, traffic }
    }
}

/// What the control thread asks of a worker.
#[derive(Debug)]
pub enum Command {
    /// Run this snapshot from the next burst on; acknowledge with the old one.
    Update(Update),
    /// Count the live flows per backend number and state, and send the answer back. The
    /// count is taken a piece of the flow table at a time, between bursts (see
    /// [`SCAN_WINDOWS`]), so flows that come or go meanwhile may or may not be in it; a
    /// count asked for while one with the same UDP window is under way gets that one's
    /// answer (one with another window waits for the next count).
    CountFlows(FlowQuery),
    /// Announce every new flow to this queue from now on (`None`: stop).
    Announce(Option<Arc<crate::announce::Announcer>>),
    /// Remember these flows (key, pair number), which another appliance of the fleet
    /// decided, where this worker does not know them already.
    Adopt(Vec<(crate::flow::FlowKey, u32)>),
    /// Which of these flows are live here (seen within their idle timeout): the answer,
    /// one flag per key, goes back on the channel.
    Alive(Vec<crate::flow::FlowKey>, Sender<Vec<bool>>),
}

/// A worker's answer to [`Command::Update`].
#[derive(Debug)]
pub struct Ack {
    /// Which worker.
    pub worker: usize,
    /// The generation it runs now.
    pub generation: u64,
    /// What it ran before, to be freed by the receiver.
    pub retired: Update,
}

/// Live flows by state: connections told from table entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StateCounts {
    /// TCP flows with no FIN or RST seen, active within their idle timeout.
    pub tcp_established: u64,
    /// TCP flows that have seen a FIN or RST (kept for the short closing timeout).
    pub tcp_closing: u64,
    /// UDP (and other) flows within their idle timeout.
    pub udp: u64,
    /// Of those, the ones seen within the window asked for ([`FlowQuery::udp_window_ns`]).
    pub udp_recent: u64,
}

impl StateCounts {
    /// Every live flow.
    pub fn total(&self) -> u64 {
        self.tcp_established + self.tcp_closing + self.udp
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &StateCounts) {
        self.tcp_established += other.tcp_established;
        self.tcp_closing += other.tcp_closing;
        self.udp += other.udp;
        self.udp_recent += other.udp_recent;
    }

    fn count(&mut self, state: FlowState, recent: bool) {
        match state {
            FlowState::TcpEstablished => self.tcp_established += 1,
            FlowState::TcpClosing => self.tcp_closing += 1,
            FlowState::Udp => {
                self.udp += 1;
                self.udp_recent += u64::from(recent);
            }
        }
    }
}

/// Live flows of one worker.
#[derive(Debug, Clone, Default)]
pub struct FlowCount {
    /// Which worker.
    pub worker: usize,
    /// Flows per backend number ([`crate::table::PoolBackend::number`]), by state.
    pub per_backend: Vec<(u32, StateCounts)>,
    /// All live flows.
    pub total: u64,
    /// All live flows, by state.
    pub states: StateCounts,
    /// The flow table's capacity.
    pub capacity: u64,
}

/// A request for a [`FlowCount`].
#[derive(Debug, Clone)]
pub struct FlowQuery {
    /// Where the answer goes.
    pub reply: Sender<FlowCount>,
    /// UDP flows seen within this many nanoseconds count as recent.
    pub udp_window_ns: u64,
}

/// How a worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// The worker's number (its queue on every port).
    pub id: usize,
    /// The core to pin to; `None` leaves the thread to the scheduler.
    pub core: Option<usize>,
    /// Packets per burst (at most [`crate::port::MAX_BURST`]).
    pub burst: usize,
    /// Empty polls before the worker starts to sleep between polls; 0 polls without rest.
    pub idle_polls_before_sleep: u64,
    /// The pipeline's options.
    pub pipeline: PipelineOptions,
}

/// What a worker hands back when it stops.
#[derive(Debug)]
pub struct WorkerExit {
    /// Its counters.
    pub counters: Counters,
    /// The snapshot it ran last.
    pub last: Update,
}

/// The longest sleep of an idle worker.
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(1);

/// Windows of the flow table (four entries each) counted at a time while a count of live
/// flows is under way: 1 024 entries, 16 KiB, about 5 µs. The whole table in one go held
/// the queue up for about 10 ms at 1 M entries and 30 ms at 4 M (measured), far longer
/// than a NIC's ring holds packets at full rate.
pub const SCAN_WINDOWS: usize = 256;

/// A count under way moves on whenever a poll finds the queue drained (the worker has time
/// to spare), and under a full load at least once in this many bursts.
pub const SCAN_EVERY: u32 = 64;

/// Backend numbers below this are counted in an array during a count of live flows, the
/// rest in a map (numbers are handed out from 0 up, one per backend identity, so nearly
/// every process stays below it).
const SCAN_ARRAY: usize = 1 << 16;

/// A count of live flows under way.
struct FlowScan {
    /// Who asked.
    waiting: Vec<Sender<FlowCount>>,
    /// UDP flows seen within this many nanoseconds are recent.
    udp_window_ns: u64,
    /// The first window not yet counted.
    next: usize,
    /// The time the count is taken at.
    now: u64,
    timeouts: IdleTimeouts,
    /// Flows by backend number, below [`SCAN_ARRAY`].
    by_number: Vec<StateCounts>,
    /// Flows of larger numbers.
    more: hashbrown::HashMap<u32, StateCounts>,
    states: StateCounts,
    /// Polls since the last step.
    waited: u32,
}

/// What ties a worker to the control thread.
#[derive(Debug)]
pub struct Links {
    /// Commands to the worker.
    pub commands: Receiver<Command>,
    /// Its acknowledgements of updates.
    pub acks: Sender<Ack>,
    /// What it publishes.
    pub stats: Arc<WorkerStats>,
    /// Set to stop it.
    pub stop: Arc<AtomicBool>,
    /// The engine's epoch: time passed to the pipeline is nanoseconds since then, the
    /// same for every worker.
    pub clock: Instant,
}

/// Starts a worker thread. Its flow table is allocated on the thread itself (so its memory
/// is first touched by the core that uses it). It runs until `links.stop` is set, then
/// publishes its counters and returns.
pub fn spawn(
    options: WorkerOptions,
    mut port: Box<dyn Port>,
    initial: Update,
    links: Links,
) -> std::io::Result<JoinHandle<WorkerExit>> {
    let Links { commands, acks, stats, stop, clock } = links;
    std::thread::Builder::new().name(format!("vipgate-w{}", options.id)).spawn(move || {
        if let Some(core) = options.core {
            let pinned = core_affinity::get_core_ids()
                .and_then(|ids| ids.into_iter().find(|c| c.id == core))
                .is_some_and(core_affinity::set_for_current);
            if pinned {
                stats.core.set(core as u64 + 1);
            } else {
                log::warn!("worker {}: could not pin to core {core}; running unpinned", options.id);
            }
        }
        let mut worker = Worker::new(options, Pipeline::new(options.pipeline), initial, stats, clock);
        worker.run(port.as_mut(), &commands, &acks, &stop);
        worker.finish()
    })
}

struct Worker {
    options: WorkerOptions,
    pipeline: Pipeline,
    current: Update,
    stats: Arc<WorkerStats>,
    clock: Instant,
    bufs: Vec<PacketBuf>,
    /// The burst received one turn ahead of `bufs`.
    ahead: Vec<PacketBuf>,
    verdicts: Vec<Verdict>,
    /// For the compacted TX burst: the burst index of each buffer sent.
    origin: Vec<usize>,
    extra: Vec<PacketBuf>,
    extra_origin: Vec<usize>,
    refused: Vec<bool>,
    /// A count of live flows under way.
    scan: Option<FlowScan>,
    /// Counts asked for with another UDP window than the one under way.
    queued: Vec<FlowQuery>,
}

impl Worker {
    fn new(
        options: WorkerOptions,
        mut pipeline: Pipeline,
        initial: Update,
        stats: Arc<WorkerStats>,
        clock: Instant,
    ) -> Worker {
        let burst = options.burst.clamp(1, crate::port::MAX_BURST);
        let options = WorkerOptions { burst, ..options };
        pipeline.set_traffic(Arc::clone(&initial.traffic));
        stats.generation.set(initial.snapshot.generation());
        Worker {
            options,
            pipeline,
            current: initial,
            stats,
            clock,
            bufs: (0..burst).map(|_| PacketBuf::new()).collect(),
            ahead: (0..burst).map(|_| PacketBuf::new()).collect(),
            verdicts: vec![Verdict::Forward; burst],
            origin: Vec::with_capacity(burst),
            extra: Vec::with_capacity(2 * crate::port::MAX_BURST),
            extra_origin: Vec::with_capacity(2 * crate::port::MAX_BURST),
            refused: vec![false; burst],
            scan: None,
            queued: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn run(
        &mut self,
        port: &mut dyn Port,
        commands: &Receiver<Command>,
        acks: &Sender<Ack>,
        stop: &AtomicBool,
    ) {
        let started = Instant::now();
        let mut empty_run = 0u64;
        let mut sleep = Duration::from_micros(1);
        let mut polls = 0u64;
        let mut empty = 0u64;
        // Packets in `bufs[..held]`, received a turn ago.
        let mut held = 0usize;
        loop {
            while let Ok(command) = commands.try_recv() {
                self.take(command, acks);
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let n = port.rx_burst(&mut self.ahead);
            polls += 1;
            if held > 0 {
                let t0 = Instant::now();
                self.burst(port, held, n, t0);
                self.stats.busy_ns.add(t0.elapsed().as_nanos() as u64);
                self.stats.publish(self.pipeline.counters());
            }
            core::mem::swap(&mut self.bufs, &mut self.ahead);
            let worked = held;
            held = n;
            if n == 0 {
                empty += 1;
            }
            if n == 0 && worked == 0 {
                self.scan_turn(0);
                empty_run += 1;
                if polls.is_multiple_of(64) {
                    self.publish_loop(started, polls, empty);
                }
                // (No rest while a count of flows is under way: it moves on a turn at a time.)
                if self.options.idle_polls_before_sleep > 0
                    && empty_run >= self.options.idle_polls_before_sleep
                    && self.scan.is_none()
                {
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(MAX_IDLE_SLEEP);
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            empty_run = 0;
            sleep = Duration::from_micros(1);
            self.scan_turn(n);
            if polls.is_multiple_of(64) {
                self.publish_loop(started, polls, empty);
            }
        }
        // The burst in hand, received before the stop.
        if held > 0 {
            let t0 = Instant::now();
            self.burst(port, held, 0, t0);
            self.stats.busy_ns.add(t0.elapsed().as_nanos() as u64);
        }
        self.publish_loop(started, polls, empty);
        self.stats.publish(self.pipeline.counters());
    }

    fn publish_loop(&self, started: Instant, polls: u64, empty: u64) {
        self.stats.total_ns.set(started.elapsed().as_nanos() as u64);
        self.stats.polls.set(polls);
        self.stats.empty_polls.set(empty);
    }

    /// One burst of `n` received packets at `at`: process (asking for the frames of the
    /// `ahead` packets received after them as it goes), then send what is to be sent.
    fn burst(&mut self, port: &mut dyn Port, n: usize, ahead: usize, at: Instant) {
        let now = u64::try_from(at.duration_since(self.clock).as_nanos()).unwrap_or(u64::MAX);
        self.pipeline.process_ahead(
            &self.current.snapshot,
            now,
            &mut self.bufs[..n],
            &mut self.verdicts[..n],
            &self.ahead[..ahead],
        );
        // Move what is to be sent to the front, in order.
        self.origin.clear();
        for i in 0..n {
            if self.verdicts[i].sends() {
                let j = self.origin.len();
                self.bufs.swap(i, j);
                self.origin.push(i);
            }
        }
        let to_send = self.origin.len();
        let sent = if to_send > 0 { port.tx_burst(&mut self.bufs[..to_send]) } else { 0 };
        self.refused[..n].fill(false);
        for j in sent..to_send {
            let i = self.origin[j];
            self.refused[i] = true;
            self.pipeline.count_tx_full(i, self.verdicts[i]);
        }
        // Outer fragments: sent after the burst, their buffers back to the pipeline. A
        // packet any of whose fragments is refused counts as tx_full, once.
        self.extra.clear();
        self.extra_origin.clear();
        for (i, b) in self.pipeline.take_extra() {
            self.extra_origin.push(i);
            self.extra.push(b);
        }
        if !self.extra.is_empty() {
            let k = port.tx_burst(&mut self.extra);
            for j in k..self.extra.len() {
                let i = self.extra_origin[j];
                if !self.refused[i] {
                    self.refused[i] = true;
                    self.pipeline.count_tx_full(i, self.verdicts[i]);
                }
            }
            for b in self.extra.drain(..) {
                self.pipeline.recycle(b);
            }
        }
    }

    fn take(&mut self, command: Command, acks: &Sender<Ack>) {
        match command {
            Command::Update(update) => {
                let t0 = Instant::now();
                let generation = update.snapshot.generation();
                self.pipeline.set_traffic(Arc::clone(&update.traffic));
                let retired = std::mem::replace(&mut self.current, update);
                self.stats.generation.set(generation);
                self.stats.publish(self.pipeline.counters());
                let _ = acks.send(Ack { worker: self.options.id, generation, retired });
                self.stats.last_swap_ns.set(t0.elapsed().as_nanos() as u64);
            }
            Command::CountFlows(query) => {
                self.queued.push(query);
                self.start_scan();
            }
            Command::Announce(announcer) => self.pipeline.set_announcer(announcer),
            Command::Alive(keys, reply) => {
                let now = self.now();
                let timeouts = *self.current.snapshot.idle_timeouts();
                let _ = reply.send(keys.iter().map(|k| self.pipeline.is_live(k, now, &timeouts)).collect());
            }
            Command::Adopt(flows) => {
                let now = self.now();
                let timeouts = *self.current.snapshot.idle_timeouts();
                for (key, number) in &flows {
                    self.pipeline.adopt(key, *number, now, &timeouts);
                }
                self.stats.publish(self.pipeline.counters());
            }
        }
    }

    /// Starts the next count of flows when none is under way, or lets requests with the
    /// window of the one under way join it.
    fn start_scan(&mut self) {
        let window = match &self.scan {
            Some(scan) => scan.udp_window_ns,
            None => match self.queued.first() {
                Some(q) => q.udp_window_ns,
                None => return,
            },
        };
        let (joining, rest): (Vec<FlowQuery>, Vec<FlowQuery>) =
            std::mem::take(&mut self.queued).into_iter().partition(|q| q.udp_window_ns == window);
        self.queued = rest;
        let waiting = joining.into_iter().map(|q| q.reply);
        match &mut self.scan {
            Some(scan) => scan.waiting.extend(waiting),
            None => {
                self.scan = Some(FlowScan {
                    waiting: waiting.collect(),
                    udp_window_ns: window,
                    next: 0,
                    now: self.now(),
                    timeouts: *self.current.snapshot.idle_timeouts(),
                    by_number: Vec::new(),
                    more: hashbrown::HashMap::new(),
                    states: StateCounts::default(),
                    waited: 0,
                })
            }
        }
    }

    /// After a poll that brought `n` packets: a step of the count of flows under way, if it is
    /// its turn (see [`SCAN_EVERY`]).
    fn scan_turn(&mut self, n: usize) {
        let Some(scan) = self.scan.as_mut() else { return };
        scan.waited += 1;
        if n < self.bufs.len() || scan.waited >= SCAN_EVERY {
            scan.waited = 0;
            self.scan_step();
        }
    }

    /// Counts the next [`SCAN_WINDOWS`] windows of the flow table for the count under way,
    /// and answers everyone waiting once the whole table is counted.
    fn scan_step(&mut self) {
        let Some(scan) = self.scan.as_mut() else { return };
        let flows = self.pipeline.flows();
        let end = (scan.next + SCAN_WINDOWS).min(flows.window_count());
        for (number, state, age) in flows.live_states_in(scan.next..end, scan.now, &scan.timeouts) {
            let recent = age < scan.udp_window_ns;
            let n = number as usize;
            if n < SCAN_ARRAY {
                if n >= scan.by_number.len() {
                    scan.by_number.resize(n + 1, StateCounts::default());
                }
                scan.by_number[n].count(state, recent);
            } else {
                scan.more.entry(number).or_default().count(state, recent);
            }
            scan.states.count(state, recent);
        }
        scan.next = end;
        if end < flows.window_count() {
            return;
        }
        let Some(scan) = self.scan.take() else { return };
        self.stats.live_flows.set(scan.states.total());
        let by_number = scan.by_number.iter().enumerate().filter(|(_, n)| n.total() > 0);
        let count = FlowCount {
            worker: self.options.id,
            per_backend: by_number.map(|(number, n)| (number as u32, *n)).chain(scan.more).collect(),
            total: scan.states.total(),
            states: scan.states,
            capacity: self.pipeline.flows().capacity() as u64,
        };
        for reply in scan.waiting {
            let _ = reply.send(count.clone());
        }
        self.start_scan();
    }

    fn finish(self) -> WorkerExit {
        WorkerExit { counters: self.pipeline.counters().clone(), last: self.current }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::BackendId;
    use crate::table::{BackendSpec, BackendState, Encap, SnapshotSpec, VipProtocol, VipSpec};

    use std::net::{IpAddr, Ipv4Addr};

    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn snapshot(backends: &[IpAddr]) -> Snapshot {
        let spec = SnapshotSpec {
            vips: vec![VipSpec {
                addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
                port: None,
                protocol: VipProtocol::Udp,
                encap: Encap::Ipip,
                backends: backends
                    .iter()
                    .map(|&a| BackendSpec { id: BackendId::new(a), weight: 1, state: BackendState::Active })
                    .collect(),
            }],
            ..SnapshotSpec::example()
        };
        Snapshot::build(&spec).unwrap()
    }

    /// A worker with a flow table of `capacity` entries holding `flows` UDP flows, spread by
    /// Maglev over `backends`.
    fn worker_with_flows(capacity: usize, flows: u32, backends: &[IpAddr]) -> Worker {
        let options = WorkerOptions {
            id: 3,
            core: None,
            burst: 32,
            idle_polls_before_sleep: 0,
            pipeline: PipelineOptions { flow_capacity: capacity, ..PipelineOptions::default() },
        };
        let update = Update::new(Arc::new(snapshot(backends)));
        let pipeline = Pipeline::new(options.pipeline);
        let mut w = Worker::new(options, pipeline, update, Arc::new(WorkerStats::default()), Instant::now());
        let mut verdicts = [Verdict::Forward; 32];
        for chunk in (0..flows).collect::<Vec<_>>().chunks(32) {
            let mut bufs: Vec<PacketBuf> = chunk
                .iter()
                .map(|&i| {
                    let mut f = Vec::new();
                    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xc1], OUR_MAC)
                        .ipv4((0xc633_6400u32 + i % 256).to_be_bytes(), [203, 0, 113, 10], 60)
                        .udp(1024 + (i / 256) as u16, 53)
                        .write(&mut f, b"x")
                        .unwrap();
                    let mut b = PacketBuf::new();
                    b.set_frame(&f).unwrap();
                    b
                })
                .collect();
            let now = w.now();
            w.pipeline.process(&w.current.snapshot, now, &mut bufs, &mut verdicts[..chunk.len()]);
            assert!(verdicts[..chunk.len()].iter().all(|v| *v == Verdict::Forward));
        }
        w
    }

    #[test]
    fn a_count_of_flows_is_taken_a_piece_of_the_table_at_a_time() {
        let backends: Vec<IpAddr> = (1..=4).map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, 40 + i))).collect();
        let mut w = worker_with_flows(1 << 16, 3000, &backends);
        let windows = w.pipeline.flows().window_count();
        assert_eq!(windows, (1 << 16) / 4);
        let steps = windows.div_ceil(SCAN_WINDOWS);
        assert!(steps >= 4);
        let (tx, rx) = crossbeam_channel::unbounded();
        let (acks, _) = crossbeam_channel::unbounded();
        let query = |window: u64| FlowQuery { reply: tx.clone(), udp_window_ns: window };
        w.take(Command::CountFlows(query(u64::MAX)), &acks);
        for step in 1..steps {
            w.scan_step();
            assert!(rx.try_recv().is_err(), "answered after {step} of {steps} steps");
            // A second request meanwhile joins the count under way; one with another UDP
            // window waits for its own.
            if step == 2 {
                w.take(Command::CountFlows(query(u64::MAX)), &acks);
                w.take(Command::CountFlows(query(0)), &acks);
            }
        }
        w.scan_step();
        let (a, b) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        assert!(rx.try_recv().is_err());
        assert!(w.scan.is_some(), "the count with the other window has begun");
        for _ in 0..steps {
            w.scan_step();
        }
        let c = rx.try_recv().unwrap();
        assert!(w.scan.is_none());
        assert_eq!((a.worker, a.total, a.capacity), (3, 3000, 1 << 16));
        // The flows of worker_with_flows are UDP: every one recent within an endless
        // window, none within an empty one.
        assert_eq!(a.states, StateCounts { tcp_established: 0, tcp_closing: 0, udp: 3000, udp_recent: 3000 });
        assert_eq!(c.states, StateCounts { udp_recent: 0, ..a.states });
        let mut per_backend = a.per_backend.clone();
        per_backend.sort_unstable();
        assert_eq!(per_backend, {
            let mut b = b.per_backend.clone();
            b.sort_unstable();
            b
        });
        // Every flow under its (VIP, backend) pair's number, as the table holds them.
        let pool = &w.current.snapshot.pools()[0];
        let numbers: Vec<u32> = backends
            .iter()
            .map(|&a| pool.backends().iter().find(|b| b.id == BackendId::new(a)).unwrap().number)
            .collect();
        assert!(per_backend.iter().all(|(n, _)| numbers.contains(n)), "{per_backend:?}");
        assert_eq!(per_backend.iter().map(|(_, n)| n.total()).sum::<u64>(), 3000);
        // The same as a whole scan at once.
        let mut whole: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for n in w.pipeline.flows().live(w.now(), w.current.snapshot.idle_timeouts()) {
            *whole.entry(n).or_default() += 1;
        }
        let counted: std::collections::HashMap<u32, u64> =
            per_backend.into_iter().map(|(n, s)| (n, s.total())).collect();
        assert_eq!(counted, whole);
        assert_eq!(w.stats.live_flows.get(), 3000);
    }

    #[test]
    fn a_count_moves_on_when_the_queue_is_drained_and_now_and_then_under_full_load() {
        let mut w = worker_with_flows(1 << 16, 10, &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 50))]);
        let (tx, _rx) = crossbeam_channel::unbounded();
        let (acks, _) = crossbeam_channel::unbounded();
        w.take(Command::CountFlows(FlowQuery { reply: tx, udp_window_ns: u64::MAX }), &acks);
        let counted = |w: &Worker| w.scan.as_ref().map(|s| s.next);
        let full = w.bufs.len();
        for _ in 1..SCAN_EVERY {
            w.scan_turn(full);
        }
        assert_eq!(counted(&w), Some(0));
        w.scan_turn(full);
        assert_eq!(counted(&w), Some(SCAN_WINDOWS));
        w.scan_turn(full - 1);
        assert_eq!(counted(&w), Some(2 * SCAN_WINDOWS));
        w.scan_turn(0);
        assert_eq!(counted(&w), Some(3 * SCAN_WINDOWS));
    }
}
