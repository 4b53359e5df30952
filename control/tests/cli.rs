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
fn unbuilt_subcommands_say_so_and_exit_2() {
    let cases: &[&[&str]] = &[&["bench"]];
    for args in cases {
        let out = vipgate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(&format!("vipgate {}: not built yet", args[0])), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
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
