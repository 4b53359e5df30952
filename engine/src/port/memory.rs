//! The memory driver: lock-free rings of preallocated buffers.
//!
//! [`channel`] makes a port with `queues` queues: one [`MemoryQueue`] per worker, and one
//! [`MemoryHost`] for whoever plays the network (a test, the bench, a capture feeder). The
//! host's [`send`](MemoryHost::send) spreads frames over the queues by
//! [`rss_hash`], as a NIC's RSS would, so a flow always meets one
//! worker. All buffers are made in [`channel`]; afterwards frames are copied into free
//! buffers and buffers move between rings, and nothing allocates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::Port;
use crate::buf::PacketBuf;
use crate::rss::rss_hash;

/// The rings of one queue.
#[derive(Debug)]
struct Rings {
    /// Host to worker.
    rx: ArrayQueue<PacketBuf>,
    /// Worker to host.
    tx: ArrayQueue<PacketBuf>,
    /// Empty buffers, shared by both sides.
    free: ArrayQueue<PacketBuf>,
    /// Frames the worker refused to take because `tx` was full or no buffer was free.
    refused: AtomicU64,
}

/// The worker's side of one queue.
#[derive(Debug)]
pub struct MemoryQueue {
    rings: Arc<Rings>,
}

/// The network's side of the port: sends frames to the workers, takes what they emit.
#[derive(Debug, Clone)]
pub struct MemoryHost {
    queues: Vec<Arc<Rings>>,
}

/// A frame the port could not take: its queue's ring was full, or no buffer was free, or
/// the frame is longer than a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl core::fmt::Display for Full {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("memory port full")
    }
}

impl std::error::Error for Full {}

/// A memory port of `queues` queues, each with rings of `depth` packets and `2 * depth`
/// buffers of `buffer_capacity` bytes.
pub fn channel(queues: usize, depth: usize, buffer_capacity: usize) -> (MemoryHost, Vec<MemoryQueue>) {
    let depth = depth.max(1);
    let rings: Vec<Arc<Rings>> = (0..queues.max(1))
        .map(|_| {
            let free = ArrayQueue::new(2 * depth);
            for _ in 0..2 * depth {
                let _ = free.push(PacketBuf::with_capacity(buffer_capacity));
            }
            Arc::new(Rings {
                rx: ArrayQueue::new(depth),
                tx: ArrayQueue::new(depth),
                free,
                refused: AtomicU64::new(0),
            })
        })
        .collect();
    let workers = rings.iter().map(|r| MemoryQueue { rings: Arc::clone(r) }).collect();
    (MemoryHost { queues: rings }, workers)
}

impl MemoryHost {
    /// Sends `frame` to the queue its flow hashes to.
    pub fn send(&self, frame: &[u8]) -> Result<(), Full> {
        let q = rss_hash(frame) as usize % self.queues.len();
        self.send_to(q, frame)
    }

    /// Sends `frame` to queue `queue`.
    pub fn send_to(&self, queue: usize, frame: &[u8]) -> Result<(), Full> {
        let rings = self.queues.get(queue).ok_or(Full)?;
        let mut buf = rings.free.pop().ok_or(Full)?;
        if buf.set_frame(frame).is_err() {
            let _ = rings.free.push(buf);
            return Err(Full);
        }
        rings.rx.push(buf).map_err(|buf| {
            let _ = rings.free.push(buf);
            Full
        })
    }

    /// Takes every frame the workers emitted so far, queue after queue, and returns how
    /// many.
    pub fn recv(&self, mut each: impl FnMut(usize, &[u8])) -> usize {
        let mut n = 0;
        for (q, rings) in self.queues.iter().enumerate() {
            while let Some(mut buf) = rings.tx.pop() {
                each(q, buf.as_slice());
                buf.clear();
                let _ = rings.free.push(buf);
                n += 1;
            }
        }
        n
    }

    /// Frames waiting in the RX rings (sent, not yet taken by a worker).
    pub fn rx_pending(&self) -> usize {
        self.queues.iter().map(|r| r.rx.len()).sum()
    }

    /// Empty buffers in the free rings: with nothing in flight, every buffer the port was
    /// made with (`2 * depth` per queue).
    pub fn free_buffers(&self) -> usize {
        self.queues.iter().map(|r| r.free.len()).sum()
    }

    /// How many queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Frames refused at TX so far, all queues.
    pub fn tx_refused(&self) -> u64 {
        self.queues.iter().map(|r| r.refused.load(Ordering::Relaxed)).sum()
    }
}

impl Port for MemoryQueue {
    fn rx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut n = 0;
        while n < bufs.len() {
            let Some(mut buf) = self.rings.rx.pop() else { break };
            std::mem::swap(&mut buf, &mut bufs[n]);
            buf.clear();
            // The free ring holds every buffer of the queue, so there is always room.
            let _ = self.rings.free.push(buf);
            n += 1;
        }
        n
    }

    fn tx_burst(&mut self, bufs: &mut [PacketBuf]) -> usize {
        let mut n = 0;
        while n < bufs.len() {
            let Some(mut empty) = self.rings.free.pop() else { break };
            std::mem::swap(&mut empty, &mut bufs[n]);
            if let Err(mut full) = self.rings.tx.push(empty) {
                // Undo: the packet goes back to the caller, the empty buffer to the ring.
                std::mem::swap(&mut full, &mut bufs[n]);
                let _ = self.rings.free.push(full);
                break;
            }
            n += 1;
        }
        if n < bufs.len() {
            self.rings.refused.fetch_add((bufs.len() - n) as u64, Ordering::Relaxed);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_round_and_buffers_come_back() {
        let (host, mut queues) = channel(1, 4, 256);
        for i in 0..4u8 {
            host.send(&[i; 60]).unwrap();
        }
        assert_eq!(host.send(&[9; 60]), Err(Full), "the RX ring holds 4");
        let mut bufs: Vec<PacketBuf> = (0..8).map(|_| PacketBuf::with_capacity(256)).collect();
        let q = &mut queues[0];
        assert_eq!(q.rx_burst(&mut bufs), 4);
        assert_eq!(bufs[2].as_slice(), &[2; 60]);
        // TX takes 4 (the ring's depth) and refuses the rest.
        assert_eq!(q.tx_burst(&mut bufs[..6]), 4);
        assert_eq!(host.tx_refused(), 2);
        let mut seen = Vec::new();
        assert_eq!(host.recv(|_, f| seen.push(f[0])), 4);
        assert_eq!(seen, [0, 1, 2, 3]);
        // Every buffer is back: 8 free again, and the worker still holds 8.
        assert_eq!(queues[0].rings.free.len(), 8);
        assert_eq!(bufs.len(), 8);
    }

    #[test]
    fn a_frame_longer_than_a_buffer_is_refused_and_nothing_is_lost() {
        let (host, queues) = channel(1, 2, 256);
        assert_eq!(host.send(&[0; 300]), Err(Full));
        assert_eq!(queues[0].rings.free.len(), 4);
    }
}
