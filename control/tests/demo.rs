//! `vipgate demo`, the README's first command.

use std::process::Command;

#[test]
fn demo_swaps_midway_keeps_established_flows_and_counts_every_packet() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_vipgate")).args(["demo", "--packets", "400000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let number_after = |label: &str| -> u64 {
        let at = text.find(label).unwrap_or_else(|| panic!("no {label:?} in\n{text}")) + label.len();
        let word = text[at..].split_whitespace().next().unwrap();
        word.parse().unwrap_or_else(|_| panic!("{label:?} is followed by {word:?}\n{text}"))
    };
    let (packets, sent, forwarded, answered, dropped) = (
        number_after("packets"),
        number_after("sent"),
        number_after("forwarded"),
        number_after("answered"),
        number_after("dropped"),
    );
    assert_eq!(packets, 400000);
    assert_eq!(forwarded + answered + dropped, packets, "every packet has a verdict\n{text}");
    assert_eq!(sent, forwarded + answered, "{text}");
    for reason in ["malformed", "not_ip", "not_vip", "no_vip", "no_backend", "other_mac", "tx_full"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(reason)), "no {reason} line\n{text}");
    }
    assert!(number_after("no_vip ") > 0 && number_after("not_vip ") > 0 && number_after("malformed ") > 0);
    // The swap happened midway, and established flows stayed unless their backend left.
    assert!(text.contains("generation 2 built"), "{text}");
    assert_eq!(number_after("moved otherwise"), 0, "{text}");
    assert!(number_after("their backend removed") > 0, "{text}");
    assert!(number_after("kept their backend") > 1000, "{text}");
    // Before the swap the UDP VIP's backends weigh 100, 100 and 50: 40%, 40%, 20%.
    let before = &text[text.find("before the swap").unwrap()..text.find("after the swap").unwrap()];
    let share = |backend: &str| -> f64 {
        let udp = &before[before.find("udp://203.0.113.10:8000").unwrap()..];
        let line = udp.lines().find(|l| l.contains(backend)).unwrap();
        let pct = line.split_whitespace().find(|w| w.ends_with('%')).unwrap();
        pct.trim_end_matches('%').parse().unwrap()
    };
    assert!((share("192.0.2.11") - 40.0).abs() < 4.0, "{text}");
    assert!((share("192.0.2.13") - 20.0).abs() < 4.0, "{text}");
    // The draining TCP backend took no flow.
    let draining = before.lines().find(|l| l.contains("192.0.2.23")).unwrap();
    assert!(draining.contains(" 0 packets"), "{draining}");
    // After: the new backend took flows, the removed one is shown as removed.
    let after = &text[text.find("after the swap").unwrap()..];
    assert!(after.lines().any(|l| l.contains("192.0.2.14") && l.contains("active")), "{text}");
    assert!(text.contains("Mpps while busy"));
    // The verdict, last.
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("PASS: cut-over: 0 of "), "{last}");
    assert!(last.ends_with("drops: only the injected noise (malformed, not_vip, no_vip)"), "{last}");
}

#[test]
fn demo_help_says_what_it_does_and_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_vipgate")).args(["demo", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for what in ["configs/demo-cutover.toml", "drop reason", "PASS", "exit 1"] {
        assert!(help.contains(what), "{what} not in\n{help}");
    }
}
