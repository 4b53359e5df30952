//! The operator socket: a Unix socket (mode 0600) speaking JSON lines, and its client.
//!
//! One request per line, one answer per line:
//! ```text
//! {"cmd":"status"}                                   generation, uptime, workers, busy %, overrides
//! {"cmd":"stats"}                                    every counter: totals, per worker, per VIP and backend
//! {"cmd":"reload"}                                   re-read the config file; answers once every worker runs it
//! {"cmd":"reload","allow_removals":true}             ... even though it removes VIPs or subnets
//! {"cmd":"reload","dry_run":true}                    what a reload would change, refuse, or need a restart for
//! {"cmd":"drain","backend":"192.0.2.11"}             no new flows for the backend (until undrain)
//! {"cmd":"undrain","backend":"192.0.2.11"}           undo drain and weight overrides
//! {"cmd":"weight","backend":"192.0.2.11","weight":5} another weight (until undrain)
//!                                                    drain and weight take "force":true to empty a VIP
//! {"cmd":"table","vip":"203.0.113.10:8000/udp"}      the VIP's Maglev slots per backend
//! {"cmd":"flows"}                                    live flows by state: per worker, per backend, per VIP and backend
//! ```
//! The requests are typed ([`CtlRequest`], in [`crate::protocol`]); `vipgate ctl` builds
//! one from its arguments and the socket parses each line into one before the control
//! thread sees it. The answers are typed too ([`crate::answer`]): every one has
//! `"ok": true`, or `"ok": false` and an `"error"`. A line that is not such a request, or a field of the wrong type ("backend must be a string"), gets an
//! error answer; the engine is not touched. A reload or override that goes through
//! answers with its generation and `"restart_needed"`; a refused one with `"refused"`,
//! what it would remove.
//!
//! At most [`MAX_CONNECTIONS`] connections at once, each with [`REQUEST_DEADLINE`] to send
//! a request line: a crowd of idle or slow clients cannot take the socket away.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::{json, Value};
use vipgate_engine::table::{vip_name, Snapshot, VipProtocol};
use vipgate_engine::worker::StateCounts;

use crate::answer::{
    ApplianceAnswer, BackendFlows, BackendStats, ChangeAnswer, ErrorAnswer, FlowNumbers, FlowsAnswer,
    HealthBackend, HealthTarget, LastReload, Named, OverridesStatus, PreviewAnswer, StatsAnswer,
    StatusAnswer, TableAnswer, TableBackend, VipFlows, VipStats, WorkerFlows, WorkerStats, WorkerStatus,
};
use crate::engine::{state_name, Engine, ReloadError, Stats};
use crate::overrides::{BackendSelector, Scoped};
pub use crate::protocol::CtlRequest;

/// The longest request line taken.
const MAX_LINE: usize = 64 * 1024;

/// A request from the socket to the control thread, with where the answer goes.
#[derive(Debug)]
pub struct Request {
    /// The parsed request line.
    pub body: CtlRequest,
    /// The answer's way back.
    pub reply: Sender<Value>,
}

/// An error answer.
pub fn error(message: impl Into<String>) -> Value {
    answer(ErrorAnswer::new(message))
}

/// A typed answer as the socket sends it.
pub fn answer(a: impl serde::Serialize) -> Value {
    // The answers are plain structs of strings, numbers and maps with string keys.
    serde_json::to_value(a).unwrap_or_else(|e| json!({ "ok": false, "error": format!("the answer: {e}") }))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The answer to a change that went through: the generation, and what only a restart
/// applies.
pub fn applied(r: &crate::engine::ReloadReport) -> ChangeAnswer {
    let message = restart_message(r);
    // Nothing of what changed took effect: the operator must hear it as a failure.
    let failed = message.is_some() && r.only_restart_keys;
    ChangeAnswer {
        ok: !failed,
        generation: r.generation,
        build_ms: ms(r.build),
        swap_ms: ms(r.swap),
        restart_needed: r.restart_needed.clone(),
        warning: message.clone().filter(|_| !failed),
        error: message.filter(|_| failed),
    }
}

/// What a reload says of keys only a restart applies, if any changed: that the rest is
/// applied, or that nothing of the change is.
pub fn restart_message(r: &crate::engine::ReloadReport) -> Option<String> {
    if r.restart_needed.is_empty() {
        return None;
    }
    let what = if r.only_restart_keys { "nothing of the change is applied:" } else { "the rest is applied;" };
    Some(format!(
        "{what} restart needed for: {} (the running appliance keeps what it started with)",
        r.restart_needed.join(", ")
    ))
}

/// Answers `request` against `engine` (on the control thread).
pub fn handle(
    engine: &mut Engine,
    health: Option<&crate::health::HealthState>,
    request: &CtlRequest,
) -> Value {
    let scoped = |snap: &Snapshot, backend: &str, vip: &Option<String>| -> Result<Scoped, Value> {
        let backend = BackendSelector::parse(backend).map_err(error)?;
        let vip = match vip {
            None => None,
            Some(v) => {
                let v = &snap.vips()[find_vip(snap, v).map_err(error)?];
                Some(vip_name(v.addr, v.protocol, v.port))
            }
        };
        Ok(Scoped { backend, vip })
    };
    let reloaded = |r: Result<crate::engine::ReloadReport, ReloadError>| match r {
        Ok(r) => answer(applied(&r)),
        Err(e) => {
            let mut a = ErrorAnswer::new(e.to_string());
            if let ReloadError::Removals { removals, .. } = &e {
                a.refused = removals.clone();
            }
            answer(a)
        }
    };
    let result = (|| -> Result<Value, Value> {
        Ok(match request {
            CtlRequest::Status => answer(status(engine, health)),
            CtlRequest::Stats => answer(stats(&engine.stats())),
            CtlRequest::Reload { dry_run: true, .. } => match engine.reload_preview() {
                Ok(p) => answer(PreviewAnswer {
                    ok: true,
                    dry_run: true,
                    removals: p.removals,
                    restart_needed: p.restart_needed,
                    diff: crate::diff::to_text(&p.changes),
                }),
                Err(e) => error(e.to_string()),
            },
            CtlRequest::Reload { allow_removals, .. } => {
                reloaded(engine.reload_file(crate::engine::Reload { allow_removals: *allow_removals }))
            }
            CtlRequest::Drain { backend, vip, force } => {
                let b = scoped(engine.snapshot(), backend, vip)?;
                reloaded(engine.drain(b, *force))
            }
            CtlRequest::Undrain { backend, vip } => {
                let b = scoped(engine.snapshot(), backend, vip)?;
                reloaded(engine.undrain(b))
            }
            CtlRequest::Weight { backend, weight, vip, force } => {
                let b = scoped(engine.snapshot(), backend, vip)?;
                reloaded(engine.set_weight(b, *weight, *force))
            }
            CtlRequest::Table { vip } => match find_vip(engine.snapshot(), vip) {
                Ok(i) => answer(table(engine.snapshot(), i, false)),
                Err(e) => error(e),
            },
            CtlRequest::Flows { udp_window } => {
                let window = match udp_window {
                    None => engine.config().engine.udp_idle_timeout,
                    Some(w) => {
                        crate::config::parse_duration(w).map_err(|e| error(format!("udp_window: {e}")))?
                    }
                };
                answer(flows(engine, window))
            }
            CtlRequest::DrainAppliance | CtlRequest::UndrainAppliance => {
                error("this engine announces nothing (no [bgp])")
            }
        })
    })();
    result.unwrap_or_else(|e| e)
}

/// The `status` answer of the engine (the appliance adds its port, routes and probes).
pub fn status(engine: &Engine, health: Option<&crate::health::HealthState>) -> StatusAnswer {
    let s = engine.stats();
    let o = engine.overrides();
    let health = health
        .map(|h| {
            h.report()
                .into_iter()
                .map(|(t, st, pairs)| HealthTarget {
                    target: t.to_string(),
                    state: if st.up { "up" } else { "down" }.to_string(),
                    since_s: st.since.elapsed().as_secs(),
                    probes: st.probes,
                    last_error: st.last_error.clone(),
                    backends: pairs
                        .iter()
                        .map(|(v, b)| HealthBackend { vip: v.clone(), backend: b.to_string() })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    StatusAnswer {
        ok: true,
        config: engine.config().path.display().to_string(),
        pid: std::process::id(),
        generation: s.generation,
        uptime_s: (s.uptime * 1000.0).round() / 1000.0,
        reloads: engine.reloads(),
        last_reload: engine.last_reload().map(|r| LastReload {
            generation: r.generation,
            build_ms: ms(r.build),
            swap_ms: ms(r.swap),
        }),
        reload_error: engine.reload_error().map(str::to_string),
        restart_needed: engine.restart_needed().to_vec(),
        reloads_failed: engine.reload_counts().failed.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        state_file: engine.state_file().map(|s| s.path().display().to_string()),
        flow_numbers: FlowNumbers {
            given: engine.flow_numbers() as u64,
            limit: u64::from(vipgate_engine::flow::MAX_BACKEND) + 1,
        },
        workers: s
            .workers
            .iter()
            .map(|w| WorkerStatus {
                id: w.id,
                core: w.core,
                generation: w.generation,
                busy_percent: (w.busy_percent * 10.0).round() / 10.0,
                last_swap_us: (w.last_swap.as_secs_f64() * 1e7).round() / 10.0,
                rx_packets: w.counters.rx_packets,
            })
            .collect(),
        health,
        alarms: engine.alarms().to_vec(),
        overrides: OverridesStatus {
            drained: o.drained.iter().map(ToString::to_string).collect(),
            weights: Named(o.weights.iter().map(|(b, w)| (b.to_string(), *w)).collect()),
            appliance_drained: o.appliance_drained,
        },
        port_idle_s: None,
        bgp: None,
        health_probes_late: None,
        fleet: None,
    }
}

/// Counters by name, in [`vipgate_engine::counters::Counters::NAMES`] order.
pub fn named_counters(c: &vipgate_engine::counters::Counters) -> Named<u64> {
    Named(c.named().into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The `stats` answer.
pub fn stats(s: &Stats) -> StatsAnswer {
    let mut vips: Vec<VipStats> = Vec::new();
    for t in &s.traffic {
        if vips.last().is_none_or(|v| v.vip != t.vip) {
            vips.push(VipStats { vip: t.vip.clone(), packets: 0, bytes: 0, backends: Vec::new() });
        }
        let Some(v) = vips.last_mut() else { continue };
        v.packets += t.packets;
        v.bytes += t.bytes;
        v.backends.push(BackendStats {
            backend: t.backend.clone(),
            weight: t.weight,
            state: t.state.to_string(),
            packets: t.packets,
            bytes: t.bytes,
        });
    }
    // The port's own losses are drop reasons like the pipeline's: one accounting.
    let mut counters = named_counters(&s.total);
    let mut unseen = Named::default();
    for l in s.port_losses() {
        let name = format!("drop_{}", l.reason);
        match (l.count, &l.unseen) {
            (Some(n), _) => counters.set(&name, n),
            (None, why) => unseen.set(&name, why.clone().unwrap_or_default()),
        }
    }
    StatsAnswer {
        ok: true,
        generation: s.generation,
        uptime_s: (s.uptime * 1000.0).round() / 1000.0,
        counters,
        unseen,
        workers: s
            .workers
            .iter()
            .map(|w| WorkerStats { id: w.id, counters: named_counters(&w.counters) })
            .collect(),
        vips,
        port: s.port.clone(),
    }
}

/// A VIP as an operator names it: its name (`udp://203.0.113.10:8000`, `tcp://203.0.113.10`)
/// for exactly that VIP, or `ADDRESS[:PORT][/PROTOCOL]` (`203.0.113.10:8000/udp`,
/// `[2001:db8::10]:443/tcp`, a bare address) for the VIPs that fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    /// The exact name, when given as one.
    pub name: Option<String>,
    /// The address.
    pub addr: IpAddr,
    /// The port, if given.
    pub port: Option<u16>,
    /// The protocol, if given.
    pub protocol: Option<VipProtocol>,
}

/// A VIP's protocol by its name in configs and VIP names: tcp, udp or any.
pub fn protocol_named(p: &str) -> Result<VipProtocol, String> {
    match p {
        "tcp" => Ok(VipProtocol::Tcp),
        "udp" => Ok(VipProtocol::Udp),
        "any" => Ok(VipProtocol::Any),
        p => Err(format!("\"{p}\" is not a protocol: tcp, udp or any")),
    }
}

impl VipSpec {
    /// Parses a VIP as the operator writes it.
    pub fn parse(s: &str) -> Result<VipSpec, String> {
        let bad = || {
            format!("\"{s}\" is not a VIP: expected ADDRESS[:PORT][/PROTOCOL], e.g. 203.0.113.10:8000/udp, or a name like udp://203.0.113.10:8000")
        };
        let target_of = |t: &str| -> Result<(IpAddr, Option<u16>), String> {
            if let Ok(a) = t.parse::<IpAddr>() {
                return Ok((a, None));
            }
            if let Some(a) =
                t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|a| a.parse().ok())
            {
                return Ok((a, None));
            }
            t.parse::<std::net::SocketAddr>().map(|sa| (sa.ip(), Some(sa.port()))).map_err(|_| bad())
        };
        if let Some((proto, rest)) = s.split_once("://") {
            let protocol = protocol_named(proto)?;
            let (addr, port) = target_of(rest)?;
            return Ok(VipSpec {
                name: Some(vip_name(addr, protocol, port)),
                addr,
                port,
                protocol: Some(protocol),
            });
        }
        let (target, protocol) = match s.rsplit_once('/') {
            Some((t, p)) => (t, Some(protocol_named(p)?)),
            None => (s, None),
        };
        let (addr, port) = target_of(target)?;
        Ok(VipSpec { name: None, addr, port, protocol })
    }

    /// Whether the VIP (`addr`, `protocol`, `port`) is one this names.
    pub fn matches(&self, addr: IpAddr, protocol: VipProtocol, port: Option<u16>) -> bool {
        match &self.name {
            Some(n) => *n == vip_name(addr, protocol, port),
            None => {
                addr == self.addr
                    && (self.port.is_none() || self.port == port)
                    && self.protocol.is_none_or(|p| p == protocol)
            }
        }
    }
}

/// Finds a VIP by `udp://203.0.113.10:8000`, `203.0.113.10:8000/udp`, `203.0.113.10/tcp`,
/// `[2001:db8::10]:443/tcp`, or a bare address when only one VIP has it.
pub fn find_vip(snap: &Snapshot, s: &str) -> Result<usize, String> {
    let names: Vec<String> = snap.vips().iter().map(|v| vip_name(v.addr, v.protocol, v.port)).collect();
    let spec = VipSpec::parse(s)?;
    let found: Vec<usize> = snap
        .vips()
        .iter()
        .enumerate()
        .filter(|(_, v)| spec.matches(v.addr, v.protocol, v.port))
        .map(|(i, _)| i)
        .collect();
    match found.as_slice() {
        [i] => Ok(*i),
        [] => Err(format!("no VIP {s}; the VIPs are: {}", names.join(", "))),
        many => Err(format!(
            "{s} is more than one VIP: {}; name one",
            many.iter().map(|&i| names[i].as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The `table` answer: slots per backend, and with `ring` every slot's owner.
pub fn table(snap: &Snapshot, vip: usize, ring: bool) -> TableAnswer {
    let v = &snap.vips()[vip];
    let pool = &snap.pools()[v.pool as usize];
    let (counts, size, slots) = match pool.ring() {
        Some(r) => (r.slot_counts(), r.size(), ring.then(|| r.slots().to_vec())),
        None => (vec![0; pool.backends().len()], 0, None),
    };
    TableAnswer {
        ok: true,
        vip: vip_name(v.addr, v.protocol, v.port),
        generation: snap.generation(),
        size,
        backends: pool
            .backends()
            .iter()
            .zip(&counts)
            .map(|(b, &n)| TableBackend {
                backend: b.id.to_string(),
                weight: b.weight,
                state: state_name(b.state).to_string(),
                slots: n,
                share: if size == 0 { 0.0 } else { (f64::from(n) / f64::from(size) * 1e4).round() / 1e4 },
            })
            .collect(),
        ring: slots,
    }
}

fn flows(engine: &mut Engine, udp_window: Duration) -> FlowsAnswer {
    use std::collections::BTreeMap;
    let counts = engine.flows(Duration::from_secs(10), udp_window);
    let mut all = StateCounts::default();
    let mut by_number: BTreeMap<u32, StateCounts> = BTreeMap::new();
    for c in &counts {
        all.add(&c.states);
        for (number, n) in &c.per_backend {
            by_number.entry(*number).or_default().add(n);
        }
    }
    /// Flows by state, and whether the running tables still have any of them.
    #[derive(Default, Clone, Copy)]
    struct Tally(StateCounts, bool);
    impl Tally {
        fn add(&mut self, n: &StateCounts, present: bool) {
            self.0.add(n);
            self.1 |= present;
        }
        fn of(&self, backend: &str) -> BackendFlows {
            BackendFlows { backend: backend.to_string(), removed: !self.1, states: (&self.0).into() }
        }
    }
    // Per backend (over every VIP), and per VIP and backend. A pair the running tables no
    // longer have is marked removed; a number no pair has (none should) is named as such.
    let mut per_backend: BTreeMap<String, Tally> = BTreeMap::new();
    let mut per_vip: BTreeMap<String, (Tally, BTreeMap<String, Tally>)> = BTreeMap::new();
    for (number, n) in &by_number {
        let (vip, backend, present) = match engine.target(*number) {
            Some((t, present)) => (t.vip.to_string(), t.backend.to_string(), present),
            None => ("(unknown)".to_string(), format!("#{number} (unknown)"), false),
        };
        per_backend.entry(backend.clone()).or_default().add(n, present);
        let v = per_vip.entry(vip).or_default();
        v.0.add(n, present);
        v.1.entry(backend).or_default().add(n, present);
    }
    let answered = counts.len() == engine.workers();
    FlowsAnswer {
        ok: answered,
        error: (!answered).then(|| format!("{} of {} workers answered", counts.len(), engine.workers())),
        states: (&all).into(),
        total: all.total(),
        udp_window_s: udp_window.as_secs_f64(),
        workers: counts
            .iter()
            .map(|c| WorkerFlows {
                id: c.worker,
                live: c.total,
                capacity: c.capacity,
                states: (&c.states).into(),
            })
            .collect(),
        backends: per_backend.iter().map(|(b, t)| t.of(b)).collect(),
        vips: per_vip
            .iter()
            .map(|(v, (t, backends))| VipFlows {
                vip: v.clone(),
                removed: !t.1,
                states: (&t.0).into(),
                backends: backends.iter().map(|(b, t)| t.of(b)).collect(),
            })
            .collect(),
    }
}

/// Binds the operator socket at `path` with mode 0600, creating its directory. A socket
/// file left by a dead process is replaced; one that answers belongs to a running vipgate,
/// and binding fails.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{}: another vipgate is answering on this socket", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(listener)
}

/// Operator connections open at once; one more is answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take to send a whole request line (and how long it may sit
/// silent before one): a slow or silent client is closed.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Connections refused since start (over [`MAX_CONNECTIONS`], or no thread for them).
pub fn refused() -> u64 {
    REFUSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Serves the socket: a thread per connection, up to [`MAX_CONNECTIONS`], each request
/// passed to the control thread through `requests`. Runs until the process ends.
pub fn serve(listener: UnixListener, requests: Sender<Request>) {
    let gate = crate::listen::Gate::new(MAX_CONNECTIONS);
    crate::listen::accept_loop(
        "vipgate-ctl",
        || listener.accept().map(|(s, _)| s),
        &gate,
        &REFUSED,
        move |stream| connection(stream, &requests),
        |mut stream: UnixStream| {
            // Never wait on a client that is not reading.
            let _ = stream.set_nonblocking(true);
            let a = error(format!(
                "too many operator connections ({MAX_CONNECTIONS} open); try again when one has closed"
            ));
            let _ = writeln!(stream, "{a}");
        },
    );
}

fn connection(stream: UnixStream, requests: &Sender<Request>) {
    let mut out = &stream;
    let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
    let mut reader = BufReader::new(crate::listen::DeadlineReader::new(
        &stream,
        std::time::Instant::now() + REQUEST_DEADLINE,
        UnixStream::set_read_timeout,
    ));
    let mut line = Vec::new();
    loop {
        line.clear();
        reader.get_mut().set_deadline(std::time::Instant::now() + REQUEST_DEADLINE);
        match reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
                    let a = error(format!(
                        "no whole request within {} s; closing the connection",
                        REQUEST_DEADLINE.as_secs()
                    ));
                    let _ = writeln!(out, "{a}");
                }
                return;
            }
        }
        let answer = if line.len() > MAX_LINE {
            let a = error(format!("request longer than {MAX_LINE} bytes"));
            let _ = writeln!(out, "{a}");
            return;
        } else {
            match parse_request(&line) {
                Ok(body) => {
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    if requests.send(Request { body, reply: tx }).is_err() {
                        error("vipgate is stopping")
                    } else {
                        rx.recv_timeout(Duration::from_secs(60))
                            .unwrap_or_else(|_| error("no answer in 60 s"))
                    }
                }
                Err(answer) => answer,
            }
        };
        if writeln!(out, "{answer}").is_err() {
            return;
        }
    }
}

/// Flags of `vipgate ctl` that some commands take.
#[derive(Debug, Clone, Copy, Default)]
pub struct CtlFlags {
    /// `reload --allow-removals`.
    pub allow_removals: bool,
    /// `reload --dry-run`.
    pub dry_run: bool,
    /// `drain|weight --force`.
    pub force: bool,
}

/// Options of `vipgate ctl` that some commands take, beyond the flags.
#[derive(Debug, Clone, Default)]
pub struct CtlScope {
    /// `drain|undrain|weight --vip VIP`.
    pub vip: Option<String>,
    /// `flows --udp-window DURATION`.
    pub udp_window: Option<String>,
}

/// The request of `vipgate ctl CMD ARGS...`.
pub fn request_of(args: &[String], flags: CtlFlags, scope: &CtlScope) -> Result<CtlRequest, String> {
    let usage = "commands: status | stats | reload [--dry-run | --allow-removals] | drain BACKEND [--vip VIP] [--force] | undrain BACKEND [--vip VIP] | weight BACKEND N [--vip VIP] [--force] | table VIP | flows [--udp-window DURATION] | drain-appliance | undrain-appliance";
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = *a.first().ok_or_else(|| usage.to_string())?;
    if (flags.allow_removals || flags.dry_run) && cmd != "reload" {
        return Err(format!("--allow-removals and --dry-run are flags of reload, not of {cmd}"));
    }
    if flags.force && cmd != "drain" && cmd != "weight" {
        return Err(format!("--force is a flag of drain and weight, not of {cmd}"));
    }
    if scope.udp_window.is_some() && cmd != "flows" {
        return Err(format!("--udp-window is an option of flows, not of {cmd}"));
    }
    if scope.vip.is_some() && !matches!(cmd, "drain" | "undrain" | "weight") {
        return Err(format!("--vip is an option of drain, undrain and weight, not of {cmd}"));
    }
    let backend = |b: &str| b.to_string();
    let vip = scope.vip.clone();
    Ok(match a.as_slice() {
        ["status"] => CtlRequest::Status,
        ["stats"] => CtlRequest::Stats,
        ["reload"] => {
            if flags.allow_removals && flags.dry_run {
                return Err("--dry-run changes nothing: give it without --allow-removals".into());
            }
            CtlRequest::Reload { dry_run: flags.dry_run, allow_removals: flags.allow_removals }
        }
        ["flows"] => {
            if let Some(w) = &scope.udp_window {
                crate::config::parse_duration(w).map_err(|e| format!("--udp-window: {e}"))?;
            }
            CtlRequest::Flows { udp_window: scope.udp_window.clone() }
        }
        ["drain-appliance"] => CtlRequest::DrainAppliance,
        ["undrain-appliance"] => CtlRequest::UndrainAppliance,
        ["drain", b] => CtlRequest::Drain { backend: backend(b), vip, force: flags.force },
        ["undrain", b] => CtlRequest::Undrain { backend: backend(b), vip },
        ["weight", b, n] => {
            let weight: u32 = n.parse().map_err(|_| format!("weight \"{n}\" is not a whole number"))?;
            CtlRequest::Weight { backend: backend(b), weight, vip, force: flags.force }
        }
        ["table", v] => CtlRequest::Table { vip: v.to_string() },
        _ => return Err(format!("\"{cmd}\" with {} argument(s) is not a command; {usage}", a.len() - 1)),
    })
}

/// One request line as the socket receives it: a request, or the error answer.
pub fn parse_request(line: &[u8]) -> Result<CtlRequest, Value> {
    if line.len() > MAX_LINE {
        return Err(error(format!("request longer than {MAX_LINE} bytes")));
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(body) if body.is_object() => CtlRequest::from_json(&body).map_err(error),
        Ok(_) => Err(error("a request is a JSON object, e.g. {\"cmd\":\"status\"}")),
        Err(e) => Err(error(format!("not JSON: {e}"))),
    }
}

/// Sends one request to the socket at `path` and returns the answer.
pub fn call(path: &Path, request: &Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(path)
        .map_err(|e| format!("{}: {e} (is vipgate running? see [control] socket)", path.display()))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(70)));
    writeln!(stream, "{request}").map_err(|e| format!("{}: {e}", path.display()))?;
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(0) => {
            return Err(format!(
                "{}: the appliance closed the connection before answering (did it stop? see its log)",
                path.display()
            ))
        }
        Ok(_) if !line.ends_with('\n') => {
            return Err(format!(
            "{}: the appliance closed the connection in the middle of its answer (did it stop? see its log)",
            path.display()
        ))
        }
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            return Err(format!("{}: no answer within 70 s", path.display()))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    serde_json::from_str(&line).map_err(|e| format!("{}: the answer is not JSON: {e}", path.display()))
}

/// The socket of the appliance running `config`: the file's `[control] socket` when
/// something answers there; else the socket that the appliance running this file recorded
/// in its state file (the file's `[control] state`, then the default), with a note for the
/// operator saying so; else the socket that the process running this file listens on
/// (from /proc). `Err` carries the config's errors when it cannot be read and nothing
/// else finds the appliance.
pub fn find_socket(config: &Path) -> Result<(PathBuf, Option<String>), crate::config::ConfigErrors> {
    use crate::config::{Config, DEFAULT_STATE};
    let loaded = Config::load(config);
    let (named, mut states) = match &loaded {
        Ok(c) => (Some(c.control.socket.clone()), vec![c.control.state.clone()]),
        Err(_) => (None, Vec::new()),
    };
    states.push(PathBuf::from(DEFAULT_STATE));
    if let Some(n) = &named {
        if UnixStream::connect(n).is_ok() {
            return Ok((n.clone(), None));
        }
    }
    let why = || match &named {
        Some(n) => format!("{} names the socket {}, where nothing answers", config.display(), n.display()),
        None => format!("{} cannot be read", config.display()),
    };
    for state in &states {
        let Some(s) = crate::state::recorded_socket(state, config) else { continue };
        if Some(&s) != named.as_ref() && UnixStream::connect(&s).is_ok() {
            let note = format!(
                "{}; the appliance running it answers on {} (recorded in {}): it keeps the socket it started with until a restart",
                why(),
                s.display(),
                state.display()
            );
            return Ok((s, Some(note)));
        }
    }
    // No state file knows it (it may not be writable): look for the process itself.
    if let Some((pid, s)) = socket_by_process(config) {
        if Some(&s) != named.as_ref() && UnixStream::connect(&s).is_ok() {
            let note = format!(
                "{}; the appliance running it (process {pid}) answers on {}: it keeps the socket it started with until a restart",
                why(),
                s.display()
            );
            return Ok((s, Some(note)));
        }
    }
    loaded.map(|c| (c.control.socket, None))
}

/// The process running `vipgate run --config CONFIG` (the same file, however named) and
/// the Unix socket it listens on, from /proc: its command line, its descriptors, and the
/// kernel's table of Unix sockets. `None` where /proc does not tell (another user's
/// process, another network namespace).
fn socket_by_process(config: &Path) -> Option<(u32, PathBuf)> {
    let key = crate::state::key_of(config);
    let mut listening: std::collections::HashMap<u64, PathBuf> = std::collections::HashMap::new();
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    for line in table.lines().skip(1) {
        // Num RefCount Protocol Flags Type St Inode Path
        let f: Vec<&str> = line.split_whitespace().collect();
        let listens =
            f.get(3).and_then(|x| u32::from_str_radix(x, 16).ok()).is_some_and(|x| x & 0x1_0000 != 0);
        if let (true, Some(inode), Some(path)) = (listens, f.get(6).and_then(|i| i.parse().ok()), f.get(7)) {
            if path.starts_with('/') {
                listening.insert(inode, PathBuf::from(path));
            }
        }
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if !args.iter().any(|a| *a == b"run") {
            continue;
        }
        let named = args.windows(2).find_map(|w| {
            (w[0] == b"--config" || w[0] == b"-c").then(|| String::from_utf8_lossy(w[1]).into_owned())
        });
        let named = named.or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix(b"--config=").map(|p| String::from_utf8_lossy(p).into_owned()))
        });
        let Some(named) = named else { continue };
        let mut path = PathBuf::from(&named);
        if path.is_relative() {
            let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else { continue };
            path = cwd.join(path);
        }
        if crate::state::key_of(&path) != key {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let t = target.to_string_lossy();
            let inode =
                t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')).and_then(|i| i.parse().ok());
            if let Some(s) = inode.and_then(|i: u64| listening.get(&i)) {
                return Some((pid, s.clone()));
            }
        }
    }
    None
}

/// An answer for people: the typed answer's text, or the JSON where it is not one.
pub fn to_text(cmd: &str, a: &Value) -> String {
    fn typed<T: serde::de::DeserializeOwned>(a: &Value, text: impl Fn(&T) -> String) -> String {
        match T::deserialize(a) {
            Ok(t) => text(&t),
            Err(_) => format!("{a}\n"),
        }
    }
    match cmd {
        "status" => typed(a, StatusAnswer::to_text),
        "stats" => typed(a, StatsAnswer::to_text),
        "drain-appliance" | "undrain-appliance" => typed(a, ApplianceAnswer::to_text),
        "reload" if a["dry_run"] == true => typed(a, PreviewAnswer::to_text),
        "reload" | "drain" | "undrain" | "weight" => typed(a, ChangeAnswer::to_text),
        "table" => typed(a, TableAnswer::to_text),
        "flows" => typed(a, FlowsAnswer::to_text),
        _ => format!("{a}\n"),
    }
}
