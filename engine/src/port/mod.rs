//! Port drivers: where packets come from and go to.
//!
//! A worker owns one queue of a port through the [`Port`] trait. Buffers are exchanged,
//! never handed over: `rx_burst` swaps received packets into the worker's buffers and
//! keeps the ones it took out; `tx_burst` swaps the packets it accepts for empty buffers of
//! its own. So the number of buffers on each side never changes, and a buffer cannot leak.
//!
//! - [`memory`]: rings of preallocated buffers between a host (a test, the bench, a
//!   capture feeder) and the workers;
//! - [`pcap`]: read a capture, write one;
//! - [`synth`]: generated 2G-gateway traffic, seeded and reproducible;
//! - `dpdk` (feature `dpdk`): a NIC or DPDK virtual device, its mbufs used in place;
//! - `afxdp` (feature `afxdp`): a Linux interface shared with the kernel, VIP traffic
//!   taken by an XDP filter into AF_XDP sockets, their frames used in place.
//!
//! The drivers sit outside the pipeline: the pipeline never does I/O.

use std::net::IpAddr;

use crate::buf::PacketBuf;
use crate::wire::EthernetAddress;

/// The most packets a burst holds: what a driver moves at once, and what
/// [`crate::pipeline::Pipeline::process`] takes at once.
pub const MAX_BURST: usize = 64;

#[cfg(feature = "afxdp")]
pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod memory;
pub mod pcap;
pub mod synth;

/// One queue of a port, as a worker sees it.
pub trait Port: Send {
    /// Receives up to `bufs.len()` packets into `bufs[..n]` and returns `n`. What was in
    /// those buffers before is the port's to reuse.
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize;

    /// Offers `bufs` for sending. The port takes `bufs[..k]` (leaving empty buffers in
    /// their place) and returns `k`; the others are refused (the caller counts them as
    /// `tx_full` and reuses their buffers).
    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize;
}

/// Offers `bufs` to `send` in bursts of at most [`MAX_BURST`], until it takes fewer than it
/// was offered; returns how many it took (what [`Port::tx_burst`] returns).
#[inline]
pub fn in_bursts(bufs: &mut [PacketBuf], mut send: impl FnMut(&mut [PacketBuf]) -> usize) -> usize {
    let mut sent = 0;
    while sent < bufs.len() {
        let offered = (bufs.len() - sent).min(MAX_BURST);
        let took = send(&mut bufs[sent..sent + offered]);
        sent += took;
        if took < offered {
            break;
        }
    }
    sent
}

/// After a send in which the device took `bufs`: a buffer `copied` for it stays with the
/// caller, emptied; lent memory went to the device with its packet.
#[cfg(any(feature = "dpdk", feature = "afxdp"))]
#[inline]
pub(crate) fn hand_over(bufs: &mut [PacketBuf], copied: &[bool]) {
    for (b, &copied) in bufs.iter_mut().zip(copied) {
        if copied {
            b.clear();
        } else {
            let _ = b.take_foreign();
        }
    }
}

/// How the sockets of an afxdp port bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskMode {
    /// Zero-copy where the interface's driver supports it, else copy.
    Auto,
    /// Zero-copy, or fail.
    ZeroCopy,
    /// Copy.
    Copy,
}

/// How the XDP filter of an afxdp port is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the interface's driver, falling back to generic (with a warning) where it has
    /// no XDP.
    Native,
    /// The kernel's generic XDP (any interface; copy mode only).
    Generic,
}

/// The port's own identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Our MAC address.
    pub mac: EthernetAddress,
    /// Where encapsulated packets go (the router).
    pub next_hop_mac: EthernetAddress,
    /// Addresses we answer ARP, neighbour solicitations and pings for.
    pub addresses: Vec<IpAddr>,
}
