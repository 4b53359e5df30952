//! Software RSS: one burst spread over several pipelines by flow.
//!
//! Where no NIC spreads packets over queues (captures, the in-memory demo), a burst is
//! split by [`rss_hash`] so that a flow always meets the same pipeline and flow table,
//! each pipeline processes its share as one burst, and the verdicts come back in the
//! burst's order. Buffers are swapped, never copied; everything is allocated up front.

use crate::buf::PacketBuf;
use crate::pipeline::{Pipeline, Verdict};
use crate::rss::rss_hash;
use crate::table::Snapshot;

/// Lanes of buffers, one per pipeline, reused from burst to burst.
#[derive(Debug)]
pub struct Spreader {
    lanes: Vec<Vec<PacketBuf>>,
    members: Vec<Vec<usize>>,
    verdicts: Vec<Verdict>,
}

impl Spreader {
    /// Lanes for `workers` pipelines and bursts of up to `burst` packets, with buffers of
    /// `buffer_capacity` bytes (as big as the buffers handed to [`process`](Spreader::process)).
    pub fn new(workers: usize, burst: usize, buffer_capacity: usize) -> Spreader {
        let workers = workers.max(1);
        Spreader {
            lanes: (0..workers)
                .map(|_| (0..burst).map(|_| PacketBuf::with_capacity(buffer_capacity)).collect())
                .collect(),
            members: (0..workers).map(|_| Vec::with_capacity(burst)).collect(),
            verdicts: vec![Verdict::Forward; burst],
        }
    }

    /// Processes `bufs` (at most `burst` of them) on `pipelines`, one per lane: packet `i`
    /// goes to the pipeline its flow hashes to, and `verdicts[i]` is what became of it.
    /// Outer fragments are passed to `on_extra` with the index of the packet they belong to,
    /// in order, and their buffers given back to their pipeline.
    pub fn process(
        &mut self,
        pipelines: &mut [Pipeline],
        snap: &Snapshot,
        now: u64,
        bufs: &mut [PacketBuf],
        verdicts: &mut [Verdict],
        mut on_extra: impl FnMut(usize, &[u8]),
    ) {
        let workers = pipelines.len().min(self.lanes.len());
        let n = bufs.len().min(verdicts.len()).min(self.verdicts.len());
        for m in self.members.iter_mut() {
            m.clear();
        }
        if workers <= 1 {
            self.members[0].extend(0..n);
        } else {
            for (i, b) in bufs[..n].iter().enumerate() {
                self.members[rss_hash(b.as_slice()) as usize % workers].push(i);
            }
        }
        for (w, pipeline) in pipelines.iter_mut().enumerate().take(workers) {
            let members = &self.members[w];
            let k = members.len();
            if k == 0 {
                continue;
            }
            let lane = &mut self.lanes[w];
            for (j, &i) in members.iter().enumerate() {
                std::mem::swap(&mut bufs[i], &mut lane[j]);
            }
            pipeline.process(snap, now, &mut lane[..k], &mut self.verdicts[..k]);
            for (j, &i) in members.iter().enumerate() {
                verdicts[i] = self.verdicts[j];
                std::mem::swap(&mut bufs[i], &mut lane[j]);
            }
            let extra: Vec<(usize, PacketBuf)> = pipeline.take_extra().collect();
            for (j, f) in extra {
                on_extra(members[j], f.as_slice());
                pipeline.recycle(f);
            }
        }
    }

    /// How many packets each pipeline took in the last burst.
    pub fn lane_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.members.iter().map(Vec::len)
    }
}
