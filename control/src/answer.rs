//! The operator socket's answers, typed: what the control thread sends back for each
//! [`crate::protocol::CtlRequest`], and how `vipgate ctl` prints it.
//!
//! Every answer is one JSON object with `"ok"`; a failed request is an [`ErrorAnswer`]
//! (`"ok": false` and `"error"`). The other answers serialize with their fields in
//! declaration order, and parse back, so that scripts, tests and the text printer read
//! the same thing.

use std::collections::BTreeMap;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vipgate_engine::worker::StateCounts;

use crate::engine::PortReport;

/// Named values in a fixed order (counters, by [`vipgate_engine::counters::Counters::NAMES`]):
/// a JSON object whose keys keep that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named<V>(pub Vec<(String, V)>);

impl<V> Named<V> {
    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets `name` to `value`, in its place, or last when it is new.
    pub fn set(&mut self, name: &str, value: V) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Whether it names nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V: Serialize> Serialize for Named<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Named<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = Named<V>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Named(entries))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// The answer to a request that failed or was refused: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// Always false.
    pub ok: bool,
    /// What went wrong, for the operator.
    pub error: String,
    /// What a refused reload would have removed or emptied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

impl ErrorAnswer {
    /// An error answer saying `message`.
    pub fn new(message: impl Into<String>) -> ErrorAnswer {
        ErrorAnswer { ok: false, error: message.into(), refused: Vec::new() }
    }
}

/// The answer to a change of the tables that went through (`reload`, `drain`, `undrain`,
/// `weight`): the generation, and what only a restart applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeAnswer {
    /// False only when the change touched nothing but keys a restart applies.
    pub ok: bool,
    /// The generation now running.
    pub generation: u64,
    /// How long the tables took to build, in milliseconds.
    pub build_ms: f64,
    /// How long until every worker ran them, in milliseconds.
    pub swap_ms: f64,
    /// Keys that changed but apply only at the next start.
    pub restart_needed: Vec<String>,
    /// What the operator should know although it went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Why nothing of the change is applied (with `ok` false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChangeAnswer {
    /// As `vipgate ctl` prints it.
    pub fn to_text(&self) -> String {
        format!(
            "generation {} running on every worker (built in {} ms, swapped in {} ms)\n",
            self.generation, self.build_ms, self.swap_ms
        )
    }
}

/// The answer to `reload --dry-run`: what a reload would do, applied or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewAnswer {
    /// Always true: a config that does not build is an error answer.
    pub ok: bool,
    /// Always true.
    pub dry_run: bool,
    /// What the reload would remove or empty, and is refused unless confirmed.
    pub removals: Vec<String>,
    /// Keys that changed but apply only at the next start.
    pub restart_needed: Vec<String>,
    /// The change, as `vipgate diff` prints it.
    pub diff: String,
}

impl PreviewAnswer {
    /// As `vipgate ctl reload --dry-run` prints it.
    pub fn to_text(&self) -> String {
        let mut s = self.diff.clone();
        for r in &self.removals {
            s.push_str(&format!("refused unless confirmed: it would {r}\n"));
        }
        if !self.restart_needed.is_empty() {
            s.push_str(&format!("restart needed for: {}\n", self.restart_needed.join(", ")));
        }
        s
    }
}

/// The last change applied, in a [`StatusAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    /// Its generation.
    pub generation: u64,
    /// How long its tables took to build, in milliseconds.
    pub build_ms: f64,
    /// How long until every worker ran them, in milliseconds.
    pub swap_ms: f64,
}

/// The (VIP, backend) numbers flows remember, in a [`StatusAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowNumbers {
    /// Numbered since start.
    pub given: u64,
    /// How many there can be.
    pub limit: u64,
}

/// One worker in a [`StatusAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Which worker.
    pub id: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// The generation of the tables it runs.
    pub generation: u64,
    /// Time spent on packets, in percent (one place).
    pub busy_percent: f64,
    /// How long its last swap of tables took, in microseconds (one place).
    pub last_swap_us: f64,
    /// Packets received since start.
    pub rx_packets: u64,
}

/// A (VIP, backend) a health target speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBackend {
    /// The VIP's name.
    pub vip: String,
    /// The backend.
    pub backend: String,
}

/// One health-check target in a [`StatusAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTarget {
    /// The target (`tcp 192.0.2.11:80`).
    pub target: String,
    /// up or down.
    pub state: String,
    /// Seconds in that state.
    pub since_s: u64,
    /// Probes answered so far.
    pub probes: u64,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// The (VIP, backend) pairs it speaks for.
    pub backends: Vec<HealthBackend>,
}

/// The operator's overrides, in a [`StatusAnswer`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverridesStatus {
    /// Backends drained (`192.0.2.11`, or `192.0.2.11 in udp://203.0.113.10:8000`).
    pub drained: Vec<String>,
    /// Backends with another weight than the config's.
    pub weights: Named<u32>,
    /// The whole appliance drained: its routes withdrawn.
    pub appliance_drained: bool,
}

/// The appliance's routes, in a [`StatusAnswer`] and the answer to `drain-appliance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// The routes are written and BIRD took them.
    pub announcing: bool,
    /// Why they are withdrawn, if they are.
    pub withdrawn: Option<String>,
    /// The last error talking to BIRD.
    pub last_error: Option<String>,
    /// Where the routes are written for BIRD.
    pub routes_dir: String,
    /// The operator drained the appliance.
    pub drained: bool,
}

/// The answer to `drain-appliance` and `undrain-appliance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplianceAnswer {
    /// Always true.
    pub ok: bool,
    /// The routes now.
    #[serde(flatten)]
    pub bgp: BgpStatus,
}

impl ApplianceAnswer {
    /// As `vipgate ctl drain-appliance` prints it.
    pub fn to_text(&self) -> String {
        format!("bgp: {}\n", if self.bgp.announcing { "announcing" } else { "withdrawn" })
    }
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// Always true.
    pub ok: bool,
    /// The config file.
    pub config: String,
    /// The appliance's process.
    pub pid: u32,
    /// The generation running.
    pub generation: u64,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Changes applied since start.
    pub reloads: u64,
    /// The last one.
    pub last_reload: Option<LastReload>,
    /// Why the last reload of the file was not applied, until one is.
    pub reload_error: Option<String>,
    /// Keys changed in the file that apply only at the next start.
    pub restart_needed: Vec<String>,
    /// Reloads not applied, by kind.
    pub reloads_failed: BTreeMap<String, u64>,
    /// Where the overrides are kept across restarts.
    pub state_file: Option<String>,
    /// The (VIP, backend) numbers given.
    pub flow_numbers: FlowNumbers,
    /// Per worker.
    pub workers: Vec<WorkerStatus>,
    /// Per health-check target.
    pub health: Vec<HealthTarget>,
    /// What needs the operator now.
    pub alarms: Vec<String>,
    /// The operator's drains and weights.
    pub overrides: OverridesStatus,
    /// Seconds since the port last received a packet, once that is long (the appliance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_idle_s: Option<u64>,
    /// The routes, with `[bgp]` (the appliance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpStatus>,
    /// Health probes that started late (the appliance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_probes_late: Option<u64>,
    /// What the fleet's sharing of flows did, with `[fleet]` (the appliance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetCounts>,
}

impl StatusAnswer {
    /// As `vipgate ctl status` prints it.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "generation {}   up {:.0} s   reloads {}   config {}\n",
            self.generation, self.uptime_s, self.reloads, self.config
        );
        if let Some(r) = &self.last_reload {
            s.push_str(&format!(
                "last reload: generation {} built in {} ms, swapped in {} ms\n",
                r.generation, r.build_ms, r.swap_ms
            ));
        }
        if let Some(idle) = self.port_idle_s {
            s.push_str(&format!(
                "PORT RECEIVES NOTHING: no packet for {idle} s (the device, its wiring, the routes to the VIPs?)\n"
            ));
        }
        if let Some(e) = &self.reload_error {
            s.push_str(&format!("LAST RELOAD NOT APPLIED: {e}\n"));
        }
        if !self.restart_needed.is_empty() {
            s.push_str(&format!("restart needed for: {}\n", self.restart_needed.join(", ")));
        }
        s.push_str("worker  core  generation  busy%   rx_packets\n");
        for w in &self.workers {
            s.push_str(&format!(
                "{:>6}  {:>4}  {:>10}  {:>5.1}  {:>11}\n",
                w.id,
                w.core.map_or("-".to_string(), |c| c.to_string()),
                w.generation,
                w.busy_percent,
                w.rx_packets
            ));
        }
        for h in &self.health {
            s.push_str(&format!(
                "health: {} {} for {} s{}\n",
                h.target,
                h.state,
                h.since_s,
                h.last_error.as_ref().map_or(String::new(), |e| format!(" (last failure: {e})"))
            ));
        }
        if let Some(b) = &self.bgp {
            s.push_str(&format!(
                "bgp: {}{}\n",
                if b.announcing {
                    "announcing".to_string()
                } else {
                    format!("withdrawn ({})", b.withdrawn.as_deref().unwrap_or("not yet taken by BIRD"))
                },
                b.last_error.as_ref().map_or(String::new(), |e| format!("; last error: {e}"))
            ));
        }
        for alarm in &self.alarms {
            s.push_str(&format!("ALARM: {alarm}\n"));
        }
        let o = &self.overrides;
        if o.drained.is_empty() && o.weights.is_empty() && !o.appliance_drained {
            s.push_str("overrides: none\n");
        } else {
            for d in &o.drained {
                s.push_str(&format!("override: {d} drained\n"));
            }
            for (b, w) in &o.weights.0 {
                s.push_str(&format!("override: {b} weight {w}\n"));
            }
            if o.appliance_drained {
                s.push_str("override: the appliance drained (routes withdrawn)\n");
            }
        }
        if let Some(f) = &self.state_file {
            s.push_str(&format!("overrides kept in {f}\n"));
        }
        s
    }
}

/// A backend's traffic in a VIP, in a [`StatsAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    /// The backend.
    pub backend: String,
    /// Its weight in the running tables (0 where it is no longer there).
    pub weight: u32,
    /// Its state there (`removed` where it is no longer there).
    pub state: String,
    /// Packets forwarded to it, since start.
    pub packets: u64,
    /// Bytes forwarded to it (encapsulated), since start.
    pub bytes: u64,
}

/// A VIP's traffic, in a [`StatsAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStats {
    /// The VIP's name.
    pub vip: String,
    /// Packets forwarded, since start.
    pub packets: u64,
    /// Bytes forwarded, since start.
    pub bytes: u64,
    /// Per backend.
    pub backends: Vec<BackendStats>,
}

/// One worker's counters, in a [`StatsAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Which worker.
    pub id: usize,
    /// Its counters.
    pub counters: Named<u64>,
}

/// The answer to `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsAnswer {
    /// Always true.
    pub ok: bool,
    /// The generation running.
    pub generation: u64,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Every worker's counters added, with the port's own losses as drop reasons.
    pub counters: Named<u64>,
    /// Drop reasons the port's device cannot count, and why.
    pub unseen: Named<String>,
    /// Per worker.
    pub workers: Vec<WorkerStats>,
    /// Per VIP and backend.
    pub vips: Vec<VipStats>,
    /// The port's device, when its driver reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortReport>,
}

impl StatsAnswer {
    /// As `vipgate ctl stats` prints it.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.counters.0 {
            s.push_str(&format!("{k:<24} {v}\n"));
        }
        for (k, why) in &self.unseen.0 {
            s.push_str(&format!("{k:<24} cannot be seen: {why}\n"));
        }
        for v in &self.vips {
            s.push_str(&format!("\n{}  {} packets, {} bytes\n", v.vip, v.packets, v.bytes));
            for b in &v.backends {
                s.push_str(&format!(
                    "  {:<28} weight {:>5}  {:<8} {:>12} packets\n",
                    b.backend, b.weight, b.state, b.packets
                ));
            }
        }
        s
    }
}

/// Live flows by state (`ctl flows`), in all or in a part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStates {
    /// Every live flow.
    pub flows: u64,
    /// TCP flows with no FIN or RST seen, within their idle timeout.
    pub tcp_established: u64,
    /// TCP flows after a FIN or RST.
    pub tcp_closing: u64,
    /// UDP (and other) flows within their idle timeout.
    pub udp: u64,
    /// Of those, the ones seen within the window asked for.
    pub udp_recent: u64,
}

impl From<&StateCounts> for FlowStates {
    fn from(s: &StateCounts) -> FlowStates {
        FlowStates {
            flows: s.total(),
            tcp_established: s.tcp_established,
            tcp_closing: s.tcp_closing,
            udp: s.udp,
            udp_recent: s.udp_recent,
        }
    }
}

/// One worker's part of a [`FlowsAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerFlows {
    /// Which worker.
    pub id: usize,
    /// Its live flows.
    pub live: u64,
    /// Its flow table's capacity.
    pub capacity: u64,
    /// Its flows by state.
    #[serde(flatten)]
    pub states: FlowStates,
}

/// A backend's part of a [`FlowsAnswer`] (over every VIP, or in one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendFlows {
    /// The backend.
    pub backend: String,
    /// The running tables no longer have it (there): its flows live out their timeout.
    pub removed: bool,
    /// Its flows by state.
    #[serde(flatten)]
    pub states: FlowStates,
}

/// A VIP's part of a [`FlowsAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipFlows {
    /// The VIP's name.
    pub vip: String,
    /// The running tables no longer have it.
    pub removed: bool,
    /// Its flows by state.
    #[serde(flatten)]
    pub states: FlowStates,
    /// Per backend of the VIP.
    pub backends: Vec<BackendFlows>,
}

/// The answer to [`CtlRequest::Flows`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowsAnswer {
    /// Every worker answered.
    pub ok: bool,
    /// Which did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every live flow by state.
    #[serde(flatten)]
    pub states: FlowStates,
    /// Every live flow (the same as `flows`).
    pub total: u64,
    /// The UDP window, in seconds.
    pub udp_window_s: f64,
    /// Per worker.
    pub workers: Vec<WorkerFlows>,
    /// Per backend, over every VIP.
    pub backends: Vec<BackendFlows>,
    /// Per VIP and backend.
    pub vips: Vec<VipFlows>,
}

impl FlowsAnswer {
    /// As `vipgate ctl flows` prints it.
    pub fn to_text(&self) -> String {
        let a = &self.states;
        let mut s = format!(
            "{} live flows: {} TCP established, {} TCP closing, {} UDP ({} seen in the last {:.0} s)\n",
            a.flows, a.tcp_established, a.tcp_closing, a.udp, a.udp_recent, self.udp_window_s
        );
        for w in &self.workers {
            s.push_str(&format!("  worker {}: {} of {}\n", w.id, w.live, w.capacity));
        }
        let row = |s: &mut String, name: &str, removed: bool, n: &FlowStates| {
            let name = if removed { format!("{name} (removed)") } else { name.to_string() };
            s.push_str(&format!(
                "  {:<40} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
                name, n.flows, n.tcp_established, n.tcp_closing, n.udp, n.udp_recent
            ));
        };
        let head = |s: &mut String, what: &str| {
            s.push_str(&format!(
                "  {:<40} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
                what, "flows", "tcp_est", "tcp_close", "udp", "udp_recent"
            ));
        };
        head(&mut s, "backend");
        for b in &self.backends {
            row(&mut s, &b.backend, b.removed, &b.states);
        }
        head(&mut s, "VIP / backend");
        for v in &self.vips {
            row(&mut s, &v.vip, v.removed, &v.states);
            for b in &v.backends {
                row(&mut s, &format!("  {}", b.backend), b.removed, &b.states);
            }
        }
        s
    }
}

/// A backend's part of a [`TableAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableBackend {
    /// The backend.
    pub backend: String,
    /// Its weight in force.
    pub weight: u32,
    /// active, draining or down.
    pub state: String,
    /// Its slots in the VIP's Maglev table.
    pub slots: u32,
    /// Its share of them (0 to 1, four places).
    pub share: f64,
}

/// The answer to [`CtlRequest::Table`] (and `vipgate table`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableAnswer {
    /// Always true: a VIP that is not there is an error answer.
    pub ok: bool,
    /// The VIP's name.
    pub vip: String,
    /// The generation of the tables.
    pub generation: u64,
    /// The table's size (0 when no backend takes new flows).
    pub size: u32,
    /// Per backend, in identity order.
    pub backends: Vec<TableBackend>,
    /// Every slot's backend (its index in `backends`), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<Vec<u16>>,
}

impl TableAnswer {
    /// As `vipgate ctl table` prints it.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}  (generation {}, {} slots)\n", self.vip, self.generation, self.size);
        for b in &self.backends {
            s.push_str(&format!(
                "  {:<28} weight {:>5}  {:<8} {:>7} slots  {:>6.2}%\n",
                b.backend,
                b.weight,
                b.state,
                b.slots,
                b.share * 100.0
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_values_keep_their_order_through_json() {
        let mut n = Named(vec![("rx_packets".to_string(), 3u64), ("forwarded".to_string(), 2)]);
        n.set("drop_rx_missed", 1);
        n.set("rx_packets", 4);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, r#"{"rx_packets":4,"forwarded":2,"drop_rx_missed":1}"#);
        let back: Named<u64> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
        assert_eq!(back.get("forwarded"), Some(&2));
        assert!(serde_json::from_str::<Named<u64>>("[1]").is_err());
    }

    #[test]
    fn a_change_that_failed_says_so_in_json_and_text() {
        let a = ChangeAnswer {
            ok: false,
            generation: 4,
            build_ms: 1.5,
            swap_ms: 0.25,
            restart_needed: vec!["[engine] workers".into()],
            warning: None,
            error: Some("nothing of the change is applied".into()),
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["ok"], false);
        assert!(json.get("warning").is_none(), "{json}");
        assert_eq!(ChangeAnswer::deserialize(&json).unwrap(), a);
        assert_eq!(
            a.to_text(),
            "generation 4 running on every worker (built in 1.5 ms, swapped in 0.25 ms)\n"
        );
        let refused =
            ErrorAnswer { refused: vec!["remove udp://203.0.113.10:8000".into()], ..ErrorAnswer::new("no") };
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["refused"][0], "remove udp://203.0.113.10:8000");
        assert!(serde_json::to_value(ErrorAnswer::new("no")).unwrap().get("refused").is_none());
    }
}
