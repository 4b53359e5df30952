//! `vipgate demo`: synthetic 2G-gateway traffic through the real engine, with a hot swap.
//!
//! The embedded config (configs/demo.toml) runs on real workers with the synth driver:
//! carrier-gateway source addresses with thousands of ports each, long-lived TCP
//! connections and UDP to the VIPs (the first VIP busiest), frames of 60–300 bytes and a
//! little noise. Midway, configs/demo-cutover.toml is swapped in as `vipgate run` would
//! on SIGHUP: one backend leaves a VIP for a new one, and a draining backend goes. The
//! report shows packets in and out, the rate per worker, each backend's share against its
//! weight before and after the swap, what became of established flows, and every drop.
//!
//! Flows are followed on the transmit side: every frame a worker sends is decapsulated
//! and, for one flow in eight (by source port), its backend remembered, so that a flow
//! that changed backend across the swap is seen.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vipgate_engine::counters::{Counters, DropReason};
use vipgate_engine::port::synth::SynthQueue;
use vipgate_engine::port::Port;

use crate::config::Config;
use crate::engine::{Engine, EngineOptions, ReloadReport, Stats};
use crate::ports;

/// The config the demo starts with.
pub const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

/// The config the demo swaps in midway.
pub const CUTOVER_CONFIG: &str = include_str!("../../configs/demo-cutover.toml");

/// One flow in this many is followed.
const SAMPLE: u16 = 8;

/// An inner 5-tuple: source, destination, protocol, source port, destination port.
type Flow = (IpAddr, IpAddr, u8, u16, u16);

/// What the transmit side saw of one followed flow.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    backend: Option<IpAddr>,
    before: bool,
    after: bool,
    moved_from: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct FlowLog {
    flows: HashMap<Flow, Seen>,
}

/// What became of the followed flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowOutcome {
    /// Followed flows seen both before and after the swap.
    pub across: u64,
    /// Of those, flows that kept their backend.
    pub kept: u64,
    /// Flows that changed backend because theirs left the config.
    pub moved_removed: u64,
    /// Flows that changed backend although theirs stayed (a broken contract; should be 0).
    pub moved_otherwise: u64,
}

/// What the demo saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Packets generated (received by the workers).
    pub packets: u64,
    /// Packets the workers sent.
    pub sent: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// The swap.
    pub swap: ReloadReport,
    /// Packets received when the swap was applied.
    pub swap_at: u64,
    /// Counters per VIP and backend when the swap was applied, and at the end.
    pub before: Stats,
    /// At the end.
    pub after: Stats,
    /// The followed flows.
    pub flows: FlowOutcome,
    /// Backends of the first config that the second does not have.
    pub removed: Vec<String>,
}

/// The inner 5-tuple and outer destination of a frame the engine sent toward a backend.
pub(crate) fn decap(frame: &[u8], gue_port: u16) -> Option<(Flow, IpAddr)> {
    let (outer_dst, proto, mut at) = match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
            let d: [u8; 4] = frame.get(30..34)?.try_into().ok()?;
            (IpAddr::from(d), *frame.get(23)?, 14 + ihl)
        }
        [0x86, 0xdd] => {
            let d: [u8; 16] = frame.get(38..54)?.try_into().ok()?;
            (IpAddr::from(d), *frame.get(20)?, 54)
        }
        _ => return None,
    };
    match proto {
        4 | 41 => {}
        47 => at += 4,
        17 if u16::from_be_bytes(frame.get(at + 2..at + 4)?.try_into().ok()?) == gue_port => at += 12,
        _ => return None,
    }
    let inner = frame.get(at..)?;
    let (src, dst, p, l4) = match inner.first()? >> 4 {
        4 => {
            // Fragments go by their 3-tuple, not their flow's 5-tuple: not followed.
            if u16::from_be_bytes(inner.get(6..8)?.try_into().ok()?) & 0x3fff != 0 {
                return None;
            }
            let s: [u8; 4] = inner.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = inner.get(16..20)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *inner.get(9)?, usize::from(inner[0] & 0x0f) * 4)
        }
        6 => {
            let s: [u8; 16] = inner.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = inner.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *inner.get(6)?, 40)
        }
        _ => return None,
    };
    let ports = inner.get(l4..l4 + 4).filter(|_| p == 6 || p == 17);
    let (sp, dp) =
        ports.map_or((0, 0), |b| (u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]])));
    Some(((src, dst, p, sp, dp), outer_dst))
}

/// Runs the demo over `packets` packets (split over the workers), swapping configs at
/// half of them.
pub fn run(packets: u64) -> Result<DemoReport, String> {
    let first =
        Config::parse(Path::new("<embedded configs/demo.toml>"), DEMO_CONFIG).map_err(|e| e.to_string())?;
    let second = Config::parse(Path::new("<embedded configs/demo-cutover.toml>"), CUTOVER_CONFIG)
        .map_err(|e| e.to_string())?;
    let workers = first.engine.workers.max(1);
    let per_queue = packets.div_ceil(workers as u64);
    let spec = ports::synth_spec(&first, Some(per_queue));
    let gue_port = first.tunnel.gue_port;
    let swapped = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(FlowLog::default()));
    let queues: Vec<Box<dyn Port>> = (0..workers)
        .map(|q| {
            let mut queue = SynthQueue::new(spec.clone(), q, workers);
            let (swapped, log) = (Arc::clone(&swapped), Arc::clone(&log));
            queue.set_observer(Box::new(move |frame| {
                let Some((flow, backend)) = decap(frame, gue_port) else { return };
                if flow.3 % SAMPLE != 0 {
                    return;
                }
                let after = swapped.load(Ordering::Relaxed);
                let Ok(mut log) = log.lock() else { return };
                let seen = log.flows.entry(flow).or_default();
                match seen.backend {
                    Some(b) if b != backend => {
                        seen.moved_from.get_or_insert(b);
                        seen.backend = Some(backend);
                    }
                    _ => seen.backend = Some(backend),
                }
                if after {
                    seen.after = true;
                } else {
                    seen.before = true;
                }
            }));
            Box::new(queue) as Box<dyn Port>
        })
        .collect();
    let removed: Vec<String> = {
        let ids = |c: &Config| -> Vec<String> {
            c.vips.iter().flat_map(|v| v.backends.iter().map(|b| b.id.to_string())).collect()
        };
        let (a, b) = (ids(&first), ids(&second));
        let mut r: Vec<String> = a.into_iter().filter(|x| !b.contains(x)).collect();
        r.dedup();
        r
    };
    let started = Instant::now();
    let mut engine = Engine::start(first, queues, EngineOptions::default()).map_err(|e| e.to_string())?;
    let rx = |e: &Engine| e.stats().total.rx_packets;
    let deadline = started + Duration::from_secs(60);
    while rx(&engine) < packets / 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let before = engine.stats();
    let swap = engine.reload(second).map_err(|e| format!("the swap failed: {e}"))?;
    swapped.store(true, Ordering::Relaxed);
    let swap_at = rx(&engine);
    while rx(&engine) < packets && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let (after, _) = engine.stop();
    let seconds = started.elapsed().as_secs_f64();
    if after.total.rx_packets < packets {
        return Err(format!("only {} of {packets} packets went through in 60 s", after.total.rx_packets));
    }
    let mut flows = FlowOutcome::default();
    let log = log.lock().map_err(|_| "the flow log was poisoned".to_string())?;
    for seen in log.flows.values() {
        if seen.before && seen.after {
            flows.across += 1;
            match seen.moved_from {
                None => flows.kept += 1,
                Some(b) if removed.contains(&b.to_string()) => flows.moved_removed += 1,
                Some(_) => flows.moved_otherwise += 1,
            }
        }
    }
    Ok(DemoReport {
        packets: after.total.rx_packets,
        sent: after.total.forwarded + after.total.replied,
        seconds,
        swap,
        swap_at,
        before,
        after,
        flows,
        removed,
    })
}

/// Packets per (VIP, backend) with weight and state.
fn traffic(s: &Stats) -> BTreeMap<(String, String), (u64, u32, &'static str)> {
    s.traffic.iter().map(|t| ((t.vip.clone(), t.backend.clone()), (t.packets, t.weight, t.state))).collect()
}

fn shares(out: &mut String, title: &str, rows: &BTreeMap<(String, String), (u64, u32, &'static str)>) {
    out.push_str(&format!("{title}\n"));
    let mut vips: Vec<&String> = rows.keys().map(|(v, _)| v).collect();
    vips.dedup();
    for vip in vips {
        let mine: Vec<(&String, &(u64, u32, &str))> =
            rows.iter().filter(|((v, _), _)| v == vip).map(|((_, b), x)| (b, x)).collect();
        let packets: u64 = mine.iter().map(|(_, x)| x.0).sum();
        let weights: u32 = mine.iter().filter(|(_, x)| x.2 == "active").map(|(_, x)| x.1).sum();
        out.push_str(&format!("  {vip}  {packets} packets\n"));
        for (b, &(p, w, state)) in mine {
            let share = p as f64 * 100.0 / packets.max(1) as f64;
            let weight_share = if state == "active" && weights > 0 {
                format!("{:5.1}%", f64::from(w) * 100.0 / f64::from(weights))
            } else {
                "    - ".to_string()
            };
            out.push_str(&format!(
                "    {b:<14} weight {w:>4} {state:<9} {p:>9} packets {share:5.1}%   weight share {weight_share}\n"
            ));
        }
    }
}

/// The report for people.
pub fn to_text(r: &DemoReport) -> String {
    let c: &Counters = &r.after.total;
    let mut s = String::new();
    s.push_str(&format!(
        "vipgate demo: synthetic 2G-gateway traffic through {} workers (embedded configs/demo.toml),\n\
         with configs/demo-cutover.toml swapped in midway\n\n",
        r.after.workers.len()
    ));
    s.push_str(&format!(
        "packets {}   sent {}   forwarded {}   answered {}   dropped {}   in {:.2} s\n",
        r.packets,
        r.sent,
        c.forwarded,
        c.replied,
        c.dropped(),
        r.seconds
    ));
    for w in &r.after.workers {
        let busy = w.busy_percent / 100.0 * r.after.uptime;
        s.push_str(&format!(
            "worker {}: {} packets, {:.2} Mpps while busy ({:.2} s busy; generating the traffic included)\n",
            w.id,
            w.counters.rx_packets,
            w.counters.rx_packets as f64 / busy.max(1e-9) / 1e6,
            busy
        ));
    }
    s.push_str(&format!(
        "\nswap at packet {}: generation {} built in {:.1} ms, running on every worker {:.2} ms after it was sent\n",
        r.swap_at,
        r.swap.generation,
        r.swap.build.as_secs_f64() * 1e3,
        r.swap.swap.as_secs_f64() * 1e3
    ));
    s.push_str(&format!("backends removed by the swap: {}\n", r.removed.join(", ")));
    let f = &r.flows;
    s.push_str(&format!(
        "flows followed across the swap (1 in {SAMPLE}): {}   kept their backend {} ({:.1}%)   \
         moved, their backend removed {}   moved otherwise {}\n",
        f.across,
        f.kept,
        f.kept as f64 * 100.0 / f.across.max(1) as f64,
        f.moved_removed,
        f.moved_otherwise
    ));
    s.push_str(&format!(
        "flow table: {} hits, {} new, {} moved, {} evicted for room\n\n",
        c.flow_hits, c.flow_misses, c.flow_moved, c.flow_table_full
    ));
    let before = traffic(&r.before);
    let mut after = traffic(&r.after);
    for (k, v) in after.iter_mut() {
        v.0 -= before.get(k).map_or(0, |b| b.0).min(v.0);
    }
    after.retain(|_, v| v.0 > 0 || v.2 != "removed");
    shares(&mut s, "before the swap: packets per backend (new flows follow the weights):", &before);
    shares(&mut s, "after the swap (established flows stay where they were):", &after);
    s.push_str("\ndrops by reason:\n");
    for reason in DropReason::ALL {
        s.push_str(&format!("  {:<12} {}\n", reason.name(), c.drop_count(reason)));
    }
    s.push_str(&format!(
        "\nother counters: fragments {}   echo replies {}   ICMP errors forwarded {}\n",
        c.fragments, c.echo_replies, c.icmp_errors_forwarded
    ));
    s.push_str(&format!("\n{}\n", verdict(r).0));
    s
}

/// The drop reasons of the noise the synth port injects on purpose: bad headers, and
/// packets to no subnet and to a subnet's address that is no VIP.
pub const INJECTED_NOISE: [DropReason; 3] = [DropReason::Malformed, DropReason::NotVip, DropReason::NoVip];

/// The demo's verdict, one line, and whether it passed: no established flow moved off a
/// backend that stayed, and no drop beyond the injected noise.
pub fn verdict(r: &DemoReport) -> (String, bool) {
    verdict_of(&r.flows, &r.after.total)
}

fn verdict_of(f: &FlowOutcome, c: &Counters) -> (String, bool) {
    let unexpected: Vec<String> = DropReason::ALL
        .iter()
        .filter(|d| !INJECTED_NOISE.contains(d) && c.drop_count(**d) > 0)
        .map(|d| format!("{} {}", d.name(), c.drop_count(*d)))
        .collect();
    let noise: Vec<&str> = INJECTED_NOISE.iter().map(|d| d.name()).collect();
    let flows = format!(
        "cut-over: {} of {} established flows moved off a backend that stayed ({} moved because their backend was removed)",
        f.moved_otherwise, f.across, f.moved_removed
    );
    let drops = if unexpected.is_empty() {
        format!("drops: only the injected noise ({})", noise.join(", "))
    } else {
        format!("drops beyond the injected noise: {}", unexpected.join(", "))
    };
    let ok = f.moved_otherwise == 0 && unexpected.is_empty();
    (format!("{}: {flows}; {drops}", if ok { "PASS" } else { "FAIL" }), ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_fails_on_a_moved_flow_or_a_drop_beyond_the_noise() {
        let flows = FlowOutcome { across: 100, kept: 90, moved_removed: 10, moved_otherwise: 0 };
        let mut c = Counters::default();
        c.drops[DropReason::Malformed as usize] = 5;
        c.drops[DropReason::NoVip as usize] = 3;
        let (line, ok) = verdict_of(&flows, &c);
        assert!(ok, "{line}");
        assert_eq!(
            line,
            "PASS: cut-over: 0 of 100 established flows moved off a backend that stayed (10 moved because \
             their backend was removed); drops: only the injected noise (malformed, not_vip, no_vip)"
        );
        c.drops[DropReason::TxFull as usize] = 2;
        let (line, ok) = verdict_of(&flows, &c);
        assert!(
            !ok && line.starts_with("FAIL") && line.ends_with("drops beyond the injected noise: tx_full 2"),
            "{line}"
        );
        let moved = FlowOutcome { moved_otherwise: 1, ..flows };
        let (line, ok) = verdict_of(&moved, &Counters::default());
        assert!(!ok && line.contains("1 of 100 established flows moved"), "{line}");
    }
}
