//! The afxdp driver on veth pairs in network namespaces the tests create: vipgate takes
//! the VIPs' traffic through its XDP filter and AF_XDP sockets while the kernel keeps the
//! rest of the same interface (its own address, pings, TCP and UDP, ARP and ND, ICMP
//! errors about its packets, a BGP session), through reloads, a stop, a kill -9 and a
//! stale filter. A routed bed (client, router with BIRD, appliance, backend) carries TCP
//! and UDP through every tunnel and family to a backend that decapsulates with an XDP
//! program of the test's own (`support/decap.bpf.c`). Needs root (XDP programs), clang,
//! bird2, ethtool, iputils-ping and python3 (scripts/test.sh installs them).
#![cfg(feature = "afxdp")]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod support;
use support::{
    all_answered, ask, attach_generic, birdc, compile_bpf, echo, example_config, fresh_dir, is_root, python,
    tunnelled, veth, wait_for, Appliance, Bird, Netns,
};

macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: the afxdp tests need root (XDP programs, network namespaces)");
            return;
        }
    };
}

/// The appliance's MAC (the example config's) and the client's.
const APPLIANCE_MAC: &str = "02:00:00:00:00:01";
const CLIENT_MAC: &str = "02:00:00:00:00:c2";

/// An appliance namespace and a client namespace joined by `a0` - `c0`. The appliance's
/// kernel has 198.51.100.3 and 2001:db8:ffff::3 on `a0`; vipgate answers for
/// 198.51.100.1 and 2001:db8:ffff::1 (the example's port addresses), which the client
/// routes the VIP subnet through.
struct Bed {
    appliance: Netns,
    client: Netns,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let bed = Bed { appliance: Netns::new(&format!("{tag}a")), client: Netns::new(&format!("{tag}c")) };
        veth(&bed.appliance, "a0", &bed.client, "c0");
        let (a, c) = (&bed.appliance, &bed.client);
        a.run(&["ip", "link", "set", "a0", "address", APPLIANCE_MAC]);
        a.run(&["ip", "addr", "add", "198.51.100.3/24", "dev", "a0"]);
        a.run(&["ip", "-6", "addr", "add", "2001:db8:ffff::3/64", "dev", "a0", "nodad"]);
        c.run(&["ip", "link", "set", "c0", "address", CLIENT_MAC]);
        c.run(&["ip", "addr", "add", "198.51.100.2/24", "dev", "c0"]);
        c.run(&["ip", "-6", "addr", "add", "2001:db8:ffff::2/64", "dev", "c0", "nodad"]);
        c.run(&["ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
        // Whole checksums on the client's frames (af_packet would hand on partial ones).
        c.run(&["ethtool", "-K", "c0", "tx", "off"]);
        bed
    }

    /// `ip link show a0` in the appliance's namespace.
    fn link(&self) -> String {
        self.appliance.sh("ip link show dev a0").1
    }

    /// The XDP program on `a0`, if any: its id and name.
    fn xdp(&self) -> Option<(u64, String)> {
        let link = self.link();
        let at = link.find("prog/xdp id ")? + "prog/xdp id ".len();
        let mut words = link[at..].split_whitespace();
        let id = words.next()?.parse().ok()?;
        let name = (words.next() == Some("name")).then(|| words.next()).flatten()?.to_string();
        Some((id, name))
    }
}

/// configs/example.toml on an afxdp port on `a0`, with its socket and state in `dir` and
/// `more` appended.
fn afxdp_config(dir: &Path, more: &str) -> PathBuf {
    let example = std::fs::read_to_string(example_config()).unwrap();
    let config = example
        .replace("workers = 1", "workers = 1\nidle_polls_before_sleep = 16")
        .replace("driver = \"memory\"", "driver = \"afxdp\"\ninterface = \"a0\"")
        .replace("next_hop_mac = \"02:00:00:00:00:fe\"", &format!("next_hop_mac = \"{CLIENT_MAC}\""))
        .replace("/run/vipgate/ctl.sock", dir.join("ctl.sock").to_str().unwrap())
        .replace("/var/lib/vipgate/state.json", dir.join("state.json").to_str().unwrap())
        .replace("metrics = \"127.0.0.1:9620\"\n", "");
    assert!(config.contains("driver = \"afxdp\"") && config.contains(CLIENT_MAC));
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, format!("{config}{more}")).unwrap();
    path
}

/// A test bed tagged `tag`, and a fresh directory with the afxdp config in it.
fn bed_and_config(tag: &str) -> (Bed, PathBuf, PathBuf) {
    let bed = Bed::new(tag);
    let dir = fresh_dir(&format!("afxdp-{tag}"));
    let config = afxdp_config(&dir, "");
    (bed, dir, config)
}

fn start(bed: &Bed, dir: &Path, config: &Path) -> Appliance {
    Appliance::start_wrapped(
        dir,
        config,
        &dir.join("ctl.sock"),
        &["ip", "netns", "exec", &bed.appliance.0],
        &[],
    )
}

/// `tunnel_peer.py` in the client's namespace: UDP to `vip:udp_port` from `flows` ports and
/// TCP connections to `vip:tcp_port`, and what came back tunnelled.
fn tunnel_peer(bed: &Bed, vip: &str, udp_port: u16, tcp_port: u16, flows: u32) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tunnel_peer.py");
    let out = bed
        .client
        .cmd(&["python3", script.to_str().unwrap(), "--iface", "c0", "--vip", vip])
        .args(["--udp-port", &udp_port.to_string(), "--tcp-port", &tcp_port.to_string()])
        .args(["--flows", &flows.to_string(), "--seconds", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A counter of `ctl stats`.
fn counter(app: &Appliance, name: &str) -> u64 {
    app.json(&["stats"])["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}"))
}

/// The kernel's own traffic on the appliance's interface: pings to its address and a TCP
/// and UDP exchange with a service of its own, from the client. Asserts that vipgate saw
/// none of it (its received packets do not move).
fn the_kernel_keeps_its_traffic(bed: &Bed, app: &Appliance) {
    let before = counter(app, "rx_packets");
    let (ok, out) = bed.client.sh("ping -c 3 -i 0.2 -W 2 198.51.100.3");
    assert!(ok, "the kernel answers pings to its own address: {out}");
    let (ok, out) = bed.client.sh("ping -6 -c 2 -i 0.2 -W 2 2001:db8:ffff::3");
    assert!(ok, "and over IPv6: {out}");
    // TCP and UDP with a service of the appliance's own.
    all_answered(&ask(&bed.client, 7000, &["198.51.100.3"]), &["198.51.100.3"]);
    assert_eq!(counter(app, "rx_packets"), before, "vipgate took none of the kernel's traffic");
}

#[test]
fn a_kernel_client_reaches_the_vips_while_the_kernel_keeps_its_own_traffic() {
    needs_root!();
    let (bed, dir, config) = bed_and_config("axk");
    let _service = echo(&bed.appliance, 7000, &["198.51.100.3"]);
    let app = start(&bed, &dir, &config);
    assert_eq!(bed.xdp().map(|x| x.1).as_deref(), Some("vipgate_filter"), "{}", bed.link());
    assert!(app.log().contains("AF_XDP on a0"), "{}", app.log());

    // UDP 8000 by IPIP to the UDP VIP's active backends; TCP by GUE to the TCP VIP's.
    let seen = tunnel_peer(&bed, "203.0.113.10", 8000, 5222, 40);
    let udp_backends: HashSet<&str> = ["192.0.2.11", "192.0.2.12"].into();
    let tcp_backends: HashSet<&str> = ["192.0.2.21", "192.0.2.22"].into();
    let (mut udp_flows, mut tcp_flows) = (HashSet::new(), HashSet::new());
    for p in tunnelled(&seen, "203.0.113.10") {
        let flows = match (p.encap.as_str(), p.proto) {
            ("ipip", 17) if udp_backends.contains(p.backend.as_str()) => &mut udp_flows,
            ("gue", 6) if tcp_backends.contains(p.backend.as_str()) => &mut tcp_flows,
            _ => panic!("unexpected {p:?}"),
        };
        flows.insert(p.sport);
    }
    assert_eq!(udp_flows.len(), 40, "every UDP flow came through: {seen}");
    assert!(tcp_flows.len() >= 35, "the TCP SYNs came through: {} of 40\n{seen}", tcp_flows.len());
    assert!(seen["arp_answered"].as_bool().unwrap(), "vipgate answered ARP for its address 198.51.100.1");

    // The kernel keeps its address, its pings and its TCP on the same interface.
    the_kernel_keeps_its_traffic(&bed, &app);

    // A reload that adds a VIP subnet: the filter takes it at once, the kernel keeps the rest.
    let more = "\n[[subnet]]\nname = \"added\"\nprefix = \"192.0.2.192/26\"\n\n[[vip]]\naddress = \"192.0.2.200\"\n\
                port = 9000\nprotocol = \"udp\"\nencap = \"ipip\"\nbackends = [{ address = \"192.0.2.12\", weight = 1 }]\n";
    afxdp_config(&dir, more);
    let reload = app.json(&["reload"]);
    assert_eq!(reload["ok"], true, "{reload}");
    bed.client.run(&["ip", "route", "add", "192.0.2.192/26", "via", "198.51.100.1"]);
    let seen = tunnel_peer(&bed, "192.0.2.200", 9000, 9, 5);
    let added: HashSet<u64> = tunnelled(&seen, "192.0.2.200")
        .into_iter()
        .filter(|p| p.backend == "192.0.2.12" && p.encap == "ipip")
        .map(|p| p.sport)
        .collect();
    assert_eq!(added.len(), 5, "the added subnet's VIP is taken after the reload: {seen}");
    the_kernel_keeps_its_traffic(&bed, &app);

    // The filter's map changes without losing a frame: 2 000 packets to a VIP while six
    // reloads take the added subnet out and put it back; vipgate forwards every one.
    let forwarded = counter(&app, "forwarded");
    let mut sender = python(
        &bed.client,
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(2000):\n    s.sendto(b'during', ('203.0.113.10', 8000))\n    time.sleep(0.001)\n",
    )
    .spawn()
    .unwrap();
    for round in 0..6 {
        afxdp_config(&dir, if round % 2 == 0 { "" } else { more });
        let reload = app.json(&["reload", "--allow-removals"]);
        assert_eq!(reload["ok"], true, "{reload}");
    }
    assert!(sender.wait().unwrap().success());
    wait_for("vipgate to forward the 2 000", 20, || counter(&app, "forwarded") >= forwarded + 2000);
    assert_eq!(counter(&app, "forwarded"), forwarded + 2000, "not one lost, not one more");

    // The port's report: the filter's counts and the sockets' losses.
    let stats = app.json(&["stats"]);
    assert_eq!(
        (stats["port"]["driver"].as_str(), stats["port"]["device"].as_str()),
        (Some("afxdp"), Some("a0"))
    );
    assert!(stats["port"]["xstats"]["xdp_taken"].as_u64().unwrap() > 80, "{stats}");
    assert!(stats["port"]["xstats"]["xdp_passed"].as_u64().unwrap() > 0, "{stats}");
    // Copy mode: the kernel asks to be woken to send, a system call a burst at most.
    let wakeups = stats["port"]["xstats"]["xsk_wakeups"].as_u64().unwrap();
    assert!(wakeups > 0 && wakeups <= stats["counters"]["forwarded"].as_u64().unwrap(), "{stats}");
    for loss in ["drop_rx_dropped", "drop_rx_ring_full", "drop_tx_invalid"] {
        assert_eq!(stats["counters"][loss].as_u64(), Some(0), "{loss}: {stats}");
    }

    let status = app.stop();
    assert!(status.success(), "vipgate run exited with {status}");
    let report = std::fs::read_to_string(dir.join("stdout")).unwrap();
    assert!(report.contains("afxdp interface a0: its XDP filter took"), "{report}");
    assert_eq!(bed.xdp(), None, "SIGTERM detaches the filter: {}", bed.link());
    let _ = std::fs::remove_dir_all(dir);
}

/// Builds a one-line XDP program named `name` that passes every frame, into `dir`.
fn pass_program(dir: &Path, name: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
             SEC(\"xdp\") int {name}(struct xdp_md *ctx) {{ return XDP_PASS; }}\n\
             char LICENSE[] SEC(\"license\") = \"Apache-2.0\";\n"
        ),
    )
    .unwrap();
    compile_bpf(dir, &src)
}

#[test]
fn a_killed_appliance_leaves_no_filter_a_stale_one_is_replaced_another_is_left_alone() {
    needs_root!();
    let (bed, dir, config) = bed_and_config("axs");

    // Someone else's program: vipgate refuses the interface, names the program, and
    // leaves it attached.
    let other = pass_program(&dir, "other_prog");
    attach_generic(&bed.appliance, "a0", &other);
    let out = bed
        .appliance
        .cmd(&[env!("CARGO_BIN_EXE_vipgate"), "run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"other_prog\"") && err.contains("ip link set dev a0 xdp off"), "{err}");
    assert_eq!(bed.xdp().map(|x| x.1).as_deref(), Some("other_prog"), "left alone: {}", bed.link());
    bed.appliance.run(&["ip", "link", "set", "dev", "a0", "xdpgeneric", "off"]);

    // A program of ours attached the old way (netlink), as a vipgate that could not detach
    // would leave it: replaced, and said so.
    let stale = pass_program(&dir, "vipgate_filter");
    attach_generic(&bed.appliance, "a0", &stale);
    let (stale_id, _) = bed.xdp().expect("the stale program is attached");
    let app = start(&bed, &dir, &config);
    assert!(
        app.log().contains(&format!("replaced the stale vipgate XDP program {stale_id}")),
        "{}",
        app.log()
    );
    let (id, name) = bed.xdp().expect("vipgate's filter");
    assert_eq!(name, "vipgate_filter");
    assert_ne!(id, stale_id, "a program of its own, not the stale one");

    // kill -9: the kernel takes the filter off with the process's link.
    app.kill9();
    wait_for("the filter to go with the killed process", 10, || bed.xdp().is_none());

    // The next start is clean (the log, appended across starts, tells of one replacement), and so
    // is its stop.
    let app = start(&bed, &dir, &config);
    assert_eq!(app.log().matches("replaced the stale").count(), 1, "{}", app.log());
    assert!(bed.xdp().is_some());
    app.finish();
    assert_eq!(bed.xdp(), None, "{}", bed.link());
}

/// The line of `birdc show protocols` for the router's session to the appliance.
fn session(router: &Path) -> String {
    birdc(router, &["show", "protocols", "appliance"])
        .lines()
        .find(|l| l.starts_with("appliance"))
        .unwrap_or("")
        .to_string()
}

/// The VIPs of the routed test bed: one per tunnel and family, any protocol.
const ROUTED_VIPS: [&str; 6] =
    ["203.0.113.11", "203.0.113.12", "203.0.113.13", "2001:db8:ab::11", "2001:db8:ab::12", "2001:db8:ab::13"];

/// A client, a router, the appliance and a backend, each in a namespace:
///
/// ```text
/// client c0 -- rc router ra -- a0 appliance (vipgate on a0, BIRD)
///                        rb -- b0 backend (XDP decapsulation, the VIPs on lo)
/// ```
///
/// The router learns the IPv4 VIP subnet from the appliance's BIRD, and routes the IPv6
/// one statically; the backend answers the client directly.
struct Routed {
    client: Netns,
    router: Netns,
    appliance: Netns,
    backend: Netns,
}

impl Routed {
    fn new(dir: &Path) -> Routed {
        let r = Routed {
            client: Netns::new("axrc"),
            router: Netns::new("axrr"),
            appliance: Netns::new("axra"),
            backend: Netns::new("axrb"),
        };
        veth(&r.client, "c0", &r.router, "rc");
        veth(&r.router, "ra", &r.appliance, "a0");
        veth(&r.router, "rb", &r.backend, "b0");
        r.router.run(&["ip", "link", "set", "ra", "address", "02:00:00:00:00:fe"]);
        r.appliance.run(&["ip", "link", "set", "a0", "address", APPLIANCE_MAC]);
        for (ns, dev, v4, v6) in [
            (&r.client, "c0", "198.51.100.2/24", "2001:db8:c::2/64"),
            (&r.router, "rc", "198.51.100.1/24", "2001:db8:c::1/64"),
            (&r.router, "ra", "192.0.2.1/28", "2001:db8:a::1/64"),
            (&r.router, "rb", "192.0.2.33/28", "2001:db8:b::1/64"),
            (&r.appliance, "a0", "192.0.2.2/28", "2001:db8:a::2/64"),
            (&r.backend, "b0", "192.0.2.40/28", "2001:db8:b::40/64"),
        ] {
            ns.run(&["ip", "addr", "add", v4, "dev", dev]);
            ns.run(&["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"]);
            // Whole checksums on every frame a kernel sends (see the machine notes).
            ns.run(&["ethtool", "-K", dev, "tx", "off"]);
        }
        r.client.run(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
        r.client.run(&["ip", "-6", "route", "add", "default", "via", "2001:db8:c::1"]);
        r.backend.run(&["ip", "route", "add", "default", "via", "192.0.2.33"]);
        r.backend.run(&["ip", "-6", "route", "add", "default", "via", "2001:db8:b::1"]);
        r.router.run(&["ip", "-6", "route", "add", "2001:db8:ab::/48", "via", "2001:db8:a::2"]);
        // The router forwards, and takes the backend's answers from the VIPs (which it
        // routes elsewhere) without reverse-path filtering.
        let (ok, out) = r.router.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
             net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.rb.rp_filter=0");
        assert!(ok, "{out}");
        for vip in ROUTED_VIPS {
            let len = if vip.contains(':') { "128" } else { "32" };
            r.backend.run(&["ip", "addr", "add", &format!("{vip}/{len}"), "dev", "lo"]);
        }
        let decap =
            compile_bpf(dir, &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/decap.bpf.c"));
        attach_generic(&r.backend, "b0", &decap);
        r
    }
}

/// The routed bed's vipgate config: the six VIPs, its tunnel source the kernel's own
/// address, BIRD's files in `dir`.
fn routed_config(dir: &Path, more: &str) -> PathBuf {
    let mut text = format!(
        "[engine]\nworkers = 1\nhash_seed = 7\nidle_polls_before_sleep = 16\n\n\
         [tunnel]\nsource_v4 = \"192.0.2.2\"\nsource_v6 = \"2001:db8:a::2\"\n\n\
         [[port]]\nname = \"wan\"\ndriver = \"afxdp\"\ninterface = \"a0\"\nmac = \"{APPLIANCE_MAC}\"\n\
         next_hop_mac = \"02:00:00:00:00:fe\"\n\n\
         [[subnet]]\nprefix = \"203.0.113.0/24\"\n\n[[subnet]]\nprefix = \"2001:db8:ab::/48\"\n\n"
    );
    for (vip, encap) in ROUTED_VIPS.iter().zip(["ipip", "gue", "gre"].iter().cycle()) {
        let backend = if vip.contains(':') { "2001:db8:b::40" } else { "192.0.2.40" };
        text.push_str(&format!(
            "[[vip]]\naddress = \"{vip}\"\nprotocol = \"any\"\nencap = \"{encap}\"\nbackends = [{{ address = \"{backend}\" }}]\n\n"
        ));
    }
    text.push_str(&format!(
        "[control]\nsocket = \"{}\"\nstate = \"{}\"\n\n[bgp]\nroutes_dir = \"{}\"\nbird_socket = \"{}\"\n{more}",
        dir.join("ctl.sock").display(),
        dir.join("state.json").display(),
        dir.join("routes").display(),
        dir.join("speaker.ctl").display()
    ));
    let path = dir.join("vipgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_tunnel_carries_tcp_and_udp_to_a_decapsulating_backend_while_bgp_stays_up() {
    needs_root!();
    let dir = fresh_dir("afxdp-routed");
    let bed = Routed::new(&dir);
    let _services = [echo(&bed.backend, 7, &ROUTED_VIPS), echo(&bed.appliance, 7000, &["192.0.2.2"])];
    let config = routed_config(&dir, "");
    let app = Appliance::start_wrapped(
        &dir,
        &config,
        &dir.join("ctl.sock"),
        &["ip", "netns", "exec", &bed.appliance.0],
        &[],
    );
    // BIRD: the appliance's speaker (configs/bird-appliance.conf, on the kernel's address
    // of the interface vipgate polls) and the router, which puts what it learns in its
    // kernel.
    let routes = dir.join("routes");
    wait_for("vipgate's route files", 20, || routes.join("vips4.conf").exists());
    let speaker_conf =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/bird-appliance.conf"))
            .unwrap()
            .replace("/run/vipgate/bird", routes.to_str().unwrap())
            .replace("log syslog all;", "")
            .replace("198.51.100.254", "192.0.2.1")
            .replace("198.51.100.1", "192.0.2.2");
    let (_speaker, _) = Bird::start(&bed.appliance, &dir, "speaker", &speaker_conf);
    let (_router_bird, router) = Bird::start(
        &bed.router,
        &dir,
        "router",
        "router id 192.0.2.1;\nprotocol device {}\nprotocol kernel { ipv4 { export all; }; }\n\
         protocol bgp appliance {\n  local 192.0.2.1 as 64500;\n  neighbor 192.0.2.2 as 64512;\n  hold time 9;\n\
           ipv4 { import all; export none; };\n}\n",
    );
    wait_for("the router to learn 203.0.113.0/24 from the appliance", 60, || {
        bed.router.sh("ip route show 203.0.113.0/24").1.contains("via 192.0.2.2")
    });
    let established = session(&router);
    assert!(established.contains("Established"), "{established}");

    // Every tunnel, both families, TCP and UDP: the client's kernel to the backend's and
    // back, through vipgate on the appliance.
    all_answered(&ask(&bed.client, 7, &ROUTED_VIPS), &ROUTED_VIPS);
    let stats = app.json(&["stats"]);
    assert!(stats["counters"]["forwarded"].as_u64().unwrap() >= 12, "{stats}");

    // The appliance's own address stays the kernel's: the router pings it and talks TCP
    // and UDP to it.
    let (ok, out) = bed.router.sh("ping -c 2 -i 0.2 -W 2 192.0.2.2");
    assert!(ok, "{out}");
    all_answered(&ask(&bed.router, 7000, &["192.0.2.2"]), &["192.0.2.2"]);

    // A reload (a VIP more): the session does not flap, and every VIP answers.
    let more = "\n[[vip]]\naddress = \"203.0.113.14\"\nprotocol = \"udp\"\nport = 9\nencap = \"gre\"\n\
                backends = [{ address = \"192.0.2.40\" }]\n";
    routed_config(&dir, more);
    let reload = app.json(&["reload"]);
    assert_eq!(reload["ok"], true, "{reload}");
    all_answered(&ask(&bed.client, 7, &ROUTED_VIPS), &ROUTED_VIPS);
    assert_eq!(session(&router), established, "the BGP session went on through the reload");

    // Stopping withdraws the routes and takes the filter off.
    app.finish();
    wait_for("the router to lose the subnet", 30, || {
        !bed.router.sh("ip route show 203.0.113.0/24").1.contains("via 192.0.2.2")
    });
    assert!(!bed.appliance.sh("ip link show dev a0").1.contains("prog/xdp"));
}

/// Sends `frames` as they are from the client's `c0` (a raw packet socket).
fn send_frames(bed: &Bed, frames: &[Vec<u8>]) {
    let hex: Vec<String> = frames.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect()).collect();
    let out = python(
        &bed.client,
        "import socket, sys\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('c0', 0))\n\
         for h in sys.argv[1:]:\n    s.send(bytes.fromhex(h))\n",
    )
    .args(&hex)
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An ARP request from `sender` (at the client's MAC) for `target`.
fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let client = [2, 0, 0, 0, 0, 0xc2];
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&client);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&client);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// A neighbour solicitation from `sender` for `target`, to its solicited-node group.
fn neighbour_solicitation(sender: std::net::Ipv6Addr, target: std::net::Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0xc2]);
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xc2], [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6(sender.octets(), group.octets(), 255)
        .icmpv6(etherparse::Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] })
        .write(&mut f, &body)
        .unwrap();
    f
}

/// An ICMP "fragmentation needed" to `to`, quoting a UDP packet from `quoted_src`.
fn icmp_error(to: [u8; 4], quoted_src: [u8; 4]) -> Vec<u8> {
    let quoted = &support::udp(quoted_src, 8000, [198, 51, 100, 2], 40000, b"data")[14..];
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xc2], support::OUR_MAC)
        .ipv4([198, 51, 100, 9], to, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut f, &quoted[..28])
        .unwrap();
    f
}

/// A counter of the appliance kernel's (`nstat`, absolute).
fn kernel_counter(bed: &Bed, name: &str) -> u64 {
    let out = bed.appliance.sh(&format!("nstat -az {name}")).1;
    out.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_filter_gives_vipgate_its_frames_and_the_kernel_the_rest() {
    needs_root!();
    // In generic XDP, where the other tests run native.
    let bed = Bed::new("axf");
    let dir = fresh_dir("afxdp-axf");
    let config = afxdp_config(&dir, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interface = \"a0\"", "interface = \"a0\"\nxdp_mode = \"generic\"");
    std::fs::write(&config, text).unwrap();
    let app = start(&bed, &dir, &config);
    assert!(app.log().contains("generic XDP"), "{}", app.log());
    assert!(bed.link().contains("xdpgeneric"), "{}", bed.link());
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    let to_vip = support::udp([198, 51, 100, 2], 41000, [203, 0, 113, 10], 8000, b"marker");
    let taken = |app: &Appliance| {
        (counter(app, "rx_packets"), app.json(&["stats"])["port"]["xstats"]["xdp_taken"].as_u64().unwrap())
    };
    // Each frame the kernel should have is followed by one to a VIP: when vipgate has
    // counted that one (the interface's one queue keeps the order), it has counted all
    // before it.
    let mut expect = taken(&app);
    let mut passes = |what: &str, frame: Vec<u8>| {
        send_frames(&bed, &[frame, to_vip.clone()]);
        wait_for(what, 10, || counter(&app, "rx_packets") > expect.0);
        let now = taken(&app);
        assert_eq!(now, (expect.0 + 1, expect.1 + 1), "{what}: only the frame to the VIP was taken");
        expect = now;
    };
    // UDP to the kernel's own address: the kernel answers it (no port: UdpNoPorts).
    let no_ports = kernel_counter(&bed, "UdpNoPorts");
    passes(
        "UDP to the kernel's address",
        support::udp([198, 51, 100, 2], 41001, [198, 51, 100, 3], 9999, b"x"),
    );
    wait_for("the kernel to see the UDP", 10, || kernel_counter(&bed, "UdpNoPorts") > no_ports);
    // ARP and ND for the kernel's addresses: the kernel answers, and learns the sender.
    passes("ARP for the kernel's address", arp_request([198, 51, 100, 77], [198, 51, 100, 3]));
    wait_for("the kernel to learn 198.51.100.77", 10, || {
        bed.appliance.sh("ip neigh show 198.51.100.77").1.contains("lladdr")
    });
    passes(
        "ND for the kernel's address",
        neighbour_solicitation(v6("2001:db8:ffff::77"), v6("2001:db8:ffff::3")),
    );
    wait_for("the kernel to learn 2001:db8:ffff::77", 10, || {
        bed.appliance.sh("ip -6 neigh show 2001:db8:ffff::77").1.contains("lladdr")
    });
    // An ICMP error about a packet of the kernel's own: the kernel's.
    let unreachable = kernel_counter(&bed, "IcmpInDestUnreachs");
    passes("an ICMP error about the kernel's packet", icmp_error([198, 51, 100, 3], [198, 51, 100, 3]));
    wait_for("the kernel to see its ICMP error", 10, || {
        kernel_counter(&bed, "IcmpInDestUnreachs") > unreachable
    });

    // vipgate's: ARP and ND for its addresses (it answers them), an ICMP error about a
    // packet a VIP sent (to whatever address), IPv4 and IPv6 to the VIP subnets.
    let before = (counter(&app, "arp_replies"), counter(&app, "nd_replies"));
    let mine = [
        arp_request([198, 51, 100, 78], [198, 51, 100, 1]),
        neighbour_solicitation(v6("2001:db8:ffff::78"), v6("2001:db8:ffff::1")),
        icmp_error([198, 51, 100, 3], [203, 0, 113, 10]),
        to_vip.clone(),
    ];
    send_frames(&bed, &mine);
    wait_for("vipgate to take its four frames", 10, || counter(&app, "rx_packets") >= expect.0 + 4);
    assert_eq!(taken(&app), (expect.0 + 4, expect.1 + 4));
    assert_eq!((counter(&app, "arp_replies"), counter(&app, "nd_replies")), (before.0 + 1, before.1 + 1));
    assert!(
        !bed.appliance.sh("ip neigh show 198.51.100.78").1.contains("lladdr"),
        "the kernel never saw the ARP request for vipgate's address"
    );
    app.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vipgate run` in the appliance's namespace that must not start: its stderr.
fn refused_start(bed: &Bed, config: &Path) -> String {
    let out = bed
        .appliance
        .cmd(&[env!("CARGO_BIN_EXE_vipgate"), "run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(bed.xdp().is_none(), "a refused start leaves no filter: {}", bed.link());
    err
}

#[test]
fn clear_errors_for_the_kernels_address_a_wrong_mac_or_interface_and_a_fallback_to_generic() {
    needs_root!();
    let (bed, dir, config) = bed_and_config("axe");
    let text = std::fs::read_to_string(&config).unwrap();
    let with = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        std::fs::write(&config, text.replace(from, to)).unwrap();
    };
    // The kernel's own address among those vipgate would answer for.
    with("addresses = [\"198.51.100.1\",", "addresses = [\"198.51.100.3\", \"198.51.100.1\",");
    let err = refused_start(&bed, &config);
    assert!(err.contains("address 198.51.100.3 is the kernel's on a0"), "{err}");
    // A MAC that is not the interface's: the error names the right one.
    with("mac = \"02:00:00:00:00:01\"", "mac = \"02:00:00:00:00:09\"");
    let err = refused_start(&bed, &config);
    assert!(err.contains("but a0 has 02:00:00:00:00:01"), "{err}");
    // No such interface.
    with("interface = \"a0\"", "interface = \"nope0\"");
    let err = refused_start(&bed, &config);
    assert!(err.contains("interface \"nope0\" not found"), "{err}");

    // An interface with no native XDP (a bridge): generic, with a warning, and it runs.
    bed.appliance.run(&["ip", "link", "add", "br9", "type", "bridge"]);
    bed.appliance.run(&["ip", "link", "set", "br9", "address", APPLIANCE_MAC, "up"]);
    with("interface = \"a0\"", "interface = \"br9\"");
    let app = start(&bed, &dir, &config);
    assert!(app.log().contains("br9 has no native XDP"), "{}", app.log());
    assert!(app.log().contains("copy mode, generic XDP"), "{}", app.log());
    assert_eq!(app.json(&["stats"])["port"]["device_driver"], "generic XDP, copy");
    app.finish();
}

#[test]
fn two_workers_take_a_queue_each_of_a_two_queue_interface() {
    needs_root!();
    let bed = Bed { appliance: Netns::new("axqa"), client: Netns::new("axqc") };
    let ok = Command::new("ip")
        .args(["link", "add", "a0", "netns", &bed.appliance.0, "numtxqueues", "2", "numrxqueues", "2"])
        .args([
            "type",
            "veth",
            "peer",
            "name",
            "c0",
            "netns",
            &bed.client.0,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "a two-queue veth pair");
    let (a, c) = (&bed.appliance, &bed.client);
    a.run(&["ip", "link", "set", "a0", "address", APPLIANCE_MAC, "up"]);
    a.run(&["ip", "addr", "add", "198.51.100.3/24", "dev", "a0"]);
    c.run(&["ip", "link", "set", "c0", "address", CLIENT_MAC, "up"]);
    c.run(&["ip", "addr", "add", "198.51.100.2/24", "dev", "c0"]);
    c.run(&["ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    c.run(&["ethtool", "-K", "c0", "tx", "off"]);
    let dir = fresh_dir("afxdp-axq");
    let config = afxdp_config(&dir, "");
    let text = std::fs::read_to_string(&config).unwrap().replace("workers = 1", "workers = 2");
    std::fs::write(&config, text).unwrap();
    let app = start(&bed, &dir, &config);
    assert!(app.log().contains("2 queue(s)"), "{}", app.log());
    let seen = tunnel_peer(&bed, "203.0.113.10", 8000, 5222, 64);
    let udp: HashSet<u64> =
        tunnelled(&seen, "203.0.113.10").iter().filter(|p| p.proto == 17).map(|p| p.sport).collect();
    assert_eq!(udp.len(), 64, "every UDP flow came through: {seen}");
    let stats = app.json(&["stats"]);
    let per_worker: Vec<u64> = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["counters"]["forwarded"].as_u64().unwrap())
        .collect();
    assert!(per_worker.iter().all(|&n| n > 0), "both queues' workers forwarded: {per_worker:?}");
    app.finish();
}
