//! What the tests that drive a running `vipgate` share. Each test file uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use etherparse as ep;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vipgate_engine::port::pcap;

/// Polls `cond` every 50 ms until it holds; fails the test after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vipgate ctl --json --socket SOCKET ARGS...`, its answer parsed.
pub fn ctl_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["ctl", "--json", "--socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_vipgate")).args(&all).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
}

/// The port's MAC in the test configs.
pub const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The client side's MAC in the test captures.
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];

pub fn vipgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vipgate")).args(args).output().expect("vipgate runs")
}

pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipgate-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/example.toml")
}

pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    ep::PacketBuilder::ethernet2(CLIENT_MAC, OUR_MAC)
        .ipv4(src, dst, 60)
        .udp(sport, dport)
        .write(&mut f, payload)
        .unwrap();
    f
}

pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    ep::PacketBuilder::ethernet2(CLIENT_MAC, OUR_MAC)
        .ipv4(src, dst, 60)
        .tcp(sport, dport, 1, 1024)
        .ack(1)
        .write(&mut f, b"hb")
        .unwrap();
    f
}

pub fn write_capture(path: &Path, frames: &[Vec<u8>]) {
    let mut w = pcap::Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(1_700_000_000_000_000_000 + i as u64 * 1_000_000, f).unwrap();
    }
    w.finish().unwrap();
}

pub fn read_capture(path: &Path) -> Vec<Vec<u8>> {
    let mut r = pcap::Reader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next().unwrap() {
        out.push(rec.data.to_vec());
    }
    out
}

/// A capture of 2G-gateway-like traffic: a few carrier addresses, many ports, heartbeats.
pub fn traffic() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for round in 0..3 {
        for gw in 1..=4u8 {
            for port in 0..50u16 {
                let sport = 20000 + port * 7 + u16::from(gw);
                if (port + round) % 2 == 0 {
                    frames.push(udp([198, 51, 100, 100 + gw], sport, [203, 0, 113, 10], 8000, b"heartbeat"));
                } else {
                    frames.push(tcp([198, 51, 100, 100 + gw], sport, [203, 0, 113, 10], 5222));
                }
            }
        }
    }
    // Noise: no VIP in the subnet, outside every subnet, another host's MAC, garbage.
    frames.push(udp([198, 51, 100, 9], 1, [203, 0, 113, 99], 53, b"x"));
    frames.push(udp([198, 51, 100, 9], 1, [192, 0, 2, 99], 53, b"x"));
    let mut other = udp([198, 51, 100, 9], 1, [203, 0, 113, 10], 8000, b"x");
    other[5] = 0x77;
    frames.push(other);
    frames.push(vec![0xff; 10]);
    frames
}

pub fn json_number(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("no {key} in {json}")) + pat.len();
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

/// `vipgate replay` of `input` on configs/example.toml into `output`, with `more` arguments.
pub fn replay_example(input: &Path, output: &Path, more: &[&str]) -> std::process::Output {
    replay_on(&example_config(), input, output, more)
}

/// `vipgate replay --config CONFIG --input INPUT --output OUTPUT MORE...`.
pub fn replay_on(config: &Path, input: &Path, output: &Path, more: &[&str]) -> std::process::Output {
    let (config, input, output) =
        (config.to_str().unwrap(), input.to_str().unwrap(), output.to_str().unwrap());
    let mut args = vec!["replay", "--config", config, "--input", input, "--output", output];
    args.extend_from_slice(more);
    vipgate(&args)
}

/// `vipgate replay` of `input` on configs/example.toml with `workers` workers: the frames it
/// writes (to `DIR/replayed.pcap`).
pub fn replayed(dir: &Path, input: &Path, workers: usize) -> Vec<Vec<u8>> {
    let out = dir.join("replayed.pcap");
    let r = replay_example(input, &out, &["--workers", &workers.to_string()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    read_capture(&out)
}

/// The process id that the appliance answering on `socket` reports in `status`, if one
/// answers within a second.
pub fn answering_pid(socket: &Path) -> Option<u32> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"{\"cmd\":\"status\"}\n").ok()?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).ok()?;
    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
    v["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// A `vipgate run` process on a config in a directory of its own, as an operator runs it.
pub struct Appliance {
    pub child: std::process::Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
}

/// A fresh directory for an appliance test (removed first if a dead run left it).
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipgate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Appliance {
    /// Starts `vipgate run --config DIR/vipgate.toml ARGS...` with `text` as the config,
    /// and waits (20 s at most) until `socket` answers.
    pub fn start(dir: &Path, text: &str, socket: &Path, args: &[&str]) -> Appliance {
        let config = dir.join("vipgate.toml");
        std::fs::write(&config, text).unwrap();
        Appliance::start_on(dir, &config, socket, args)
    }

    /// Starts `vipgate run` on the config file already at `config`.
    /// Its log (stderr) goes to `DIR/log`, appended across restarts, so that a long run
    /// never blocks on a full pipe and a test can read the log while it runs.
    pub fn start_on(dir: &Path, config: &Path, socket: &Path, args: &[&str]) -> Appliance {
        Appliance::start_wrapped(dir, config, socket, &[], args)
    }

    /// [`Appliance::start_on`] through `wrapper` (e.g. `prlimit --nofile=200 --`).
    pub fn start_wrapped(
        dir: &Path,
        config: &Path,
        socket: &Path,
        wrapper: &[&str],
        args: &[&str],
    ) -> Appliance {
        Appliance::start_through(dir, config, socket, wrapper, args, false)
    }

    /// [`Appliance::start_wrapped`] through a wrapper that forks (vipgate is its child,
    /// another process: `unshare --fork`): up when any process answers on the socket.
    pub fn start_forked(dir: &Path, config: &Path, socket: &Path, wrapper: &[&str]) -> Appliance {
        Appliance::start_through(dir, config, socket, wrapper, &[], true)
    }

    fn start_through(
        dir: &Path,
        config: &Path,
        socket: &Path,
        wrapper: &[&str],
        args: &[&str],
        forks: bool,
    ) -> Appliance {
        let file =
            |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
        let bin = env!("CARGO_BIN_EXE_vipgate");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(["run", "--config", config.to_str().unwrap()])
            .args(args)
            .stdout(file("stdout"))
            .stderr(file("log"))
            .spawn()
            .unwrap();
        // Up when it answers `status` as this process: a socket that merely takes a
        // connection may still be a killed predecessor's, held for a moment by a child it
        // forked.
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = child.id();
        let up = |pid: Option<u32>| if forks { pid.is_some() } else { pid == Some(id) };
        while !up(answering_pid(socket)) {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                panic!("vipgate run exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "the socket never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Appliance {
            child,
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    /// `vipgate ctl --socket SOCKET ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["ctl", "--socket", self.socket.to_str().unwrap()];
        all.extend_from_slice(args);
        vipgate(&all)
    }

    /// `vipgate ctl --config CONFIG ARGS...`, as the operator scripts call it.
    pub fn ctl_by_config(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["ctl", "--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        vipgate(&all)
    }

    /// The JSON answer of `ctl ARGS...`.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        ctl_json(&self.socket, args)
    }

    /// The answer to `vipgate ctl ARGS --json`, as its type in `vipgate_control::answer`.
    pub fn answer<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let a = self.json(args);
        T::deserialize(&a).unwrap_or_else(|e| panic!("ctl {args:?}: {e} in {a}"))
    }

    pub fn generation(&self) -> u64 {
        self.json(&["status"])["generation"].as_u64().unwrap()
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Writes a new config over the file in place (same inode), as `>` in a shell does.
    pub fn rewrite(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// `GET /metrics` on `127.0.0.1:PORT`: the body.
    pub fn metrics(port: u16) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM and waits: its exit status.
    /// Stops the appliance, which must exit 0, and removes its directory.
    pub fn finish(self) {
        let dir = self.dir.clone();
        let status = self.stop();
        assert!(status.success(), "vipgate run exited with {status}");
        let _ = std::fs::remove_dir_all(dir);
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        assert!(Command::new("kill").args(["-TERM", &self.pid()]).status().unwrap().success());
        self.child.wait().unwrap()
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the metric line that starts with `series ` (name and labels, exactly).
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The TOML of a test appliance on the synth port, without its VIPs: `[engine]`, then
/// `[control]` (the socket and the state file in `dir`, then the lines of `control`),
/// `[tunnel]`, a synth `[[port]]` and the subnets. `[control]` comes before the rest so
/// that a file cut short between two VIPs is still a valid config, as a slow writer
/// leaves it. Tests set what they need and take the defaults for the rest:
/// `TestConfig { workers: 2, ..TestConfig::new(&dir) }.text()`, then add their VIPs.
pub struct TestConfig<'a> {
    pub dir: &'a Path,
    pub workers: u32,
    /// Packets a second the synth port sends.
    pub rate: u32,
    pub hash_seed: u64,
    pub flow_capacity: u32,
    /// (name, prefix); an empty name leaves the subnet unnamed.
    pub subnets: Vec<(&'a str, &'a str)>,
    /// More lines of `[control]`.
    pub control: String,
}

impl<'a> TestConfig<'a> {
    pub fn new(dir: &'a Path) -> TestConfig<'a> {
        TestConfig {
            dir,
            workers: 1,
            rate: 2000,
            hash_seed: 7,
            flow_capacity: 65536,
            subnets: vec![("legacy", "203.0.113.0/24")],
            control: String::new(),
        }
    }

    pub fn text(&self) -> String {
        let mut text = format!(
            r#"[engine]
workers = {workers}
hash_seed = {seed}
maglev_table_size = 251
flow_capacity = {capacity}
idle_polls_before_sleep = 16

[control]
socket = "{socket}"
state = "{state}"
{control}

[tunnel]
source_v4 = "198.51.100.1"

[[port]]
name = "wan"
driver = "synth"
rate = {rate}
mac = "02:00:00:00:00:01"
next_hop_mac = "02:00:00:00:00:fe"
addresses = ["198.51.100.1"]
"#,
            workers = self.workers,
            seed = self.hash_seed,
            capacity = self.flow_capacity,
            socket = self.dir.join("ctl.sock").display(),
            state = self.dir.join("state.json").display(),
            control = self.control,
            rate = self.rate,
        );
        for (name, prefix) in &self.subnets {
            text.push_str("\n[[subnet]]\n");
            if !name.is_empty() {
                text.push_str(&format!("name = \"{name}\"\n"));
            }
            text.push_str(&format!("prefix = \"{prefix}\"\n"));
        }
        text
    }
}

/// A `[[vip]]` table: the VIP named `name` (`udp://203.0.113.10:8000`, `tcp://203.0.113.10`,
/// `any://[2001:db8:ab::10]`) over `encap`, with `backends` inside its array
/// (`{ address = "192.0.2.11", weight = 10 }, ...`, comments and line breaks kept).
pub fn vip_toml(name: &str, encap: &str, backends: &str) -> String {
    let (protocol, target) = name.split_once("://").expect("a VIP name, e.g. udp://203.0.113.10:8000");
    let (address, port) = match target.strip_prefix('[') {
        Some(rest) => {
            let (a, after) = rest.split_once(']').expect("a closing bracket");
            (a, after.strip_prefix(':'))
        }
        None => match target.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (target, None),
        },
    };
    let port = port.map(|p| format!("port = {p}\n")).unwrap_or_default();
    format!(
        "\n[[vip]]\naddress = \"{address}\"\n{port}protocol = \"{protocol}\"\nencap = \"{encap}\"\nbackends = [{backends}]\n"
    )
}

/// [`TestConfig`] with `workers`, `rate`, `subnets` and `control` given.
pub fn synth_appliance(
    dir: &Path,
    workers: u32,
    rate: u32,
    subnets: &[(&str, &str)],
    control: &str,
) -> String {
    TestConfig {
        workers,
        rate,
        subnets: subnets.to_vec(),
        control: control.to_string(),
        ..TestConfig::new(dir)
    }
    .text()
}

/// Whether the tests run as root (network namespaces, XDP programs, DPDK's EAL).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A network namespace of the test's own (`vg-TAG-PID`), its loopback up; deleted when
/// dropped, with whatever interfaces it holds.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("vg-{tag}-{}", std::process::id());
        // One a dead run left (usually none: quietly).
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(std::process::Stdio::null()).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "cannot create network namespace {name}: this test needs root and iproute2");
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ARGS` inside the namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    /// Runs `ARGS` inside the namespace; fails the test if it fails.
    pub fn run(&self, args: &[&str]) {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?} in {}: {}", self.0, String::from_utf8_lossy(&out.stderr));
    }

    /// Runs a shell command line inside the namespace; its output, whether it succeeded.
    pub fn sh(&self, line: &str) -> (bool, String) {
        let out = self.cmd(&["sh", "-c", line]).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A veth pair between two namespaces: `a` in `left`, `b` in `right`, both up.
pub fn veth(left: &Netns, a: &str, right: &Netns, b: &str) {
    let ok = Command::new("ip")
        .args(["link", "add", a, "netns", &left.0, "type", "veth", "peer", "name", b, "netns", &right.0])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "veth {a} ({}) - {b} ({})", left.0, right.0);
    left.run(&["ip", "link", "set", a, "up"]);
    right.run(&["ip", "link", "set", b, "up"]);
}

/// A packet `tunnel_peer.py` saw come back tunnelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnelled {
    /// `ipip` or `gue`.
    pub encap: String,
    /// The inner packet's protocol (6, 17).
    pub proto: u64,
    /// Its source port: its flow.
    pub sport: u64,
    /// The backend (the outer destination).
    pub backend: String,
}

/// The packets of `tunnel_peer.py`'s answer `seen` (from 198.51.100.2 to `vip`, tunnelled
/// from 198.51.100.1); asserts those addresses on each.
pub fn tunnelled(seen: &serde_json::Value, vip: &str) -> Vec<Tunnelled> {
    let packets = seen["tunnelled"].as_array().expect("tunnel_peer.py's answer");
    packets
        .iter()
        .map(|p| {
            assert_eq!(p["outer_src"], "198.51.100.1", "{p}");
            assert_eq!(p["inner_src"], "198.51.100.2", "{p}");
            assert_eq!(p["inner_dst"], vip, "{p}");
            Tunnelled {
                encap: p["encap"].as_str().unwrap().to_string(),
                proto: p["inner_proto"].as_u64().unwrap(),
                sport: p["inner_sport"].as_u64().unwrap(),
                backend: p["outer_dst"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// A TCP port of 127.0.0.1 that nothing listens on, for a server a test starts (metrics,
/// a backend). It lies below the kernel's ephemeral range (from 32768), so that no
/// outgoing connection of a test running beside this one takes it between this check and
/// the server's bind, as a port from `bind(0)` could be; each call gives another.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test processes started side by side begin apart.
    let start = std::process::id() % 1000 * 20;
    for _ in 0..20_000 {
        let port = 10_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 22_000;
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 between 10000 and 32000");
}

/// Processes of a test (services in its namespaces), killed when dropped: a namespace
/// that is deleted does not end the processes in it.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// BIRD in a namespace, stopped when dropped.
pub struct Bird(#[allow(dead_code)] Kill);

impl Bird {
    pub fn start(ns: &Netns, dir: &Path, name: &str, config: &str) -> (Bird, PathBuf) {
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, config).unwrap();
        let sock = dir.join(format!("{name}.ctl"));
        let child = ns
            .cmd(&["bird", "-f", "-c", conf.to_str().unwrap(), "-s", sock.to_str().unwrap()])
            .args(["-P", dir.join(format!("{name}.pid")).to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bird runs (Debian package bird2)");
        (Bird(Kill(child)), sock)
    }
}

/// `birdc -s SOCK ARGS...`.
pub fn birdc(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("birdc").arg("-s").arg(sock).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Attaches the XDP program `object` to `dev` of `ns` the old way (netlink, generic
/// mode), as `ip link` does.
pub fn attach_generic(ns: &Netns, dev: &str, object: &Path) {
    ns.run(&["ip", "link", "set", "dev", dev, "xdpgeneric", "obj", object.to_str().unwrap(), "sec", "xdp"]);
}

/// Builds the XDP program in C at `src` into `dir`.
pub fn compile_bpf(dir: &Path, src: &Path) -> PathBuf {
    let object = dir.join(src.file_name().unwrap()).with_extension("o");
    let arch = std::env::consts::ARCH;
    let out = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", &format!("-I/usr/include/{arch}-linux-gnu"), "-c"])
        .arg(src)
        .arg("-o")
        .arg(&object)
        .output()
        .unwrap();
    assert!(out.status.success(), "clang {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    object
}

/// `python3 -c CODE` in `ns`.
pub fn python(ns: &Netns, code: &str) -> Command {
    ns.cmd(&["python3", "-c", code])
}

/// Starts `cmd`, a helper that prints "ready" once it serves, and waits for that line.
pub fn ready(mut cmd: Command) -> Kill {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "{cmd:?} started");
    Kill(child)
}

/// An echo service (TCP and UDP, `support/echo.py`) on `port` of `addresses`, in `ns`.
pub fn echo(ns: &Netns, port: u16, addresses: &[&str]) -> Kill {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/echo.py");
    let mut cmd = ns.cmd(&["python3", script.to_str().unwrap(), "serve", &port.to_string()]);
    cmd.args(addresses);
    ready(cmd)
}

/// One TCP and one UDP exchange with each of `addresses` on `port`, from `ns`.
pub fn ask(ns: &Netns, port: u16, addresses: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/echo.py");
    let out = ns
        .cmd(&["python3", script.to_str().unwrap(), "ask", &port.to_string()])
        .args(addresses)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn all_answered(answers: &serde_json::Value, addresses: &[&str]) {
    for a in addresses {
        assert_eq!(
            (answers[a]["tcp"].as_str(), answers[a]["udp"].as_str()),
            (Some("ok"), Some("ok")),
            "TCP and UDP through {a}: {answers}"
        );
    }
}
