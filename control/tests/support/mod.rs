//! What the tests that drive a running `vipgate` share. Each test file uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `cond` every 50 ms until it holds; fails the test after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vipgate ctl --json --socket SOCKET ARGS...`, its answer parsed.
pub fn ctl_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["ctl", "--json", "--socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_vipgate")).args(&all).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
}
