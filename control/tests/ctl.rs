//! `vipgate run` as an operator drives it: every `vipgate ctl` command against a running
//! engine, the socket's mode, garbage on the socket, reloads by signal, by file change and
//! by command, metrics, and a clean stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::{free_port, fresh_dir, wait_for, Appliance};
use vipgate_control::answer::{ChangeAnswer, StatsAnswer, StatusAnswer, TableAnswer};

fn vipgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vipgate")).args(args).output().expect("vipgate runs")
}

fn config(dir: &Path, metrics: u16, tcp_weight: &str) -> String {
    let base = support::TestConfig {
        workers: 2,
        rate: 20000,
        hash_seed: 11,
        flow_capacity: 4096,
        subnets: vec![("", "203.0.113.0/24")],
        control: format!("metrics = \"127.0.0.1:{metrics}\""),
        ..support::TestConfig::new(dir)
    };
    base.text()
        + &support::vip_toml(
            "udp://203.0.113.10:8000",
            "ipip",
            r#"{ address = "192.0.2.11", weight = 10 }, { address = "192.0.2.12", weight = 10 }"#,
        )
        + &support::vip_toml(
            "tcp://203.0.113.10",
            "gue",
            &format!(
                r#"{{ address = "192.0.2.21", weight = {tcp_weight} }}, {{ address = "192.0.2.22", weight = 10 }}"#
            ),
        )
}

/// A running `vipgate run` of [`config`] (its metrics port beside it).
struct Running {
    app: Appliance,
    metrics: u16,
}

impl std::ops::Deref for Running {
    type Target = Appliance;
    fn deref(&self) -> &Appliance {
        &self.app
    }
}

impl Running {
    fn start(tag: &str) -> Running {
        let dir = fresh_dir(&format!("ctl-{tag}"));
        let metrics = free_port();
        let app = Appliance::start(&dir, &config(&dir, metrics, "10"), &dir.join("ctl.sock"), &[]);
        Running { app, metrics }
    }

    /// Stops it (it must exit 0): its stdout, its log, and its directory (to remove).
    fn stop(self) -> (String, String, PathBuf) {
        let dir = self.app.dir.clone();
        let log = self.app.log();
        let status = self.app.stop();
        assert!(status.success(), "vipgate run exited with {status}: {log}");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        (read("stdout"), read("log"), dir)
    }
}

#[test]
fn every_ctl_command_against_a_running_engine() {
    let app = Running::start("commands");
    let mode = std::fs::metadata(&app.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    // status: text and JSON.
    let out = app.ctl(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("generation 1"), "{text}");
    assert!(text.contains("overrides: none"), "{text}");
    let status: StatusAnswer = app.answer(&["status"]);
    assert_eq!(status.workers.len(), 2);
    wait_for("traffic", 20, || {
        app.answer::<StatsAnswer>(&["stats"]).counters.get("forwarded").is_some_and(|&n| n > 500)
    });

    // stats: every counter, per VIP and backend.
    let stats: StatsAnswer = app.answer(&["stats"]);
    for name in ["rx_packets", "forwarded", "drop_malformed", "drop_no_vip", "drop_tx_full", "flow_hits"] {
        assert!(stats.counters.get(name).is_some(), "no {name} in {:?}", stats.counters);
    }
    assert_eq!(stats.counters.0[0].0, "rx_packets", "counters in their order");
    assert_eq!(stats.vips.len(), 2);
    let per_backend: u64 = stats.vips.iter().flat_map(|v| &v.backends).map(|b| b.packets).sum();
    assert!(per_backend > 0);
    let per_vip: u64 = stats.vips.iter().map(|v| v.packets).sum();
    assert_eq!(per_vip, per_backend);

    // drain: a reload that survives reloads, shown by status; the table shows no slots.
    let out = app.ctl(&["drain", "192.0.2.11"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 2 running on every worker"));
    let table: TableAnswer = app.answer(&["table", "203.0.113.10:8000/udp"]);
    let b = &table.backends[0];
    assert_eq!((b.backend.as_str(), b.state.as_str(), b.slots), ("192.0.2.11", "draining", 0));
    assert_eq!(table.backends[1].slots, 251);
    let reload: ChangeAnswer = app.answer(&["reload"]);
    assert_eq!((reload.ok, reload.generation), (true, 3), "{reload:?}");
    let status: StatusAnswer = app.answer(&["status"]);
    assert_eq!(status.overrides.drained, ["192.0.2.11"], "{status:?}");
    let table: TableAnswer = app.answer(&["table", "udp://203.0.113.10:8000"]);
    assert_eq!(table.backends[0].slots, 0, "the drain survived the reload");

    // weight, then undrain takes every override of the backend back.
    let out = app.ctl(&["weight", "192.0.2.21", "30"]);
    assert!(out.status.success(), "{out:?}");
    let table: TableAnswer = app.answer(&["table", "203.0.113.10/tcp"]);
    let slots: Vec<u32> = table.backends.iter().map(|b| b.slots).collect();
    assert!(slots[0] > 2 * slots[1], "weight 30 vs 10: {slots:?}");
    assert_eq!(app.answer::<StatusAnswer>(&["status"]).overrides.weights.get("192.0.2.21"), Some(&30));
    assert!(app.ctl(&["undrain", "192.0.2.11"]).status.success());
    assert!(app.ctl(&["undrain", "192.0.2.21"]).status.success());
    let status: StatusAnswer = app.answer(&["status"]);
    assert!(status.overrides.drained.is_empty(), "{status:?}");
    assert!(status.overrides.weights.is_empty(), "{status:?}");
    assert_eq!(status.generation, 6);
    for w in &status.workers {
        assert_eq!(w.generation, 6, "{status:?}");
    }

    // flows: per worker and per backend.
    let flows = app.json(&["flows"]);
    assert_eq!(flows["ok"], true, "{flows}");
    assert_eq!(flows["workers"].as_array().unwrap().len(), 2);
    let total = flows["total"].as_u64().unwrap();
    let by_backend: u64 =
        flows["backends"].as_array().unwrap().iter().map(|b| b["flows"].as_u64().unwrap()).sum();
    assert!(total > 0 && by_backend == total, "{flows}");

    // Errors: an unknown backend, an unknown VIP, a wrong command.
    let out = app.ctl(&["drain", "192.0.2.99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backend 192.0.2.99"), "{out:?}");
    let out = app.ctl(&["table", "203.0.113.99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no VIP"), "{out:?}");
    let out = app.ctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(app.ctl(&["status"]).status.success(), "still answering");

    // Metrics: the same counters with labels.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", app.metrics)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(body.contains("vipgate_drops_total{worker=\"0\",reason=\"malformed\"}"), "{body}");
    assert!(
        body.contains("vipgate_backend_packets_total{vip=\"udp://203.0.113.10:8000\",backend=\"192.0.2.11\"")
    );
    assert!(body.contains("vipgate_generation 6"));
    assert!(body.contains("# TYPE vipgate_backend_weight gauge\n"), "{body}");
    assert!(
        body.contains("vipgate_backend_weight{vip=\"udp://203.0.113.10:8000\",backend=\"192.0.2.11\"} 10\n"),
        "{body}"
    );

    let (stdout, _, dir) = app.stop();
    assert!(stdout.contains("stopped after") && stdout.contains("forwarded"), "{stdout}");
    assert!(!dir.join("ctl.sock").exists(), "the socket is removed on exit");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn garbage_on_the_socket_gets_errors_and_the_engine_goes_on() {
    let app = Running::start("garbage");
    let mut s = UnixStream::connect(&app.socket).unwrap();
    s.write_all(b"hello\n{\"cmd\":42}\n[1,2]\n{\"cmd\":\"drain\"}\n\xff\xfe\n{\"cmd\":\"status\"}\n")
        .unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    for expect in ["not JSON", "\"cmd\"", "JSON object", "needs \"backend\"", "not JSON"] {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{line}");
        assert!(v["error"].as_str().unwrap().contains(expect), "{line} lacks {expect}");
    }
    let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(v["ok"], true);
    // An over-long line closes that connection only.
    let mut s2 = UnixStream::connect(&app.socket).unwrap();
    let _ = s2.write_all(&vec![b'x'; 100_000]);
    let _ = s2.write_all(b"\n");
    drop(s2);
    assert_eq!(app.generation(), 1);
    let out = app.ctl(&["stats"]);
    assert!(out.status.success());
    app.app.finish();
}

#[test]
fn reloads_by_sighup_by_file_change_and_a_bad_config_changes_nothing() {
    let app = Running::start("reload");
    let pid = app.pid();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("the SIGHUP reload", 20, || app.generation() == 2);
    // The file changes: picked up within a few seconds.
    std::fs::write(&app.config, config(&app.dir, app.metrics, "30")).unwrap();
    wait_for("the file-change reload", 20, || app.generation() == 3);
    let table = app.json(&["table", "203.0.113.10/tcp"]);
    assert_eq!(table["backends"][0]["weight"], 30);
    // A bad config: `ctl reload` reports it with file:line:col and exit 1; nothing changes.
    std::fs::write(&app.config, config(&app.dir, app.metrics, "-5")).unwrap();
    // The watcher takes it once it has settled, refuses it, and status says so.
    wait_for("the watcher's refusal", 20, || app.json(&["status"])["reload_error"].is_string());
    let out = app.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let bad = config(&app.dir, app.metrics, "-5");
    let line = bad.lines().position(|l| l.contains("weight = -5")).unwrap() + 1;
    let col = bad.lines().nth(line - 1).unwrap().find("-5").unwrap() + 1;
    let at = format!("{}:{line}:{col}:", app.config.display());
    assert!(err.contains(&at) && err.contains("weight -5 is out of range"), "{err}");
    assert_eq!(app.generation(), 3);
    let table = app.json(&["table", "203.0.113.10/tcp"]);
    assert_eq!(table["backends"][0]["weight"], 30, "the running config stays");
    let (_, log, dir) = app.stop();
    assert!(log.contains("SIGHUP: generation 2"), "{log}");
    assert!(log.contains("changed: generation 3"), "{log}");
    assert!(log.contains("not applied, the running config stays"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_refuses_a_bad_config_and_a_socket_in_use() {
    let out = vipgate(&["run", "--config", "/nonexistent/vipgate.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vipgate.toml"), "{out:?}");
    let app = Running::start("twice");
    let out = vipgate(&["run", "--config", app.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another vipgate is answering"), "{out:?}");
    assert!(app.ctl(&["status"]).status.success(), "the first one is undisturbed");
    app.app.finish();
}

#[test]
fn a_silent_client_does_not_stall_the_others() {
    let app = Running::start("silent");
    // Half a request, never finished, and a connection that says nothing.
    let mut half = UnixStream::connect(&app.socket).unwrap();
    half.write_all(b"{\"cmd\":\"sta").unwrap();
    let _mute = UnixStream::connect(&app.socket).unwrap();
    for _ in 0..3 {
        let out = app.ctl(&["status"]);
        assert!(out.status.success(), "{out:?}");
    }
    drop(half);
    app.app.finish();
}

/// The memory, pcap and synth drivers need no privileges: as root, the test runs the
/// appliance as `nobody` (through setpriv); the socket belongs to that user, mode 0600.
#[test]
fn runs_without_privileges_on_the_synth_driver() {
    use std::os::unix::fs::MetadataExt;
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let dir = std::env::temp_dir().join(format!("vipgate-ctl-nobody-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, config(&dir, free_port(), "10")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    // As nobody when root (setpriv execs vipgate: the same process).
    let nobody: &[&str] =
        if is_root { &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] } else { &[] };
    let socket = dir.join("ctl.sock");
    let app = Appliance::start_wrapped(&dir, &path, &socket, nobody, &[]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    if is_root {
        assert_eq!(meta.uid(), 65534, "the socket belongs to the user running the appliance");
    }
    let out = app.ctl(&["status"]);
    assert!(out.status.success(), "{out:?}");
    app.finish();
}
