//! The command line of `vipgate`: one binary, one subcommand per job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit status of a subcommand that this build does not provide yet.
pub const EXIT_NOT_BUILT: i32 = 2;

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
    /// the real engine, in memory.
    Demo {
        /// How many packets to send.
        #[arg(long, value_name = "N", default_value_t = 2_000_000)]
        packets: u64,
    },
    /// Run the appliance in the foreground (as systemd does).
    Run(ConfigArg),
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
    /// Throughput harness: Mpps per core, ns and instructions per packet, latency
    /// percentiles.
    Bench {
        /// Options of the harness.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Talk to a running appliance over its operator socket:
    /// status | stats | reload | drain | undrain | weight | table | flows.
    Ctl(CtlArgs),
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

/// Arguments of `vipgate replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// The capture to read (pcap).
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
    #[arg(long, value_name = "PATH", default_value = "/run/vipgate/ctl.sock")]
    pub socket: PathBuf,
    /// Print the answer as JSON instead of text.
    #[arg(long)]
    pub json: bool,
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
            Command::Bench { .. } => "bench",
            Command::Ctl(_) => "ctl",
        }
    }
}
