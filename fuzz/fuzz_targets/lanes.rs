//! The express lane against the general path: the same bursts through a pipeline with the
//! lane and one without, compared verdict by verdict, byte by byte, counter by counter
//! (all but `express_forwarded`, which says which path took a packet). The general path
//! runs as the oracle: VIPs and backends looked up the snapshot's own way, not through
//! the lane's tables.
//!
//! Random bytes seldom make a frame the lane would take (our MAC, IPv4 or IPv6, a VIP), so
//! each frame is built from a 16-byte record: which VIP and protocol, source address and
//! ports, TCP flags, DF, TTL, IPv4 options, payload length, and a byte of the frame
//! changed afterwards (anywhere, to anything), so that near misses of the lane's checks
//! are tried as well as what it takes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use vipgate_engine::buf::PacketBuf;
use vipgate_engine::counters::Counters;
use vipgate_engine::flow::FlowTable;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn frame(r: &[u8; 16]) -> Vec<u8> {
    let payload = vec![0x5a; usize::from(r[9]) * 6];
    let (sport, dport_any) = (u16::from_be_bytes([r[3], r[4]]), u16::from_be_bytes([r[5], r[6]]));
    let mut f = Vec::new();
    let eth = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xc1], OUR_MAC);
    let ttl = if r[8] & 0x80 != 0 { 0 } else { 64 };
    match r[0] % 6 {
        // IPv4 UDP to the UDP VIP's port, or another.
        k @ (0 | 1) => {
            let dport = if k == 0 { 8000 } else { dport_any };
            let b = eth.ipv4([198, 51, 100, r[1]], [203, 0, 113, 10 + (r[2] & 1)], ttl).udp(sport, dport);
            let _ = b.write(&mut f, &payload);
        }
        // IPv4 TCP to the TCP VIP, with flags.
        2 | 3 => {
            let mut b = eth.ipv4([198, 51, 100, r[1]], [203, 0, 113, 10], ttl).tcp(sport, dport_any, 1, 1024);
            if r[7] & 1 != 0 {
                b = b.fin();
            }
            if r[7] & 2 != 0 {
                b = b.rst();
            }
            if r[7] & 4 != 0 {
                b = b.syn();
            }
            let _ = b.ack(1).write(&mut f, &payload);
        }
        // IPv6 TCP to the IPv6 VIP's port, or UDP.
        k => {
            let mut src = [0x20, 0x01, 0x0d, 0xb8, 0, 0xc, 0, 0, 0, 0, 0, 0, 0, 0, 0, r[1]];
            src[14] = r[2];
            let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0xab, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
            let hop = if ttl == 0 { 0 } else { 64 };
            let b = eth.ipv6(src, dst, hop);
            let _ = if k == 4 {
                b.tcp(sport, 443, 1, 1024).ack(1).write(&mut f, &payload)
            } else {
                b.udp(sport, dport_any).write(&mut f, &payload)
            };
        }
    }
    if f.len() >= 34 && f[12..14] == [0x08, 0x00] && r[8] & 0x40 != 0 {
        // Clear DF, and fix the header checksum so that the frame stays valid.
        f[20] &= !0x40;
        let sum = checksum(&f[14..34], 10);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    // Pad to the Ethernet minimum, as a NIC would.
    if f.len() < 60 {
        f.resize(60, 0);
    }
    // One byte changed, where asked: a near miss.
    if r[10] & 1 != 0 {
        let at = usize::from(u16::from_be_bytes([r[11], r[12]])) % f.len();
        f[at] = r[13];
    }
    f
}

/// The IPv4 header checksum of `h` with its checksum field (at `at`) taken as zero.
fn checksum(h: &[u8], at: usize) -> u16 {
    let mut sum = 0u32;
    for i in (0..h.len()).step_by(2) {
        if i == at {
            continue;
        }
        sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn without_lane(c: &Counters) -> Counters {
    Counters { express_forwarded: 0, ..c.clone() }
}

fuzz_target!(|data: &[u8]| {
    let snap = common::snapshot();
    let mut fast = Pipeline::with_flow_table(FlowTable::with_keys(256, (3, 5)), PipelineOptions::default());
    let general = PipelineOptions { general_path_only: true, oracle: true, ..PipelineOptions::default() };
    let mut slow = Pipeline::with_flow_table(FlowTable::with_keys(256, (3, 5)), general);
    let mut now = 1_000_000_000u64;
    for burst in data.chunks(16 * 32) {
        let frames: Vec<Vec<u8>> = burst.chunks_exact(16).map(|r| frame(r.try_into().unwrap())).collect();
        let mut outs = Vec::new();
        for p in [&mut fast, &mut slow] {
            let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
            let mut verdicts = vec![Verdict::Forward; bufs.len()];
            p.process(snap, now, &mut bufs, &mut verdicts);
            let extra: Vec<(usize, Vec<u8>)> =
                p.take_extra().map(|(i, b)| (i, b.as_slice().to_vec())).collect();
            outs.push((verdicts, bufs.iter().map(|b| b.as_slice().to_vec()).collect::<Vec<_>>(), extra));
        }
        assert!(outs[0] == outs[1], "the lane and the general path differ on {frames:02x?}");
        assert_eq!(without_lane(fast.counters()), without_lane(slow.counters()));
        now += 250_000_000;
    }
    assert_eq!(slow.counters().express_forwarded, 0);
});
