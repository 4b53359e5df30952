//! Announcing the VIP subnets through BIRD.
//!
//! vipgate does not speak BGP itself: the routing daemon BIRD 2 does. vipgate writes the
//! subnets to announce as static routes into two files that BIRD's config includes (one
//! per address family; configs/bird-appliance.conf is a template), and asks BIRD to
//! reconfigure (`birdc -s SOCKET configure`), which re-reads them. Every configured subnet
//! is announced while the appliance is healthy; the files are emptied (the routes
//! withdrawn, and the routers send the traffic to the other appliances of the fleet) when
//! the operator drains the appliance, when it shuts down, and when a worker has stopped
//! making progress.
//!
//! Files are replaced whole (a temporary file and a rename), so BIRD never reads half of
//! one. When birdc fails (BIRD not running, say), the error is kept and shown, and the
//! next tick tries again.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use crate::config::{BgpConfig, SubnetConfig};

/// The file of IPv4 routes, in `routes_dir`.
pub const FILE_V4: &str = "vips4.conf";
/// The file of IPv6 routes, in `routes_dir`.
pub const FILE_V6: &str = "vips6.conf";

/// The text of one routes file: the subnets of one family as static routes, or none.
pub fn routes_text(subnets: &[SubnetConfig], v6: bool, withdrawn: Option<&str>) -> String {
    let mut s = String::from("# Written by vipgate: the VIP subnets to announce. Do not edit.\n");
    match withdrawn {
        Some(reason) => s.push_str(&format!("# Withdrawn: {reason}\n")),
        None => {
            for sub in subnets.iter().filter(|s| matches!(s.addr, IpAddr::V6(_)) == v6) {
                s.push_str(&format!("route {}/{} blackhole;  # {}\n", sub.addr, sub.len, sub.name));
            }
        }
    }
    s
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp_name);
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// What vipgate tells BIRD.
#[derive(Debug)]
pub struct Announcer {
    config: BgpConfig,
    /// What the files say now, and whether BIRD has taken it.
    written: Option<(Vec<SubnetConfig>, Option<String>)>,
    configured: bool,
    last_error: Option<String>,
    /// When BIRD was last asked, so that a failure is retried once a second however often
    /// the control loop comes by.
    last_try: Option<std::time::Instant>,
}

/// How long after a failed attempt BIRD is asked again.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Announcer {
    /// An announcer that has written nothing yet.
    pub fn new(config: BgpConfig) -> Announcer {
        Announcer { config, written: None, configured: false, last_error: None, last_try: None }
    }

    /// Announces `subnets`, or withdraws every route with `withdrawn = Some(reason)`.
    /// Writes and reconfigures BIRD only when something changed, or (once a second) when
    /// the last attempt failed.
    pub fn set(&mut self, subnets: &[SubnetConfig], withdrawn: Option<&str>) {
        let want = (subnets.to_vec(), withdrawn.map(str::to_string));
        if self.written.as_ref() == Some(&want)
            && (self.configured || self.last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY))
        {
            return;
        }
        self.last_try = Some(std::time::Instant::now());
        let result = self.write_and_configure(subnets, withdrawn);
        match &result {
            Ok(()) => {
                if self.last_error.take().is_some() || self.written.as_ref() != Some(&want) {
                    match withdrawn {
                        None => log::info!("bgp: announcing {} subnet(s) through BIRD", subnets.len()),
                        Some(r) => log::warn!("bgp: routes withdrawn: {r}"),
                    }
                }
            }
            Err(e) => {
                if self.last_error.as_deref() != Some(e) {
                    log::error!("bgp: {e} (trying again every second)");
                }
                self.last_error = Some(e.clone());
            }
        }
        self.configured = result.is_ok();
        self.written = Some(want);
    }

    fn write_and_configure(&self, subnets: &[SubnetConfig], withdrawn: Option<&str>) -> Result<(), String> {
        let dir = &self.config.routes_dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write_atomically(&dir.join(FILE_V4), &routes_text(subnets, false, withdrawn))?;
        write_atomically(&dir.join(FILE_V6), &routes_text(subnets, true, withdrawn))?;
        let out = Command::new(&self.config.birdc)
            .arg("-s")
            .arg(&self.config.bird_socket)
            .arg("configure")
            .output()
            .map_err(|e| format!("{}: {e}", self.config.birdc.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // birdc exits 0 even when BIRD refuses; "Reconfigured" (or "Reconfiguration in
        // progress") is what success says.
        if out.status.success() && text.contains("Reconfigur") {
            Ok(())
        } else {
            Err(format!(
                "birdc -s {} configure: {}",
                self.config.bird_socket.display(),
                text.trim().lines().last().unwrap_or("no answer")
            ))
        }
    }

    /// Whether this announcer follows `config`.
    pub fn has_config(&self, config: &BgpConfig) -> bool {
        self.config == *config
    }

    /// Whether the routes are announced (written and taken by BIRD).
    pub fn announcing(&self) -> bool {
        self.configured && self.written.as_ref().is_some_and(|(_, w)| w.is_none())
    }

    /// The state for `ctl status`: announcing, why not, the last error; and whether the
    /// operator `drained` the appliance.
    pub fn status(&self, drained: bool) -> crate::answer::BgpStatus {
        crate::answer::BgpStatus {
            announcing: self.announcing(),
            withdrawn: self.written.as_ref().and_then(|(_, w)| w.clone()),
            last_error: self.last_error.clone(),
            routes_dir: self.config.routes_dir.display().to_string(),
            drained,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_per_family_or_none() {
        let subnets = vec![
            SubnetConfig { name: "a".into(), addr: "203.0.113.0".parse().unwrap(), len: 24 },
            SubnetConfig { name: "b".into(), addr: "2001:db8:ab::".parse().unwrap(), len: 48 },
        ];
        let v4 = routes_text(&subnets, false, None);
        assert!(v4.contains("route 203.0.113.0/24 blackhole;  # a\n") && !v4.contains("2001"), "{v4}");
        let v6 = routes_text(&subnets, true, None);
        assert!(v6.contains("route 2001:db8:ab::/48 blackhole;"), "{v6}");
        let none = routes_text(&subnets, false, Some("drained by the operator"));
        assert!(!none.contains("route ") && none.contains("Withdrawn: drained"), "{none}");
    }
}
