//! `vipgate demo`, the README's first command.

use std::process::Command;

#[test]
fn demo_forwards_by_weight_skips_draining_backends_and_counts_every_drop() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_vipgate")).args(["demo", "--packets", "40000"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let number_after = |label: &str| -> u64 {
        let at = text.find(label).unwrap_or_else(|| panic!("no {label:?} in\n{text}")) + label.len();
        text[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (packets, forwarded, answered, dropped) = (
        number_after("packets"),
        number_after("forwarded"),
        number_after("answered"),
        number_after("dropped"),
    );
    assert_eq!(packets, 40000);
    assert_eq!(forwarded + answered + dropped, packets, "every packet has a verdict\n{text}");
    for reason in ["malformed", "not_ip", "not_vip", "no_vip", "no_backend", "other_mac"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(reason)), "no {reason} line\n{text}");
    }
    assert!(number_after("no_vip") > 0 && number_after("not_vip") > 0 && number_after("malformed") > 0);
    // The UDP VIP's backends weigh 100, 100 and 50: 40%, 40%, 20% of its packets.
    let share = |backend: &str| -> f64 {
        let line = text.lines().find(|l| l.contains("udp -> 203.0.113.10") && l.contains(backend)).unwrap();
        line.split_whitespace().last().unwrap().trim_end_matches('%').parse().unwrap()
    };
    assert!((share("192.0.2.11") - 40.0).abs() < 3.0, "{text}");
    assert!((share("192.0.2.13") - 20.0).abs() < 3.0, "{text}");
    // The draining TCP backend takes no new flows, and the demo's flows are all new to it.
    assert!(!text.contains("192.0.2.23"), "{text}");
    assert!(text.contains("Mpps on one core"));
}
