//! Backend health checks, off the data path.
//!
//! A VIP's `health = { kind = "tcp" | "http" | "udp", ... }` has each of its backends
//! probed: a TCP connection accepted, an HTTP status, or a UDP reply. One probe runs per
//! (address, port, check) however many VIPs share it. A scheduler thread keeps every
//! probe's next time, jittered by ±10% of its interval (and the first spread over a whole
//! interval) so that a thousand backends are not probed in one burst; a few prober
//! threads run the probes, each bounded by its timeout. Results go to the control thread
//! as [`ProbeResult`]s; [`HealthState`] turns them into up/down transitions with the
//! check's rise and fall counts. A backend starts up: until it has failed `fall` probes in
//! a row it is trusted as configured.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// What was probed.
    pub target: Target,
    /// `Ok`, or what went wrong.
    pub outcome: Result<(), String>,
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

/// Runs one probe.
pub fn probe(target: &Target) -> Result<(), String> {
    let timeout = target.check.timeout;
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    match &target.check.kind {
        ProbeKind::Tcp => {
            TcpStream::connect_timeout(&target.addr, timeout).map(drop).map_err(|e| e.to_string())
        }
        ProbeKind::Http { path, status } => {
            let mut s = TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
            let host = match target.addr.ip() {
                IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            };
            let request =
                format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vipgate-health\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
            let mut head = [0u8; 64];
            let mut n = 0;
            while n < 12 {
                s.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
                match s.read(&mut head[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Err(e.to_string()),
                }
            }
            let line = String::from_utf8_lossy(&head[..n]);
            let got = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
            match got {
                Some(c) if c == *status => Ok(()),
                Some(c) => Err(format!("HTTP status {c}, expected {status}")),
                None => Err("no HTTP status line".to_string()),
            }
        }
        ProbeKind::Udp { send, expect } => {
            let local: SocketAddr =
                if target.addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
            let sock = UdpSocket::bind(local).map_err(|e| e.to_string())?;
            sock.connect(target.addr).map_err(|e| e.to_string())?;
            sock.send(send.as_bytes()).map_err(|e| e.to_string())?;
            sock.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 1500];
            let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
            match expect {
                Some(x) if x.as_bytes() != &buf[..n] => {
                    Err(format!("reply {:?}, expected {x:?}", String::from_utf8_lossy(&buf[..n])))
                }
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

/// How many probes may run at once.
const PROBERS: usize = 8;

/// The running probes.
#[derive(Debug)]
pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `targets`; results go to `results`.
    pub fn start(targets: Vec<Target>, results: Sender<ProbeResult>) -> std::io::Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs_tx, jobs_rx): (Sender<Target>, Receiver<Target>) = crossbeam_channel::bounded(4 * PROBERS);
        let mut threads = Vec::new();
        for i in 0..PROBERS.min(targets.len().max(1)) {
            let (jobs, results) = (jobs_rx.clone(), results.clone());
            threads.push(std::thread::Builder::new().name(format!("vipgate-probe{i}")).spawn(move || {
                for target in jobs.iter() {
                    let outcome = probe(&target);
                    if results.send(ProbeResult { target, outcome }).is_err() {
                        return;
                    }
                }
            })?);
        }
        let s = Arc::clone(&stop);
        threads.push(std::thread::Builder::new().name("vipgate-health".into()).spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ targets.len() as u64;
            let start = Instant::now();
            let mut due: BinaryHeap<Reverse<(Instant, usize)>> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| Reverse((start + jitter(&mut seed, t.check.interval), i)))
                .collect();
            while !s.load(Ordering::Relaxed) {
                let Some(&Reverse((at, i))) = due.peek() else { return };
                let now = Instant::now();
                if at > now {
                    std::thread::sleep((at - now).min(Duration::from_millis(100)));
                    continue;
                }
                due.pop();
                let t = &targets[i];
                // A full queue means the probers are behind: skip this round of this one.
                let _ = jobs_tx.try_send(t.clone());
                let interval = t.check.interval;
                let next = interval.mul_f64(0.9) + jitter(&mut seed, interval.mul_f64(0.2));
                due.push(Reverse((now + next, i)));
            }
        })?);
        Ok(Prober { stop, threads })
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
}

/// The health of every target, as the control thread keeps it.
#[derive(Debug, Default)]
pub struct HealthState {
    states: BTreeMap<Target, TargetState>,
    speaks_for: BTreeMap<Target, Vec<(String, BackendId)>>,
}

impl HealthState {
    /// Takes the targets of `config`: new ones start up, gone ones are forgotten, the
    /// others keep their state. Returns the targets to probe.
    pub fn set_config(&mut self, config: &Config) -> Vec<Target> {
        self.speaks_for = targets(config);
        self.states.retain(|t, _| self.speaks_for.contains_key(t));
        for t in self.speaks_for.keys() {
            self.states.entry(t.clone()).or_insert_with(|| TargetState {
                up: true,
                successes: 0,
                failures: 0,
                since: Instant::now(),
                last_error: None,
                probes: 0,
            });
        }
        self.speaks_for.keys().cloned().collect()
    }

    /// Takes a probe's result; returns `Some(up)` when the target changed state.
    pub fn take(&mut self, r: &ProbeResult) -> Option<bool> {
        let s = self.states.get_mut(&r.target)?;
        s.probes += 1;
        match &r.outcome {
            Ok(()) => {
                s.successes += 1;
                s.failures = 0;
            }
            Err(e) => {
                s.failures += 1;
                s.successes = 0;
                s.last_error = Some(e.clone());
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
        assert_eq!(probe(&Target { addr, check: check(ProbeKind::Tcp) }), Ok(()));
        let http = Target { addr, check: check(ProbeKind::Http { path: "/health".into(), status: 200 }) };
        assert_eq!(probe(&http), Ok(()));
        assert_eq!(probe(&http), Err("HTTP status 503, expected 200".into()));
        server.join().unwrap();
        // Nobody listens any more.
        assert!(probe(&Target { addr, check: check(ProbeKind::Tcp) }).is_err());
    }

    #[test]
    fn udp_probe_wants_the_expected_reply() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for reply in [&b"pong"[..], b"nope"] {
                let (_, from) = s.recv_from(&mut buf).unwrap();
                s.send_to(reply, from).unwrap();
            }
        });
        let t = Target {
            addr,
            check: check(ProbeKind::Udp { send: "ping".into(), expect: Some("pong".into()) }),
        };
        assert_eq!(probe(&t), Ok(()));
        assert!(probe(&t).unwrap_err().contains("expected \"pong\""));
        assert!(probe(&t).is_err(), "no reply within the timeout");
    }

    #[test]
    fn rise_and_fall_counts_decide_transitions() {
        let t = Target { addr: "192.0.2.11:80".parse().unwrap(), check: check(ProbeKind::Tcp) };
        let mut h = HealthState::default();
        h.states.insert(
            t.clone(),
            TargetState {
                up: true,
                successes: 0,
                failures: 0,
                since: Instant::now(),
                last_error: None,
                probes: 0,
            },
        );
        let bad = ProbeResult { target: t.clone(), outcome: Err("refused".into()) };
        let good = ProbeResult { target: t.clone(), outcome: Ok(()) };
        assert_eq!(h.take(&bad), None);
        assert_eq!(h.take(&good), None, "a success in between resets the count");
        assert_eq!(h.take(&bad), None);
        assert_eq!(h.take(&bad), Some(false), "fall = 2");
        assert_eq!(h.take(&good), None);
        assert_eq!(h.take(&good), Some(true), "rise = 2");
    }
}
