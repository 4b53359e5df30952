//! The TOML config: its schema, and validation that points at the file, line and column.
//!
//! Parsing is in two steps. serde reads the file into `Raw*` structs that keep the
//! position of every value an operator may get wrong ([`toml::Spanned`]); unknown keys are
//! errors. Then [`Config::from_raw`] checks everything it can without touching the
//! network (addresses, families, duplicates, prefixes, weights, sizes, files) and reports
//! **every** problem, each as `file:line:col: message`, rather than stopping at the first.
//! A config with any error is never turned into a snapshot.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use vipgate_engine::maglev::{self, BackendId};
use vipgate_engine::table::{BackendState, Encap, VipProtocol};
use vipgate_engine::wire::EthernetAddress;

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column (in characters), where the problem has a place in the
    /// text; `None` where it has none (the file cannot be read, or lacks something).
    pub at: Option<(usize, usize)>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ------------------------------------------------------------------------------------
// The schema as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    tunnel: RawTunnel,
    #[serde(default)]
    port: Vec<Spanned<RawPort>>,
    #[serde(default)]
    subnet: Vec<Spanned<RawSubnet>>,
    #[serde(default)]
    vip: Vec<Spanned<RawVip>>,
    #[serde(default)]
    control: RawControl,
    bgp: Option<Spanned<RawBgp>>,
    fleet: Option<Spanned<RawFleet>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    listen: Spanned<String>,
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBgp {
    routes_dir: Spanned<String>,
    bird_socket: Option<Spanned<String>>,
    birdc: Option<Spanned<String>>,
    stuck_after: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    workers: Option<Spanned<i64>>,
    cores: Option<Spanned<Vec<i64>>>,
    burst: Option<Spanned<i64>>,
    hash_seed: Option<Spanned<i64>>,
    maglev_table_size: Option<Spanned<i64>>,
    flow_capacity: Option<Spanned<i64>>,
    tcp_idle_timeout: Option<Spanned<String>>,
    udp_idle_timeout: Option<Spanned<String>>,
    idle_polls_before_sleep: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    source_v4: Option<Spanned<String>>,
    source_v6: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    gue_port: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    driver: Spanned<String>,
    mac: Spanned<String>,
    next_hop_mac: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    input: Option<Spanned<String>>,
    output: Option<Spanned<String>>,
    args: Option<Spanned<Vec<String>>>,
    queues: Option<Spanned<i64>>,
    profile: Option<Spanned<String>>,
    rate: Option<Spanned<i64>>,
    interface: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    xdp_mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    name: Option<Spanned<String>>,
    prefix: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: Spanned<String>,
    port: Option<Spanned<i64>>,
    protocol: Spanned<String>,
    encap: Spanned<String>,
    backends: Spanned<Vec<Spanned<RawBackend>>>,
    health: Option<Spanned<RawHealth>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    kind: Spanned<String>,
    port: Option<Spanned<i64>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    path: Option<Spanned<String>>,
    expect_status: Option<Spanned<i64>>,
    send: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    port: Option<Spanned<i64>>,
    #[serde(default = "default_weight")]
    weight: Spanned<i64>,
    state: Option<Spanned<String>>,
}

fn default_weight() -> Spanned<i64> {
    Spanned::new(0..0, 100)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    metrics_public: Option<Spanned<bool>>,
    state: Option<Spanned<String>>,
    reload_settle: Option<Spanned<String>>,
}

// ------------------------------------------------------------------------------------
// The validated config.

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// `[engine]`.
    pub engine: EngineConfig,
    /// `[tunnel]`.
    pub tunnel: TunnelConfig,
    /// `[[port]]`.
    pub ports: Vec<PortConfig>,
    /// `[[subnet]]`.
    pub subnets: Vec<SubnetConfig>,
    /// `[[vip]]`.
    pub vips: Vec<VipConfig>,
    /// `[control]`.
    pub control: ControlConfig,
    /// `[bgp]`: announcing the subnets through BIRD, if configured.
    pub bgp: Option<BgpConfig>,
    /// `[fleet]`: the flows this appliance and its peers share, if configured.
    pub fleet: Option<FleetConfig>,
}

/// `[fleet]`: every new flow is announced to the peers, which remember it, so that a
/// flow the routers move to another appliance keeps its backend there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Where the announcements of the peers come in (UDP; the appliance's own address).
    pub listen: std::net::SocketAddr,
    /// The other appliances' `listen`.
    pub peers: Vec<std::net::SocketAddr>,
    /// The fleet's shared key: every message carries its HMAC-SHA256 under it.
    pub key: Vec<u8>,
}

/// `[bgp]`: vipgate writes the subnets to announce into files that BIRD includes in
/// static protocols, and asks BIRD to reconfigure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// Where `vips4.conf` and `vips6.conf` are written.
    pub routes_dir: PathBuf,
    /// BIRD's control socket (`birdc -s`).
    pub bird_socket: PathBuf,
    /// The birdc binary.
    pub birdc: PathBuf,
    /// A worker whose loop has not advanced for this long withdraws the routes.
    pub stuck_after: Duration,
}

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How many workers.
    pub workers: usize,
    /// Cores to pin workers to, if given.
    pub cores: Option<Vec<usize>>,
    /// Packets per burst.
    pub burst: usize,
    /// The fleet-wide Maglev seed.
    pub hash_seed: u64,
    /// Maglev table size.
    pub maglev_table_size: u32,
    /// Flow entries per worker.
    pub flow_capacity: usize,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
    /// UDP idle timeout.
    pub udp_idle_timeout: Duration,
    /// Empty polls before a worker backs off (0: busy poll forever).
    pub idle_polls_before_sleep: u64,
}

/// `[tunnel]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Outer source for IPv4 tunnels.
    pub source_v4: Option<Ipv4Addr>,
    /// Outer source for IPv6 tunnels.
    pub source_v6: Option<Ipv6Addr>,
    /// Egress MTU.
    pub mtu: u16,
    /// GUE destination port.
    pub gue_port: u16,
}

/// The port drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// In-memory rings.
    Memory,
    /// A capture in, a capture out.
    Pcap,
    /// Generated 2G-gateway traffic.
    Synth,
    /// DPDK.
    Dpdk,
    /// AF_XDP sockets on a Linux interface, shared with the kernel.
    Afxdp,
}

/// `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Name.
    pub name: String,
    /// Driver.
    pub driver: Driver,
    /// Our MAC.
    pub mac: EthernetAddress,
    /// The router's MAC.
    pub next_hop_mac: EthernetAddress,
    /// Addresses answered for ARP, ND and ping.
    pub addresses: Vec<IpAddr>,
    /// pcap: the capture to read.
    pub input: Option<PathBuf>,
    /// pcap: the capture to write.
    pub output: Option<PathBuf>,
    /// dpdk: EAL arguments.
    pub args: Vec<String>,
    /// dpdk, afxdp: queues.
    pub queues: Option<usize>,
    /// afxdp: the interface.
    pub interface: Option<String>,
    /// afxdp: how the sockets bind.
    pub mode: vipgate_engine::port::XskMode,
    /// afxdp: how the XDP filter is attached.
    pub xdp_mode: vipgate_engine::port::XdpMode,
    /// synth: traffic profile.
    pub profile: Option<String>,
    /// synth: packets per second (0: as fast as possible).
    pub rate: Option<u64>,
}

/// Whether `name` can be a Linux interface's name (IFNAMSIZ: at most 15 bytes).
fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `[[subnet]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    /// Name.
    pub name: String,
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl SubnetConfig {
    /// Whether `a` is inside the subnet.
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let shift = 32 - u32::from(self.len);
                shift == 32 || (u32::from(n) >> shift) == (u32::from(a) >> shift)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let shift = 128 - u32::from(self.len);
                shift == 128 || (u128::from(n) >> shift) == (u128::from(a) >> shift)
            }
            _ => false,
        }
    }
}

/// `[[vip]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// Address.
    pub addr: IpAddr,
    /// Port, `None` for any.
    pub port: Option<u16>,
    /// Protocol.
    pub protocol: VipProtocol,
    /// Encapsulation.
    pub encap: Encap,
    /// Backends.
    pub backends: Vec<BackendConfig>,
    /// How its backends are probed, if they are.
    pub health: Option<HealthCheck>,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// A TCP connection is accepted.
    Tcp,
    /// `GET path` answers with this status.
    Http {
        /// The path asked for.
        path: String,
        /// The status expected.
        status: u16,
    },
    /// A datagram sent gets a reply (equal to `expect` when given).
    Udp {
        /// What is sent.
        send: String,
        /// The reply expected, if any particular one.
        expect: Option<String>,
    },
}

/// `health = { ... }` of a VIP: how its backends are probed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HealthCheck {
    /// What the probe does.
    pub kind: ProbeKind,
    /// The port probed; `None`: the backend's port, else the VIP's.
    pub port: Option<u16>,
    /// Between probes of one backend.
    pub interval: Duration,
    /// How long a probe may take.
    pub timeout: Duration,
    /// Successes in a row that bring a backend that is down back up.
    pub rise: u32,
    /// Failures in a row that take a backend down.
    pub fall: u32,
}

/// A backend of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// Identity.
    pub id: BackendId,
    /// Weight.
    pub weight: u32,
    /// State.
    pub state: BackendState,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The operator socket.
    pub socket: PathBuf,
    /// The metrics endpoint, if any.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the operator's overrides are kept across restarts.
    pub state: PathBuf,
    /// How long the config file must stay unchanged before the watcher reloads it.
    pub reload_settle: Duration,
}

/// The default state file.
pub const DEFAULT_STATE: &str = "/var/lib/vipgate/state.json";

/// The default time the config file must stay unchanged before the watcher reloads it.
pub const DEFAULT_RELOAD_SETTLE: Duration = Duration::from_secs(2);

/// The default operator socket.
pub const DEFAULT_SOCKET: &str = "/run/vipgate/ctl.sock";

/// The longest idle timeout: 26 days, within what the flow table's clock keeps
/// ([`vipgate_engine::flow::IdleTimeouts::MAX`]).
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(26 * 86400);

const _: () = assert!(26 * 86400 * 1_000_000_000 <= vipgate_engine::flow::IdleTimeouts::MAX);

/// Parses a duration: a number followed by `ms`, `s`, `m`, `h` or `d` (`"90s"`, `"15m"`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("\"{s}\" is not a duration: expected e.g. \"90s\" or \"15m\""))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("\"{s}\": unknown unit \"{unit}\"; use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// Byte offset → (line, column), both 1-based, columns in characters.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Report<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let at = Some(line_col(self.text, span.start));
        self.errors.push(ConfigError { file: self.path.to_path_buf(), at, message: message.into() });
    }

    /// A problem with no place in the text: something the whole file lacks.
    fn whole(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError { file: self.path.to_path_buf(), at: None, message: message.into() });
    }
}

fn ip_at(r: &mut Report<'_>, v: &Spanned<String>, what: &str) -> Option<IpAddr> {
    match v.get_ref().parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.at(v.span(), format!("{what} \"{}\" is not an IP address", v.get_ref()));
            None
        }
    }
}

fn int_at(r: &mut Report<'_>, v: &Spanned<i64>, what: &str, min: i64, max: i64) -> Option<i64> {
    let n = *v.get_ref();
    if n < min || n > max {
        r.at(v.span(), format!("{what} {n} is out of range {min}..={max}"));
        None
    } else {
        Some(n)
    }
}

fn health_at(
    r: &mut Report<'_>,
    h: &Spanned<RawHealth>,
    vip_port: Option<u16>,
    backends: &[BackendConfig],
) -> Option<HealthCheck> {
    let raw = h.get_ref();
    let errors = r.errors.len();
    let mut duration = |v: &Option<Spanned<String>>, default: Duration, what: &str| match v {
        Some(s) => match parse_duration(s.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                r.at(s.span(), format!("{what} must be longer than 0"));
                default
            }
            Err(msg) => {
                r.at(s.span(), format!("{what}: {msg}"));
                default
            }
        },
        None => default,
    };
    let interval = duration(&raw.interval, Duration::from_secs(5), "interval");
    let timeout = duration(&raw.timeout, Duration::from_secs(2), "timeout");
    if timeout > interval {
        if let Some(t) = &raw.timeout {
            r.at(t.span(), "timeout is longer than interval: probes would overlap");
        }
    }
    let rise = raw.rise.as_ref().and_then(|v| int_at(r, v, "rise", 1, 100)).unwrap_or(2) as u32;
    let fall = raw.fall.as_ref().and_then(|v| int_at(r, v, "fall", 1, 100)).unwrap_or(3) as u32;
    let port = raw.port.as_ref().and_then(|p| int_at(r, p, "port", 1, 65535)).map(|p| p as u16);
    if port.is_none() && vip_port.is_none() && backends.iter().any(|b| b.id.port.is_none()) {
        r.at(h.span(), "health needs a port: this VIP takes any port and a backend has none");
    }
    let only = |r: &mut Report<'_>, v: Option<Range<usize>>, name: &str, kind: &str| {
        if let Some(span) = v {
            r.at(span, format!("{name} is a key of {kind} health checks"));
        }
    };
    let kind = match raw.kind.get_ref().as_str() {
        "tcp" => {
            only(r, raw.path.as_ref().map(|s| s.span()), "path", "http");
            only(r, raw.expect_status.as_ref().map(|s| s.span()), "expect_status", "http");
            only(r, raw.send.as_ref().map(|s| s.span()), "send", "udp");
            only(r, raw.expect.as_ref().map(|s| s.span()), "expect", "udp");
            ProbeKind::Tcp
        }
        "http" => {
            only(r, raw.send.as_ref().map(|s| s.span()), "send", "udp");
            only(r, raw.expect.as_ref().map(|s| s.span()), "expect", "udp");
            let path = raw.path.as_ref().map_or_else(|| "/".to_string(), |p| p.get_ref().clone());
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                if let Some(p) = &raw.path {
                    r.at(p.span(), format!("path \"{path}\" must start with / and hold no spaces"));
                }
            }
            let status = raw
                .expect_status
                .as_ref()
                .and_then(|v| int_at(r, v, "expect_status", 100, 599))
                .unwrap_or(200) as u16;
            ProbeKind::Http { path, status }
        }
        "udp" => {
            only(r, raw.path.as_ref().map(|s| s.span()), "path", "http");
            only(r, raw.expect_status.as_ref().map(|s| s.span()), "expect_status", "http");
            let Some(send) = raw.send.as_ref() else {
                r.at(h.span(), "a udp health check needs send = \"...\" (what to send)");
                return None;
            };
            ProbeKind::Udp {
                send: send.get_ref().clone(),
                expect: raw.expect.as_ref().map(|e| e.get_ref().clone()),
            }
        }
        other => {
            r.at(raw.kind.span(), format!("health kind \"{other}\" is not one of tcp, http, udp"));
            return None;
        }
    };
    (r.errors.len() == errors).then_some(HealthCheck { kind, port, interval, timeout, rise, fall })
}

fn mac_at(r: &mut Report<'_>, v: &Spanned<String>, what: &str) -> EthernetAddress {
    v.get_ref().parse().unwrap_or_else(|_| {
        r.at(v.span(), format!("{what} \"{}\" is not a MAC address like 02:00:00:00:00:01", v.get_ref()));
        EthernetAddress::default()
    })
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                at: None,
                message: format!("cannot read the config: {e}"),
            }])
        })?;
        Config::parse(path, &text)
    }

    /// Validates `text`, read from `path` (which errors name, and relative file paths in the
    /// config are resolved against).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let mut r = Report { path, text, errors: Vec::new() };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                r.at(span, e.message().trim().to_string());
                return Err(ConfigErrors(r.errors));
            }
        };
        let config = Config::from_raw(&mut r, raw);
        if r.errors.is_empty() {
            Ok(config)
        } else {
            r.errors.sort_by_key(|e| e.at);
            Err(ConfigErrors(r.errors))
        }
    }

    fn from_raw(r: &mut Report<'_>, raw: RawConfig) -> Config {
        let base = r.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let e = &raw.engine;
        // Whether the cores exist depends on the machine: `vipgate run` checks that at start
        // ([`Config::missing_cores`]), so that `check` answers alike on a laptop and on the
        // appliance.
        let cores = e.cores.as_ref().map(|c| {
            let mut out = Vec::new();
            for &core in c.get_ref() {
                if core < 0 || core as usize >= MAX_CORES {
                    r.at(c.span(), format!("core {core} is out of range 0..={}", MAX_CORES - 1));
                } else {
                    out.push(core as usize);
                }
            }
            out
        });
        let workers = match (&e.workers, &cores) {
            (Some(w), Some(_)) => {
                let n = int_at(r, w, "workers", 1, 1024).unwrap_or(1) as usize;
                let listed = e.cores.as_ref().map_or(0, |c| c.get_ref().len());
                if n != listed {
                    r.at(w.span(), format!("workers = {n} but cores lists {listed} cores; give one of them"));
                }
                n
            }
            (Some(w), None) => int_at(r, w, "workers", 1, 1024).unwrap_or(1) as usize,
            (None, Some(c)) => c.len().max(1),
            (None, None) => 1,
        };
        let burst = e.burst.as_ref().and_then(|b| int_at(r, b, "burst", 1, 256)).unwrap_or(32) as usize;
        let hash_seed =
            e.hash_seed.as_ref().and_then(|s| int_at(r, s, "hash_seed", 0, i64::MAX)).unwrap_or(0) as u64;
        let maglev_table_size = match &e.maglev_table_size {
            Some(m) => {
                let v = *m.get_ref();
                if u32::try_from(v).is_ok_and(|v| maglev::TABLE_SIZES.contains(&v)) {
                    v as u32
                } else {
                    r.at(m.span(), format!("maglev_table_size {v} is not one of {:?}", maglev::TABLE_SIZES));
                    maglev::DEFAULT_TABLE_SIZE
                }
            }
            None => maglev::DEFAULT_TABLE_SIZE,
        };
        let flow_capacity = e
            .flow_capacity
            .as_ref()
            .and_then(|f| int_at(r, f, "flow_capacity", 8, 1 << 30))
            .unwrap_or(1 << 20) as usize;
        let mut duration = |v: &Option<Spanned<String>>, default: u64, what: &str| match v {
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if d.is_zero() => {
                    r.at(s.span(), format!("{what} must be longer than 0"));
                    Duration::from_secs(default)
                }
                Ok(d) if d > MAX_IDLE_TIMEOUT => {
                    r.at(s.span(), format!("{what} must be at most 26d"));
                    Duration::from_secs(default)
                }
                Ok(d) => d,
                Err(msg) => {
                    r.at(s.span(), format!("{what}: {msg}"));
                    Duration::from_secs(default)
                }
            },
            None => Duration::from_secs(default),
        };
        let tcp_idle_timeout = duration(&e.tcp_idle_timeout, 15 * 60, "tcp_idle_timeout");
        let udp_idle_timeout = duration(&e.udp_idle_timeout, 120, "udp_idle_timeout");
        let idle_polls_before_sleep = e
            .idle_polls_before_sleep
            .as_ref()
            .and_then(|v| int_at(r, v, "idle_polls_before_sleep", 0, i64::MAX))
            .unwrap_or(0) as u64;
        let engine = EngineConfig {
            workers,
            cores,
            burst,
            hash_seed,
            maglev_table_size,
            flow_capacity,
            tcp_idle_timeout,
            udp_idle_timeout,
            idle_polls_before_sleep,
        };

        let t = &raw.tunnel;
        let source_v4 = t.source_v4.as_ref().and_then(|s| match ip_at(r, s, "source_v4")? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => {
                r.at(s.span(), "source_v4 must be an IPv4 address");
                None
            }
        });
        let source_v6 = t.source_v6.as_ref().and_then(|s| match ip_at(r, s, "source_v6")? {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => {
                r.at(s.span(), "source_v6 must be an IPv6 address");
                None
            }
        });
        let mtu = t.mtu.as_ref().and_then(|m| int_at(r, m, "mtu", 1280, 9216)).unwrap_or(1500) as u16;
        let gue_port =
            t.gue_port.as_ref().and_then(|g| int_at(r, g, "gue_port", 1, 65535)).unwrap_or(6080) as u16;
        let tunnel = TunnelConfig { source_v4, source_v6, mtu, gue_port };

        let mut ports = Vec::new();
        let mut port_names: HashMap<String, ()> = HashMap::new();
        for p in &raw.port {
            let p = p.get_ref();
            if port_names.insert(p.name.get_ref().clone(), ()).is_some() {
                r.at(p.name.span(), format!("port \"{}\" is defined twice", p.name.get_ref()));
            }
            let driver = match p.driver.get_ref().as_str() {
                "memory" => Driver::Memory,
                "pcap" => Driver::Pcap,
                "synth" => Driver::Synth,
                "dpdk" => Driver::Dpdk,
                "afxdp" => Driver::Afxdp,
                other => {
                    r.at(
                        p.driver.span(),
                        format!("driver \"{other}\" is not one of memory, pcap, synth, dpdk, afxdp"),
                    );
                    Driver::Memory
                }
            };
            let mac = mac_at(r, &p.mac, "mac");
            let next_hop_mac = mac_at(r, &p.next_hop_mac, "next_hop_mac");
            let addresses = p.addresses.iter().filter_map(|a| ip_at(r, a, "address")).collect();
            let file = |v: &Option<Spanned<String>>| v.as_ref().map(|s| base.join(s.get_ref()));
            let input = file(&p.input);
            let output = file(&p.output);
            if driver == Driver::Pcap {
                match (&p.input, &input) {
                    (Some(s), Some(path)) if !path.is_file() => {
                        r.at(s.span(), format!("input capture {} does not exist", path.display()))
                    }
                    (None, _) => r.at(p.driver.span(), "a pcap port needs input = \"FILE.pcap\""),
                    _ => {}
                }
            }
            for (v, name, wanted) in [
                (p.input.as_ref().map(|s| s.span()), "input", &[Driver::Pcap][..]),
                (p.output.as_ref().map(|s| s.span()), "output", &[Driver::Pcap]),
                (p.args.as_ref().map(|s| s.span()), "args", &[Driver::Dpdk]),
                (p.queues.as_ref().map(|s| s.span()), "queues", &[Driver::Dpdk, Driver::Afxdp]),
                (p.profile.as_ref().map(|s| s.span()), "profile", &[Driver::Synth]),
                (p.rate.as_ref().map(|s| s.span()), "rate", &[Driver::Synth]),
                (p.interface.as_ref().map(|s| s.span()), "interface", &[Driver::Afxdp]),
                (p.mode.as_ref().map(|s| s.span()), "mode", &[Driver::Afxdp]),
                (p.xdp_mode.as_ref().map(|s| s.span()), "xdp_mode", &[Driver::Afxdp]),
            ] {
                if let Some(span) = v {
                    if !wanted.contains(&driver) {
                        let of: Vec<String> =
                            wanted.iter().map(|d| format!("{d:?}").to_lowercase()).collect();
                        r.at(
                            span,
                            format!(
                                "{name} is a key of the {} driver, not of {}",
                                of.join(" and "),
                                format!("{driver:?}").to_lowercase()
                            ),
                        );
                    }
                }
            }
            if driver == Driver::Afxdp {
                match &p.interface {
                    None => r.at(p.driver.span(), "an afxdp port needs interface = \"IFNAME\" (e.g. \"eth0\")"),
                    Some(i) if !valid_interface_name(i.get_ref()) => r.at(
                        i.span(),
                        format!(
                            "interface \"{}\" is not an interface name (1 to 15 characters, none of '/', ':' or space)",
                            i.get_ref()
                        ),
                    ),
                    Some(_) => {}
                }
            }
            use vipgate_engine::port::{XdpMode, XskMode};
            let mode = match p.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "auto")) => XskMode::Auto,
                Some((_, "zero-copy")) => XskMode::ZeroCopy,
                Some((_, "copy")) => XskMode::Copy,
                Some((m, other)) => {
                    r.at(m.span(), format!("mode \"{other}\" is not one of auto, zero-copy, copy"));
                    XskMode::Auto
                }
            };
            let xdp_mode = match p.xdp_mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "native")) => XdpMode::Native,
                Some((_, "generic")) => XdpMode::Generic,
                Some((m, other)) => {
                    r.at(m.span(), format!("xdp_mode \"{other}\" is not one of native, generic"));
                    XdpMode::Native
                }
            };
            if let (XskMode::ZeroCopy, XdpMode::Generic, Some(m)) = (mode, xdp_mode, &p.mode) {
                r.at(
                    m.span(),
                    "mode = \"zero-copy\" needs xdp_mode = \"native\" (generic XDP copies every frame)",
                );
            }
            if let Some(profile) = &p.profile {
                if vipgate_engine::port::synth::Profile::from_name(profile.get_ref()).is_none() {
                    r.at(
                        profile.span(),
                        format!(
                            "profile \"{}\" is not one of {}",
                            profile.get_ref(),
                            vipgate_engine::port::synth::Profile::NAMES.join(", ")
                        ),
                    );
                }
            }
            ports.push(PortConfig {
                name: p.name.get_ref().clone(),
                driver,
                mac,
                next_hop_mac,
                addresses,
                input,
                output,
                args: p.args.as_ref().map(|a| a.get_ref().clone()).unwrap_or_default(),
                queues: p.queues.as_ref().and_then(|q| int_at(r, q, "queues", 1, 128)).map(|q| q as usize),
                interface: p.interface.as_ref().map(|s| s.get_ref().clone()),
                mode,
                xdp_mode,
                profile: p.profile.as_ref().map(|s| s.get_ref().clone()),
                rate: p.rate.as_ref().and_then(|q| int_at(r, q, "rate", 0, i64::MAX)).map(|q| q as u64),
            });
        }

        if let Some(second) = raw.port.get(1) {
            r.at(
                second.span(),
                "a second [[port]]: this version of vipgate drives one port (with one queue per worker)",
            );
        }

        let mut subnets: Vec<SubnetConfig> = Vec::new();
        for (i, s) in raw.subnet.iter().enumerate() {
            let s = s.get_ref();
            let text = s.prefix.get_ref();
            let parsed = text
                .split_once('/')
                .and_then(|(a, l)| Some((a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?)));
            let Some((addr, len)) = parsed else {
                r.at(s.prefix.span(), format!("prefix \"{text}\" is not ADDRESS/LENGTH like 203.0.113.0/24"));
                continue;
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if len > max {
                r.at(s.prefix.span(), format!("prefix length {len} is longer than {max}"));
                continue;
            }
            let sub = SubnetConfig {
                name: s.name.as_ref().map_or_else(|| format!("subnet{i}"), |n| n.get_ref().clone()),
                addr,
                len,
            };
            if !sub.contains(addr) || masked(addr, len) != addr {
                r.at(
                    s.prefix.span(),
                    format!("prefix \"{text}\" has host bits set; did you mean {}/{len}?", masked(addr, len)),
                );
            }
            if let Some(o) = subnets.iter().find(|o| o.addr == sub.addr && o.len == sub.len) {
                r.at(s.prefix.span(), format!("prefix \"{text}\" is already subnet \"{}\"", o.name));
            }
            subnets.push(sub);
        }

        let mut vips = Vec::new();
        let mut seen: HashMap<(IpAddr, u8, u16), ()> = HashMap::new();
        let mut needs_v4 = None;
        let mut needs_v6 = None;
        for v in &raw.vip {
            let v = v.get_ref();
            let Some(addr) = ip_at(r, &v.address, "VIP address") else { continue };
            if let Some(port) = ports.iter().find(|p| p.addresses.contains(&addr)) {
                r.at(
                    v.address.span(),
                    format!("VIP {addr} is also an address of port \"{}\": a VIP is routed to the appliance, not owned by a port", port.name),
                );
            }
            if !subnets.is_empty() && !subnets.iter().any(|s| s.contains(addr)) {
                r.at(v.address.span(), format!("VIP {addr} is outside every [[subnet]]"));
            }
            let port = v.port.as_ref().and_then(|p| int_at(r, p, "port", 1, 65535)).map(|p| p as u16);
            let protocol = match v.protocol.get_ref().as_str() {
                "tcp" => VipProtocol::Tcp,
                "udp" => VipProtocol::Udp,
                "any" => VipProtocol::Any,
                other => {
                    r.at(v.protocol.span(), format!("protocol \"{other}\" is not one of tcp, udp, any"));
                    VipProtocol::Any
                }
            };
            let encap = match v.encap.get_ref().as_str() {
                "ipip" => Encap::Ipip,
                "gue" => Encap::Gue,
                "gre" => Encap::Gre,
                other => {
                    r.at(v.encap.span(), format!("encap \"{other}\" is not one of ipip, gue, gre"));
                    Encap::Ipip
                }
            };
            let proto_n = match protocol {
                VipProtocol::Tcp => 6,
                VipProtocol::Udp => 17,
                VipProtocol::Any => 0,
            };
            if seen.insert((addr, proto_n, port.unwrap_or(0)), ()).is_some() {
                r.at(
                    v.address.span(),
                    format!("VIP {} is defined twice", vipgate_engine::table::vip_name(addr, protocol, port)),
                );
            }
            let mut backends = Vec::new();
            let mut ids: HashMap<BackendId, ()> = HashMap::new();
            for b in v.backends.get_ref() {
                let b = b.get_ref();
                let Some(baddr) = ip_at(r, &b.address, "backend address") else { continue };
                let bport = b.port.as_ref().and_then(|p| int_at(r, p, "port", 1, 65535)).map(|p| p as u16);
                let weight = int_at(r, &b.weight, "weight", 0, 1_000_000).unwrap_or(0) as u32;
                let state = match b.state.as_ref().map(|s| (s.span(), s.get_ref().as_str())) {
                    None | Some((_, "active")) => BackendState::Active,
                    Some((_, "draining")) => BackendState::Draining,
                    Some((_, "down")) => BackendState::Down,
                    Some((span, other)) => {
                        r.at(span, format!("state \"{other}\" is not one of active, draining, down"));
                        BackendState::Active
                    }
                };
                match baddr {
                    IpAddr::V4(_) => needs_v4 = needs_v4.or(Some(b.address.span())),
                    IpAddr::V6(_) => needs_v6 = needs_v6.or(Some(b.address.span())),
                }
                let id = BackendId { addr: baddr, port: bport };
                if ids.insert(id, ()).is_some() {
                    r.at(b.address.span(), format!("backend {id} is listed twice for this VIP"));
                }
                backends.push(BackendConfig { id, weight, state });
            }
            if backends.is_empty() {
                r.at(v.backends.span(), "a VIP needs at least one backend");
            } else if backends.iter().all(|b| b.weight == 0) {
                r.at(
                    v.backends.span(),
                    "every backend of this VIP has weight 0: no slot would have an owner",
                );
            }
            if backends.len() > maglev::MAX_BACKENDS {
                r.at(
                    v.backends.span(),
                    format!("{} backends; at most {}", backends.len(), maglev::MAX_BACKENDS),
                );
            }
            let health = v.health.as_ref().and_then(|h| health_at(r, h, port, &backends));
            vips.push(VipConfig { addr, port, protocol, encap, backends, health });
        }
        if raw.vip.is_empty() {
            // An empty file, or one cut short before its first [[vip]] by a writer that has
            // not finished, must never replace a running config.
            r.whole(
                "no [[vip]]: a config serves at least one VIP (an empty or half-written file is \
                 refused, and a running appliance keeps its config)",
            );
        }
        if let (Some(span), None) = (needs_v4, tunnel.source_v4) {
            r.at(span, "an IPv4 backend needs [tunnel] source_v4");
        }
        if let (Some(span), None) = (needs_v6, tunnel.source_v6) {
            r.at(span, "an IPv6 backend needs [tunnel] source_v6");
        }

        let socket = raw
            .control
            .socket
            .as_ref()
            .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), |s| PathBuf::from(s.get_ref()));
        let public = raw.control.metrics_public.as_ref().is_some_and(|p| *p.get_ref());
        let metrics = raw.control.metrics.as_ref().and_then(|m| match m.get_ref().parse::<std::net::SocketAddr>() {
            Ok(a) if !a.ip().is_loopback() && !public => {
                r.at(
                    m.span(),
                    format!(
                        "metrics on {a} answers beyond this host; use a loopback address, or set metrics_public = true to mean it"
                    ),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                r.at(
                    m.span(),
                    format!("metrics \"{}\" is not ADDRESS:PORT like 127.0.0.1:9620", m.get_ref()),
                );
                None
            }
        });
        let state = raw.control.state.as_ref().map_or_else(
            || PathBuf::from(DEFAULT_STATE),
            |s| {
                if s.get_ref().is_empty() {
                    r.at(s.span(), "state must name a file, e.g. \"/var/lib/vipgate/state.json\"");
                }
                base.join(s.get_ref())
            },
        );
        let reload_settle = match &raw.control.reload_settle {
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if d <= Duration::from_secs(60) => d,
                Ok(_) => {
                    r.at(s.span(), "reload_settle must be at most 60s");
                    DEFAULT_RELOAD_SETTLE
                }
                Err(msg) => {
                    r.at(s.span(), format!("reload_settle: {msg}"));
                    DEFAULT_RELOAD_SETTLE
                }
            },
            None => DEFAULT_RELOAD_SETTLE,
        };
        let bgp = raw.bgp.as_ref().map(|b| {
            let b = b.get_ref();
            let stuck_after = match &b.stuck_after {
                Some(s) => match parse_duration(s.get_ref()) {
                    Ok(d) if d >= Duration::from_secs(1) => d,
                    Ok(_) => {
                        r.at(s.span(), "stuck_after must be at least 1s");
                        Duration::from_secs(5)
                    }
                    Err(msg) => {
                        r.at(s.span(), format!("stuck_after: {msg}"));
                        Duration::from_secs(5)
                    }
                },
                None => Duration::from_secs(5),
            };
            BgpConfig {
                routes_dir: PathBuf::from(b.routes_dir.get_ref()),
                bird_socket: b
                    .bird_socket
                    .as_ref()
                    .map_or_else(|| PathBuf::from("/run/bird/bird.ctl"), |s| PathBuf::from(s.get_ref())),
                birdc: b
                    .birdc
                    .as_ref()
                    .map_or_else(|| PathBuf::from("birdc"), |s| PathBuf::from(s.get_ref())),
                stuck_after,
            }
        });
        let fleet = raw.fleet.as_ref().map(|f| {
            let f = f.get_ref();
            let mut addr = |s: &Spanned<String>, what: &str| match s.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.at(s.span(), format!("{what} \"{}\" is not ADDRESS:PORT", s.get_ref()));
                    None
                }
            };
            let listen =
                addr(&f.listen, "listen").unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            let peers = f.peers.iter().filter_map(|p| addr(p, "peer")).collect();
            let text = f.key.get_ref();
            let key = match (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).map(|b| u8::from_str_radix(b, 16))).collect::<Option<Result<Vec<u8>, _>>>() {
                Some(Ok(k)) if k.len() >= 16 => k,
                _ => {
                    r.at(f.key.span(), "key must be at least 32 hexadecimal digits (16 bytes; `openssl rand -hex 32` makes one)");
                    Vec::new()
                }
            };
            FleetConfig { listen, peers, key }
        });
        Config {
            path: r.path.to_path_buf(),
            engine,
            tunnel,
            ports,
            subnets,
            vips,
            control: ControlConfig { socket, metrics, state, reload_settle },
            bgp,
            fleet,
        }
    }
}

/// Core numbers a config may name (Linux's largest NR_CPUS).
const MAX_CORES: usize = 8192;

impl Config {
    /// The cores of `[engine] cores` that this machine does not have online, with how
    /// many it has: what `vipgate run` refuses to start with.
    pub fn missing_cores(&self) -> Option<(Vec<usize>, usize)> {
        let online = online_cores();
        let missing: Vec<usize> =
            self.engine.cores.iter().flatten().copied().filter(|&c| c >= online).collect();
        (!missing.is_empty()).then_some((missing, online))
    }
}

/// How many cores the machine has online (not only those this thread may run on):
/// `/sys/devices/system/cpu/online` ("0-1,4"), else what the scheduler gives us.
fn online_cores() -> usize {
    let fallback = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(text) = std::fs::read_to_string("/sys/devices/system/cpu/online") else { return fallback };
    let highest = text.trim().split(',').filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok()).max();
    highest.map_or(fallback, |h| (h + 1).max(fallback))
}

fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("15").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1y").is_err());
    }

    #[test]
    fn line_and_column() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, t.find('=').unwrap() + 8), (2, 4));
    }
}
