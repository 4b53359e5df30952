//! The soak in its long mode: two workers on the synth driver at full speed for SECONDS
//! (default 600) while the control side reloads every second with backends flipping
//! between active, draining and down.
//!
//! ```sh
//! cargo run --release -p vipgate-benches --example soak -- [SECONDS] [follow|overflow]
//! ```
//!
//! `follow` (default): a flow table large enough for every flow, and every flow's backend
//! followed on the transmit side (none may move unless its backend went down).
//! `overflow`: a flow table far smaller than the live flows (evicted flows are placed by
//! Maglev again and may move, so flows are not followed).

use std::time::Duration;

use vipgate_control::soak::{run, SoakSpec};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(600.0);
    let follow = args.next().as_deref() != Some("overflow");
    let spec = SoakSpec {
        seconds,
        workers: 2,
        flow_capacity: if follow { 1 << 20 } else { 4096 },
        flows_per_gateway: if follow { 20_000 } else { 30_000 },
        reload_every: Duration::from_secs(1),
        follow_flows: follow,
    };
    match run(&spec) {
        Ok(r) => {
            println!("{spec:?}");
            println!("{r:#?}");
            let ok = r.received == r.sent + r.dropped && r.moved_unexpected == 0;
            println!(
                "in {} = out {} + drops {}: {}; resident memory {} KiB after warm-up, {} KiB at the end",
                r.received,
                r.sent,
                r.dropped,
                if r.received == r.sent + r.dropped { "yes" } else { "NO" },
                r.rss_kib.0,
                r.rss_kib.1
            );
            std::process::exit(if ok { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(1);
        }
    }
}
