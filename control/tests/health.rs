//! Health checks against real backends: HTTP servers inside a network namespace that the
//! test creates (the backends' documentation addresses on its loopback), started, stopped
//! and broken by the test, with `vipgate run` probing them from inside the namespace.
//! Needs root and iproute2 (CI runs as root).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod support;
use support::{ctl_json, wait_for, Netns};
use vipgate_control::answer::TableAnswer;

/// The backends' namespace: their addresses on its loopback.
fn backends_ns() -> Netns {
    let ns = Netns::new("health");
    for a in ["192.0.2.11/32", "192.0.2.12/32"] {
        ns.run(&["ip", "addr", "add", a, "dev", "lo"]);
    }
    ns
}

struct Backend {
    child: Child,
}

impl Backend {
    fn start(ns: &Netns, addr: &str, broken: &Path) -> Backend {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/backend.py");
        let child = ns
            .cmd(&["python3", script.to_str().unwrap(), addr, "8080", broken.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Backend { child }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path) -> String {
    let base = support::TestConfig {
        flow_capacity: 4096,
        subnets: vec![("", "203.0.113.0/24")],
        ..support::TestConfig::new(dir)
    };
    // (A key after the backends is still the VIP's.)
    let both = r#"{ address = "192.0.2.11" }, { address = "192.0.2.12" }"#;
    base.text()
        + &support::vip_toml("udp://203.0.113.10:8000", "ipip", both)
        + r#"health = { kind = "tcp", port = 8080, interval = "200ms", timeout = "100ms", rise = 2, fall = 2 }
"# + &support::vip_toml("tcp://203.0.113.10:443", "ipip", both)
        + r#"health = { kind = "http", port = 8080, path = "/health", interval = "200ms", timeout = "150ms", rise = 2, fall = 2 }
"#
}

/// Slots per backend of a VIP, in backend order.
fn slots(socket: &Path, vip: &str) -> Vec<(String, String, u64)> {
    let t: TableAnswer = serde_json::from_value(ctl_json(socket, &["table", vip])).expect("a table answer");
    t.backends.into_iter().map(|b| (b.backend, b.state, u64::from(b.slots))).collect()
}

fn target_state(socket: &Path, target: &str) -> String {
    let s = ctl_json(socket, &["status"]);
    s["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == target)
        .map_or(String::new(), |h| h["state"].as_str().unwrap().to_string())
}

#[test]
fn backends_that_fail_their_checks_go_down_come_back_and_a_pool_fails_open() {
    let ns = backends_ns();
    let dir: PathBuf = std::env::temp_dir().join(format!("vipgate-health-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (broken11, broken12) = (dir.join("broken-11"), dir.join("broken-12"));
    let b11 = Backend::start(&ns, "192.0.2.11", &broken11);
    let mut b12 = Some(Backend::start(&ns, "192.0.2.12", &broken12));
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, config(&dir)).unwrap();
    let app = ns
        .cmd(&[env!("CARGO_BIN_EXE_vipgate"), "run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = dir.join("ctl.sock");
    wait_for("the socket", 20, || UnixStream::connect(&socket).is_ok());
    let udp = "203.0.113.10:8000/udp";
    let tcp = "203.0.113.10:443/tcp";
    wait_for("four targets probed", 20, || {
        let s = ctl_json(&socket, &["status"]);
        let h = s["health"].as_array().unwrap();
        h.len() == 4 && h.iter().all(|t| t["probes"].as_u64().unwrap() >= 2 && t["state"] == "up")
    });

    // Stop .12: both checks see it, it goes down in both VIPs, its slots move.
    drop(b12.take());
    wait_for("tcp 192.0.2.12 down", 20, || target_state(&socket, "tcp 192.0.2.12:8080") == "down");
    wait_for("the tables to follow", 20, || {
        slots(&socket, udp)[1].1 == "down" && slots(&socket, tcp)[1].1 == "down"
    });
    assert_eq!(slots(&socket, udp)[1].2, 0);
    assert_eq!(slots(&socket, udp)[0].2, 251);
    let s = ctl_json(&socket, &["status"]);
    let t = s["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == "tcp 192.0.2.12:8080")
        .unwrap()
        .clone();
    assert!(t["last_error"].as_str().unwrap().contains("refused"), "{t}");

    // It comes back.
    b12 = Some(Backend::start(&ns, "192.0.2.12", &broken12));
    wait_for("192.0.2.12 back", 20, || {
        slots(&socket, udp)[1].1 == "active" && slots(&socket, tcp)[1].1 == "active"
    });
    assert!(slots(&socket, udp)[1].2 > 80, "{:?}", slots(&socket, udp));

    // HTTP: .11 answers 503 -> down for the HTTP check only; the TCP check still passes.
    std::fs::write(&broken11, "").unwrap();
    wait_for("http .11 down", 20, || target_state(&socket, "http /health 192.0.2.11:8080") == "down");
    wait_for("the tcp VIP's table", 20, || slots(&socket, tcp)[0].1 == "down");
    assert_eq!(slots(&socket, udp)[0].1, "active", "the tcp check of .11 passes");

    // Both broken for HTTP: the tcp VIP fails open, with an alarm; nothing is dropped.
    std::fs::write(&broken12, "").unwrap();
    wait_for("http .12 down", 20, || target_state(&socket, "http /health 192.0.2.12:8080") == "down");
    wait_for("the alarm", 20, || !ctl_json(&socket, &["status"])["alarms"].as_array().unwrap().is_empty());
    let s = ctl_json(&socket, &["status"]);
    assert!(s["alarms"][0].as_str().unwrap().contains("tcp://203.0.113.10:443"), "{s}");
    let t = slots(&socket, tcp);
    assert_eq!((t[0].1.as_str(), t[1].1.as_str()), ("active", "active"), "fail open: {t:?}");
    assert_eq!(t[0].2 + t[1].2, 251);

    let pid = app.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = app.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("health: tcp 192.0.2.12:8080 is down"), "{log}");
    assert!(log.contains("health: tcp 192.0.2.12:8080 is up"), "{log}");
    assert!(log.contains("alarm: tcp://203.0.113.10:443"), "{log}");
    drop((b11, b12));
    let _ = std::fs::remove_dir_all(&dir);
}
