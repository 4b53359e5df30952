//! vipgate's data plane.
//!
//! The engine parses frames, finds the VIP a packet is addressed to, picks a backend with
//! Maglev consistent hashing and encapsulates the packet toward it. The forwarding code
//! is free of I/O and of clocks of its own: callers pass buffers and the current time in,
//! and get verdicts back, so every forwarding decision can be tested without a NIC. The
//! runtime around it (port drivers, the worker loop) is where I/O and time come in.
//!
//! - [`wire`]: zero-copy header views and their plain `Repr` structs, and checksums.
//! - [`maglev`]: the Maglev lookup table, and the stable hash functions it is built on.
//! - [`vip`]: what a VIP is; [`pool`]: a VIP's backends and ring; [`numbering`]: the
//!   (VIP, backend) numbers flows remember.
//! - [`table`]: the immutable forwarding snapshot; [`flow`]: a worker's flow table;
//!   [`counters`]: counters and drop reasons; [`encap`]: the outer headers;
//!   [`pipeline`]: from a burst of frames to verdicts, with [`express`] the lane that most
//!   packets take through it (its tables, classification and forwarding).
//! - [`port`]: the port trait and drivers; [`worker`]: the poll loop of one core;
//!   [`stats`]: counters the control thread reads without locks; [`spread`]: software RSS
//!   over pipelines; [`buf`]: packet buffers with headroom.

#![warn(missing_docs, unreachable_pub)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod announce;
pub mod buf;
pub mod counters;
pub mod encap;
pub mod express;
pub mod flow;
pub mod maglev;
pub mod numbering;
pub mod pipeline;
pub mod pool;
pub mod port;
pub mod rss;
pub mod spread;
pub mod stats;
pub mod table;
pub mod vip;
pub mod wire;
pub mod worker;

/// Hints the CPU to fetch the cache line at `p` (a hint only: any address will do).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint with no effect on memory; any address is allowed.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
