//! Writes the fuzz targets' seed corpora (fuzz/seeds/TARGET/) from what the tests use:
//! synth 2G-gateway frames for configs/example.toml (IPv4 and IPv6, TCP, UDP, noise,
//! ARP), the shipped and the broken configs, and operator requests.
//!
//! ```sh
//! cargo run -p vipgate-benches --example fuzz_seeds
//! ```

use std::path::Path;

use vipgate_control::config::Config;
use vipgate_engine::buf::PacketBuf;
use vipgate_engine::port::synth::SynthQueue;
use vipgate_engine::port::Port;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seeds = root.join("fuzz/seeds");
    for t in ["wire", "pipeline_frame", "pipeline_burst", "config", "ctl_request"] {
        std::fs::create_dir_all(seeds.join(t))?;
    }
    let example = root.join("configs/example.toml");
    let config = Config::load(&example).expect("the example config is valid");
    let mut spec = vipgate_control::ports::synth_spec(&config, Some(48));
    spec.flows_per_gateway = 4;
    let mut queue = SynthQueue::new(spec, 0, 1);
    let mut bufs: Vec<PacketBuf> = (0..48).map(|_| PacketBuf::new()).collect();
    let n = queue.rx_burst(&mut bufs);
    let mut frames: Vec<Vec<u8>> = bufs[..n].iter().map(|b| b.as_slice().to_vec()).collect();
    // An ARP request for the port's address.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 0xfe, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xfe]);
    arp.extend_from_slice(&[198, 51, 100, 254, 0, 0, 0, 0, 0, 0, 198, 51, 100, 1]);
    arp.resize(60, 0);
    frames.push(arp);
    for (i, f) in frames.iter().enumerate() {
        std::fs::write(seeds.join(format!("wire/frame-{i:02}")), f)?;
        std::fs::write(seeds.join(format!("pipeline_frame/frame-{i:02}")), f)?;
    }
    // Bursts: each frame preceded by its length in units of two bytes.
    for (k, chunk) in frames.chunks(8).enumerate() {
        let mut burst = Vec::new();
        for f in chunk {
            let mut f = f.clone();
            f.resize(f.len().div_ceil(2) * 2, 0);
            burst.push((f.len() / 2).min(255) as u8);
            burst.extend_from_slice(&f[..(f.len()).min(510)]);
        }
        std::fs::write(seeds.join(format!("pipeline_burst/burst-{k}")), burst)?;
    }
    let mut configs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("configs"))?
        .chain(std::fs::read_dir(root.join("configs/bad"))?)
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    configs.sort();
    for p in configs {
        std::fs::copy(&p, seeds.join("config").join(p.file_name().unwrap()))?;
    }
    let requests = [
        r#"{"cmd":"status"}"#,
        r#"{"cmd":"stats"}"#,
        r#"{"cmd":"reload"}"#,
        r#"{"cmd":"drain","backend":"192.0.2.11"}"#,
        r#"{"cmd":"undrain","backend":"[2001:db8::1]:80"}"#,
        r#"{"cmd":"weight","backend":"192.0.2.11:8080","weight":5}"#,
        r#"{"cmd":"table","vip":"203.0.113.10:8000/udp"}"#,
        r#"{"cmd":"flows"}"#,
        "drain 192.0.2.11",
        "[1,2,3]",
    ];
    for (i, r) in requests.iter().enumerate() {
        std::fs::write(seeds.join(format!("ctl_request/request-{i}")), r)?;
    }
    println!("seeds written under {}", seeds.display());
    Ok(())
}
