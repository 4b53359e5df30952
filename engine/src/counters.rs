//! What a worker counts: every packet once on the way in, and once as forwarded, answered,
//! or dropped with a named reason ([`DropReason`]). The names are part of vipgate's
//! interface (`ctl stats`, metrics, replay's JSON).

use crate::wire;

/// Why a packet was dropped. The names are part of vipgate's interface (counters, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A header could not be parsed: too short, or contradicting itself.
    Malformed,
    /// Neither IPv4, IPv6 nor ARP.
    NotIp,
    /// Addressed to something outside every VIP subnet (or to us, but not ours to take).
    NotVip,
    /// Inside a VIP subnet, but no VIP matches its address, protocol and port.
    NoVip,
    /// The VIP's pool has no backend that takes new flows.
    NoBackend,
    /// TTL or hop limit 0.
    TtlExpired,
    /// Too big for the egress MTU once encapsulated (an ICMP error may have been sent).
    TooBig,
    /// The port would not take it.
    TxFull,
    /// Well-formed, but of a kind vipgate does not handle (QinQ, GUE variant 1, ...).
    Unsupported,
    /// An Ethernet frame for another host's MAC address.
    OtherMac,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::NotIp,
        DropReason::NotVip,
        DropReason::NoVip,
        DropReason::NoBackend,
        DropReason::TtlExpired,
        DropReason::TooBig,
        DropReason::TxFull,
        DropReason::Unsupported,
        DropReason::OtherMac,
    ];

    /// The counter's name.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotIp => "not_ip",
            DropReason::NotVip => "not_vip",
            DropReason::NoVip => "no_vip",
            DropReason::NoBackend => "no_backend",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::TooBig => "too_big",
            DropReason::TxFull => "tx_full",
            DropReason::Unsupported => "unsupported",
            DropReason::OtherMac => "other_mac",
        }
    }

    pub(crate) fn from_wire(e: wire::Error) -> DropReason {
        match e {
            wire::Error::Truncated | wire::Error::Malformed => DropReason::Malformed,
            wire::Error::Unsupported => DropReason::Unsupported,
        }
    }
}

/// A worker's counters. Every packet is counted once in `rx` and once in one of
/// `forwarded`, `replied` or `drops`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (frames as received).
    pub rx_bytes: u64,
    /// Packets encapsulated toward a backend.
    pub forwarded: u64,
    /// Bytes sent encapsulated (outer headers included).
    pub forwarded_bytes: u64,
    /// Answers sent (ARP, ND, echo, ICMP too big).
    pub replied: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub drops: [u64; DropReason::ALL.len()],
    /// Packets whose flow was in the flow table.
    pub flow_hits: u64,
    /// Packets whose flow was not (Maglev picked the backend).
    pub flow_misses: u64,
    /// New flows remembered by evicting the least recent flow of a full window.
    pub flow_table_full: u64,
    /// Remembered flows whose backend went away (removed or down) and were moved.
    pub flow_moved: u64,
    /// IP fragments forwarded on the 3-tuple.
    pub fragments: u64,
    /// ICMP errors about a VIP's flow forwarded to its backend.
    pub icmp_errors_forwarded: u64,
    /// ICMP "too big" messages sent to clients.
    pub icmp_too_big_sent: u64,
    /// ICMP messages not sent because of the rate limit.
    pub icmp_rate_limited: u64,
    /// Outer IPv4 fragments sent for packets without DF above the MTU.
    pub outer_fragments: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbour advertisements sent.
    pub nd_replies: u64,
    /// Echo replies sent.
    pub echo_replies: u64,
    /// Packets the express lane forwarded (of `forwarded`): plain TCP and UDP to a VIP
    /// should nearly all go this way; the rest took the general path.
    pub express_forwarded: u64,
    /// New flows announced to the fleet's other appliances (with `[fleet]`).
    pub flows_announced: u64,
    /// New flows not announced: the queue to the control thread was full.
    pub flows_unannounced: u64,
    /// Flows remembered from another appliance's announcement.
    pub flows_adopted: u64,
}

impl Counters {
    /// The drop counter of `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All counters as `(name, value)`, drops as `drop_<reason>`, in [`Counters::NAMES`] order.
    pub fn named(&self) -> Vec<(String, u64)> {
        Counters::NAMES.iter().zip(self.values()).map(|(n, v)| ((*n).to_string(), v)).collect()
    }

    /// The names of [`Counters::values`], in order: the contract of `stats`, metrics and
    /// replay's JSON.
    pub const NAMES: [&'static str; COUNTER_COUNT] = [
        "rx_packets",
        "rx_bytes",
        "forwarded",
        "forwarded_bytes",
        "replied",
        "drop_malformed",
        "drop_not_ip",
        "drop_not_vip",
        "drop_no_vip",
        "drop_no_backend",
        "drop_ttl_expired",
        "drop_too_big",
        "drop_tx_full",
        "drop_unsupported",
        "drop_other_mac",
        "flow_hits",
        "flow_misses",
        "flow_table_full",
        "flow_moved",
        "fragments",
        "icmp_errors_forwarded",
        "icmp_too_big_sent",
        "icmp_rate_limited",
        "outer_fragments",
        "arp_replies",
        "nd_replies",
        "echo_replies",
        "express_forwarded",
        "flows_announced",
        "flows_unannounced",
        "flows_adopted",
    ];

    /// Every counter, in [`Counters::NAMES`] order.
    pub fn values(&self) -> [u64; COUNTER_COUNT] {
        let d = &self.drops;
        [
            self.rx_packets,
            self.rx_bytes,
            self.forwarded,
            self.forwarded_bytes,
            self.replied,
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            d[5],
            d[6],
            d[7],
            d[8],
            d[9],
            self.flow_hits,
            self.flow_misses,
            self.flow_table_full,
            self.flow_moved,
            self.fragments,
            self.icmp_errors_forwarded,
            self.icmp_too_big_sent,
            self.icmp_rate_limited,
            self.outer_fragments,
            self.arp_replies,
            self.nd_replies,
            self.echo_replies,
            self.express_forwarded,
            self.flows_announced,
            self.flows_unannounced,
            self.flows_adopted,
        ]
    }

    /// The counters of [`Counters::values`] output.
    pub fn from_values(v: &[u64; COUNTER_COUNT]) -> Counters {
        let mut drops = [0u64; DropReason::ALL.len()];
        drops.copy_from_slice(&v[5..15]);
        Counters {
            rx_packets: v[0],
            rx_bytes: v[1],
            forwarded: v[2],
            forwarded_bytes: v[3],
            replied: v[4],
            drops,
            flow_hits: v[15],
            flow_misses: v[16],
            flow_table_full: v[17],
            flow_moved: v[18],
            fragments: v[19],
            icmp_errors_forwarded: v[20],
            icmp_too_big_sent: v[21],
            icmp_rate_limited: v[22],
            outer_fragments: v[23],
            arp_replies: v[24],
            nd_replies: v[25],
            echo_replies: v[26],
            express_forwarded: v[27],
            flows_announced: v[28],
            flows_unannounced: v[29],
            flows_adopted: v[30],
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        let mut v = self.values();
        for (a, b) in v.iter_mut().zip(other.values()) {
            *a += b;
        }
        *self = Counters::from_values(&v);
    }

    /// Packets dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// How many counters [`Counters`] has.
pub const COUNTER_COUNT: usize = 31;
