//! The snapshot the pipeline targets run: configs/example.toml (IPv4 and IPv6 VIPs, IPIP
//! and GUE, a draining backend), built once.

use std::sync::OnceLock;

use vipgate_control::config::Config;
use vipgate_engine::table::Snapshot;

pub fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let text = include_str!("../../configs/example.toml");
        let config =
            Config::parse(std::path::Path::new("example.toml"), text).expect("the example config is valid");
        vipgate_control::build::snapshot(&config, 1).expect("the example config builds")
    })
}
