//! Reload latency at scale: 1 000 VIPs, each on its own pool of 16 backends, M = 65537.
//!
//! ```sh
//! cargo run --release -p vipgate-benches --example reload_latency [ROUNDS]
//! ```
//!
//! Starts the engine with one worker pinned to core 1 on synth traffic (the control thread
//! on core 0), then times what SIGHUP does (`Engine::reload_file`: read and validate the
//! file, build the snapshot, send it to every worker, wait for every acknowledgement) in
//! three cases: the file unchanged, one VIP's backend reweighted, and a new `hash_seed`
//! (every ring built again). Prints medians and maxima over ROUNDS (default 5) reloads per
//! case, the worker's own time for taking an update, and the snapshot's memory.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use vipgate_control::config::Config;
use vipgate_control::engine::{Engine, EngineOptions};
use vipgate_control::ports;
use vipgate_engine::port::synth::SynthQueue;
use vipgate_engine::port::Port;
use vipgate_engine::table::Snapshot;

const VIPS: usize = 1000;

/// What round `i` of a case writes: `config(seed, reweighted)`.
type Round = fn(usize) -> (u64, bool);
const BACKENDS: usize = 16;

fn config(seed: u64, reweighted: bool) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"[engine]
workers = 1
cores = [1]
hash_seed = {seed}
maglev_table_size = 65537
flow_capacity = 65536

[tunnel]
source_v4 = "198.51.100.1"

[[port]]
name = "wan"
driver = "synth"
rate = 1000000
mac = "02:00:00:00:00:01"
next_hop_mac = "02:00:00:00:00:fe"
addresses = ["198.51.100.1"]

[[subnet]]
prefix = "203.0.113.0/24"
"#
    );
    for v in 0..VIPS {
        let _ = write!(
            s,
            "\n[[vip]]\naddress = \"203.0.113.{}\"\nport = {}\nprotocol = \"udp\"\nencap = \"ipip\"\nbackends = [\n",
            1 + v / 4,
            8000 + v % 4
        );
        for b in 0..BACKENDS {
            let weight = if reweighted && v == 0 && b == 0 { 200 } else { 100 };
            let _ = writeln!(
                s,
                "  {{ address = \"192.0.2.{}\", port = {}, weight = {weight} }},",
                b + 1,
                10000 + v
            );
        }
        s.push_str("]\n");
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("vipgate-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vipgate.toml");
    let base = config(24301, false);
    std::fs::write(&path, &base).unwrap();
    println!(
        "config: {VIPS} VIPs x {BACKENDS} backends, each VIP its own pool, {} bytes of TOML",
        base.len()
    );

    let t = Instant::now();
    let config0 = Config::load(&path).unwrap();
    let load0 = t.elapsed();
    let t = Instant::now();
    let snap = vipgate_control::build::snapshot(&config0, 1).unwrap();
    let build0 = t.elapsed();
    println!(
        "first build: read+validate {:.1} ms, snapshot {:.1} ms on one thread ({} pools); snapshot memory {:.1} MiB",
        ms(load0),
        ms(build0),
        snap.pools().len(),
        snap.heap_bytes() as f64 / (1 << 20) as f64
    );
    drop(snap);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    let snap = vipgate_control::build::snapshot_with(
        &config0,
        1,
        None,
        cores,
        &mut vipgate_engine::numbering::Numbering::new(),
    )
    .unwrap();
    println!(
        "first build on {cores} threads (no worker running yet, as at start): {:.1} ms",
        ms(t.elapsed())
    );
    drop(snap);
    // From here the control thread keeps to core 0, the worker to core 1.
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.into_iter().find(|c| c.id == 0)) {
        core_affinity::set_for_current(core);
    }

    let spec = ports::synth_spec(&config0, None);
    let queues: Vec<Box<dyn Port>> = vec![Box::new(SynthQueue::new(spec, 0, 1))];
    let mut engine = Engine::start(config0, queues, EngineOptions::default()).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    println!("\n| reload | read+validate | build | send to last ack | total | worker's swap | rounds |");
    println!("|---|---|---|---|---|---|---|");
    let cases: [(&str, Round); 3] = [
        ("file unchanged", |_| (24301, false)),
        ("one VIP reweighted", |i| (24301, i % 2 == 0)),
        ("new hash_seed: every ring rebuilt", |i| (24302 + i as u64, false)),
    ];
    for (name, make) in cases {
        let (mut load, mut build, mut swap, mut total, mut worker) = (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..rounds {
            let (seed, reweighted) = make(i);
            std::fs::write(&path, config(seed, reweighted)).unwrap();
            let t = Instant::now();
            let r = engine.reload_file(vipgate_control::engine::Reload::default()).expect("reload");
            total.push(ms(t.elapsed()));
            load.push(ms(r.load));
            build.push(ms(r.build));
            swap.push(ms(r.swap));
            let w = engine.stats().workers.iter().map(|w| w.last_swap).max().unwrap_or_default();
            worker.push(w.as_secs_f64() * 1e6);
            std::thread::sleep(Duration::from_millis(50));
        }
        let max = |v: &Vec<f64>| v.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.2} ms | {:.1} ms (max {:.1}) | {:.1} µs (max {:.1}) | {rounds} |",
            median(load.clone()),
            median(build.clone()),
            median(swap.clone()),
            median(total.clone()),
            max(&total),
            median(worker.clone()),
            max(&worker)
        );
    }
    let snap: &Snapshot = engine.snapshot();
    println!("\nsnapshot memory at the end: {:.1} MiB", snap.heap_bytes() as f64 / (1 << 20) as f64);
    let (stats, _) = engine.stop();
    println!("worker packets: {} in, {} forwarded", stats.total.rx_packets, stats.total.forwarded);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
