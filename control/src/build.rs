//! From a validated config to an engine snapshot. The Maglev rings are built here, on the
//! control thread, never on a worker.

use std::net::IpAddr;

use vipgate_engine::numbering::Numbering;
use vipgate_engine::table::{
    BackendSpec, Interface, Snapshot, SnapshotSpec, TableError, Timeouts, Tunnel, VipSpec,
};
use vipgate_engine::wire::EthernetAddress;

use crate::config::Config;

/// Idle timeout of a TCP flow after FIN or RST.
pub const CLOSING_TIMEOUT_NS: u64 = 10 * 1_000_000_000;

/// The snapshot spec of `config` for the port at `port_index`, as generation `generation`.
pub fn snapshot_spec(config: &Config, port_index: usize, generation: u64) -> SnapshotSpec {
    let interface = match config.ports.get(port_index) {
        Some(p) => Interface { mac: p.mac, next_hop_mac: p.next_hop_mac, addresses: p.addresses.clone() },
        None => Interface {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            next_hop_mac: EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
            addresses: Vec::new(),
        },
    };
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    SnapshotSpec {
        generation,
        hash_seed: config.engine.hash_seed,
        table_size: config.engine.maglev_table_size,
        tunnel: Tunnel {
            source_v4: config.tunnel.source_v4,
            source_v6: config.tunnel.source_v6,
            mtu: config.tunnel.mtu,
            gue_port: config.tunnel.gue_port,
        },
        timeouts: Timeouts {
            tcp: ns(config.engine.tcp_idle_timeout),
            udp: ns(config.engine.udp_idle_timeout),
            closing: CLOSING_TIMEOUT_NS.min(ns(config.engine.tcp_idle_timeout)),
        },
        interface,
        subnets: config.subnets.iter().map(|s| (s.addr, s.len)).collect::<Vec<(IpAddr, u8)>>(),
        vips: config
            .vips
            .iter()
            .map(|v| VipSpec {
                addr: v.addr,
                port: v.port,
                protocol: v.protocol,
                encap: v.encap,
                backends: v
                    .backends
                    .iter()
                    .map(|b| BackendSpec { id: b.id, weight: b.weight, state: b.state })
                    .collect(),
            })
            .collect(),
    }
}

/// Builds the snapshot of `config` for its first port.
pub fn snapshot(config: &Config, generation: u64) -> Result<Snapshot, TableError> {
    Snapshot::build(&snapshot_spec(config, 0, generation))
}

/// Builds the snapshot of `config` for its first port with `numbering`, taking unchanged
/// rings from `previous` (see [`Snapshot::build_from`]) and building new ones on up to
/// `threads` threads.
pub fn snapshot_with(
    config: &Config,
    generation: u64,
    previous: Option<&Snapshot>,
    threads: usize,
    numbering: &mut Numbering,
) -> Result<Snapshot, TableError> {
    Snapshot::build_with(&snapshot_spec(config, 0, generation), previous, threads, numbering)
}
