//! The `vipgate` command as an operator meets it.

use std::process::Command;

fn vipgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vipgate")).args(args).output().expect("vipgate runs")
}

#[test]
fn help_lists_every_subcommand() {
    let out = vipgate(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["demo", "run", "check", "diff", "replay", "table", "bench", "ctl"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(cmd)), "--help lacks {cmd}:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let out = vipgate(&["replay", "--config", "c.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--input"));
    let out = vipgate(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Every file of configs/bad/ holds one kind of error, and says on its first line which
/// message `vipgate check` gives for it, and where: `# what. expect: LINE:COL: message`.
#[test]
fn check_rejects_every_bad_config_with_its_message_and_position() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 20, "configs/bad/ has {} files", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        let expect =
            first.split_once(" expect: ").unwrap_or_else(|| panic!("{name}: no expect: on line 1")).1;
        let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
            .args(["check", "--config", name])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(&format!("{name}:{expect}")), "{name}: wanted {expect:?} in\n{err}");
        assert!(err.contains("nothing applied"), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
    }
}

#[test]
fn check_accepts_the_shipped_configs() {
    for name in ["example.toml", "try.toml", "demo.toml", "demo-cutover.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(name);
        let out = vipgate(&["check", "--config", path.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn table_shows_slots_per_backend_and_the_whole_ring_as_json() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example.toml");
    let e = example.to_str().unwrap();
    let out = vipgate(&["table", "--config", e, "--vip", "203.0.113.10:8000/udp"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("udp://203.0.113.10:8000  (generation 1, 65537 slots)"), "{text}");
    // 192.0.2.11 and .12 active at weight 100, .13 draining: half the slots each.
    let slots = |backend: &str| -> u64 {
        let line = text.lines().find(|l| l.contains(backend)).unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        w[w.iter().position(|x| *x == "slots").unwrap() - 1].parse().unwrap()
    };
    assert_eq!(slots("192.0.2.13"), 0);
    assert_eq!(slots("192.0.2.11") + slots("192.0.2.12"), 65537);
    assert!(slots("192.0.2.11").abs_diff(slots("192.0.2.12")) < 700, "{text}");
    let out = vipgate(&["table", "--config", e, "--vip", "203.0.113.10/tcp", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ring = v["ring"].as_array().unwrap();
    assert_eq!(ring.len(), 65537);
    let owned_by_first = ring.iter().filter(|s| s.as_u64() == Some(0)).count() as u64;
    assert_eq!(owned_by_first, v["backends"][0]["slots"].as_u64().unwrap());
    let out = vipgate(&["table", "--config", e, "--vip", "203.0.113.10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is more than one VIP"));
    let out = vipgate(&["table", "--config", e]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().matches(" slots)").count(), 3);
}

#[test]
fn bench_counts_exact_packets_sweeps_and_compares() {
    let out = vipgate(&["bench", "--packets", "3200", "--flows", "1000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &v["runs"][0];
    assert_eq!(run["workload"], "64b");
    let w = &run["workers"][0];
    assert_eq!(w["packets"], 3200);
    assert_eq!(w["forwarded"], 3200, "every 64b packet goes to a VIP: {w}");
    assert_eq!(w["express_forwarded"], 3200, "and takes the express lane: {w}");
    assert_eq!(w["lane_percent"], 100.0, "{w}");
    assert!(w["mpps"].as_f64().unwrap() > 0.0 && w["ns_per_packet"].as_f64().unwrap() > 0.0);
    let (p50, p999) = (w["latency_ns"]["p50"].as_u64().unwrap(), w["latency_ns"]["p99.9"].as_u64().unwrap());
    assert!(p50 > 0 && p50 <= p999, "{w}");

    let out = vipgate(&[
        "bench",
        "--packets",
        "320",
        "--flows",
        "100",
        "--sweep",
        "backends",
        "--workload",
        "syn",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends: Vec<u64> =
        v["runs"].as_array().unwrap().iter().map(|r| r["backends"].as_u64().unwrap()).collect();
    assert_eq!(backends, [2, 100, 1000]);

    let dir = std::env::temp_dir().join(format!("vipgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("base.json");
    let out = vipgate(&["bench", "--packets", "640", "--flows", "100", "--workload", "gateway", "--json"]);
    std::fs::write(&saved, &out.stdout).unwrap();
    // The gateway run against the saved one, with `extra` arguments: what it prints.
    let compared = |extra: &[&str]| {
        let base = ["bench", "--packets", "640", "--flows", "100", "--workload", "gateway"];
        let tail = ["--compare", saved.to_str().unwrap()];
        let out = vipgate(&[&base[..], extra, &tail[..]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = compared(&[]);
    assert!(text.contains("vs baseline") && text.lines().any(|l| l.starts_with("gateway")), "{text}");

    // The general path alone forwards every packet too; its runs are marked as such, and
    // a saved lane run is no baseline for them.
    let out = vipgate(&["bench", "--packets", "640", "--flows", "100", "--general-path", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["general_path"], true);
    assert_eq!(v["runs"][0]["workers"][0]["forwarded"], 640);
    assert_eq!(v["runs"][0]["workers"][0]["express_forwarded"], 0, "the lane is off: {v}");
    let text = compared(&["--general-path"]);
    assert!(!text.contains("vs baseline") && text.lines().any(|l| l.starts_with("gateway gp")), "{text}");

    // IPv6 clients, VIPs and backends: every packet forwarded too.
    for workload in ["64b", "syn"] {
        let out = vipgate(&[
            "bench",
            "--packets",
            "640",
            "--flows",
            "1000",
            "--workload",
            workload,
            "--ipv6",
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["runs"][0]["ipv6"], true);
        assert_eq!(v["runs"][0]["workers"][0]["forwarded"], 640, "{workload}: {v}");
        assert_eq!(v["runs"][0]["workers"][0]["express_forwarded"], 640, "the IPv6 lane: {workload}: {v}");
    }
    // Frames flushed from the caches before the engine reads them: the same packets
    // forwarded, the runs marked, no baseline in a hot run.
    let out = vipgate(&["bench", "--packets", "640", "--flows", "100", "--cold-frames", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["cold_frames"], true);
    assert_eq!(v["runs"][0]["workers"][0]["forwarded"], 640, "{v}");
    let text = compared(&["--cold-frames"]);
    assert!(!text.contains("vs baseline") && text.lines().any(|l| l.starts_with("gateway cold")), "{text}");
    let out = vipgate(&["bench", "--workload", "gateway", "--ipv6", "--packets", "32"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ipv6 takes the 64b and syn workloads"));

    let out = vipgate(&["bench", "--workload", "jumbo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not one of 64b, gateway, syn"));
    let out = vipgate(&["bench", "--flows", "20000000", "--packets", "32"]);
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A build without the dpdk driver says how to get one.
#[cfg(not(feature = "dpdk"))]
#[test]
fn bench_on_dpdk_without_the_driver_says_how_to_build_it() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_vipgate")).args(["bench", "--driver", "dpdk"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features dpdk"), "{err}");
}

/// Sparse Maglev tables are named in one warning for the whole config, however many pools
/// have them.
#[test]
fn sparse_rings_are_named_once() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let mut config = text[..text.find("[[vip]]").unwrap()].to_string();
    // Three pools of 700 backends against 65 537 slots: 70 000 would be needed.
    for (i, port) in [80, 443, 8080].into_iter().enumerate() {
        config.push_str(&format!(
            "[[vip]]\naddress = \"203.0.113.20\"\nport = {port}\nprotocol = \"tcp\"\nencap = \"ipip\"\nbackends = [\n"
        ));
        for b in 0..700 {
            config.push_str(&format!("  {{ address = \"2001:db8:{i}::{b:x}\", weight = 1 }},\n"));
        }
        config.push_str("]\n\n");
    }
    let dir = std::env::temp_dir().join(format!("vipgate-sparse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sparse.toml");
    std::fs::write(&path, config).unwrap();
    let out = vipgate(&["check", "--config", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("sparse")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("3 pools") && warnings[0].contains("at least 70000 slots"), "{err}");
}
