//! The runtime under load: workers on the memory driver, hot swaps while traffic flows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;
use support::wait_for;

use vipgate_control::config::Config;
use vipgate_control::engine::{Engine, EngineOptions, ReloadError};
use vipgate_control::ports::{self, PortHost};
use vipgate_engine::wire::frame::{FrameRepr, Transport};
use vipgate_engine::wire::tcp::TcpFlags;
use vipgate_engine::wire::EthernetAddress;

fn config_text(backends: &str) -> String {
    r#"
[engine]
workers = 2
hash_seed = 7
maglev_table_size = 251
flow_capacity = 65536
idle_polls_before_sleep = 64

[tunnel]
source_v4 = "198.51.100.1"

[[port]]
name = "wan"
driver = "memory"
mac = "02:00:00:00:00:01"
next_hop_mac = "02:00:00:00:00:fe"
addresses = ["198.51.100.1"]

[[subnet]]
prefix = "203.0.113.0/24"
"#
    .to_string()
        + &support::vip_toml("tcp://203.0.113.10:5222", "ipip", backends)
}

/// With 192.0.2.13; and without it, 192.0.2.12 reweighted.
const A: &str = r#"{ address = "192.0.2.11", weight = 10 }, { address = "192.0.2.12", weight = 10 }, { address = "192.0.2.13", weight = 10 }"#;
const B: &str = r#"{ address = "192.0.2.11", weight = 10 }, { address = "192.0.2.12", weight = 30 }"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vipgate-runtime-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TCP ACK from gateway `flow % 6` port `1024 + flow` to 203.0.113.10:5222.
fn frame(flow: u32) -> Vec<u8> {
    let repr = FrameRepr {
        src_mac: EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
        dst_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 101 + (flow % 6) as u8)),
        dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        ttl: 64,
        ident: 0,
        dont_frag: false,
        transport: Transport::tcp(1024 + flow as u16, 5222, TcpFlags::ACK),
        payload: &[],
        l4_checksum: true,
    };
    let mut f = vec![0; repr.buffer_len()];
    repr.emit(&mut f).expect("one family");
    f
}

/// (inner source address, source port) -> outer destination, and every change seen.
type Owners = (HashMap<[u8; 6], [u8; 4]>, Vec<([u8; 4], [u8; 4])>);

struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    /// (inner source address, source port) -> outer destination, and every change seen.
    owners: Arc<Mutex<Owners>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_traffic(host: vipgate_engine::port::memory::MemoryHost, flows: u32) -> Traffic {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let owners = Arc::new(Mutex::new((HashMap::new(), Vec::new())));
    let frames: Vec<Vec<u8>> = (0..flows).map(frame).collect();
    let sender = {
        let (host, stop, sent) = (host.clone(), Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if host.send(&frames[i % frames.len()]).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        })
    };
    let receiver = {
        let (stop, received, owners) = (Arc::clone(&stop), Arc::clone(&received), Arc::clone(&owners));
        std::thread::spawn(move || loop {
            let last = stop.load(Ordering::Relaxed);
            let mut o = owners.lock().unwrap();
            let (map, changes) = &mut *o;
            let n = host.recv(|_, f| {
                // Ethernet, outer IPv4 (20), inner IPv4 (20), TCP.
                let backend: [u8; 4] = f[30..34].try_into().unwrap();
                let mut flow = [0u8; 6];
                flow[..4].copy_from_slice(&f[46..50]);
                flow[4..].copy_from_slice(&f[54..56]);
                if let Some(old) = map.insert(flow, backend) {
                    if old != backend {
                        changes.push((old, backend));
                    }
                }
            });
            drop(o);
            received.fetch_add(n as u64, Ordering::Relaxed);
            if last && n == 0 {
                break;
            }
            if n == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    Traffic { stop, sent, received, owners, threads: vec![sender, receiver] }
}

fn start(dir: &Path) -> (Engine, vipgate_engine::port::memory::MemoryHost, PathBuf, PathBuf) {
    let a = write(dir, "a.toml", &config_text(A));
    let b = write(dir, "b.toml", &config_text(B));
    let config = Config::load(&a).unwrap();
    let (queues, host) = ports::open(&config).unwrap();
    let PortHost::Memory(host) = host else { panic!("memory driver") };
    let engine = Engine::start(config, queues, EngineOptions::default()).unwrap();
    (engine, host, a, b)
}

#[test]
fn a_hundred_reloads_under_load_lose_nothing_and_move_only_the_removed_backends_flows() {
    let dir = tempdir("reloads");
    let (mut engine, host, a, b) = start(&dir);
    let (config_a, config_b) = (Config::load(&a).unwrap(), Config::load(&b).unwrap());
    let traffic = start_traffic(host.clone(), 3000);
    // Let every flow be seen once on config A.
    wait_for("every flow seen once", 30, || traffic.received.load(Ordering::Relaxed) >= 6000);
    for i in 0..100u64 {
        let config = if i % 2 == 0 { config_b.clone() } else { config_a.clone() };
        let report = engine.reload(config).expect("every reload is acknowledged");
        assert_eq!(report.generation, i + 2);
        let stats = engine.stats();
        for w in &stats.workers {
            assert_eq!(w.generation, i + 2, "worker {} runs generation {}", w.id, w.generation);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(engine.reloads(), 100);
    traffic.stop.store(true, Ordering::Relaxed);
    let Traffic { sent, received, owners, threads, .. } = traffic;
    let mut threads = threads.into_iter();
    threads.next().unwrap().join().unwrap(); // the sender
                                             // Let the workers empty their rings, then stop them, the receiver, and take the rest.
    wait_for("the workers to empty their rings", 30, || host.rx_pending() == 0);
    std::thread::sleep(Duration::from_millis(20));
    let (stats, _) = engine.stop();
    threads.next().unwrap().join().unwrap(); // the receiver
    let mut tail = 0u64;
    host.recv(|_, _| tail += 1);
    assert_eq!(host.free_buffers(), 2 * 2 * ports::RING_DEPTH, "every buffer is back: none leaked");
    let sent = sent.load(Ordering::Relaxed);
    let out = received.load(Ordering::Relaxed) + tail;
    let c = &stats.total;
    assert_eq!(c.rx_packets, sent, "every packet sent was received by a worker");
    assert_eq!(sent, out + c.dropped(), "in = out + counted drops: {c:?}");
    assert_eq!(c.forwarded + c.replied, out);
    let o = owners.lock().unwrap();
    let (map, changes) = &*o;
    assert_eq!(map.len(), 3000);
    let removed = [192, 0, 2, 13];
    assert!(changes.iter().all(|(old, _)| *old == removed), "only flows of 192.0.2.13 moved: {changes:?}");
    assert!(!changes.is_empty(), "the removed backend's flows did move");
    // Per-backend counters add up to what was forwarded.
    let per_backend: u64 = stats.traffic.iter().map(|t| t.packets).sum();
    assert_eq!(per_backend, c.forwarded);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_under_load_is_rejected_and_traffic_goes_on() {
    let dir = tempdir("bad");
    let (mut engine, host, a, _) = start(&dir);
    let traffic = start_traffic(host, 500);
    wait_for("traffic", 30, || traffic.received.load(Ordering::Relaxed) >= 1000);
    // A backend with a bad address and a VIP outside every subnet.
    let good = std::fs::read_to_string(&a).unwrap();
    let bad = good.replace("192.0.2.12", "192.0.2.300").replace("203.0.113.10", "192.0.2.10");
    std::fs::write(&a, bad).unwrap();
    let err = engine.reload_file(vipgate_control::engine::Reload::default()).unwrap_err();
    let ReloadError::Config(errors) = &err else { panic!("a config error: {err}") };
    let text = err.to_string();
    assert_eq!(errors.0.len(), 2, "{text}");
    assert!(text.contains(&format!("{}:", a.display())), "{text}");
    assert!(text.contains("192.0.2.300"), "{text}");
    assert!(text.contains("outside every [[subnet]]"), "{text}");
    assert_eq!(engine.generation(), 1, "nothing applied");
    let before = traffic.received.load(Ordering::Relaxed);
    wait_for("traffic still flowing", 30, || traffic.received.load(Ordering::Relaxed) > before + 100);
    let stats = engine.stats();
    assert!(stats.workers.iter().all(|w| w.generation == 1));
    assert_eq!(stats.total.dropped(), stats.total.drop_count(vipgate_engine::counters::DropReason::TxFull));
    traffic.stop.store(true, Ordering::Relaxed);
    for t in traffic.threads {
        t.join().unwrap();
    }
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}
