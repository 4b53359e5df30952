//! `vipgate demo`: synthetic 2G-gateway traffic through the real engine, in memory.
//!
//! The traffic: a few carrier-gateway source addresses with thousands of ports each,
//! long-lived TCP connections sending heartbeats and UDP datagrams of 60–300 bytes to the
//! VIPs of the embedded config (the busier VIPs more often), with some noise (packets to
//! addresses without a VIP, outside the subnet, broken headers, pings to a VIP). It is
//! seeded, so every run sends the same packets. The summary shows where flows went
//! (per backend), every drop reason, and the rate this machine reached.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use vipgate_engine::buf::PacketBuf;
use vipgate_engine::pipeline::{DropReason, Pipeline, PipelineOptions, Verdict};
use vipgate_engine::spread::Spreader;
use vipgate_engine::wire::checksum;

use crate::build;
use crate::config::Config;

/// The config the demo runs.
pub const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes a frame for the demo's traffic into `buf`: Ethernet to `mac`, IPv4 with a valid
/// checksum, TCP (ACK) or UDP with `payload` bytes.
#[allow(clippy::too_many_arguments)]
fn write_frame(
    buf: &mut PacketBuf,
    mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
    payload: usize,
) {
    let l4 = if proto == 6 { 20 } else { 8 };
    let total = 20 + l4 + payload;
    let mut f = [0u8; 14 + 20 + 20 + 300];
    f[..6].copy_from_slice(&mac);
    f[6..12].copy_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0xfe]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    f[20] = 0x40;
    f[22] = 57;
    f[23] = proto;
    f[26..30].copy_from_slice(&src.octets());
    f[30..34].copy_from_slice(&dst.octets());
    let ck = !checksum::data(&f[14..34]);
    f[24..26].copy_from_slice(&ck.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        f[46] = 0x50;
        f[47] = 0x18;
    } else {
        f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    let len = (14 + total).max(60);
    buf.set_frame(&f[..len]).expect("demo frames fit a buffer");
}

/// What the demo saw.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Packets sent through the engine.
    pub packets: u64,
    /// Seconds the engine took: spreading bursts over the workers and their `process`
    /// calls (traffic generation and this report's accounting excluded).
    pub engine_seconds: f64,
    /// Forwarded packets per (VIP, backend) as `(vip, backend) -> packets`.
    pub per_backend: BTreeMap<(String, String), u64>,
    /// The engine's counters.
    pub counters: vipgate_engine::pipeline::Counters,
}

/// Runs `packets` packets of demo traffic.
pub fn run(packets: u64) -> Result<DemoReport, String> {
    let config =
        Config::parse(Path::new("<embedded demo config>"), DEMO_CONFIG).map_err(|e| e.to_string())?;
    let snap = build::snapshot(&config, 1).map_err(|e| e.to_string())?;
    let mac = config.ports.first().map_or([2, 0, 0, 0, 0, 1], |p| p.mac.0);
    let workers = config.engine.workers.max(1);
    let mut pipelines: Vec<Pipeline> = (0..workers)
        .map(|_| {
            Pipeline::new(PipelineOptions {
                flow_capacity: config.engine.flow_capacity,
                ..PipelineOptions::default()
            })
        })
        .collect();
    let vip_a = Ipv4Addr::new(203, 0, 113, 10);
    let vip_b = Ipv4Addr::new(203, 0, 113, 20);
    let gateways: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(198, 51, 100, 100 + i)).collect();
    let mut rng = Rng(SEED);
    let mut report = DemoReport::default();
    let mut bufs: Vec<PacketBuf> = (0..32).map(|_| PacketBuf::new()).collect();
    let mut spreader = Spreader::new(workers, 32, vipgate_engine::buf::DEFAULT_CAPACITY);
    let mut verdicts = [Verdict::Forward; 32];
    let mut now: u64 = 1_700_000_000_000_000_000;
    let mut engine = std::time::Duration::ZERO;
    let mut tally: BTreeMap<(u8, u32, u32), u64> = BTreeMap::new();
    let mut sent = 0u64;
    while sent < packets {
        let n = (packets - sent).min(32) as usize;
        for b in bufs.iter_mut().take(n) {
            let r = rng.below(1000);
            // 20 000 live client flows per gateway; heartbeats are small, messages larger.
            let gw = gateways[rng.below(gateways.len() as u64) as usize];
            let sport = 1024 + rng.below(20_000) as u16;
            let size = if rng.below(4) == 0 { 60 + rng.below(240) as usize } else { rng.below(20) as usize };
            match r {
                0..=549 => write_frame(b, mac, gw, vip_a, 6, sport, 5222, size),
                550..=899 => write_frame(b, mac, gw, vip_a, 17, sport, 8000, size),
                900..=979 => write_frame(b, mac, gw, vip_b, 6, sport, 80, size),
                980..=984 => write_frame(b, mac, gw, Ipv4Addr::new(203, 0, 113, 77), 17, sport, 8000, size),
                985..=989 => write_frame(b, mac, gw, Ipv4Addr::new(192, 0, 2, 200), 17, sport, 8000, size),
                990..=994 => {
                    write_frame(b, mac, gw, vip_a, 17, sport, 8000, size);
                    b.as_mut_slice()[14] = 0x44; // IHL 4: malformed
                }
                _ => {
                    write_frame(b, mac, gw, vip_a, 17, sport, 8000, size);
                    b.as_mut_slice()[23] = 1; // ICMP ...
                    let s = b.as_mut_slice();
                    s[34] = 8; // echo request
                    s[35] = 0;
                    s[36..38].fill(0);
                    let end = 14 + u16::from_be_bytes([s[16], s[17]]) as usize;
                    let ck = !checksum::data(&s[34..end]);
                    s[36..38].copy_from_slice(&ck.to_be_bytes());
                    s[24..26].fill(0);
                    let ck = !checksum::data(&s[14..34]);
                    s[24..26].copy_from_slice(&ck.to_be_bytes());
                }
            }
        }
        now += 50_000; // 20 k packets per second of capture time
        let started = Instant::now();
        spreader.process(&mut pipelines, &snap, now, &mut bufs[..n], &mut verdicts[..n], |_, _| {});
        engine += started.elapsed();
        for (b, v) in bufs[..n].iter().zip(&verdicts[..n]) {
            if *v == Verdict::Forward {
                let s = b.as_slice();
                let backend = u32::from_be_bytes([s[30], s[31], s[32], s[33]]);
                // The inner header: after the outer IPv4 header and, for GUE, 12 bytes of
                // UDP and GUE; for GRE, 4.
                let inner = match s[23] {
                    17 => 34 + 12,
                    47 => 34 + 4,
                    _ => 34,
                };
                let vip = u32::from_be_bytes([s[inner + 16], s[inner + 17], s[inner + 18], s[inner + 19]]);
                *tally.entry((s[inner + 9], vip, backend)).or_default() += 1;
            }
        }
        sent += n as u64;
    }
    for ((proto, vip, backend), n) in tally {
        let proto = if proto == 6 { "tcp" } else { "udp" };
        let key = (format!("{proto} -> {}", Ipv4Addr::from(vip)), Ipv4Addr::from(backend).to_string());
        report.per_backend.insert(key, n);
    }
    report.packets = sent;
    report.engine_seconds = engine.as_secs_f64();
    for p in &pipelines {
        report.counters.add(p.counters());
    }
    Ok(report)
}

/// The traffic's seed: every run sends the same packets.
const SEED: u64 = 0x2626_2626_2626_2626;

/// The report for people.
pub fn to_text(r: &DemoReport) -> String {
    let c = &r.counters;
    let mut s = String::new();
    s.push_str("vipgate demo: synthetic 2G-gateway traffic through the engine (embedded config)\n\n");
    s.push_str(&format!(
        "packets {}   forwarded {}   answered {}   dropped {}\n",
        r.packets,
        c.forwarded,
        c.replied,
        c.drops.iter().sum::<u64>()
    ));
    s.push_str(&format!(
        "flows: {} hits, {} new, {} evicted for room\n\n",
        c.flow_hits, c.flow_misses, c.flow_table_full
    ));
    s.push_str("where packets went (VIP, backend, share of the VIP's packets):\n");
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((vip, _), n) in &r.per_backend {
        *totals.entry(vip.as_str()).or_default() += n;
    }
    for ((vip, backend), n) in &r.per_backend {
        let share = *n as f64 * 100.0 / totals[vip.as_str()] as f64;
        s.push_str(&format!("  {vip:<24} {backend:<14} {n:>9}  {share:5.1}%\n"));
    }
    s.push_str("\ndrops by reason:\n");
    for reason in DropReason::ALL {
        s.push_str(&format!("  {:<12} {}\n", reason.name(), c.drop_count(reason)));
    }
    let mpps = r.packets as f64 / r.engine_seconds.max(1e-9) / 1e6;
    s.push_str(&format!(
        "\nengine time {:.3} s for {} packets: {:.2} Mpps on one core ({:.0} ns per packet)\n",
        r.engine_seconds,
        r.packets,
        mpps,
        r.engine_seconds * 1e9 / r.packets.max(1) as f64
    ));
    s
}
