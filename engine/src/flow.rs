//! The per-worker connection table: which backend each live flow was sent to.
//!
//! One table per worker, never shared: flows are spread over workers by their hash, so a
//! flow always meets the same table. The table is allocated once, at its full size, and
//! never allocates again.
//!
//! # Layout and cost
//!
//! Entries are 64 bytes, one cache line each (the figure the design aims for): the key
//! (both addresses as 16 bytes, ports, protocol: 40 bytes), the backend's fingerprint
//! (its stable identity, 8 bytes), the last time the flow was seen (8 bytes) and its
//! timeout class. The table holds `capacity` rounded up to a power of two entries, in
//! aligned windows of [`WINDOW`] entries. A key may live in either of two windows, chosen
//! by independent bits of its hash: a new key goes to the window with more room, and when
//! both are full one flow of theirs moves to its own other window if that has room (one
//! step of cuckoo displacement). With that, a table three quarters full still has room for
//! nearly every new flow (tested), where one window of eight consecutive entries overflows
//! at half load already. A table of 1 048 576 entries takes 64 MiB; size it at least a
//! third above the live flows expected.
//!
//! # Time and eviction
//!
//! The caller passes the time in with every call; the table reads no clock. An entry is
//! live while `now - last_seen` is below its class's idle timeout (TCP, UDP, or the short
//! one after a FIN or RST). Inserting reuses an expired entry like a free one; with no
//! room at all, it evicts the least recently seen flow of the key's two windows and says so
//! (the caller counts `flow_table_full`).
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
/// word operations. A key of family 0 marks an empty entry.
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
            (s, d) => {
                let (s, d) = (bits(s), bits(d));
                FlowKey {
                    w: [
                        (s >> 64) as u64,
                        s as u64,
                        (d >> 64) as u64,
                        d as u64,
                        last_word(protocol, src_port, dst_port, 6),
                    ],
                }
            }
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

    fn is_empty(&self) -> bool {
        self.family() == 0
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
#[repr(C, align(64))]
struct Entry {
    key: FlowKey,
    backend: u64,
    last_seen: u64,
    /// A hint for the caller (the backend's index in the snapshot that last resolved it).
    hint: u32,
    class: TimeoutClass,
}

const _: () = assert!(core::mem::size_of::<Entry>() == 64);

/// Idle timeouts by class, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeouts(pub [u64; 3]);

/// A flow found by [`FlowTable::lookup_hinted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The backend's fingerprint.
    pub backend: u64,
    /// The hint stored with it.
    pub hint: u32,
    /// Where the entry is, for [`FlowTable::set_hint`].
    pub slot: usize,
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
    entries: Box<[Entry]>,
    mask: usize,
    keys: (u64, u64),
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
        f.debug_struct("FlowTable").field("entries", &self.entries.len()).finish()
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
        let n = capacity.max(WINDOW).next_power_of_two();
        let mut entries: Vec<Entry> = Vec::with_capacity(n);
        // Ask for huge pages before the first touch: at a million flows the table is 64 MiB,
        // and with 4 KiB pages nearly every lookup would also miss the TLB.
        advise_huge_pages(entries.as_mut_ptr().cast(), n * core::mem::size_of::<Entry>());
        entries.resize(n, Entry::default());
        FlowTable { entries: entries.into_boxed_slice(), mask: n - 1, keys, pressure: 0, inserts: 0 }
    }

    /// How many entries the table has.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The keyed hash of a flow key (see the module doc).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        let [a, b, c, d, e] = key.w;
        let (k0, k1) = self.keys;
        // Folded 64×64→128-bit multiplies of key words with the secret keys (the mixing
        // step of wyhash): a few instructions per word, and without the keys an attacker
        // cannot aim flows at one window.
        let h = if a == 0 && c == 0 {
            // IPv4 (mapped): the high words are always 0.
            mum(b ^ k0, d ^ k1)
        } else {
            mum(a ^ k0, b ^ k1) ^ mum(c ^ k1, d ^ k0)
        };
        mum(h ^ e ^ k1, k0 ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The starts of `hash`'s two windows (aligned to [`WINDOW`] entries): where a flow
    /// with this hash may live.
    #[inline]
    pub fn homes(&self, hash: u64) -> [usize; 2] {
        let align = !(WINDOW - 1);
        [hash as usize & self.mask & align, (hash >> 32) as usize & self.mask & align]
    }

    fn is_free(&self, i: usize, now: u64, timeouts: &IdleTimeouts) -> bool {
        let e = &self.entries[i];
        e.key.is_empty() || now.saturating_sub(e.last_seen) >= timeouts.0[e.class as usize]
    }

    /// Makes room in window `home` by moving one of its flows to that flow's other window,
    /// if that has a free entry (one step of cuckoo displacement). Returns the freed entry.
    fn displace(&mut self, home: usize, now: u64, timeouts: &IdleTimeouts) -> Option<usize> {
        for k in 0..WINDOW {
            let i = home + k;
            let h = self.hash(&self.entries[i].key);
            let [a, b] = self.homes(h);
            let other = if a == home { b } else { a };
            if other == home {
                continue;
            }
            if let Some(j) = (other..other + WINDOW).find(|&j| self.is_free(j, now, timeouts)) {
                self.entries[j] = self.entries[i];
                return Some(i);
            }
        }
        None
    }

    /// Hints the CPU to fetch `hash`'s windows: every entry of both, one cache line each.
    /// A lookup that misses reads all of them, and so does an insert.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        for home in self.homes(hash) {
            for e in self.entries.get(home..home + WINDOW).unwrap_or_default() {
                prefetch_read(e);
            }
        }
    }

    /// The backend fingerprint of a live flow, refreshing its last-seen time and (when
    /// `class` is not `None`) its class. Expired entries are not returned.
    #[inline]
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
        timeouts: &IdleTimeouts,
        class: Option<TimeoutClass>,
    ) -> Option<u64> {
        self.lookup_hinted(key, hash, now, timeouts, class).map(|h| h.backend)
    }

    /// [`lookup`](FlowTable::lookup), with the entry's hint and where it is.
    #[inline]
    pub fn lookup_hinted(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
        timeouts: &IdleTimeouts,
        class: Option<TimeoutClass>,
    ) -> Option<Hit> {
        let i = self.find(key, hash)?;
        let e = &mut self.entries[i];
        if now.saturating_sub(e.last_seen) >= timeouts.0[e.class as usize] {
            return None;
        }
        e.last_seen = e.last_seen.max(now);
        if let Some(c) = class {
            // A closing flow stays closing.
            if e.class != TimeoutClass::Closing {
                e.class = c;
            }
        }
        Some(Hit { backend: e.backend, hint: e.hint, slot: i })
    }

    /// Remembers that `key` goes to `backend`, replacing its old entry if it has one.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        backend: u64,
        now: u64,
        timeouts: &IdleTimeouts,
        class: TimeoutClass,
    ) -> Inserted {
        self.insert_hinted(key, hash, backend, 0, now, timeouts, class)
    }

    /// [`insert`](FlowTable::insert) with a hint for later lookups.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_hinted(
        &mut self,
        key: &FlowKey,
        hash: u64,
        backend: u64,
        hint: u32,
        now: u64,
        timeouts: &IdleTimeouts,
        class: TimeoutClass,
    ) -> Inserted {
        let mut oldest = (u64::MAX, 0usize);
        // The key's own entry if it has one; else a free entry in the window with more free
        // entries (the first window on a tie); else room made by moving a flow to its other
        // window; else the least recently seen flow of both windows is evicted.
        let mut own = None;
        let mut free: [(usize, Option<usize>); 2] = [(0, None); 2];
        let homes = self.homes(hash);
        for (w, home) in homes.into_iter().enumerate() {
            for i in home..home + WINDOW {
                let e = &self.entries[i];
                if e.key == *key {
                    own = Some(i);
                }
                if self.is_free(i, now, timeouts) {
                    free[w].0 += 1;
                    free[w].1 = free[w].1.or(Some(i));
                }
                if e.last_seen < oldest.0 {
                    oldest = (e.last_seen, i);
                }
            }
        }
        let mut free = own.or(if free[1].0 > free[0].0 { free[1].1 } else { free[0].1.or(free[1].1) });
        self.inserts = self.inserts.wrapping_add(1);
        if free.is_none() && (self.pressure < PRESSURE_SKIP || self.inserts % RETRY_EVERY == 0) {
            free = self.displace(homes[0], now, timeouts).or_else(|| self.displace(homes[1], now, timeouts));
            self.pressure = match free {
                Some(_) => self.pressure.saturating_sub(2),
                None => (self.pressure + 1).min(PRESSURE_MAX),
            };
        }
        let (i, result) = match free {
            Some(i) => (i, Inserted::Fresh),
            None => (oldest.1, Inserted::Evicted),
        };
        self.entries[i] = Entry { key: *key, backend, last_seen: now, hint, class };
        result
    }

    /// Where `key` is, if it is in the table (live or not).
    #[inline]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<usize> {
        for home in self.homes(hash) {
            let window = self.entries.get(home..home + WINDOW)?;
            for (k, e) in window.iter().enumerate() {
                if e.key == *key {
                    return Some(home + k);
                }
            }
        }
        None
    }

    /// Sets the hint of the entry at `slot` (from a [`Hit`]).
    #[inline]
    pub fn set_hint(&mut self, slot: usize, hint: u32) {
        if let Some(e) = self.entries.get_mut(slot) {
            e.hint = hint;
        }
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &FlowKey, hash: u64) {
        for i in self.candidates(hash) {
            if self.entries[i].key == *key {
                self.entries[i] = Entry::default();
                return;
            }
        }
    }

    /// The entries a key may be in: its two windows.
    #[inline]
    fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> {
        let [a, b] = self.homes(hash);
        (a..a + WINDOW).chain(b..b + WINDOW)
    }

    /// Live flows per backend fingerprint, by a full scan (for the control side; slow).
    pub fn live(&self, now: u64, timeouts: &IdleTimeouts) -> impl Iterator<Item = (&FlowKey, u64)> + '_ {
        let t = *timeouts;
        self.entries
            .iter()
            .filter(move |e| !e.key.is_empty() && now.saturating_sub(e.last_seen) < t.0[e.class as usize])
            .map(|e| (&e.key, e.backend))
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

/// Hints the CPU to fetch the cache line of `p`.
#[inline(always)]
fn prefetch_read<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint with no effect on memory; any address is allowed.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const T as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const T: IdleTimeouts = IdleTimeouts([100, 50, 10]);

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
        assert_eq!(t.insert(&k, h, 77, 1000, &T, TimeoutClass::Tcp), Inserted::Fresh);
        assert_eq!(t.lookup(&k, h, 1050, &T, None), Some(77));
        // Seen at 1050: alive until 1150.
        assert_eq!(t.lookup(&k, h, 1149, &T, None), Some(77));
        assert_eq!(t.lookup(&k, h, 1249, &T, None), None);
        // FIN shortens the life.
        t.insert(&k, h, 77, 2000, &T, TimeoutClass::Tcp);
        assert_eq!(t.lookup(&k, h, 2001, &T, Some(TimeoutClass::Closing)), Some(77));
        assert_eq!(t.lookup(&k, h, 2005, &T, Some(TimeoutClass::Tcp)), Some(77));
        assert_eq!(t.lookup(&k, h, 2016, &T, None), None);
        assert_eq!(k.src_addr(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        t.insert(&k, h, 5, 3000, &T, TimeoutClass::Udp);
        t.remove(&k, h);
        assert_eq!(t.lookup(&k, h, 3000, &T, None), None);
    }

    #[test]
    fn full_window_evicts_least_recent() {
        let mut t = FlowTable::with_keys(4, (1, 2));
        // With 4 entries, every key's windows are the whole table.
        for i in 0..4 {
            let k = key(i);
            let h = t.hash(&k);
            assert_eq!(
                t.insert(&k, h, u64::from(i), 100 + u64::from(i), &T, TimeoutClass::Tcp),
                Inserted::Fresh
            );
        }
        let k = key(100);
        let h = t.hash(&k);
        assert_eq!(t.insert(&k, h, 100, 110, &T, TimeoutClass::Tcp), Inserted::Evicted);
        // key(0) was seen least recently.
        let k0 = key(0);
        assert_eq!(t.lookup(&k0, t.hash(&k0), 111, &T, None), None);
        for i in 1..4 {
            let k = key(i);
            assert_eq!(t.lookup(&k, t.hash(&k), 111, &T, None), Some(u64::from(i)));
        }
        // Once the others expire, inserting is fresh again.
        let k = key(200);
        assert_eq!(t.insert(&k, t.hash(&k), 1, 10_000, &T, TimeoutClass::Tcp), Inserted::Fresh);
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
        let t_ = IdleTimeouts([u64::MAX / 2; 3]);
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
}
