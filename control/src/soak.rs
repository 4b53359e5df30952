//! Soak under churn: the synth driver at full speed on real workers while the control
//! side reloads every second with backends flipping between active, draining and down.
//!
//! What it checks, and reports:
//! - every reload is acknowledged by every worker;
//! - nothing is lost: packets received = packets sent + packets dropped (every reason);
//! - resident memory after warm-up against the end;
//! - with `follow_flows`, that no established flow moves unless its backend went down
//!   (the transmit side decapsulates every frame and remembers each flow's backend). With a
//!   flow table smaller than the live flows, evicted flows are placed by Maglev again and
//!   may move, by design: run that case without `follow_flows`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vipgate_engine::port::synth::SynthQueue;
use vipgate_engine::port::Port;

use crate::config::Config;
use crate::engine::{Engine, EngineOptions};

/// How to soak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoakSpec {
    /// How long.
    pub seconds: f64,
    /// Workers.
    pub workers: usize,
    /// Flow entries per worker.
    pub flow_capacity: usize,
    /// Live connections per carrier gateway, per worker.
    pub flows_per_gateway: usize,
    /// Between reloads.
    pub reload_every: Duration,
    /// Follow every flow's backend on the transmit side.
    pub follow_flows: bool,
}

/// What the soak saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoakReport {
    /// Seconds run.
    pub seconds: f64,
    /// Reloads, all acknowledged by every worker.
    pub reloads: u64,
    /// Packets the workers received.
    pub received: u64,
    /// Packets the port took for sending.
    pub sent: u64,
    /// Packets dropped, every reason.
    pub dropped: u64,
    /// Flow-table evictions for room.
    pub flow_table_full: u64,
    /// Resident memory after warm-up, and at the end (KiB).
    pub rss_kib: (u64, u64),
    /// Followed flows seen more than once.
    pub flows_followed: u64,
    /// Flows that moved off a backend that was down (allowed).
    pub moved_off_down: u64,
    /// Flows that moved although their backend was up (must be 0).
    pub moved_unexpected: u64,
}

/// The backends of the soak's UDP VIP; their states rotate.
const ROTATING: [&str; 4] = ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"];

/// The config of reload `i`: among the UDP VIP's four backends, one down and one
/// draining in turn; the TCP VIP's second backend drains every other reload.
fn config_text(i: u64, capacity: usize) -> String {
    let state = |k: usize| -> &str {
        match (k as u64 + i) % 4 {
            0 => "down",
            1 => "draining",
            _ => "active",
        }
    };
    let udp: Vec<String> = ROTATING
        .iter()
        .enumerate()
        .map(|(k, a)| format!("{{ address = \"{a}\", weight = 10, state = \"{}\" }}", state(k)))
        .collect();
    let tcp_second = if i.is_multiple_of(2) { "active" } else { "draining" };
    format!(
        r#"[engine]
workers = 2
hash_seed = 99
maglev_table_size = 4093
flow_capacity = {capacity}

[tunnel]
source_v4 = "198.51.100.1"

[[port]]
name = "wan"
driver = "synth"
mac = "02:00:00:00:00:01"
next_hop_mac = "02:00:00:00:00:fe"
addresses = ["198.51.100.1"]

[[subnet]]
prefix = "203.0.113.0/24"

[[vip]]
address = "203.0.113.10"
port = 8000
protocol = "udp"
encap = "ipip"
backends = [{}]

[[vip]]
address = "203.0.113.20"
protocol = "tcp"
encap = "gue"
backends = [{{ address = "192.0.2.21" }}, {{ address = "192.0.2.22", state = "{tcp_second}" }}]
"#,
        udp.join(", ")
    )
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4)
}

/// The state of `backend` in reload `i`'s config.
fn down_in(i: u64, backend: IpAddr) -> bool {
    ROTATING
        .iter()
        .position(|a| a.parse::<IpAddr>().ok() == Some(backend))
        .is_some_and(|k| (k as u64 + i).is_multiple_of(4))
}

type Flow = (IpAddr, IpAddr, u8, u16, u16);

/// Runs the soak.
pub fn run(spec: &SoakSpec) -> Result<SoakReport, String> {
    let parse = |i: u64| {
        let mut workers_cfg = config_text(i, spec.flow_capacity);
        workers_cfg = workers_cfg.replacen("workers = 2", &format!("workers = {}", spec.workers), 1);
        Config::parse(Path::new("<soak>"), &workers_cfg).map_err(|e| e.to_string())
    };
    let first = parse(0)?;
    let mut synth = crate::ports::synth_spec(&first, None);
    synth.flows_per_gateway = spec.flows_per_gateway;
    let sent = Arc::new(AtomicU64::new(0));
    // The generation whose config decided each flow's backend last: flows are checked
    // against the generation current when their previous packet was sent.
    let generation = Arc::new(AtomicU64::new(0));
    type Seen = HashMap<Flow, (IpAddr, u64)>;
    let seen: Arc<Mutex<(Seen, u64, u64, u64)>> = Arc::new(Mutex::new((HashMap::new(), 0, 0, 0)));
    let queues: Vec<Box<dyn Port>> = (0..spec.workers)
        .map(|q| {
            let mut queue = SynthQueue::new(synth.clone(), q, spec.workers);
            let (sent, seen, generation) = (Arc::clone(&sent), Arc::clone(&seen), Arc::clone(&generation));
            let follow = spec.follow_flows;
            let gue_port = first.tunnel.gue_port;
            queue.set_observer(Box::new(move |frame| {
                sent.fetch_add(1, Ordering::Relaxed);
                if !follow {
                    return;
                }
                let Some((flow, backend)) = crate::demo::decap(frame, gue_port) else { return };
                let g = generation.load(Ordering::Relaxed);
                let Ok(mut s) = seen.lock() else { return };
                let (map, followed, off_down, unexpected) = &mut *s;
                match map.insert(flow, (backend, g)) {
                    Some((old, _)) if old == backend => *followed += 1,
                    Some((old, g_old)) => {
                        *followed += 1;
                        // Allowed when the old backend was down in a config in force since
                        // the flow's previous packet.
                        if (g_old..=g).any(|k| down_in(k, old)) {
                            *off_down += 1;
                        } else {
                            *unexpected += 1;
                        }
                    }
                    None => {}
                }
            }));
            Box::new(queue) as Box<dyn Port>
        })
        .collect();
    let started = Instant::now();
    let mut engine = Engine::start(first, queues, EngineOptions::default()).map_err(|e| e.to_string())?;
    let warm_up = Duration::from_secs_f64((spec.seconds / 5.0).min(30.0));
    let mut rss_after_warmup = None;
    let mut i = 0u64;
    while started.elapsed().as_secs_f64() < spec.seconds {
        std::thread::sleep(spec.reload_every);
        i += 1;
        // Generation i + 1 runs config i. The observer may see a packet of the new
        // generation before this store: the check looks at every config since the flow's
        // last packet, the one being sent included.
        generation.store(i, Ordering::Relaxed);
        engine.reload(parse(i)?).map_err(|e| format!("reload {i}: {e}"))?;
        if rss_after_warmup.is_none() && started.elapsed() >= warm_up {
            rss_after_warmup = Some(rss_kib());
        }
    }
    let rss_end = rss_kib();
    let reloads = engine.reloads();
    let (stats, _) = engine.stop();
    let s = seen.lock().map_err(|_| "the flow log was poisoned".to_string())?;
    Ok(SoakReport {
        seconds: started.elapsed().as_secs_f64(),
        reloads,
        received: stats.total.rx_packets,
        sent: sent.load(Ordering::Relaxed),
        dropped: stats.total.dropped(),
        flow_table_full: stats.total.flow_table_full,
        rss_kib: (rss_after_warmup.unwrap_or(rss_end), rss_end),
        flows_followed: s.1,
        moved_off_down: s.2,
        moved_unexpected: s.3,
    })
}
