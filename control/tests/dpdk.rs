//! The dpdk driver on DPDK's virtual devices, as an operator runs it: `vipgate run` with a
//! `driver = "dpdk"` port. Built with the feature `dpdk` only; the tests need root (EAL)
//! and say loudly when they are skipped.
//!
//! - net_pcap: a capture through the dpdk driver gives the frames `vipgate replay` gives;
//! - net_pcap with two workers: the device has no RSS, flows are spread in software and
//!   every flow lives on one worker;
//! - net_af_packet on a veth pair between two network namespaces the test makes: a kernel
//!   client sends TCP and UDP to the VIP, the peer's end sees them tunnelled to backends.
#![cfg(feature = "dpdk")]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod support;
use support::{
    ctl_json, example_config, read_capture, replayed, tmp, traffic, tunnelled, udp, vipgate, wait_for,
    write_capture, OUR_MAC,
};

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: the dpdk tests need root (DPDK's EAL); run them as root");
            return;
        }
    };
}

/// configs/example.toml with a dpdk port on `args`, `workers` workers and its socket in
/// `dir`, written to `DIR/vipgate.toml`.
fn dpdk_config(dir: &Path, workers: usize, args: &[String], next_hop_mac: Option<&str>) -> PathBuf {
    let example = std::fs::read_to_string(example_config()).unwrap();
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let mut config = example
        .replace("workers = 1", &format!("workers = {workers}\nidle_polls_before_sleep = 16"))
        .replace("driver = \"memory\"", &format!("driver = \"dpdk\"\nargs = [{}]", args.join(", ")))
        .replace("/run/vipgate/ctl.sock", dir.join("ctl.sock").to_str().unwrap())
        .replace("/var/lib/vipgate/state.json", dir.join("state.json").to_str().unwrap())
        .replace("metrics = \"127.0.0.1:9620\"\n", "");
    if let Some(mac) = next_hop_mac {
        config = config.replace("next_hop_mac = \"02:00:00:00:00:fe\"", &format!("next_hop_mac = \"{mac}\""));
    }
    assert!(config.contains("driver = \"dpdk\""));
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A UDP frame like `udp`'s but without DF, so that its tunnelled packet may be fragmented.
fn udp_without_df(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = udp(src, sport, dst, dport, payload);
    let (mut ip, _) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
    ip.dont_fragment = false;
    ip.header_checksum = ip.calc_header_checksum();
    f[14..34].copy_from_slice(&ip.to_bytes());
    f
}

/// EAL without hugepages or PCI scan, its runtime files under a prefix of the test's own
/// (`/var/run/dpdk/PREFIX`, removed by [`forget_prefix`]) so that tests run side by side.
fn eal(tag: &str, vdev: Option<&str>, huge: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if !huge {
        args.extend(["--no-huge", "-m", "512"].map(String::from));
    }
    args.extend(["--no-pci".to_string(), format!("--file-prefix={}", prefix(tag))]);
    if let Some(v) = vdev {
        args.extend(["--vdev".to_string(), v.to_string()]);
    }
    args
}

fn prefix(tag: &str) -> String {
    format!("vgtest{}{tag}", std::process::id())
}

fn forget_prefix(tag: &str) {
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(prefix(tag)));
}

fn start(config: &Path, netns: Option<&str>) -> Child {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vipgate")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_vipgate")),
    };
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the socket; if the process died first, fails with what it said.
fn wait_running(child: &mut Child, socket: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answers = || vipgate(&["ctl", "--socket", socket.to_str().unwrap(), "status"]).status.success();
    while !(socket.exists() && answers()) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
            panic!("vipgate exited ({status}) before answering:\n{err}");
        }
        assert!(std::time::Instant::now() < deadline, "vipgate never answered on {}", socket.display());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `ctl stats` once the workers are idle: the same counters twice, 100 ms apart (a reading
/// taken while a worker publishes may fall between two counters of one burst).
fn settled(socket: &Path) -> Value {
    let mut last = ctl_json(socket, &["stats"]);
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = ctl_json(socket, &["stats"]);
        if now["counters"] == last["counters"] && now["workers"] == last["workers"] {
            return now;
        }
        last = now;
    }
    panic!("the counters never settled: {last}");
}

fn stop(child: Child) -> (String, String) {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "vipgate run failed:\n{stderr}");
    (stdout, stderr)
}

/// Runs the capture through a net_pcap device with `workers` workers; returns what the
/// device wrote, the last `ctl stats` and `ctl flows` answers, and the run's log.
fn through_net_pcap(
    dir: &Path,
    input: &Path,
    frames: usize,
    workers: usize,
) -> (Vec<Vec<u8>>, Value, Value, String) {
    let output = dir.join("out.pcap");
    let vdev = format!("net_pcap0,rx_pcap={},tx_pcap={}", input.display(), output.display());
    let tag = format!("pcap{workers}");
    let config = dpdk_config(dir, workers, &eal(&tag, Some(&vdev), false), None);
    let mut child = start(&config, None);
    let socket = dir.join("ctl.sock");
    wait_running(&mut child, &socket);
    let mut stats = Value::Null;
    wait_for("every frame of the capture received", 30, || {
        stats = ctl_json(&socket, &["stats"]);
        stats["counters"]["rx_packets"].as_u64() == Some(frames as u64)
    });
    stats = settled(&socket);
    let flows = ctl_json(&socket, &["flows"]);
    let (report, log) = stop(child);
    forget_prefix(&tag);
    assert!(report.contains("dpdk device net_pcap0"), "{report}");
    (read_capture(&output), stats, flows, log)
}

#[test]
fn a_capture_through_net_pcap_comes_out_as_replay_writes_it() {
    needs_root!();
    let dir = tmp("dpdk-pcap");
    let input = dir.join("in.pcap");
    let mut frames = traffic();
    // Too big once tunnelled: without DF the outer packet is fragmented (buffers of the
    // pipeline's own, copied into mbufs for TX); with DF the client gets ICMP "too big".
    let big_df = udp([198, 51, 100, 7], 4001, [203, 0, 113, 10], 8000, &[0x5a; 1472]);
    assert_eq!(big_df[20] & 0x40, 0x40, "the builder sets DF");
    let big = udp_without_df([198, 51, 100, 7], 4000, [203, 0, 113, 10], 8000, &[0x5a; 1472]);
    frames.extend([big, big_df]);
    write_capture(&input, &frames);
    let (sent, stats, _, _) = through_net_pcap(&dir, &input, frames.len(), 1);
    let expected = replayed(&dir, &input, 1);
    assert!(expected.len() >= 600, "{}", expected.len());
    // One worker, one queue: the same frames in the same order, but for outer fragments,
    // which a worker sends after the rest of their burst (replay writes them in place).
    assert_eq!(sent.len(), expected.len());
    let c = &stats["counters"];
    assert_eq!(c["outer_fragments"].as_u64(), Some(2), "{c}");
    assert_eq!(c["icmp_too_big_sent"].as_u64(), Some(1), "{c}");
    let n = traffic().len();
    assert!(sent[..n - 4] == expected[..n - 4], "the dpdk driver and replay emit the same frames in order");
    let (mut sent_sorted, mut expected_sorted) = (sent.clone(), expected.clone());
    sent_sorted.sort();
    expected_sorted.sort();
    assert!(sent_sorted == expected_sorted, "the dpdk driver and replay emit the same frames");
    // Counters: every frame counted once, the device's own view beside them.
    // 600 forwarded as they came, the big one in two fragments, one ICMP answer.
    assert_eq!(c["forwarded"].as_u64(), Some(601), "{c}");
    assert_eq!(expected.len(), 600 + 2 + 1);
    assert_eq!(c["drop_tx_full"].as_u64(), Some(0), "{c}");
    let port = &stats["port"];
    assert_eq!(port["driver"], "dpdk", "{stats}");
    assert_eq!(port["device"], "net_pcap0");
    assert_eq!(port["xstats"]["rx_good_packets"].as_u64(), Some(frames.len() as u64), "{port}");
    assert_eq!(port["xstats"]["tx_good_packets"].as_u64(), Some(expected.len() as u64), "{port}");
    // The port's own losses are drop reasons beside the pipeline's, counted (none here).
    for reason in ["drop_share_full", "drop_chained", "drop_rx_missed", "drop_rx_nombuf", "drop_rx_errors"] {
        assert_eq!(c[reason].as_u64(), Some(0), "{reason}: {c}");
    }
    assert!(stats["unseen"].as_object().unwrap().is_empty(), "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_workers_on_a_device_without_rss_keep_every_flow_on_one_worker() {
    needs_root!();
    let dir = tmp("dpdk-spread");
    let input = dir.join("in.pcap");
    let frames = traffic();
    write_capture(&input, &frames);
    let (mut sent, stats, flows, log) = through_net_pcap(&dir, &input, frames.len(), 2);
    assert!(log.contains("flows spread over the 2 workers in software"), "{log}");
    assert_eq!(stats["port"]["software_rss"], Value::Bool(true));
    let mut expected = replayed(&dir, &input, 2);
    sent.sort();
    expected.sort();
    assert!(
        sent == expected,
        "two workers emit the frames one does ({} against {})",
        sent.len(),
        expected.len()
    );
    // A flow split over two workers would sit in both flow tables.
    let flows_in_capture: HashSet<(u8, u16)> = frames
        .iter()
        .filter(|f| f.len() > 37 && f[..6] == OUR_MAC && f[30..34] == [203, 0, 113, 10])
        .map(|f| (f[23], u16::from_be_bytes([f[34], f[35]])))
        .collect();
    assert_eq!(flows["total"].as_u64(), Some(flows_in_capture.len() as u64), "{flows}");
    let per_worker: Vec<u64> =
        flows["workers"].as_array().unwrap().iter().map(|w| w["live"].as_u64().unwrap()).collect();
    assert_eq!(per_worker.len(), 2);
    assert!(per_worker.iter().all(|&n| n > 0), "both workers took flows: {per_worker:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two namespaces joined by a veth pair; removed when dropped.
struct Veth {
    engine_ns: String,
    client_ns: String,
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let v = Veth { engine_ns: format!("vge{tag}{id}"), client_ns: format!("vgc{tag}{id}") };
        let sh = |args: &str| {
            let ok = Command::new("sh").args(["-c", args]).status().unwrap().success();
            assert!(ok, "{args}");
        };
        sh(&format!("ip netns add {}", v.engine_ns));
        sh(&format!("ip netns add {}", v.client_ns));
        sh(&format!("ip link add vgd0 netns {} type veth peer name vgc0 netns {}", v.engine_ns, v.client_ns));
        sh(&format!("ip -n {} link set vgd0 up && ip -n {} link set lo up", v.engine_ns, v.engine_ns));
        sh(&format!(
            "ip -n {ns} link set vgc0 address 02:00:00:00:00:c2 && ip -n {ns} link set vgc0 up && \
             ip -n {ns} link set lo up && ip -n {ns} addr add 198.51.100.2/24 dev vgc0 && \
             ip -n {ns} route add 203.0.113.0/24 via 198.51.100.1",
            ns = v.client_ns
        ));
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for ns in [&self.engine_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn a_kernel_client_reaches_the_backends_through_net_af_packet() {
    needs_root!();
    let dir = tmp("dpdk-afpacket");
    let veth = Veth::new("a");
    let config = dpdk_config(
        &dir,
        1,
        &eal("afp", Some("net_af_packet0,iface=vgd0"), false),
        Some("02:00:00:00:00:c2"),
    );
    // 192.0.2.11 serves the TCP VIP too, and is drained in the UDP VIP alone: new UDP
    // flows avoid it, new TCP flows still take it.
    let text = std::fs::read_to_string(&config).unwrap();
    let shared = text.replace(
        "{ address = \"192.0.2.22\", weight = 50 },",
        "{ address = \"192.0.2.22\", weight = 50 },\n  { address = \"192.0.2.11\", weight = 100 },",
    );
    assert_ne!(shared, text);
    std::fs::write(&config, shared).unwrap();
    let mut child = start(&config, Some(&veth.engine_ns));
    let socket = dir.join("ctl.sock");
    wait_running(&mut child, &socket);
    let drained = ctl_json(&socket, &["drain", "192.0.2.11", "--vip", "203.0.113.10:8000/udp"]);
    assert_eq!(drained["ok"], true, "{drained}");

    // The client: resolves 198.51.100.1 (answered by vipgate), sends UDP to the VIP from
    // 40 ports and opens TCP connections to it (their SYNs), and captures on its own end.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tunnel_peer.py");
    let out = Command::new("ip")
        .args(["netns", "exec", &veth.client_ns, "python3", script.to_str().unwrap()])
        .args(["--iface", "vgc0", "--vip", "203.0.113.10", "--udp-port", "8000", "--tcp-port", "5222"])
        .args(["--flows", "40", "--seconds", "4"])
        .output()
        .unwrap();
    let stats = ctl_json(&socket, &["stats"]);
    let (_, log) = stop(child);
    forget_prefix("afp");
    assert!(out.status.success(), "{}\n{log}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // UDP 8000 goes by IPIP to the active backend of the udp VIP (never to the draining
    // ones with a fresh flow: .13 in the config, .11 by the operator's drain there); TCP by
    // GUE to those of the tcp VIP, .11 among them.
    let udp_backends: HashSet<&str> = ["192.0.2.12"].into();
    let tcp_backends: HashSet<&str> = ["192.0.2.21", "192.0.2.22", "192.0.2.11"].into();
    let mut tcp_on_shared = 0;
    let packets = tunnelled(&seen, "203.0.113.10");
    let mut udp_flows = HashSet::new();
    let mut tcp_flows = HashSet::new();
    for p in &packets {
        match (p.encap.as_str(), p.proto) {
            ("ipip", 17) => {
                assert!(udp_backends.contains(p.backend.as_str()), "{p:?}");
                udp_flows.insert(p.sport);
            }
            ("gue", 6) => {
                assert!(tcp_backends.contains(p.backend.as_str()), "{p:?}");
                tcp_flows.insert(p.sport);
                tcp_on_shared += usize::from(p.backend == "192.0.2.11");
            }
            other => panic!("unexpected {other:?}: {p:?}"),
        }
    }
    assert_eq!(udp_flows.len(), 40, "every UDP flow came through: {seen}");
    assert!(tcp_flows.len() >= 35, "the TCP SYNs came through: {} of 40\n{seen}", tcp_flows.len());
    assert!(tcp_on_shared > 0, "the backend drained in the UDP VIP alone still takes TCP flows\n{seen}");
    assert!(seen["arp_answered"].as_bool().unwrap(), "vipgate answered ARP for its address");
    let c = &stats["counters"];
    assert!(c["forwarded"].as_u64().unwrap() >= packets.len() as u64, "{c}");
    assert!(c["arp_replies"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(stats["port"]["device"], "net_af_packet0");
    // What net_af_packet cannot report is said, not shown as zero.
    assert!(c.get("drop_rx_missed").is_none(), "{c}");
    let why = stats["unseen"]["drop_rx_missed"].as_str().unwrap_or_default();
    assert!(why.contains("net_af_packet"), "{stats}");
    assert!(c["drop_share_full"].is_u64(), "{c}");
    drop(veth);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clear_errors_for_a_missing_device_no_root_and_missing_hugepages() {
    needs_root!();
    let dir = tmp("dpdk-errors");
    // No device: a vdev-less EAL without PCI.
    let config = dpdk_config(&dir, 1, &eal("nodev", None, false), None);
    let out = vipgate(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port \"wan\": device not found"), "{err}");
    assert!(err.contains("-a PCI_ADDRESS"), "{err}");

    // Too little memory for the pool (12 MB where two workers want ~20).
    let mut small = eal("small", Some("net_null0"), false);
    small[2] = "12".into();
    let config = dpdk_config(&dir, 2, &small, None);
    let out = vipgate(&["run", "--config", config.to_str().unwrap()]);
    forget_prefix("small");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port \"wan\": too few mbufs: a pool of 8191 mbufs"), "{err}");
    assert!(err.contains("raise -m"), "{err}");

    // Not root: said before EAL is tried (the config is readable by everyone).
    let world = std::env::temp_dir().join(format!("vipgate-dpdk-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&world).unwrap();
    assert!(Command::new("chmod").args(["0777", world.to_str().unwrap()]).status().unwrap().success());
    let config_nobody = dpdk_config(&world, 1, &eal("nobody", Some("net_null0"), false), None);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_vipgate")])
        .args(["run", "--config", config_nobody.to_str().unwrap()])
        .current_dir(&world)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&world);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the dpdk driver needs root"), "{err}");

    // Hugepages asked for (no --no-huge) where none are free.
    let free: u64 = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("free_hugepages")).ok())
                .filter_map(|s| s.trim().parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    if free == 0 {
        let config = dpdk_config(&dir, 1, &eal("nohuge", Some("net_null0"), true), None);
        let out = vipgate(&["run", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no free hugepages") && err.contains("hugepages.md"), "{err}");
        assert!(err.contains("scripts/setup-hugepages.sh"), "{err}");
    } else {
        eprintln!("NOTE: {free} hugepages free here: the no-hugepages error was not exercised");
    }
    forget_prefix("nodev");
    let _ = std::fs::remove_dir_all(&dir);
}

/// net_null offers RSS and several queues: two workers get a hardware queue each, and
/// under a flood that never stops (net_null's frames are for no one: counted as
/// `other_mac`) every packet is counted once and no mbuf goes missing.
#[test]
fn two_workers_get_a_queue_each_on_a_device_with_rss_and_lose_no_mbuf() {
    needs_root!();
    let dir = tmp("dpdk-null");
    let config = dpdk_config(&dir, 2, &eal("null", Some("net_null0"), false), None);
    let mut child = start(&config, None);
    let socket = dir.join("ctl.sock");
    wait_running(&mut child, &socket);
    let first = ctl_json(&socket, &["stats"]);
    let mut stats = Value::Null;
    wait_for("a million packets", 30, || {
        stats = ctl_json(&socket, &["stats"]);
        stats["counters"]["rx_packets"].as_u64().unwrap_or(0) > 1_000_000
    });
    // The operator's screen shows the device.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/status.sh");
    let status = Command::new(script)
        .args(["--config", config.to_str().unwrap(), "--interval", "0.2"])
        .env("VIPGATE", env!("CARGO_BIN_EXE_vipgate"))
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{screen}{}", String::from_utf8_lossy(&status.stderr));
    assert!(screen.contains("port net_null0 (net_null): link up"), "{screen}");
    assert!(screen.contains("queues 2   mbufs free"), "{screen}");
    let (report, log) = stop(child);
    forget_prefix("null");
    assert!(log.contains("2 queues, RSS on IP/TCP/UDP"), "{log}");
    let port = &stats["port"];
    assert_eq!(port["queues"].as_u64(), Some(2), "{port}");
    assert_eq!(port["software_rss"], Value::Bool(false));
    for w in stats["workers"].as_array().unwrap() {
        let c = &w["counters"];
        assert!(c["rx_packets"].as_u64().unwrap() > 0, "worker {} polled its queue: {c}", w["id"]);
    }
    // Every packet counted once, in the final counters (a reading taken while the workers
    // run may fall between two counters of one burst).
    let total = |name: &str| -> u64 {
        let line = report.lines().find(|l| l.split_whitespace().next() == Some(name));
        line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {report}"))
    };
    assert!(total("rx_packets") > 1_000_000, "{report}");
    assert_eq!(total("rx_packets"), total("drop_other_mac"), "{report}");
    // The pool does not drain: what is free stays what was free (give or take what the
    // workers hold for a burst and their caches).
    let (before, after) =
        (first["port"]["mbufs_free"].as_u64().unwrap(), port["mbufs_free"].as_u64().unwrap());
    assert!(
        after + 2 * (256 + 2 * 32) >= before,
        "mbufs free: {before} at start, {after} after a million packets"
    );
    assert_eq!(port["xstats"]["rx_mbuf_allocation_errors"].as_u64(), Some(0), "{port}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vipgate bench --driver dpdk`: every packet a valid one to a VIP, all of them forwarded
/// to the device's TX.
#[test]
fn the_bench_runs_on_the_dpdk_driver_and_forwards_every_packet() {
    needs_root!();
    let eal = format!("--eal=--no-huge -m 512 --no-pci --vdev net_null0 --file-prefix={}", prefix("bench"));
    let out =
        vipgate(&["bench", "--driver", "dpdk", "--flows", "1000", "--packets", "100000", "--json", &eal]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &v["runs"][0];
    assert_eq!(run["driver"], "dpdk", "{v}");
    let w = &run["workers"][0];
    let packets = w["packets"].as_u64().unwrap();
    assert!(packets >= 100_000, "{w}");
    assert_eq!(w["forwarded"].as_u64(), Some(packets), "every packet forwarded and taken by TX: {w}");

    let gateway = vipgate(&["bench", "--driver", "dpdk", "--workload", "gateway", &eal]);
    assert_eq!(gateway.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gateway.stderr).contains("64b and syn"), "{gateway:?}");
    forget_prefix("bench");
}

/// A frame longer than an mbuf arrives in a chain of them (net_pcap chains a jumbo frame):
/// it is freed whole and counted, never forwarded in part; the frames around it pass.
#[test]
fn a_frame_in_several_mbufs_is_dropped_whole_and_counted() {
    needs_root!();
    let dir = tmp("dpdk-chain");
    let input = dir.join("in.pcap");
    let frames = vec![
        udp([198, 51, 100, 7], 5000, [203, 0, 113, 10], 8000, b"before"),
        udp([198, 51, 100, 7], 5001, [203, 0, 113, 10], 8000, &[0x4a; 3000]),
        udp([198, 51, 100, 7], 5002, [203, 0, 113, 10], 8000, b"after"),
    ];
    write_capture(&input, &frames);
    let output = dir.join("out.pcap");
    let vdev = format!("net_pcap0,rx_pcap={},tx_pcap={}", input.display(), output.display());
    let config = dpdk_config(&dir, 1, &eal("chain", Some(&vdev), false), None);
    let mut child = start(&config, None);
    let socket = dir.join("ctl.sock");
    wait_running(&mut child, &socket);
    let mut stats = Value::Null;
    wait_for("the chained frame counted", 30, || {
        stats = ctl_json(&socket, &["stats"]);
        stats["port"]["chained_dropped"].as_u64() == Some(1)
            && stats["counters"]["rx_packets"].as_u64() == Some(2)
    });
    stats = settled(&socket);
    let _ = stop(child);
    forget_prefix("chain");
    assert_eq!(stats["counters"]["forwarded"].as_u64(), Some(2), "{stats}");
    assert_eq!(stats["counters"]["drop_chained"].as_u64(), Some(1), "a drop reason like any: {stats}");
    let sent = read_capture(&output);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|f| f.len() < 200), "only the short frames went out");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The smallest tunnel MTU cuts every packet of a full burst in two: a whole TX burst of
/// second fragments after the first ones, all of them sent.
#[test]
fn a_burst_whose_every_packet_is_fragmented_sends_every_fragment() {
    needs_root!();
    let dir = tmp("dpdk-frags");
    let input = dir.join("in.pcap");
    let frames: Vec<Vec<u8>> = (0..32u16)
        .map(|i| udp_without_df([198, 51, 100, 8], 6000 + i, [203, 0, 113, 10], 8000, &[0x33; 1800]))
        .collect();
    write_capture(&input, &frames);
    let output = dir.join("out.pcap");
    let vdev = format!("net_pcap0,rx_pcap={},tx_pcap={}", input.display(), output.display());
    let config = dpdk_config(&dir, 1, &eal("frags", Some(&vdev), false), None);
    let text = std::fs::read_to_string(&config).unwrap().replace("mtu = 1500", "mtu = 1280");
    std::fs::write(&config, text).unwrap();
    let mut child = start(&config, None);
    let socket = dir.join("ctl.sock");
    wait_running(&mut child, &socket);
    let mut stats = Value::Null;
    wait_for("the capture received", 30, || {
        stats = ctl_json(&socket, &["stats"]);
        stats["counters"]["rx_packets"].as_u64() == Some(32)
    });
    stats = settled(&socket);
    let _ = stop(child);
    forget_prefix("frags");
    let c = &stats["counters"];
    assert_eq!(c["drop_tx_full"].as_u64(), Some(0), "{c}");
    assert_eq!(c["forwarded"].as_u64(), Some(32), "{c}");
    let sent = read_capture(&output);
    // 1848 bytes of outer payload in pieces of at most 1256: two fragments a packet.
    assert_eq!(c["outer_fragments"].as_u64(), Some(64), "{c}");
    assert_eq!(sent.len(), 32 * 2, "every fragment sent");
    assert!(sent.iter().all(|f| f.len() <= 14 + 1280), "each within the MTU");
    let _ = std::fs::remove_dir_all(&dir);
}
