//! `vipgate diff OLD NEW`: what a config change does to where new flows go.
//!
//! For every VIP, the Maglev slots whose owner changes between the two configs' tables:
//! their share is the share of new flows that would land on another backend. Established
//! flows are not in it: the flow table keeps them on their backend as long as it is still
//! present (active or draining); only flows of removed or down backends move.

use std::collections::BTreeMap;

use vipgate_engine::maglev::BackendId;
use vipgate_engine::table::{vip_name, Snapshot, Vip};

/// What changes for one VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipChange {
    /// `proto://address[:port]`.
    pub name: String,
    /// Backends taking new flows, before and after (`None` where the VIP does not exist).
    pub backends: (Option<usize>, Option<usize>),
    /// Slots whose owner changes, and the table size.
    pub moved: Option<(u64, u64)>,
    /// Backends that are gone or down afterwards: their established flows move.
    pub lost: Vec<BackendId>,
    /// Backends only in the new config.
    pub added: Vec<BackendId>,
    /// Backends only in the old config.
    pub removed: Vec<BackendId>,
    /// Backends in both whose weight or state changes: (backend, before, after), as
    /// `weight/state`.
    pub changed: Vec<(BackendId, String, String)>,
}

impl VipChange {
    /// The share of new flows that would land elsewhere (0.0..=1.0), where both tables exist.
    pub fn share(&self) -> Option<f64> {
        self.moved.map(|(m, n)| if n == 0 { 0.0 } else { m as f64 / n as f64 })
    }
}

fn takers(snap: &Snapshot, v: &Vip) -> usize {
    let pool = &snap.pools()[v.pool as usize];
    pool.backends()
        .iter()
        .filter(|b| b.state == vipgate_engine::table::BackendState::Active && b.weight > 0)
        .count()
}

/// Compares two snapshots VIP by VIP, in name order.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<VipChange> {
    let index = |s: &Snapshot| -> BTreeMap<String, usize> {
        s.vips().iter().enumerate().map(|(i, v)| (vip_name(v.addr, v.protocol, v.port), i)).collect()
    };
    let (oi, ni) = (index(old), index(new));
    let mut names: Vec<&String> = oi.keys().chain(ni.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let ov = oi.get(name).map(|&i| &old.vips()[i]);
            let nv = ni.get(name).map(|&i| &new.vips()[i]);
            let moved = match (ov, nv) {
                (Some(o), Some(n)) => {
                    let (op, np) = (&old.pools()[o.pool as usize], &new.pools()[n.pool as usize]);
                    match (op.ring(), np.ring()) {
                        (Some(or), Some(nr)) if or.size() == nr.size() => {
                            let owner = |pool: &vipgate_engine::table::Pool,
                                         r: &vipgate_engine::maglev::Ring,
                                         s: usize| {
                                pool.backends()[usize::from(r.slots()[s])].id
                            };
                            let m = (0..or.size() as usize)
                                .filter(|&s| owner(op, or, s) != owner(np, nr, s))
                                .count();
                            Some((m as u64, u64::from(or.size())))
                        }
                        // A new table size, or a pool that takes no new flows on one side:
                        // every new flow may go elsewhere.
                        (Some(or), _) => Some((u64::from(or.size()), u64::from(or.size()))),
                        (None, Some(nr)) => Some((u64::from(nr.size()), u64::from(nr.size()))),
                        (None, None) => Some((0, 0)),
                    }
                }
                _ => None,
            };
            let lost = match (ov, nv) {
                (Some(o), Some(n)) => {
                    let np = &new.pools()[n.pool as usize];
                    old.pools()[o.pool as usize]
                        .backends()
                        .iter()
                        .filter(|b| {
                            !np.backends()
                                .iter()
                                .any(|x| x.id == b.id && x.state != vipgate_engine::table::BackendState::Down)
                        })
                        .map(|b| b.id)
                        .collect()
                }
                (Some(o), None) => old.pools()[o.pool as usize].backends().iter().map(|b| b.id).collect(),
                _ => Vec::new(),
            };
            let set = |s: &Snapshot, v: Option<&Vip>| -> Vec<vipgate_engine::table::PoolBackend> {
                v.map(|v| s.pools()[v.pool as usize].backends().to_vec()).unwrap_or_default()
            };
            let (ob, nb) = (set(old, ov), set(new, nv));
            let added = nb.iter().filter(|b| !ob.iter().any(|o| o.id == b.id)).map(|b| b.id).collect();
            let removed = ob.iter().filter(|b| !nb.iter().any(|n| n.id == b.id)).map(|b| b.id).collect();
            let show = |b: &vipgate_engine::table::PoolBackend| {
                format!("{}/{}", b.weight, crate::engine::state_name(b.state))
            };
            let changed = ob
                .iter()
                .filter_map(|o| {
                    let n = nb.iter().find(|n| n.id == o.id)?;
                    (n.weight != o.weight || n.state != o.state).then(|| (o.id, show(o), show(n)))
                })
                .collect();
            VipChange {
                name: name.clone(),
                backends: (ov.map(|v| takers(old, v)), nv.map(|v| takers(new, v))),
                moved,
                lost,
                added,
                removed,
                changed,
            }
        })
        .collect()
}

/// The changes as a table for people.
pub fn to_text(changes: &[VipChange]) -> String {
    let mut out = String::from("VIP                                      taking new flows   slots moved           new flows elsewhere\n");
    for c in changes {
        let takers = match c.backends {
            (Some(a), Some(b)) => format!("{a} -> {b}"),
            (None, Some(b)) => format!("(new) {b}"),
            (Some(a), None) => format!("{a} (removed)"),
            (None, None) => String::new(),
        };
        let (moved, share) = match (c.moved, c.share()) {
            (Some((m, n)), Some(s)) => (format!("{m}/{n}"), format!("{:.2}%", s * 100.0)),
            _ => ("-".into(), "-".into()),
        };
        out.push_str(&format!("{:<40} {:<18} {:<21} {}\n", c.name, takers, moved, share));
        let list = |v: &[BackendId]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if !c.added.is_empty() {
            out.push_str(&format!("    added: {}\n", list(&c.added)));
        }
        if !c.removed.is_empty() {
            out.push_str(&format!("    removed: {}\n", list(&c.removed)));
        }
        for (b, before, after) in &c.changed {
            out.push_str(&format!("    {b}: weight/state {before} -> {after}\n"));
        }
        if !c.lost.is_empty() {
            let lost: Vec<String> = c.lost.iter().map(|b| b.to_string()).collect();
            out.push_str(&format!("    established flows move off: {}\n", lost.join(", ")));
        }
    }
    out
}

/// The changes as one JSON object.
pub fn to_json(changes: &[VipChange]) -> String {
    let opt = |v: Option<usize>| v.map_or("null".to_string(), |n| n.to_string());
    let items: Vec<String> = changes
        .iter()
        .map(|c| {
            let (moved, size, share) = match c.moved {
                Some((m, n)) => (m.to_string(), n.to_string(), format!("{:.6}", c.share().unwrap_or(0.0))),
                None => ("null".into(), "null".into(), "null".into()),
            };
            let ids = |v: &[BackendId]| v.iter().map(|b| format!("\"{b}\"")).collect::<Vec<_>>().join(",");
            let changed: Vec<String> = c
                .changed
                .iter()
                .map(|(b, x, y)| format!("{{\"backend\":\"{b}\",\"before\":\"{x}\",\"after\":\"{y}\"}}"))
                .collect();
            format!(
                "{{\"vip\":\"{}\",\"backends_before\":{},\"backends_after\":{},\"slots_moved\":{},\"slots\":{},\"new_flows_elsewhere\":{},\"established_move_off\":[{}],\"added\":[{}],\"removed\":[{}],\"changed\":[{}]}}",
                c.name,
                opt(c.backends.0),
                opt(c.backends.1),
                moved,
                size,
                share,
                ids(&c.lost),
                ids(&c.added),
                ids(&c.removed),
                changed.join(",")
            )
        })
        .collect();
    format!("{{\"vips\":[{}]}}", items.join(","))
}
