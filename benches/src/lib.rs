//! Shared workloads of vipgate's benchmarks (criterion benches in `benches/`, examples for
//! callgrind in `examples/`); results and how to reproduce them are in
//! `benches/README.md`.

#![warn(missing_docs)]

use std::net::{IpAddr, Ipv4Addr};

use vipgate_engine::buf::PacketBuf;
use vipgate_engine::maglev::BackendId;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};
use vipgate_engine::stats::TrafficCounters;
use vipgate_engine::table::{BackendSpec, BackendState, Encap, Snapshot, SnapshotSpec, VipProtocol, VipSpec};
use vipgate_engine::wire::frame::{FrameRepr, Transport};
use vipgate_engine::wire::tcp::TcpFlags;
use vipgate_engine::wire::EthernetAddress;

/// Our MAC in the workloads.
pub const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// 16 VIPs (8 UDP on port 8000, 8 TCP any port) × 32 backends each, IPIP.
pub fn snapshot() -> Snapshot {
    let vips = (0..16u32)
        .map(|v| VipSpec {
            addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + (v / 2) as u8)),
            port: if v % 2 == 0 { Some(8000) } else { None },
            protocol: if v % 2 == 0 { VipProtocol::Udp } else { VipProtocol::Tcp },
            encap: Encap::Ipip,
            backends: (0..32u32)
                .map(|b| BackendSpec {
                    id: BackendId::new(IpAddr::V4(Ipv4Addr::from(0xc000_0200 + v * 32 + b + 1))),
                    weight: 100,
                    state: BackendState::Active,
                })
                .collect(),
        })
        .collect();
    Snapshot::build(&SnapshotSpec { vips, ..SnapshotSpec::example() }).expect("the benchmark snapshot builds")
}

/// A 60-byte Ethernet/IPv4 frame of flow `i`: one in four is UDP to port 8000, the rest
/// TCP (ACK) to port 5222; sources are spread over 256 carrier-gateway addresses with
/// many ports each, destinations over the 8 VIP addresses.
pub fn frame(i: u32) -> Vec<u8> {
    let udp = i.is_multiple_of(4);
    let vip = (i / 4 % 8) as u8;
    let sport = (i & 0xffff) as u16;
    let repr = FrameRepr {
        src_mac: EthernetAddress([2, 0, 0, 0, 0, 0xc1]),
        dst_mac: EthernetAddress(OUR_MAC),
        src: IpAddr::V4(Ipv4Addr::from(0xc633_6400 | (i >> 16 & 0xff))),
        dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + vip)),
        ttl: 60,
        ident: 0,
        dont_frag: true,
        transport: if udp {
            Transport::Udp { src_port: sport, dst_port: 8000 }
        } else {
            Transport::tcp(sport, 5222, TcpFlags::ACK)
        },
        payload: if udp { &[0; 10] } else { &[] },
        l4_checksum: false,
    };
    let mut f = vec![0; repr.buffer_len()];
    repr.emit(&mut f).expect("one family");
    f
}

/// A prepared workload: `flows` live flows in a pipeline's table, and a random order in
/// which to send packets of them.
pub struct Workload {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The pipeline, its flow table warm.
    pub pipeline: Pipeline,
    /// One frame per flow.
    pub frames: Vec<Vec<u8>>,
    /// The order of packets: indices into `frames`.
    pub order: Vec<u32>,
    /// Buffers of one burst.
    pub bufs: Vec<PacketBuf>,
    /// Verdicts of one burst.
    pub verdicts: Vec<Verdict>,
    next: usize,
}

/// The burst size of the workloads.
pub const BURST: usize = 32;

impl Workload {
    /// `flows` live flows, with a flow table of twice as many entries.
    pub fn new(flows: u32) -> Workload {
        let snapshot = snapshot();
        let mut pipeline = Pipeline::new(PipelineOptions {
            flow_capacity: (2 * flows as usize).max(1024),
            ..PipelineOptions::default()
        });
        let frames: Vec<Vec<u8>> = (0..flows).map(frame).collect();
        let mut bufs: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
        let mut verdicts = vec![Verdict::Forward; BURST];
        // Per-(VIP, backend) counters, as a worker keeps them.
        pipeline.set_traffic(std::sync::Arc::new(TrafficCounters::new(
            snapshot.generation(),
            snapshot.traffic_slots(),
        )));
        // Warm the table: every flow once.
        for chunk in frames.chunks(BURST) {
            for (b, f) in bufs.iter_mut().zip(chunk) {
                b.set_frame(f).expect("fits");
            }
            pipeline.process(
                &snapshot,
                1_000_000_000,
                &mut bufs[..chunk.len()],
                &mut verdicts[..chunk.len()],
            );
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let order = (0..(1u32 << 20).max(flows))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % u64::from(flows)) as u32
            })
            .collect();
        Workload { snapshot, pipeline, frames, order, bufs, verdicts, next: 0 }
    }

    /// Loads the next burst's frames into the buffers (what a NIC's receive does).
    #[inline]
    pub fn load_burst(&mut self) {
        for b in self.bufs.iter_mut() {
            let i = self.order[self.next] as usize;
            self.next += 1;
            if self.next == self.order.len() {
                self.next = 0;
            }
            b.set_frame(&self.frames[i]).expect("fits");
        }
    }

    /// Loads and processes one burst; returns how many were forwarded.
    #[inline]
    pub fn run_burst(&mut self) -> usize {
        self.load_burst();
        self.pipeline.process(&self.snapshot, 2_000_000_000, &mut self.bufs, &mut self.verdicts);
        self.verdicts.iter().filter(|v| **v == Verdict::Forward).count()
    }
}
