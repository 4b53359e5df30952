//! Nothing an operator does, and no fault, silently takes a VIP down: real `vipgate run`
//! processes against an empty or half-written config file, reloads that would remove
//! VIPs, keys that need a restart, health checks across reloads and against hanging
//! backends, a kill -9 after a drain, a crowd of slow clients under a small descriptor
//! limit, and the errors an operator reads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{free_port, fresh_dir, metric, vipgate, wait_for, Appliance};

/// Everything but the VIPs, with two subnets (any prefix of the file that ends between
/// VIPs is a valid config of its own, as a slow writer leaves it).
fn preamble(dir: &Path, workers: u32, metrics: u16, control: &str) -> String {
    support::synth_appliance(
        dir,
        workers,
        2000,
        &[("legacy-a", "203.0.113.0/25"), ("legacy-b", "203.0.113.128/25")],
        &format!("metrics = \"127.0.0.1:{metrics}\"\n{control}"),
    )
}

fn vip_a() -> String {
    support::vip_toml(
        "udp://203.0.113.10:8000",
        "ipip",
        r#"{ address = "192.0.2.11", weight = 10 }, { address = "192.0.2.12", weight = 10 }"#,
    )
}

fn vip_b() -> String {
    support::vip_toml(
        "tcp://203.0.113.10",
        "gue",
        r#"{ address = "192.0.2.21", weight = 10 }, { address = "192.0.2.22", weight = 10 }"#,
    )
}

fn vip_c() -> String {
    support::vip_toml(
        "udp://203.0.113.200:53",
        "ipip",
        r#"{ address = "192.0.2.31" }, { address = "192.0.2.11" }"#,
    )
}

fn text(o: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The entry of `name` in a `ctl table` answer.
fn backend<'a>(table: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let all = table["backends"].as_array().unwrap();
    all.iter().find(|b| b["backend"] == name).unwrap_or_else(|| panic!("no {name} in {table}"))
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("ctl.sock")
}

/// An appliance with the three VIPs, watching its file with `control` in `[control]`.
fn start_three(tag: &str, control: &str) -> (Appliance, u16) {
    let dir = fresh_dir(tag);
    let metrics = free_port();
    let text = format!("{}{}{}{}", preamble(&dir, 1, metrics, control), vip_a(), vip_b(), vip_c());
    (Appliance::start(&dir, &text, &socket(&dir), &[]), metrics)
}

#[test]
fn check_refuses_an_empty_or_cut_short_config_and_names_the_file() {
    let dir = fresh_dir("safety-check");
    let full = format!("{}{}", preamble(&dir, 1, 9620, ""), vip_a());
    for (name, content) in [("empty.toml", String::new()), ("cut.toml", preamble(&dir, 1, 9620, ""))] {
        let path = dir.join(name);
        std::fs::write(&path, &content).unwrap();
        let out = vipgate(&["check", "--config", path.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        assert!(stderr.contains(&format!("{}: no [[vip]]", path.display())), "{name}: {stderr}");
        assert!(!stderr.contains(&format!("{}:1:1", path.display())), "no invented position: {stderr}");
    }
    let path = dir.join("full.toml");
    std::fs::write(&path, full).unwrap();
    assert!(vipgate(&["check", "--config", path.to_str().unwrap()]).status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_watcher_never_applies_an_empty_or_half_written_file() {
    let (app, metrics) = start_three("safety-watch", "");
    let g = app.generation();

    // Truncated to nothing: refused once the file has settled, and said in status.
    app.rewrite("");
    wait_for("the empty file's refusal", 20, || {
        app.json(&["status"])["reload_error"].as_str().is_some_and(|e| e.contains("no [[vip]]"))
    });
    assert_eq!(app.generation(), g);
    assert_eq!(app.json(&["table", "203.0.113.200:53/udp"])["ok"], true, "VIP C is still served");

    // Half-written: valid TOML that stops after the first VIP. Removing two VIPs
    // subnet is refused, and named.
    let dir = app.dir.clone();
    let pre = preamble(&dir, 1, metrics, "");
    app.rewrite(&format!("{pre}{}", vip_a()));
    wait_for("the half file's refusal", 20, || {
        app.json(&["status"])["reload_error"].as_str().is_some_and(|e| e.contains("remove VIP"))
    });
    let status = app.json(&["status"]);
    let error = status["reload_error"].as_str().unwrap();
    for gone in ["remove VIP tcp://203.0.113.10", "remove VIP udp://203.0.113.200:53"] {
        assert!(error.contains(gone), "{gone} not in {error}");
    }
    assert_eq!(app.generation(), g);
    let out = app.ctl(&["status"]);
    assert!(text(&out).0.contains("LAST RELOAD NOT APPLIED"), "{out:?}");
    let body = Appliance::metrics(metrics);
    assert_eq!(metric(&body, "vipgate_reloads_total{result=\"refused\"}"), Some(1.0), "{body}");
    assert_eq!(metric(&body, "vipgate_reloads_total{result=\"invalid\"}"), Some(1.0), "{body}");
    assert_eq!(metric(&body, "vipgate_reload_failing"), Some(1.0));

    // The whole file written slowly, a VIP at a time 700 ms apart, in place: every prefix
    // is a valid config, yet only the finished file is applied, once.
    let mut f = std::fs::File::create(&app.config).unwrap();
    for part in
        [pre.as_str(), &vip_a(), &vip_b(), &vip_c().replace("192.0.2.31\" }", "192.0.2.31\", weight = 50 }")]
    {
        f.write_all(part.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(700));
    }
    drop(f);
    wait_for("the finished file", 20, || app.generation() > g);
    let table = app.json(&["table", "203.0.113.200:53/udp"]);
    assert_eq!(backend(&table, "192.0.2.31")["weight"], 50, "{table}");
    let out = app.ctl(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(app.generation(), g + 2, "the watcher applied the slow write once, then ctl reload");
    assert!(app.json(&["status"])["reload_error"].is_null());
    assert_eq!(metric(&Appliance::metrics(metrics), "vipgate_reload_failing"), Some(0.0));

    // A new file renamed over the path is applied without waiting for it to settle.
    let tmp = app.dir.join("vipgate.toml.new");
    std::fs::write(&tmp, format!("{pre}{}{}{}", vip_a(), vip_b(), vip_c())).unwrap();
    std::fs::rename(&tmp, &app.config).unwrap();
    wait_for("the renamed file", 20, || app.generation() == g + 3);

    let log = app.log();
    assert!(log.contains("changed: not applied, the running config stays"), "{log}");
    app.finish();
}

#[test]
fn a_reload_that_removes_is_refused_until_confirmed() {
    // The watcher waits a minute here: every reload below is the operator's.
    let (app, metrics) = start_three("safety-removals", "reload_settle = \"60s\"");
    let dir = app.dir.clone();
    let pre = preamble(&dir, 1, metrics, "reload_settle = \"60s\"");
    let g = app.generation();
    // VIP C and its subnet go.
    let without_c = pre.replace("[[subnet]]\nname = \"legacy-b\"\nprefix = \"203.0.113.128/25\"\n", "")
        + &vip_a()
        + &vip_b();
    app.rewrite(&without_c);
    let out = app.ctl(&["reload"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for what in [
        "remove subnet \"legacy-b\" (203.0.113.128/25)",
        "remove VIP udp://203.0.113.200:53",
        "the running config stays",
        "--allow-removals",
    ] {
        assert!(err.contains(what), "{what} not in {err}");
    }
    assert_eq!(app.json(&["table", "203.0.113.200:53/udp"])["ok"], true);

    // SIGHUP never confirms.
    assert!(Command::new("kill").args(["-HUP", &app.pid()]).status().unwrap().success());
    wait_for("the SIGHUP refusal", 20, || app.log().contains("SIGHUP: not applied"));
    assert_eq!(app.generation(), g);

    // The dry run shows the diff and the refusal, and changes nothing.
    let out = app.ctl(&["reload", "--dry-run"]);
    let (dry, _) = text(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(dry.contains("udp://203.0.113.200:53") && dry.contains("(removed)"), "{dry}");
    assert!(dry.contains("refused unless confirmed: it would remove VIP udp://203.0.113.200:53"), "{dry}");
    assert_eq!(app.generation(), g);

    // reload.sh shows the same, refuses, and applies only with --allow-removals.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/reload.sh");
    let run_script = |args: &[&str]| {
        Command::new(&script)
            .args(["--config", app.config.to_str().unwrap()])
            .args(args)
            .env("VIPGATE", env!("CARGO_BIN_EXE_vipgate"))
            .output()
            .unwrap()
    };
    let out = run_script(&[]);
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{so}{se}");
    assert!(so.contains("(removed)"), "the diff first: {so}");
    assert!(se.contains("remove VIP udp://203.0.113.200:53") && se.contains("--allow-removals"), "{se}");
    assert_eq!(app.generation(), g);
    let body = Appliance::metrics(metrics);
    assert_eq!(metric(&body, "vipgate_reloads_total{result=\"refused\"}"), Some(3.0), "{body}");

    let out = run_script(&["--allow-removals"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(app.generation(), g + 1);
    let out = app.ctl(&["table", "203.0.113.200:53/udp"]);
    assert_eq!(out.status.code(), Some(1), "VIP C is gone on purpose");
    assert!(app.json(&["status"])["reload_error"].is_null());

    // A VIP whose every backend would drain is refused too, and named with what it keeps.
    app.rewrite(&format!(
        "{}{}{}",
        pre.replace("[[subnet]]\nname = \"legacy-b\"\nprefix = \"203.0.113.128/25\"\n", ""),
        vip_a().replace("weight = 10 }", "weight = 10, state = \"draining\" }"),
        vip_b()
    ));
    let out = app.ctl(&["reload"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(
            "leave VIP udp://203.0.113.10:8000 with no backend taking new flows (192.0.2.11 draining, 192.0.2.12 draining)"
        ),
        "{err}"
    );
    app.finish();
}

#[test]
fn a_drain_or_weight_that_empties_a_vip_is_refused_unless_forced() {
    let (app, _) = start_three("safety-drain", "");
    assert!(app.ctl(&["drain", "192.0.2.12"]).status.success());
    let out = app.ctl(&["drain", "192.0.2.11"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("drain 192.0.2.11: not applied, it would leave VIP udp://203.0.113.10:8000 with no backend taking new flows (192.0.2.11 draining, 192.0.2.12 draining)"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    let out = app.ctl(&["weight", "192.0.2.21", "0"]);
    assert!(out.status.success(), "192.0.2.22 still takes tcp://203.0.113.10: {out:?}");
    let out = app.ctl(&["weight", "192.0.2.22", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("leave VIP tcp://203.0.113.10 with no backend"), "{out:?}");
    let out = app.ctl(&["drain", "192.0.2.11", "--force"]);
    assert!(out.status.success(), "{out:?}");
    let table = app.json(&["table", "203.0.113.10:8000/udp"]);
    let slots: Vec<u64> =
        table["backends"].as_array().unwrap().iter().map(|b| b["slots"].as_u64().unwrap()).collect();
    assert_eq!(slots, [0, 0], "forced: nothing takes new flows, as asked: {table}");
    app.finish();
}

#[test]
fn keys_that_need_a_restart_are_named_and_ctl_finds_a_moved_socket() {
    let dir = fresh_dir("safety-restart");
    let metrics = free_port();
    let control = "reload_settle = \"60s\"";
    let text0 = format!("{}{}", preamble(&dir, 1, metrics, control), vip_a());
    let app = Appliance::start(&dir, &text0, &socket(&dir), &[]);
    let changed = format!("{}{}", preamble(&dir, 2, metrics, control), vip_a())
        .replace("flow_capacity = 65536", "flow_capacity = 8192")
        .replace(&socket(&dir).display().to_string(), &dir.join("moved.sock").display().to_string())
        .replace("weight = 10 }, { address = \"192.0.2.12\"", "weight = 30 }, { address = \"192.0.2.12\"");
    app.rewrite(&changed);
    let out = app.ctl_by_config(&["reload"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "the rest applied: {stdout}{stderr}");
    assert!(stdout.contains("generation 2 running on every worker"), "{stdout}");
    assert!(stderr.contains("restart needed for: workers, flow_capacity, [control] socket"), "{stderr}");
    assert!(stderr.contains("moved.sock, where nothing answers"), "ctl says how it found it: {stderr}");
    let table = app.json(&["table", "203.0.113.10:8000/udp"]);
    assert_eq!(backend(&table, "192.0.2.11")["weight"], 30, "the rest applied: {table}");
    // Every operator script asks by config: status still finds the appliance, and says
    // what waits for a restart.
    let out = app.ctl_by_config(&["status"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("restart needed for: workers, flow_capacity, [control] socket"), "{stdout}");
    let body = Appliance::metrics(metrics);
    assert_eq!(metric(&body, "vipgate_restart_needed"), Some(3.0));
    // One VIP of two backends, reweighted: the same two (VIP, backend) pairs, numbered once.
    assert_eq!(metric(&body, "vipgate_flow_numbers"), Some(2.0), "{body}");
    let log = app.log();
    assert!(log.contains("restart needed for: workers, flow_capacity, [control] socket"), "{log}");

    // A change of such keys alone takes no effect at all: exit 1, said so.
    app.rewrite(&changed.replace("[engine]\n", "[engine]\nburst = 16\n"));
    let out = app.ctl_by_config(&["reload"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing of the change is applied: restart needed for: workers, burst, flow_capacity, [control] socket"),
        "{stderr}"
    );

    // Without the state file's record, ctl finds the process itself.
    std::fs::remove_file(dir.join("state.json")).unwrap();
    let out = app.ctl_by_config(&["status"]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let found = format!("(process {}) answers on {}", app.pid(), socket(&dir).display());
    assert!(stderr.contains(&found), "{stderr}");
    app.finish();
}

/// A backend that answers every HTTP request with 200, on 127.0.0.1; runs until the test
/// process ends.
fn healthy_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut chunk = [0u8; 256];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
            });
        }
    });
    port
}

/// A backend that accepts connections and never says a word; runs until the test ends.
fn hanging_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A port where nothing listens: connections are refused.
fn dead_port() -> u16 {
    free_port()
}

fn health_vip(backends: &[u16], check: &str) -> String {
    let list: Vec<String> =
        backends.iter().map(|p| format!("{{ address = \"127.0.0.1\", port = {p} }}")).collect();
    format!(
        "\n[[vip]]\naddress = \"203.0.113.10\"\nport = 8000\nprotocol = \"udp\"\nencap = \"ipip\"\nbackends = [{}]\nhealth = {{ {check} }}\n",
        list.join(", ")
    )
}

/// (target, state, last_error) per health target of `ctl status`.
fn health(app: &Appliance) -> Vec<(String, String, Option<String>, u64)> {
    app.json(&["status"])["health"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["target"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
                h["last_error"].as_str().map(String::from),
                h["probes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn state_of(app: &Appliance, port: u16) -> String {
    let suffix = format!(":{port}");
    health(app).into_iter().find(|h| h.0.ends_with(&suffix)).map(|h| h.1).unwrap_or_default()
}

#[test]
fn health_state_survives_reloads_that_change_timing_or_the_probe() {
    let dir = fresh_dir("safety-health");
    let metrics = free_port();
    let pre = preamble(&dir, 1, metrics, "reload_settle = \"60s\"");
    let (up, down1, down2) = (healthy_backend(), dead_port(), dead_port());
    let backends = [up, down1, down2];
    let check = |interval: &str, fall: u32, path: &str| {
        format!("kind = \"http\", path = \"{path}\", interval = \"{interval}\", timeout = \"150ms\", rise = 3, fall = {fall}")
    };
    let app = Appliance::start(
        &dir,
        &format!("{pre}{}", health_vip(&backends, &check("200ms", 2, "/health"))),
        &socket(&dir),
        &[],
    );
    wait_for("the dead backends down", 20, || {
        state_of(&app, down1) == "down" && state_of(&app, down2) == "down"
    });
    assert_eq!(state_of(&app, up), "up");
    // Slots of the two dead backends.
    let slots = |app: &Appliance| -> [u64; 2] {
        let t = app.json(&["table", "203.0.113.10:8000/udp"]);
        [down1, down2].map(|p| backend(&t, &format!("127.0.0.1:{p}"))["slots"].as_u64().unwrap())
    };
    assert_eq!(slots(&app), [0, 0]);

    // Only the timing changes: the dead stay down, from the reload on.
    app.rewrite(&format!("{pre}{}", health_vip(&backends, &check("300ms", 4, "/health"))));
    assert!(app.ctl(&["reload"]).status.success());
    assert_eq!((state_of(&app, down1), state_of(&app, down2)), ("down".into(), "down".into()));
    assert_eq!(slots(&app), [0, 0], "the dead backends got no slots back");
    assert!(app
        .log()
        .contains("its check's timing changed (interval 200ms -> 300ms, fall 2 -> 4); it stays down"));

    // What is probed changes (another path): they keep their state until the new probe
    // says otherwise; the healthy one stays up.
    app.rewrite(&format!("{pre}{}", health_vip(&backends, &check("300ms", 4, "/ready"))));
    assert!(app.ctl(&["reload"]).status.success());
    assert_eq!((state_of(&app, down1), state_of(&app, down2)), ("down".into(), "down".into()));
    assert_eq!(state_of(&app, up), "up");
    assert_eq!(slots(&app), [0, 0]);
    assert!(app
        .log()
        .contains("a new probe for a backend that was down; it stays down until it passes 3 probe(s)"));
    let errors: Vec<String> = health(&app).into_iter().filter_map(|h| h.2).collect();
    assert!(errors.iter().all(|e| e == "connection refused"), "{errors:?}");
    app.finish();
}

#[test]
fn health_probes_of_hanging_backends_do_not_starve_a_healthy_one() {
    let dir = fresh_dir("safety-starve");
    let metrics = free_port();
    let up = healthy_backend();
    let mut backends = vec![up];
    backends.extend((0..24).map(|_| hanging_backend()));
    let check = "kind = \"http\", interval = \"1s\", timeout = \"1s\", rise = 2, fall = 2";
    let pre = preamble(&dir, 1, metrics, "");
    let app = Appliance::start(&dir, &format!("{pre}{}", health_vip(&backends, check)), &socket(&dir), &[]);
    let start = Instant::now();
    // About one probe a second for the healthy one, whatever the 24 others do (with eight
    // probers shared it got one in several seconds).
    wait_for("seven probes of the healthy backend", 15, || {
        health(&app).iter().any(|h| h.0.ends_with(&format!(":{up}")) && h.3 >= 7)
    });
    assert!(start.elapsed() < Duration::from_secs(11), "{:?}", start.elapsed());
    assert_eq!(state_of(&app, up), "up");
    wait_for("the hanging backends down", 15, || health(&app).iter().filter(|h| h.1 == "down").count() == 24);
    for h in health(&app).iter().filter(|h| h.1 == "down") {
        assert_eq!(h.2.as_deref(), Some("timed out after 1s (read the answer)"), "{h:?}");
    }
    let body = Appliance::metrics(metrics);
    assert!(metric(&body, "vipgate_health_probes_late_total").is_some(), "{body}");
    app.finish();
}

#[test]
fn overrides_survive_a_kill_9_and_a_bad_state_file_stops_the_start() {
    let (app, _) = start_three("safety-state", "");
    let dir = app.dir.clone();
    assert!(app.ctl(&["drain", "192.0.2.11"]).status.success());
    assert!(app.ctl(&["weight", "192.0.2.21", "30"]).status.success());
    let state = dir.join("state.json");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("192.0.2.11") && saved.contains("192.0.2.21"), "{saved}");
    app.kill9();

    // As systemd's Restart=on-failure does: the same config again.
    let config = dir.join("vipgate.toml");
    let app = Appliance::start_on(&dir, &config, &socket(&dir), &[]);
    let status = app.json(&["status"]);
    assert_eq!(status["overrides"]["drained"], serde_json::json!(["192.0.2.11"]), "{status}");
    assert_eq!(status["overrides"]["weights"]["192.0.2.21"], 30, "{status}");
    let table = app.json(&["table", "203.0.113.10:8000/udp"]);
    assert_eq!(backend(&table, "192.0.2.11")["slots"], 0, "no new flows for the drained backend: {table}");
    let table = app.json(&["table", "203.0.113.200:53/udp"]);
    assert_eq!(backend(&table, "192.0.2.11")["state"], "draining", "drained in every VIP: {table}");
    assert!(app.log().contains("restored from state file"), "{}", app.log());
    assert!(app.ctl(&["undrain", "192.0.2.11"]).status.success());
    // The state file moves in the config: the overrides move with it.
    let text0 = std::fs::read_to_string(&config).unwrap();
    let moved = dir.join("moved-state.json");
    app.rewrite(&text0.replace(&state.display().to_string(), &moved.display().to_string()));
    assert!(app.ctl(&["reload"]).status.success());
    app.kill9();
    let app = Appliance::start_on(&dir, &config, &socket(&dir), &[]);
    let status = app.json(&["status"]);
    assert!(status["overrides"]["drained"].as_array().unwrap().is_empty(), "undrain is kept too: {status}");
    assert_eq!(status["overrides"]["weights"]["192.0.2.21"], 30, "found at the new place: {status}");
    assert!(app.stop().success());
    std::fs::write(&config, text0).unwrap();

    // A corrupt state file stops the start, named.
    std::fs::write(&state, "{\"version\":1,\"appli").unwrap();
    let out = vipgate(&["run", "--config", config.to_str().unwrap()]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("state file {}", state.display())) && err.contains("--discard-state"),
        "{err}"
    );
    // --discard-state starts without it.
    let app = Appliance::start_on(&dir, &config, &socket(&dir), &["--discard-state"]);
    let status = app.json(&["status"]);
    assert!(status["overrides"]["drained"].as_array().unwrap().is_empty(), "{status}");
    assert!(app.ctl(&["drain", "192.0.2.12"]).status.success(), "the state file works again");
    app.finish();
}

fn threads_of(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[test]
fn the_operator_channels_stay_open_under_a_crowd_of_slow_clients() {
    let dir = fresh_dir("safety-crowd");
    let metrics = free_port();
    let up = healthy_backend();
    let check = "kind = \"http\", interval = \"200ms\", timeout = \"150ms\", rise = 2, fall = 2";
    let text0 = format!("{}{}", preamble(&dir, 1, metrics, ""), health_vip(&[up], check));
    let config = dir.join("vipgate.toml");
    std::fs::write(&config, text0).unwrap();
    // 200 descriptors in all, as a small LimitNOFILE would give.
    let app = Appliance::start_wrapped(&dir, &config, &socket(&dir), &["prlimit", "--nofile=200", "--"], &[]);
    wait_for("the healthy backend probed", 20, || health(&app).first().is_some_and(|h| h.3 >= 3));

    // 150 metrics clients that trickle a byte at a time, and 150 ctl clients that say nothing.
    let addr: SocketAddr = ([127, 0, 0, 1], metrics).into();
    let mut slow: Vec<TcpStream> = (0..150).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    let idle: Vec<UnixStream> = (0..150).filter_map(|_| UnixStream::connect(&app.socket).ok()).collect();
    assert!(slow.len() > 100 && idle.len() > 100, "{} {}", slow.len(), idle.len());
    let idle_count = idle.len();
    let trickle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut closed = 0;
        while Instant::now() < deadline {
            closed = 0;
            for s in &mut slow {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 512];
                match s.read(&mut b) {
                    Ok(_) => closed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let _ = s.write(b"G");
                    }
                    Err(_) => closed += 1,
                }
            }
            if closed == slow.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        (closed, slow.len())
    });
    // Each connection beyond the caps was closed at once, not given a thread: watched for
    // two seconds while the crowd is taken in (a thread per connection would pass 200).
    let watch = Instant::now() + Duration::from_secs(2);
    let mut threads = 0;
    while Instant::now() < watch {
        threads = threads.max(threads_of(&app.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(threads < 140, "{threads} threads for 300 clients");
    // The idle ctl clients are closed at their deadline; the operator gets in.
    wait_for("ctl status through the crowd", 20, || app.ctl(&["status"]).status.success());
    assert!(app.ctl(&["reload"]).status.success(), "a reload can read its file");
    let (closed, all) = trickle.join().unwrap();
    assert_eq!(closed, all, "every slow metrics client is closed by its deadline");
    drop(idle);
    // The probes never failed for want of descriptors: the backend stayed up throughout.
    let h = health(&app);
    assert_eq!((h[0].1.as_str(), h[0].2.as_deref()), ("up", None), "{h:?}");
    let body = Appliance::metrics(metrics);
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    // One descriptor a connection: the caps stay well inside the limit, so every client
    // over the cap is refused at once rather than left waiting for a descriptor.
    let refused = metric(&body, "vipgate_operator_connections_refused_total{channel=\"ctl\"}").unwrap();
    assert!(refused >= (idle_count - 64) as f64, "{refused} of {idle_count}");
    app.finish();
}

#[test]
fn errors_say_what_happened() {
    // A missing config: the file named, no invented position.
    let out = vipgate(&["check", "--config", "/nonexistent/vipgate.toml"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("/nonexistent/vipgate.toml: cannot read the config"), "{err}");
    assert!(!err.contains(":1:1"), "{err}");

    // An appliance that stops in the middle of its answer, or before it.
    let dir = fresh_dir("safety-errors");
    for (name, answer, says) in [
        ("half.sock", &b"{\"ok\":tr"[..], "closed the connection in the middle of its answer"),
        ("none.sock", &b""[..], "closed the connection before answering"),
    ] {
        let path = dir.join(name);
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
            (&s).write_all(answer).unwrap();
        });
        let out = vipgate(&["ctl", "--socket", path.to_str().unwrap(), "status"]);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(1));
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("not JSON"), "{err}");
        server.join().unwrap();
    }

    // A request with a field of the wrong type is told which.
    let (app, _) = start_three("safety-types", "");
    let mut s = UnixStream::connect(&app.socket).unwrap();
    s.write_all(b"{\"cmd\":\"drain\",\"backend\":12}\n{\"cmd\":\"reload\",\"allow_removals\":\"yes\"}\n")
        .unwrap();
    let mut lines = BufReader::new(s).lines();
    for want in ["backend must be a string", "allow_removals must be true or false"] {
        let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(v["ok"], false);
        assert!(v["error"].as_str().unwrap().contains(want), "{v}");
    }
    app.finish();
}

#[test]
fn the_appliance_drain_survives_a_kill_9() {
    let dir = fresh_dir("safety-appliance");
    let routes = dir.join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    // BIRD is not needed to see what would be announced: the route files say it, and
    // `true` stands in for birdc.
    let bgp = format!(
        "\n[bgp]\nroutes_dir = \"{}\"\nbird_socket = \"{}\"\nbirdc = \"true\"\n",
        routes.display(),
        dir.join("bird.ctl").display()
    );
    let text0 = format!("{}{}{bgp}", preamble(&dir, 1, free_port(), ""), vip_a());
    let app = Appliance::start(&dir, &text0, &socket(&dir), &[]);
    let v4 = routes.join("vips4.conf");
    wait_for("the routes announced", 20, || {
        std::fs::read_to_string(&v4).is_ok_and(|t| t.contains("route 203.0.113.0/25"))
    });
    assert_eq!(app.json(&["drain-appliance"])["ok"], true);
    assert!(std::fs::read_to_string(&v4)
        .unwrap()
        .contains("Withdrawn: the appliance is drained by the operator"));
    app.kill9();
    let app = Appliance::start_on(&dir, &dir.join("vipgate.toml"), &socket(&dir), &[]);
    let status = app.json(&["status"]);
    assert_eq!(status["overrides"]["appliance_drained"], true, "{status}");
    assert_eq!(status["bgp"]["announcing"], false, "{status}");
    let routes_now = std::fs::read_to_string(&v4).unwrap();
    assert!(routes_now.contains("Withdrawn: the appliance is drained by the operator"), "{routes_now}");
    assert!(!routes_now.contains("route 203.0.113.0/25"), "withdrawn from the restart on: {routes_now}");
    app.finish();
}
