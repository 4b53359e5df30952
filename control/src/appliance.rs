//! `vipgate run`: the appliance in the foreground.
//!
//! The control thread owns the [`Engine`] and is the only one that touches it. Everything
//! else asks it through channels: the operator socket's connections, the metrics endpoint,
//! and the signal thread (SIGHUP reloads; SIGINT and SIGTERM stop). It also watches the
//! config file and reloads it once it has stopped changing: unchanged for `[control]
//! reload_settle` (2 s by default), or at once when a new file was renamed over the path
//! (the way editors and `vipgate set-backend` write). A reload that fails, or that would
//! take a VIP or a subnet away, is logged, counted and shown by `ctl status`, and changes
//! nothing; the watcher and SIGHUP never confirm removals.
//!
//! At start the operator's overrides are restored from the state file; a state file that
//! cannot be read stops the start (`--discard-state` starts without it).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{select, Receiver};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::answer::{ApplianceAnswer, BgpStatus, StatusAnswer};
use crate::bgp::Announcer;
use crate::config::Config;
use crate::ctl::{self, CtlRequest};
use crate::engine::{Engine, EngineOptions, Reload, ReloadError};
use crate::health::{HealthState, Outcome, ProbeResult, Prober, Target};
use crate::overrides::Overrides;
use crate::ports::{self, PortHost};
use crate::state::StateFile;

/// How often the config file is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// What identifies a version of the config file: its inode (a rename over the path gives
/// a new one), its modification time and its length.
type Stamp = (u64, SystemTime, u64);

fn file_stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?, m.len()))
}

fn log_reload(why: &str, r: &Result<crate::engine::ReloadReport, ReloadError>) {
    match r {
        Ok(r) => {
            log::info!(
                "{why}: generation {} running on every worker (read in {:.1} ms, built in {:.1} ms, swapped in {:.1} ms)",
                r.generation,
                r.load.as_secs_f64() * 1e3,
                r.build.as_secs_f64() * 1e3,
                r.swap.as_secs_f64() * 1e3
            );
            if let Some(m) = ctl::restart_message(r) {
                log::warn!("{why}: {m}");
            }
        }
        Err(e) => log::error!("{why}: not applied, the running config stays:\n{e}"),
    }
}

/// How `vipgate run` starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Start without the saved overrides, and forget them (`--discard-state`).
    pub discard_state: bool,
}

/// The overrides to start with: restored from the state file, or none when `discard`.
fn restore(state: &StateFile, discard: bool) -> Result<Overrides, String> {
    if discard {
        let what = state.discard()?;
        log::warn!("--discard-state: {what}; starting without saved overrides");
        return Ok(Overrides::default());
    }
    let entry = state.load().map_err(|e| {
        format!(
            "{e}\nfix or remove it, or start with --discard-state to go without the saved drains and weights"
        )
    })?;
    let Some(entry) = entry else {
        log::info!("state file {}: no saved overrides for this config", state.path().display());
        return Ok(Overrides::default());
    };
    let o = Overrides::from_entry(&entry).map_err(|e| {
        format!("state file {}: {e}\nfix or remove it, or start with --discard-state", state.path().display())
    })?;
    if o.is_empty() {
        log::info!("state file {}: no overrides were in force", state.path().display());
    } else {
        log::warn!("restored from state file {}: overrides {}", state.path().display(), o.describe());
    }
    Ok(o)
}

/// Lifts the soft limit on open files to the hard one, so that a crowd of clients meets
/// the connection caps before it meets the limit.
fn raise_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                log::debug!("open files: limit raised from {old} to {}", lim.rlim_max);
            }
        }
    }
}

/// Runs the appliance until SIGINT or SIGTERM; returns the final report, or why it could
/// not start.
pub fn run(path: &Path, options: RunOptions) -> Result<String, String> {
    let config = Config::load(path).map_err(|e| format!("{e}\n{}: nothing started", path.display()))?;
    if let Some((missing, online)) = config.missing_cores() {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(format!(
            "{}: [engine] cores: core {} does not exist: this machine has cores 0..{}; nothing started",
            path.display(),
            list.join(", "),
            online - 1
        ));
    }
    let state = StateFile::new(&config.control.state, path);
    let overrides = restore(&state, options.discard_state)
        .map_err(|e| format!("{e}\n{}: nothing started", path.display()))?;
    raise_file_limit();
    let socket = config.control.socket.clone();
    let metrics = config.control.metrics;
    // Signals first: once the socket answers, an operator may send SIGHUP at once.
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| format!("cannot take signals: {e}"))?;
    let listener = ctl::bind(&socket)?;
    let metrics_listener = match metrics {
        Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| format!("metrics {addr}: {e}"))?),
        None => None,
    };
    let (queues, host) = ports::open(&config)?;
    let workers = queues.len();
    let mut engine =
        Engine::start_with(config, queues, EngineOptions::default(), overrides).map_err(|e| e.to_string())?;
    // The socket in the state file lets `ctl --config` find this appliance after the file's
    // socket has changed; the overrides are written again as they are.
    if let Err(e) = state.save(Some(&engine.state_entry(engine.overrides()))) {
        log::warn!("{e}: drains and weights will be refused until it can be written ([control] state)");
    }
    engine.set_state_file(state);
    #[cfg(feature = "dpdk")]
    if let PortHost::Dpdk(device) = &host {
        let device = std::sync::Arc::clone(device);
        engine.set_port_info(Box::new(move || ports::dpdk_info(&device)));
    }
    #[cfg(feature = "afxdp")]
    if let PortHost::Afxdp(device) = &host {
        let info = std::sync::Arc::clone(device);
        engine.set_port_info(Box::new(move || ports::afxdp_info(&info)));
        let tables = std::sync::Arc::clone(device);
        engine.set_port_tables(Box::new(move |config| tables.set_prefixes(&ports::taken_prefixes(config))));
    }
    log::info!(
        "running {} with {workers} worker(s); operator socket {}{}",
        path.display(),
        socket.display(),
        metrics.map_or(String::new(), |m| format!("; metrics http://{m}/metrics"))
    );

    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("vipgate-ctl-accept".into())
        .spawn(move || ctl::serve(listener, ctl_tx))
        .map_err(|e| e.to_string())?;
    let (metrics_tx, metrics_rx) = crossbeam_channel::unbounded();
    if let Some(l) = metrics_listener {
        std::thread::Builder::new()
            .name("vipgate-metrics-accept".into())
            .spawn(move || crate::metrics::serve(l, metrics_tx))
            .map_err(|e| e.to_string())?;
    }
    let (sig_tx, sig_rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("vipgate-signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if sig_tx.send(s).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())?;

    let sharing = match engine.config().fleet.clone() {
        Some(config) => Some(crate::fleet::Fleet::start(&config, &mut engine)?),
        None => None,
    };
    control_loop(&mut engine, &ctl_rx, &metrics_rx, &sig_rx, path, sharing);

    let (stats, _) = engine.stop();
    let mut report = String::new();
    #[cfg(feature = "dpdk")]
    if let PortHost::Dpdk(device) = &host {
        let link = device.link();
        device.stop();
        report.push_str(&format!(
            "dpdk device {} ({}): link {}, {} mbufs free\n",
            device.name,
            device.driver,
            if link.up { "up" } else { "down" },
            device.mbufs_free()
        ));
    }
    #[cfg(feature = "afxdp")]
    if let PortHost::Afxdp(device) = &host {
        let (taken, passed) = device.filter_counts();
        report.push_str(&format!(
            "afxdp interface {}: its XDP filter took {taken} frames and passed {passed} to the kernel; detached\n",
            device.interface
        ));
    }
    if let PortHost::Pcap(threads) = host {
        let (read, written, not_received) = (
            threads.read.load(std::sync::atomic::Ordering::Relaxed),
            threads.written.load(std::sync::atomic::Ordering::Relaxed),
            threads.not_received.load(std::sync::atomic::Ordering::Relaxed),
        );
        if let Err(e) = threads.finish() {
            log::error!("capture: {e}");
        }
        report.push_str(&format!("capture: {read} frames read, {written} written"));
        if not_received > 0 {
            report.push_str(&format!(
                ", {not_received} skipped (sent by the capturing host, or for other hosts)"
            ));
        }
        report.push('\n');
    }
    let _ = std::fs::remove_file(&socket);
    report.push_str(&format!("stopped after {:.1} s at generation {}\n", stats.uptime, stats.generation));
    for (name, value) in stats.total.named() {
        report.push_str(&format!("{name:<24} {value}\n"));
    }
    Ok(report)
}

/// The health checks of the running config: their state, and the probes.
struct Health {
    state: HealthState,
    targets: Vec<Target>,
    prober: Option<Prober>,
    results: crossbeam_channel::Sender<ProbeResult>,
    /// Probes that started late or were skipped, over every prober since start.
    late: Arc<AtomicU64>,
}

impl Health {
    /// Follows the engine's config: probes what it asks for, and pushes the down set
    /// again when targets went away.
    fn follow(&mut self, engine: &mut Engine) {
        let targets = self.state.set_config(engine.config());
        if targets != self.targets {
            if let Some(p) = self.prober.take() {
                p.stop();
            }
            if !targets.is_empty() {
                match Prober::start(targets.clone(), self.results.clone(), Arc::clone(&self.late)) {
                    Ok(p) => self.prober = Some(p),
                    Err(e) => log::error!("health checks: cannot start the probes: {e}"),
                }
                log::info!("health checks: probing {} target(s)", targets.len());
            }
            self.targets = targets;
        }
        let down = self.state.down();
        if down != engine.overrides().health_down {
            log_reload("health", &engine.set_health_down(down));
        }
    }

    fn take(&mut self, engine: &mut Engine, r: &ProbeResult) {
        let Some(up) = self.state.take(r) else { return };
        let pairs: Vec<String> = self
            .state
            .report()
            .into_iter()
            .find(|(t, _, _)| **t == r.target)
            .map(|(_, _, p)| p.iter().map(|(v, b)| format!("{b} of {v}")).collect())
            .unwrap_or_default();
        match (&r.outcome, up) {
            (_, true) => log::warn!("health: {} is up: {} back", r.target, pairs.join(", ")),
            (Outcome::Down(e), false) => {
                log::warn!("health: {} is down ({e}): {} down", r.target, pairs.join(", "))
            }
            (_, false) => {}
        }
        let before: Vec<String> = engine.alarms().to_vec();
        log_reload("health", &engine.set_health_down(self.state.down()));
        for a in engine.alarms() {
            if !before.contains(a) {
                log::error!("alarm: {a}");
            }
        }
    }
}

/// After this long without a packet, the port is said to receive nothing.
const QUIET_AFTER: Duration = Duration::from_secs(10);

/// Whether the port receives anything: a port that receives nothing (a cable, a wrong
/// device, a router that does not send the VIPs here) is said once in the log and shown
/// by `ctl status`, rather than polled silently.
struct Quiet {
    rx: u64,
    since: Instant,
    said: bool,
}

impl Quiet {
    fn tick(&mut self, rx: u64, idle_polls_before_sleep: u64) {
        if rx != self.rx {
            if self.said {
                log::info!("the port receives packets again");
            }
            *self = Quiet { rx, since: Instant::now(), said: false };
            return;
        }
        if !self.said && self.since.elapsed() >= QUIET_AFTER {
            self.said = true;
            let polling = if idle_polls_before_sleep == 0 {
                "its workers poll it without rest all the same (idle_polls_before_sleep = 0: a core each at 100%)"
                    .to_string()
            } else {
                format!("its workers back off after {idle_polls_before_sleep} empty polls")
            };
            log::warn!(
                "the port has received no packet for {} s: is the right device configured, and are the \
                 VIPs routed here? {polling}",
                QUIET_AFTER.as_secs()
            );
        }
    }

    /// How long the port has received nothing, once that is [`QUIET_AFTER`] or more.
    fn idle(&self) -> Option<Duration> {
        Some(self.since.elapsed()).filter(|d| *d >= QUIET_AFTER)
    }
}

/// The config file as the watcher sees it: the version last applied (or refused), and a
/// newer one waiting to settle.
struct Watch {
    seen: Option<Stamp>,
    pending: Option<(Stamp, Instant)>,
}

impl Watch {
    /// The file has been read by another trigger: this version is taken.
    fn taken(&mut self, path: &Path) {
        self.seen = file_stamp(path);
        self.pending = None;
    }

    /// Whether the file should be reloaded now: it changed, and has stayed unchanged for
    /// `settle`, or it is a new file renamed over the path.
    fn due(&mut self, path: &Path, settle: Duration) -> bool {
        let now = file_stamp(path);
        let Some(stamp) = now else {
            // Gone (being replaced, or removed): wait for a file.
            self.pending = None;
            return false;
        };
        if Some(stamp) == self.seen {
            self.pending = None;
            return false;
        }
        match self.pending {
            Some((p, since)) if p == stamp => {
                let renamed = self.seen.is_some_and(|s| s.0 != stamp.0);
                if renamed || since.elapsed() >= settle {
                    self.seen = Some(stamp);
                    self.pending = None;
                    return true;
                }
                false
            }
            _ => {
                self.pending = Some((stamp, Instant::now()));
                false
            }
        }
    }
}

fn control_loop(
    engine: &mut Engine,
    ctl_rx: &Receiver<ctl::Request>,
    metrics_rx: &Receiver<crossbeam_channel::Sender<String>>,
    sig_rx: &Receiver<i32>,
    path: &Path,
    mut sharing: Option<crate::fleet::Fleet>,
) {
    let mut watch = Watch { seen: file_stamp(path), pending: None };
    let sharing_tick = match sharing {
        Some(_) => crossbeam_channel::tick(crate::fleet::TICK),
        None => crossbeam_channel::never(),
    };
    let (results, health_rx) = crossbeam_channel::unbounded();
    let mut health = Health {
        state: HealthState::default(),
        targets: Vec::new(),
        prober: None,
        results,
        late: Arc::new(AtomicU64::new(0)),
    };
    health.follow(engine);
    let mut fleet = Fleet { announcer: None, progress: Vec::new() };
    fleet.tick(engine);
    let mut quiet = Quiet { rx: engine.rx_packets(), since: Instant::now(), said: false };
    loop {
        let generation = engine.generation();
        select! {
            recv(health_rx) -> r => {
                if let Ok(r) = r {
                    health.take(engine, &r);
                }
            }
            recv(ctl_rx) -> r => {
                let Ok(r) = r else { continue };
                let cmd = r.body.name();
                let answer = match &r.body {
                    CtlRequest::DrainAppliance => fleet.drain(engine, true),
                    CtlRequest::UndrainAppliance => fleet.drain(engine, false),
                    CtlRequest::Status => ctl::answer(StatusAnswer {
                        port_idle_s: quiet.idle().map(|d| d.as_secs()),
                        bgp: fleet.status(engine),
                        health_probes_late: Some(health.late.load(Ordering::Relaxed)),
                        fleet: sharing.as_ref().map(|s| s.counts),
                        ..ctl::status(engine, Some(&health.state))
                    }),
                    request => ctl::handle(engine, Some(&health.state), request),
                };
                if r.body.changes_tables() {
                    let ok = answer["ok"].as_bool() == Some(true);
                    if ok {
                        log::info!("ctl {cmd}: generation {}", answer["generation"]);
                        if let Some(w) = answer["warning"].as_str() {
                            log::warn!("ctl {cmd}: {w}");
                        }
                    } else {
                        log::error!("ctl {cmd}: {}", answer["error"].as_str().unwrap_or(""));
                    }
                    if matches!(r.body, CtlRequest::Reload { .. }) {
                        watch.taken(path);
                    }
                }
                let _ = r.reply.send(answer);
            }
            recv(sharing_tick) -> _ => {
                if let Some(s) = sharing.as_mut() {
                    s.tick(engine);
                }
            }
            recv(metrics_rx) -> r => {
                if let Ok(reply) = r {
                    let mut text = crate::metrics::render(&engine.stats());
                    text.push_str(&crate::metrics::render_control(engine));
                    if let Some(s) = &sharing {
                        text.push_str(&crate::metrics::render_fleet(&s.counts));
                    }
                    text.push_str(&crate::metrics::render_health(
                        &health.state,
                        engine.alarms(),
                        health.late.load(Ordering::Relaxed),
                    ));
                    let _ = reply.send(text);
                }
            }
            recv(sig_rx) -> s => match s {
                Ok(SIGHUP) => {
                    log_reload("SIGHUP", &engine.reload_file(Reload::default()));
                    watch.taken(path);
                }
                Ok(s) => {
                    log::info!("signal {s}: stopping");
                    break;
                }
                Err(_) => break,
            },
            default(WATCH_EVERY) => {}
        }
        engine.collect_acks();
        if engine.generation() != generation {
            health.follow(engine);
        }
        fleet.tick(engine);
        quiet.tick(engine.rx_packets(), engine.config().engine.idle_polls_before_sleep);
        if watch.due(path, engine.config().control.reload_settle) {
            log_reload(&format!("{} changed", path.display()), &engine.reload_file(Reload::default()));
            health.follow(engine);
        }
    }
    if let Some(p) = health.prober.take() {
        p.stop();
    }
    // Tell the routers first, so that they move the traffic before the workers stop.
    if let Some(a) = fleet.announcer.as_mut() {
        a.set(&engine.config().subnets, Some("vipgate is stopping"));
    }
}

/// The appliance's place in the fleet: the routes it announces through BIRD, the
/// operator's drain of the whole appliance, and the workers' progress.
struct Fleet {
    announcer: Option<Announcer>,
    /// Per worker: its poll count and when it last changed.
    progress: Vec<(u64, std::time::Instant)>,
}

impl Fleet {
    /// Follows the config's `[bgp]`, watches the workers, and announces or withdraws.
    fn tick(&mut self, engine: &Engine) {
        let Some(cfg) = engine.config().bgp.clone() else {
            self.announcer = None;
            return;
        };
        if self.announcer.as_ref().is_none_or(|a| !a.has_config(&cfg)) {
            self.announcer = Some(Announcer::new(cfg.clone()));
        }
        let now = std::time::Instant::now();
        let polls = engine.polls();
        self.progress.resize(polls.len(), (u64::MAX, now));
        let mut stuck = None;
        for (id, (&n, p)) in polls.iter().zip(self.progress.iter_mut()).enumerate() {
            if n != p.0 {
                *p = (n, now);
            } else if now - p.1 >= cfg.stuck_after {
                stuck = Some(format!("worker {id} has not polled for {} s", (now - p.1).as_secs()));
            }
        }
        let drained = engine.overrides().appliance_drained;
        let reason =
            if drained { Some("the appliance is drained by the operator".to_string()) } else { stuck };
        if let Some(a) = self.announcer.as_mut() {
            a.set(&engine.config().subnets, reason.as_deref());
        }
    }

    fn drain(&mut self, engine: &mut Engine, drain: bool) -> serde_json::Value {
        if engine.config().bgp.is_none() {
            return ctl::error("no [bgp] in the config: this appliance announces nothing to drain");
        }
        if let Err(e) = engine.set_appliance_drained(drain) {
            return ctl::error(e.to_string());
        }
        log::warn!("ctl: appliance {}", if drain { "drained: withdrawing the routes" } else { "undrained" });
        self.tick(engine);
        match self.status(engine) {
            Some(bgp) => ctl::answer(ApplianceAnswer { ok: true, bgp }),
            None => ctl::error("no [bgp] in the config: this appliance announces nothing to drain"),
        }
    }

    fn status(&self, engine: &Engine) -> Option<BgpStatus> {
        self.announcer.as_ref().map(|a| a.status(engine.overrides().appliance_drained))
    }
}
