//! Prometheus text exposition (format 0.0.4) of the engine's counters, and the small HTTP
//! endpoint that serves it at `[control] metrics`.
//!
//! The same counters as `vipgate ctl stats`: every pipeline counter per worker (drops with
//! a `reason` label), traffic per VIP and per (VIP, backend), the generation, uptime and
//! each worker's busy share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crossbeam_channel::Sender;
use vipgate_engine::counters::Counters;

use crate::engine::{PortReport, Stats};

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The port's device (the dpdk driver): its link and its own counters.
fn render_port(out: &mut String, port: &PortReport) {
    let device = label(&port.device);
    let _ = writeln!(
        out,
        "# HELP vipgate_port_link_up 1 while the port's link is up.\n# TYPE vipgate_port_link_up gauge"
    );
    let _ = writeln!(out, "vipgate_port_link_up{{device=\"{device}\"}} {}", u8::from(port.link.up));
    // The mbuf pool and the software spread are DPDK's.
    if port.driver == "dpdk" {
        let _ = writeln!(
            out,
            "# HELP vipgate_port_mbufs_free mbufs free in the port's pool.\n# TYPE vipgate_port_mbufs_free gauge"
        );
        let _ = writeln!(out, "vipgate_port_mbufs_free{{device=\"{device}\"}} {}", port.mbufs_free);
        let _ = writeln!(
            out,
            "# HELP vipgate_port_dropped_total Frames the driver freed before the engine saw them: chained (longer than an mbuf), share_full (a worker's software-spread share was full); also in vipgate_drops_total{{worker=\"port\"}}.\n# TYPE vipgate_port_dropped_total counter"
        );
        for (reason, n) in [("chained", port.chained_dropped), ("share_full", port.share_full)] {
            let _ =
                writeln!(out, "vipgate_port_dropped_total{{device=\"{device}\",reason=\"{reason}\"}} {n}");
        }
    }
    if !port.xstats.is_empty() {
        let _ = writeln!(
            out,
            "# HELP vipgate_port_xstat The device's own counters by name (dpdk: its xstats; afxdp: the XDP filter's frames taken and passed, and the sockets' statistics).\n# TYPE vipgate_port_xstat counter"
        );
        for (name, value) in &port.xstats {
            let _ =
                writeln!(out, "vipgate_port_xstat{{device=\"{device}\",name=\"{}\"}} {value}", label(name));
        }
    }
}

/// The exposition of what the fleet's sharing of flows did (`[fleet]`).
pub fn render_fleet(c: &crate::fleet::FleetCounts) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_records_sent_total Flow records sent to peers (one per peer).\n\
         # TYPE vipgate_fleet_records_sent_total counter\nvipgate_fleet_records_sent_total {}",
        c.records_sent
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_records_taken_total Flow records from peers handed to the workers to remember (vipgate_drops_total has none of them; the workers count the flows they installed as flows_adopted).\n\
         # TYPE vipgate_fleet_records_taken_total counter\nvipgate_fleet_records_taken_total {}",
        c.records_taken
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_refused_total Messages or records from peers refused: forged (the HMAC does not verify under the fleet's key), malformed, unknown_pair (a record's VIP and backend are not in the running tables).\n\
         # TYPE vipgate_fleet_refused_total counter"
    );
    for (reason, n) in [
        ("forged", c.refused_forged),
        ("malformed", c.refused_malformed),
        ("unknown_pair", c.refused_unknown_pair),
    ] {
        let _ = writeln!(out, "vipgate_fleet_refused_total{{reason=\"{reason}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_records_refreshed_total Flow records told again because the flow is still live here.\n\
         # TYPE vipgate_fleet_records_refreshed_total counter\nvipgate_fleet_records_refreshed_total {}",
        c.refreshed
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_resent_total Messages of flows sent again, unacknowledged.\n\
         # TYPE vipgate_fleet_resent_total counter\nvipgate_fleet_resent_total {}",
        c.resent
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_records_given_up_total Flow records whose message no peer acknowledged after every try: those flows break if their appliance fails.\n\
         # TYPE vipgate_fleet_records_given_up_total counter\nvipgate_fleet_records_given_up_total {}",
        c.records_given_up
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_fleet_send_errors_total Messages to peers the kernel refused to send.\n\
         # TYPE vipgate_fleet_send_errors_total counter\nvipgate_fleet_send_errors_total {}",
        c.send_errors
    );
    out
}

/// The exposition of `s`.
pub fn render(s: &Stats) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP vipgate_{name} {help}\n# TYPE vipgate_{name} {kind}");
    };
    family(&mut out, "generation", "gauge", "Generation of the running config.");
    let _ = writeln!(out, "vipgate_generation {}", s.generation);
    family(&mut out, "uptime_seconds", "gauge", "Seconds since the engine started.");
    let _ = writeln!(out, "vipgate_uptime_seconds {:.3}", s.uptime);
    family(&mut out, "worker_generation", "gauge", "Generation each worker runs.");
    for w in &s.workers {
        let _ = writeln!(out, "vipgate_worker_generation{{worker=\"{}\"}} {}", w.id, w.generation);
    }
    family(&mut out, "worker_busy_ratio", "gauge", "Share of a worker's time spent on bursts with packets.");
    for w in &s.workers {
        let _ =
            writeln!(out, "vipgate_worker_busy_ratio{{worker=\"{}\"}} {:.4}", w.id, w.busy_percent / 100.0);
    }
    family(&mut out, "drops_total", "counter", "Packets dropped, by reason.");
    for w in &s.workers {
        for r in vipgate_engine::counters::DropReason::ALL {
            let _ = writeln!(
                out,
                "vipgate_drops_total{{worker=\"{}\",reason=\"{}\"}} {}",
                w.id,
                r.name(),
                w.counters.drop_count(r)
            );
        }
    }
    // The port's own losses, beside the pipeline's, under the same family.
    for l in s.port_losses() {
        if let Some(n) = l.count {
            let _ = writeln!(out, "vipgate_drops_total{{worker=\"port\",reason=\"{}\"}} {n}", l.reason);
        }
    }
    if s.port_losses().iter().any(|l| l.count.is_none()) {
        family(
            &mut out,
            "drops_unseen",
            "gauge",
            "1 for each kind of loss the port's device cannot report (not counted in vipgate_drops_total).",
        );
        for l in s.port_losses().iter().filter(|l| l.count.is_none()) {
            let why = label(l.unseen.as_deref().unwrap_or(""));
            let _ = writeln!(out, "vipgate_drops_unseen{{reason=\"{}\",why=\"{why}\"}} 1", l.reason);
        }
    }
    for (i, name) in Counters::NAMES.iter().enumerate() {
        if name.starts_with("drop_") {
            continue;
        }
        family(&mut out, &format!("{name}_total"), "counter", &format!("Pipeline counter {name}."));
        for w in &s.workers {
            let _ = writeln!(out, "vipgate_{name}_total{{worker=\"{}\"}} {}", w.id, w.counters.values()[i]);
        }
    }
    let mut per_vip: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for t in &s.traffic {
        let e = per_vip.entry(t.vip.as_str()).or_default();
        e.0 += t.packets;
        e.1 += t.bytes;
    }
    family(&mut out, "vip_packets_total", "counter", "Packets forwarded per VIP.");
    for (vip, (p, _)) in &per_vip {
        let _ = writeln!(out, "vipgate_vip_packets_total{{vip=\"{}\"}} {p}", label(vip));
    }
    family(&mut out, "vip_bytes_total", "counter", "Bytes forwarded (encapsulated) per VIP.");
    for (vip, (_, b)) in &per_vip {
        let _ = writeln!(out, "vipgate_vip_bytes_total{{vip=\"{}\"}} {b}", label(vip));
    }
    // Per VIP and backend: the counters with the backend's state, its weight without.
    type Field = fn(&crate::engine::BackendTraffic) -> u64;
    let per_backend: [(&str, &str, &str, bool, Field); 3] = [
        ("backend_packets_total", "counter", "Packets forwarded per VIP and backend.", true, |t| t.packets),
        (
            "backend_bytes_total",
            "counter",
            "Bytes forwarded (encapsulated) per VIP and backend.",
            true,
            |t| t.bytes,
        ),
        ("backend_weight", "gauge", "Weight of each backend in the running config.", false, |t| {
            u64::from(t.weight)
        }),
    ];
    for (name, kind, help, with_state, value) in per_backend {
        family(&mut out, name, kind, help);
        for t in &s.traffic {
            let state = if with_state { format!(",state=\"{}\"", t.state) } else { String::new() };
            let (vip, backend) = (label(&t.vip), label(&t.backend));
            let _ =
                writeln!(out, "vipgate_{name}{{vip=\"{vip}\",backend=\"{backend}\"{state}}} {}", value(t));
        }
    }
    if let Some(port) = &s.port {
        render_port(&mut out, port);
    }
    out
}

/// Metrics connections open at once; one more gets 503 and is closed.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a client may take to send its whole request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Connections refused since start (over [`MAX_CONNECTIONS`], or no thread for them).
pub fn refused() -> u64 {
    REFUSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Serves `GET /metrics` (and `/`): each request asks the control thread for the text
/// through `requests`. Other paths get 404, other methods 405. At most
/// [`MAX_CONNECTIONS`] at once, each with [`REQUEST_DEADLINE`] to send its request.
pub fn serve(listener: TcpListener, requests: Sender<Sender<String>>) {
    let gate = crate::listen::Gate::new(MAX_CONNECTIONS);
    crate::listen::accept_loop(
        "vipgate-metrics",
        || listener.accept().map(|(s, _)| s),
        &gate,
        &REFUSED,
        move |stream| answer(stream, &requests),
        |mut stream: TcpStream| {
            let _ = stream.set_nonblocking(true);
            let body = "too many metrics connections; try again\n";
            let _ = write!(
                stream,
                "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        },
    );
}

fn answer(stream: TcpStream, requests: &Sender<Sender<String>>) {
    let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    let mut reader =
        BufReader::new(crate::listen::DeadlineReader::new(&stream, deadline, TcpStream::set_read_timeout));
    let mut first = String::new();
    if reader.by_ref().take(8192).read_line(&mut first).is_err() {
        return;
    }
    // Skip the headers: at most 100 lines of 8 KiB, all within the deadline; a client that
    // sends more gets its answer anyway.
    let mut line = String::new();
    for _ in 0..100 {
        if !reader.by_ref().take(8192).read_line(&mut line).is_ok_and(|n| n > 2) {
            break;
        }
        line.clear();
    }
    if std::time::Instant::now() >= deadline {
        // Too slow: no answer, the connection goes.
        return;
    }
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method != "GET" {
        ("405 Method Not Allowed", "GET only\n".to_string())
    } else if path != "/metrics" && path != "/" {
        ("404 Not Found", "see /metrics\n".to_string())
    } else {
        let (tx, rx) = crossbeam_channel::bounded(1);
        match requests.send(tx).ok().and_then(|_| rx.recv_timeout(Duration::from_secs(10)).ok()) {
            Some(text) => ("200 OK", text),
            None => ("503 Service Unavailable", "vipgate is busy or stopping\n".to_string()),
        }
    };
    let _ = write!(
        &stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The exposition of the control plane's own state: reloads by result, whether the last
/// one was refused, keys waiting for a restart, and refused operator connections.
pub fn render_control(engine: &crate::engine::Engine) -> String {
    let mut out = String::new();
    let counts = engine.reload_counts();
    let _ = writeln!(
        out,
        "# HELP vipgate_reloads_total Config reloads and overrides, by result: applied, or why not (invalid, refused: it would remove VIPs or subnets, build, timeout, override, state).\n# TYPE vipgate_reloads_total counter"
    );
    let _ = writeln!(out, "vipgate_reloads_total{{result=\"applied\"}} {}", counts.applied);
    for kind in ["invalid", "refused", "build", "timeout", "override", "state"] {
        let n = counts.failed.get(kind).copied().unwrap_or(0);
        let _ = writeln!(out, "vipgate_reloads_total{{result=\"{kind}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP vipgate_reload_failing 1 while the last config reload was not applied (until one is).\n# TYPE vipgate_reload_failing gauge\nvipgate_reload_failing {}",
        u8::from(engine.reload_error().is_some())
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_restart_needed Config keys changed since start that only a restart applies.\n# TYPE vipgate_restart_needed gauge\nvipgate_restart_needed {}",
        engine.restart_needed().len()
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_flow_numbers (VIP, backend) pairs numbered since start, of the {} a process can number (every pair configured keeps its number: flows may remember it).\n# TYPE vipgate_flow_numbers gauge\nvipgate_flow_numbers {}",
        u64::from(vipgate_engine::flow::MAX_BACKEND) + 1,
        engine.flow_numbers()
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_operator_connections_refused_total Connections to the operator socket and the metrics endpoint closed at once: over the cap, or no descriptor left.\n# TYPE vipgate_operator_connections_refused_total counter"
    );
    for (channel, n) in [("ctl", crate::ctl::refused()), ("metrics", refused())] {
        let _ = writeln!(out, "vipgate_operator_connections_refused_total{{channel=\"{channel}\"}} {n}");
    }
    out
}

/// The exposition of the health checks: each (VIP, backend) pair's probe state, and the
/// alarms in force.
pub fn render_health(h: &crate::health::HealthState, alarms: &[String], late: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP vipgate_health_probes_late_total Health probes that started late (over 250 ms after their time) or were skipped.\n# TYPE vipgate_health_probes_late_total counter\nvipgate_health_probes_late_total {late}"
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_health_probes_unknown_total Health probes that could not be made (no descriptor or buffer here); they count neither way.\n# TYPE vipgate_health_probes_unknown_total counter\nvipgate_health_probes_unknown_total {}",
        h.unknown()
    );
    let _ = writeln!(
        out,
        "# HELP vipgate_backend_health 1 while the backend passes its health check, 0 while it is down."
    );
    let _ = writeln!(out, "# TYPE vipgate_backend_health gauge");
    for (t, st, pairs) in h.report() {
        for (vip, backend) in pairs {
            let _ = writeln!(
                out,
                "vipgate_backend_health{{vip=\"{}\",backend=\"{}\",check=\"{}\"}} {}",
                label(vip),
                label(&backend.to_string()),
                label(&t.to_string()),
                u8::from(st.up)
            );
        }
    }
    let _ = writeln!(out, "# HELP vipgate_alarms Alarms in force (a VIP failing open, ...).");
    let _ = writeln!(out, "# TYPE vipgate_alarms gauge");
    let _ = writeln!(out, "vipgate_alarms {}", alarms.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dpdk_port_shows_its_link_pool_and_xstats() {
        let port = PortReport {
            driver: "dpdk".into(),
            device: "0000:3b:00.0".into(),
            device_driver: "net_ixgbe".into(),
            link: crate::engine::PortLink { up: true, speed_mbps: 10000, full_duplex: true },
            queues: 2,
            software_rss: false,
            share_full: 0,
            chained_dropped: 2,
            mbufs_free: 8000,
            xstats: [("rx_good_packets".to_string(), 12), ("rx_missed_errors".to_string(), 3)].into(),
            losses: Vec::new(),
        };
        let mut out = String::new();
        render_port(&mut out, &port);
        for line in [
            "vipgate_port_link_up{device=\"0000:3b:00.0\"} 1",
            "vipgate_port_mbufs_free{device=\"0000:3b:00.0\"} 8000",
            "vipgate_port_dropped_total{device=\"0000:3b:00.0\",reason=\"chained\"} 2",
            "vipgate_port_dropped_total{device=\"0000:3b:00.0\",reason=\"share_full\"} 0",
            "vipgate_port_xstat{device=\"0000:3b:00.0\",name=\"rx_good_packets\"} 12",
            "vipgate_port_xstat{device=\"0000:3b:00.0\",name=\"rx_missed_errors\"} 3",
            "# TYPE vipgate_port_xstat counter",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        // An afxdp port has no mbuf pool nor software spread: none of their lines.
        let afxdp = PortReport {
            driver: "afxdp".into(),
            device: "eth0".into(),
            xstats: [("xdp_taken".to_string(), 7)].into(),
            ..port
        };
        let mut out = String::new();
        render_port(&mut out, &afxdp);
        assert!(out.contains("vipgate_port_xstat{device=\"eth0\",name=\"xdp_taken\"} 7\n"), "{out}");
        assert!(!out.contains("mbufs") && !out.contains("vipgate_port_dropped_total"), "{out}");
    }
}
