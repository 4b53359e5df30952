//! Maglev: table population and lookup, side by side with the `maglev` crate.
//!
//! Population: M = 65537 (the crate picks the first prime ≥ the capacity it is given, which
//! is 65537 too), N = 10, 100, 1000 backends of equal weight.
//! Lookup: a batch of 1024 IPv4 5-tuples, each hashed and looked up: ours with
//! `flow_hash` + `Ring::lookup`, the crate with its `get` (SipHash of the key, then `%`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use maglev::Maglev;
use vipgate_engine::maglev::{flow_hash, Backend, BackendId, Ring};

const M: u32 = 65537;
const SEED: u64 = 24301;

fn backend_addrs(n: u32) -> Vec<IpAddr> {
    (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0xc000_0200u32 + (i / 250) * 0x1_0000 + i % 250 + 1))).collect()
}

fn population(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_populate_m65537");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    for n in [10u32, 100, 1000] {
        let addrs = backend_addrs(n);
        let backends: Vec<Backend> =
            addrs.iter().map(|&a| Backend { id: BackendId::new(a), weight: 1 }).collect();
        group.bench_with_input(BenchmarkId::new("vipgate", n), &backends, |b, backends| {
            b.iter(|| Ring::build(black_box(backends), SEED, M).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("maglev_crate", n), &addrs, |b, addrs| {
            b.iter(|| Maglev::with_capacity(black_box(addrs.clone()), M as usize))
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let addrs = backend_addrs(100);
    let backends: Vec<Backend> =
        addrs.iter().map(|&a| Backend { id: BackendId::new(a), weight: 1 }).collect();
    let ring = Ring::build(&backends, SEED, M).unwrap();
    let theirs = Maglev::with_capacity(addrs, M as usize);
    // 1024 flows from a few carrier-gateway addresses with many ports, to a few VIPs.
    let flows: Vec<(IpAddr, IpAddr, u8, u16, u16)> = (0..1024u32)
        .map(|i| {
            let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 7) as u8 + 1));
            let dst = IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 16) as u8 + 10));
            (src, dst, if i % 4 == 0 { 17 } else { 6 }, 10_000 + (i * 37 % 50_000) as u16, 8000)
        })
        .collect();
    let mut group = c.benchmark_group("maglev_lookup_1024_flows");
    group.throughput(Throughput::Elements(flows.len() as u64));
    group.bench_function("vipgate", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &(s, d, p, sp, dp) in black_box(&flows) {
                acc = acc.wrapping_add(u32::from(ring.lookup(flow_hash(SEED, s, d, p, sp, dp))));
            }
            acc
        })
    });
    group.bench_function("maglev_crate", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for key in black_box(&flows) {
                if let IpAddr::V4(a) = theirs[key] {
                    acc = acc.wrapping_add(u64::from(u32::from(a)));
                }
            }
            acc
        })
    });
    group.finish();
}

criterion_group!(benches, population, lookup);
criterion_main!(benches);
