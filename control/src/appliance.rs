//! `vipgate run`: the appliance in the foreground.
//!
//! The control thread owns the [`Engine`] and is the only one that touches it. Everything
//! else asks it through channels: the operator socket's connections, the metrics endpoint,
//! and the signal thread (SIGHUP reloads; SIGINT and SIGTERM stop). It also watches the
//! config file and reloads when it changes. A reload that fails is logged and changes
//! nothing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{select, Receiver};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::bgp::Announcer;
use crate::config::Config;
use crate::ctl;
use crate::health::{HealthState, ProbeResult, Prober, Target};
use crate::ports::{self, PortHost};
use crate::swap::{Engine, EngineOptions, ReloadError};

/// How often the config file is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn log_reload(why: &str, r: &Result<crate::swap::ReloadReport, ReloadError>) {
    match r {
        Ok(r) => log::info!(
            "{why}: generation {} running on every worker (read in {:.1} ms, built in {:.1} ms, swapped in {:.1} ms)",
            r.generation,
            r.load.as_secs_f64() * 1e3,
            r.build.as_secs_f64() * 1e3,
            r.swap.as_secs_f64() * 1e3
        ),
        Err(e) => log::error!("{why}: not applied, the running config stays:\n{e}"),
    }
}

/// Runs the appliance until SIGINT or SIGTERM; returns the final report, or why it could
/// not start.
pub fn run(path: &Path) -> Result<String, String> {
    let config = Config::load(path).map_err(|e| format!("{e}\n{}: nothing started", path.display()))?;
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
    let mut engine = Engine::start(config, queues, EngineOptions::default()).map_err(|e| e.to_string())?;
    #[cfg(feature = "dpdk")]
    if let PortHost::Dpdk(device) = &host {
        let device = std::sync::Arc::clone(device);
        engine.set_port_info(Box::new(move || ports::dpdk_info(&device)));
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

    control_loop(&mut engine, &ctl_rx, &metrics_rx, &sig_rx, path);

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
                match Prober::start(targets.clone(), self.results.clone()) {
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
            (Err(e), false) => log::warn!("health: {} is down ({e}): {} down", r.target, pairs.join(", ")),
            (Ok(()), false) => {}
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

fn control_loop(
    engine: &mut Engine,
    ctl_rx: &Receiver<ctl::Request>,
    metrics_rx: &Receiver<crossbeam_channel::Sender<String>>,
    sig_rx: &Receiver<i32>,
    path: &Path,
) {
    let mut stamp = file_stamp(path);
    let (results, health_rx) = crossbeam_channel::unbounded();
    let mut health = Health { state: HealthState::default(), targets: Vec::new(), prober: None, results };
    health.follow(engine);
    let mut fleet = Fleet { announcer: None, drained: false, progress: Vec::new() };
    fleet.tick(engine);
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
                let cmd = r.body.get("cmd").and_then(|c| c.as_str()).unwrap_or("").to_string();
                let answer = match cmd.as_str() {
                    "drain-appliance" | "undrain-appliance" => fleet.drain(engine, cmd == "drain-appliance"),
                    _ => {
                        let mut a = ctl::handle(engine, Some(&health.state), &r.body);
                        if cmd == "status" {
                            a["bgp"] = fleet.status();
                        }
                        a
                    }
                };
                if matches!(cmd.as_str(), "reload" | "drain" | "undrain" | "weight") {
                    let ok = answer["ok"].as_bool() == Some(true);
                    if ok {
                        log::info!("ctl {cmd}: generation {}", answer["generation"]);
                    } else {
                        log::error!("ctl {cmd}: {}", answer["error"].as_str().unwrap_or(""));
                    }
                    stamp = file_stamp(path);
                }
                let _ = r.reply.send(answer);
            }
            recv(metrics_rx) -> r => {
                if let Ok(reply) = r {
                    let mut text = crate::metrics::render(&engine.stats());
                    text.push_str(&crate::metrics::render_health(&health.state, engine.alarms()));
                    let _ = reply.send(text);
                }
            }
            recv(sig_rx) -> s => match s {
                Ok(SIGHUP) => {
                    log_reload("SIGHUP", &engine.reload_file());
                    stamp = file_stamp(path);
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
        let now = file_stamp(path);
        if now.is_some() && now != stamp {
            // Let a writer finish before reading.
            std::thread::sleep(Duration::from_millis(200));
            stamp = file_stamp(path);
            log_reload(&format!("{} changed", path.display()), &engine.reload_file());
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
    drained: bool,
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
        let workers = engine.stats().workers;
        self.progress.resize(workers.len(), (u64::MAX, now));
        let mut stuck = None;
        for (w, p) in workers.iter().zip(self.progress.iter_mut()) {
            if w.polls.0 != p.0 {
                *p = (w.polls.0, now);
            } else if now - p.1 >= cfg.stuck_after {
                stuck = Some(format!("worker {} has not polled for {} s", w.id, (now - p.1).as_secs()));
            }
        }
        let reason =
            if self.drained { Some("the appliance is drained by the operator".to_string()) } else { stuck };
        if let Some(a) = self.announcer.as_mut() {
            a.set(&engine.config().subnets, reason.as_deref());
        }
    }

    fn drain(&mut self, engine: &Engine, drain: bool) -> serde_json::Value {
        if engine.config().bgp.is_none() {
            return ctl::error("no [bgp] in the config: this appliance announces nothing to drain");
        }
        self.drained = drain;
        log::warn!("ctl: appliance {}", if drain { "drained: withdrawing the routes" } else { "undrained" });
        self.tick(engine);
        let mut a = self.status();
        a["ok"] = serde_json::json!(true);
        a
    }

    fn status(&self) -> serde_json::Value {
        match &self.announcer {
            Some(a) => {
                let mut s = a.status();
                s["drained"] = serde_json::json!(self.drained);
                s
            }
            None => serde_json::Value::Null,
        }
    }
}
