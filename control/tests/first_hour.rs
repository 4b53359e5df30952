//! An operator's first hour: the README's first appliance has traffic, and an appliance
//! whose port receives nothing says so.

use std::path::Path;

mod support;
use support::{fresh_dir, wait_for, Appliance};

#[test]
fn the_first_appliance_of_the_readme_has_traffic() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/try.toml");
    let dir = fresh_dir("first-try");
    let app = Appliance::start_on(&dir, &config, Path::new("/tmp/vipgate-try/ctl.sock"), &[]);
    wait_for("packets through the first appliance", 20, || {
        let s = app.json(&["stats"]);
        s["counters"]["forwarded"].as_u64().unwrap_or(0) > 1000
    });
    let out = app.ctl_by_config(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("rx_packets"), "{text}");
    assert!(!text.contains("PORT RECEIVES NOTHING"), "{text}");
    app.finish();
}

#[test]
fn a_port_that_receives_nothing_is_said_in_status_and_the_log() {
    let dir = fresh_dir("first-quiet");
    // The memory driver's rings, with nobody writing into them.
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example.toml"))
        .unwrap()
        .replace("/run/vipgate/ctl.sock", dir.join("ctl.sock").to_str().unwrap())
        .replace("/var/lib/vipgate/state.json", dir.join("state.json").to_str().unwrap())
        .replace("metrics = \"127.0.0.1:9620\"", "");
    let app = Appliance::start(&dir, &text, &dir.join("ctl.sock"), &[]);
    wait_for("status to say the port is quiet", 25, || {
        app.json(&["status"])["port_idle_s"].as_u64() >= Some(10)
    });
    let out = app.ctl(&["status"]);
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(status.contains("PORT RECEIVES NOTHING: no packet for"), "{status}");
    let log = app.log();
    assert!(log.contains("the port has received no packet for 10 s"), "{log}");
    assert!(log.contains("idle_polls_before_sleep = 0"), "the log says what the workers do meanwhile: {log}");
    assert_eq!(log.matches("has received no packet").count(), 1, "said once: {log}");
    app.finish();
}

/// `vipgate check` answers alike on any machine; whether the cores exist is `run`'s
/// question, asked at start.
#[test]
fn check_is_the_same_everywhere_and_run_refuses_a_core_this_machine_lacks() {
    let dir = fresh_dir("first-cores");
    let text = support::synth_appliance(&dir, 1, 1000, &[("legacy", "203.0.113.0/24")], "")
        .replace("workers = 1", "cores = [4000]")
        + "\n[[vip]]\naddress = \"203.0.113.10\"\nprotocol = \"udp\"\nencap = \"ipip\"\nbackends = [{ address = \"192.0.2.11\" }]\n";
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, text).unwrap();
    let out = support::vipgate(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = support::vipgate(&["run", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[engine] cores: core 4000 does not exist: this machine has cores 0.."), "{err}");
    assert!(err.contains("nothing started"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
