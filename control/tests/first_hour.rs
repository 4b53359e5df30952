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
    assert!(app.stop().success());
    let _ = std::fs::remove_dir_all(dir);
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
    assert!(app.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}
