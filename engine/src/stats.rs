//! Per-worker counters that the control thread reads without locks.
//!
//! A worker is the only writer of its counters: it adds with a relaxed load and store (no
//! read-modify-write instruction, no lock prefix), and the control thread reads whenever it
//! likes. Each worker's block starts on its own cache line, so two workers never write
//! into one line. A read may see one counter of a burst updated and another not yet; it
//! never sees a torn value, and a worker publishes everything before it acknowledges an
//! update or stops.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::counters::{Counters, COUNTER_COUNT};

/// A value on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Padded<T>(pub T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (only the owning worker calls this).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets the value (only the owning worker calls this).
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Packets and bytes forwarded per (VIP, backend) of one snapshot, by one worker.
///
/// The control thread allocates them with the snapshot they count for and hands both to
/// the worker together, so a worker never allocates to take an update.
#[derive(Debug)]
pub struct TrafficCounters {
    generation: u64,
    /// Per slot: packets, bytes (side by side: one bounds check, one cache line).
    slots: Box<[[Counter; 2]]>,
}

impl TrafficCounters {
    /// Zeroed counters for `slots` (VIP, backend) pairs of the snapshot of `generation`.
    pub fn new(generation: u64, slots: usize) -> TrafficCounters {
        TrafficCounters {
            generation,
            slots: (0..slots).map(|_| [Counter::default(), Counter::default()]).collect(),
        }
    }

    /// The generation of the snapshot these count for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Counts one packet of `bytes` in `slot` (ignored when out of range).
    #[inline]
    pub fn count(&self, slot: usize, bytes: usize) {
        if let Some([p, b]) = self.slots.get(slot) {
            p.add(1);
            b.add(bytes as u64);
        }
    }

    /// Asks the CPU to fetch `slot`'s counters ahead of a [`count`](Self::count): with
    /// thousands of VIPs the counters are megabytes, and a count is a cache miss.
    #[inline(always)]
    pub fn prefetch(&self, slot: usize) {
        crate::prefetch(self.slots.as_ptr().wrapping_add(slot));
    }

    /// Takes back one packet of `bytes` counted in `slot` (the port refused it).
    pub fn uncount(&self, slot: usize, bytes: usize) {
        if let Some([p, b]) = self.slots.get(slot) {
            p.set(p.get().saturating_sub(1));
            b.set(b.get().saturating_sub(bytes as u64));
        }
    }

    /// `(packets, bytes)` of `slot`.
    pub fn get(&self, slot: usize) -> (u64, u64) {
        self.slots.get(slot).map_or((0, 0), |[p, b]| (p.get(), b.get()))
    }
}

/// What a worker publishes about itself.
#[derive(Debug, Default)]
pub struct WorkerStats {
    counters: Padded<[Counter; COUNTER_COUNT]>,
    /// The generation of the snapshot the worker runs.
    pub generation: Counter,
    /// Nanoseconds spent on bursts that carried packets.
    pub busy_ns: Counter,
    /// Nanoseconds since the worker started.
    pub total_ns: Counter,
    /// Polls of the port.
    pub polls: Counter,
    /// Polls that found nothing.
    pub empty_polls: Counter,
    /// Live entries in the flow table at the last count.
    pub live_flows: Counter,
    /// Nanoseconds the last update took the worker: swapping snapshot and counters in,
    /// publishing, acknowledging.
    pub last_swap_ns: Counter,
    /// The core the worker is pinned to, plus one (0: not pinned).
    pub core: Counter,
}

impl WorkerStats {
    /// Publishes the pipeline's counters.
    pub fn publish(&self, c: &Counters) {
        for (slot, v) in self.counters.iter().zip(c.values()) {
            slot.set(v);
        }
    }

    /// The counters last published.
    pub fn counters(&self) -> Counters {
        let mut v = [0u64; COUNTER_COUNT];
        for (out, slot) in v.iter_mut().zip(self.counters.iter()) {
            *out = slot.get();
        }
        Counters::from_values(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_read_gives_the_same_counters() {
        let mut c = Counters { rx_packets: 7, forwarded: 5, echo_replies: 1, ..Counters::default() };
        c.drops[3] = 2;
        let s = WorkerStats::default();
        s.publish(&c);
        assert_eq!(s.counters(), c);
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 64);
    }

    #[test]
    fn traffic_slots_count_and_ignore_out_of_range() {
        let t = TrafficCounters::new(3, 2);
        t.count(1, 100);
        t.count(1, 60);
        t.count(2, 1);
        assert_eq!(t.get(1), (2, 160));
        assert_eq!(t.get(0), (0, 0));
        assert_eq!(t.get(2), (0, 0));
        assert_eq!(t.generation(), 3);
    }
}
