//! The operator's overrides: drains, weights and the appliance's drain, in every VIP or in
//! one, applied over every config the engine runs; and the guard that every change of
//! config or overrides passes, [`removals`]: what the change would take away.
//!
//! The engine ([`crate::engine::Engine`]) owns the overrides in force and keeps them in
//! the state file ([`crate::state`]) before it applies a change of them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use vipgate_engine::maglev::BackendId;
use vipgate_engine::table::{vip_name, BackendState};

use crate::config::Config;
use crate::engine::state_name;

/// A backend as the operator names it: an address, and a port where backends differ by
/// port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendSelector {
    /// Address.
    pub addr: IpAddr,
    /// Port, or `None` for every backend at the address.
    pub port: Option<u16>,
}

impl BackendSelector {
    /// Parses `192.0.2.11`, `192.0.2.11:8080`, `2001:db8::1` or `[2001:db8::1]:8080`.
    pub fn parse(s: &str) -> Result<BackendSelector, String> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(BackendSelector { addr, port: None });
        }
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Ok(BackendSelector { addr: sa.ip(), port: Some(sa.port()) });
        }
        Err(format!("\"{s}\" is not a backend: expected ADDRESS or ADDRESS:PORT, e.g. 192.0.2.11"))
    }

    /// Whether it names `id`.
    pub fn matches(&self, id: &BackendId) -> bool {
        self.addr == id.addr && (self.port.is_none() || self.port == id.port)
    }
}

impl core::fmt::Display for BackendSelector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.addr, self.port) {
            (a, None) => write!(f, "{a}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, Some(p)) => write!(f, "{a}:{p}"),
        }
    }
}

/// A backend as an override names it: in every VIP that lists it, or in one VIP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scoped {
    /// The backend.
    pub backend: BackendSelector,
    /// The VIP's name (`udp://203.0.113.10:8000`), or `None` for every VIP.
    pub vip: Option<String>,
}

impl Scoped {
    /// `backend` in every VIP.
    pub fn everywhere(backend: BackendSelector) -> Scoped {
        Scoped { backend, vip: None }
    }

    /// Parses what [`Display`](core::fmt::Display) writes: `192.0.2.11` or
    /// `192.0.2.11 in udp://203.0.113.10:8000`.
    pub fn parse(s: &str) -> Result<Scoped, String> {
        match s.split_once(" in ") {
            Some((b, v)) => {
                Ok(Scoped { backend: BackendSelector::parse(b)?, vip: Some(v.trim().to_string()) })
            }
            None => Ok(Scoped::everywhere(BackendSelector::parse(s)?)),
        }
    }

    /// Whether it names `id` in the VIP named `vip`.
    pub fn matches(&self, vip: &str, id: &BackendId) -> bool {
        self.backend.matches(id) && self.vip.as_deref().is_none_or(|v| v == vip)
    }
}

impl core::fmt::Display for Scoped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.vip {
            Some(v) => write!(f, "{} in {v}", self.backend),
            None => write!(f, "{}", self.backend),
        }
    }
}

/// The operator's runtime changes, applied over every config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Backends drained (in every VIP, or in one): they take no new flows, established
    /// ones stay.
    pub drained: Vec<Scoped>,
    /// Backends with another weight than the config's.
    pub weights: BTreeMap<Scoped, u32>,
    /// (VIP name, backend) pairs whose health check says down.
    pub health_down: std::collections::BTreeSet<(String, BackendId)>,
    /// The whole appliance drained by the operator: its routes withdrawn.
    pub appliance_drained: bool,
}

impl Overrides {
    /// `config` with the overrides applied.
    pub fn apply(&self, config: &Config) -> Config {
        self.apply_with_alarms(config).0
    }

    /// `config` with the overrides applied, and the alarms raised: a VIP whose every
    /// backend that takes new flows fails its health check fails open (none of them is
    /// taken down), rather than dropping all its traffic.
    pub fn apply_with_alarms(&self, config: &Config) -> (Config, Vec<String>) {
        let mut c = self.apply_operator(config);
        let mut alarms = Vec::new();
        if self.health_down.is_empty() {
            return (c, alarms);
        }
        for v in &mut c.vips {
            let name = vip_name(v.addr, v.protocol, v.port);
            let down: Vec<usize> = (0..v.backends.len())
                .filter(|&i| self.health_down.contains(&(name.clone(), v.backends[i].id)))
                .collect();
            if down.is_empty() {
                continue;
            }
            let takes = |b: &crate::config::BackendConfig| b.state == BackendState::Active && b.weight > 0;
            let had = v.backends.iter().filter(|b| takes(b)).count();
            let left = v.backends.iter().enumerate().filter(|(i, b)| takes(b) && !down.contains(i)).count();
            if had > 0 && left == 0 {
                alarms.push(format!(
                    "{name}: every backend that takes new flows fails its health check; failing open (they stay up)"
                ));
                continue;
            }
            for i in down {
                v.backends[i].state = BackendState::Down;
            }
        }
        (c, alarms)
    }

    /// `config` with the operator's overrides applied (drains and weights; not the
    /// health checks' verdicts).
    pub fn apply_operator(&self, config: &Config) -> Config {
        let mut c = config.clone();
        for v in &mut c.vips {
            let name = vip_name(v.addr, v.protocol, v.port);
            for b in &mut v.backends {
                if self.drained.iter().any(|s| s.matches(&name, &b.id)) && b.state == BackendState::Active {
                    b.state = BackendState::Draining;
                }
                // A weight set for this VIP wins over one set for every VIP.
                let weight = |scoped: bool| {
                    self.weights.iter().find(|(s, _)| s.vip.is_some() == scoped && s.matches(&name, &b.id))
                };
                if let Some((_, &w)) = weight(true).or_else(|| weight(false)) {
                    b.weight = w;
                }
            }
        }
        c
    }

    /// Whether no operator override is in force.
    pub fn is_empty(&self) -> bool {
        self.drained.is_empty() && self.weights.is_empty() && !self.appliance_drained
    }

    /// Whether `other` holds the same operator overrides (health verdicts aside).
    pub fn same_operator(&self, other: &Overrides) -> bool {
        self.drained == other.drained
            && self.weights == other.weights
            && self.appliance_drained == other.appliance_drained
    }

    /// The operator's part, as the state file keeps it.
    pub fn to_entry(&self) -> crate::state::Entry {
        crate::state::Entry {
            socket: None,
            pid: None,
            drained: self.drained.iter().map(ToString::to_string).collect(),
            weights: self.weights.iter().map(|(b, &w)| (b.to_string(), w)).collect(),
            appliance_drained: self.appliance_drained,
        }
    }

    /// The operator's part of a state file's entry.
    pub fn from_entry(e: &crate::state::Entry) -> Result<Overrides, String> {
        let mut o = Overrides { appliance_drained: e.appliance_drained, ..Overrides::default() };
        for d in &e.drained {
            let sel = Scoped::parse(d)?;
            if !o.drained.contains(&sel) {
                o.drained.push(sel);
            }
        }
        for (b, &w) in &e.weights {
            o.weights.insert(Scoped::parse(b)?, w);
        }
        Ok(o)
    }

    /// One line for people: what is in force.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.drained.iter().map(|d| format!("{d} drained")).collect();
        parts.extend(self.weights.iter().map(|(b, w)| format!("{b} weight {w}")));
        if self.appliance_drained {
            parts.push("the appliance drained (routes withdrawn)".into());
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Whether a backend takes new flows: active, with a weight.
fn takes_new_flows(b: &crate::config::BackendConfig) -> bool {
    b.state == BackendState::Active && b.weight > 0
}

/// What going from `old` to `new` (each with the operator's overrides applied) would take
/// away: subnets and VIPs that `new` lacks, and VIPs that take new flows in `old` (or are
/// new) but would have no backend taking them in `new`. Empty when nothing.
pub fn removals(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for s in &old.subnets {
        if !new.subnets.iter().any(|n| n.addr == s.addr && n.len == s.len) {
            out.push(format!("remove subnet \"{}\" ({}/{})", s.name, s.addr, s.len));
        }
    }
    let key = |v: &crate::config::VipConfig| (v.addr, v.protocol, v.port);
    for v in &old.vips {
        if !new.vips.iter().any(|n| key(n) == key(v)) {
            out.push(format!("remove VIP {}", vip_name(v.addr, v.protocol, v.port)));
        }
    }
    for v in &new.vips {
        if v.backends.iter().any(takes_new_flows) {
            continue;
        }
        let before = old.vips.iter().find(|o| key(o) == key(v));
        if before.is_some_and(|o| !o.backends.iter().any(takes_new_flows)) {
            // It had none before either: this change does not take it away.
            continue;
        }
        let kept: Vec<String> = v
            .backends
            .iter()
            .map(|b| {
                let why = match b.state {
                    BackendState::Active => "weight 0".to_string(),
                    s => state_name(s).to_string(),
                };
                format!("{} {why}", b.id)
            })
            .collect();
        out.push(format!(
            "leave VIP {} with no backend taking new flows ({})",
            vip_name(v.addr, v.protocol, v.port),
            kept.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[tunnel]
source_v4 = "198.51.100.1"

[[vip]]
address = "203.0.113.10"
port = 8000
protocol = "udp"
encap = "ipip"
backends = [{ address = "192.0.2.11", weight = 10 }, { address = "192.0.2.12", weight = 10 }]

[[vip]]
address = "203.0.113.20"
protocol = "tcp"
encap = "ipip"
backends = [{ address = "192.0.2.11", weight = 10 }]
"#;
        Config::parse(std::path::Path::new("t.toml"), text).unwrap()
    }

    #[test]
    fn a_scoped_override_acts_in_its_vip_and_wins_over_one_for_every_vip() {
        let sel = BackendSelector::parse("192.0.2.11").unwrap();
        let udp = "udp://203.0.113.10:8000".to_string();
        let mut o = Overrides::default();
        o.weights.insert(Scoped::everywhere(sel), 5);
        o.weights.insert(Scoped { backend: sel, vip: Some(udp.clone()) }, 7);
        o.drained.push(Scoped { backend: sel, vip: Some(udp.clone()) });
        let c = o.apply_operator(&config());
        let (a, b) = (&c.vips[0].backends[0], &c.vips[1].backends[0]);
        assert_eq!((a.weight, a.state), (7, BackendState::Draining));
        assert_eq!((b.weight, b.state), (5, BackendState::Active));
        // What the state file keeps reads back the same.
        let back = Overrides::from_entry(&o.to_entry()).unwrap();
        assert!(back.same_operator(&o), "{back:?}");
        assert_eq!(Scoped::parse(&format!("{}", o.drained[0])).unwrap(), o.drained[0]);
    }

    #[test]
    fn removals_name_what_a_change_takes_away() {
        let old = config();
        let mut new = old.clone();
        new.vips.remove(1);
        new.vips[0].backends.iter_mut().for_each(|b| b.state = BackendState::Draining);
        let gone = removals(&old, &new);
        assert_eq!(
            gone,
            [
                "remove VIP tcp://203.0.113.20",
                "leave VIP udp://203.0.113.10:8000 with no backend taking new flows (192.0.2.11 draining, 192.0.2.12 draining)"
            ]
        );
        assert!(removals(&new, &new).is_empty(), "what was already so is not taken away");
    }
}
