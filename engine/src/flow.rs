//! The per-worker connection table: which backend each live flow was sent to.
//!
//! One table per worker, never shared: flows are spread over workers by their hash, so a
//! flow always meets the same table. The table is allocated once, at its full size, and
//! never allocates again.
//!
//! # Layout and cost
//!
//! Entries are 16 bytes, four to a cache line: a 64-bit check of the key (a second keyed
//! hash of it: it shares the first round of the one that places it, then has a round and
//! keys of its own), the last time the flow was seen
//! (32 bits of a millisecond clock, below), and the number of the flow's (VIP, backend)
//! pair (the same in every snapshot: [`crate::numbering`]) with the timeout class in its
//! top two bits. The key itself is not kept: an entry is a key's when its 64-bit check
//! matches, so that a stranger matching by chance takes thousands of years at line rate
//! (and the caller checks that the backend belongs to the packet's VIP). The table holds
//! `capacity` rounded up to a power of two entries, in aligned windows of [`WINDOW`]
//! entries, one cache line each. A key may live in either of two windows: the first from
//! its hash, the other that window with bits of its check xor-ed in (as in a cuckoo
//! filter), so that an entry's other home is known from the entry alone. A new key goes to
//! its first window while that has room, else to the second, and when both are full one
//! flow of theirs moves to its own other window if that has room (one step of cuckoo
//! displacement). With that, a table three quarters full still has room for nearly every
//! new flow (tested), where one window of eight consecutive entries overflows at half load
//! already. A table of 1 048 576 entries takes 16 MiB; size it at least a third above the
//! live flows expected. A lookup reads at most two cache lines (both windows), which
//! [`FlowTable::prefetch`] asks for ahead of time. It compares every entry of the first
//! window without a branch on which one matches (a flow's place in its window is random:
//! a scan that stops at it mispredicts on nearly every packet), and goes on to the second
//! only when the first has no match: filling first windows first keeps that rare below
//! half load, so the branch is predicted (about 4 ns a packet less than a scan, measured).
//!
//! # Time and eviction
//!
//! The caller passes the time in with every call, in nanoseconds; the table reads no
//! clock. It keeps time in ticks of 2^20 ns (about a millisecond) in 32 bits, wrapping: an
//! entry is live while the ticks since it was last seen are below its class's idle timeout
//! (TCP, UDP, or the short one after a FIN or RST), rounded up to ticks; so a flow expires
//! within a tick of its timeout. Timeouts are kept up to [`IdleTimeouts::MAX`] (about 26
//! days); time that goes backwards (a capture out of order) counts as no time. Inserting
//! reuses an expired entry like a free one; with no room at all, it evicts the least
//! recently seen flow of the key's two windows and says so (the caller counts
//! `flow_table_full`).
//!
//! # Hashing
//!
//! The home position comes from a hash keyed per table with random keys drawn from the
//! process's `RandomState`: the 5-tuple is chosen by whoever sends the packet, and a fixed
//! hash would let them pile every flow into one window.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

/// How many consecutive entries make a window; a key may live in either of its two
/// windows.
pub const WINDOW: usize = 4;

/// A flow's identity: the 5-tuple, or the 3-tuple (ports 0) for IP fragments.
///
/// Kept as five 64-bit words (both addresses as 128-bit values, IPv4 as IPv4-mapped IPv6,
/// then ports, protocol and family), so that comparing and hashing a key are a handful of
/// word operations.
// `eq` below is the derived relation (all words equal), only faster: Hash stays consistent.
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Debug, Clone, Copy, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowKey {
    w: [u64; 5],
}

impl PartialEq for FlowKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Branch-free word compare (the derived one calls memcmp).
        let (a, b) = (&self.w, &other.w);
        ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
    }
}

const V4_MAPPED: u64 = 0x0000_ffff_0000_0000;

impl FlowKey {
    /// The key of a packet from `src:src_port` to `dst:dst_port` over `protocol`.
    #[inline]
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, src_port: u16, dst_port: u16) -> FlowKey {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                FlowKey::new_v4(u32::from(s), u32::from(d), protocol, src_port, dst_port)
            }
            (s, d) => FlowKey::new_v6(bits(s), bits(d), protocol, src_port, dst_port),
        }
    }

    /// The key of an IPv6 packet (addresses as host-order `u128`; an IPv4 address of a
    /// mixed pair IPv4-mapped).
    #[inline(always)]
    fn new_v6(src: u128, dst: u128, protocol: u8, src_port: u16, dst_port: u16) -> FlowKey {
        FlowKey {
            w: [
                (src >> 64) as u64,
                src as u64,
                (dst >> 64) as u64,
                dst as u64,
                last_word(protocol, src_port, dst_port, 6),
            ],
        }
    }

    /// The key of an IPv4 packet (addresses as host-order `u32`).
    #[inline]
    pub fn new_v4(src: u32, dst: u32, protocol: u8, src_port: u16, dst_port: u16) -> FlowKey {
        FlowKey {
            w: [
                0,
                V4_MAPPED | u64::from(src),
                0,
                V4_MAPPED | u64::from(dst),
                last_word(protocol, src_port, dst_port, 4),
            ],
        }
    }

    fn family(&self) -> u8 {
        (self.w[4] >> 40) as u8
    }

    fn addr(&self, hi: u64, lo: u64) -> IpAddr {
        if self.family() == 4 {
            IpAddr::V4(std::net::Ipv4Addr::from(lo as u32))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(hi) << 64 | u128::from(lo)))
        }
    }

    /// The key as 40 bytes (its five words, big-endian), as the fleet's appliances send it
    /// to each other.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        for (chunk, w) in out.chunks_exact_mut(8).zip(self.w) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// A key from [`FlowKey::to_bytes`]; `None` when its family is neither 4 nor 6.
    pub fn from_bytes(bytes: &[u8; 40]) -> Option<FlowKey> {
        let mut w = [0u64; 5];
        for (word, chunk) in w.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_be_bytes(chunk.try_into().ok()?);
        }
        let key = FlowKey { w };
        matches!(key.family(), 4 | 6).then_some(key)
    }

    /// The source address.
    pub fn src_addr(&self) -> IpAddr {
        self.addr(self.w[0], self.w[1])
    }

    /// The destination address.
    pub fn dst_addr(&self) -> IpAddr {
        self.addr(self.w[2], self.w[3])
    }

    /// The source port (0 for fragments and portless protocols).
    pub fn src_port(&self) -> u16 {
        self.w[4] as u16
    }

    /// The destination port (0 for fragments and portless protocols).
    pub fn dst_port(&self) -> u16 {
        (self.w[4] >> 16) as u16
    }

    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        (self.w[4] >> 32) as u8
    }
}

#[inline]
fn last_word(protocol: u8, src_port: u16, dst_port: u16, family: u8) -> u64 {
    u64::from(src_port) | u64::from(dst_port) << 16 | u64::from(protocol) << 32 | u64::from(family) << 40
}

#[inline]
fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(V4_MAPPED) | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// What a live flow is, as its entry tells: the timeout class it keeps anyway, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// TCP with no FIN or RST seen.
    TcpEstablished,
    /// TCP after a FIN or RST: closing, kept for the short timeout.
    TcpClosing,
    /// UDP, or any other protocol a VIP takes.
    Udp,
}

/// Which idle timeout applies to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum TimeoutClass {
    /// A TCP flow.
    Tcp = 0,
    /// UDP or anything else.
    #[default]
    Udp = 1,
    /// A TCP flow that has seen FIN or RST.
    Closing = 2,
}

#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct Entry {
    /// The key's check ([`FlowTable::check`]); 0 marks a free entry.
    check: u64,
    /// When the flow was last seen, in [`ticks`] (wrapping).
    seen: u32,
    /// The (VIP, backend) pair's number, with the timeout class in the top two bits.
    backend_class: u32,
}

const _: () = assert!(core::mem::size_of::<Entry>() == 16);

/// One cache line of entries: where a key may live (in one of two).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Window([Entry; WINDOW]);

const _: () = assert!(core::mem::size_of::<Window>() == 64);

impl Window {
    /// Which entries are free or expired at tick `now`: bit `k` for entry `k`.
    #[inline(always)]
    fn free(&self, now: u32, timeouts: &IdleTimeouts) -> u32 {
        let mut free = 0;
        for (k, e) in self.0.iter().enumerate() {
            free |= u32::from(e.is_free(now, timeouts)) << k;
        }
        free
    }

    /// The window's least recently seen entry, as a key that orders across windows: its
    /// age shifted over `7 − (first + k)`, so that of two keys the larger is the older
    /// entry, and of equally old ones, the one with the lower number `first + k`. One pass,
    /// no branches.
    #[inline(always)]
    fn oldest(&self, now: u32, first: u64) -> u64 {
        let mut oldest = 0;
        for (k, e) in self.0.iter().enumerate() {
            oldest = oldest.max(u64::from(age(now, e.seen)) << 3 | (7 - (first + k as u64)));
        }
        oldest
    }
}

/// The largest backend number an entry holds: numbers take 30 bits of it, the timeout
/// class the other two.
pub const MAX_BACKEND: u32 = (1 << 30) - 1;

/// The table's clock: nanoseconds / 2^20, a tick of about a millisecond, in 32 bits.
#[inline(always)]
pub fn ticks(now: u64) -> u32 {
    (now >> TICK_SHIFT) as u32
}

const TICK_SHIFT: u32 = 20;

/// How long ago, in ticks, an entry seen at tick `seen` was seen at tick `now`. Time that
/// went backwards (a capture out of order) counts as 0.
#[inline(always)]
fn age(now: u32, seen: u32) -> u32 {
    let d = now.wrapping_sub(seen);
    if (d as i32) < 0 {
        0
    } else {
        d
    }
}

impl Entry {
    #[inline(always)]
    fn class_bits(&self) -> u32 {
        self.backend_class >> 30
    }

    #[inline(always)]
    fn backend(&self) -> u32 {
        self.backend_class & MAX_BACKEND
    }

    /// Free, or expired at tick `now`.
    #[inline(always)]
    fn is_free(&self, now: u32, timeouts: &IdleTimeouts) -> bool {
        // Without short-circuits: the four entries of a window are tested side by side.
        (self.check == 0) | (age(now, self.seen) >= timeouts.of(self.class_bits()))
    }
}

/// Idle timeouts by class, in [`ticks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeouts {
    /// By class (TCP, UDP, closing, and closing again: two bits index it).
    ticks: [u32; 4],
}

impl IdleTimeouts {
    /// The longest idle timeout the table keeps, in nanoseconds (2^31 − 1 ticks, about 26
    /// days); longer ones are cut to it.
    pub const MAX: u64 = ((1 << 31) - 1) << TICK_SHIFT;

    /// Timeouts for TCP, UDP and closing TCP flows, in nanoseconds, kept to the tick: a
    /// flow expires after an idle time within a tick of its timeout, never at 0.
    pub const fn new(tcp: u64, udp: u64, closing: u64) -> IdleTimeouts {
        const fn t(ns: u64) -> u32 {
            let ns = if ns > IdleTimeouts::MAX { IdleTimeouts::MAX } else { ns };
            let ticks = ns.div_ceil(1 << TICK_SHIFT) as u32;
            if ticks == 0 {
                1
            } else {
                ticks
            }
        }
        IdleTimeouts { ticks: [t(tcp), t(udp), t(closing), t(closing)] }
    }

    #[inline(always)]
    fn of(&self, class_bits: u32) -> u32 {
        self.ticks[(class_bits & 3) as usize]
    }
}

/// A miss of [`FlowTable::lookup_absent`]: `true` when the table holds no entry of the
/// key at all (rather than an expired one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absent(pub bool);

/// A flow to remember: its key's [`check`](FlowTable::check) and hash, the number it goes
/// to (up to [`MAX_BACKEND`]) and its timeout class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFlow {
    /// The key's check ([`FlowTable::check`]).
    pub check: u64,
    /// The key's hash ([`FlowTable::hash`]).
    pub hash: u64,
    /// The number the flow goes to.
    pub backend: u32,
    /// Its timeout class.
    pub class: TimeoutClass,
}

/// What [`FlowTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Into a free or expired entry.
    Fresh,
    /// Over the least recently seen live flow of the window: the table is full here.
    Evicted,
}

/// The per-worker flow table.
pub struct FlowTable {
    windows: Box<[Window]>,
    /// Window count − 1.
    mask: usize,
    keys: (u64, u64),
    /// Keys of the check hash, derived from `keys`.
    check_keys: (u64, u64),
    /// The keys of [`hash_check_v4`](Self::hash_check_v4), with the constant bits of an
    /// IPv4 key folded in.
    v4_keys: [u64; 6],
    /// How often displacement failed lately (0..=[`PRESSURE_MAX`]). Each attempt costs a
    /// cache miss per flow it tries to move; in a table full of live flows (a flood of new
    /// flows) every attempt fails, so past [`PRESSURE_SKIP`] only one insert in
    /// [`RETRY_EVERY`] tries, to notice when room comes back.
    pressure: u8,
    inserts: u32,
}

const PRESSURE_MAX: u8 = 16;
const PRESSURE_SKIP: u8 = 8;
const RETRY_EVERY: u32 = 64;

impl core::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowTable").field("entries", &self.capacity()).finish()
    }
}

impl FlowTable {
    /// A table for at least `capacity` flows (rounded up to a power of two, at least
    /// [`WINDOW`]), with hash keys drawn at random.
    pub fn new(capacity: usize) -> FlowTable {
        let state = std::collections::hash_map::RandomState::new();
        let mut h = state.build_hasher();
        h.write_u64(0x5eed);
        let k0 = h.finish();
        h.write_u64(0x5eed);
        let k1 = h.finish();
        FlowTable::with_keys(capacity, (k0, k1))
    }

    /// A table with fixed hash keys, for tests that need the same layout twice.
    pub fn with_keys(capacity: usize, keys: (u64, u64)) -> FlowTable {
        let n = capacity.max(WINDOW).next_power_of_two() / WINDOW;
        let mut windows: Vec<Window> = Vec::with_capacity(n);
        // Ask for huge pages before the first touch: at a million flows the table is 16 MiB,
        // and with 4 KiB pages nearly every lookup would also miss the TLB.
        advise_huge_pages(windows.as_mut_ptr().cast(), n * core::mem::size_of::<Window>());
        windows.resize(n, Window::default());
        let check_keys = (
            mum(keys.0 ^ 0x243f_6a88_85a3_08d3, keys.1 ^ 0x1319_8a2e_0370_7344),
            mum(keys.1 ^ 0xa409_3822_299f_31d0, keys.0 ^ 0x082e_fa98_ec4e_6c89),
        );
        let family = last_word(0, 0, 0, 4);
        let v4_keys = [
            keys.0 ^ V4_MAPPED,
            keys.1 ^ V4_MAPPED,
            keys.1 ^ family,
            keys.0 ^ 0x9e37_79b9_7f4a_7c15,
            check_keys.0 ^ family,
            check_keys.1 ^ 0xc2b2_ae3d_27d4_eb4f,
        ];
        FlowTable {
            windows: windows.into_boxed_slice(),
            mask: n - 1,
            keys,
            check_keys,
            v4_keys,
            pressure: 0,
            inserts: 0,
        }
    }

    /// How many entries the table has.
    pub fn capacity(&self) -> usize {
        self.windows.len() * WINDOW
    }

    /// The first round of [`hash`](Self::hash) and [`check`](Self::check), which they
    /// share: folded 64×64→128-bit multiplies of the key's address words with the secret
    /// keys (the mixing step of wyhash), a few instructions per word; without the keys an
    /// attacker cannot aim flows at one window.
    #[inline(always)]
    fn mix(&self, key: &FlowKey) -> u64 {
        let [a, b, c, d, e] = key.w;
        let (k0, k1) = self.keys;
        let h = if a == 0 && c == 0 {
            // IPv4 (mapped): the high words are always 0.
            mum(b ^ k0, d ^ k1)
        } else {
            mum(a ^ k0, b ^ k1) ^ mum(c ^ k1, d ^ k0)
        };
        h ^ e
    }

    /// The keyed hash of a flow key (see the module doc).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hash_check(key).0
    }

    /// The key's check, never 0: the first round of [`hash`](Self::hash), then a round of
    /// its own with keys of its own. An entry is the key's when its check matches and it
    /// sits in one of the key's windows (see the module doc).
    #[inline]
    pub fn check(&self, key: &FlowKey) -> u64 {
        self.hash_check(key).1
    }

    /// [`hash`](Self::hash) and [`check`](Self::check) at once, their shared round computed
    /// once: what a packet needs.
    #[inline]
    pub fn hash_check(&self, key: &FlowKey) -> (u64, u64) {
        let m = self.mix(key);
        let (c0, c1) = self.check_keys;
        (
            mum(m ^ self.keys.1, self.keys.0 ^ 0x9e37_79b9_7f4a_7c15),
            mum(m ^ c0, c1 ^ 0xc2b2_ae3d_27d4_eb4f) | 1,
        )
    }

    /// [`hash`](Self::hash) and [`check`](Self::check) of an IPv4 key, from its fields
    /// (addresses as host-order `u32`): the same values, without building the key.
    #[inline(always)]
    pub fn hash_check_v4(
        &self,
        src: u32,
        dst: u32,
        protocol: u8,
        src_port: u16,
        dst_port: u16,
    ) -> (u64, u64) {
        // As `mix`, `hash` and `check` of the IPv4-mapped key, with the key's constant bits
        // (the mapping, the family) folded into the keys beforehand: they enter by xor.
        let (s, d) = (u64::from(src), u64::from(dst));
        let e = last_word(protocol, src_port, dst_port, 0);
        let [m0, m1, h0, h1, c0, c1] = self.v4_keys;
        let m = mum(s ^ m0, d ^ m1) ^ e;
        (mum(m ^ h0, h1), mum(m ^ c0, c1) | 1)
    }

    /// [`hash`](Self::hash) and [`check`](Self::check) of an IPv6 key, from its fields
    /// (addresses as host-order `u128`): the same values, without building the key.
    #[inline(always)]
    pub fn hash_check_v6(
        &self,
        src: u128,
        dst: u128,
        protocol: u8,
        src_port: u16,
        dst_port: u16,
    ) -> (u64, u64) {
        let m = self.mix(&FlowKey::new_v6(src, dst, protocol, src_port, dst_port));
        let (c0, c1) = self.check_keys;
        (
            mum(m ^ self.keys.1, self.keys.0 ^ 0x9e37_79b9_7f4a_7c15),
            mum(m ^ c0, c1 ^ 0xc2b2_ae3d_27d4_eb4f) | 1,
        )
    }

    /// The key's first window (an index of windows), from its hash alone.
    #[inline(always)]
    pub fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// The other window of an entry with this check in window `window`: the two windows of
    /// a key differ by bits of its check, so that an entry's other home is known from the
    /// entry alone (and may be the same window).
    #[inline(always)]
    fn other(&self, window: usize, check: u64) -> usize {
        window ^ ((check >> 32) as usize & self.mask)
    }

    /// Both windows of a key with this hash and check.
    #[inline(always)]
    pub fn homes(&self, hash: u64, check: u64) -> [usize; 2] {
        let first = self.home(hash);
        [first, self.other(first, check)]
    }

    /// Makes room in window `w` by moving one of its flows to that flow's other window, if
    /// that has a free entry (one step of cuckoo displacement). Returns the freed entry.
    fn displace(&mut self, w: usize, now: u32, timeouts: &IdleTimeouts) -> Option<(usize, usize)> {
        for k in 0..WINDOW {
            let e = self.windows.get(w)?.0[k];
            let other = self.other(w, e.check);
            if other == w {
                continue;
            }
            let to = self.windows.get_mut(other)?;
            if let Some(free) = to.0.iter_mut().find(|f| f.is_free(now, timeouts)) {
                *free = e;
                return Some((w, k));
            }
        }
        None
    }

    /// Hints the CPU to fetch the windows of a key with this hash and check: a lookup that
    /// misses reads both, and so does an insert.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64, check: u64) {
        let base = self.windows.as_ptr();
        for w in self.homes(hash, check) {
            // Windows are in the table (masked); a prefetch reads nothing anyway, so the
            // address need not even be valid.
            crate::prefetch(base.wrapping_add(w));
        }
    }

    /// The backend number of a live flow, refreshing its last-seen time and (when `class`
    /// is not `None`) its class. Expired entries are not returned.
    #[inline]
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
        timeouts: &IdleTimeouts,
        class: Option<TimeoutClass>,
    ) -> Option<u32> {
        self.lookup_absent(self.check(key), hash, now, timeouts, class).ok()
    }

    /// [`lookup`](FlowTable::lookup) by the key's [`check`](Self::check) and hash, telling a
    /// key the table does not hold apart from one whose entry expired: a new flow of the first kind is then remembered
    /// with [`insert_absent`](FlowTable::insert_absent), which does not look it up again.
    #[inline(always)]
    pub fn lookup_absent(
        &mut self,
        check: u64,
        hash: u64,
        now: u64,
        timeouts: &IdleTimeouts,
        class: Option<TimeoutClass>,
    ) -> Result<u32, Absent> {
        let Some((w, k)) = self.find(check, hash) else {
            return Err(Absent(true));
        };
        let Some(e) = self.windows.get_mut(w).and_then(|win| win.0.get_mut(k)) else {
            return Err(Absent(false));
        };
        let now = ticks(now);
        let age = age(now, e.seen);
        if age >= timeouts.of(e.class_bits()) {
            return Err(Absent(false));
        }
        // Never back in time.
        e.seen = e.seen.wrapping_add(age);
        if let Some(c) = class {
            // The class bits are or-ed in: TCP (0) becomes closing (2), and a closing flow
            // stays closing; a UDP flow (1) only ever meets UDP (the protocol is part of the
            // key).
            e.backend_class |= (c as u32) << 30;
        }
        Ok(e.backend())
    }

    /// Remembers a new flow whose lookup said it was `absent` (no entry to reuse:
    /// [`FlowTable::insert_absent`]) or not ([`FlowTable::insert_check`]).
    #[inline(always)]
    pub fn remember(&mut self, absent: bool, flow: NewFlow, now: u64, timeouts: &IdleTimeouts) -> Inserted {
        if absent {
            self.insert_absent(flow, now, timeouts)
        } else {
            self.insert_check(flow, now, timeouts)
        }
    }

    /// Remembers that `key` goes to `backend` (a number up to [`MAX_BACKEND`]), replacing
    /// its old entry if it has one.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        backend: u32,
        now: u64,
        timeouts: &IdleTimeouts,
        class: TimeoutClass,
    ) -> Inserted {
        let flow = NewFlow { check: self.check(key), hash, backend, class };
        self.insert_check(flow, now, timeouts)
    }

    /// [`insert`](FlowTable::insert) by the key's [`check`](Self::check) and hash.
    pub fn insert_check(&mut self, flow: NewFlow, now: u64, timeouts: &IdleTimeouts) -> Inserted {
        let at = self.find(flow.check, flow.hash);
        self.insert_found(at, flow, now, timeouts)
    }

    /// [`insert_check`](FlowTable::insert_check) of a key that
    /// [`lookup_absent`](FlowTable::lookup_absent) just found absent (with no insert in
    /// between).
    pub fn insert_absent(&mut self, flow: NewFlow, now: u64, timeouts: &IdleTimeouts) -> Inserted {
        self.insert_found(None, flow, now, timeouts)
    }

    /// An insert, with the key's own entry (`at`) already looked up.
    #[inline(always)]
    fn insert_found(
        &mut self,
        mut at: Option<(usize, usize)>,
        flow: NewFlow,
        now: u64,
        timeouts: &IdleTimeouts,
    ) -> Inserted {
        let NewFlow { check, hash, backend, class } = flow;
        // The key's own entry if it has one; else a free entry of the first window, else of
        // the second (see the module doc); else room made by moving a flow to its other
        // window; else the least recently seen flow of both windows is evicted.
        let now = ticks(now);
        let entry = Entry { check, seen: now, backend_class: (backend & MAX_BACKEND) | (class as u32) << 30 };
        let [w0, w1] = self.homes(hash, check);
        // The first window's free entries; when it has none, the second's; when both are
        // full, the oldest of their eight entries (what a full table evicts).
        let mut oldest = 0;
        if at.is_none() {
            let win0 = self.windows.get(w0);
            let free = win0.map_or(0, |win| win.free(now, timeouts));
            if free != 0 {
                at = Some((w0, free.trailing_zeros() as usize));
            } else if let Some(win1) = self.windows.get(w1) {
                let free = win1.free(now, timeouts);
                if free != 0 {
                    at = Some((w1, free.trailing_zeros() as usize));
                } else {
                    oldest = win0.map_or(0, |win| win.oldest(now, 0)).max(win1.oldest(now, 4));
                }
            }
        }
        self.inserts = self.inserts.wrapping_add(1);
        if at.is_none() && (self.pressure < PRESSURE_SKIP || self.inserts.is_multiple_of(RETRY_EVERY)) {
            at = self.displace(w0, now, timeouts).or_else(|| self.displace(w1, now, timeouts));
            self.pressure = match at {
                Some(_) => self.pressure.saturating_sub(2),
                None => (self.pressure + 1).min(PRESSURE_MAX),
            };
        }
        let ((w, k), result) = match at {
            Some(at) => (at, Inserted::Fresh),
            None => {
                // (A failed displacement moved nothing: `oldest` still holds.)
                let number = 7 - (oldest & 7) as usize;
                ((if number < WINDOW { w0 } else { w1 }, number % WINDOW), Inserted::Evicted)
            }
        };
        if let Some(e) = self.windows.get_mut(w).and_then(|win| win.0.get_mut(k)) {
            *e = entry;
        }
        result
    }

    /// Where the key with this check and hash is (window, entry), if it is in the table
    /// (live or not). Each window's entries are all compared, without a branch on which one
    /// matches (see the module doc); a key is in one place at most.
    #[inline(always)]
    fn find(&self, check: u64, hash: u64) -> Option<(usize, usize)> {
        let [w0, w1] = self.homes(hash, check);
        for w in [w0, w1] {
            let mut at = usize::MAX;
            for (k, e) in self.windows.get(w)?.0.iter().enumerate() {
                at = core::hint::select_unpredictable(e.check == check, k, at);
            }
            if at != usize::MAX {
                return Some((w, at));
            }
        }
        None
    }

    /// The number the key with this [`check`](Self::check) and hash goes to if it has a
    /// live entry (seen within its idle timeout), without touching the entry.
    pub fn peek(&self, check: u64, hash: u64, now: u64, timeouts: &IdleTimeouts) -> Option<u32> {
        self.find(check, hash)
            .and_then(|(w, k)| self.windows.get(w)?.0.get(k))
            .filter(|e| !e.is_free(ticks(now), timeouts))
            .map(|e| e.backend())
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &FlowKey, hash: u64) {
        if let Some((w, k)) = self.find(self.check(key), hash) {
            self.windows[w].0[k] = Entry::default();
        }
    }

    /// The backend number of every live flow, by a full scan (for the control side; slow).
    pub fn live(&self, now: u64, timeouts: &IdleTimeouts) -> impl Iterator<Item = u32> + '_ {
        self.live_in(0..self.window_count(), now, timeouts)
    }

    /// How many windows of four entries the table has: [`live_in`](FlowTable::live_in)
    /// counts them a range at a time.
    pub fn window_count(&self) -> usize {
        self.windows.len()
    }

    /// The backend number of every live flow in the windows of `windows` (within
    /// `0..window_count()`): a scan taken a piece at a time.
    pub fn live_in(
        &self,
        windows: core::ops::Range<usize>,
        now: u64,
        timeouts: &IdleTimeouts,
    ) -> impl Iterator<Item = u32> + '_ {
        self.live_states_in(windows, now, timeouts).map(|(backend, _, _)| backend)
    }

    /// [`FlowTable::live_in`] with each flow's state (from its timeout class) and how long
    /// ago it was last seen, in nanoseconds (to the tick).
    pub fn live_states_in(
        &self,
        windows: core::ops::Range<usize>,
        now: u64,
        timeouts: &IdleTimeouts,
    ) -> impl Iterator<Item = (u32, FlowState, u64)> + '_ {
        let (t, now) = (*timeouts, ticks(now));
        let end = windows.end.min(self.windows.len());
        let windows = self.windows.get(windows.start.min(end)..end).unwrap_or(&[]);
        windows.iter().flat_map(|w| w.0.iter()).filter(move |e| !e.is_free(now, &t)).map(move |e| {
            let state = match e.class_bits() {
                0 => FlowState::TcpEstablished,
                1 => FlowState::Udp,
                _ => FlowState::TcpClosing,
            };
            (e.backend(), state, u64::from(age(now, e.seen)) << TICK_SHIFT)
        })
    }
}

/// Marks `len` bytes at `ptr` (an allocation of ours) as wanting transparent huge pages.
/// Only advice: where the kernel has none to give, or says no, nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    extern "C" {
        fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: core::ffi::c_int) -> core::ffi::c_int;
    }
    const MADV_HUGEPAGE: core::ffi::c_int = 14;
    const PAGE: usize = 4096;
    let start = (ptr as usize).next_multiple_of(PAGE);
    let end = (ptr as usize + len) & !(PAGE - 1);
    if end > start {
        // SAFETY: the range lies inside an allocation we own, page-aligned as madvise wants;
        // MADV_HUGEPAGE changes how pages are backed, never their contents.
        unsafe {
            madvise(start as *mut core::ffi::c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

/// The 128-bit product of `a` and `b`, its halves xor-ed.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Idle timeouts of the flow table, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP flows.
    pub tcp: u64,
    /// UDP and other flows.
    pub udp: u64,
    /// TCP flows after a FIN or RST was seen.
    pub closing: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { tcp: 15 * 60 * 1_000_000_000, udp: 120 * 1_000_000_000, closing: 10 * 1_000_000_000 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// One tick of the table's clock, in nanoseconds.
    const TICK: u64 = 1 << TICK_SHIFT;
    const T: IdleTimeouts = IdleTimeouts::new(100 * TICK, 50 * TICK, 10 * TICK);

    fn key(i: u32) -> FlowKey {
        FlowKey::new(
            IpAddr::V4(Ipv4Addr::from(0xc633_6400 + i)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
            6,
            40000,
            8000,
        )
    }

    #[test]
    fn insert_lookup_expire() {
        let mut t = FlowTable::with_keys(64, (1, 2));
        let k = key(1);
        let h = t.hash(&k);
        assert_eq!(t.lookup(&k, h, 0, &T, None), None);
        assert_eq!(t.insert(&k, h, 77, 1000 * TICK, &T, TimeoutClass::Tcp), Inserted::Fresh);
        assert_eq!(t.lookup(&k, h, 1050 * TICK, &T, None), Some(77));
        // Seen at 1050: alive until 1150, to the tick.
        assert_eq!(t.lookup(&k, h, 1149 * TICK, &T, None), Some(77));
        assert_eq!(t.lookup(&k, h, 1249 * TICK, &T, None), None);
        // FIN shortens the life.
        t.insert(&k, h, 77, 2000 * TICK, &T, TimeoutClass::Tcp);
        assert_eq!(t.lookup(&k, h, 2001 * TICK, &T, Some(TimeoutClass::Closing)), Some(77));
        assert_eq!(t.lookup(&k, h, 2005 * TICK, &T, Some(TimeoutClass::Tcp)), Some(77));
        assert_eq!(t.lookup(&k, h, 2016 * TICK, &T, None), None);
        assert_eq!(k.src_addr(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        t.insert(&k, h, 5, 3000 * TICK, &T, TimeoutClass::Udp);
        t.remove(&k, h);
        assert_eq!(t.lookup(&k, h, 3000 * TICK, &T, None), None);
    }

    /// A count tells established TCP from closing TCP and UDP, and says how long ago each
    /// was seen; expired flows are not in it.
    #[test]
    fn live_flows_are_counted_by_state_with_their_age() {
        let mut t = FlowTable::with_keys(64, (1, 2));
        let at = |i: u32, backend: u32, tick: u64, class: TimeoutClass, t: &mut FlowTable| {
            let k = key(i);
            t.insert(&k, t.hash(&k), backend, tick * TICK, &T, class);
        };
        at(1, 7, 1000, TimeoutClass::Tcp, &mut t);
        at(2, 7, 1000, TimeoutClass::Tcp, &mut t);
        at(3, 8, 1020, TimeoutClass::Udp, &mut t);
        at(4, 8, 1025, TimeoutClass::Closing, &mut t);
        at(5, 8, 900, TimeoutClass::Udp, &mut t); // expired by 1028 (50 ticks)
        let k = key(2);
        // A FIN seen: closing from now on.
        assert_eq!(t.lookup(&k, t.hash(&k), 1020 * TICK, &T, Some(TimeoutClass::Closing)), Some(7));
        let mut live: Vec<(u32, FlowState, u64)> =
            t.live_states_in(0..t.window_count(), 1028 * TICK, &T).collect();
        live.sort_by_key(|&(b, _, age)| (b, age));
        assert_eq!(
            live,
            [
                (7, FlowState::TcpClosing, 8 * TICK),
                (7, FlowState::TcpEstablished, 28 * TICK),
                (8, FlowState::TcpClosing, 3 * TICK),
                (8, FlowState::Udp, 8 * TICK),
            ]
        );
    }

    /// A lookup tells a key the table does not hold from one whose entry expired; a new
    /// flow remembered after the first takes one entry, and after the second its old one.
    #[test]
    fn a_miss_says_whether_the_key_has_an_entry() {
        let mut t = FlowTable::with_keys(64, (1, 2));
        let (k, other) = (key(1), key(2));
        let (h, c) = (t.hash(&k), t.check(&k));
        let live = |t: &FlowTable, now: u64| t.live(now, &T).count();
        assert_eq!(t.lookup_absent(c, h, 1000 * TICK, &T, None), Err(Absent(true)));
        assert_eq!(
            t.insert_absent(
                NewFlow { check: c, hash: h, backend: 7, class: TimeoutClass::Tcp },
                1000 * TICK,
                &T
            ),
            Inserted::Fresh
        );
        assert_eq!(t.lookup_absent(c, h, 1001 * TICK, &T, None), Ok(7));
        assert_eq!(live(&t, 1001 * TICK), 1);
        // Expired: an entry, but no backend.
        assert_eq!(t.lookup_absent(c, h, 1200 * TICK, &T, None), Err(Absent(false)));
        t.insert_check(NewFlow { check: c, hash: h, backend: 8, class: TimeoutClass::Tcp }, 1200 * TICK, &T);
        assert_eq!(t.lookup_absent(c, h, 1201 * TICK, &T, None), Ok(8));
        assert_eq!(
            t.capacity() - t.windows.iter().flat_map(|w| w.0.iter()).filter(|e| e.check == 0).count(),
            1
        );
        // Another key is absent all along.
        let (ho, co) = (t.hash(&other), t.check(&other));
        assert_eq!(t.lookup_absent(co, ho, 1201 * TICK, &T, None), Err(Absent(true)));
        assert_eq!(live(&t, 1201 * TICK), 1);
    }

    #[test]
    fn timeouts_are_kept_to_the_tick_and_time_going_back_keeps_a_flow() {
        // 2.5 ticks of UDP timeout: three ticks of the table's clock.
        let t3 = IdleTimeouts::new(TICK * 5 / 2, TICK * 5 / 2, TICK * 5 / 2);
        let mut t = FlowTable::with_keys(64, (1, 2));
        let k = key(7);
        let h = t.hash(&k);
        let start = 1_000 * TICK + TICK / 2;
        t.insert(&k, h, 9, start, &t3, TimeoutClass::Udp);
        assert_eq!(t.lookup(&k, h, start + 2 * TICK, &t3, None), Some(9), "2 ticks idle");
        // An earlier time (a capture out of order) neither expires it nor moves it back.
        assert_eq!(t.lookup(&k, h, start - 500 * TICK, &t3, None), Some(9));
        assert_eq!(t.lookup(&k, h, start + 4 * TICK + TICK / 4, &t3, None), Some(9), "2 ticks idle again");
        assert_eq!(t.lookup(&k, h, start + 7 * TICK + TICK / 4, &t3, None), None, "3 ticks idle");
        // Nanosecond times far from 0 (a capture's Unix time) wrap the clock harmlessly.
        let unix = 1_790_000_000_000_000_000;
        t.insert(&k, h, 10, unix, &t3, TimeoutClass::Udp);
        assert_eq!(t.lookup(&k, h, unix + TICK, &t3, None), Some(10));
        assert_eq!(t.lookup(&k, h, unix + 10 * TICK, &t3, None), None);
        // A timeout of 0 still keeps a flow for its own tick; one past the maximum is cut.
        assert_eq!(IdleTimeouts::new(0, 0, 0).ticks, [1; 4]);
        assert_eq!(IdleTimeouts::new(u64::MAX, 0, 0).ticks[0], (1 << 31) - 1);
    }

    #[test]
    fn full_window_evicts_least_recent() {
        let mut t = FlowTable::with_keys(4, (1, 2));
        // With 4 entries, every key's windows are the whole table.
        for i in 0..4 {
            let k = key(i);
            let h = t.hash(&k);
            assert_eq!(
                t.insert(&k, h, i, (100 + u64::from(i)) * TICK, &T, TimeoutClass::Tcp),
                Inserted::Fresh
            );
        }
        let k = key(100);
        let h = t.hash(&k);
        assert_eq!(t.insert(&k, h, 100, 110 * TICK, &T, TimeoutClass::Tcp), Inserted::Evicted);
        // key(0) was seen least recently.
        let k0 = key(0);
        assert_eq!(t.lookup(&k0, t.hash(&k0), 111 * TICK, &T, None), None);
        for i in 1..4 {
            let k = key(i);
            assert_eq!(t.lookup(&k, t.hash(&k), 111 * TICK, &T, None), Some(i));
        }
        // Once the others expire, inserting is fresh again.
        let k = key(200);
        assert_eq!(t.insert(&k, t.hash(&k), 1, 10_000 * TICK, &T, TimeoutClass::Tcp), Inserted::Fresh);
    }

    #[test]
    fn a_full_table_evicts_the_first_of_the_least_recently_seen() {
        let forever = IdleTimeouts::new(u64::MAX, u64::MAX, u64::MAX);
        let mut t = FlowTable::with_keys(64, (5, 6));
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Every entry live, seen at a few ticks around `now` (equal ages, and some after
        // `now`, which count as age 0).
        let now = 1000;
        for w in t.windows.iter_mut() {
            for e in w.0.iter_mut() {
                *e = Entry { check: rand() | 1, seen: now - 3 + (rand() % 5) as u32, backend_class: 7 };
            }
        }
        for i in 0..2000 {
            let k = key(10_000 + i);
            let (check, hash) = (t.check(&k), t.hash(&k));
            // The rule, written out: over the first window's entries then the second's,
            // the first whose age is strictly the greatest (the first entry if none is
            // older than now).
            let homes = t.homes(hash, check);
            let (mut expected, mut age_of_oldest) = ((homes[0], 0), 0);
            for w in homes {
                for k in 0..WINDOW {
                    let a = age(now, t.windows[w].0[k].seen);
                    if a > age_of_oldest {
                        (expected, age_of_oldest) = ((w, k), a);
                    }
                }
            }
            let at = u64::from(now) * TICK;
            assert_eq!(t.insert(&k, hash, 1, at, &forever, TimeoutClass::Tcp), Inserted::Evicted, "{i}");
            assert_eq!(t.windows[expected.0].0[expected.1].check, check, "insert {i}");
            // Some entries seen again, so that ages keep varying.
            let w = (rand() % 16) as usize;
            t.windows[w].0[(rand() % 4) as usize].seen = now - (rand() % 4) as u32;
        }
    }

    #[test]
    fn every_key_finds_its_own_entry_and_strangers_find_none() {
        let forever = IdleTimeouts::new(u64::MAX, u64::MAX, u64::MAX);
        let mut t = FlowTable::with_keys(4096, (3, 4));
        let keys: Vec<FlowKey> = (0..3000).map(key).collect();
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(t.insert(k, t.hash(k), n as u32, 1, &forever, TimeoutClass::Tcp), Inserted::Fresh);
        }
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(t.lookup(k, t.hash(k), 2, &forever, None), Some(n as u32), "key {n}");
        }
        for i in 3000..20_000 {
            let k = key(i);
            assert_eq!(t.lookup(&k, t.hash(&k), 2, &forever, None), None, "stranger {i}");
        }
        assert_eq!(t.live(2, &forever).count(), 3000);
        // An IPv6 key and its IPv4 look-alike are different flows.
        let v6 =
            FlowKey::new("2001:db8::1".parse().unwrap(), "2001:db8::10".parse().unwrap(), 6, 40000, 8000);
        t.insert(&v6, t.hash(&v6), 9_999, 1, &forever, TimeoutClass::Tcp);
        assert_eq!(t.lookup(&v6, t.hash(&v6), 2, &forever, None), Some(9_999));
    }

    #[test]
    fn the_ipv4_shortcut_hashes_as_the_key_does() {
        let t = FlowTable::new(64);
        let mut x = 0x9e37_79b9_u64;
        for _ in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (src, dst, ports) = ((x >> 32) as u32, x as u32, (x >> 16) as u32);
            let protocol = if x & 1 == 0 { 6 } else { 17 };
            let key = FlowKey::new_v4(src, dst, protocol, ports as u16, (ports >> 16) as u16);
            assert_eq!(
                t.hash_check_v4(src, dst, protocol, ports as u16, (ports >> 16) as u16),
                (t.hash(&key), t.check(&key))
            );
        }
    }

    #[test]
    fn the_ipv6_shortcut_hashes_as_the_key_does() {
        let t = FlowTable::new(64);
        let mut x = 0x7f4a_7c15_u64;
        for i in 0..10_000u32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut src = u128::from(x) << 64 | u128::from(x.rotate_left(17));
            let mut dst = u128::from(0x2001_0db8_u32) << 96 | u128::from(x >> 8);
            // Addresses whose high half is 0 (::x) take the key's other branch.
            if i % 100 == 0 {
                (src, dst) = (src & u128::from(u64::MAX), dst & u128::from(u64::MAX));
            }
            let (protocol, sport, dport) =
                (if x & 1 == 0 { 6 } else { 17 }, (x >> 3) as u16, (x >> 40) as u16);
            let key = FlowKey::new(
                std::net::Ipv6Addr::from(src).into(),
                std::net::Ipv6Addr::from(dst).into(),
                protocol,
                sport,
                dport,
            );
            assert_eq!(t.hash_check_v6(src, dst, protocol, sport, dport), (t.hash(&key), t.check(&key)));
        }
    }

    #[test]
    fn keys_differ_per_table() {
        let a = FlowTable::new(8);
        let b = FlowTable::new(8);
        assert_ne!(a.hash(&key(1)), b.hash(&key(1)));
    }
}

#[cfg(test)]
mod load_tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn evictions(entries: usize, flows: u32, keys: (u64, u64)) -> usize {
        let t_ = IdleTimeouts::new(u64::MAX, u64::MAX, u64::MAX);
        let mut t = FlowTable::with_keys(entries, keys);
        let mut evicted = 0;
        for i in 0..flows {
            let k = FlowKey::new(
                IpAddr::V4(Ipv4Addr::from(0xc633_6400 + (i >> 16))),
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + (i / 4 % 8) as u8)),
                if i % 4 == 0 { 17 } else { 6 },
                i as u16,
                if i % 4 == 0 { 8000 } else { 5222 },
            );
            let h = t.hash(&k);
            if t.insert(&k, h, 1, 1, &t_, TimeoutClass::Tcp) == Inserted::Evicted {
                evicted += 1;
            }
        }
        evicted
    }

    #[test]
    fn loads_up_to_three_quarters_do_not_evict() {
        for seed in 0..4u64 {
            let keys = (seed * 7 + 1, seed * 13 + 5);
            assert_eq!(evictions(1 << 12, 1 << 11, keys), 0, "half full, seed {seed}");
            let e = evictions(1 << 12, 3 << 10, keys);
            assert!(e <= 3, "three quarters full, seed {seed}: {e} evictions");
        }
    }

    /// Lookups go on to the second window only for flows that live there: a small share of
    /// them (97% live in their first window at half load, 85% at three quarters).
    #[test]
    fn most_flows_live_in_their_first_window() {
        let forever = IdleTimeouts::new(u64::MAX, u64::MAX, u64::MAX);
        for (flows, most) in [(1u32 << 11, 0.9), (3 << 10, 0.75)] {
            let mut t = FlowTable::with_keys(1 << 12, (5, 6));
            let keys: Vec<FlowKey> = (0..flows)
                .map(|i| FlowKey::new_v4(0xc633_6400 + (i >> 16), 0xcb00_710a, 6, i as u16, 443))
                .collect();
            for k in &keys {
                t.insert(k, t.hash(k), 1, 1, &forever, TimeoutClass::Tcp);
            }
            // (A flow evicted at three quarters, which happens by chance, counts against.)
            let first = keys
                .iter()
                .filter(|k| t.find(t.check(k), t.hash(k)).map(|at| at.0) == Some(t.home(t.hash(k))))
                .count();
            let share = first as f64 / f64::from(flows);
            assert!(share >= most, "{flows} flows: {share:.3} in their first window");
        }
    }
}
