//! The running engine, as the control thread holds it: workers, hot swap, the reload
//! guards, and the operator's overrides in force ([`crate::overrides`]).
//!
//! A reload builds the new snapshot here (Maglev rings included), sends it with fresh
//! traffic counters to every worker over its command channel, and waits for every worker's
//! acknowledgement. Each acknowledgement carries the snapshot the worker ran before; its
//! traffic counters are folded into the running totals and then it is dropped here, on
//! the control thread, never on a worker. A config that fails validation or whose tables
//! cannot be built changes nothing.
//!
//! Operator overrides (drain, weight, the appliance's drain) are applied on top of the
//! config at every build, so they survive reloads until they are undone; with a state
//! file ([`Engine::set_state_file`]) every change of them is written there before it is
//! applied, so they survive restarts too.
//!
//! The guards: a reload that would remove a VIP or a subnet, or leave a VIP with no
//! backend taking new flows, is refused unless it is confirmed
//! ([`Reload::allow_removals`]); a drain or weight that would leave a VIP with none is
//! refused unless forced. Keys that a running appliance cannot change (its workers, its
//! port, its sockets) are named in every reload's report until a restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use vipgate_engine::counters::Counters;
use vipgate_engine::maglev::BackendId;
use vipgate_engine::numbering::{Numbering, Target};
use vipgate_engine::pipeline::PipelineOptions;
use vipgate_engine::port::Port;
use vipgate_engine::stats::WorkerStats;
use vipgate_engine::table::{vip_name, BackendState, Snapshot};
use vipgate_engine::worker::{
    self, Ack, Command, FlowCount, FlowQuery, Links, Update, WorkerExit, WorkerOptions,
};

use crate::build;
use crate::config::Config;
use crate::overrides::{removals, Overrides, Scoped};

/// How long a reload waits for the workers' acknowledgements by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a reload or an override was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file did not validate.
    #[error("{0}")]
    Config(crate::config::ConfigErrors),
    /// The tables could not be built.
    #[error("{path}: {message}")]
    Build {
        /// The config file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Sent, but not every worker acknowledged in time; the stragglers take it when they
    /// next look.
    #[error("generation {generation} sent, but only {acked} of {workers} workers acknowledged it within {timeout:?}")]
    Timeout {
        /// The generation sent.
        generation: u64,
        /// Workers that took it.
        acked: usize,
        /// All workers.
        workers: usize,
        /// How long we waited.
        timeout: Duration,
    },
    /// An override names no backend of the running config.
    #[error("{0}")]
    Override(String),
    /// The change would take VIPs or subnets away, or leave VIPs with no backend taking
    /// new flows, and was not confirmed.
    #[error("{what}: not applied, it would {}; the running config stays ({how})", .removals.join("; "))]
    Removals {
        /// The config file, or the override.
        what: String,
        /// Each thing it would remove, named.
        removals: Vec<String>,
        /// How to apply it on purpose.
        how: &'static str,
    },
    /// The overrides could not be saved in the state file, so they were not applied.
    #[error("{0}; not applied (an override that a restart would forget is not taken)")]
    State(String),
}

impl ReloadError {
    /// A short name of the kind of failure, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadError::Config(_) => "invalid",
            ReloadError::Build { .. } => "build",
            ReloadError::Timeout { .. } => "timeout",
            ReloadError::Override(_) => "override",
            ReloadError::Removals { .. } => "refused",
            ReloadError::State(_) => "state",
        }
    }
}

/// How a config reload is to be applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reload {
    /// Apply it even when it removes VIPs or subnets, or leaves a VIP with no backend
    /// taking new flows (`vipgate ctl reload --allow-removals`). The file watcher and
    /// SIGHUP never set it.
    pub allow_removals: bool,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    /// The generation every worker runs now.
    pub generation: u64,
    /// Reading and validating the config file (zero when the config was given).
    pub load: Duration,
    /// Building the snapshot (validation excluded).
    pub build: Duration,
    /// From sending it to the last worker's acknowledgement.
    pub swap: Duration,
    /// Keys of the config that differ from what the appliance started with and that only
    /// a restart applies (`workers`, `[control] socket`, ...).
    pub restart_needed: Vec<String>,
    /// The file changed only in such keys: nothing of the change took effect.
    pub only_restart_keys: bool,
}

/// Copies one key that only a restart applies from the config the appliance started with
/// (second) into another config (first).
type TakeKey = fn(&mut Config, &Config);

/// The keys a running appliance cannot change (its workers and their options, its port,
/// its sockets), each with how to take it from the started config: one list, from which
/// both what a reload names ([`restart_needed`]) and what it can apply
/// ([`with_restart_keys_of`]) follow.
const RESTART_KEYS: &[(&str, TakeKey)] = &[
    ("workers", |c, s| c.engine.workers = s.engine.workers),
    ("cores", |c, s| c.engine.cores.clone_from(&s.engine.cores)),
    ("burst", |c, s| c.engine.burst = s.engine.burst),
    ("flow_capacity", |c, s| c.engine.flow_capacity = s.engine.flow_capacity),
    ("idle_polls_before_sleep", |c, s| c.engine.idle_polls_before_sleep = s.engine.idle_polls_before_sleep),
    ("[[port]]", |c, s| {
        if c.ports.len() != s.ports.len() {
            c.ports.clone_from(&s.ports);
        }
    }),
    ("[[port]] name", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.name.clone_from(&q.name))),
    ("[[port]] driver", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.driver = q.driver)),
    ("[[port]] input", |c, s| {
        c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.input.clone_from(&q.input))
    }),
    ("[[port]] output", |c, s| {
        c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.output.clone_from(&q.output))
    }),
    ("[[port]] args", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.args.clone_from(&q.args))),
    ("[[port]] queues", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.queues = q.queues)),
    ("[[port]] profile", |c, s| {
        c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.profile.clone_from(&q.profile))
    }),
    ("[[port]] rate", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.rate = q.rate)),
    ("[[port]] interface", |c, s| {
        c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.interface.clone_from(&q.interface))
    }),
    ("[[port]] mode", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.mode = q.mode)),
    ("[[port]] xdp_mode", |c, s| c.ports.iter_mut().zip(&s.ports).for_each(|(p, q)| p.xdp_mode = q.xdp_mode)),
    ("[control] socket", |c, s| c.control.socket.clone_from(&s.control.socket)),
    ("[control] metrics", |c, s| c.control.metrics = s.control.metrics),
    ("[fleet]", |c, s| c.fleet.clone_from(&s.fleet)),
];

/// The keys of `new` that differ from `started` and that a running appliance cannot
/// change ([`RESTART_KEYS`]), in that list's order.
pub fn restart_needed(started: &Config, new: &Config) -> Vec<String> {
    RESTART_KEYS
        .iter()
        .filter(|(_, take)| {
            let mut c = new.clone();
            take(&mut c, started);
            c != *new
        })
        .map(|(name, _)| (*name).to_string())
        .collect()
}

/// What a reload of the config file would do.
#[derive(Debug, Clone)]
pub struct ReloadPreview {
    /// Per VIP, against the running tables.
    pub changes: Vec<crate::diff::VipChange>,
    /// What it would take away ([`removals`]); a reload refuses it unless confirmed.
    pub removals: Vec<String>,
    /// Keys only a restart applies.
    pub restart_needed: Vec<String>,
}

/// `config` with the keys that only a restart applies taken from `started`: what a
/// running appliance can apply of it.
fn with_restart_keys_of(config: &Config, started: &Config) -> Config {
    let mut c = config.clone();
    for (_, take) in RESTART_KEYS {
        take(&mut c, started);
    }
    c
}

/// How reloads have gone since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Applied.
    pub applied: u64,
    /// Not applied, by [`ReloadError::kind`].
    pub failed: BTreeMap<&'static str, u64>,
}

/// Forwarded traffic of one (VIP, backend).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTraffic {
    /// The VIP's name (`udp://203.0.113.10:8000`).
    pub vip: String,
    /// The backend.
    pub backend: String,
    /// Weight in the running snapshot (0 where it is no longer there).
    pub weight: u32,
    /// State in the running snapshot (`removed` where it is no longer there).
    pub state: &'static str,
    /// Packets forwarded, since start.
    pub packets: u64,
    /// Bytes forwarded (encapsulated), since start.
    pub bytes: u64,
}

/// One worker, as the control thread sees it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    /// Its number.
    pub id: usize,
    /// The core it is pinned to.
    pub core: Option<usize>,
    /// The generation it runs.
    pub generation: u64,
    /// Share of its time spent on bursts with packets, in percent.
    pub busy_percent: f64,
    /// How long it took to take the last update (swap snapshot and counters, send the
    /// acknowledgement).
    pub last_swap: Duration,
    /// Its counters.
    pub counters: Counters,
    /// Polls of its port, and how many found nothing.
    pub polls: (u64, u64),
}

/// Everything the engine counts.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Seconds since start.
    pub uptime: f64,
    /// The generation of the running config.
    pub generation: u64,
    /// All workers' counters added.
    pub total: Counters,
    /// Per worker.
    pub workers: Vec<WorkerView>,
    /// Per (VIP, backend), in VIP order then backend order.
    pub traffic: Vec<BackendTraffic>,
    /// The port's device, when its driver reports one.
    pub port: Option<PortReport>,
}

impl Stats {
    /// The losses the port or its device counts outside the pipeline.
    pub fn port_losses(&self) -> &[PortLoss] {
        self.port.as_ref().map_or(&[], |p| p.losses.as_slice())
    }
}

struct WorkerSlot {
    commands: Sender<Command>,
    stats: Arc<WorkerStats>,
    handle: Option<JoinHandle<WorkerExit>>,
    /// What it was sent last (it may not have taken it yet).
    sent: Update,
    /// What it acknowledged last.
    running: Update,
}

/// How the engine runs its workers.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// How long a reload waits for acknowledgements.
    pub ack_timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { ack_timeout: DEFAULT_ACK_TIMEOUT }
    }
}

/// The running engine.
pub struct Engine {
    config: Config,
    overrides: Overrides,
    generation: u64,
    snapshot: Arc<Snapshot>,
    /// The numbers of (VIP, backend) pairs every snapshot is built with: a pair keeps its
    /// number, and its flows their backend, across reloads.
    numbering: Numbering,
    workers: Vec<WorkerSlot>,
    acks: Receiver<Ack>,
    stop: Arc<AtomicBool>,
    started: Instant,
    options: EngineOptions,
    /// Traffic of retired snapshots, by (VIP name, backend).
    retired: BTreeMap<(String, String), (u64, u64)>,
    reloads: u64,
    last_reload: Option<ReloadReport>,
    alarms: Vec<String>,
    port_info: Option<PortInfo>,
    port_tables: Option<PortTables>,
    /// The config the workers, port and sockets were started with.
    started_config: Config,
    /// Keys changed since start that only a restart applies.
    restart_needed: Vec<String>,
    /// Why the last config reload was not applied, until one is.
    reload_error: Option<String>,
    counts: ReloadCounts,
    state: Option<crate::state::StateFile>,
}

/// What a port driver reports about its device: its link, queues and buffers, its own
/// counters, and the losses it sees outside the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortReport {
    /// The port's driver (`dpdk`).
    pub driver: String,
    /// The device's name (`0000:3b:00.0`, `net_af_packet0`).
    pub device: String,
    /// The device's driver (`net_ixgbe`, `net_af_packet`).
    pub device_driver: String,
    /// The link.
    pub link: PortLink,
    /// Receive queues.
    pub queues: usize,
    /// Whether the workers spread one queue in software.
    pub software_rss: bool,
    /// Frames the software spread could not queue to a worker.
    pub share_full: u64,
    /// Frames longer than an mbuf, dropped whole.
    pub chained_dropped: u64,
    /// mbufs free in the pool.
    pub mbufs_free: u64,
    /// The device's own counters (DPDK xstats), by name.
    pub xstats: BTreeMap<String, u64>,
    /// The losses it sees outside the pipeline, as drop reasons.
    #[serde(skip)]
    pub losses: Vec<PortLoss>,
}

/// A port's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortLink {
    /// Up.
    pub up: bool,
    /// Speed in Mb/s (0: unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Reads a port's report when the counters are read.
pub type PortInfo = Box<dyn Fn() -> PortReport + Send>;

/// What a port does with each config the workers are given (an afxdp port's filter
/// follows its VIP subnets).
pub type PortTables = Box<dyn FnMut(&Config) -> Result<(), String> + Send>;

/// A loss outside the pipeline that a port or its device counts: frames that never
/// reached a worker, or that the device did not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLoss {
    /// The drop reason (`share_full`, `rx_missed`, `rx_nombuf` ...).
    pub reason: &'static str,
    /// How many so far, or `None` where the device cannot tell.
    pub count: Option<u64>,
    /// Where it cannot tell: why, for the operator.
    pub unseen: Option<String>,
}

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("generation", &self.generation)
            .field("workers", &self.workers.len())
            .finish()
    }
}

fn build_snapshot(
    config: &Config,
    applied: &Config,
    generation: u64,
    previous: Option<&Snapshot>,
    numbering: &mut Numbering,
) -> Result<Snapshot, ReloadError> {
    // Rings are built on the cores the workers leave free: all of them before the workers
    // start, none but the control thread's own when they take every core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let busy = if previous.is_some() { config.engine.workers } else { 0 };
    let threads = cores.saturating_sub(busy).max(1);
    build::snapshot_with(applied, generation, previous, threads, numbering)
        .map_err(|e| ReloadError::Build { path: config.path.display().to_string(), message: e.to_string() })
}

impl Engine {
    /// Builds the first snapshot and starts one worker per port queue in `ports` (the
    /// config's `workers`), pinned to the config's cores where it lists them.
    pub fn start(
        config: Config,
        ports: Vec<Box<dyn Port>>,
        options: EngineOptions,
    ) -> Result<Engine, ReloadError> {
        Engine::start_with(config, ports, options, Overrides::default())
    }

    /// [`Engine::start`] with the operator's overrides in force from the first packet (as
    /// a restart restores them from the state file).
    pub fn start_with(
        config: Config,
        ports: Vec<Box<dyn Port>>,
        options: EngineOptions,
        overrides: Overrides,
    ) -> Result<Engine, ReloadError> {
        let (applied, alarms) = overrides.apply_with_alarms(&config);
        let mut numbering = Numbering::new();
        let snapshot = Arc::new(build_snapshot(&config, &applied, 1, None, &mut numbering)?);
        let clock = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (ack_tx, acks) = crossbeam_channel::unbounded();
        let mut workers = Vec::with_capacity(ports.len());
        for (id, port) in ports.into_iter().enumerate() {
            let (commands, rx) = crossbeam_channel::unbounded();
            let stats = Arc::new(WorkerStats::default());
            let initial = Update::new(Arc::clone(&snapshot));
            let opts = WorkerOptions {
                id,
                core: config.engine.cores.as_ref().and_then(|c| c.get(id).copied()),
                burst: config.engine.burst,
                idle_polls_before_sleep: config.engine.idle_polls_before_sleep,
                pipeline: PipelineOptions {
                    flow_capacity: config.engine.flow_capacity,
                    ..PipelineOptions::default()
                },
            };
            let links = Links {
                commands: rx,
                acks: ack_tx.clone(),
                stats: Arc::clone(&stats),
                stop: Arc::clone(&stop),
                clock,
            };
            let handle =
                worker::spawn(opts, port, initial.clone(), links).map_err(|e| ReloadError::Build {
                    path: config.path.display().to_string(),
                    message: format!("cannot start worker {id}: {e}"),
                })?;
            workers.push(WorkerSlot {
                commands,
                stats,
                handle: Some(handle),
                sent: initial.clone(),
                running: initial,
            });
        }
        Ok(Engine {
            started_config: config.clone(),
            config,
            overrides,
            generation: 1,
            snapshot,
            numbering,
            workers,
            acks,
            stop,
            started: clock,
            options,
            retired: BTreeMap::new(),
            reloads: 0,
            last_reload: None,
            alarms,
            port_info: None,
            port_tables: None,
            restart_needed: Vec::new(),
            reload_error: None,
            counts: ReloadCounts::default(),
            state: None,
        })
    }

    /// Lets `stats` report the port's device (its link, its own counters, its losses).
    pub fn set_port_info(&mut self, info: PortInfo) {
        self.port_info = Some(info);
    }

    /// Has `tables` follow every config given to the workers from now on.
    pub fn set_port_tables(&mut self, tables: PortTables) {
        self.port_tables = Some(tables);
    }

    /// The running config (without the overrides).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The running snapshot.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The overrides in force.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// The generation of the running snapshot.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The last reload, if any.
    pub fn last_reload(&self) -> Option<&ReloadReport> {
        self.last_reload.as_ref()
    }

    /// Keys changed since start that only a restart applies.
    pub fn restart_needed(&self) -> &[String] {
        &self.restart_needed
    }

    /// Why the last config reload was not applied, until one is.
    pub fn reload_error(&self) -> Option<&str> {
        self.reload_error.as_deref()
    }

    /// How reloads have gone since start.
    pub fn reload_counts(&self) -> &ReloadCounts {
        &self.counts
    }

    /// Keeps every change of the overrides in `state` before applying it.
    pub fn set_state_file(&mut self, state: crate::state::StateFile) {
        self.state = Some(state);
    }

    /// The state file, if any.
    pub fn state_file(&self) -> Option<&crate::state::StateFile> {
        self.state.as_ref()
    }

    /// Reloads completed since start.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Reads, validates and applies the config file the engine was started from, unless
    /// it would take something away that `how` does not allow.
    pub fn reload_file(&mut self, how: Reload) -> Result<ReloadReport, ReloadError> {
        let t0 = Instant::now();
        let r = Config::load(&self.config.path).map_err(ReloadError::Config).and_then(|config| {
            let load = t0.elapsed();
            let mut report = self.reload_unrecorded(config, how)?;
            report.load = load;
            Ok(report)
        });
        self.record(r)
    }

    /// What a reload of the config file would do, without doing it (`vipgate ctl reload
    /// --dry-run`): per VIP what moves against the running tables, overrides included,
    /// what it would take away, and what only a restart applies.
    pub fn reload_preview(&self) -> Result<ReloadPreview, ReloadError> {
        let config = Config::load(&self.config.path).map_err(ReloadError::Config)?;
        let gone = self.removals_of(&config);
        // Numbered apart (the diff compares tables, not numbers): a preview gives no pair a number.
        let mut numbering = Numbering::new();
        let next = build_snapshot(
            &config,
            &self.overrides.apply(&config),
            self.generation + 1,
            None,
            &mut numbering,
        )?;
        Ok(ReloadPreview {
            changes: crate::diff::diff(&self.snapshot, &next),
            removals: gone,
            restart_needed: restart_needed(&self.started_config, &config),
        })
    }

    /// Applies `config` (validated): builds its snapshot with the overrides, swaps it into
    /// every worker and waits for their acknowledgements. Refused when it would remove a
    /// VIP or a subnet, or leave a VIP with no backend taking new flows.
    pub fn reload(&mut self, config: Config) -> Result<ReloadReport, ReloadError> {
        self.reload_with(config, Reload::default())
    }

    /// [`Engine::reload`], with `how` saying whether removals are allowed.
    pub fn reload_with(&mut self, config: Config, how: Reload) -> Result<ReloadReport, ReloadError> {
        let r = self.reload_unrecorded(config, how);
        self.record(r)
    }

    /// What going from the running config to `config` would take away, the operator's
    /// overrides in force on both sides.
    fn removals_of(&self, config: &Config) -> Vec<String> {
        removals(&self.overrides.apply_operator(&self.config), &self.overrides.apply_operator(config))
    }

    fn record(&mut self, r: Result<ReloadReport, ReloadError>) -> Result<ReloadReport, ReloadError> {
        match &r {
            Ok(report) => {
                self.counts.applied += 1;
                self.reload_error = None;
                self.restart_needed = report.restart_needed.clone();
            }
            Err(e) => {
                *self.counts.failed.entry(e.kind()).or_default() += 1;
                self.reload_error = Some(e.to_string());
            }
        }
        r
    }

    fn reload_unrecorded(&mut self, config: Config, how: Reload) -> Result<ReloadReport, ReloadError> {
        if !how.allow_removals {
            let gone = self.removals_of(&config);
            if !gone.is_empty() {
                return Err(ReloadError::Removals {
                    what: config.path.display().to_string(),
                    removals: gone,
                    how: "vipgate ctl reload --allow-removals applies it on purpose",
                });
            }
        }
        let masked = |c: &Config| with_restart_keys_of(c, &self.started_config);
        let only_restart_keys = config != self.config && masked(&config) == masked(&self.config);
        let moved_state = match &self.state {
            Some(old) if config.control.state != old.path() => {
                // The overrides move with the file: saved at the new place before the config
                // that names it is applied, so that a restart finds them there.
                let new = crate::state::StateFile::new(&config.control.state, &config.path);
                new.save(Some(&self.state_entry(&self.overrides))).map_err(ReloadError::State)?;
                Some(new)
            }
            _ => None,
        };
        let mut report = self.apply(config, self.overrides.clone())?;
        if let Some(new) = moved_state {
            log::warn!("the state file is now {} (the overrides were copied there)", new.path().display());
            self.state = Some(new);
        }
        report.restart_needed = restart_needed(&self.started_config, &self.config);
        report.only_restart_keys = only_restart_keys;
        self.last_reload = Some(report.clone());
        Ok(report)
    }

    fn apply(&mut self, config: Config, overrides: Overrides) -> Result<ReloadReport, ReloadError> {
        let generation = self.generation + 1;
        let t0 = Instant::now();
        let (applied, alarms) = overrides.apply_with_alarms(&config);
        // A build that fails may have numbered pairs of its config: numbers are never given
        // twice anyway, and a later build of that config finds them.
        let snapshot = Arc::new(build_snapshot(
            &config,
            &applied,
            generation,
            Some(&self.snapshot),
            &mut self.numbering,
        )?);
        let build = t0.elapsed();
        if !overrides.same_operator(&self.overrides) {
            // Saved before it is applied: an override a crash would forget is not taken.
            if let Some(state) = &self.state {
                state.save(Some(&self.state_entry(&overrides))).map_err(ReloadError::State)?;
            }
        }
        self.config = config;
        self.overrides = overrides;
        self.alarms = alarms;
        self.generation = generation;
        self.snapshot = Arc::clone(&snapshot);
        let t1 = Instant::now();
        for w in &mut self.workers {
            let update = Update::new(Arc::clone(&snapshot));
            w.sent = update.clone();
            // A worker that has stopped cannot take it; the acknowledgement count says so.
            let _ = w.commands.send(Command::Update(update));
        }
        if let Some(port) = self.port_tables.as_mut() {
            if let Err(e) = port(&self.config) {
                log::error!("generation {generation}: the port did not follow the change: {e}");
            }
        }
        let deadline = t1 + self.options.ack_timeout;
        loop {
            let acked = self.workers.iter().filter(|w| w.running.snapshot.generation() >= generation).count();
            if acked == self.workers.len() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(ack) => self.take_ack(ack),
                Err(_) => {
                    return Err(ReloadError::Timeout {
                        generation,
                        acked,
                        workers: self.workers.len(),
                        timeout: self.options.ack_timeout,
                    })
                }
            }
        }
        let report = ReloadReport {
            generation,
            load: Duration::ZERO,
            build,
            swap: t1.elapsed(),
            restart_needed: self.restart_needed.clone(),
            only_restart_keys: false,
        };
        self.reloads += 1;
        self.last_reload = Some(report.clone());
        Ok(report)
    }

    /// Folds acknowledgements that arrived late (after a reload timed out).
    pub fn collect_acks(&mut self) {
        while let Ok(ack) = self.acks.try_recv() {
            self.take_ack(ack);
        }
    }

    fn take_ack(&mut self, ack: Ack) {
        let Some(w) = self.workers.get_mut(ack.worker) else { return };
        if ack.generation == w.sent.snapshot.generation() {
            w.running = w.sent.clone();
        }
        // The retired snapshot's traffic goes into the totals; then it is dropped, here.
        let snap = &ack.retired.snapshot;
        for v in snap.vips() {
            let name = vip_name(v.addr, v.protocol, v.port);
            for (i, b) in snap.pools()[v.pool as usize].backends().iter().enumerate() {
                let (p, by) = ack.retired.traffic.get(v.counter_base as usize + i);
                if p > 0 {
                    let e = self.retired.entry((name.clone(), b.id.to_string())).or_default();
                    e.0 += p;
                    e.1 += by;
                }
            }
        }
    }

    fn find_backend(&self, sel: &Scoped) -> Result<(), ReloadError> {
        let listed = self
            .config
            .vips
            .iter()
            .filter(|v| sel.vip.as_deref().is_none_or(|n| n == vip_name(v.addr, v.protocol, v.port)))
            .flat_map(|v| &v.backends)
            .any(|b| sel.backend.matches(&b.id));
        match (&sel.vip, listed) {
            (_, true) => Ok(()),
            (None, false) => {
                Err(ReloadError::Override(format!("no backend {} in the running config", sel.backend)))
            }
            (Some(v), false) => Err(ReloadError::Override(format!("VIP {v} has no backend {}", sel.backend))),
        }
    }

    /// The state file's entry for `overrides`, with the socket this appliance answers on.
    pub fn state_entry(&self, overrides: &Overrides) -> crate::state::Entry {
        let mut entry = overrides.to_entry();
        entry.socket = Some(self.started_config.control.socket.clone());
        entry.pid = Some(std::process::id());
        entry
    }

    /// Applies operator overrides `o`, unless (and `force` is not set) they would leave a
    /// VIP with no backend taking new flows.
    fn apply_override(
        &mut self,
        what: String,
        o: Overrides,
        force: bool,
    ) -> Result<ReloadReport, ReloadError> {
        if !force {
            let gone =
                removals(&self.overrides.apply_operator(&self.config), &o.apply_operator(&self.config));
            if !gone.is_empty() {
                return Err(ReloadError::Removals {
                    what,
                    removals: gone,
                    how: "--force applies it on purpose",
                });
            }
        }
        self.apply(self.config.clone(), o)
    }

    /// Drains `sel` (in every VIP that lists it, or in one): it takes no new flows; its
    /// established flows stay. Refused, unless `force`, when a VIP would be left with no
    /// backend taking new flows.
    pub fn drain(&mut self, sel: Scoped, force: bool) -> Result<ReloadReport, ReloadError> {
        self.find_backend(&sel)?;
        let mut o = self.overrides.clone();
        let what = format!("drain {sel}");
        if !o.drained.contains(&sel) {
            o.drained.push(sel);
        }
        self.apply_override(what, o, force)
    }

    /// Drains the whole appliance (its routes withdrawn), or undoes it; kept in the state
    /// file like every override.
    pub fn set_appliance_drained(&mut self, drained: bool) -> Result<ReloadReport, ReloadError> {
        let mut o = self.overrides.clone();
        o.appliance_drained = drained;
        self.apply(self.config.clone(), o)
    }

    /// Undoes [`drain`](Engine::drain) and any weight override of `sel`: without a VIP,
    /// every override of the backend (in every VIP and in each); with one, those made for
    /// that VIP.
    pub fn undrain(&mut self, sel: Scoped) -> Result<ReloadReport, ReloadError> {
        let mut o = self.overrides.clone();
        let before = o.clone();
        let undone = |s: &Scoped| s.backend == sel.backend && (sel.vip.is_none() || s.vip == sel.vip);
        o.drained.retain(|s| !undone(s));
        o.weights.retain(|s, _| !undone(s));
        if o.same_operator(&before) {
            let everywhere = Scoped::everywhere(sel.backend);
            if sel.vip.is_some()
                && (before.drained.contains(&everywhere) || before.weights.contains_key(&everywhere))
            {
                return Err(ReloadError::Override(format!(
                    "{} has its override in every VIP, not in one: undo it without --vip",
                    sel.backend
                )));
            }
            return Err(ReloadError::Override(format!("{sel} has no override to undo")));
        }
        self.apply(self.config.clone(), o)
    }

    /// Gives `sel` (in every VIP that lists it, or in one) weight `weight` until undone.
    /// Refused, unless `force`, when a VIP would be left with no backend taking new flows.
    pub fn set_weight(&mut self, sel: Scoped, weight: u32, force: bool) -> Result<ReloadReport, ReloadError> {
        self.find_backend(&sel)?;
        if weight > 1_000_000 {
            return Err(ReloadError::Override(format!("weight {weight} is above 1000000")));
        }
        let mut o = self.overrides.clone();
        let what = format!("weight {sel} {weight}");
        o.weights.insert(sel, weight);
        self.apply_override(what, o, force)
    }

    /// Takes a backend down (or back up) for the pairs its health check speaks for; a
    /// VIP that would be left with no backend fails open (see [`Engine::alarms`]).
    pub fn set_health_down(
        &mut self,
        down: std::collections::BTreeSet<(String, BackendId)>,
    ) -> Result<ReloadReport, ReloadError> {
        let mut o = self.overrides.clone();
        o.health_down = down;
        self.apply(self.config.clone(), o)
    }

    /// What is wrong now: VIPs failing open.
    pub fn alarms(&self) -> &[String] {
        &self.alarms
    }

    /// Whether there are overrides in force.
    pub fn has_overrides(&self) -> bool {
        !self.overrides.is_empty()
    }

    /// Each worker's polls of its port so far, by worker (cheap: what the control loop
    /// watches for a worker that has stopped).
    pub fn polls(&self) -> Vec<u64> {
        self.workers.iter().map(|w| w.stats.polls.get()).collect()
    }

    /// Packets the workers have received since start, over every worker (cheap: no
    /// per-VIP tallies).
    pub fn rx_packets(&self) -> u64 {
        self.workers.iter().map(|w| w.stats.counters().rx_packets).sum()
    }

    /// Every counter, now.
    pub fn stats(&self) -> Stats {
        let mut total = Counters::default();
        let workers: Vec<WorkerView> = self
            .workers
            .iter()
            .enumerate()
            .map(|(id, w)| {
                let counters = w.stats.counters();
                total.add(&counters);
                let busy = w.stats.busy_ns.get() as f64;
                let all = w.stats.total_ns.get().max(1) as f64;
                WorkerView {
                    id,
                    core: w.stats.core.get().checked_sub(1).map(|c| c as usize),
                    generation: w.stats.generation.get(),
                    busy_percent: (busy * 100.0 / all).min(100.0),
                    last_swap: Duration::from_nanos(w.stats.last_swap_ns.get()),
                    counters,
                    polls: (w.stats.polls.get(), w.stats.empty_polls.get()),
                }
            })
            .collect();
        let mut traffic = Vec::new();
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let snap = &self.snapshot;
        for v in snap.vips() {
            let name = vip_name(v.addr, v.protocol, v.port);
            for (i, b) in snap.pools()[v.pool as usize].backends().iter().enumerate() {
                let key = (name.clone(), b.id.to_string());
                let (mut p, mut by) = self.retired.get(&key).copied().unwrap_or_default();
                for w in &self.workers {
                    // Counters of the snapshot a worker runs now, and of the one it was
                    // sent and has not taken yet (zero until it does).
                    for u in [&w.running, &w.sent] {
                        if u.snapshot.generation() == snap.generation() {
                            let (a, c) = u.traffic.get(v.counter_base as usize + i);
                            p += a;
                            by += c;
                            break;
                        }
                    }
                }
                seen.insert(key.clone(), traffic.len());
                traffic.push(BackendTraffic {
                    vip: key.0,
                    backend: key.1,
                    weight: b.weight,
                    state: state_name(b.state),
                    packets: p,
                    bytes: by,
                });
            }
        }
        // Workers still running an older snapshot, and backends since removed.
        for w in &self.workers {
            if w.running.snapshot.generation() != snap.generation() {
                let s = &w.running.snapshot;
                for v in s.vips() {
                    let name = vip_name(v.addr, v.protocol, v.port);
                    for (i, b) in s.pools()[v.pool as usize].backends().iter().enumerate() {
                        let (a, c) = w.running.traffic.get(v.counter_base as usize + i);
                        self.add_traffic(&mut traffic, &mut seen, (name.clone(), b.id.to_string()), a, c);
                    }
                }
            }
        }
        for (key, &(a, c)) in &self.retired {
            if !seen.contains_key(key) {
                self.add_traffic(&mut traffic, &mut seen, key.clone(), a, c);
            }
        }
        Stats {
            uptime: self.started.elapsed().as_secs_f64(),
            generation: self.generation,
            total,
            workers,
            traffic,
            port: self.port_info.as_ref().map(|f| f()),
        }
    }

    fn add_traffic(
        &self,
        traffic: &mut Vec<BackendTraffic>,
        seen: &mut BTreeMap<(String, String), usize>,
        key: (String, String),
        packets: u64,
        bytes: u64,
    ) {
        if packets == 0 {
            return;
        }
        match seen.get(&key) {
            Some(&i) => {
                traffic[i].packets += packets;
                traffic[i].bytes += bytes;
            }
            None => {
                seen.insert(key.clone(), traffic.len());
                traffic.push(BackendTraffic {
                    vip: key.0,
                    backend: key.1,
                    weight: 0,
                    state: "removed",
                    packets,
                    bytes,
                });
            }
        }
    }

    /// Live flows per worker, counted by the workers themselves a piece of their flow table
    /// at a time between bursts ([`vipgate_engine::worker::SCAN_WINDOWS`] windows a turn),
    /// so that the count never holds a queue up for long.
    /// UDP flows seen within `udp_window` count as recent
    /// ([`vipgate_engine::worker::StateCounts::udp_recent`]).
    pub fn flows(&mut self, timeout: Duration, udp_window: Duration) -> Vec<FlowCount> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut asked = 0;
        let udp_window_ns = u64::try_from(udp_window.as_nanos()).unwrap_or(u64::MAX);
        for w in &self.workers {
            let query = FlowQuery { reply: tx.clone(), udp_window_ns };
            if w.commands.send(Command::CountFlows(query)).is_ok() {
                asked += 1;
            }
        }
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < asked {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(c) => out.push(c),
                Err(_) => break,
            }
        }
        out.sort_by_key(|c| c.worker);
        out
    }

    /// How many (VIP, backend) pairs were numbered since start: every pair ever configured
    /// keeps its number (flows may remember it), up to [`vipgate_engine::flow::MAX_BACKEND`] + 1.
    pub fn flow_numbers(&self) -> usize {
        self.numbering.len()
    }

    /// The (VIP, backend) pair that flows remember as `number` ([`PoolBackend::number`]),
    /// and whether the running snapshot still has it. `None` for a number never given.
    pub fn target(&self, number: u32) -> Option<(Target, bool)> {
        let target = *self.numbering.target(number)?;
        Some((target, self.snapshot.has_pair(number, &target)))
    }

    /// The number of `target` in the running tables, if they have the pair.
    pub fn number_of(&self, target: &Target) -> Option<u32> {
        self.numbering.find(target).filter(|&n| self.snapshot.has_pair(n, target))
    }

    /// Has every worker announce its new flows, each to a queue of `capacity` of its own;
    /// returns the queues (worker order).
    pub fn announce(&mut self, capacity: usize) -> Vec<Arc<vipgate_engine::announce::Announcer>> {
        self.workers
            .iter()
            .map(|w| {
                let a = Arc::new(vipgate_engine::announce::Announcer::new(capacity));
                let _ = w.commands.send(Command::Announce(Some(Arc::clone(&a))));
                a
            })
            .collect()
    }

    /// Has every worker remember `flows` (key, pair number) where it does not know them.
    /// (A flow's worker here cannot be told from its key: every worker takes them.)
    pub fn adopt(&self, flows: &[(vipgate_engine::flow::FlowKey, u32)]) {
        if flows.is_empty() {
            return;
        }
        for w in &self.workers {
            let _ = w.commands.send(Command::Adopt(flows.to_vec()));
        }
    }

    /// Which of `keys` some worker has live (seen within the idle timeout); a worker that
    /// does not answer within `timeout` counts as having none of them.
    pub fn alive(&self, keys: &[vipgate_engine::flow::FlowKey], timeout: Duration) -> Vec<bool> {
        let mut live = vec![false; keys.len()];
        let replies: Vec<_> = self
            .workers
            .iter()
            .map(|w| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let _ = w.commands.send(Command::Alive(keys.to_vec(), tx));
                rx
            })
            .collect();
        let deadline = Instant::now() + timeout;
        for rx in replies {
            if let Ok(answer) = rx.recv_deadline(deadline) {
                for (l, a) in live.iter_mut().zip(answer) {
                    *l |= a;
                }
            }
        }
        live
    }

    /// Stops every worker, waits for them, and returns the final counters.
    pub fn stop(mut self) -> (Stats, Vec<Counters>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut finals = Vec::new();
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                match h.join() {
                    Ok(exit) => finals.push(exit.counters),
                    Err(_) => log::error!("a worker thread panicked"),
                }
            }
        }
        self.collect_acks();
        (self.stats(), finals)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// The state's name in configs and reports.
pub fn state_name(s: BackendState) -> &'static str {
    match s {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Down => "down",
    }
}
