//! From a config's `[[port]]` to one port queue per worker.
//!
//! - `memory`: rings that a host side feeds ([`PortHost::Memory`]); what the workers emit
//!   waits there until taken.
//! - `synth`: every worker generates its own share of the 2G-gateway traffic.
//! - `pcap`: a feeder thread reads the capture and spreads its frames over the workers'
//!   rings by flow, waiting for room rather than dropping; a writer thread writes what the
//!   workers emit to the output capture.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vipgate_engine::buf::DEFAULT_CAPACITY;
use vipgate_engine::port::memory::{self, MemoryHost};
use vipgate_engine::port::pcap::{Reader, Writer};
use vipgate_engine::port::synth::{Profile, SynthQueue, SynthSpec, Target};
use vipgate_engine::port::Port;
use vipgate_engine::table::VipProtocol;

use crate::config::{Config, Driver};

/// Packets each memory ring holds.
pub const RING_DEPTH: usize = 1024;

/// What stays on the network's side of the port.
#[derive(Debug)]
pub enum PortHost {
    /// The memory port's host side.
    Memory(MemoryHost),
    /// Nothing: synth queues are their own source and sink.
    Synth,
    /// The capture threads.
    Pcap(PcapThreads),
    /// The DPDK device.
    #[cfg(feature = "dpdk")]
    Dpdk(Arc<vipgate_engine::port::dpdk::DpdkDevice>),
    /// The AF_XDP sockets' interface and its XDP filter.
    #[cfg(feature = "afxdp")]
    Afxdp(Arc<vipgate_engine::port::afxdp::AfxdpDevice>),
}

/// The prefixes an afxdp port's XDP filter gives vipgate: the VIP subnets, the port's own
/// addresses (ARP, ND and pings for them), and any VIP outside the subnets.
pub fn taken_prefixes(config: &Config) -> Vec<(IpAddr, u8)> {
    let host = |a: IpAddr| (a, if a.is_ipv4() { 32 } else { 128 });
    let mut out: Vec<(IpAddr, u8)> = config.subnets.iter().map(|s| (s.addr, s.len)).collect();
    out.extend(config.ports.iter().flat_map(|p| p.addresses.iter().copied().map(host)));
    out.extend(
        config
            .vips
            .iter()
            .map(|v| v.addr)
            .filter(|&a| !config.subnets.iter().any(|s| s.contains(a)))
            .map(host),
    );
    out.sort();
    out.dedup();
    out
}

/// The report of an AF_XDP port: its sockets' statistics as its losses, and what its
/// filter took and passed.
#[cfg(feature = "afxdp")]
pub fn afxdp_info(device: &vipgate_engine::port::afxdp::AfxdpDevice) -> crate::engine::PortReport {
    use crate::engine::PortLoss;
    let s = device.stats();
    let (taken, passed) = device.filter_counts();
    let counted = |reason, count| PortLoss { reason, count: Some(count), unseen: None };
    let up = std::fs::read_to_string(format!("/sys/class/net/{}/operstate", device.interface))
        .is_ok_and(|t| t.trim() == "up");
    let speed = std::fs::read_to_string(format!("/sys/class/net/{}/speed", device.interface))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(0);
    crate::engine::PortReport {
        driver: "afxdp".into(),
        device: device.interface.clone(),
        device_driver: format!(
            "{} XDP, {}",
            device.xdp_mode,
            if device.zero_copy { "zero-copy" } else { "copy" }
        ),
        link: crate::engine::PortLink { up, speed_mbps: speed, full_duplex: true },
        queues: device.queues,
        software_rss: false,
        share_full: 0,
        chained_dropped: 0,
        mbufs_free: 0,
        xstats: [
            ("xdp_taken", taken),
            ("xdp_passed", passed),
            ("xsk_rx_dropped", s.rx_dropped),
            ("xsk_rx_ring_full", s.rx_ring_full),
            ("xsk_rx_fill_ring_empty_descs", s.rx_fill_ring_empty_descs),
            ("xsk_rx_invalid_descs", s.rx_invalid_descs),
            ("xsk_tx_invalid_descs", s.tx_invalid_descs),
            ("xsk_tx_ring_empty_descs", s.tx_ring_empty_descs),
            ("xsk_wakeups", s.wakeups),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        // Frames lost: dropped on receive (no frame to put them in, too long), dropped
        // for a full RX ring, and sends the kernel refused. The two "empty" counts are
        // events, not frames (the fill ring found empty, which drops show as rx_dropped
        // too; the TX ring found empty, as it is whenever the kernel has sent all), and
        // stay among the device's counters.
        losses: vec![
            counted("rx_dropped", s.rx_dropped),
            counted("rx_ring_full", s.rx_ring_full),
            counted("tx_invalid", s.tx_invalid_descs),
        ],
    }
}

/// The report of a DPDK port: its link, queues, pool and counters, and its losses.
#[cfg(feature = "dpdk")]
pub fn dpdk_info(device: &vipgate_engine::port::dpdk::DpdkDevice) -> crate::engine::PortReport {
    let link = device.link();
    crate::engine::PortReport {
        driver: "dpdk".into(),
        device: device.name.clone(),
        device_driver: device.driver.clone(),
        link: crate::engine::PortLink {
            up: link.up,
            speed_mbps: link.speed_mbps,
            full_duplex: link.full_duplex,
        },
        queues: device.queues,
        software_rss: device.software_rss,
        share_full: device.share_full.load(Ordering::Relaxed),
        chained_dropped: device.chained.load(Ordering::Relaxed),
        mbufs_free: u64::from(device.mbufs_free()),
        xstats: device.xstats().into_iter().collect(),
        losses: dpdk_losses(device),
    }
}

/// The losses a DPDK port sees outside the pipeline: frames its software spread could not
/// queue (`share_full`), frames longer than an mbuf (`chained`), and the device's own RX
/// misses, allocation failures and errors, and TX errors (DPDK's `imissed`, `rx_nombuf`,
/// `ierrors`, `oerrors`, read through their xstats). A driver that does not count a kind
/// says so rather than show zero.
#[cfg(feature = "dpdk")]
pub fn dpdk_losses(device: &vipgate_engine::port::dpdk::DpdkDevice) -> Vec<crate::engine::PortLoss> {
    use crate::engine::PortLoss;
    let xstats: std::collections::HashMap<String, u64> = device.xstats().into_iter().collect();
    let counted = |reason, count| PortLoss { reason, count: Some(count), unseen: None };
    let mut out = vec![
        counted("share_full", device.share_full.load(Ordering::Relaxed)),
        counted("chained", device.chained.load(Ordering::Relaxed)),
    ];
    for (reason, xstat) in [
        ("rx_missed", "rx_missed_errors"),
        ("rx_nombuf", "rx_mbuf_allocation_errors"),
        ("rx_errors", "rx_errors"),
        ("tx_errors", "tx_errors"),
    ] {
        let unseen = match (reason, device.driver.as_str()) {
            ("rx_missed", "net_af_packet") => Some(
                "net_af_packet (DPDK 22.11) does not report the frames its kernel ring drops; the kernel's \
                 packet socket statistics are not read"
                    .to_string(),
            ),
            _ if !xstats.contains_key(xstat) => Some(format!("the device has no {xstat} counter")),
            _ => None,
        };
        out.push(match unseen {
            Some(why) => PortLoss { reason, count: None, unseen: Some(why) },
            None => counted(reason, xstats[xstat]),
        });
    }
    out
}

/// The threads of a pcap port.
#[derive(Debug)]
pub struct PcapThreads {
    stop: Arc<AtomicBool>,
    /// Frames read from the input capture so far.
    pub read: Arc<AtomicU64>,
    /// Whether the whole input has been handed to the workers.
    pub input_done: Arc<AtomicBool>,
    /// Frames written to the output capture so far.
    pub written: Arc<AtomicU64>,
    /// Packets of a Linux cooked capture skipped so far because the capturing host sent
    /// them, or saw them for other hosts (see [`Reader::not_received`]).
    pub not_received: Arc<AtomicU64>,
    feeder: Option<JoinHandle<Result<(), String>>>,
    writer: Option<JoinHandle<Result<(), String>>>,
}

impl PcapThreads {
    /// Stops the threads once the workers have stopped: the writer takes what is left and
    /// closes the capture. Returns the first error either thread met.
    pub fn finish(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for h in [self.feeder.take(), self.writer.take()].into_iter().flatten() {
            match h.join() {
                Ok(Err(e)) if result.is_ok() => result = Err(e),
                Err(_) if result.is_ok() => result = Err("a capture thread panicked".to_string()),
                _ => {}
            }
        }
        result
    }
}

/// The synth spec of `config`'s first port: the VIPs in config order (the first is the
/// busiest), noise addresses chosen from the subnets.
pub fn synth_spec(config: &Config, limit: Option<u64>) -> SynthSpec {
    let port = config.ports.first();
    let targets = config
        .vips
        .iter()
        .map(|v| Target {
            addr: v.addr,
            protocol: match v.protocol {
                VipProtocol::Tcp => 6,
                VipProtocol::Udp => 17,
                VipProtocol::Any => 0,
            },
            port: v.port,
        })
        .collect();
    let is_vip = |a: IpAddr| config.vips.iter().any(|v| v.addr == a);
    // The first addresses of the first subnet that are no VIP; then an address in no subnet.
    let unused_in_subnet = config.subnets.iter().find_map(|s| match s.addr {
        IpAddr::V4(n) => (1..255u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(n).wrapping_add(i))))
            .find(|&a| !is_vip(a)),
        IpAddr::V6(n) => (1..255u128)
            .map(|i| IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n).wrapping_add(i))))
            .find(|&a| !is_vip(a)),
    });
    let candidates = ["192.0.2.250", "198.51.100.250", "203.0.113.250"];
    let outside = candidates
        .iter()
        .filter_map(|c| c.parse::<IpAddr>().ok())
        .find(|&a| !config.subnets.iter().any(|s| s.contains(a)) && !is_vip(a))
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 250)));
    SynthSpec {
        seed: config.engine.hash_seed ^ 0x2626_2626_2626_2626,
        targets,
        mac: port.map_or([2, 0, 0, 0, 0, 1], |p| p.mac.0),
        router_mac: port.map_or([2, 0, 0, 0, 0, 0xfe], |p| p.next_hop_mac.0),
        unused_in_subnet,
        outside,
        profile: port
            .and_then(|p| p.profile.as_deref())
            .and_then(Profile::from_name)
            .unwrap_or(Profile::Gateway2g),
        rate: port.and_then(|p| p.rate).unwrap_or(0),
        limit,
        ..SynthSpec::default()
    }
}

/// Opens `config`'s first port with one queue per worker.
pub fn open(config: &Config) -> Result<(Vec<Box<dyn Port>>, PortHost), String> {
    let workers = config.engine.workers.max(1);
    let Some(port) = config.ports.first() else {
        return Err(format!("{}: no [[port]]: the engine has nothing to poll", config.path.display()));
    };
    match port.driver {
        Driver::Memory => {
            let (host, queues) = memory::channel(workers, RING_DEPTH, DEFAULT_CAPACITY);
            Ok((queues.into_iter().map(|q| Box::new(q) as Box<dyn Port>).collect(), PortHost::Memory(host)))
        }
        Driver::Synth => {
            let spec = synth_spec(config, None);
            let queues =
                (0..workers).map(|q| Box::new(SynthQueue::new(spec.clone(), q, workers)) as Box<dyn Port>);
            Ok((queues.collect(), PortHost::Synth))
        }
        Driver::Pcap => {
            let input =
                port.input.clone().ok_or_else(|| format!("port \"{}\": no input capture", port.name))?;
            let (host, queues) = memory::channel(workers, RING_DEPTH, DEFAULT_CAPACITY);
            let threads = pcap_threads(host, input, port.output.clone(), port.mac.0)?;
            Ok((queues.into_iter().map(|q| Box::new(q) as Box<dyn Port>).collect(), PortHost::Pcap(threads)))
        }
        #[cfg(feature = "dpdk")]
        Driver::Dpdk => {
            use vipgate_engine::port::dpdk::{self, DpdkOptions};
            let single = match port.queues {
                None => false,
                Some(1) => true,
                Some(q) if q == workers => false,
                Some(q) => {
                    return Err(format!(
                        "port \"{}\": queues = {q}: a dpdk port runs one queue per worker ({workers}), \
                         or 1 to spread flows over the workers in software",
                        port.name
                    ))
                }
            };
            let options = DpdkOptions {
                name: port.name.clone(),
                args: port.args.clone(),
                workers,
                single_queue: single,
                mbufs: None,
            };
            let (device, queues) =
                dpdk::open(&options).map_err(|e| format!("port \"{}\": {e}", port.name))?;
            Ok((
                queues.into_iter().map(|q| Box::new(q) as Box<dyn Port>).collect(),
                PortHost::Dpdk(Arc::new(device)),
            ))
        }
        #[cfg(feature = "afxdp")]
        Driver::Afxdp => {
            use vipgate_engine::port::afxdp::{self, AfxdpOptions};
            let interface = port.interface.clone().unwrap_or_default();
            let named = |e: String| format!("port \"{}\": {e}", port.name);
            // The interface's own addresses are the kernel's: vipgate answers for none of them.
            let kernel = afxdp::interface_addresses(&interface);
            if let Some(a) = port.addresses.iter().find(|a| kernel.contains(a)) {
                return Err(named(format!(
                    "address {a} is the kernel's on {interface}: an afxdp port shares the interface with \
                     the kernel, which answers for its own addresses (ARP, ND, ping); drop it from \
                     addresses, or take it off the interface"
                )));
            }
            match afxdp::interface_mac(&interface) {
                Some(mac) if mac != port.mac.0 => {
                    return Err(named(format!(
                        "mac = \"{}\", but {interface} has {}: set mac to the interface's",
                        port.mac,
                        vipgate_engine::wire::EthernetAddress(mac)
                    )))
                }
                _ => {}
            }
            let options = AfxdpOptions {
                name: port.name.clone(),
                interface,
                workers,
                queues: port.queues,
                mode: port.mode,
                xdp_mode: port.xdp_mode,
                prefixes: taken_prefixes(config),
            };
            let (device, queues) = afxdp::open(&options).map_err(|e| named(e.to_string()))?;
            Ok((queues, PortHost::Afxdp(Arc::new(device))))
        }
        #[cfg(not(feature = "afxdp"))]
        Driver::Afxdp => Err(format!(
            "port \"{}\": the afxdp driver is not in this build of vipgate (build it with \
             `cargo build --release --features afxdp`; it needs libxdp-dev, libbpf-dev, pkg-config and clang)",
            port.name
        )),
        #[cfg(not(feature = "dpdk"))]
        Driver::Dpdk => Err(format!(
            "port \"{}\": the dpdk driver is not in this build of vipgate (build it with \
             `cargo build --release --features dpdk`; it needs libdpdk-dev, pkg-config and clang)",
            port.name
        )),
    }
}

/// The threads of a pcap port of MAC address `mac` (what a capture without Ethernet headers
/// is framed as received by).
fn pcap_threads(
    host: MemoryHost,
    input: PathBuf,
    output: Option<PathBuf>,
    mac: [u8; 6],
) -> Result<PcapThreads, String> {
    let file = std::fs::File::open(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut reader = Reader::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{}: {e}", input.display()))?
        .receiving_as(mac);
    let mut writer = match &output {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(Writer::new(std::io::BufWriter::new(f)).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let input_done = Arc::new(AtomicBool::new(false));
    let not_received = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (host, stop, read, done, skipped) = (
            host.clone(),
            Arc::clone(&stop),
            Arc::clone(&read),
            Arc::clone(&input_done),
            Arc::clone(&not_received),
        );
        std::thread::Builder::new()
            .name("vipgate-pcap-in".into())
            .spawn(move || {
                loop {
                    let record = match reader.next() {
                        Ok(Some(r)) => r,
                        Ok(None) => break,
                        Err(e) => return Err(format!("{}: {e}", input.display())),
                    };
                    // Wait for room: a capture is never thinned.
                    while host.send(record.data).is_err() {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    read.fetch_add(1, Ordering::Relaxed);
                    skipped.store(reader.not_received(), Ordering::Relaxed);
                }
                skipped.store(reader.not_received(), Ordering::Relaxed);
                done.store(true, Ordering::Relaxed);
                log::info!(
                    "{}: all {} frames handed to the workers",
                    input.display(),
                    read.load(Ordering::Relaxed)
                );
                Ok(())
            })
            .map_err(|e| e.to_string())?
    };
    let writer = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        std::thread::Builder::new()
            .name("vipgate-pcap-out".into())
            .spawn(move || {
                let mut error = None;
                let mut written_since_flush = false;
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
                    let n = host.recv(|_, frame| {
                        if let Some(w) = writer.as_mut() {
                            if let Err(e) = w.write(now, frame) {
                                error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    });
                    written.fetch_add(n as u64, Ordering::Relaxed);
                    if last {
                        break;
                    }
                    if n == 0 {
                        // Idle: what was written reaches the file, so that a process killed
                        // now leaves a whole capture behind.
                        if let Some(w) = writer.as_mut() {
                            if written_since_flush {
                                if let Err(e) = w.flush() {
                                    error.get_or_insert_with(|| e.to_string());
                                }
                                written_since_flush = false;
                            }
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    } else {
                        written_since_flush = true;
                    }
                }
                if let Some(w) = writer {
                    if let Err(e) = w.finish() {
                        error.get_or_insert_with(|| e.to_string());
                    }
                }
                error.map_or(Ok(()), Err)
            })
            .map_err(|e| e.to_string())?
    };
    Ok(PcapThreads {
        stop,
        read,
        input_done,
        written,
        not_received,
        feeder: Some(feeder),
        writer: Some(writer),
    })
}
