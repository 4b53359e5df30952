//! Announcing through BIRD, end to end: two network namespaces joined by a veth pair that
//! the test creates, BIRD from apt in each (the appliance's speaker, with
//! configs/bird-appliance.conf, and a router), and `vipgate run` driving the speaker. The
//! router learns the VIP subnet when vipgate starts, loses it when the appliance is
//! drained, learns it again when undrained, and loses it when vipgate stops.
//! Needs root, iproute2 and bird2 (scripts/test.sh installs them).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod support;
use support::{ctl_json, wait_for};

struct Lab {
    a: String,
    r: String,
    dir: PathBuf,
    children: Vec<Child>,
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().is_ok_and(|s| s.success());
    assert!(ok, "ip {args:?} failed: this test needs root and iproute2");
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id();
        let (a, r) = (format!("vg-bgp-a-{id}"), format!("vg-bgp-r-{id}"));
        for ns in [&a, &r] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (va, vr) = (format!("vga{}", id % 100_000), format!("vgr{}", id % 100_000));
        ip(&["link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vr, "netns", &r]);
        ip(&["-n", &a, "addr", "add", "198.51.100.1/24", "dev", &va]);
        ip(&["-n", &r, "addr", "add", "198.51.100.254/24", "dev", &vr]);
        ip(&["-n", &a, "link", "set", &va, "up"]);
        ip(&["-n", &r, "link", "set", &vr, "up"]);
        let dir = std::env::temp_dir().join(format!("vipgate-bgp-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab { a, r, dir, children: Vec::new() }
    }

    fn bird(&mut self, ns: &str, name: &str, config: &str) -> PathBuf {
        let conf = self.dir.join(format!("{name}.conf"));
        std::fs::write(&conf, config).unwrap();
        let sock = self.dir.join(format!("{name}.ctl"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&sock)
            .arg("-P")
            .arg(self.dir.join(format!("{name}.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bird runs (Debian package bird2)");
        self.children.push(child);
        sock
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.a, &self.r] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn router_has_route(sock: &Path) -> bool {
    let out = Command::new("birdc").arg("-s").arg(sock).args(["show", "route", "203.0.113.0/24"]).output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("203.0.113.0/24"))
}

#[test]
fn the_router_learns_and_loses_the_subnet_as_the_appliance_starts_drains_and_stops() {
    let mut lab = Lab::new();
    let routes = lab.dir.join("routes");
    let speaker_sock = lab.dir.join("speaker.ctl");
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/bird-appliance.conf"))
            .unwrap()
            .replace("/run/vipgate/bird", routes.to_str().unwrap())
            .replace("log syslog all;", "");
    let base = support::TestConfig {
        rate: 1000,
        flow_capacity: 4096,
        subnets: vec![("legacy-2g-a", "203.0.113.0/24")],
        ..support::TestConfig::new(&lab.dir)
    };
    let vipgate_config = base.text()
        + &support::vip_toml("udp://203.0.113.10:8000", "ipip", r#"{ address = "192.0.2.11" }"#)
        + &format!(
            r#"
[bgp]
routes_dir = "{}"
bird_socket = "{}"
"#,
            routes.display(),
            speaker_sock.display()
        );
    let path = lab.dir.join("vipgate.toml");
    std::fs::write(&path, vipgate_config).unwrap();
    // vipgate first: it writes the route files that the speaker's config includes.
    let mut app = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = lab.dir.join("ctl.sock");
    wait_for("the socket", 20, || UnixStream::connect(&socket).is_ok());
    wait_for("the route files", 20, || routes.join("vips4.conf").exists());
    let a = lab.a.clone();
    assert_eq!(lab.bird(&a, "speaker", &template), speaker_sock);
    let r = lab.r.clone();
    let router = lab.bird(
        &r,
        "router",
        "router id 198.51.100.254;\nprotocol device {}\nprotocol bgp appliance {\n  local 198.51.100.254 as 64500;\n  neighbor 198.51.100.1 as 64512;\n  hold time 9;\n  ipv4 { import all; export none; };\n}\n",
    );
    wait_for("the router to learn 203.0.113.0/24", 60, || router_has_route(&router));
    wait_for("vipgate to report announcing", 10, || {
        ctl_json(&socket, &["status"])["bgp"]["announcing"] == true
    });

    let d = ctl_json(&socket, &["drain-appliance"]);
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["announcing"], false, "{d}");
    wait_for("the router to lose the route", 30, || !router_has_route(&router));
    let st = ctl_json(&socket, &["status"]);
    assert!(st["bgp"]["withdrawn"].as_str().unwrap().contains("drained"), "{st}");

    let u = ctl_json(&socket, &["undrain-appliance"]);
    assert_eq!(u["announcing"], true, "{u}");
    wait_for("the router to learn it again", 60, || router_has_route(&router));

    assert!(Command::new("kill").args(["-TERM", &app.id().to_string()]).status().unwrap().success());
    let status = app.wait().unwrap();
    assert!(status.success());
    wait_for("the router to lose the route on shutdown", 30, || !router_has_route(&router));
    let mut log = String::new();
    use std::io::Read;
    app.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("bgp: announcing 1 subnet(s)"), "{log}");
    assert!(log.contains("bgp: routes withdrawn: vipgate is stopping"), "{log}");
}
