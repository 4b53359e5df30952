//! `vipgate replay` and `vipgate check` end to end: captures the test writes, the binary
//! run as an operator runs it, output captures read back with etherparse.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse as ep;
use support::{
    example_config, json_number, read_capture, replay_example, replay_on, replayed, tmp, traffic, vipgate,
    write_capture,
};
use vipgate_engine::port::pcap;

mod support;

/// (outer destination, inner source port) of a forwarded frame.
fn outer_and_sport(frame: &[u8]) -> (Ipv4Addr, u16) {
    let (_, rest) = ep::Ethernet2Header::from_slice(frame).unwrap();
    let (outer, inner) = ep::Ipv4Header::from_slice(rest).unwrap();
    let inner = match outer.protocol {
        ep::IpNumber::IPV4 => inner,
        // GUE: UDP (8) + GUE (4).
        ep::IpNumber::UDP => &inner[12..],
        p => panic!("outer protocol {p:?}"),
    };
    let (ip, l4) = ep::Ipv4Header::from_slice(inner).unwrap();
    assert_eq!(ip.destination, [203, 0, 113, 10]);
    (Ipv4Addr::from(outer.destination), u16::from_be_bytes([l4[0], l4[1]]))
}

#[test]
fn replay_forwards_counts_and_keeps_flows_on_one_backend_with_any_worker_count() {
    let dir = tmp("replay");
    let input = dir.join("in.pcap");
    let frames = traffic();
    write_capture(&input, &frames);
    let mut per_flow: Vec<HashMap<(u16, u8), Ipv4Addr>> = Vec::new();
    for workers in ["1", "2", "3"] {
        let output = dir.join(format!("out{workers}.pcap"));
        let drops = dir.join(format!("drops{workers}.pcap"));
        let out =
            replay_example(&input, &output, &["--drops", drops.to_str().unwrap(), "--workers", workers]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json = String::from_utf8(out.stdout).unwrap();
        assert!(json.trim_start().starts_with('{') && json.trim_end().ends_with('}'), "{json}");
        assert_eq!(json_number(&json, "packets"), frames.len() as u64);
        assert_eq!(json_number(&json, "forwarded"), 600);
        assert_eq!(json_number(&json, "drop_no_vip"), 1);
        assert_eq!(json_number(&json, "drop_not_vip"), 1);
        assert_eq!(json_number(&json, "drop_other_mac"), 1);
        assert_eq!(json_number(&json, "drop_malformed"), 1);
        assert_eq!(json_number(&json, "workers"), workers.parse::<u64>().unwrap());
        // 200 (gateway, port) pairs, each a UDP flow in some rounds and a TCP flow in the
        // others: 400 flows, 200 of them seen twice.
        assert_eq!(json_number(&json, "flow_misses"), 400);
        assert_eq!(json_number(&json, "flow_hits"), 200);
        let forwarded = read_capture(&output);
        assert_eq!(forwarded.len(), 600);
        assert_eq!(read_capture(&drops), frames[600..].to_vec(), "drops are written as received");
        let mut flows = HashMap::new();
        for (f, original) in forwarded.iter().zip(&frames) {
            let (backend, sport) = outer_and_sport(f);
            let proto = original[23];
            if let Some(prev) = flows.insert((sport, proto), backend) {
                assert_eq!(prev, backend, "a flow changed backend within one replay");
            }
            // The draining backend takes no new flows.
            assert_ne!(backend, Ipv4Addr::new(192, 0, 2, 13));
        }
        let backends: std::collections::HashSet<_> = flows.values().collect();
        assert_eq!(backends.len(), 4, "two UDP and two TCP backends all used: {backends:?}");
        per_flow.push(flows);
    }
    assert_eq!(per_flow[0], per_flow[1], "2 workers choose as 1 does");
    assert_eq!(per_flow[0], per_flow[2], "3 workers choose as 1 does");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replay_refuses_bad_inputs_with_one_line_and_exit_1() {
    let dir = tmp("refuse");
    let config = example_config();
    let out_path = dir.join("out.pcap");
    // Missing input.
    let missing = dir.join("missing.pcap");
    let r = replay_on(&config, &missing, &out_path, &[]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8(r.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.pcap") && err.contains("No such file"), "{err}");
    // Not a capture.
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let r = replay_on(&config, &junk, &out_path, &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8(r.stderr).unwrap().contains("not a pcap or pcapng file"));
    // An output that cannot be created.
    let good = dir.join("good.pcap");
    write_capture(&good, &traffic()[..3]);
    let r = replay_on(&config, &good, Path::new("/nonexistent-dir/out.pcap"), &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8(r.stderr).unwrap().contains("/nonexistent-dir/out.pcap"));
    // A bad config: file:line:col.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[engine]\nhash_seed = 1\nmaglev_table_size = 1000\n").unwrap();
    let r = replay_on(&bad, &good, &out_path, &[]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8(r.stderr).unwrap();
    assert!(err.contains(&format!("{}:3:21: maglev_table_size 1000", bad.display())), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `frames` as a pcapng capture written by the pcap-file crate (what Wireshark writes by
/// default): one interface of `linktype` with nanosecond times, 1 ms apart, each frame
/// captured up to `snap` bytes.
fn write_pcapng(path: &Path, linktype: pcap_file::DataLink, frames: &[Vec<u8>], snap: usize) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    let mut w = PcapNgWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    // (pcap-file writes times in nanoseconds: the interface must say so.)
    let options =
        vec![pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(9)];
    w.write_pcapng_block(InterfaceDescriptionBlock { linktype, snaplen: 0xffff, options }).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let timestamp = std::time::Duration::from_nanos(1_700_000_000_000_000_000 + i as u64 * 1_000_000);
        let data = std::borrow::Cow::Borrowed(&f[..f.len().min(snap)]);
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp,
            original_len: f.len() as u32,
            data,
            options: vec![],
        };
        w.write_pcapng_block(packet).unwrap();
    }
}

#[test]
fn replay_reads_pcapng_as_it_reads_pcap() {
    let dir = tmp("pcapng");
    let frames = traffic();
    let (classic, ng) = (dir.join("in.pcap"), dir.join("in.pcapng"));
    write_capture(&classic, &frames);
    write_pcapng(&ng, pcap_file::DataLink::ETHERNET, &frames, usize::MAX);
    let from_classic = replayed(&dir, &classic, 2);
    let from_ng = replayed(&dir, &ng, 2);
    assert_eq!(from_classic.len(), 600);
    assert_eq!(from_ng, from_classic);
    // A capture of a link type the reader does not take: one line, exit 1.
    let radio = dir.join("radio.pcapng");
    write_pcapng(&radio, pcap_file::DataLink::IEEE802_11_RADIOTAP, &frames[..2], usize::MAX);
    let out = dir.join("out.pcap");
    let replay = |input: &Path| replay_example(input, &out, &[]);
    let r = replay(&radio);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8(r.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("radio.pcapng") && err.contains("record 1: interface 0: link type 127"), "{err}");
    // Captured with a short snap length: counted, and said once.
    let short = dir.join("short.pcapng");
    write_pcapng(&short, pcap_file::DataLink::ETHERNET, &frames[..10], 40);
    let r = replay(&short);
    assert!(r.status.success());
    let json = String::from_utf8(r.stdout).unwrap();
    assert_eq!(json_number(&json, "truncated"), 10);
    assert_eq!(json_number(&json, "drop_malformed"), 10);
    let err = String::from_utf8(r.stderr).unwrap();
    assert_eq!(
        err.trim_end(),
        "vipgate replay: 10 of 10 frames were captured short of their length on the wire (the capture's \
         snap length); the engine saw only what was captured, and a packet cut inside its headers drops \
         as malformed: capture with tcpdump -s 0"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `frames` as `tcpdump -i any` captures them (Linux cooked, v1): each packet received,
/// from the client's MAC, with every tenth also as the capturing host sent it on (as an old
/// balancer does), which a port never receives.
fn cooked_of(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let sll = |packet_type: u16, src: &[u8]| {
        let mut address = [0u8; 8];
        address[..6].copy_from_slice(src);
        ep::LinuxSllHeader {
            packet_type: ep::LinuxSllPacketType::try_from(packet_type).unwrap(),
            arp_hrd_type: ep::ArpHardwareId::ETHERNET,
            sender_address_valid_length: 6,
            sender_address: address,
            protocol_type: ep::LinuxSllProtocolType::EtherType(ep::EtherType::IPV4),
        }
        .to_bytes()
    };
    let mut packets = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        packets.push([&sll(0, &f[6..12])[..], &f[14..]].concat());
        if i % 10 == 0 {
            packets.push([&sll(4, &[2, 0, 0, 0, 0, 1])[..], &f[14..]].concat());
        }
    }
    packets
}

#[test]
fn replay_reads_cooked_and_raw_ip_captures_as_the_port_receives_them() {
    let dir = tmp("cooked");
    // The VIP traffic (the noise's frames for another MAC and garbage have no cooked form).
    let frames = &traffic()[..600];
    let ethernet = dir.join("in.pcap");
    write_capture(&ethernet, frames);
    let from_ethernet = replayed(&dir, &ethernet, 2);
    assert_eq!(from_ethernet.len(), 600);
    let cooked_packets = cooked_of(frames);
    let cooked = dir.join("cooked.pcapng");
    write_pcapng(&cooked, pcap_file::DataLink::LINUX_SLL, &cooked_packets, usize::MAX);
    // A tunnel interface's capture: IP packets alone.
    let raw = dir.join("raw.pcapng");
    let raw_packets: Vec<Vec<u8>> = frames.iter().map(|f| f[14..].to_vec()).collect();
    write_pcapng(&raw, pcap_file::DataLink::RAW, &raw_packets, usize::MAX);
    let out = dir.join("out.pcap");
    let replay = |input: &Path| replay_example(input, &out, &["--workers", "2"]);
    let r = replay(&cooked);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json = String::from_utf8(r.stdout).unwrap();
    assert_eq!((json_number(&json, "packets"), json_number(&json, "not_received")), (600, 60));
    assert_eq!(read_capture(&out), from_ethernet);
    assert_eq!(
        String::from_utf8(r.stderr).unwrap().trim_end(),
        "vipgate replay: skipped 60 packets that the capture says the capturing host sent, or saw for \
         other hosts (a port does not receive them); they are counted as not_received, outside packets"
    );
    let r = replay(&raw);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json = String::from_utf8(r.stdout).unwrap();
    assert_eq!((json_number(&json, "packets"), json_number(&json, "not_received")), (600, 0));
    assert_eq!(read_capture(&out), from_ethernet);
    assert!(r.stderr.is_empty(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replay_reads_what_tcpdump_i_any_writes() {
    // A real capture (see tests/captures/README.md): Linux cooked v2.
    let dir = tmp("tcpdump-any");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/tcpdump-any.pcap");
    let out = dir.join("out.pcap");
    let r = replay_example(&input, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json = String::from_utf8(r.stdout).unwrap();
    for (key, value) in [("packets", 22), ("not_received", 1), ("forwarded", 21), ("arp_replies", 1)] {
        assert_eq!(json_number(&json, key), value, "{key}: {json}");
    }
    assert_eq!(
        String::from_utf8(r.stderr).unwrap().trim_end(),
        "vipgate replay: skipped 1 packet that the capture says the capturing host sent, or saw for \
         other hosts (a port does not receive them); they are counted as not_received, outside packets"
    );
    let written = read_capture(&out);
    // The ARP reply goes to the client's MAC, which the cooked header named.
    let (eth, arp) = ep::Ethernet2Header::from_slice(&written[0]).unwrap();
    assert_eq!((eth.destination, eth.ether_type), ([0x56, 0x06, 0x1b, 0xec, 0xd2, 0xf2], ep::EtherType::ARP));
    assert_eq!(&arp[6..8], &[0, 2], "an ARP reply");
    // Then the 20 datagrams of one flow to the UDP VIP's backends (IPIP) and the two SYNs of
    // one connection to the TCP VIP's (GUE), each flow to one backend.
    let tunnelled: Vec<(Ipv4Addr, u16)> = written[1..].iter().map(|f| outer_and_sport(f)).collect();
    let (udp, tcp) = tunnelled.split_at(20);
    assert!(udp.iter().all(|t| *t == udp[0]) && tcp.iter().all(|t| *t == tcp[0]), "{tunnelled:?}");
    assert!(["192.0.2.11", "192.0.2.12"].contains(&udp[0].0.to_string().as_str()), "{tunnelled:?}");
    assert!(["192.0.2.21", "192.0.2.22"].contains(&tcp[0].0.to_string().as_str()), "{tunnelled:?}");
    assert_eq!(written.len(), 22);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replay_reads_a_capture_piped_to_standard_input() {
    use std::io::Write;
    let dir = tmp("stdin");
    let frames = traffic();
    let input = dir.join("in.pcapng");
    write_pcapng(&input, pcap_file::DataLink::ETHERNET, &frames, usize::MAX);
    let from_file = replayed(&dir, &input, 1);
    let out = dir.join("piped.pcap");
    let config = example_config();
    let run = |bytes: Vec<u8>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vipgate"))
            .args(["replay", "--config", config.to_str().unwrap(), "--input", "-", "--output"])
            .arg(&out)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&bytes));
        let output = child.wait_with_output().unwrap();
        // (vipgate may stop reading at an error: the write's own result does not matter.)
        writer.join().unwrap().ok();
        output
    };
    let r = run(std::fs::read(&input).unwrap());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(json_number(&String::from_utf8(r.stdout).unwrap(), "packets"), frames.len() as u64);
    assert_eq!(read_capture(&out), from_file);
    let r = run(b"not a capture\n".to_vec());
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(r.stderr).unwrap(),
        "vipgate replay: standard input: shorter than a pcap header (24 bytes)\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_accepts_the_example_and_reports_every_error_with_its_position() {
    let config = example_config();
    let r = vipgate(&["check", "--config", config.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8(r.stdout).unwrap().contains("ok (2 subnets, 3 VIPs"));

    let dir = tmp("check");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        r#"[tunnel]
source_v4 = "198.51.100.1"

[[subnet]]
prefix = "203.0.113.0/24"

[[vip]]
address = "203.0.113.10"
protocol = "udp"
encap = "ipip"
backends = [ { address = "192.0.2.1", weight = 0 } ]

[[vip]]
address = "203.0.113.10"
protocol = "udp"
encap = "ipip"
backends = [ { address = "192.0.2.1", state = "sleeping" } ]

[[port]]
name = "wan"
driver = "memory"
mac = "02:00:00:00:00:01"
next_hop_mac = "02:00:00:00:00:fe"
addresses = ["203.0.113.30"]

[[vip]]
address = "203.0.113.30"
protocol = "tcp"
encap = "gre"
backends = [ { address = "192.0.2.2" } ]
"#,
    )
    .unwrap();
    let r = vipgate(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8(r.stderr).unwrap();
    let p = bad.display();
    assert!(err.contains(&format!("{p}:11:12: every backend of this VIP has weight 0")), "{err}");
    assert!(err.contains(&format!("{p}:14:11: VIP udp://203.0.113.10 is defined twice")), "{err}");
    assert!(
        err.contains(&format!("{p}:17:47: state \"sleeping\" is not one of active, draining, down")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:27:11: VIP 203.0.113.30 is also an address of port \"wan\"")),
        "{err}"
    );
    assert!(r.stdout.is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replay_says_when_the_port_mac_does_not_match_the_capture() {
    let dir = tmp("mac");
    let input = dir.join("in.pcap");
    let mut frames = traffic()[..20].to_vec();
    for f in frames.iter_mut() {
        f[..6].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 7]);
    }
    write_capture(&input, &frames);
    let r = replay_example(&input, &dir.join("out.pcap"), &[]);
    assert!(r.status.success());
    assert_eq!(json_number(&String::from_utf8(r.stdout).unwrap(), "drop_other_mac"), 20);
    let err = String::from_utf8(r.stderr).unwrap();
    assert!(
        err.contains("20 of 20 frames were for another MAC") && err.contains("02:00:00:00:00:01"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `vipgate run` with a pcap port sends what `vipgate replay` writes for the same capture
/// and workers: the appliance and the offline tool are one engine.
/// `vipgate run` with a pcap port on `DIR/in.pcap` until its `packets` frames are received,
/// then stopped: what it sent, and its report.
fn run_pcap_port(dir: &Path, packets: usize) -> (Vec<Vec<u8>>, String) {
    let path = write_pcap_port_config(dir, "out.pcap");
    let child = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let socket = dir.join("ctl.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = vipgate(&["ctl", "--json", "--socket", socket.to_str().unwrap(), "stats"]);
        if out.status.success()
            && json_number(&String::from_utf8_lossy(&out.stdout), "rx_packets") == packets as u64
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the capture was not all received: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut sent = read_capture(&dir.join("out.pcap"));
    sent.sort();
    (sent, String::from_utf8(out.stdout).unwrap())
}

#[test]
fn run_with_a_pcap_port_sends_what_replay_writes() {
    let dir = tmp("run-pcap");
    let input = dir.join("in.pcap");
    let frames = traffic();
    write_capture(&input, &frames);
    let (sent, report) = run_pcap_port(&dir, frames.len());
    assert!(report.contains(&format!("capture: {} frames read", frames.len())), "{report}");
    let mut expected = replayed(&dir, &input, 2);
    assert!(expected.len() >= 600, "{}", expected.len());
    expected.sort();
    assert_eq!(sent, expected, "run and replay emit the same frames");
    // A `tcpdump -i any` capture of the VIP traffic: the same frames sent, what the
    // capturing host sent skipped and said.
    write_capture(&input, &frames[..600]);
    let mut expected = replayed(&dir, &input, 2);
    expected.sort();
    write_pcapng(&input, pcap_file::DataLink::LINUX_SLL, &cooked_of(&frames[..600]), usize::MAX);
    let (sent, report) = run_pcap_port(&dir, 600);
    assert!(
        report.contains("capture: 600 frames read, 600 written, 60 skipped (sent by the capturing host, or for other hosts)"),
        "{report}"
    );
    assert_eq!(sent, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_and_restarted_appliance_chooses_the_same_backends() {
    let dir = tmp("kill-restart");
    let input = dir.join("in.pcap");
    let frames = traffic();
    write_capture(&input, &frames);
    let mut maps = Vec::new();
    for round in 0..2 {
        let out = format!("out{round}.pcap");
        let path = write_pcap_port_config(&dir, &out);
        let mut child = Command::new(env!("CARGO_BIN_EXE_vipgate"))
            .args(["run", "--config", path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let output = dir.join(&out);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Everything forwarded is in the file (the writer flushes when idle).
        while !output.exists() || read_capture_lenient(&output).len() < 600 {
            assert!(std::time::Instant::now() < deadline, "round {round}: the output never filled");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut map = HashMap::new();
        for f in read_capture_lenient(&output) {
            let (backend, sport) = outer_and_sport(&f);
            // The inner protocol: after the outer IPv4 header, and for GUE its UDP and
            // GUE headers.
            let inner = if f[23] == 17 { 34 + 12 } else { 34 };
            map.insert((sport, f[inner + 9]), backend);
        }
        assert_eq!(map.len(), 400, "round {round}");
        maps.push(map);
        let _ = std::fs::remove_file(dir.join("ctl.sock"));
    }
    assert_eq!(maps[0], maps[1], "the restarted process chose as the killed one did");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The frames of a capture that may be cut short (a writer killed mid-record).
fn read_capture_lenient(path: &Path) -> Vec<Vec<u8>> {
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    let Ok(mut r) = pcap::Reader::new(file) else { return Vec::new() };
    let mut out = Vec::new();
    while let Ok(Some(rec)) = r.next() {
        out.push(rec.data.to_vec());
    }
    out
}

/// configs/example.toml on two workers with a pcap port reading `DIR/in.pcap` and writing
/// `DIR/OUTPUT`, its socket in `dir` and no metrics, written to `DIR/vipgate.toml`.
fn write_pcap_port_config(dir: &Path, output: &str) -> PathBuf {
    let example = std::fs::read_to_string(example_config()).unwrap();
    let config = example
        .replace("workers = 1", "workers = 2\nidle_polls_before_sleep = 16")
        .replace(
            "driver = \"memory\"",
            &format!("driver = \"pcap\"\ninput = \"in.pcap\"\noutput = \"{output}\""),
        )
        .replace("/run/vipgate/ctl.sock", dir.join("ctl.sock").to_str().unwrap())
        .replace("metrics = \"127.0.0.1:9620\"\n", "");
    assert_ne!(config, example);
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, config).unwrap();
    path
}
