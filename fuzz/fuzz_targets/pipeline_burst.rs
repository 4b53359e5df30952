//! The pipeline on bursts of arbitrary frames with time advancing: the input is split into
//! frames by a length byte each, up to 32 per burst, every burst 1 s after the last.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use vipgate_engine::buf::PacketBuf;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};

fuzz_target!(|data: &[u8]| {
    let snap = common::snapshot();
    PIPELINE.with(|p| run(&mut p.borrow_mut(), snap, data));
});

thread_local! {
    static PIPELINE: std::cell::RefCell<Pipeline> =
        std::cell::RefCell::new(Pipeline::new(PipelineOptions { flow_capacity: 64, ..PipelineOptions::default() }));
}

fn run(pipeline: &mut Pipeline, snap: &vipgate_engine::table::Snapshot, data: &[u8]) {
    let before = pipeline.counters().clone();
    let mut bufs: Vec<PacketBuf> = Vec::new();
    let mut rest = data;
    let mut now = 1_000_000_000u64;
    let mut total = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize * 2).min(tail.len());
        let mut b = PacketBuf::new();
        if b.set_frame(&tail[..n]).is_ok() {
            bufs.push(b);
        }
        rest = &tail[n..];
        if bufs.len() == 32 || rest.is_empty() {
            let mut verdicts = vec![Verdict::Forward; bufs.len()];
            pipeline.process(snap, now, &mut bufs, &mut verdicts);
            for (_, b) in pipeline.take_extra().collect::<Vec<_>>() {
                pipeline.recycle(b);
            }
            total += bufs.len() as u64;
            bufs.clear();
            now += 1_000_000_000;
        }
    }
    let c = pipeline.counters();
    assert_eq!(c.rx_packets - before.rx_packets, total);
    let verdicts = |c: &vipgate_engine::counters::Counters| c.forwarded + c.replied + c.dropped();
    assert_eq!(verdicts(c) - verdicts(&before), total, "every packet has one verdict");
}
