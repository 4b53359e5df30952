//! A fleet of appliances behind a router's ECMP, end to end, in network namespaces the
//! tests create:
//!
//! ```text
//!                                 bra -- a0 appliance 1 (vipgate afxdp, BIRD)
//! client c0 -- rc router (BIRD)   bra -- a0 appliance 2 (...)
//!                                 bra -- a0 appliance 3 (added later)
//!                                 brb -- b0 backend 1..4 (XDP decapsulation, echo on the VIP)
//! ```
//!
//! The router learns the VIP subnet from every appliance's BIRD and spreads flows over
//! them by L4 hash (`fib_multipath_hash_policy = 1`, BIRD's `merge paths`). The client
//! keeps hundreds of TCP connections talking to the VIP; a connection that reaches a
//! backend other than its own is reset by that backend's kernel, so the client counts
//! what a failure breaks. Needs root, clang, bird2, ethtool and python3.
#![cfg(feature = "afxdp")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{
    attach_generic, compile_bpf, echo, fresh_dir, is_root, ready, veth, wait_for, Appliance, Bird, Kill,
    Netns,
};

macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: the fleet tests need root (XDP programs, network namespaces)");
            return;
        }
    };
}

/// The router's MAC on the appliances' segment: every appliance's next hop.
const ROUTER_MAC: &str = "02:00:00:00:00:fe";
const VIP: &str = "203.0.113.10";
/// The fleet's shared key (`[fleet] key`).
const FLEET_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The appliance `i` (1, 2, 3): its address and MAC.
fn appliance_addr(i: usize) -> String {
    format!("192.0.2.{}", 1 + i)
}

fn appliance_mac(i: usize) -> String {
    format!("02:00:00:00:00:0{i}")
}

/// The backend `j` (1..=4): its address.
fn backend_addr(j: usize) -> String {
    format!("192.0.2.{}", 69 + j)
}

struct Fleet {
    dir: PathBuf,
    client: Netns,
    router: Netns,
    appliances: Vec<Netns>,
    /// Kept for their namespaces' lives.
    _backends: Vec<Netns>,
    /// Processes to stop with the test: backends' echo services, BIRDs.
    kept: Vec<Kill>,
    birds: Vec<Bird>,
    /// More `[engine]` keys for the appliances' configs.
    engine_extra: String,
    /// An appliance whose monotonic clock runs this many seconds ahead of the others'.
    clock_ahead: Option<(usize, u64)>,
}

impl Fleet {
    /// The client, the router with its BIRD, three appliance namespaces (nothing running
    /// in them yet) and four backends, decapsulating and echoing on the VIP.
    fn new(tag: &str) -> Fleet {
        let dir = fresh_dir(&format!("fleet-{tag}"));
        let client = Netns::new(&format!("{tag}c"));
        let router = Netns::new(&format!("{tag}r"));
        veth(&client, "c0", &router, "rc");
        client.run(&["ip", "addr", "add", "198.51.100.2/24", "dev", "c0"]);
        client.run(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
        client.run(&["ethtool", "-K", "c0", "tx", "off"]);
        router.run(&["ip", "addr", "add", "198.51.100.1/24", "dev", "rc"]);
        for (bridge, addr) in [("bra", "192.0.2.1/26"), ("brb", "192.0.2.65/26")] {
            router.run(&["ip", "link", "add", bridge, "type", "bridge"]);
            router.run(&["ip", "link", "set", bridge, "up"]);
            router.run(&["ip", "addr", "add", addr, "dev", bridge]);
        }
        router.run(&["ip", "link", "set", "bra", "address", ROUTER_MAC]);
        let (ok, out) = router.sh(
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
             net.ipv4.fib_multipath_hash_policy=1",
        );
        assert!(ok, "{out}");
        let mut appliances = Vec::new();
        for i in 1..=3 {
            let a = Netns::new(&format!("{tag}a{i}"));
            let port = format!("ra{i}");
            veth(&router, &port, &a, "a0");
            router.run(&["ip", "link", "set", &port, "master", "bra"]);
            a.run(&["ip", "link", "set", "a0", "address", &appliance_mac(i)]);
            a.run(&["ip", "addr", "add", &format!("{}/26", appliance_addr(i)), "dev", "a0"]);
            appliances.push(a);
        }
        let decap =
            compile_bpf(&dir, &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/decap.bpf.c"));
        let mut backends = Vec::new();
        let mut kept = Vec::new();
        for j in 1..=4 {
            let b = Netns::new(&format!("{tag}b{j}"));
            let port = format!("rb{j}");
            veth(&router, &port, &b, "b0");
            router.run(&["ip", "link", "set", &port, "master", "brb"]);
            b.run(&["ip", "addr", "add", &format!("{}/26", backend_addr(j)), "dev", "b0"]);
            b.run(&["ip", "route", "add", "default", "via", "192.0.2.65"]);
            b.run(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            b.run(&["ethtool", "-K", "b0", "tx", "off"]);
            let (ok, out) =
                b.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
            assert!(ok, "{out}");
            attach_generic(&b, "b0", &decap);
            kept.push(echo(&b, 7, &[VIP]));
            backends.push(b);
        }
        // The router: a session to each appliance, short timers, and every equal route
        // merged into one multipath route in its kernel.
        let mut conf = String::from(
            "router id 192.0.2.1;\nprotocol device {}\nprotocol kernel { merge paths on; ipv4 { export all; }; }\n",
        );
        for i in 1..=3 {
            conf.push_str(&format!(
                "protocol bgp a{i} {{\n  local 192.0.2.1 as 64500;\n  neighbor {} as 64512;\n  hold time 3;\n  \
                 keepalive time 1;\n  connect retry time 1;\n  ipv4 {{ import all; export none; }};\n}}\n",
                appliance_addr(i)
            ));
        }
        let (bird, _) = Bird::start(&router, &dir, "router", &conf);
        Fleet {
            dir,
            client,
            router,
            appliances,
            _backends: backends,
            kept,
            birds: vec![bird],
            engine_extra: String::new(),
            clock_ahead: None,
        }
    }

    /// The appliance `i`'s directory.
    fn home(&self, i: usize) -> PathBuf {
        let d = self.dir.join(format!("a{i}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Writes appliance `i`'s config with `backends` (TOML entries of the VIP's list), its
    /// peers the other appliances.
    fn config(&self, i: usize, backends: &str) -> PathBuf {
        let peers: Vec<String> =
            (1..=3).filter(|&p| p != i).map(|p| format!("{}:7946", appliance_addr(p))).collect();
        self.config_with(i, backends, &peers)
    }

    /// [`Fleet::config`] with other `peers` (`ADDRESS:PORT`).
    fn config_with(&self, i: usize, backends: &str, peers: &[String]) -> PathBuf {
        let home = self.home(i);
        let text = format!(
            "[engine]\nworkers = 1\nhash_seed = 11\nidle_polls_before_sleep = 16\n{extra}\n\
             [tunnel]\nsource_v4 = \"{addr}\"\n\n\
             [[port]]\nname = \"wan\"\ndriver = \"afxdp\"\ninterface = \"a0\"\nmac = \"{mac}\"\n\
             next_hop_mac = \"{ROUTER_MAC}\"\n\n\
             [[subnet]]\nprefix = \"203.0.113.0/24\"\n\n\
             [[vip]]\naddress = \"{VIP}\"\nport = 7\nprotocol = \"tcp\"\nencap = \"ipip\"\nbackends = [\n{backends}]\n\n\
             [control]\nsocket = \"{home}/ctl.sock\"\nstate = \"{home}/state.json\"\n\n\
             [bgp]\nroutes_dir = \"{home}/routes\"\nbird_socket = \"{home}/speaker.ctl\"\n\n\
             [fleet]\nlisten = \"{addr}:7946\"\npeers = [{peers}]\nkey = \"{FLEET_KEY}\"\n",
            peers = peers.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", "),
            addr = appliance_addr(i),
            mac = appliance_mac(i),
            extra = self.engine_extra,
            home = home.display(),
        );
        let path = home.join("vipgate.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts appliance `i`: vipgate on `config`, then its BIRD (on configs/bird-appliance.conf),
    /// and waits until the router routes the VIP subnet through it.
    fn start(&mut self, i: usize, config: &Path) -> (Appliance, Bird) {
        let home = self.home(i);
        let ns = &self.appliances[i - 1];
        let socket = home.join("ctl.sock");
        let app = match self.clock_ahead.filter(|&(j, _)| j == i) {
            // In a time namespace of its own, its monotonic clock that far ahead.
            Some((_, secs)) => {
                let s = secs.to_string();
                let wrapper =
                    ["ip", "netns", "exec", &ns.0, "unshare", "--time", "--fork", "--kill-child=SIGKILL"];
                let wrapper: Vec<&str> =
                    wrapper.into_iter().chain(["--monotonic", &s, "--boottime", &s]).collect();
                Appliance::start_forked(&home, config, &socket, &wrapper)
            }
            None => Appliance::start_wrapped(&home, config, &socket, &["ip", "netns", "exec", &ns.0], &[]),
        };
        wait_for("vipgate's route files", 20, || home.join("routes/vips4.conf").exists());
        let speaker = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/bird-appliance.conf"),
        )
        .unwrap()
        .replace("/run/vipgate/bird", home.join("routes").to_str().unwrap())
        .replace("log syslog all;", "")
        .replace("hold time 9;", "hold time 3;\n    keepalive time 1;\n    connect retry time 1;")
        .replace("198.51.100.254", "192.0.2.1")
        .replace("198.51.100.1", &appliance_addr(i));
        let (bird, _) = Bird::start(ns, &home, "speaker", &speaker);
        let via = format!("via {}", appliance_addr(i));
        wait_for("the router to route the VIP subnet through the appliance", 60, || {
            self.router.sh("ip route show 203.0.113.0/24").1.contains(&via)
        });
        (app, bird)
    }

    /// The router's route to the VIP subnet.
    fn route(&self) -> String {
        self.router.sh("ip route show 203.0.113.0/24").1
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.birds.clear();
        self.kept.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `fleet_client.py` in the client's namespace, its control files in `dir`.
fn client(fleet: &Fleet, dir: &Path, first: usize, second: usize) -> std::process::Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fleet_client.py");
    fleet
        .client
        .cmd(&[
            "python3",
            script.to_str().unwrap(),
            "--vip",
            VIP,
            "--port",
            "7",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .args(["--first", &first.to_string(), "--second", &second.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The VIP's backends before a migration (1 and 2) and during it (1 and 2 draining, 3
/// and 4 taking new flows), as TOML entries.
fn migration() -> (String, String) {
    let entry = |j: usize, state: &str| format!("  {{ address = \"{}\"{state} }},\n", backend_addr(j));
    let before = (1..=2).map(|j| entry(j, "")).collect();
    let during =
        (1..=2).map(|j| entry(j, ", state = \"draining\"")).chain((3..=4).map(|j| entry(j, ""))).collect();
    (before, during)
}

impl Fleet {
    /// Starts appliances 1 and 2 on their configs, and waits for the router's route to go
    /// through both.
    fn start_two(&mut self, c1: &Path, c2: &Path) -> [(Appliance, Bird); 2] {
        let both = [self.start(1, c1), self.start(2, c2)];
        wait_for("a multipath route over both appliances", 30, || {
            let r = self.route();
            r.contains("via 192.0.2.2") && r.contains("via 192.0.2.3")
        });
        both
    }

    /// A directory for the client's control files.
    fn run_dir(&self) -> PathBuf {
        let run = self.dir.join("client");
        std::fs::create_dir_all(&run).unwrap();
        run
    }
}

/// Stops the client and returns its report.
fn report(mut child: std::process::Child, dir: &Path) -> Value {
    std::fs::write(dir.join("stop"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the client did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Packets an appliance forwarded so far.
fn carried(app: &Appliance) -> u64 {
    app.json(&["stats"])["counters"]["forwarded"].as_u64().unwrap()
}

/// Kills appliance 1 (`app`, `bird`), waits until the router no longer routes through it,
/// then until every one of `connections` has had about three exchanges through
/// `survivor` (its forwarded packets: the client's lines and acknowledgements); returns
/// how long the router took.
fn fail_over(fleet: &Fleet, app: Appliance, bird: Bird, survivor: &Appliance, connections: u64) -> Duration {
    let killed = Instant::now();
    kill(app, bird);
    wait_for("the router to drop the killed appliance", 30, || !fleet.route().contains("via 192.0.2.2"));
    let withdrawn = killed.elapsed();
    let from = carried(survivor);
    wait_for("every connection to talk through the survivor", 30, || {
        carried(survivor) >= from + 6 * connections
    });
    withdrawn
}

/// Kills appliance `app` and its BIRD with SIGKILL, as a crash of the machine would end
/// them.
fn kill(app: Appliance, bird: Bird) {
    app.kill9();
    drop(bird);
}

#[test]
fn an_appliance_killed_loses_no_connection_while_the_backends_stay() {
    needs_root!();
    let mut fleet = Fleet::new("fs");
    let backends =
        format!("  {{ address = \"{}\" }},\n  {{ address = \"{}\" }},\n", backend_addr(1), backend_addr(2));
    let (c1, c2) = (fleet.config(1, &backends), fleet.config(2, &backends));
    let [(a1, b1), (a2, b2)] = fleet.start_two(&c1, &c2);
    let run = fleet.run_dir();
    let child = client(&fleet, &run, 200, 0);
    wait_for("200 connections open", 60, || run.join("first-open").exists());
    // Both appliances carry some of them.
    wait_for("both appliances to carry traffic", 20, || carried(&a1) > 100 && carried(&a2) > 100);
    let withdrawn = fail_over(&fleet, a1, b1, &a2, 200);
    let report = report(child, &run);
    let first = &report["first"];
    assert_eq!(first["opened"], 200, "{report}");
    assert_eq!(first["broken"].as_array().unwrap().len(), 0, "no connection broke: {report}");
    eprintln!(
        "fleet: the router dropped the killed appliance after {:.2} s; the longest a connection went without an echo: {} s",
        withdrawn.as_secs_f64(),
        first["max_gap_s"]
    );
    assert!(first["max_gap_s"].as_f64().unwrap() < 10.0, "{report}");
    let _ = b2;
    a2.finish();
}

/// Old backends 1 and 2 draining, new backends 3 and 4 taking new flows; 150 connections
/// made before the drain and 150 after; appliance 1 killed, then appliance 3 added (the
/// router rehashes twice). What must hold: no established connection breaks, and new
/// connections go only to the new backends.
#[test]
fn an_appliance_killed_and_one_added_mid_migration_lose_no_connection() {
    needs_root!();
    let mut fleet = Fleet::new("fm");
    let (before, during) = migration();
    let (c1, c2) = (fleet.config(1, &before), fleet.config(2, &before));
    let [(a1, b1), (a2, b2)] = fleet.start_two(&c1, &c2);
    let run = fleet.run_dir();
    let child = client(&fleet, &run, 150, 150);
    wait_for("the first 150 connections open", 60, || run.join("first-open").exists());

    // The migration: both appliances drain the old backends and take the new ones.
    for (app, i) in [(&a1, 1), (&a2, 2)] {
        fleet.config(i, &during);
        let r = app.json(&["reload"]);
        assert_eq!(r["ok"], true, "{r}");
    }
    std::fs::write(run.join("second"), "").unwrap();
    wait_for("the second 150 connections open", 60, || run.join("second-open").exists());
    std::thread::sleep(Duration::from_secs(2));
    let broken = || std::fs::read_to_string(run.join("broken.log")).unwrap_or_default().lines().count();
    let after_drain = broken();

    fail_over(&fleet, a1, b1, &a2, 300);
    let after_kill = broken();
    let c3 = fleet.config(3, &during);
    let (a3, b3) = fleet.start(3, &c3);
    wait_for("a multipath route over appliances 2 and 3", 30, || fleet.route().contains("via 192.0.2.4"));
    // The flows the router moved talk through appliance 3 (each about three times).
    let from = carried(&a3);
    wait_for("the moved connections to talk through appliance 3", 30, || carried(&a3) >= from + 6 * 100);
    eprintln!(
        "fleet mid-migration: broken after the drain {after_drain}, after the kill {after_kill}, after the addition {}",
        broken()
    );
    // The backends' kernels hold the connections: the 150 made before the drain on the
    // old backends, the 150 after on the new ones only.
    let established = |j: usize| {
        let out = fleet._backends[j - 1].sh("ss -Htn state established '( sport = :7 )' | wc -l").1;
        out.trim().parse::<usize>().unwrap()
    };
    let (old, new) = (established(1) + established(2), established(3) + established(4));
    let report = report(child, &run);
    eprintln!("fleet mid-migration: {report}");
    assert_eq!((old, new), (150, 150), "connections on the old and the new backends: {report}");
    // The survivors took the flows from their peers.
    for app in [&a2, &a3] {
        let adopted = app.json(&["stats"])["counters"]["flows_adopted"].as_u64().unwrap();
        assert!(adopted > 0, "an appliance adopted its peers' flows");
    }
    for group in ["first", "second"] {
        assert_eq!(report[group]["broken"].as_array().unwrap().len(), 0, "{group}: {report}");
    }
    let _ = (b2, b3);
    a2.finish();
    a3.finish();
}

/// The fleet's counts in `ctl status`.
fn app_fleet(app: &Appliance) -> Value {
    app.json(&["status"])["fleet"].clone()
}

/// A lossy relay (`support/lossy_relay.py`) in the router's namespace from `listen` to
/// `to`: 30% of the datagrams lost, 30% sent twice, each held up to 50 ms.
fn relay(fleet: &Fleet, listen: &str, to: &str, seed: u32) -> Kill {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lossy_relay.py");
    let mut cmd = fleet.router.cmd(&["python3", script.to_str().unwrap(), "--listen", listen, "--to", to]);
    cmd.args(["--loss", "0.3", "--repeat", "0.3", "--delay", "0.05", "--seed", &seed.to_string()]);
    ready(cmd)
}

/// The appliances talk through relays that lose, repeat and delay their messages, and
/// their monotonic clocks are a day apart; an appliance killed mid-migration still breaks
/// no connection, and a forged message is refused.
#[test]
fn the_fleet_shares_its_flows_through_lost_repeated_and_late_messages() {
    needs_root!();
    let mut fleet = Fleet::new("fl");
    // And appliance 2's clock a day ahead of appliance 1's.
    fleet.clock_ahead = Some((2, 86_400));
    let (before, during) = migration();
    // Appliance 1 reaches 2 through 192.0.2.1:7912, and 2 reaches 1 through :7921.
    let relays = [
        relay(&fleet, "192.0.2.1:7912", &format!("{}:7946", appliance_addr(2)), 1),
        relay(&fleet, "192.0.2.1:7921", &format!("{}:7946", appliance_addr(1)), 2),
    ];
    let c1 = fleet.config_with(1, &before, &["192.0.2.1:7912".to_string()]);
    let c2 = fleet.config_with(2, &before, &["192.0.2.1:7921".to_string()]);
    let [(a1, b1), (a2, b2)] = fleet.start_two(&c1, &c2);
    let run = fleet.run_dir();
    let child = client(&fleet, &run, 150, 0);
    wait_for("150 connections open", 60, || run.join("first-open").exists());
    for (app, i, peer) in [(&a1, 1, "192.0.2.1:7912"), (&a2, 2, "192.0.2.1:7921")] {
        fleet.config_with(i, &during, &[peer.to_string()]);
        let r = app.json(&["reload"]);
        assert_eq!(r["ok"], true, "{r}");
    }
    // Every record through: each appliance's flows adopted by the other, resent as lost.
    let adopted = |app: &Appliance| app.json(&["stats"])["counters"]["flows_adopted"].as_u64().unwrap();
    let announced = |app: &Appliance| app.json(&["stats"])["counters"]["flows_announced"].as_u64().unwrap();
    wait_for("every flow adopted by the other appliance", 30, || {
        adopted(&a2) >= announced(&a1) && adopted(&a1) >= announced(&a2)
    });

    // A forged message (another key) to appliance 2: refused, counted, nothing adopted.
    let before_forged = adopted(&a2);
    let (ok, out) = fleet.client.sh(&format!(
        "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.sendto(b'VGF1' + bytes(19) + bytes(32), ('{}', 7946))\"",
        appliance_addr(2)
    ));
    assert!(ok, "{out}");
    wait_for("the forged message refused", 10, || app_fleet(&a2)["refused_forged"].as_u64() >= Some(1));
    let fleet2 = app_fleet(&a2);
    assert!(fleet2["records_taken"].as_u64().unwrap() >= 150 / 2, "{fleet2}");
    // The relays lost messages, which were sent again.
    let resent = |app: &Appliance| app_fleet(app)["resent"].as_u64().unwrap();
    assert!(resent(&a1) + resent(&a2) > 0, "{fleet2}");
    fail_over(&fleet, a1, b1, &a2, 150);
    let report = report(child, &run);
    eprintln!("fleet through lossy relays: {report}");
    assert_eq!(report["first"]["broken"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(adopted(&a2), before_forged, "the forged message adopted nothing");
    // Appliance 2 did run a day ahead.
    let pid = support::answering_pid(&a2.socket).expect("appliance 2 answers");
    let offsets = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap();
    assert!(offsets.lines().any(|l| l.starts_with("monotonic") && l.contains("86400")), "{offsets}");
    drop(relays);
    // (Its process is `unshare`, which takes vipgate with it.)
    kill(a2, b2);
}

/// Connections that outlive the TCP idle timeout (6 s here) on their appliance keep their
/// copies on the peer (told again while they go on): killing their appliance mid-migration
/// after 15 s breaks none.
#[test]
fn flows_that_outlive_the_idle_timeout_stay_shared() {
    needs_root!();
    let mut fleet = Fleet::new("fo");
    fleet.engine_extra = "tcp_idle_timeout = \"6s\"\n".into();
    let (before, during) = migration();
    let (c1, c2) = (fleet.config(1, &before), fleet.config(2, &before));
    let [(a1, b1), (a2, b2)] = fleet.start_two(&c1, &c2);
    let run = fleet.run_dir();
    let child = client(&fleet, &run, 100, 0);
    wait_for("100 connections open", 60, || run.join("first-open").exists());
    for (app, i) in [(&a1, 1), (&a2, 2)] {
        fleet.config(i, &during);
        let r = app.json(&["reload"]);
        assert_eq!(r["ok"], true, "{r}");
    }
    // Two and a half idle timeouts: a copy told once would have expired twice.
    std::thread::sleep(Duration::from_secs(15));
    let refreshed = app_fleet(&a1)["refreshed"].as_u64().unwrap();
    assert!(refreshed > 0, "appliance 1 told its live flows again: {}", app_fleet(&a1));
    fail_over(&fleet, a1, b1, &a2, 100);
    let report = report(child, &run);
    eprintln!("fleet, long-lived flows: {report}");
    assert_eq!(report["first"]["broken"].as_array().unwrap().len(), 0, "{report}");
    let _ = b2;
    a2.finish();
}

/// The main thread's CPU time of process `pid` (where vipgate's control loop runs), in
/// clock ticks (user and system).
fn control_cpu(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap();
    // After the command's name in parentheses, from the state on: utime and stime are the
    // 12th and 13th.
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// What sharing costs the control thread: 1 000 new flows a second for 10 s (UDP to the
/// VIP, each from a new port) through two appliances, with `[fleet]` and without; prints
/// each appliance's control-thread CPU. A measurement (run with `--ignored`), recorded in
/// benches/README.
#[test]
#[ignore = "a measurement: cargo test -p vipgate-control --features afxdp --test fleet -- --ignored --nocapture"]
fn measure_what_sharing_costs_the_control_thread() {
    needs_root!();
    let udp_vip = "\n[[vip]]\naddress = \"203.0.113.10\"\nport = 9\nprotocol = \"udp\"\nencap = \"ipip\"\n\
                   backends = [{ address = \"192.0.2.70\" }, { address = \"192.0.2.71\" }]\n";
    for sharing in [true, false] {
        let mut fleet = Fleet::new(if sharing { "mc" } else { "mn" });
        let (before, _) = migration();
        let configs = [1, 2].map(|i| {
            let c = fleet.config(i, &before);
            let mut text = std::fs::read_to_string(&c).unwrap() + udp_vip;
            if !sharing {
                text = text[..text.find("[fleet]").unwrap()].to_string() + udp_vip;
            }
            std::fs::write(&c, text).unwrap();
            c
        });
        let [(a1, b1), (a2, b2)] = fleet.start_two(&configs[0], &configs[1]);
        let cpu = |app: &Appliance| control_cpu(&app.pid());
        let start = (cpu(&a1), cpu(&a2));
        let out = support::python(
            &fleet.client,
            "import socket, time\n\
             t0 = time.monotonic()\n\
             for i in range(10000):\n\
             \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             \x20   s.bind(('198.51.100.2', 20000 + i))\n\
             \x20   s.sendto(b'x', ('203.0.113.10', 9))\n\
             \x20   s.close()\n\
             \x20   time.sleep(max(0.0, t0 + (i + 1) / 1000 - time.monotonic()))\n",
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(1));
        let ticks = (cpu(&a1) - start.0, cpu(&a2) - start.1);
        let announced =
            |app: &Appliance| app.json(&["stats"])["counters"]["flows_announced"].as_u64().unwrap();
        let flows = announced(&a1) + announced(&a2);
        if sharing {
            assert!(flows >= 9_900, "the new flows were announced: {flows}");
        } else {
            assert_eq!(flows, 0);
        }
        let rss = |app: &Appliance| {
            let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid())).unwrap();
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .unwrap_or("")
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string()
        };
        eprintln!(
            "fleet cost: sharing {sharing}: control threads {} and {} ticks of CPU (1/100 s) over 10 s of 1 000 new flows a second; {flows} announced; resident {} and {} kB",
            ticks.0, ticks.1, rss(&a1), rss(&a2)
        );
        kill(a1, b1);
        kill(a2, b2);
    }
}
