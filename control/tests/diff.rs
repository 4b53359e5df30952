//! `vipgate diff` as an operator uses it before a change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vipgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vipgate")).args(args).output().expect("vipgate runs")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example.toml")
}

fn json_rows(json: &str) -> Vec<String> {
    json.split("{\"vip\":").skip(1).map(str::to_string).collect()
}

fn field(row: &str, key: &str) -> String {
    let pat = format!("\"{key}\":");
    let at = row.find(&pat).unwrap_or_else(|| panic!("no {key} in {row}")) + pat.len();
    row[at..].split([',', '}']).next().unwrap().to_string()
}

#[test]
fn diff_of_a_config_with_itself_moves_nothing() {
    let e = example();
    let out = vipgate(&["diff", "--json", e.to_str().unwrap(), e.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();
    let rows = json_rows(&json);
    assert_eq!(rows.len(), 3, "{json}");
    for r in rows {
        assert_eq!(field(&r, "slots_moved"), "0", "{r}");
        assert_eq!(field(&r, "established_move_off"), "[]", "{r}");
    }
}

#[test]
fn diff_reports_moves_additions_and_removals() {
    let dir = std::env::temp_dir().join(format!("vipgate-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(example()).unwrap();
    // Two more backends for the UDP VIP (2 taking new flows -> 4), one TCP backend down,
    // the IPv6 VIP removed.
    let new = text
        .replace(
            "  { address = \"192.0.2.13\", weight = 100, state = \"draining\" },",
            "  { address = \"192.0.2.13\", weight = 100 },\n  { address = \"192.0.2.14\", weight = 100 },",
        )
        .replace(
            "{ address = \"192.0.2.22\", weight = 50 }",
            "{ address = \"192.0.2.22\", weight = 50, state = \"down\" }",
        );
    let v6 = new.find("[[vip]]\naddress = \"2001:db8:ab::10\"").unwrap();
    let end = new[v6..].find("[control]").unwrap() + v6;
    let new = format!("{}{}", &new[..v6], &new[end..]);
    let new_path = dir.join("new.toml");
    std::fs::write(&new_path, new).unwrap();
    let e = example();
    let out = vipgate(&["diff", "--json", e.to_str().unwrap(), new_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();
    let rows = json_rows(&json);
    let row = |name: &str| rows.iter().find(|r| r.starts_with(&format!("\"{name}\""))).unwrap().clone();
    let udp = row("udp://203.0.113.10:8000");
    assert_eq!((field(&udp, "backends_before"), field(&udp, "backends_after")), ("2".into(), "4".into()));
    // Going from 2 to 4 equal backends must move at least half the slots (they are the new
    // backends' share) and, Maglev being near-minimal, not much more.
    let share: f64 = field(&udp, "new_flows_elsewhere").parse().unwrap();
    assert!((0.5..0.51).contains(&share), "{udp}");
    let tcp = row("tcp://203.0.113.10");
    assert_eq!(field(&tcp, "established_move_off"), "[\"192.0.2.22\"]");
    let v6 = row("tcp://[2001:db8:ab::10]:443");
    assert_eq!((field(&v6, "backends_after"), field(&v6, "slots_moved")), ("null".into(), "null".into()));
    // The table for people says the same.
    let out = vipgate(&["diff", e.to_str().unwrap(), new_path.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("udp://203.0.113.10:8000") && text.contains("2 -> 4"), "{text}");
    assert!(
        text.contains("2 (removed)") && text.contains("established flows move off: 192.0.2.22"),
        "{text}"
    );
    // A broken config is refused with its position, and exit 1.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[tunnel]\nmtu = 10\n").unwrap();
    let out = vipgate(&["diff", e.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains(&format!("{}:2:7: mtu 10 is out of range", bad.display())));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn diff_names_backends_added_removed_and_reweighted() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let dir = std::env::temp_dir().join(format!("vipgate-diff-named-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cutover = std::fs::read_to_string(configs.join("demo-cutover.toml")).unwrap();
    let new = dir.join("new.toml");
    std::fs::write(
        &new,
        cutover
            .replace("{ address = \"192.0.2.31\", weight = 1 }", "{ address = \"192.0.2.31\", weight = 3 }"),
    )
    .unwrap();
    let old = configs.join("demo.toml");
    let out = vipgate(&["diff", "--json", old.to_str().unwrap(), new.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vip = |name: &str| v["vips"].as_array().unwrap().iter().find(|r| r["vip"] == name).unwrap().clone();
    let udp = vip("udp://203.0.113.10:8000");
    assert_eq!(udp["added"], serde_json::json!(["192.0.2.14"]));
    assert_eq!(udp["removed"], serde_json::json!(["192.0.2.13"]));
    let any = vip("any://203.0.113.20");
    assert_eq!(
        any["changed"],
        serde_json::json!([{ "backend": "192.0.2.31", "before": "1/active", "after": "3/active" }])
    );
    assert!(any["slots_moved"].as_u64().unwrap() > 0);
    let text = vipgate(&["diff", old.to_str().unwrap(), new.to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("    added: 192.0.2.14") && text.contains("    removed: 192.0.2.13"), "{text}");
    assert!(text.contains("192.0.2.31: weight/state 1/active -> 3/active"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
