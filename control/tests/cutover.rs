//! Drains and cut-overs scoped to VIPs, against a running `vipgate run` whose VIPs share
//! backends in different ways: a drain or a cut-over never leaves a VIP with nothing to
//! take new flows unless forced, and a cut-over moves only the VIPs it should.

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{fresh_dir, Appliance};
use vipgate_control::answer::{FlowStates, FlowsAnswer, TableAnswer, VipFlows};

/// Four VIPs:
/// - udp://203.0.113.10:8000: the old site (.11, .12) and the new backend at weight 0;
/// - tcp://203.0.113.10: the old site alone;
/// - udp://203.0.113.20:53: one old backend (.11) beside one that stays (.13);
/// - udp://203.0.113.30:53: the new backend (at weight 0) beside one that stays (.14).
fn config(dir: &Path) -> String {
    let old = r#"{ address = "192.0.2.11", weight = 100 }, { address = "192.0.2.12", weight = 100 }"#;
    let vips = [
        support::vip_toml(
            "udp://203.0.113.10:8000",
            "ipip",
            &format!(r#"{old}, {{ address = "198.51.100.21", weight = 0 }}"#),
        ),
        support::vip_toml("tcp://203.0.113.10", "gue", old),
        support::vip_toml(
            "udp://203.0.113.20:53",
            "ipip",
            r#"{ address = "192.0.2.11", weight = 100 }, { address = "192.0.2.13", weight = 100 }"#,
        ),
        support::vip_toml(
            "udp://203.0.113.30:53",
            "ipip",
            r#"{ address = "198.51.100.21", weight = 0 }, { address = "192.0.2.14", weight = 100 }"#,
        ),
    ];
    support::synth_appliance(dir, 1, 20000, &[("legacy", "203.0.113.0/24")], "") + &vips.concat()
}

/// `ctl flows` as the typed answer.
fn flows(app: &Appliance, args: &[&str]) -> FlowsAnswer {
    serde_json::from_value(app.json(args)).expect("a flows answer")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// (state, slots) of `backend` in `vip`.
fn slot(app: &Appliance, vip: &str, backend: &str) -> (String, u64) {
    let t: TableAnswer = serde_json::from_value(app.json(&["table", vip])).expect("a table answer");
    let b = t.backends.into_iter().find(|b| b.backend == backend).unwrap();
    (b.state, u64::from(b.slots))
}

fn cutover(app: &Appliance, args: &[&str]) -> Output {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cutover.sh"))
        .args(["--config", app.config.to_str().unwrap()])
        .args(args)
        .env("VIPGATE", env!("CARGO_BIN_EXE_vipgate"))
        .output()
        .unwrap()
}

fn start(tag: &str) -> Appliance {
    let dir = fresh_dir(tag);
    Appliance::start(&dir, &config(&dir), &dir.join("ctl.sock"), &[])
}

#[test]
fn drains_scoped_to_a_vip_and_refused_where_a_vip_would_keep_nothing() {
    let app = start("cutover-drain");
    // In one VIP only: the others keep the backend.
    let out = app.ctl(&["drain", "192.0.2.11", "--vip", "udp://203.0.113.20:53"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(slot(&app, "udp://203.0.113.20:53", "192.0.2.11"), ("draining".into(), 0));
    assert_eq!(slot(&app, "203.0.113.10:8000/udp", "192.0.2.11").0, "active");
    assert_eq!(slot(&app, "tcp://203.0.113.10", "192.0.2.11").0, "active");

    // Everywhere, .12 then .11: the TCP VIP would keep nothing; refused and named, with
    // what it would keep.
    assert!(app.ctl(&["drain", "192.0.2.12"]).status.success());
    let out = app.ctl(&["drain", "192.0.2.11"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = text(&out);
    for vip in ["udp://203.0.113.10:8000", "tcp://203.0.113.10"] {
        assert!(err.contains(&format!("leave VIP {vip} with no backend taking new flows")), "{vip}: {err}");
    }
    assert!(err.contains("(192.0.2.11 draining, 192.0.2.12 draining)"), "{err}");
    assert!(!err.contains("leave VIP udp://203.0.113.20:53"), ".13 stays there: {err}");
    assert_eq!(slot(&app, "tcp://203.0.113.10", "192.0.2.11").0, "active", "nothing changed");
    // A weight of 0 in one VIP is a drain too.
    let out = app.ctl(&["weight", "192.0.2.11", "0", "--vip", "tcp://203.0.113.10"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // --force means it.
    let out = app.ctl(&["drain", "192.0.2.11", "--vip", "tcp://203.0.113.10", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(slot(&app, "tcp://203.0.113.10", "192.0.2.11"), ("draining".into(), 0));

    // Undo in one VIP, then everything.
    assert!(app.ctl(&["undrain", "192.0.2.11", "--vip", "tcp://203.0.113.10"]).status.success());
    assert_eq!(slot(&app, "tcp://203.0.113.10", "192.0.2.11").0, "active");
    assert_eq!(slot(&app, "udp://203.0.113.20:53", "192.0.2.11").0, "draining");
    let out = app.ctl(&["undrain", "192.0.2.12", "--vip", "tcp://203.0.113.10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("in every VIP, not in one: undo it without --vip"), "{}", text(&out));
    assert!(app.ctl(&["undrain", "192.0.2.11"]).status.success());
    assert!(app.ctl(&["undrain", "192.0.2.12"]).status.success());
    let status = app.json(&["status"]);
    assert!(status["overrides"]["drained"].as_array().unwrap().is_empty(), "{status}");
    // A VIP that does not list the backend, or does not exist.
    let out = app.ctl(&["drain", "192.0.2.13", "--vip", "tcp://203.0.113.10"]);
    assert!(text(&out).contains("VIP tcp://203.0.113.10 has no backend 192.0.2.13"), "{}", text(&out));
    let out = app.ctl(&["drain", "192.0.2.13", "--vip", "203.0.113.99"]);
    assert!(text(&out).contains("no VIP 203.0.113.99"), "{}", text(&out));
    app.finish();
}

#[test]
fn a_cutover_moves_only_the_vips_that_list_a_new_backend() {
    let app = start("cutover-scope");
    let before = std::fs::read_to_string(&app.config).unwrap();
    let base = ["--from", "192.0.2.11,192.0.2.12", "--to", "198.51.100.21"];
    let run = ["--steps", "1", "--step-wait", "1", "--flows-below", "1000000", "--flows-timeout", "10"];

    // Asked to move the TCP VIP, which lists no new backend: refused, dry run or not.
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--vip", "tcp://203.0.113.10"]);
        args.extend_from_slice(&run);
        args.extend_from_slice(extra);
        let out = cutover(&app, &args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(
                "tcp://203.0.113.10 would keep no backend taking new flows (it would keep: 192.0.2.11 draining, 192.0.2.12 draining)"
            ),
            "{}",
            text(&out)
        );
    }
    assert_eq!(std::fs::read_to_string(&app.config).unwrap(), before);
    assert_eq!(app.generation(), 1, "nothing was applied");

    // Without --vip: the VIPs that list the new backend move; the others are named and
    // left alone.
    let mut dry = base.to_vec();
    dry.extend_from_slice(&run);
    dry.push("--dry-run");
    let out = cutover(&app, &dry);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    assert!(plan.contains("cutover: moves udp://203.0.113.10:8000"), "{plan}");
    assert!(plan.contains("cutover: moves udp://203.0.113.30:53"), "{plan}");
    for alone in ["tcp://203.0.113.10", "udp://203.0.113.20:53"] {
        assert!(
            plan.contains(&format!("cutover: leaves {alone} alone: it lists none of the new backends")),
            "{alone}: {plan}"
        );
    }
    assert!(
        plan.contains("udp://203.0.113.10:8000 step 1: 198.51.100.21=100 192.0.2.11=0 192.0.2.12=0"),
        "{plan}"
    );

    // The old backends carry open TCP connections in the TCP VIP, which stays: the wait
    // is on their flows in the VIPs moved (UDP, none seen within a window of 0 s), so it
    // ends at once even though they must fall to 0.
    support::wait_for("open TCP connections on 192.0.2.11 in the TCP VIP", 20, || {
        let f = flows(&app, &["flows"]);
        let tcp = f.vips.iter().find(|v| v.vip == "tcp://203.0.113.10");
        tcp.is_some_and(|v| {
            v.backends.iter().any(|b| b.backend == "192.0.2.11" && b.states.tcp_established > 0)
        })
    });
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--steps",
        "1",
        "--step-wait",
        "1",
        "--flows-below",
        "0",
        "--udp-window",
        "0",
        "--flows-timeout",
        "20",
    ]);
    let out = cutover(&app, &args);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("waiting for their open connections there"), "{log}");
    // Moved: the old site drains in the UDP VIP; the new backend takes every slot there.
    assert_eq!(slot(&app, "udp://203.0.113.10:8000", "192.0.2.11"), ("draining".into(), 0));
    assert_eq!(slot(&app, "udp://203.0.113.10:8000", "198.51.100.21"), ("active".into(), 251));
    // Left alone: the old backends keep taking new flows where nothing replaces them.
    let (state, slots) = slot(&app, "tcp://203.0.113.10", "192.0.2.11");
    assert!(state == "active" && slots > 0, "{state} {slots}");
    let (state, slots) = slot(&app, "udp://203.0.113.20:53", "192.0.2.11");
    assert!(state == "active" && slots > 0, "{state} {slots}");
    // The file says the same, and no override is left.
    let after = std::fs::read_to_string(&app.config).unwrap();
    let tcp = &after[after.find("protocol = \"tcp\"").unwrap()..];
    let tcp = &tcp[..tcp.find("[[vip]]").unwrap()];
    assert!(!tcp.contains("draining"), "the TCP VIP is untouched: {tcp}");
    assert!(after.contains(r#"{ address = "192.0.2.11", weight = 100, state = "draining" }"#), "{after}");
    let status = app.json(&["status"]);
    assert!(status["overrides"]["drained"].as_array().unwrap().is_empty(), "{status}");
    assert!(status["overrides"]["weights"].as_object().unwrap().is_empty(), "{status}");
    app.finish();
}

/// What `ctl flows` must tell apart: open TCP connections, closing ones, and UDP flows, per
/// backend and per VIP (192.0.2.11 serves both VIPs).
#[test]
fn flows_are_counted_by_state_per_backend_and_per_vip() {
    use etherparse::PacketBuilder;
    let dir = fresh_dir("cutover-flows");
    let client = [2, 0, 0, 0, 0, 0xc1];
    let ours = [2, 0, 0, 0, 0, 1];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for i in 0..70u16 {
        // 50 connections that stay open, 20 that close (an ACK, then a FIN).
        let tcp = |fin: bool| {
            let mut f = Vec::new();
            let b = PacketBuilder::ethernet2(client, ours)
                .ipv4([198, 51, 100, 7], [203, 0, 113, 10], 60)
                .tcp(30000 + i, 5222, 1, 1024)
                .ack(1);
            let b = if fin { b.fin() } else { b };
            b.write(&mut f, b"hb").unwrap();
            f
        };
        frames.push(tcp(false));
        if i >= 50 {
            frames.push(tcp(true));
        }
    }
    for i in 0..30u16 {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(client, ours)
            .ipv4([198, 51, 100, 8], [203, 0, 113, 10], 60)
            .udp(40000 + i, 8000)
            .write(&mut f, b"heartbeat")
            .unwrap();
        frames.push(f);
    }
    support::write_capture(&dir.join("in.pcap"), &frames);
    let text = format!(
        r#"[engine]
workers = 1
maglev_table_size = 251
flow_capacity = 4096

[tunnel]
source_v4 = "198.51.100.1"

[[port]]
name = "wan"
driver = "pcap"
input = "in.pcap"
output = "out.pcap"
mac = "02:00:00:00:00:01"
next_hop_mac = "02:00:00:00:00:fe"

[[subnet]]
prefix = "203.0.113.0/24"

[control]
socket = "{}"
state = "state.json"
"#,
        dir.join("ctl.sock").display()
    ) + &support::vip_toml("udp://203.0.113.10:8000", "ipip", r#"{ address = "192.0.2.11" }"#)
        + &support::vip_toml(
            "tcp://203.0.113.10",
            "ipip",
            r#"{ address = "192.0.2.11" }, { address = "192.0.2.22" }"#,
        );
    let app = Appliance::start(&dir, &text, &dir.join("ctl.sock"), &[]);
    support::wait_for("every frame", 20, || {
        app.json(&["stats"])["counters"]["rx_packets"].as_u64() == Some(frames.len() as u64)
    });
    // Closing flows live 10 s after their FIN: counted well within that.
    let f = flows(&app, &["flows", "--udp-window", "1h"]);
    let states = |n: &FlowStates| (n.flows, n.tcp_established, n.tcp_closing, n.udp, n.udp_recent);
    assert_eq!(states(&f.states), (100, 50, 20, 30, 30), "{f:?}");
    let vip = |name: &str| f.vips.iter().find(|v| v.vip == name).unwrap();
    let in_vip = |v: &VipFlows, b: &str| {
        v.backends.iter().find(|e| e.backend == b).map(|e| e.states).unwrap_or_default()
    };
    let (udp, tcp) = (vip("udp://203.0.113.10:8000"), vip("tcp://203.0.113.10"));
    assert_eq!(states(&udp.states), (30, 0, 0, 30, 30), "{f:?}");
    assert_eq!(states(&tcp.states), (70, 50, 20, 0, 0), "{f:?}");
    assert_eq!(in_vip(udp, "192.0.2.11").udp, 30, "{f:?}");
    let (shared, other) = (in_vip(tcp, "192.0.2.11"), in_vip(tcp, "192.0.2.22"));
    assert_eq!(shared.tcp_established + other.tcp_established, 50, "{f:?}");
    assert!(shared.flows > 0 && other.flows > 0, "Maglev spreads 70 connections over both: {f:?}");
    // Per backend, over both VIPs.
    let backend = f.backends.iter().find(|b| b.backend == "192.0.2.11").unwrap();
    assert_eq!((backend.states.udp, backend.states.tcp_established), (30, shared.tcp_established), "{f:?}");
    assert!(!backend.removed && !udp.removed && !tcp.removed, "{f:?}");
    // One number per (VIP, backend) pair: 192.0.2.11 twice, 192.0.2.22 once.
    assert_eq!(app.json(&["status"])["flow_numbers"]["given"], 3);
    // A window that nothing was seen in: no UDP flow is recent.
    let f = flows(&app, &["flows", "--udp-window", "0s"]);
    assert_eq!((f.states.udp, f.states.udp_recent), (30, 0), "{f:?}");
    let out = app.ctl(&["flows"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("100 live flows: 50 TCP established, 20 TCP closing, 30 UDP"), "{text}");
    assert!(text.contains("\n  udp://203.0.113.10:8000 "), "{text}");
    assert!(text.contains("\n    192.0.2.11 "), "{text}");
    app.finish();
}
