//! The numbers flows remember: one per (VIP, backend) pair, the same in every snapshot.
//!
//! A worker's flow table keeps, per flow, a number that names where the flow goes (30
//! bits of a 16-byte entry, see [`crate::flow`]). It names the pair of the VIP the flow was
//! addressed to and the backend it was sent to, not the backend alone, so that live flows
//! can be counted per VIP as well as per backend (`vipgate ctl flows`), and a backend that
//! several VIPs share is told apart in each.
//!
//! A [`Numbering`] hands those numbers out. Whoever builds snapshots one after another
//! owns one and passes it into every build ([`crate::table::Snapshot::build_from`]), so
//! that a pair keeps its number across reloads and a flow survives them; a pair that
//! leaves the config keeps its number, never given to another pair, since flows may still
//! remember it. Numbers are given in build order, so snapshots built from one config by
//! fresh numberings number alike. A numbering keeps every pair it was asked about (about
//! 64 bytes each) for its life; at most [`crate::flow::MAX_BACKEND`] + 1 pairs fit.

use crate::maglev::{BackendId, FastMap};
use crate::vip::VipId;

/// Where a flow goes: a backend of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The VIP the flow is addressed to.
    pub vip: VipId,
    /// The backend it is sent to.
    pub backend: BackendId,
}

/// Every (VIP, backend) pair numbered so far, both ways.
#[derive(Debug, Clone, Default)]
pub struct Numbering {
    by_target: FastMap<Target, u32>,
    targets: Vec<Target>,
}

impl Numbering {
    /// A numbering that has numbered nothing yet.
    pub fn new() -> Numbering {
        Numbering::default()
    }

    /// The number of `target`: the one it was given before, or the next. `None` once every
    /// number up to [`crate::flow::MAX_BACKEND`] is taken.
    pub fn number(&mut self, target: Target) -> Option<u32> {
        if let Some(&n) = self.by_target.get(&target) {
            return Some(n);
        }
        let n = u32::try_from(self.targets.len()).ok().filter(|&n| n <= crate::flow::MAX_BACKEND)?;
        self.by_target.insert(target, n);
        self.targets.push(target);
        Some(n)
    }

    /// The pair numbered `number`, in a snapshot or not any more.
    pub fn target(&self, number: u32) -> Option<&Target> {
        self.targets.get(number as usize)
    }

    /// The number `target` was given, if it was.
    pub fn find(&self, target: &Target) -> Option<u32> {
        self.by_target.get(target).copied()
    }

    /// How many pairs were numbered.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether nothing was numbered yet.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::VipProtocol;
    use std::net::{IpAddr, Ipv4Addr};

    fn target(vip: u8, backend: u8) -> Target {
        Target {
            vip: VipId {
                addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, vip)),
                protocol: VipProtocol::Tcp,
                port: Some(80),
            },
            backend: BackendId::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, backend))),
        }
    }

    #[test]
    fn a_pair_keeps_its_number_and_a_shared_backend_has_one_per_vip() {
        let mut n = Numbering::new();
        assert_eq!(n.number(target(10, 1)), Some(0));
        assert_eq!(n.number(target(11, 1)), Some(1), "the same backend in another VIP is another pair");
        assert_eq!(n.number(target(10, 1)), Some(0));
        assert_eq!(n.target(1), Some(&target(11, 1)));
        assert_eq!(n.target(2), None);
        assert_eq!(n.len(), 2);
        assert_eq!(target(10, 1).vip.to_string(), "tcp://203.0.113.10:80");
    }
}
