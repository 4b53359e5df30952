//! The command line of `vipgate`: one binary, one subcommand per job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// vipgate: a poll-mode VIP gateway with Maglev consistent hashing.
///
/// vipgate owns VIP subnets, picks a backend for every flow with Maglev consistent
/// hashing and tunnels the packet to it (IPIP, IPv6-in-IPv6, GUE or GRE).
#[derive(Debug, Parser)]
#[command(name = "vipgate", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `vipgate`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job on the embedded default config: synthetic 2G-gateway traffic through
    /// the real engine, in memory, with a cut-over midway.
    ///
    /// Sends N packets of seeded 2G-gateway traffic (carrier-gateway sources with many
    /// ports, long-lived TCP and UDP to the VIPs of configs/demo.toml, compiled in, and
    /// about 2% noise: bad headers, packets to no subnet and to no VIP) through two real
    /// workers, and swaps in configs/demo-cutover.toml midway (a backend leaves, another
    /// joins, a draining one goes). Prints packets in and out, the rate per worker, each
    /// backend's share against its weight before and after the swap, how many followed
    /// flows kept their backend, every drop reason, and a last line with the verdict:
    /// PASS when no established flow moved off a backend that stayed and no packet was
    /// dropped beyond the injected noise (malformed, not_vip, no_vip); exit 1 otherwise.
    Demo {
        /// How many packets to send.
        #[arg(long, value_name = "N", default_value_t = 16_000_000)]
        packets: u64,
    },
    /// Run the appliance in the foreground (as systemd does).
    ///
    /// Reloads the config on SIGHUP, on `vipgate ctl reload` and when the file changes
    /// (once it has stayed unchanged for [control] reload_settle, default 2s, or at once
    /// when a new file is renamed over it). A config that fails validation, or that would
    /// remove a VIP or a subnet or leave a VIP with no backend taking new flows, is logged
    /// and refused, and the running one stays. The operator's drains and weights are
    /// restored from the state file ([control] state). SIGINT or SIGTERM stop it and
    /// print the final counters.
    Run(RunArgs),
    /// Validate a config: exit 0, or 1 with file:line:col errors.
    Check(ConfigArg),
    /// Pre-flight of a change: per VIP, the Maglev slots that move and the share of new
    /// flows that would land elsewhere.
    Diff {
        /// The config running now.
        old: PathBuf,
        /// The config about to be applied.
        new: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the engine over a capture, offline; counters as JSON on stdout.
    Replay(ReplayArgs),
    /// Show a VIP's Maglev table, offline: slots per backend (--json: the whole ring).
    Table(TableArgs),
    /// Change a backend's weight or state in the config file (comments and layout kept;
    /// the result is validated before it replaces the file). A running appliance picks
    /// the change up as it watches the file.
    SetBackend(SetBackendArgs),
    /// Throughput harness: Mpps, ns and TSC cycles per packet, latency percentiles, per
    /// worker, on generated traffic through the engine (no NIC).
    Bench(BenchArgs),
    /// Talk to a running appliance over its operator socket.
    ///
    /// Commands: status | stats | reload [--dry-run | --allow-removals] |
    /// drain BACKEND [--vip VIP] [--force] | undrain BACKEND [--vip VIP] |
    /// weight BACKEND N [--vip VIP] [--force] | table VIP | flows | drain-appliance |
    /// undrain-appliance (withdraw or announce again the subnets through BIRD, with [bgp]).
    ///
    /// drain, undrain and weight act on the backend in every VIP that lists it, or with
    /// --vip in that VIP alone (undrain without --vip undoes every override of the backend).
    /// flows counts live flows per backend by state: TCP established (no FIN or RST seen),
    /// TCP closing, UDP, and UDP seen within --udp-window.
    ///
    /// A reload that would remove a VIP or a subnet, or leave a VIP with no backend taking
    /// new flows, is refused (named) unless --allow-removals; a drain or weight that would
    /// leave a VIP with none is refused unless --force. Drains and weights are saved in the
    /// state file before they are applied, and outlive a restart. Keys that only a restart
    /// applies are named in the answer. With --config, a socket that has moved in the file
    /// since the appliance started is found through the state file.
    ///
    /// Exit 0 when the engine says ok, 1 when it reports an error or cannot be reached, 2
    /// for a command it does not know.
    Ctl(CtlArgs),
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

/// Arguments of `vipgate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// error, warn, info, debug or trace (default: RUST_LOG, else info).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Start without the operator's saved overrides (drains, weights, the appliance's
    /// drain) of the state file ([control] state), and forget them there. Without it, an
    /// unreadable state file stops the start.
    #[arg(long)]
    pub discard_state: bool,
}

/// Arguments of `vipgate table`.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// The VIP: ADDRESS[:PORT][/PROTOCOL], e.g. 203.0.113.10:8000/udp (default: every VIP).
    #[arg(long, value_name = "VIP")]
    pub vip: Option<String>,
    /// Print JSON, with every slot's owner.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `vipgate set-backend`.
#[derive(Debug, Args)]
pub struct SetBackendArgs {
    /// The TOML config file to change.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// The backend: ADDRESS, or ADDRESS:PORT where backends differ by port.
    #[arg(value_name = "BACKEND")]
    pub backend: String,
    /// The new weight.
    #[arg(long, value_name = "N")]
    pub weight: Option<u32>,
    /// The new state: active, draining or down.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only in the VIPs this names: ADDRESS[:PORT][/PROTOCOL] (every VIP that fits), or a
    /// VIP's name such as udp://203.0.113.10:8000 (that VIP alone). Default: every VIP that
    /// lists the backend.
    #[arg(long, value_name = "VIP")]
    pub vip: Option<String>,
}

/// Arguments of `vipgate bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// 64b (60-byte frames of live flows), gateway (the synth 2G mix) or syn (a new flow
    /// every packet).
    #[arg(long, value_name = "NAME", default_value = "64b")]
    pub workload: String,
    /// Live flows in all (for syn: the flow tables' capacity).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub flows: u32,
    /// VIPs.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub vips: u32,
    /// Backends per VIP.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub backends: u32,
    /// Worker threads (pinned from core 1 up).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
    /// Seconds to measure each run.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub seconds: f64,
    /// Exactly N packets per worker after warm-up, for instruction counts under callgrind
    /// (the cost of a packet: the count with N less the count with 0, over N).
    #[arg(long, value_name = "N")]
    pub packets: Option<u64>,
    /// Run at several sizes: flows (1k, 100k, 1M, 10M), vips (1, 100, 10k) or backends
    /// (2, 100, 1000).
    #[arg(long, value_name = "WHAT")]
    pub sweep: Option<String>,
    /// Every packet by the general path, the express lane off: what fragments, IPv4
    /// packets with options and IPv6 extension headers cost (runs are marked "gp").
    #[arg(long)]
    pub general_path: bool,
    /// IPv6 clients, VIPs and backends (IPv6 in IPv6), for 64b and syn (runs are marked
    /// "v6"; with --general-path as well, what IPv6 costs off the express lane).
    #[arg(long)]
    pub ipv6: bool,
    /// Push every burst's frames out of the CPU caches before the pipeline reads them, as
    /// a NIC's DMA leaves received frames in memory on machines without cache injection
    /// (DDIO): the cost of packets that arrive cold (runs are marked "cold"; the memory
    /// driver, x86-64).
    #[arg(long)]
    pub cold_frames: bool,
    /// Print JSON (one object with every run) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A saved --json result: show each run's ratios against it.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// memory (frames written into buffers of the engine's own) or dpdk (mbufs of a DPDK
    /// port's pool, sent to its TX; one worker; 64b and syn; builds with --features dpdk).
    #[arg(long, value_name = "DRIVER", default_value = "memory")]
    pub driver: String,
    /// DPDK's EAL arguments for --driver dpdk, as one string.
    #[arg(
        long,
        value_name = "ARGS",
        allow_hyphen_values = true,
        default_value = "--no-huge -m 512 --no-pci --vdev net_null0 --file-prefix vipgate-bench"
    )]
    pub eal: String,
}

/// Arguments of `vipgate replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// The capture to read: pcap or pcapng (as tcpdump, dumpcap and Wireshark write), of
    /// Ethernet frames, Linux cooked packets (`tcpdump -i any`: read as the frames the port
    /// would have received; what the capturing host sent is skipped, counted as
    /// not_received) or raw IP; its timestamps are the flow table's clock. `-` reads
    /// standard input (`tcpdump -w - | vipgate replay --input - ...`).
    #[arg(long, value_name = "IN.pcap")]
    pub input: PathBuf,
    /// Where to write what the engine emits (pcap).
    #[arg(long, value_name = "OUT.pcap")]
    pub output: PathBuf,
    /// Where to write what the engine dropped (pcap).
    #[arg(long, value_name = "DROPS.pcap")]
    pub drops: Option<PathBuf>,
    /// Spread packets over this many workers by flow, as the runtime does.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
}

/// Arguments of `vipgate ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The operator socket of the running appliance.
    /// (default: the `[control] socket` of --config, else /run/vipgate/ctl.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Take the socket's path from this config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the answer as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// reload: apply the file even though it removes VIPs or subnets, or leaves a VIP with
    /// no backend taking new flows (refused without it, and the running config stays).
    #[arg(long)]
    pub allow_removals: bool,
    /// reload: change nothing; show per VIP what would move, what would be refused, and
    /// what needs a restart.
    #[arg(long)]
    pub dry_run: bool,
    /// drain, weight: apply it even though it leaves a VIP with no backend taking new
    /// flows (refused without it).
    #[arg(long)]
    pub force: bool,
    /// drain, undrain, weight: act in this VIP only (ADDRESS[:PORT][/PROTOCOL] or its
    /// name, e.g. udp://203.0.113.10:8000), not in every VIP that lists the backend.
    #[arg(long, value_name = "VIP")]
    pub vip: Option<String>,
    /// flows: UDP flows seen within this long count as recent ("5m"; default: the
    /// config's udp_idle_timeout, so every live UDP flow).
    #[arg(long, value_name = "DURATION")]
    pub udp_window: Option<String>,
    /// The command and its arguments, e.g. `drain 192.0.2.11`.
    #[arg(required = true, num_args = 1.., value_name = "CMD")]
    pub command: Vec<String>,
}

impl Command {
    /// The subcommand's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Demo { .. } => "demo",
            Command::Run(_) => "run",
            Command::Check(_) => "check",
            Command::Diff { .. } => "diff",
            Command::Replay(_) => "replay",
            Command::Table(_) => "table",
            Command::SetBackend(_) => "set-backend",
            Command::Bench(_) => "bench",
            Command::Ctl(_) => "ctl",
        }
    }
}
