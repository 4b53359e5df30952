//! A VIP's backends: their states and weights, the numbers its flows remember, and the
//! Maglev ring that picks one for a new flow.

use crate::maglev::{self, BackendId, FastMap, MaglevError, Ring};

/// A backend's administrative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Takes new flows, in proportion to its weight.
    Active,
    /// Keeps its established flows, takes no new ones.
    Draining,
    /// Takes nothing; its flows move to what Maglev picks now.
    Down,
}

/// A backend as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// Who.
    pub id: BackendId,
    /// Relative share of new flows.
    pub weight: u32,
    /// Whether it takes new flows, old flows, or none.
    pub state: BackendState,
}

/// A backend in a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBackend {
    /// Who.
    pub id: BackendId,
    /// Relative share of new flows as configured.
    pub weight: u32,
    /// State.
    pub state: BackendState,
    /// The number of this (VIP, backend) pair ([`crate::numbering`]): what the flow table
    /// remembers, the same in every snapshot.
    pub number: u32,
}

/// A set of backends and its Maglev ring.
#[derive(Debug, Clone)]
pub struct Pool {
    backends: Box<[PoolBackend]>,
    ring: Option<Ring>,
    by_number: FastMap<u32, u16>,
}

impl Pool {
    /// The pool of `backends` (in identity order) around `ring` (built from the same
    /// backends, or `None` when none of them takes new flows).
    pub(crate) fn new(backends: Vec<PoolBackend>, ring: Option<Ring>) -> Pool {
        let by_number = backends.iter().enumerate().map(|(i, b)| (b.number, i as u16)).collect();
        Pool { backends: backends.into_boxed_slice(), ring, by_number }
    }

    /// The heap memory the pool holds of its own, in bytes (its ring is shared by the
    /// pools of its backend set and not counted; the map at its capacity with one control
    /// byte per bucket).
    pub(crate) fn heap_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.backends)
            + self.by_number.capacity() * (core::mem::size_of::<(u32, u16)>() + 1)
    }

    /// The backends, in identity order (ring slots index this).
    pub fn backends(&self) -> &[PoolBackend] {
        &self.backends
    }

    /// The ring, or `None` when no backend takes new flows.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    /// The backend with this [number](PoolBackend::number), if the pool has it.
    #[inline]
    pub fn by_number(&self, number: u32) -> Option<(u16, &PoolBackend)> {
        let &i = self.by_number.get(&number)?;
        Some((i, &self.backends[usize::from(i)]))
    }

    /// The backend Maglev picks for a new flow with this hash, if any takes new flows.
    #[inline]
    pub fn pick(&self, flow_hash: u32) -> Option<(u16, &PoolBackend)> {
        let ring = self.ring.as_ref()?;
        let i = ring.lookup(flow_hash);
        Some((i, &self.backends[usize::from(i)]))
    }
}

/// The ring of a backend set, or `None` when none of it takes new flows.
pub(crate) fn build_ring(
    set: &[BackendSpec],
    seed: u64,
    table_size: u32,
) -> Result<Option<Ring>, MaglevError> {
    let ring_input: Vec<maglev::Backend> = set
        .iter()
        .map(|b| maglev::Backend {
            id: b.id,
            weight: if b.state == BackendState::Active { b.weight } else { 0 },
        })
        .collect();
    match Ring::build(&ring_input, seed, table_size) {
        Ok(r) => Ok(Some(r)),
        // Every backend draining, down or at weight 0: established flows still go to the
        // draining ones, new flows are dropped as `no_backend`.
        Err(MaglevError::AllWeightsZero) => Ok(None),
        Err(e) => Err(e),
    }
}
