//! The whole pipeline per packet: parse, VIP lookup, flow-table lookup, IPIP
//! encapsulation, counters, on bursts of 32 60-byte TCP and UDP frames, with 1 k and 1 M
//! live flows, against the floor of loading the frames into the buffers alone.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vipgate_benches::{Workload, BURST};

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline_64b_ipip");
    group.throughput(Throughput::Elements(BURST as u64));
    for flows in [1_000u32, 1_000_000] {
        let mut w = Workload::new(flows);
        group.bench_function(BenchmarkId::new("floor_load_only", flows), |b| {
            b.iter(|| {
                w.load_burst();
                black_box(&w.bufs);
            })
        });
        group.bench_function(BenchmarkId::new("vipgate", flows), |b| b.iter(|| black_box(w.run_burst())));
        assert_eq!(w.pipeline.counters().flow_table_full, 0);
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
