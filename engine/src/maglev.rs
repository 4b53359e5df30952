//! Maglev consistent hashing: the lookup table, and the stable hash functions under it.
//!
//! The table is built as in Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, §3.4 (Pseudocode 1): every backend has a preference list, a
//! permutation of the `M` slots given by `(offset + j × skip) mod M`; backends take turns,
//! each claiming the next slot of its list that is still free, until all `M` slots are
//! owned. A backend that goes away frees its slots and barely moves anyone else's
//! (§3.4: "minimal disruption"), and every appliance with the same config builds the same
//! table, so a flow meets the same backend wherever ECMP sends it.
//!
//! # The contract
//!
//! Everything here depends only on the config (`hash_seed`, each backend's identity and
//! weight, `M`): never on the process, run, build, host, worker count or the order in which
//! backends are listed. **The functions below are part of vipgate's wire behaviour: a
//! change to any of them moves flows between backends across a fleet. They MUST NOT change
//! once released;** the golden tests in this module pin them.
//!
//! ## `hash64(seed, bytes)`: the byte hash ("vipgate-hash64, version 1")
//!
//! ```text
//! K0 = 0x9e3779b97f4a7c15, K1 = 0xc2b2ae3d27d4eb4f
//! fmix64(x):  x ^= x >> 33; x *= 0xff51afd7ed558ccd; x ^= x >> 33;
//!             x *= 0xc4ceb9fe1a85ec53; x ^= x >> 33            (MurmurHash3's finaliser)
//! h = fmix64(seed ^ K0 ^ (len(bytes) × K1))
//! for each 8-byte chunk w of bytes, little-endian, the last one padded with zeros:
//!     h = fmix64(h ^ w) + K0
//! hash64 = fmix64(h)
//! ```
//! (all arithmetic wrapping, modulo 2^64).
//!
//! ## A backend's identity, its offset and its skip
//!
//! A backend is identified by its address and, where set, its port, encoded as
//! `family (4 or 6) · address octets · has-port (0 or 1) · port (big-endian u16, 0 if
//! unset)`: 8 bytes for IPv4, 20 for IPv6. Backends are ordered by these bytes; a ring's
//! slots hold indices into that order. Then, with `seed` the config's `hash_seed`:
//! ```text
//! offset = hash64(seed,        identity) mod M
//! skip   = hash64(seed ^ K1,   identity) mod (M − 1) + 1
//! ```
//! As `M` is prime, every `skip` in `1..M` makes the preference list a full permutation.
//!
//! ## Weights
//!
//! Turns are given in rounds, in identity order. In each round every backend adds its
//! weight to a credit; a backend whose credit reaches the largest weight spends that much
//! and claims one slot. So the heaviest backends claim one slot per round and a backend of
//! weight `w` claims `w / w_max` per round on average: shares are proportional to weight
//! (within one slot per backend, plus the rounding of the final round). With equal weights
//! this is exactly Pseudocode 1. Weight 0 claims nothing; all weights 0 is an error.
//!
//! ## `flow_hash`: which slot a packet uses
//!
//! A flow's slot is `flow_hash(seed, 5-tuple) mod M`, with ports 0 for fragments (the
//! 3-tuple, as the Maglev paper, §4.3, does for fragments):
//! ```text
//! IPv4: a = src (u32) << 32 | dst (u32)
//!       h = fmix64(seed ^ K0 ^ a)
//! IPv6: h = fmix64(seed ^ K0 ^ src[0..8] (big-endian u64))
//!       h = fmix64(h ^ src[8..16]);  h = fmix64(h ^ dst[0..8]);  h = fmix64(h ^ dst[8..16])
//! both: b = src_port << 32 | dst_port << 16 | protocol
//!       flow_hash = (fmix64(h ^ b ^ K1) >> 32) as u32
//! ```
//!
//! # Cost
//!
//! Building a table does not allocate per slot: it keeps `(skip, next slot, credit)` per
//! backend and a map of taken slots (`2 M` bytes), and steps through each permutation by add-then-conditional-subtract, with no `%` in the
//! loop. Slots are `u16` backend indices, so a ring at `M = 65537` is 128 KiB. A lookup is
//! one index, `ring[hash mod M]`, where the remainder is computed exactly by
//! multiplication (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019).

use std::net::IpAddr;

use thiserror::Error;

/// The table sizes `M` vipgate accepts: primes, each a little under or over a power of two.
pub const TABLE_SIZES: &[u32] =
    &[251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537, 131071, 262139, 524287, 1048573];

/// The default table size.
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

/// The most backends one ring can index (slots are `u16`, and one value marks "free"
/// while filling).
pub const MAX_BACKENDS: usize = u16::MAX as usize;

/// Below `SPARSE_FACTOR × backends` slots, shares drift apart by more than about 1%: such a
/// table is accepted with a warning.
pub const SPARSE_FACTOR: usize = 100;

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// MurmurHash3's 64-bit finaliser: a bijection that mixes every input bit into every
/// output bit.
#[inline(always)]
pub const fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// vipgate-hash64 v1 of `bytes` under `seed` (see the module doc).
pub fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = fmix64(seed ^ K0 ^ (bytes.len() as u64).wrapping_mul(K1));
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = fmix64(h ^ w).wrapping_add(K0);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = fmix64(h ^ u64::from_le_bytes(last)).wrapping_add(K0);
    }
    fmix64(h)
}

/// The flow hash of a 5-tuple (see the module doc). For fragments pass ports 0.
/// `src` and `dst` are of one family; a mixed pair hashes the IPv4 one as IPv4-mapped.
#[inline]
pub fn flow_hash(seed: u64, src: IpAddr, dst: IpAddr, protocol: u8, src_port: u16, dst_port: u16) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            flow_hash_v4(seed, u32::from(s), u32::from(d), protocol, src_port, dst_port)
        }
        (s, d) => flow_hash_v6(seed, to_v6_bits(s), to_v6_bits(d), protocol, src_port, dst_port),
    }
}

/// [`flow_hash`] of an IPv6 5-tuple (or a mixed one, its IPv4 address IPv4-mapped),
/// addresses as host-order `u128`.
#[inline(always)]
pub fn flow_hash_v6(seed: u64, src: u128, dst: u128, protocol: u8, src_port: u16, dst_port: u16) -> u32 {
    let h = fmix64(seed ^ K0 ^ (src >> 64) as u64);
    let h = fmix64(h ^ src as u64);
    let h = fmix64(h ^ (dst >> 64) as u64);
    let h = fmix64(h ^ dst as u64);
    let b = u64::from(src_port) << 32 | u64::from(dst_port) << 16 | u64::from(protocol);
    (fmix64(h ^ b ^ K1) >> 32) as u32
}

/// [`flow_hash`] of an IPv4 5-tuple, addresses as host-order `u32`.
#[inline]
pub fn flow_hash_v4(seed: u64, src: u32, dst: u32, protocol: u8, src_port: u16, dst_port: u16) -> u32 {
    let h = fmix64(seed ^ K0 ^ (u64::from(src) << 32 | u64::from(dst)));
    let b = u64::from(src_port) << 32 | u64::from(dst_port) << 16 | u64::from(protocol);
    (fmix64(h ^ b ^ K1) >> 32) as u32
}

fn to_v6_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Who a backend is: its address, and its port where the config sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId {
    /// The backend's address: the outer destination of tunnelled packets.
    pub addr: IpAddr,
    /// The backend's port, where set.
    pub port: Option<u16>,
}

impl BackendId {
    /// A backend without a port.
    pub const fn new(addr: IpAddr) -> BackendId {
        BackendId { addr, port: None }
    }

    /// The identity bytes the hashes and the ordering use (see the module doc), and how
    /// many of the 20 are used.
    pub fn key(&self) -> ([u8; 20], usize) {
        let mut k = [0u8; 20];
        let at = match self.addr {
            IpAddr::V4(a) => {
                k[0] = 4;
                k[1..5].copy_from_slice(&a.octets());
                5
            }
            IpAddr::V6(a) => {
                k[0] = 6;
                k[1..17].copy_from_slice(&a.octets());
                17
            }
        };
        k[at] = u8::from(self.port.is_some());
        k[at + 1..at + 3].copy_from_slice(&self.port.unwrap_or(0).to_be_bytes());
        (k, at + 3)
    }

    /// `(offset, skip)` of this backend's preference list in a table of `m` slots.
    pub fn offset_skip(&self, seed: u64, m: u32) -> (u32, u32) {
        let (k, len) = self.key();
        let offset = hash64(seed, &k[..len]) % u64::from(m);
        let skip = hash64(seed ^ K1, &k[..len]) % u64::from(m - 1) + 1;
        (offset as u32, skip as u32)
    }
}

impl PartialOrd for BackendId {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BackendId {
    /// The stable order of the module doc: by identity bytes.
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        let (a, la) = self.key();
        let (b, lb) = other.key();
        a[..la].cmp(&b[..lb])
    }
}

impl core::fmt::Display for BackendId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, Some(p)) => write!(f, "{a}:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// A backend as the table builder sees it: who, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Who.
    pub id: BackendId,
    /// Its relative share of new flows; 0 takes none.
    pub weight: u32,
}

/// Why a table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaglevError {
    /// `M` is not one of [`TABLE_SIZES`].
    #[error("table size {0} is not one of the supported primes {TABLE_SIZES:?}")]
    TableSize(u32),
    /// The pool is empty.
    #[error("the pool has no backends")]
    NoBackends,
    /// Every backend has weight 0, so no slot has an owner.
    #[error("every backend of the pool has weight 0")]
    AllWeightsZero,
    /// More backends than a ring can index.
    #[error("{0} backends in one pool; at most {MAX_BACKENDS} are supported")]
    TooManyBackends(usize),
    /// The same backend twice in one pool.
    #[error("backend {0} is listed twice in one pool")]
    DuplicateBackend(BackendId),
}

/// Whether a table of `m` slots is too small for `backends` to get shares within about 1%
/// of each other.
pub fn is_sparse(m: u32, backends: usize) -> bool {
    (m as usize) < SPARSE_FACTOR * backends
}

/// A Maglev lookup table: `M` slots, each the index of a backend in [`Ring::backends`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    backends: std::sync::Arc<[Backend]>,
    /// Shared: a snapshot that keeps a pool unchanged keeps its ring without a copy.
    slots: std::sync::Arc<[u16]>,
    size: u32,
    /// Lemire's `ceil(2^64 / M)`, for an exact `hash mod M` without a division.
    reciprocal: u64,
}

impl Ring {
    /// Builds the table for `backends` (in any order) under `seed`, with `m` slots. A table
    /// may be sparse (see [`is_sparse`]): the snapshot that builds rings says so, once for
    /// all of them.
    pub fn build(backends: &[Backend], seed: u64, m: u32) -> Result<Ring, MaglevError> {
        if !TABLE_SIZES.contains(&m) {
            return Err(MaglevError::TableSize(m));
        }
        if backends.is_empty() {
            return Err(MaglevError::NoBackends);
        }
        if backends.len() > MAX_BACKENDS {
            return Err(MaglevError::TooManyBackends(backends.len()));
        }
        let mut sorted: Vec<Backend> = backends.to_vec();
        sorted.sort_by_key(|b| b.id);
        if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(MaglevError::DuplicateBackend(w[0].id));
        }
        let w_max = sorted.iter().map(|b| b.weight).max().unwrap_or(0);
        if w_max == 0 {
            return Err(MaglevError::AllWeightsZero);
        }
        let slots = populate(&sorted, seed, m, w_max);
        Ok(Ring { backends: sorted.into(), slots, size: m, reciprocal: u64::MAX / u64::from(m) + 1 })
    }

    /// The backends, in identity order: slot values index this.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The slots.
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }

    /// `M`.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// `hash mod M`, computed without a division.
    #[inline(always)]
    pub fn slot_of(&self, hash: u32) -> usize {
        let low = self.reciprocal.wrapping_mul(u64::from(hash));
        ((u128::from(low) * u128::from(self.size)) >> 64) as usize
    }

    /// Hints the CPU to fetch the slot of `hash`, for a [`lookup`](Ring::lookup) soon.
    #[inline(always)]
    pub fn prefetch(&self, hash: u32) {
        crate::prefetch(self.slots.as_ptr().wrapping_add(self.slot_of(hash)));
    }

    /// The index (into [`Ring::backends`]) of the backend that owns `hash`:
    /// `ring[hash mod M]`.
    #[inline(always)]
    pub fn lookup(&self, hash: u32) -> u16 {
        self.slots[self.slot_of(hash)]
    }

    /// How many slots each backend owns, in [`Ring::backends`] order.
    pub fn slot_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.backends.len()];
        for &s in self.slots.iter() {
            counts[usize::from(s)] += 1;
        }
        counts
    }
}

/// Below this many free slots, a turn finds its slot from the list of free slots instead of
/// walking its preference list (see [`populate`]).
const TAIL: u32 = 256;

/// `a × b mod m` for `a, b < m < 2^20`, given `r44 = ⌊2^44 / m⌋` (Barrett): the quotient
/// `⌊a b r44 / 2^44⌋` (no overflow: `a b r44 < m 2^44`) falls short of the true one by less
/// than `a b / 2^44 < 1`, so one conditional subtract finishes. Branch-free.
#[inline(always)]
fn mul_mod(a: u32, b: u32, m: u32, r44: u64) -> u32 {
    let p = u64::from(a) * u64::from(b);
    let r = p - ((p * r44) >> 44) * u64::from(m);
    r.min(r.wrapping_sub(u64::from(m))) as u32
}

/// `a + b mod m` for `a, b < m`: one conditional subtract instead of `%`.
#[inline(always)]
fn add_mod(a: u32, b: u32, m: u32) -> u32 {
    let s = a + b;
    if s >= m {
        s - m
    } else {
        s
    }
}

/// Pseudocode 1 with weights (see the module doc), over backends in identity order with at
/// least one non-zero weight.
///
/// A backend's turn takes the first free slot among `next, next + skip, next + 2 skip, ...`
/// (mod `M`). Three ways of finding it, each giving exactly that slot:
/// - early in the fill the first candidate is usually free: test it alone;
/// - otherwise test four candidates per step, branch-free, and take the first free one
///   (one branch per candidate would mispredict about once per slot in mid-fill);
/// - with fewer than [`TAIL`] slots free, walking the list costs about `M / free` probes,
///   while the list of free slots is short: the candidate `x` comes `j(x) = (x − next) ×
///   skip⁻¹ mod M` steps after `next` (M is prime, so `skip` has an inverse), and the free
///   slot with the smallest `j` is the one the walk would reach first.
fn populate(backends: &[Backend], seed: u64, m: u32, w_max: u32) -> std::sync::Arc<[u16]> {
    let mut turns: Vec<Turn> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .map(|(i, b)| {
            let (offset, skip) = b.id.offset_skip(seed, m);
            let s2 = add_mod(skip, skip, m);
            let s3 = add_mod(s2, skip, m);
            let s4 = add_mod(s3, skip, m);
            Turn {
                index: i as u16,
                weight: u64::from(b.weight),
                credit: 0,
                next: offset,
                steps: [skip, s2, s3, s4],
                inverse: 0,
            }
        })
        .collect();
    let w_max = u64::from(w_max);
    // With equal weights every turn claims a slot, and the credits can be skipped.
    let uniform = turns.iter().all(|t| t.weight == w_max);
    // Which slots are taken, one byte per slot, twice over: entry `c + M` mirrors entry `c`,
    // so the candidates `c + k skip` (k = 1..3, each `k skip` reduced mod M) can be tested
    // before they are reduced.
    // The map is scratch space, reused across builds on this thread (a reload builds one ring
    // per pool): clearing it costs far less than faulting fresh pages in.
    SCRATCH.with_borrow_mut(|taken| populate_with(&mut turns, uniform, w_max, m, taken))
}

thread_local! {
    static SCRATCH: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// The per-backend state of [`populate`].
struct Turn {
    index: u16,
    weight: u64,
    credit: u64,
    next: u32,
    /// `skip`, `2 skip`, `3 skip` and `4 skip`, each reduced mod `M`.
    steps: [u32; 4],
    /// `skip⁻¹ mod M`, computed at the backend's first turn in the tail (0 before).
    inverse: u32,
}

fn populate_with(
    turns: &mut [Turn],
    uniform: bool,
    w_max: u64,
    m: u32,
    scratch: &mut Vec<u8>,
) -> std::sync::Arc<[u16]> {
    // Built where the ring keeps it: a table built in a box and then moved into an `Arc`
    // would be copied.
    let mut fresh = std::sync::Arc::<[u16]>::new_uninit_slice(m as usize);
    for slot in std::sync::Arc::get_mut(&mut fresh).expect("a new Arc has no other owner") {
        slot.write(0);
    }
    // SAFETY: every slot was written just above.
    let mut shared = unsafe { fresh.assume_init() };
    let slots = std::sync::Arc::get_mut(&mut shared).expect("a new Arc has no other owner");
    scratch.clear();
    scratch.resize(2 * m as usize, 0);
    let taken = &mut scratch[..];
    let r44 = (1u64 << 44) / u64::from(m);
    let mut filled = 0u32;
    let mut turn = 0usize;

    // Walking the preference lists, until TAIL slots are left.
    let tail_start = m.saturating_sub(TAIL);
    if uniform {
        // Equal weights: plain rounds over the backends, every turn claims a slot.
        'rounds: while filled < tail_start {
            for (i, t) in turns.iter_mut().enumerate() {
                if filled == tail_start {
                    turn = i;
                    break 'rounds;
                }
                claim(t, taken, slots, m);
                filled += 1;
            }
        }
    } else {
        while filled < tail_start {
            let i = next_turn(turns, &mut turn, uniform, w_max);
            claim(&mut turns[i], taken, slots, m);
            filled += 1;
        }
    }

    // The tail: the free slot nearest along the preference list.
    let mut free: Vec<u32> = Vec::with_capacity((m - filled) as usize);
    for (w, chunk) in taken[..m as usize].chunks(8).enumerate() {
        if chunk != [1u8; 8] {
            let first = (w * 8) as u32;
            free.extend(chunk.iter().enumerate().filter(|(_, &b)| b == 0).map(|(i, _)| first + i as u32));
        }
    }
    while let Some(&last) = free.last() {
        let i = next_turn(turns, &mut turn, uniform, w_max);
        let t = &mut turns[i];
        let chosen = if free.len() == 1 {
            free.pop();
            last
        } else {
            if t.inverse == 0 {
                // Fermat: skip^(M−2) is skip's inverse, M being prime (never 0).
                t.inverse = pow_mod(t.steps[0], m - 2, m, r44);
            }
            let (c0, inverse) = (t.next, t.inverse);
            // The smallest `j << 32 | index`: branch-free, the candidates' `j` being unordered.
            let mut best = u64::MAX;
            for (i, &x) in free.iter().enumerate() {
                let d = if x >= c0 { x - c0 } else { x + m - c0 };
                let j = mul_mod(d, inverse, m, r44);
                best = best.min(u64::from(j) << 32 | i as u64);
            }
            free.swap_remove(best as u32 as usize)
        };
        slots[chosen as usize] = t.index;
        t.next = add_mod(chosen, t.steps[0], m);
    }
    shared
}

/// Whose turn it is next: round-robin over the backends with weight, skipping those whose
/// credit has not reached `w_max` yet; `turn` is where the round is.
#[inline(always)]
fn next_turn(turns: &mut [Turn], turn: &mut usize, uniform: bool, w_max: u64) -> usize {
    loop {
        let i = *turn;
        *turn += 1;
        if *turn >= turns.len() {
            *turn = 0;
        }
        if uniform {
            return i;
        }
        let t = &mut turns[i];
        t.credit += t.weight;
        if t.credit >= w_max {
            t.credit -= w_max;
            return i;
        }
    }
}

/// One turn while walking: `t` claims the first free slot of its preference list from
/// `t.next` on (see [`populate`] for the four-at-once test).
#[inline(always)]
fn claim(t: &mut Turn, taken: &mut [u8], slots: &mut [u16], m: u32) {
    let [s1, s2, s3, s4] = t.steps;
    let c0 = t.next;
    // The common case early in the fill: the next preferred slot is free.
    let chosen = if taken[c0 as usize] == 0 {
        c0
    } else {
        let mut base = add_mod(c0, s1, m);
        assert!(taken.len() >= 2 * m as usize && s3 < m);
        loop {
            debug_assert!(base < m);
            // SAFETY: `base < M` and every `s_k < M` (both are kept reduced mod M), so each
            // index is below `2 M`, which the assert above holds `taken` to.
            let busy = unsafe {
                u32::from(*taken.get_unchecked(base as usize))
                    | u32::from(*taken.get_unchecked((base + s1) as usize)) << 1
                    | u32::from(*taken.get_unchecked((base + s2) as usize)) << 2
                    | u32::from(*taken.get_unchecked((base + s3) as usize)) << 3
            };
            if busy != 0b1111 {
                let k = (!busy).trailing_zeros() as usize;
                let c = base + [0, s1, s2, s3][k & 3];
                break if c >= m { c - m } else { c };
            }
            base = add_mod(base, s4, m);
        }
    };
    taken[chosen as usize] = 1;
    taken[(chosen + m) as usize] = 1;
    slots[chosen as usize] = t.index;
    t.next = add_mod(chosen, s1, m);
}

/// `base^exp mod m` by squaring.
fn pow_mod(base: u32, mut exp: u32, m: u32, r44: u64) -> u32 {
    let mut result = 1 % m;
    let mut b = base % m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, b, m, r44);
        }
        b = mul_mod(b, b, m, r44);
        exp >>= 1;
    }
    result
}

/// A fast hasher for maps keyed by the config (VIPs, backend numbers): their keys are not
/// chosen by whoever sends packets, so they need no per-process key, only speed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigHasher(u64);

impl core::hash::Hasher for ConfigHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = fmix64(self.0 ^ i).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = hashbrown::HashMap<K, V, core::hash::BuildHasherDefault<ConfigHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(i: u32) -> BackendId {
        BackendId::new(IpAddr::V4(Ipv4Addr::from(0xc000_0200 + i)))
    }

    #[test]
    fn table_sizes_are_primes() {
        for &m in TABLE_SIZES {
            assert!((2..).take_while(|d| d * d <= m).all(|d| m % d != 0), "{m} is not prime");
        }
        assert!(TABLE_SIZES.contains(&DEFAULT_TABLE_SIZE));
        assert!(TABLE_SIZES.first() <= Some(&251) && TABLE_SIZES.last() >= Some(&131071));
    }

    #[test]
    fn golden_hashes() {
        // Pinned: a change here moves flows across a fleet (see the module doc). The values
        // come from a separate implementation of the module doc's formulas, not from this code.
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(hash64(0, b""), 0x6393_d51c_06c6_18dc);
        assert_eq!(hash64(24301, b"vipgate"), 0xcff4_7ec8_1fbc_a339);
        let id = v4(11);
        assert_eq!(id.key().0[..8], [4, 192, 0, 2, 11, 0, 0, 0]);
        assert_eq!(id.offset_skip(24301, 65537), (59147, 52090));
        let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let dst = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(flow_hash(24301, src, dst, 6, 40000, 8000), 0x69ed_2500);
        let src6: IpAddr = "2001:db8::7".parse::<Ipv6Addr>().unwrap().into();
        let dst6: IpAddr = "2001:db8:ffff::10".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(flow_hash(24301, src6, dst6, 17, 40000, 8000), 0x4a0d_43f8);
    }

    #[test]
    fn remainder_by_multiplication_is_exact() {
        for &m in TABLE_SIZES {
            let ring = Ring {
                backends: std::sync::Arc::new([]),
                slots: std::sync::Arc::new([]),
                size: m,
                reciprocal: u64::MAX / u64::from(m) + 1,
            };
            let mut x = 0x1234_5678u32;
            for h in [0, 1, m - 1, m, m + 1, u32::MAX, u32::MAX - 1] {
                assert_eq!(ring.slot_of(h), (h % m) as usize);
            }
            for _ in 0..100_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                assert_eq!(ring.slot_of(x), (x % m) as usize, "{x} mod {m}");
            }
        }
    }

    #[test]
    fn barrett_products_are_exact() {
        for &m in TABLE_SIZES {
            let r44 = (1u64 << 44) / u64::from(m);
            let mut x = 0x9e37_79b9u32;
            for (a, b) in [(0, 0), (1, m - 1), (m - 1, m - 1), (m - 2, m - 1), (m / 2, m - 1)] {
                assert_eq!(u64::from(mul_mod(a, b, m, r44)), u64::from(a) * u64::from(b) % u64::from(m));
            }
            for _ in 0..100_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let (a, b) = (x % m, x.rotate_left(16) % m);
                assert_eq!(u64::from(mul_mod(a, b, m, r44)), u64::from(a) * u64::from(b) % u64::from(m));
            }
            // Fermat's inverse, as the tail uses it.
            let inverse = pow_mod(12345 % m, m - 2, m, r44);
            assert_eq!(mul_mod(12345 % m, inverse, m, r44), 1);
        }
    }

    #[test]
    fn errors() {
        let b = |i, w| Backend { id: v4(i), weight: w };
        assert_eq!(Ring::build(&[b(1, 1)], 0, 65536), Err(MaglevError::TableSize(65536)));
        assert_eq!(Ring::build(&[], 0, 251), Err(MaglevError::NoBackends));
        assert_eq!(Ring::build(&[b(1, 0), b(2, 0)], 0, 251), Err(MaglevError::AllWeightsZero));
        assert_eq!(Ring::build(&[b(1, 1), b(1, 2)], 0, 251), Err(MaglevError::DuplicateBackend(v4(1))));
        let many: Vec<Backend> = (0..MAX_BACKENDS as u32 + 1).map(|i| b(i, 1)).collect();
        assert_eq!(Ring::build(&many, 0, 251), Err(MaglevError::TooManyBackends(MAX_BACKENDS + 1)));
        assert!(is_sparse(65537, 656) && !is_sparse(65537, 655));
    }

    #[test]
    fn identity_and_port_matter() {
        let a = BackendId { addr: v4(1).addr, port: None };
        let b = BackendId { addr: v4(1).addr, port: Some(0) };
        let c = BackendId { addr: v4(1).addr, port: Some(80) };
        assert!(a < b && b < c);
        assert_ne!(a.offset_skip(1, 65537), c.offset_skip(1, 65537));
        assert_eq!(c.to_string(), "192.0.2.1:80");
        let v6 = BackendId { addr: "2001:db8::1".parse().unwrap(), port: Some(80) };
        assert_eq!(v6.to_string(), "[2001:db8::1]:80");
        assert!(a < v6);
    }
}
