//! Writes the fuzz targets' seed corpora (fuzz/seeds/TARGET/) from what the tests use:
//! synth 2G-gateway frames for configs/example.toml (IPv4 and IPv6, TCP, UDP, noise,
//! ARP), the shipped and the broken configs, operator requests, and captures of the
//! frames (pcap and pcapng).
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
    for t in ["wire", "pipeline_frame", "pipeline_burst", "lanes", "config", "ctl_request", "capture"] {
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
    // The lanes target builds frames from 16-byte records (fuzz/fuzz_targets/lanes.rs):
    // every kind of frame as the lane takes it, and each with one byte changed.
    let mut plain = Vec::new();
    for kind in 0..6u8 {
        for i in 0..4u8 {
            plain.extend_from_slice(&[kind, 7 + i, i, 0x4e, 0x20 + i, 0x1f, 0x40, 0, 0, 3, 0, 0, 0, 0, 0, 0]);
        }
    }
    std::fs::write(seeds.join("lanes/plain"), plain)?;
    let near: Vec<u8> = (0..6u8)
        .flat_map(|k| [k, 9, 1, 0x4e, 0x21, 0x1f, 0x40, 1, 0x40, 2, 1, 0, 14 + k * 3, 0xff, 0, 0])
        .collect();
    std::fs::write(seeds.join("lanes/near-miss"), near)?;
    // Captures of the first frames: classic pcap (ours) and pcapng (the pcap-file crate's,
    // big- and little-endian), and as `tcpdump -i any` (Linux cooked) and a tunnel
    // interface (raw IP) capture them.
    let mut classic = vipgate_engine::port::pcap::Writer::new(Vec::new()).expect("writes to memory");
    for (i, f) in frames.iter().take(4).enumerate() {
        classic.write(1_700_000_000_000_000_000 + i as u64, f).expect("writes to memory");
    }
    std::fs::write(seeds.join("capture/classic.pcap"), classic.finish().expect("writes to memory"))?;
    for (name, endianness) in [("le", pcap_file::Endianness::Little), ("be", pcap_file::Endianness::Big)] {
        let ng = pcapng(endianness, pcap_file::DataLink::ETHERNET, &frames[..4]);
        std::fs::write(seeds.join(format!("capture/{name}.pcapng")), ng)?;
    }
    // Cooked: packet type (to us, then sent by us), ARPHRD_ETHER, address length 6, the
    // sender's address in 8 bytes, the EtherType.
    let cooked: Vec<Vec<u8>> = frames
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, f)| {
            let mut p = vec![0, if i == 1 { 4 } else { 0 }, 0, 1, 0, 6];
            p.extend_from_slice(&f[6..12]);
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&f[12..]);
            p
        })
        .collect();
    let ng = pcapng(pcap_file::Endianness::Little, pcap_file::DataLink::LINUX_SLL, &cooked);
    std::fs::write(seeds.join("capture/cooked.pcapng"), ng)?;
    let raw: Vec<Vec<u8>> = frames.iter().take(4).map(|f| f[14..].to_vec()).collect();
    let ng = pcapng(pcap_file::Endianness::Little, pcap_file::DataLink::RAW, &raw);
    std::fs::write(seeds.join("capture/raw.pcapng"), ng)?;
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

/// `frames` as pcapng: a section, an Ethernet interface with nanosecond times, an enhanced
/// packet block each but the last, which is a simple packet block.
fn pcapng(endianness: pcap_file::Endianness, linktype: pcap_file::DataLink, frames: &[Vec<u8>]) -> Vec<u8> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use std::borrow::Cow;
    let section = SectionHeaderBlock { endianness, ..Default::default() };
    let mut w = PcapNgWriter::with_section_header(Vec::new(), section).expect("writes to memory");
    let options = vec![InterfaceDescriptionOption::IfTsResol(9)];
    let interface = InterfaceDescriptionBlock { linktype, snaplen: 0xffff, options };
    w.write_pcapng_block(interface).expect("writes to memory");
    let (last, rest) = frames.split_last().expect("frames");
    for (i, f) in rest.iter().enumerate() {
        let timestamp = std::time::Duration::from_nanos(1_700_000_000_000_000_000 + i as u64);
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp,
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        };
        w.write_pcapng_block(packet).expect("writes to memory");
    }
    let simple = SimplePacketBlock { original_len: last.len() as u32, data: Cow::Borrowed(last) };
    w.write_pcapng_block(simple).expect("writes to memory");
    w.into_inner()
}
