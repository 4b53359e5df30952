//! The whole pipeline on one arbitrary frame: a verdict, no panic, and a dropped packet
//! left as received.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use vipgate_engine::buf::PacketBuf;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};

fuzz_target!(|data: &[u8]| {
    if data.len() > 9000 {
        return;
    }
    let snap = common::snapshot();
    // One pipeline for the whole run (its flow table and rate limiter carry over, as in a
    // worker): made once, it leaves the time to the packets.
    PIPELINE.with(|p| {
        let mut pipeline = p.borrow_mut();
        let mut buf = PacketBuf::with_capacity(vipgate_engine::buf::HEADROOM + 9216);
        if buf.set_frame(data).is_err() {
            return;
        }
        let before = pipeline.counters().clone();
        let verdict = pipeline.process_one(snap, 1_000_000_000, &mut buf);
        for (_, b) in pipeline.take_extra().collect::<Vec<_>>() {
            pipeline.recycle(b);
        }
        if let Verdict::Drop(_) = verdict {
            assert_eq!(buf.as_slice(), data, "a dropped packet is left as received");
        }
        let c = pipeline.counters();
        assert_eq!(c.rx_packets - before.rx_packets, 1);
        let verdicts = |c: &vipgate_engine::counters::Counters| c.forwarded + c.replied + c.dropped();
        assert_eq!(verdicts(c) - verdicts(&before), 1, "one verdict, counted once");
    });
});

thread_local! {
    static PIPELINE: std::cell::RefCell<Pipeline> =
        std::cell::RefCell::new(Pipeline::new(PipelineOptions { flow_capacity: 64, ..PipelineOptions::default() }));
}
