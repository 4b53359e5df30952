//! Runs the pipeline over a fixed number of packets, for instruction counts under
//! callgrind. Instructions per packet = (count with P packets − count with 0) / P:
//!
//! ```sh
//! cargo build --release -p vipgate-benches --example pipeline_run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a target/release/examples/pipeline_run 1000000 0
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b target/release/examples/pipeline_run 1000000 320000
//! ```
//!
//! Arguments: live flows (default 1 000 000) and packets after warm-up (default 320 000).

use vipgate_benches::{Workload, BURST};

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let packets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(320_000);
    let mut w = Workload::new(flows);
    let mut forwarded = 0;
    for _ in 0..packets / BURST {
        forwarded += w.run_burst();
    }
    let c = w.pipeline.counters();
    println!(
        "flows {flows}, packets {}, forwarded {forwarded}, flow hits {}, misses {}, table full {}",
        packets / BURST * BURST,
        c.flow_hits,
        c.flow_misses,
        c.flow_table_full
    );
}
