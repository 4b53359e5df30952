//! New flows a worker announces to the fleet's other appliances, and the flows it adopts
//! from theirs.
//!
//! With `[fleet]`, each worker pushes every flow it remembers anew (its key and the number
//! of its (VIP, backend) pair) onto an [`Announcer`], a bounded lock-free queue that the
//! control thread empties: it sends them to the peers, which hand them to their workers
//! to remember as their own ([`crate::worker::Command::Adopt`]). A full queue drops the
//! announcement and counts it (`flows_unannounced`); the packet is forwarded all the same.

use crossbeam_queue::ArrayQueue;

use crate::counters::Counters;
use crate::flow::FlowKey;

/// A new flow: its key and the number of its (VIP, backend) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// The flow's key.
    pub key: FlowKey,
    /// Its pair's number ([`crate::numbering::Numbering`]).
    pub number: u32,
}

/// A worker's queue of new flows to the control thread.
#[derive(Debug)]
pub struct Announcer {
    queue: ArrayQueue<Announced>,
}

impl Announcer {
    /// A queue of `capacity` announcements.
    pub fn new(capacity: usize) -> Announcer {
        Announcer { queue: ArrayQueue::new(capacity.max(1)) }
    }

    /// Queues an announcement; false when the queue is full.
    #[inline]
    pub fn push(&self, key: FlowKey, number: u32) -> bool {
        self.queue.push(Announced { key, number }).is_ok()
    }

    /// The oldest announcement, if any.
    pub fn pop(&self) -> Option<Announced> {
        self.queue.pop()
    }
}

/// Announces the new flow `key` (when it can be read) of pair `number` to `announcer`, if
/// the fleet wants new flows, and counts it as announced or, the queue being full,
/// unannounced.
#[inline(always)]
pub(crate) fn announce(
    announcer: Option<&Announcer>,
    counters: &mut Counters,
    key: impl FnOnce() -> Option<FlowKey>,
    number: u32,
) {
    if let Some(a) = announcer {
        match key() {
            Some(k) if a.push(k, number) => counters.flows_announced += 1,
            _ => counters.flows_unannounced += 1,
        }
    }
}
