//! Runs the pipeline over a fixed number of packets, for instruction counts under
//! callgrind. Instructions per packet = (count with P packets − count with 0) / P:
//!
//! ```sh
//! cargo build --release -p vipgate-benches --example pipeline_run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a target/release/examples/pipeline_run 1000000 0
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b target/release/examples/pipeline_run 1000000 320000
//! ```
//!
//! Arguments: live flows (default 1 000 000), packets after warm-up (default 320 000), and
//! `new` to make every packet after warm-up a new flow (its source address rewritten; the
//! flow table is then full, as under `vipgate bench --workload syn`).

use vipgate_benches::{Workload, BURST};

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let packets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(320_000);
    let new_flows = args.next().is_some_and(|a| a == "new");
    let mut w = Workload::new(flows);
    let mut forwarded = 0;
    let mut source = 0x0a00_0000u32;
    for _ in 0..packets / BURST {
        if new_flows {
            w.load_burst();
            for b in w.bufs.iter_mut() {
                source += 1;
                b.as_mut_slice()[26..30].copy_from_slice(&source.to_be_bytes());
            }
            w.pipeline.process(&w.snapshot, 2_000_000_000, &mut w.bufs, &mut w.verdicts);
            forwarded +=
                w.verdicts.iter().filter(|v| **v == vipgate_engine::pipeline::Verdict::Forward).count();
        } else {
            forwarded += w.run_burst();
        }
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
