//! The operator scripts of scripts/, each run as an operator runs it against a real
//! `vipgate run` (synth driver) that the test starts and stops.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

fn script(name: &str, args: &[&str]) -> Output {
    Command::new(scripts().join(name))
        .args(args)
        .env("VIPGATE", env!("CARGO_BIN_EXE_vipgate"))
        .env_remove("VIPGATE_CONFIG")
        .output()
        .expect("the script runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The config: a UDP VIP on the old site (.11, .12) with the new site's backends listed at
/// weight 0 (`new_state` for them), and a TCP VIP.
fn config(dir: &Path, new_state: &str) -> String {
    let base = support::TestConfig {
        workers: 2,
        rate: 20000,
        hash_seed: 5,
        subnets: vec![("", "203.0.113.0/24")],
        ..support::TestConfig::new(dir)
    };
    let old_and_new = format!(
        r#"
  {{ address = "192.0.2.11", weight = 100 }},  # old site
  {{ address = "192.0.2.12", weight = 100 }},  # old site
  {{ address = "198.51.100.21", weight = 0, state = "{new_state}" }},
  {{ address = "198.51.100.22", weight = 0, state = "{new_state}" }},
"#
    );
    base.text()
        + &support::vip_toml("udp://203.0.113.10:8000", "ipip", &old_and_new)
        + &support::vip_toml(
            "tcp://203.0.113.10",
            "gue",
            r#"{ address = "192.0.2.21", weight = 1 }, { address = "192.0.2.22", weight = 1 }"#,
        )
}

struct Appliance {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
}

impl Appliance {
    fn start(tag: &str, new_state: &str) -> Appliance {
        let dir = std::env::temp_dir().join(format!("vipgate-scripts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("vipgate.toml");
        std::fs::write(&config, self::config(&dir, new_state)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vipgate"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(dir.join("ctl.sock")).is_err() {
            assert!(Instant::now() < deadline, "the appliance did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Appliance { child, dir, config }
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
            .args(["ctl", "--json", "--config", self.cfg(), "status"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn every_script_has_help_and_refuses_unknown_arguments() {
    for name in [
        "reload.sh",
        "drain.sh",
        "undrain.sh",
        "status.sh",
        "cutover.sh",
        "install.sh",
        "setup-hugepages.sh",
        "bind-nic.sh",
    ] {
        let out = script(name, &["--help"]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("Usage: "), "{name}");
        let out = script(name, &["--frobnicate"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
    }
}

#[test]
fn reload_refuses_what_check_refuses_and_reloads_the_rest() {
    let app = Appliance::start("reload", "active");
    let out = script("reload.sh", &["--config", app.cfg()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("generation 2 running on every worker"), "{}", text(&out));
    let good = std::fs::read_to_string(&app.config).unwrap();
    std::fs::write(
        &app.config,
        good.replace(
            "weight = 100 },  # old site\n  { address = \"192.0.2.12\"",
            "weight = -1 },\n  { address = \"192.0.2.12\"",
        ),
    )
    .unwrap();
    let out = script("reload.sh", &["--config", app.cfg()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("weight -1 is out of range") && text(&out).contains("refused"),
        "{}",
        text(&out)
    );
    std::fs::write(&app.config, good).unwrap();
    // The watcher may have seen the broken file too; either way nothing was applied.
    assert!(app.status()["generation"].as_u64().unwrap() >= 2);
    assert_eq!(app.status()["last_reload"]["generation"], app.status()["generation"]);
}

#[test]
fn drain_and_undrain_twice_each() {
    let app = Appliance::start("drain", "active");
    for _ in 0..2 {
        let out = script("drain.sh", &["--config", app.cfg(), "192.0.2.11"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(app.status()["overrides"]["drained"], serde_json::json!(["192.0.2.11"]));
    }
    let out = script("undrain.sh", &["--config", app.cfg(), "192.0.2.11"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = script("undrain.sh", &["--config", app.cfg(), "192.0.2.11"]);
    assert!(out.status.success() && text(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(app.status()["overrides"]["drained"], serde_json::json!([]));
    let out = script("drain.sh", &["--config", app.cfg(), "192.0.2.99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no backend 192.0.2.99"), "{}", text(&out));
}

#[test]
fn status_shows_rates_drops_and_backends() {
    let app = Appliance::start("status", "active");
    let out = script("status.sh", &["--config", app.cfg(), "--interval", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.starts_with("generation 1"), "{s}");
    assert!(s.contains("Mpps") && s.contains("worker 1:"), "{s}");
    for reason in ["malformed", "no_vip", "not_vip", "tx_full"] {
        assert!(s.lines().any(|l| l.trim_start().starts_with(reason)), "no {reason}: {s}");
    }
    let line = s.lines().find(|l| l.contains("192.0.2.11")).unwrap();
    assert!(line.contains("active") && line.contains("share") && line.contains("live flows"), "{line}");
    let after = line.split("live flows ").nth(1).unwrap();
    let live: u64 = after.split_whitespace().next().unwrap().parse().unwrap();
    assert!(live > 0, "{line}");
    assert!(after.contains("(TCP ") && after.contains("closing; UDP "), "by state: {line}");
}

#[test]
fn cutover_moves_to_the_new_site_and_writes_the_end_state() {
    let app = Appliance::start("cutover", "active");
    let args = [
        "--config",
        app.cfg(),
        "--from",
        "192.0.2.11,192.0.2.12",
        "--to",
        "198.51.100.21,198.51.100.22",
        "--steps",
        "2",
        "--step-wait",
        "1",
        "--flows-below",
        "1000000",
        "--flows-timeout",
        "10",
    ];
    let before = std::fs::read_to_string(&app.config).unwrap();
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = script("cutover.sh", &dry);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("step 2: 198.51.100.21=100 198.51.100.22=100 192.0.2.11=0 192.0.2.12=0"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("65537") || text(&out).contains("251/251"),
        "the diff is shown: {}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&app.config).unwrap(), before, "a dry run changes nothing");
    assert_eq!(app.status()["generation"], 1);

    let out = script("cutover.sh", &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cutover: done"), "{}", text(&out));
    let after = std::fs::read_to_string(&app.config).unwrap();
    assert!(after.contains(r#"{ address = "198.51.100.21", weight = 100 }"#), "{after}");
    assert!(after.contains(r#"{ address = "192.0.2.11", weight = 100, state = "draining" }"#), "{after}");
    assert!(after.contains("# old site"), "comments kept: {after}");
    let s = app.status();
    assert!(s["overrides"]["drained"].as_array().unwrap().is_empty(), "{s}");
    assert!(s["overrides"]["weights"].as_object().unwrap().is_empty(), "{s}");
    let table = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["ctl", "--json", "--config", app.cfg(), "table", "203.0.113.10:8000/udp"])
        .output()
        .unwrap();
    let t: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    let slots: Vec<(String, u64)> = t["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["backend"].as_str().unwrap().to_string(), b["slots"].as_u64().unwrap()))
        .collect();
    assert_eq!(slots[0], ("192.0.2.11".to_string(), 0), "{slots:?}");
    assert_eq!(slots[2].1 + slots[3].1, 251, "{slots:?}");
    // A second run converges on the same end state.
    let out = script("cutover.sh", &args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&app.config).unwrap(), after);
}

#[test]
fn cutover_to_backends_that_are_down_rolls_back() {
    let app = Appliance::start("rollback", "down");
    let before = std::fs::read_to_string(&app.config).unwrap();
    let out = script(
        "cutover.sh",
        &[
            "--config",
            app.cfg(),
            "--from",
            "192.0.2.11,192.0.2.12",
            "--to",
            "198.51.100.21",
            "--steps",
            "1",
            "--step-wait",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("rolled back"), "{}", text(&out));
    let s = app.status();
    assert!(s["overrides"]["weights"].as_object().unwrap().is_empty(), "{s}");
    assert_eq!(std::fs::read_to_string(&app.config).unwrap(), before, "the file is untouched");
    let out = script("cutover.sh", &["--config", app.cfg(), "--from", "192.0.2.11", "--to", "198.51.100.99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("198.51.100.99 is not in the running config"), "{}", text(&out));
}

#[test]
fn install_twice_into_a_root_keeps_the_config() {
    let root = std::env::temp_dir().join(format!("vipgate-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let args = ["--binary", env!("CARGO_BIN_EXE_vipgate"), "--root", root.to_str().unwrap()];
    let out = script("install.sh", &args);
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "usr/local/bin/vipgate",
        "usr/local/lib/vipgate/cutover.sh",
        "usr/local/lib/vipgate/lib.sh",
        "etc/vipgate/vipgate.toml",
        "etc/default/vipgate",
    ] {
        assert!(root.join(f).exists(), "{f}");
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/vipgate.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/vipgate run --config ${VIPGATE_CONFIG}"), "{unit}");
    assert!(unit.contains("Restart=on-failure") && unit.contains("RuntimeDirectory=vipgate"), "{unit}");
    assert!(!unit.contains("@PREFIX@"));
    std::fs::write(root.join("etc/vipgate/vipgate.toml"), "# mine\n").unwrap();
    let out = script("install.sh", &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("keeping"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(root.join("etc/vipgate/vipgate.toml")).unwrap(), "# mine\n");
    // The installed scripts work from where they were installed.
    let out = Command::new(root.join("usr/local/lib/vipgate/reload.sh")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn setup_hugepages_dry_run_and_zero_pages_change_nothing() {
    let out = script("setup-hugepages.sh", &["--pages", "0"]);
    assert!(out.status.success() && text(&out).contains("nothing to do"), "{}", text(&out));
    let before = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default();
    let out =
        script("setup-hugepages.sh", &["--pages", "64", "--dry-run", "--mount", "/nonexistent/hugepages"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("would mount hugetlbfs at /nonexistent/hugepages"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap_or_default(), before);
    let out = script("setup-hugepages.sh", &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bind_nic_dry_run_says_what_it_would_do_and_checks_the_address() {
    let out = script("bind-nic.sh", &["--dry-run", "--bind", "0000:3b:00.0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("would run: modprobe vfio-pci"), "{}", text(&out));
    assert!(text(&out).contains("--bind=vfio-pci 0000:3b:00.0"), "{}", text(&out));
    let out = script("bind-nic.sh", &["--dry-run", "--unbind", "0000:3b:00.0", "--driver", "ice"]);
    assert!(text(&out).contains("--bind=ice 0000:3b:00.0"), "{}", text(&out));
    let out = script("bind-nic.sh", &["--bind", "3b:00.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not a PCI address"), "{}", text(&out));
    let out = script("bind-nic.sh", &["--dry-run", "--unbind", "0000:3b:00.0"]);
    assert_eq!(out.status.code(), Some(2), "unbinding needs the kernel driver");
}
