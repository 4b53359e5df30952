//! Backend health checks, off the data path.
//!
//! A VIP's `health = { kind = "tcp" | "http" | "udp", ... }` has each of its backends
//! probed: a TCP connection accepted, an HTTP status, or a UDP reply. One probe runs per
//! (address, port, check) however many VIPs share it. A scheduler thread keeps every
//! probe's next time, jittered by ±10% of its interval (and the first spread over a whole
//! interval) so that a thousand backends are not probed in one burst. Each due probe goes
//! to a prober thread that is free at once: the pool grows when every prober is busy
//! (with hanging targets, say), so that no target waits on another's timeout. A probe
//! that starts late, or is skipped because the pool is at its cap, is counted
//! (`vipgate_health_probes_late_total`).
//!
//! Results go to the control thread as [`ProbeResult`]s; [`HealthState`] turns them into
//! up/down transitions with the check's rise and fall counts. A probe that could not be
//! made at all (no descriptor, no buffer: the appliance's own trouble, not the backend's)
//! is `Unknown`, and counts neither way.
//!
//! A backend starts up: until it has failed `fall` probes in a row it is trusted as
//! configured. Its state outlives reloads as long as what is probed (address, port, kind,
//! request) stays the same: a change of `interval`, `timeout`, `rise` or `fall` keeps it.
//! A backend whose probe changed starts with the state it had under the old probe, and
//! moves only as the new probe's results say (a backend that was down stays down until
//! the new probe passes `rise` times).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use vipgate_engine::maglev::BackendId;
use vipgate_engine::table::vip_name;

use crate::config::{Config, HealthCheck, ProbeKind};

/// A backend as one VIP has it: (VIP name, backend).
pub type VipBackend = (String, BackendId);

/// One thing to probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Where.
    pub addr: SocketAddr,
    /// How.
    pub check: HealthCheck,
}

impl core::fmt::Display for Target {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = match &self.check.kind {
            ProbeKind::Tcp => "tcp".to_string(),
            ProbeKind::Http { path, .. } => format!("http {path}"),
            ProbeKind::Udp { .. } => "udp".to_string(),
        };
        write!(f, "{kind} {}", self.addr)
    }
}

impl Target {
    /// What is probed, without the timing: two targets that differ only in `interval`,
    /// `timeout`, `rise` or `fall` probe the same thing.
    fn probed(&self) -> (SocketAddr, &ProbeKind) {
        (self.addr, &self.check.kind)
    }
}

/// A probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered as expected.
    Up,
    /// The backend failed: what happened ("connection refused", "timed out after 1s",
    /// "HTTP 500, expected 200").
    Down(String),
    /// The probe could not be made (no descriptor or buffer on this host): says nothing
    /// about the backend.
    Unknown(String),
}

/// A probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// What was probed.
    pub target: Target,
    /// What it found.
    pub outcome: Outcome,
}

/// How long, in words an operator reads: `1s`, `1.5s`, `300ms`.
fn span(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Whether an error is this host's shortage rather than the backend's failure.
fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// An I/O error of a probe, said plainly.
fn failure(e: &std::io::Error, timeout: Duration, step: &str) -> Outcome {
    use std::io::ErrorKind as K;
    if is_local_shortage(e) {
        return Outcome::Unknown(format!("cannot {step}: {e}"));
    }
    Outcome::Down(match e.kind() {
        K::TimedOut | K::WouldBlock => format!("timed out after {} ({step})", span(timeout)),
        K::ConnectionRefused => "connection refused".to_string(),
        K::ConnectionReset => format!("connection reset ({step})"),
        K::HostUnreachable => "host unreachable".to_string(),
        K::NetworkUnreachable => "network unreachable".to_string(),
        _ => format!("{step}: {e}"),
    })
}

/// Every target of `config`, and for each the (VIP name, backend) pairs it speaks for.
pub fn targets(config: &Config) -> BTreeMap<Target, Vec<(String, BackendId)>> {
    let mut out: BTreeMap<Target, Vec<(String, BackendId)>> = BTreeMap::new();
    for v in &config.vips {
        let Some(check) = &v.health else { continue };
        let name = vip_name(v.addr, v.protocol, v.port);
        for b in &v.backends {
            let Some(port) = check.port.or(b.id.port).or(v.port) else { continue };
            let target = Target { addr: SocketAddr::new(b.id.addr, port), check: check.clone() };
            out.entry(target).or_default().push((name.clone(), b.id));
        }
    }
    out
}

/// Runs one probe, within its timeout in all.
pub fn probe(target: &Target) -> Outcome {
    match probe_steps(target) {
        Ok(()) => Outcome::Up,
        Err(o) => o,
    }
}

fn probe_steps(target: &Target) -> Result<(), Outcome> {
    let timeout = target.check.timeout;
    let deadline = Instant::now() + timeout;
    let left = || -> Result<Duration, Outcome> {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(Outcome::Down(format!("timed out after {}", span(timeout))))
        } else {
            Ok(d)
        }
    };
    let fail = |step: &'static str| move |e: std::io::Error| failure(&e, timeout, step);
    match &target.check.kind {
        ProbeKind::Tcp => {
            TcpStream::connect_timeout(&target.addr, timeout).map(drop).map_err(fail("connect"))
        }
        ProbeKind::Http { path, status } => {
            let mut s = TcpStream::connect_timeout(&target.addr, timeout).map_err(fail("connect"))?;
            s.set_write_timeout(Some(left()?)).map_err(fail("send the request"))?;
            let host = match target.addr.ip() {
                IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            };
            let request =
                format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vipgate-health\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes()).map_err(fail("send the request"))?;
            let mut head = [0u8; 64];
            let mut n = 0;
            while n < 12 {
                s.set_read_timeout(Some(left()?)).map_err(fail("read the answer"))?;
                match s.read(&mut head[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Err(failure(&e, timeout, "read the answer")),
                }
            }
            let line = String::from_utf8_lossy(&head[..n]);
            let got = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
            match got {
                Some(c) if c == *status => Ok(()),
                Some(c) => Err(Outcome::Down(format!("HTTP {c}, expected {status}"))),
                None if n == 0 => Err(Outcome::Down("closed without an answer".to_string())),
                None => Err(Outcome::Down("the answer is not HTTP".to_string())),
            }
        }
        ProbeKind::Udp { send, expect } => {
            let local: SocketAddr =
                if target.addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
            let sock = UdpSocket::bind(local).map_err(fail("open a socket"))?;
            sock.connect(target.addr).map_err(fail("connect"))?;
            sock.send(send.as_bytes()).map_err(fail("send"))?;
            sock.set_read_timeout(Some(left()?)).map_err(fail("wait for the reply"))?;
            let mut buf = [0u8; 1500];
            let n = sock.recv(&mut buf).map_err(|e| match e.kind() {
                // An ICMP port unreachable came back.
                std::io::ErrorKind::ConnectionRefused => {
                    Outcome::Down("connection refused (ICMP port unreachable)".to_string())
                }
                _ => failure(&e, timeout, "no reply"),
            })?;
            match expect {
                Some(x) if x.as_bytes() != &buf[..n] => Err(Outcome::Down(format!(
                    "reply {:?}, expected {x:?}",
                    String::from_utf8_lossy(&buf[..n])
                ))),
                _ => Ok(()),
            }
        }
    }
}

/// A small deterministic generator for the schedule's jitter (xorshift64*).
fn jitter(state: &mut u64, span: Duration) -> Duration {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    span.mul_f64(r as f64 / (1u64 << 53) as f64)
}

/// The most prober threads: probes at once. A target has at most one probe under way
/// (its timeout is at most its interval), so this many hanging targets are needed before
/// one probe waits on another.
const MAX_PROBERS: usize = 512;

/// A probe that starts this much after its time counts as late.
const LATE_AFTER: Duration = Duration::from_millis(250);

/// The running probes.
#[derive(Debug)]
pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct Job {
    target: Target,
    due: Instant,
}

/// The prober threads: as many as the probes under way need, up to [`MAX_PROBERS`].
struct Pool {
    jobs: Sender<Job>,
    jobs_rx: Receiver<Job>,
    results: Sender<ProbeResult>,
    /// Probes handed out and not finished.
    busy: Arc<AtomicUsize>,
    threads: usize,
    late: Arc<AtomicU64>,
}

impl Pool {
    /// Hands `job` to a free prober, starting one when none is free; `false` when the
    /// pool is at its cap (the probe is skipped).
    fn run(&mut self, job: Job) -> bool {
        if self.busy.load(Ordering::Acquire) >= self.threads
            && (self.threads >= MAX_PROBERS || self.spawn().is_err())
        {
            return false;
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.jobs.send(job).is_ok()
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let (jobs, results, busy, late) =
            (self.jobs_rx.clone(), self.results.clone(), Arc::clone(&self.busy), Arc::clone(&self.late));
        std::thread::Builder::new()
            .name(format!("vipgate-probe{}", self.threads))
            .stack_size(256 * 1024)
            .spawn(move || {
                for job in jobs.iter() {
                    if job.due.elapsed() > LATE_AFTER {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    let outcome = probe(&job.target);
                    busy.fetch_sub(1, Ordering::AcqRel);
                    if results.send(ProbeResult { target: job.target, outcome }).is_err() {
                        return;
                    }
                }
            })?;
        self.threads += 1;
        Ok(())
    }
}

impl Prober {
    /// Starts probing `targets`; results go to `results`, and probes that start late or
    /// are skipped are counted in `late`.
    pub fn start(
        targets: Vec<Target>,
        results: Sender<ProbeResult>,
        late: Arc<AtomicU64>,
    ) -> std::io::Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let mut pool = Pool { jobs, jobs_rx, results, busy: Arc::new(AtomicUsize::new(0)), threads: 0, late };
        pool.spawn()?;
        let s = Arc::clone(&stop);
        let scheduler = std::thread::Builder::new().name("vipgate-health".into()).spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ targets.len() as u64;
            let start = Instant::now();
            let mut due: BinaryHeap<Reverse<(Instant, usize)>> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| Reverse((start + jitter(&mut seed, t.check.interval), i)))
                .collect();
            let mut skipped = 0u64;
            while !s.load(Ordering::Relaxed) {
                let Some(&Reverse((at, i))) = due.peek() else { return };
                let now = Instant::now();
                if at > now {
                    std::thread::sleep((at - now).min(Duration::from_millis(100)));
                    continue;
                }
                due.pop();
                let t = &targets[i];
                if !pool.run(Job { target: t.clone(), due: at }) {
                    pool.late.fetch_add(1, Ordering::Relaxed);
                    skipped += 1;
                    if skipped.is_power_of_two() {
                        log::warn!(
                            "health checks: {skipped} probe(s) skipped so far, {MAX_PROBERS} probes under way at once (the cap); {t} skipped now"
                        );
                    }
                }
                let interval = t.check.interval;
                let next = interval.mul_f64(0.9) + jitter(&mut seed, interval.mul_f64(0.2));
                let from = now.checked_sub(interval).map_or(at, |n| at.max(n));
                due.push(Reverse((from + next, i)));
            }
        })?;
        Ok(Prober { stop, threads: vec![scheduler] })
    }

    /// Stops the scheduler; probes under way finish in the background.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.threads);
    }
}

/// One target's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    /// Whether it counts as up.
    pub up: bool,
    /// Successes in a row.
    pub successes: u32,
    /// Failures in a row.
    pub failures: u32,
    /// When it last changed between up and down.
    pub since: Instant,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// Probes answered so far.
    pub probes: u64,
    /// Probes that could not be made (counted neither way).
    pub unknown: u64,
}

impl TargetState {
    fn fresh(up: bool) -> TargetState {
        TargetState {
            up,
            successes: 0,
            failures: 0,
            since: Instant::now(),
            last_error: None,
            probes: 0,
            unknown: 0,
        }
    }
}

/// The health of every target, as the control thread keeps it.
#[derive(Debug, Default)]
pub struct HealthState {
    states: BTreeMap<Target, TargetState>,
    speaks_for: BTreeMap<Target, Vec<(String, BackendId)>>,
}

impl HealthState {
    /// Takes the targets of `config` and returns them (to probe). Targets that stay keep
    /// their state. A target whose timing alone changed (interval, timeout, rise, fall)
    /// keeps the state of the one it replaces; a target whose probe changed starts with
    /// the state its backends had (down when any (VIP, backend) it speaks for was down);
    /// a new backend starts up. Gone targets are forgotten.
    pub fn set_config(&mut self, config: &Config) -> Vec<Target> {
        let speaks_for = targets(config);
        let old_states = std::mem::take(&mut self.states);
        let old_down: BTreeSet<(String, BackendId)> = old_states
            .iter()
            .filter(|(_, s)| !s.up)
            .flat_map(|(t, _)| self.speaks_for.get(t).into_iter().flatten().cloned())
            .collect();
        for (t, pairs) in &speaks_for {
            let state = if let Some(s) = old_states.get(t) {
                s.clone()
            } else if let Some((old, s)) = old_states.iter().find(|(o, _)| o.probed() == t.probed()) {
                log::info!(
                    "health: {t}: its check's timing changed ({}); it stays {}",
                    timing_change(&old.check, &t.check),
                    if s.up { "up" } else { "down" }
                );
                TargetState { successes: 0, failures: 0, ..s.clone() }
            } else if pairs.iter().any(|p| old_down.contains(p)) {
                log::warn!(
                    "health: {t}: a new probe for a backend that was down; it stays down until it passes {} probe(s)",
                    t.check.rise
                );
                TargetState::fresh(false)
            } else {
                TargetState::fresh(true)
            };
            self.states.insert(t.clone(), state);
        }
        self.speaks_for = speaks_for;
        self.speaks_for.keys().cloned().collect()
    }

    /// Takes a probe's result; returns `Some(up)` when the target changed state.
    pub fn take(&mut self, r: &ProbeResult) -> Option<bool> {
        let s = self.states.get_mut(&r.target)?;
        match &r.outcome {
            Outcome::Up => {
                s.probes += 1;
                s.successes += 1;
                s.failures = 0;
            }
            Outcome::Down(e) => {
                s.probes += 1;
                s.failures += 1;
                s.successes = 0;
                s.last_error = Some(e.clone());
            }
            Outcome::Unknown(e) => {
                s.unknown += 1;
                if s.unknown.is_power_of_two() {
                    log::warn!("health: {}: a probe could not be made ({e}); the state stays", r.target);
                }
                return None;
            }
        }
        let check = &r.target.check;
        let flip = (s.up && s.failures >= check.fall) || (!s.up && s.successes >= check.rise);
        if flip {
            s.up = !s.up;
            s.since = Instant::now();
            return Some(s.up);
        }
        None
    }

    /// The (VIP, backend) pairs whose target is down.
    pub fn down(&self) -> BTreeSet<(String, BackendId)> {
        self.states
            .iter()
            .filter(|(_, s)| !s.up)
            .flat_map(|(t, _)| self.speaks_for.get(t).into_iter().flatten().cloned())
            .collect()
    }

    /// Every target with its state and the pairs it speaks for.
    pub fn report(&self) -> Vec<(&Target, &TargetState, &[VipBackend])> {
        self.states
            .iter()
            .map(|(t, s)| (t, s, self.speaks_for.get(t).map_or(&[][..], Vec::as_slice)))
            .collect()
    }

    /// Probes that could not be made, over every target.
    pub fn unknown(&self) -> u64 {
        self.states.values().map(|s| s.unknown).sum()
    }
}

/// What changed between two checks that probe the same thing, for the log.
fn timing_change(a: &HealthCheck, b: &HealthCheck) -> String {
    let mut out = Vec::new();
    if a.interval != b.interval {
        out.push(format!("interval {} -> {}", span(a.interval), span(b.interval)));
    }
    if a.timeout != b.timeout {
        out.push(format!("timeout {} -> {}", span(a.timeout), span(b.timeout)));
    }
    if a.rise != b.rise {
        out.push(format!("rise {} -> {}", a.rise, b.rise));
    }
    if a.fall != b.fall {
        out.push(format!("fall {} -> {}", a.fall, b.fall));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check(kind: ProbeKind) -> HealthCheck {
        HealthCheck {
            kind,
            port: None,
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
            rise: 2,
            fall: 2,
        }
    }

    #[test]
    fn tcp_and_http_probes_against_real_servers() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for (i, s) in l.incoming().take(3).enumerate() {
                let mut s = s.unwrap();
                // Read the whole request (the TCP probe sends none: it just closes).
                let mut req = Vec::new();
                let mut chunk = [0u8; 512];
                while !req.ends_with(b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
                let status = if i == 2 { "503 Service Unavailable" } else { "200 OK" };
                let _ = write!(s, "HTTP/1.0 {status}\r\nContent-Length: 0\r\n\r\n");
            }
        });
        assert_eq!(probe(&Target { addr, check: check(ProbeKind::Tcp) }), Outcome::Up);
        let http = Target { addr, check: check(ProbeKind::Http { path: "/health".into(), status: 200 }) };
        assert_eq!(probe(&http), Outcome::Up);
        assert_eq!(probe(&http), Outcome::Down("HTTP 503, expected 200".into()));
        server.join().unwrap();
        // Nobody listens any more.
        assert_eq!(
            probe(&Target { addr, check: check(ProbeKind::Tcp) }),
            Outcome::Down("connection refused".into())
        );
    }

    #[test]
    fn udp_probe_wants_the_expected_reply() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        let (done, wait) = crossbeam_channel::bounded::<()>(1);
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for reply in [&b"pong"[..], b"nope"] {
                let (_, from) = s.recv_from(&mut buf).unwrap();
                s.send_to(reply, from).unwrap();
            }
            // Listening, and silent, until the test is done; then closed.
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        let t = Target {
            addr,
            check: check(ProbeKind::Udp { send: "ping".into(), expect: Some("pong".into()) }),
        };
        assert_eq!(probe(&t), Outcome::Up);
        assert!(matches!(probe(&t), Outcome::Down(e) if e.contains("expected \"pong\"")));
        assert_eq!(probe(&t), Outcome::Down("timed out after 300ms (no reply)".into()));
        done.send(()).unwrap();
        server.join().unwrap();
        assert_eq!(probe(&t), Outcome::Down("connection refused (ICMP port unreachable)".into()));
    }

    #[test]
    fn rise_and_fall_counts_decide_transitions() {
        let t = Target { addr: "192.0.2.11:80".parse().unwrap(), check: check(ProbeKind::Tcp) };
        let mut h = HealthState::default();
        h.states.insert(t.clone(), TargetState::fresh(true));
        let bad = ProbeResult { target: t.clone(), outcome: Outcome::Down("refused".into()) };
        let good = ProbeResult { target: t.clone(), outcome: Outcome::Up };
        let unknown = ProbeResult { target: t.clone(), outcome: Outcome::Unknown("EMFILE".into()) };
        assert_eq!(h.take(&bad), None);
        assert_eq!(h.take(&good), None, "a success in between resets the count");
        assert_eq!(h.take(&bad), None);
        assert_eq!(h.take(&unknown), None, "a probe that could not be made counts neither way");
        assert_eq!(h.take(&bad), Some(false), "fall = 2");
        assert_eq!(h.take(&good), None);
        assert_eq!(h.take(&good), Some(true), "rise = 2");
    }
}
