//! A worker: the poll loop of one pinned core.
//!
//! ```text
//! loop {
//!     take commands (snapshot updates, flow counts)   -- between bursts, never blocking
//!     rx burst -> pipeline -> tx burst                -- what TX refuses is counted tx_full
//! }
//! ```
//!
//! A worker owns its pipeline (flow table, counters, spare buffers) and its port queue; it
//! shares only its [`WorkerStats`], which it writes and the control thread reads. A new
//! snapshot arrives with the traffic counters made for it; the worker swaps both in at a
//! burst boundary and sends the old ones back in its acknowledgement, so that they are
//! freed on the control thread, never here. Nothing in the loop allocates, locks or blocks:
//! commands come through `try_recv`, acknowledgements go through an unbounded channel
//! whose send never waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::buf::PacketBuf;
use crate::pipeline::{Counters, Pipeline, PipelineOptions, Verdict};
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
    /// Count the live flows per backend number and send the answer back.
    CountFlows(Sender<FlowCount>),
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

/// Live flows of one worker.
#[derive(Debug, Clone, Default)]
pub struct FlowCount {
    /// Which worker.
    pub worker: usize,
    /// Flows per backend number ([`crate::table::PoolBackend::number`]).
    pub per_backend: Vec<(u32, u64)>,
    /// All live flows.
    pub total: u64,
    /// The flow table's capacity.
    pub capacity: u64,
}

/// How a worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// The worker's number (its queue on every port).
    pub id: usize,
    /// The core to pin to; `None` leaves the thread to the scheduler.
    pub core: Option<usize>,
    /// Packets per burst (at most [`crate::pipeline::MAX_BURST`]).
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
    verdicts: Vec<Verdict>,
    /// For the compacted TX burst: the burst index of each buffer sent.
    origin: Vec<usize>,
    extra: Vec<PacketBuf>,
    extra_origin: Vec<usize>,
    refused: Vec<bool>,
}

impl Worker {
    fn new(
        options: WorkerOptions,
        mut pipeline: Pipeline,
        initial: Update,
        stats: Arc<WorkerStats>,
        clock: Instant,
    ) -> Worker {
        let burst = options.burst.clamp(1, crate::pipeline::MAX_BURST);
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
            verdicts: vec![Verdict::Forward; burst],
            origin: Vec::with_capacity(burst),
            extra: Vec::with_capacity(2 * crate::pipeline::MAX_BURST),
            extra_origin: Vec::with_capacity(2 * crate::pipeline::MAX_BURST),
            refused: vec![false; burst],
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
        loop {
            while let Ok(command) = commands.try_recv() {
                self.take(command, acks);
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let n = port.rx_burst(&mut self.bufs);
            polls += 1;
            if n == 0 {
                empty += 1;
                empty_run += 1;
                if polls.is_multiple_of(64) {
                    self.publish_loop(started, polls, empty);
                }
                if self.options.idle_polls_before_sleep > 0
                    && empty_run >= self.options.idle_polls_before_sleep
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
            let t0 = Instant::now();
            self.burst(port, n, t0);
            self.stats.busy_ns.add(t0.elapsed().as_nanos() as u64);
            self.stats.publish(self.pipeline.counters());
            if polls.is_multiple_of(64) {
                self.publish_loop(started, polls, empty);
            }
        }
        self.publish_loop(started, polls, empty);
        self.stats.publish(self.pipeline.counters());
    }

    fn publish_loop(&self, started: Instant, polls: u64, empty: u64) {
        self.stats.total_ns.set(started.elapsed().as_nanos() as u64);
        self.stats.polls.set(polls);
        self.stats.empty_polls.set(empty);
    }

    /// One burst of `n` received packets at `at`: process, then send what is to be sent.
    fn burst(&mut self, port: &mut dyn Port, n: usize, at: Instant) {
        let now = u64::try_from(at.duration_since(self.clock).as_nanos()).unwrap_or(u64::MAX);
        self.pipeline.process(&self.current.snapshot, now, &mut self.bufs[..n], &mut self.verdicts[..n]);
        // Move what is to be sent to the front, in order.
        self.origin.clear();
        for i in 0..n {
            if matches!(self.verdicts[i], Verdict::Forward | Verdict::Reply) {
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
            Command::CountFlows(reply) => {
                let timeouts = *self.current.snapshot.idle_timeouts();
                let mut per_backend: hashbrown::HashMap<u32, u64> = hashbrown::HashMap::new();
                let mut total = 0u64;
                for number in self.pipeline.flows().live(self.now(), &timeouts) {
                    *per_backend.entry(number).or_default() += 1;
                    total += 1;
                }
                self.stats.live_flows.set(total);
                let _ = reply.send(FlowCount {
                    worker: self.options.id,
                    per_backend: per_backend.into_iter().collect(),
                    total,
                    capacity: self.pipeline.flows().capacity() as u64,
                });
            }
        }
    }

    fn finish(self) -> WorkerExit {
        WorkerExit { counters: self.pipeline.counters().clone(), last: self.current }
    }
}
