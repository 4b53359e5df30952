//! The pipeline as a user sees it: frames in, verdicts, bytes out, counters.
//!
//! Input frames are written with etherparse's builder; outputs are read back with
//! etherparse, so neither side of a check uses our own wire code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse as ep;
use proptest::prelude::*;
use vipgate_engine::buf::PacketBuf;
use vipgate_engine::counters::DropReason;
use vipgate_engine::flow::FlowTable;
use vipgate_engine::maglev::{flow_hash, BackendId};
use vipgate_engine::numbering::Numbering;
use vipgate_engine::pipeline::{Pipeline, PipelineOptions, Verdict};
use vipgate_engine::table::{BackendSpec, BackendState, Encap, Snapshot, SnapshotSpec, VipProtocol, VipSpec};

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
const SEED: u64 = 24301;
const SECOND: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn backend(addr: &str, weight: u32, state: BackendState) -> BackendSpec {
    BackendSpec { id: BackendId::new(ip(addr)), weight, state }
}

fn vip(
    addr: &str,
    port: Option<u16>,
    protocol: VipProtocol,
    encap: Encap,
    backends: Vec<BackendSpec>,
) -> VipSpec {
    VipSpec { addr: ip(addr), port, protocol, encap, backends }
}

fn spec() -> SnapshotSpec {
    use BackendState::Active;
    SnapshotSpec {
        vips: vec![
            vip(
                "203.0.113.10",
                Some(8000),
                VipProtocol::Udp,
                Encap::Ipip,
                vec![backend("192.0.2.11", 100, Active), backend("192.0.2.12", 100, Active)],
            ),
            vip("203.0.113.10", None, VipProtocol::Tcp, Encap::Gue, vec![backend("192.0.2.21", 1, Active)]),
            vip("203.0.113.20", None, VipProtocol::Any, Encap::Gre, vec![backend("192.0.2.31", 1, Active)]),
            vip(
                "2001:db8:ab::10",
                Some(443),
                VipProtocol::Tcp,
                Encap::Ipip,
                vec![backend("2001:db8:1::11", 1, Active)],
            ),
            vip(
                "2001:db8:ab::10",
                None,
                VipProtocol::Udp,
                Encap::Gue,
                vec![backend("2001:db8:1::21", 1, Active)],
            ),
        ],
        // SEED, OUR_MAC and ROUTER_MAC are the example's.
        ..SnapshotSpec::example()
    }
}

fn pipeline() -> Pipeline {
    Pipeline::with_flow_table(FlowTable::with_keys(4096, (7, 9)), PipelineOptions::default())
}

fn eth() -> ep::PacketBuilderStep<ep::Ethernet2Header> {
    ep::PacketBuilder::ethernet2(CLIENT_MAC, OUR_MAC)
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth().ipv4(src, dst, 60).udp(sport, dport).write(&mut f, payload).unwrap();
    f
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth().ipv4(src, dst, 60).tcp(sport, dport, 1, 1024).ack(7).write(&mut f, payload).unwrap();
    f
}

fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth().ipv6(src, dst, 60).udp(sport, dport).write(&mut f, payload).unwrap();
    f
}

fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    eth().ipv6(src, dst, 60).tcp(sport, dport, 1, 1024).ack(7).write(&mut f, payload).unwrap();
    f
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

/// What the pipeline made of a frame, read with etherparse.
struct Out {
    verdict: Verdict,
    bytes: Vec<u8>,
}

fn run(p: &mut Pipeline, snap: &Snapshot, now: u64, frame: &[u8]) -> Out {
    let mut buf = PacketBuf::from_frame(frame);
    let verdict = p.process_one(snap, now, &mut buf);
    Out { verdict, bytes: buf.as_slice().to_vec() }
}

/// The IP packet inside a received frame (after Ethernet and VLAN, without padding).
fn inner_ip(frame: &[u8]) -> Vec<u8> {
    let s = ep::SlicedPacket::from_ethernet(frame).unwrap();
    match s.net.unwrap() {
        ep::NetSlice::Ipv4(v4) => {
            let h = v4.header();
            frame[frame.len() - v4.payload().payload.len() - h.slice().len()..][..usize::from(h.total_len())]
                .to_vec()
        }
        ep::NetSlice::Ipv6(v6) => {
            let total = 40 + usize::from(v6.header().payload_length());
            let start =
                frame.len() - v6.payload().payload.len() - (total - 40 - v6.payload().payload.len()) - 40;
            frame[start..start + total].to_vec()
        }
        other => panic!("not IP: {other:?}"),
    }
}

/// The outer headers of an encapsulated frame and what they carry.
#[derive(Debug)]
struct Tunnelled {
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    outer_src: IpAddr,
    outer_dst: IpAddr,
    outer_protocol: u8,
    ttl: u8,
    carried: Vec<u8>,
}

fn read_outer(frame: &[u8]) -> Tunnelled {
    let (eth, rest) = ep::Ethernet2Header::from_slice(frame).unwrap();
    match eth.ether_type {
        ep::EtherType::IPV4 => {
            let (ip, payload) = ep::Ipv4Header::from_slice(rest).unwrap();
            assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "outer IPv4 checksum");
            assert_eq!(usize::from(ip.total_len), rest.len(), "outer total length");
            Tunnelled {
                eth_src: eth.source,
                eth_dst: eth.destination,
                outer_src: Ipv4Addr::from(ip.source).into(),
                outer_dst: Ipv4Addr::from(ip.destination).into(),
                outer_protocol: ip.protocol.0,
                ttl: ip.time_to_live,
                carried: payload.to_vec(),
            }
        }
        ep::EtherType::IPV6 => {
            let (ip, payload) = ep::Ipv6Header::from_slice(rest).unwrap();
            assert_eq!(usize::from(ip.payload_length), payload.len(), "outer payload length");
            Tunnelled {
                eth_src: eth.source,
                eth_dst: eth.destination,
                outer_src: Ipv6Addr::from(ip.source).into(),
                outer_dst: Ipv6Addr::from(ip.destination).into(),
                outer_protocol: ip.next_header.0,
                ttl: ip.hop_limit,
                carried: payload.to_vec(),
            }
        }
        other => panic!("outer ethertype {other:?}"),
    }
}

/// Asserts a forwarded frame: outer Ethernet to the router, outer source from the
/// config, TTL 64, and the inner packet byte for byte. Returns the outer destination.
fn assert_tunnel(input: &[u8], out: &Out, protocol: u8, encap_len: usize) -> (IpAddr, Vec<u8>) {
    assert_eq!(out.verdict, Verdict::Forward);
    let t = read_outer(&out.bytes);
    assert_eq!((t.eth_src, t.eth_dst), (OUR_MAC, ROUTER_MAC));
    let expected_src = if t.outer_dst.is_ipv4() { ip("198.51.100.1") } else { ip("2001:db8:ffff::1") };
    assert_eq!(t.outer_src, expected_src);
    assert_eq!((t.outer_protocol, t.ttl), (protocol, 64));
    assert_eq!(&t.carried[encap_len..], &inner_ip(input)[..], "inner packet changed");
    (t.outer_dst, t.carried[..encap_len].to_vec())
}

fn maglev_choice(
    snap: &Snapshot,
    vip_index: usize,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sp: u16,
    dp: u16,
) -> IpAddr {
    let pool = &snap.pools()[snap.vips()[vip_index].pool as usize];
    pool.pick(flow_hash(SEED, src, dst, proto, sp, dp)).unwrap().1.id.addr
}

#[test]
fn udp_v4_to_vip_goes_ipip_to_the_maglev_backend() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let mut seen = std::collections::HashSet::new();
    for sport in 40000..40064 {
        let frame = udp4([198, 51, 100, 7], [203, 0, 113, 10], sport, 8000, b"heartbeat");
        let out = run(&mut p, &snap, SECOND, &frame);
        let (dst, _) = assert_tunnel(&frame, &out, 4, 0);
        let want = maglev_choice(&snap, 0, ip("198.51.100.7"), ip("203.0.113.10"), 17, sport, 8000);
        assert_eq!(dst, want, "sport {sport}");
        seen.insert(dst);
    }
    // 64 flows over two equal backends: both used.
    assert_eq!(seen.len(), 2);
    assert_eq!(p.counters().forwarded, 64);
    assert_eq!(p.counters().flow_misses, 64);
}

#[test]
fn tcp_v4_any_port_goes_gue() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let frame = tcp4([198, 51, 100, 7], [203, 0, 113, 10], 40000, 443, b"GET / HTTP/1.0\r\n\r\n");
    let out = run(&mut p, &snap, SECOND, &frame);
    let (dst, encap) = assert_tunnel(&frame, &out, 17, 12);
    assert_eq!(dst, ip("192.0.2.21"));
    let (udp, _) = ep::UdpHeader::from_slice(&encap).unwrap();
    assert_eq!(udp.destination_port, 6080);
    assert!(udp.source_port >= 0xc000, "GUE source port {} outside 49152..", udp.source_port);
    assert_eq!(usize::from(udp.length), 8 + 4 + inner_ip(&frame).len());
    assert_eq!(udp.checksum, 0, "no UDP checksum over IPv4");
    // GUE variant 0, data, Hlen 0, protocol 4 (IPv4).
    assert_eq!(&encap[8..12], &[0x00, 4, 0, 0]);
}

#[test]
fn any_protocol_vip_goes_gre_and_answers_ping() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let frame = tcp4([198, 51, 100, 7], [203, 0, 113, 20], 40000, 80, b"x");
    let out = run(&mut p, &snap, SECOND, &frame);
    let (dst, encap) = assert_tunnel(&frame, &out, 47, 4);
    assert_eq!(dst, ip("192.0.2.31"));
    assert_eq!(encap, [0x00, 0x00, 0x08, 0x00]);

    let mut ping = Vec::new();
    eth()
        .ipv4([198, 51, 100, 7], [203, 0, 113, 20], 60)
        .icmpv4_echo_request(9, 3)
        .write(&mut ping, b"ping")
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &ping);
    assert_eq!(out.verdict, Verdict::Reply);
    let h = ep::PacketHeaders::from_ethernet_slice(&out.bytes).unwrap();
    let Some(ep::LinkHeader::Ethernet2(e)) = h.link else { panic!() };
    assert_eq!((e.source, e.destination), (OUR_MAC, CLIENT_MAC));
    let Some(ep::NetHeaders::Ipv4(ip4, _)) = h.net else { panic!() };
    assert_eq!((ip4.source, ip4.destination), ([203, 0, 113, 20], [198, 51, 100, 7]));
    assert_eq!(ip4.header_checksum, ip4.calc_header_checksum());
    let Some(ep::TransportHeader::Icmpv4(icmp)) = h.transport else { panic!() };
    assert_eq!(icmp.icmp_type, ep::Icmpv4Type::EchoReply(ep::IcmpEchoHeader { id: 9, seq: 3 }));
    assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(b"ping"));
    assert_eq!(h.payload.slice(), b"ping");
    assert_eq!(p.counters().echo_replies, 1);
}

#[test]
fn ipv6_vips_go_ipv6_in_ipv6_and_gue_with_checksum() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let mut frame = Vec::new();
    eth()
        .ipv6(v6("2001:db8:c::7"), v6("2001:db8:ab::10"), 60)
        .tcp(40000, 443, 1, 1024)
        .write(&mut frame, b"hi")
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &frame);
    let (dst, _) = assert_tunnel(&frame, &out, 41, 0);
    assert_eq!(dst, ip("2001:db8:1::11"));

    let mut frame = Vec::new();
    eth()
        .ipv6(v6("2001:db8:c::7"), v6("2001:db8:ab::10"), 60)
        .udp(40000, 53)
        .write(&mut frame, b"query")
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &frame);
    let (dst, encap) = assert_tunnel(&frame, &out, 17, 12);
    assert_eq!(dst, ip("2001:db8:1::21"));
    let (udp, _) = ep::UdpHeader::from_slice(&encap).unwrap();
    let t = read_outer(&out.bytes);
    let IpAddr::V6(d) = t.outer_dst else { panic!() };
    let expect = udp.calc_checksum_ipv6_raw(v6("2001:db8:ffff::1"), d.octets(), &t.carried[8..]).unwrap();
    assert_eq!(udp.checksum, expect, "UDP checksum over IPv6");
    assert_eq!(&encap[8..12], &[0x00, 41, 0, 0]);
}

#[test]
fn vlan_tagged_frames_are_forwarded_untagged() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let mut frame = Vec::new();
    eth()
        .single_vlan(ep::VlanId::try_new(42).unwrap())
        .ipv4([198, 51, 100, 7], [203, 0, 113, 10], 60)
        .udp(40000, 8000)
        .write(&mut frame, b"tagged")
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &frame);
    assert_tunnel(&frame, &out, 4, 0);
}

fn drop_case(frame: &[u8], reason: DropReason) {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let out = run(&mut p, &snap, SECOND, frame);
    assert_eq!(out.verdict, Verdict::Drop(reason));
    assert_eq!(out.bytes, frame, "a dropped packet is left as received");
    assert_eq!(p.counters().drop_count(reason), 1);
    assert_eq!(p.counters().rx_packets, 1);
}

#[test]
fn drops_have_reasons() {
    // In a VIP subnet, no VIP there.
    drop_case(&udp4([198, 51, 100, 7], [203, 0, 113, 99], 1, 8000, b"x"), DropReason::NoVip);
    // The VIP's address, but a port and protocol it does not take.
    drop_case(&udp4([198, 51, 100, 7], [203, 0, 113, 10], 1, 9999, b"x"), DropReason::NoVip);
    // Outside every subnet.
    drop_case(&udp4([198, 51, 100, 7], [192, 0, 2, 200], 1, 8000, b"x"), DropReason::NotVip);
    // Another host's MAC.
    let mut other = udp4([198, 51, 100, 7], [203, 0, 113, 10], 1, 8000, b"x");
    other[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
    drop_case(&other, DropReason::OtherMac);
    // TTL 0.
    let mut f = Vec::new();
    eth().ipv4([198, 51, 100, 7], [203, 0, 113, 10], 0).udp(1, 8000).write(&mut f, b"x").unwrap();
    drop_case(&f, DropReason::TtlExpired);
    // A truncated IPv4 header.
    let f = udp4([198, 51, 100, 7], [203, 0, 113, 10], 1, 8000, b"x");
    drop_case(&f[..30], DropReason::Malformed);
    // A UDP length beyond the packet.
    let mut f = udp4([198, 51, 100, 7], [203, 0, 113, 10], 1, 8000, b"x");
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&200u16.to_be_bytes());
    drop_case(&f, DropReason::Malformed);
    // LLDP.
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&OUR_MAC);
    f[12..14].copy_from_slice(&[0x88, 0xcc]);
    drop_case(&f, DropReason::NotIp);
    // QinQ.
    let mut f = Vec::new();
    eth()
        .double_vlan(ep::VlanId::try_new(1).unwrap(), ep::VlanId::try_new(2).unwrap())
        .ipv4([198, 51, 100, 7], [203, 0, 113, 10], 60)
        .udp(1, 8000)
        .write(&mut f, b"x")
        .unwrap();
    drop_case(&f, DropReason::Unsupported);
    // UDP to one of our own addresses.
    drop_case(&udp4([198, 51, 100, 7], [198, 51, 100, 1], 1, 8000, b"x"), DropReason::NotVip);
}

#[test]
fn arp_answered_for_our_addresses_only() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let arp = |target: [u8; 4]| {
        let mut f = Vec::new();
        ep::PacketBuilder::ethernet2(ROUTER_MAC, [0xff; 6])
            .arp(
                ep::ArpPacket::new(
                    ep::ArpHardwareId::ETHERNET,
                    ep::EtherType::IPV4,
                    ep::ArpOperation::REQUEST,
                    &ROUTER_MAC,
                    &[198, 51, 100, 254],
                    &[0; 6],
                    &target,
                )
                .unwrap(),
            )
            .write(&mut f)
            .unwrap();
        f
    };
    let out = run(&mut p, &snap, 0, &arp([198, 51, 100, 1]));
    assert_eq!(out.verdict, Verdict::Reply);
    let h = ep::PacketHeaders::from_ethernet_slice(&out.bytes).unwrap();
    let Some(ep::LinkHeader::Ethernet2(e)) = h.link else { panic!() };
    assert_eq!((e.source, e.destination), (OUR_MAC, ROUTER_MAC));
    let Some(ep::NetHeaders::Arp(a)) = h.net else { panic!() };
    assert_eq!(a.operation, ep::ArpOperation::REPLY);
    assert_eq!((a.sender_hw_addr(), a.sender_protocol_addr()), (&OUR_MAC[..], &[198, 51, 100, 1][..]));
    assert_eq!((a.target_hw_addr(), a.target_protocol_addr()), (&ROUTER_MAC[..], &[198, 51, 100, 254][..]));

    let out = run(&mut p, &snap, 0, &arp([198, 51, 100, 77]));
    assert_eq!(out.verdict, Verdict::Drop(DropReason::NotVip));
    // Not for a VIP either: VIP subnets are routed to us, never resolved.
    let out = run(&mut p, &snap, 0, &arp([203, 0, 113, 10]));
    assert_eq!(out.verdict, Verdict::Drop(DropReason::NotVip));
    assert_eq!(p.counters().arp_replies, 1);
}

#[test]
fn neighbour_solicitation_answered_for_our_address() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let target: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    let router: Ipv6Addr = "fe80::fe".parse().unwrap();
    let solicited: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&ROUTER_MAC);
    let mut f = Vec::new();
    ep::PacketBuilder::ethernet2(ROUTER_MAC, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(router.octets(), solicited.octets(), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut f, &ns[8..])
        .unwrap();
    let out = run(&mut p, &snap, 0, &f);
    assert_eq!(out.verdict, Verdict::Reply, "{:?}", p.counters());
    let (e, rest) = ep::Ethernet2Header::from_slice(&out.bytes).unwrap();
    assert_eq!((e.source, e.destination), (OUR_MAC, ROUTER_MAC));
    let (ip6, icmp) = ep::Ipv6Header::from_slice(rest).unwrap();
    assert_eq!((ip6.source, ip6.destination, ip6.hop_limit), (target.octets(), router.octets(), 255));
    assert_eq!(usize::from(ip6.payload_length), icmp.len());
    let (hdr, body) = ep::Icmpv6Header::from_slice(icmp).unwrap();
    assert_eq!(
        hdr.icmp_type,
        ep::Icmpv6Type::NeighborAdvertisement(ep::icmpv6::NeighborAdvertisementHeader {
            router: false,
            solicited: true,
            r#override: true,
        })
    );
    assert_eq!(hdr.checksum, hdr.icmp_type.calc_checksum(ip6.source, ip6.destination, body).unwrap());
    assert_eq!(&body[..16], &target.octets());
    assert_eq!(&body[16..], &[2, 1, 2, 0, 0, 0, 0, 1]);
    assert_eq!(p.counters().nd_replies, 1);
}

#[test]
fn ping_to_our_addresses_is_answered() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let mut f = Vec::new();
    eth()
        .ipv4([198, 51, 100, 7], [198, 51, 100, 1], 60)
        .icmpv4_echo_request(1, 1)
        .write(&mut f, b"abc")
        .unwrap();
    assert_eq!(run(&mut p, &snap, 0, &f).verdict, Verdict::Reply);
    let mut f = Vec::new();
    eth()
        .ipv6(v6("2001:db8:c::7"), v6("2001:db8:ffff::1"), 60)
        .icmpv6_echo_request(1, 1)
        .write(&mut f, b"abc")
        .unwrap();
    let out = run(&mut p, &snap, 0, &f);
    assert_eq!(out.verdict, Verdict::Reply);
    let h = ep::PacketHeaders::from_ethernet_slice(&out.bytes).unwrap();
    let Some(ep::NetHeaders::Ipv6(ip6, _)) = h.net else { panic!() };
    assert_eq!((ip6.source, ip6.destination), (v6("2001:db8:ffff::1"), v6("2001:db8:c::7")));
    let Some(ep::TransportHeader::Icmpv6(icmp)) = h.transport else { panic!() };
    assert_eq!(icmp.icmp_type, ep::Icmpv6Type::EchoReply(ep::IcmpEchoHeader { id: 1, seq: 1 }));
    assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(ip6.source, ip6.destination, b"abc").unwrap());
    // A ping with a bad checksum is not answered.
    let mut bad = f.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(run(&mut p, &snap, 0, &bad).verdict, Verdict::Drop(DropReason::Malformed));
    assert_eq!(p.counters().echo_replies, 2);
}

#[test]
fn too_big_with_df_gets_icmp_frag_needed_from_the_vip() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    // 1500-byte IP packet with DF: 1520 once in IPIP.
    let frame = udp4([198, 51, 100, 7], [203, 0, 113, 10], 40000, 8000, &[0xab; 1472]);
    let out = run(&mut p, &snap, SECOND, &frame);
    assert_eq!(out.verdict, Verdict::TooBigReply);
    let (e, rest) = ep::Ethernet2Header::from_slice(&out.bytes).unwrap();
    assert_eq!((e.source, e.destination), (OUR_MAC, CLIENT_MAC));
    let (ip4, icmp) = ep::Ipv4Header::from_slice(rest).unwrap();
    assert_eq!((ip4.source, ip4.destination), ([203, 0, 113, 10], [198, 51, 100, 7]));
    assert!(usize::from(ip4.total_len) <= 576);
    let (hdr, quoted) = ep::Icmpv4Header::from_slice(icmp).unwrap();
    assert_eq!(
        hdr.icmp_type,
        ep::Icmpv4Type::DestinationUnreachable(ep::icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1480
        })
    );
    assert_eq!(hdr.checksum, hdr.icmp_type.calc_checksum(quoted));
    assert_eq!(quoted, &inner_ip(&frame)[..quoted.len()]);
    assert_eq!(p.counters().drop_count(DropReason::TooBig), 1);
    assert_eq!(p.counters().icmp_too_big_sent, 1);
    assert_eq!(p.counters().replied, 0);
    // Its answer refused by the port: the packet is a too_big drop still, counted once.
    p.count_tx_full(0, out.verdict);
    assert_eq!(p.counters().drop_count(DropReason::TxFull), 0);
    assert_eq!(p.counters().dropped(), 1);

    // IPv6: packet too big, quoting up to 1280 bytes in all.
    let mut f = Vec::new();
    eth()
        .ipv6(v6("2001:db8:c::7"), v6("2001:db8:ab::10"), 60)
        .tcp(40000, 443, 1, 1024)
        .write(&mut f, &[1; 1440])
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &f);
    assert_eq!(out.verdict, Verdict::TooBigReply);
    let h = ep::PacketHeaders::from_ethernet_slice(&out.bytes).unwrap();
    let Some(ep::NetHeaders::Ipv6(ip6, _)) = h.net else { panic!() };
    assert_eq!((ip6.source, ip6.destination), (v6("2001:db8:ab::10"), v6("2001:db8:c::7")));
    assert_eq!(40 + usize::from(ip6.payload_length), 1280);
    let Some(ep::TransportHeader::Icmpv6(icmp)) = h.transport else { panic!() };
    assert_eq!(icmp.icmp_type, ep::Icmpv6Type::PacketTooBig { mtu: 1460 });
}

#[test]
fn too_big_icmp_is_rate_limited() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = Pipeline::with_flow_table(
        FlowTable::with_keys(64, (1, 2)),
        PipelineOptions {
            flow_capacity: 64,
            icmp_per_second: 10,
            icmp_burst: 3,
            ..PipelineOptions::default()
        },
    );
    let frame = udp4([198, 51, 100, 7], [203, 0, 113, 10], 40000, 8000, &[0xab; 1472]);
    let verdicts: Vec<Verdict> = (0..5).map(|_| run(&mut p, &snap, SECOND, &frame).verdict).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::TooBigReply).count(), 3);
    assert_eq!(p.counters().icmp_rate_limited, 2);
    assert_eq!(p.counters().drop_count(DropReason::TooBig), 5);
    // A tenth of a second later, one more token.
    assert_eq!(run(&mut p, &snap, SECOND + SECOND / 10, &frame).verdict, Verdict::TooBigReply);
}

#[test]
fn too_big_without_df_is_fragmented_outside() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let mut f = Vec::new();
    let mut ip4 =
        ep::Ipv4Header::new(8 + 1472, 60, ep::IpNumber::UDP, [198, 51, 100, 7], [203, 0, 113, 10]).unwrap();
    ip4.dont_fragment = false;
    eth()
        .ip(ep::IpHeaders::Ipv4(ip4, Default::default()))
        .udp(40000, 8000)
        .write(&mut f, &[0x5a; 1472])
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &f);
    assert_eq!(out.verdict, Verdict::Forward);
    let rest: Vec<PacketBuf> = p
        .take_extra()
        .map(|(i, b)| {
            assert_eq!(i, 0);
            b
        })
        .collect();
    assert_eq!(rest.len(), 1);
    // Reassemble the outer fragments with etherparse's view and compare.
    let mut whole = vec![0u8; 0];
    for frag in std::iter::once(out.bytes.clone()).chain(rest.iter().map(|b| b.as_slice().to_vec())) {
        let (_, r) = ep::Ethernet2Header::from_slice(&frag).unwrap();
        let (h, payload) = ep::Ipv4Header::from_slice(r).unwrap();
        assert!(usize::from(h.total_len) <= 1500);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let off = usize::from(h.fragment_offset.value()) * 8;
        assert_eq!(off, whole.len());
        whole.extend_from_slice(payload);
    }
    assert_eq!(whole, inner_ip(&f));
    assert_eq!(p.counters().outer_fragments, 2);
}

#[test]
fn icmp_errors_about_a_vip_flow_follow_the_flow() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    // The client's flow, then an ICMP error from a router about a packet the backend
    // sent from the VIP to the client.
    let mut backends = std::collections::HashSet::new();
    for sport in [40000u16, 40001, 40002, 40003, 40004, 40005] {
        let flow = udp4([198, 51, 100, 7], [203, 0, 113, 10], sport, 8000, b"hello");
        let (flow_backend, _) = assert_tunnel(&flow, &run(&mut p, &snap, SECOND, &flow), 4, 0);
        let reply = udp4([203, 0, 113, 10], [198, 51, 100, 7], 8000, sport, b"reply to you");
        let quoted = &reply[14..14 + 28];
        let mut err = Vec::new();
        ep::PacketBuilder::ethernet2(ROUTER_MAC, OUR_MAC)
            .ipv4([192, 0, 2, 254], [203, 0, 113, 10], 60)
            .icmpv4(ep::Icmpv4Type::DestinationUnreachable(ep::icmpv4::DestUnreachableHeader::Port))
            .write(&mut err, quoted)
            .unwrap();
        let out = run(&mut p, &snap, SECOND, &err);
        let (dst, _) = assert_tunnel(&err, &out, 4, 0);
        assert_eq!(dst, flow_backend, "sport {sport}");
        backends.insert(dst);
    }
    assert_eq!(backends.len(), 2, "the test covers both backends");
    assert_eq!(p.counters().icmp_errors_forwarded, 6);
}

#[test]
fn fragments_of_a_datagram_go_to_one_backend() {
    let snap = Snapshot::build(&spec()).unwrap();
    let mut p = pipeline();
    let frag = |offset: u16, more: bool, payload: &[u8]| {
        let mut h = ep::Ipv4Header::new(
            payload.len() as u16,
            60,
            ep::IpNumber::UDP,
            [198, 51, 100, 7],
            [203, 0, 113, 10],
        )
        .unwrap();
        h.dont_fragment = false;
        h.more_fragments = more;
        h.fragment_offset = ep::IpFragOffset::try_new(offset / 8).unwrap();
        h.identification = 77;
        h.header_checksum = h.calc_header_checksum();
        let mut f = Vec::new();
        ep::Ethernet2Header { source: CLIENT_MAC, destination: OUR_MAC, ether_type: ep::EtherType::IPV4 }
            .write(&mut f)
            .unwrap();
        h.write(&mut f).unwrap();
        f.extend_from_slice(payload);
        f
    };
    // The first fragment starts with a UDP header to port 8000.
    let mut first_payload = vec![0x9c, 0x40, 0x1f, 0x40, 0x05, 0xdc, 0, 0];
    first_payload.extend_from_slice(&[1; 1000]);
    let first = frag(0, true, &first_payload);
    let second = frag(1008, false, &[2; 500]);
    let a = run(&mut p, &snap, SECOND, &first);
    let b = run(&mut p, &snap, SECOND, &second);
    let (da, _) = assert_tunnel(&first, &a, 4, 0);
    let (db, _) = assert_tunnel(&second, &b, 4, 0);
    assert_eq!(da, db);
    let want = maglev_choice(&snap, 0, ip("198.51.100.7"), ip("203.0.113.10"), 17, 0, 0);
    assert_eq!(da, want, "fragments hash on the 3-tuple");
    assert_eq!(p.counters().fragments, 2);
}

/// A snapshot with one pool of `n` backends in given states, as generation `generation`,
/// numbered by `numbering` (one numbering for snapshots that follow each other).
fn pool_snapshot(
    numbering: &mut Numbering,
    generation: u64,
    backends: &[(u32, u32, BackendState)],
) -> Snapshot {
    let mut s = spec();
    s.generation = generation;
    s.vips = vec![vip(
        "203.0.113.10",
        Some(8000),
        VipProtocol::Udp,
        Encap::Ipip,
        backends
            .iter()
            .map(|&(i, w, st)| BackendSpec {
                id: BackendId::new(IpAddr::V4(Ipv4Addr::from(0xc000_0200 + i))),
                weight: w,
                state: st,
            })
            .collect(),
    )];
    Snapshot::build_from(&s, None, numbering).unwrap()
}

fn backend_of(p: &mut Pipeline, snap: &Snapshot, now: u64, sport: u16, fin: bool) -> Option<IpAddr> {
    let frame = udp4([198, 51, 100, 7], [203, 0, 113, 10], sport, 8000, if fin { b"bye" } else { b"hi" });
    let out = run(p, snap, now, &frame);
    match out.verdict {
        Verdict::Forward => Some(read_outer(&out.bytes).outer_dst),
        Verdict::Drop(DropReason::NoBackend) => None,
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Established flows stay on their backend across a snapshot that keeps it (active or
    /// draining); a draining backend takes no new flow; a removed or down backend's flows
    /// move to what Maglev picks now; two snapshots from one spec choose alike.
    #[test]
    fn stickiness_across_swaps(
        n in 2u32..12,
        change in 0u32..12,
        to_state in 0u8..3,
        sports in proptest::collection::vec(1024u16..65535, 1..40),
    ) {
        use BackendState::*;
        let change = change % n;
        let before: Vec<(u32, u32, BackendState)> = (0..n).map(|i| (i + 1, 10, Active)).collect();
        let mut after = before.clone();
        let new_state = [Draining, Down, Active][usize::from(to_state)];
        let removed = to_state == 2;
        if removed {
            after.remove(change as usize);
        } else {
            after[change as usize].2 = new_state;
        }
        let changed_addr = IpAddr::V4(Ipv4Addr::from(0xc000_0200 + change + 1));
        let mut numbering = Numbering::new();
        let s1 = pool_snapshot(&mut numbering, 1, &before);
        let s1_again = pool_snapshot(&mut Numbering::new(), 1, &before);
        let s2 = pool_snapshot(&mut numbering, 2, &after);
        let mut p = pipeline();
        let mut q = pipeline();
        let mut first = Vec::new();
        for &sp in &sports {
            let b = backend_of(&mut p, &s1, SECOND, sp, false).unwrap();
            // Every packet of the flow, and a pipeline with another snapshot built from the
            // same spec, agree.
            prop_assert_eq!(backend_of(&mut p, &s1, SECOND, sp, false), Some(b));
            prop_assert_eq!(backend_of(&mut q, &s1_again, SECOND, sp, false), Some(b));
            first.push(b);
        }
        for (&sp, &b) in sports.iter().zip(&first) {
            let now_b = backend_of(&mut p, &s2, 2 * SECOND, sp, false).unwrap();
            if b == changed_addr && (removed || new_state == Down) {
                prop_assert_ne!(now_b, changed_addr);
                let fresh = maglev_choice(&s2, 0, ip("198.51.100.7"), ip("203.0.113.10"), 17, sp, 8000);
                prop_assert_eq!(now_b, fresh);
            } else {
                prop_assert_eq!(now_b, b, "an established flow moved");
            }
        }
        // New flows (unseen ports) never land on a draining or down backend.
        if !removed {
            let mut fresh = pipeline();
            for sp in 1..200u16 {
                let b = backend_of(&mut fresh, &s2, SECOND, sp, false).unwrap();
                prop_assert_ne!(b, changed_addr);
            }
        }
    }

    /// Any bytes at all: a verdict, no panic, and every packet counted exactly once.
    #[test]
    fn arbitrary_frames_get_a_verdict(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..40)) {
        let snap = Snapshot::build(&spec()).unwrap();
        let mut p = pipeline();
        let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| {
            // Most random frames would be for another MAC: aim half of them at us.
            let mut f = f.clone();
            if f.len() >= 14 && f[0] & 1 == 0 {
                f[..6].copy_from_slice(&OUR_MAC);
                f[12] = [0x08, 0x86, 0x81, 0x08][usize::from(f[13] & 3)];
                f[13] = [0x00, 0xdd, 0x00, 0x06][usize::from(f[12] & 3)];
            }
            PacketBuf::from_frame(&f)
        }).collect();
        let originals: Vec<Vec<u8>> = bufs.iter().map(|b| b.as_slice().to_vec()).collect();
        let mut verdicts = vec![Verdict::Forward; bufs.len()];
        p.process(&snap, SECOND, &mut bufs, &mut verdicts);
        let c = p.counters();
        prop_assert_eq!(c.rx_packets, frames.len() as u64);
        prop_assert_eq!(c.forwarded + c.replied + c.drops.iter().sum::<u64>(), c.rx_packets);
        for ((b, v), original) in bufs.iter().zip(&verdicts).zip(&originals) {
            if let Verdict::Drop(_) = v {
                prop_assert_eq!(b.as_slice(), &original[..], "a dropped packet was changed ({:?})", v);
            }
            if *v == Verdict::Forward {
                prop_assert!(destination(original).is_some_and(|d| snap.is_vip_addr(d)), "forwarded to a non-VIP");
            }
        }
    }

    /// No open relay: a packet is forwarded only when its destination is a VIP, whatever
    /// its address in or out of the VIP subnet, protocol and ports.
    #[test]
    fn only_vip_destinations_are_forwarded(
        last in 0u8..=255,
        inside in any::<bool>(),
        proto in prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(47u8), any::<u8>()],
        sport in any::<u16>(),
        dport in prop_oneof![Just(8000u16), Just(53u16), Just(443u16), any::<u16>()],
    ) {
        let snap = Snapshot::build(&spec()).unwrap();
        let dst = if inside { [203, 0, 113, last] } else { [192, 0, 2, last] };
        let frame = match proto {
            6 => tcp4([198, 51, 100, 7], dst, sport, dport, b"x"),
            17 => udp4([198, 51, 100, 7], dst, sport, dport, b"x"),
            p => {
                let mut f = Vec::new();
                eth().ipv4([198, 51, 100, 7], dst, 60).write(&mut f, ep::IpNumber(p), &[0u8; 24]).unwrap();
                f
            }
        };
        let out = run(&mut pipeline(), &snap, SECOND, &frame);
        if out.verdict == Verdict::Forward {
            prop_assert!(snap.is_vip_addr(IpAddr::V4(Ipv4Addr::from(dst))), "{:?} forwarded", dst);
        }
    }
}

/// The destination address of a frame, read with etherparse.
fn destination(frame: &[u8]) -> Option<IpAddr> {
    match ep::SlicedPacket::from_ethernet(frame).ok()?.net? {
        ep::NetSlice::Ipv4(ip) => Some(IpAddr::V4(ip.header().destination_addr())),
        ep::NetSlice::Ipv6(ip) => Some(IpAddr::V6(ip.header().destination_addr())),
        _ => None,
    }
}

#[test]
fn draining_backends_keep_flows_until_idle_timeout() {
    use BackendState::*;
    let mut numbering = Numbering::new();
    let s1 = pool_snapshot(&mut numbering, 1, &[(1, 1, Active), (2, 1, Active)]);
    let s2 = pool_snapshot(&mut numbering, 2, &[(1, 1, Draining), (2, 1, Draining)]);
    let mut p = pipeline();
    let b = backend_of(&mut p, &s1, SECOND, 5000, false).unwrap();
    // Every backend draining: the established flow still goes, a new one has nowhere to go.
    assert_eq!(backend_of(&mut p, &s2, 2 * SECOND, 5000, false), Some(b));
    assert_eq!(backend_of(&mut p, &s2, 2 * SECOND, 5001, false), None);
    assert_eq!(p.counters().drop_count(DropReason::NoBackend), 1);
    // After the UDP idle timeout (120 s) the flow is forgotten.
    assert_eq!(backend_of(&mut p, &s2, 200 * SECOND, 5000, false), None);
}

/// One row of the encapsulation table: a frame in, the exact frame out.
struct EncapCase {
    description: &'static str,
    input: Vec<u8>,
    expected_verdict: Verdict,
    expected_output: Vec<u8>,
}

fn encap_spec() -> SnapshotSpec {
    use BackendState::Active;
    let mut s = spec();
    let one = |a: &str| vec![backend(a, 1, Active)];
    s.vips = vec![
        vip("203.0.113.10", Some(8000), VipProtocol::Udp, Encap::Ipip, one("192.0.2.11")),
        vip("203.0.113.10", Some(8001), VipProtocol::Udp, Encap::Gue, one("192.0.2.12")),
        vip("203.0.113.10", Some(8002), VipProtocol::Udp, Encap::Gre, one("192.0.2.13")),
        vip("203.0.113.10", Some(8003), VipProtocol::Udp, Encap::Ipip, one("2001:db8:1::14")),
        vip("2001:db8:ab::10", Some(8000), VipProtocol::Udp, Encap::Ipip, one("2001:db8:1::11")),
        vip("2001:db8:ab::10", Some(8001), VipProtocol::Udp, Encap::Gue, one("2001:db8:1::12")),
        vip("2001:db8:ab::10", Some(8002), VipProtocol::Udp, Encap::Gre, one("2001:db8:1::13")),
    ];
    s
}

/// The expected frame, written with etherparse: outer Ethernet to the router, outer IP
/// from the tunnel source with TTL 64 (IPv4 ident 1: the first packet of a fresh pipeline),
/// then the encapsulation header, then `inner` unchanged.
fn expected_frame(backend: IpAddr, encap: Encap, inner: &[u8], flow: u32) -> Vec<u8> {
    let inner_v6 = inner[0] >> 4 == 6;
    let inner_proto = if inner_v6 { ep::IpNumber::IPV6 } else { ep::IpNumber::IPV4 };
    let mut encap_bytes = Vec::new();
    let proto = match encap {
        Encap::Ipip => inner_proto,
        Encap::Gre => {
            encap_bytes.extend_from_slice(&[0, 0]);
            encap_bytes.extend_from_slice(&(if inner_v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
            ep::IpNumber::GRE
        }
        Encap::Gue => ep::IpNumber::UDP,
    };
    let gue_payload: Vec<u8> = [&[0u8, inner_proto.0, 0, 0][..], inner].concat();
    let src_port = 0xc000 | (flow >> 18) as u16;
    let mut out = Vec::new();
    match backend {
        IpAddr::V4(b) => {
            ep::Ethernet2Header { source: OUR_MAC, destination: ROUTER_MAC, ether_type: ep::EtherType::IPV4 }
                .write(&mut out)
                .unwrap();
            let len = match encap {
                Encap::Gue => 8 + gue_payload.len(),
                _ => encap_bytes.len() + inner.len(),
            };
            let mut h = ep::Ipv4Header::new(len as u16, 64, proto, [198, 51, 100, 1], b.octets()).unwrap();
            h.identification = 1;
            h.dont_fragment = inner_v6 || (inner[6] & 0x40 != 0);
            h.header_checksum = h.calc_header_checksum();
            h.write(&mut out).unwrap();
            if encap == Encap::Gue {
                let u = ep::UdpHeader {
                    source_port: src_port,
                    destination_port: 6080,
                    length: (8 + gue_payload.len()) as u16,
                    checksum: 0,
                };
                u.write(&mut out).unwrap();
            }
        }
        IpAddr::V6(b) => {
            ep::Ethernet2Header { source: OUR_MAC, destination: ROUTER_MAC, ether_type: ep::EtherType::IPV6 }
                .write(&mut out)
                .unwrap();
            let len = match encap {
                Encap::Gue => 8 + gue_payload.len(),
                _ => encap_bytes.len() + inner.len(),
            };
            let h = ep::Ipv6Header {
                traffic_class: 0,
                flow_label: ep::Ipv6FlowLabel::try_new(flow & 0xfffff).unwrap(),
                payload_length: len as u16,
                next_header: proto,
                hop_limit: 64,
                source: v6("2001:db8:ffff::1"),
                destination: b.octets(),
            };
            h.write(&mut out).unwrap();
            if encap == Encap::Gue {
                let u = ep::UdpHeader::with_ipv6_checksum(src_port, 6080, &h, &gue_payload).unwrap();
                u.write(&mut out).unwrap();
            }
        }
    }
    if encap == Encap::Gue {
        out.extend_from_slice(&gue_payload);
    } else {
        out.extend_from_slice(&encap_bytes);
        out.extend_from_slice(inner);
    }
    out
}

#[test]
fn encapsulation_table_exact_bytes() {
    let snap = Snapshot::build(&encap_spec()).unwrap();
    let c4 = [198, 51, 100, 7];
    let c6 = "2001:db8:c::7";
    let mut cases = Vec::new();
    for (port, encap, backend_addr) in [
        (8000u16, Encap::Ipip, "192.0.2.11"),
        (8001, Encap::Gue, "192.0.2.12"),
        (8002, Encap::Gre, "192.0.2.13"),
        (8003, Encap::Ipip, "2001:db8:1::14"),
    ] {
        let input = udp4(c4, [203, 0, 113, 10], 40000, port, b"2G heartbeat");
        let flow = flow_hash(SEED, ip("198.51.100.7"), ip("203.0.113.10"), 17, 40000, port);
        cases.push(EncapCase {
            description: "IPv4 client",
            expected_output: expected_frame(ip(backend_addr), encap, &input[14..], flow),
            input,
            expected_verdict: Verdict::Forward,
        });
    }
    for (port, encap, backend_addr) in [
        (8000u16, Encap::Ipip, "2001:db8:1::11"),
        (8001, Encap::Gue, "2001:db8:1::12"),
        (8002, Encap::Gre, "2001:db8:1::13"),
    ] {
        let mut input = Vec::new();
        eth()
            .ipv6(v6(c6), v6("2001:db8:ab::10"), 60)
            .udp(40000, port)
            .write(&mut input, b"2G heartbeat")
            .unwrap();
        let flow = flow_hash(SEED, ip(c6), ip("2001:db8:ab::10"), 17, 40000, port);
        cases.push(EncapCase {
            description: "IPv6 client",
            expected_output: expected_frame(ip(backend_addr), encap, &input[14..], flow),
            input,
            expected_verdict: Verdict::Forward,
        });
    }
    // Ethernet padding after a short IPv4 packet is not part of what is tunnelled.
    let mut padded = udp4(c4, [203, 0, 113, 10], 40001, 8002, b"");
    let inner = padded[14..].to_vec();
    padded.resize(60, 0);
    cases.push(EncapCase {
        description: "padded minimum frame",
        expected_output: expected_frame(
            ip("192.0.2.13"),
            Encap::Gre,
            &inner,
            flow_hash(SEED, ip("198.51.100.7"), ip("203.0.113.10"), 17, 40001, 8002),
        ),
        input: padded,
        expected_verdict: Verdict::Forward,
    });
    for case in cases {
        let mut p = pipeline();
        let out = run(&mut p, &snap, SECOND, &case.input);
        assert_eq!(out.verdict, case.expected_verdict, "{}", case.description);
        assert_eq!(out.bytes, case.expected_output, "{}: frame differs", case.description);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The express lane for plain IPv4 and IPv6 TCP/UDP and the general path reach the
    /// same verdict, the same bytes and the same counters, on valid and damaged frames
    /// alike.
    #[test]
    fn express_and_general_paths_agree_per_packet(
        tcp in any::<bool>(),
        ipv6 in any::<bool>(),
        vip_host in prop_oneof![Just(10u8), Just(20), Just(99)],
        dport in prop_oneof![Just(8000u16), Just(443), any::<u16>()],
        sport in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((14usize..80, any::<u8>()), 0..3),
        cut in 0usize..80,
    ) {
        let mut frame = match (ipv6, tcp) {
            (false, true) => tcp4([198, 51, 100, 7], [203, 0, 113, vip_host], sport, dport, &payload),
            (false, false) => udp4([198, 51, 100, 7], [203, 0, 113, vip_host], sport, dport, &payload),
            (true, true) => tcp6(v6("2001:db8:c::7"), v6(&format!("2001:db8:ab::{vip_host}")), sport, dport, &payload),
            (true, false) => udp6(v6("2001:db8:c::7"), v6(&format!("2001:db8:ab::{vip_host}")), sport, dport, &payload),
        };
        for (at, v) in flips {
            if at < frame.len() {
                frame[at] = v;
            }
        }
        let keep = frame.len().saturating_sub(cut % 8 * (cut / 40));
        frame.truncate(keep.max(1));
        static SNAP: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
        let snap = SNAP.get_or_init(|| Snapshot::build(&spec()).unwrap());
        let general = PipelineOptions { general_path_only: true, oracle: true, ..PipelineOptions::default() };
        let mut fast = pipeline();
        let mut slow = Pipeline::with_flow_table(FlowTable::with_keys(4096, (7, 9)), general);
        let a = run(&mut fast, snap, SECOND, &frame);
        let b = run(&mut slow, snap, SECOND, &frame);
        prop_assert_eq!(a.verdict, b.verdict);
        prop_assert_eq!(a.bytes, b.bytes);
        prop_assert_eq!(verdicts_of(fast.counters()), verdicts_of(slow.counters()));
    }
}

/// A packet of the burst test: which flow, TCP flags, DF, payload size.
#[derive(Debug, Clone)]
struct BurstPacket {
    flow: usize,
    fin_or_rst: u8,
    dont_frag: bool,
    payload: usize,
}

fn burst_frame(p: &BurstPacket) -> Vec<u8> {
    // Flows to every kind of IPv4 VIP: UDP:8000 over IPIP, TCP any port over GUE, any
    // protocol over GRE, TCP to a VIP whose backend is IPv6, and a few that are no VIP's;
    // and to both IPv6 VIPs: TCP:443 over IPIP (IPv6 in IPv6), UDP over GUE.
    const FLOWS: [(&str, bool, u16); 8] = [
        ("203.0.113.10", false, 8000),
        ("203.0.113.10", true, 443),
        ("203.0.113.20", true, 80),
        ("203.0.113.20", false, 53),
        ("203.0.113.30", true, 22),
        ("203.0.113.10", false, 9),
        ("2001:db8:ab::10", true, 443),
        ("2001:db8:ab::10", false, 53),
    ];
    let (dst, tcp, dport) = FLOWS[p.flow % FLOWS.len()];
    let n = (p.flow / FLOWS.len()) as u8;
    let sport = 40000 + p.flow as u16;
    let ip = match dst.parse::<IpAddr>().unwrap() {
        IpAddr::V4(dst) => {
            let mut ip4 =
                ep::Ipv4Header::new(0, 60, ep::IpNumber::UDP, [198, 51, 100, 7 + n], dst.octets()).unwrap();
            ip4.dont_fragment = p.dont_frag;
            ep::IpHeaders::Ipv4(ip4, Default::default())
        }
        IpAddr::V6(dst) => {
            let src = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 7 + u16::from(n)).octets();
            let ip6 = ep::Ipv6Header {
                hop_limit: 60,
                source: src,
                destination: dst.octets(),
                ..Default::default()
            };
            ep::IpHeaders::Ipv6(ip6, Default::default())
        }
    };
    let payload = vec![0x5a; p.payload];
    let mut f = Vec::new();
    let b = eth().ip(ip);
    if tcp {
        let t = b.tcp(sport, dport, 1, 1024).ack(7);
        let t = match p.fin_or_rst % 4 {
            1 => t.fin(),
            2 => t.rst(),
            _ => t,
        };
        t.write(&mut f, &payload).unwrap();
    } else {
        b.udp(sport, dport).write(&mut f, &payload).unwrap();
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Over bursts of many flows (repeated within a burst and across bursts, new and
    /// known, closing, too big, to an IPv6 backend), with a backend going down between
    /// bursts, the express lane and the general path give the same verdicts, bytes and
    /// counters.
    #[test]
    fn express_and_general_paths_agree_over_bursts(
        bursts in proptest::collection::vec(
            proptest::collection::vec(
                (0usize..24, any::<u8>(), any::<bool>(), prop_oneof![Just(0usize), Just(10), 1400usize..1480]),
                1..48,
            ),
            1..4,
        ),
        down_after in 0usize..4,
    ) {
        let mut s = spec();
        s.vips.push(vip(
            "203.0.113.30",
            None,
            VipProtocol::Tcp,
            Encap::Ipip,
            vec![backend("2001:db8:1::31", 1, BackendState::Active)],
        ));
        let up = Snapshot::build(&s).unwrap();
        s.generation = 2;
        s.vips[0].backends[0].state = BackendState::Down;
        let down = Snapshot::build(&s).unwrap();
        let general = PipelineOptions { general_path_only: true, oracle: true, ..PipelineOptions::default() };
        let mut fast = pipeline();
        let mut slow = Pipeline::with_flow_table(FlowTable::with_keys(4096, (7, 9)), general);
        for (n, burst) in bursts.iter().enumerate() {
            let snap = if n >= down_after { &down } else { &up };
            let frames: Vec<Vec<u8>> = burst
                .iter()
                .map(|&(flow, fin_or_rst, dont_frag, payload)| {
                    burst_frame(&BurstPacket { flow, fin_or_rst, dont_frag, payload })
                })
                .collect();
            let now = SECOND * (1 + n as u64);
            let mut outs = Vec::new();
            for p in [&mut fast, &mut slow] {
                let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
                let mut verdicts = vec![Verdict::Forward; bufs.len()];
                p.process(snap, now, &mut bufs, &mut verdicts);
                let extra: Vec<(usize, Vec<u8>)> = p.take_extra().map(|(i, b)| (i, b.as_slice().to_vec())).collect();
                let bytes: Vec<Vec<u8>> = bufs.iter().map(|b| b.as_slice().to_vec()).collect();
                outs.push((verdicts, bytes, extra));
            }
            prop_assert_eq!(&outs[0], &outs[1], "burst {}", n);
            prop_assert_eq!(verdicts_of(fast.counters()), verdicts_of(slow.counters()), "burst {}", n);
        }
    }
}

/// A burst longer than the pipeline's chunk (100 packets, the config allows 256): a packet
/// the port refuses is taken out of its own VIP's traffic, whichever chunk it was in, and
/// with counters counted at once or at the end of each chunk.
#[test]
fn a_refused_packet_of_a_long_burst_is_taken_out_of_its_own_vips_traffic() {
    use std::sync::Arc;
    use vipgate_engine::stats::TrafficCounters;
    let snap = Snapshot::build(&spec()).unwrap();
    // Packets 0..64 to the UDP VIP (VIP 0), 64..100 to the TCP one (VIP 1).
    let frames: Vec<Vec<u8>> = (0..100u16)
        .map(|i| match i {
            0..64 => udp4([198, 51, 100, 7], [203, 0, 113, 10], 40000 + i, 8000, b"x"),
            _ => tcp4([198, 51, 100, 8], [203, 0, 113, 10], 40000 + i, 443, b"yy"),
        })
        .collect();
    for slots in [snap.traffic_slots(), 20_000] {
        let mut p = pipeline();
        let counters = Arc::new(TrafficCounters::new(snap.generation(), slots));
        p.set_traffic(counters.clone());
        let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
        let mut verdicts = vec![Verdict::Forward; bufs.len()];
        p.process(&snap, SECOND, &mut bufs, &mut verdicts);
        assert!(verdicts.iter().all(|v| *v == Verdict::Forward), "{slots} slots");
        p.count_tx_full(6, Verdict::Forward);
        p.count_tx_full(70, Verdict::Forward);
        let packets = |v: usize| {
            let base = snap.vips()[v].counter_base as usize;
            let n = snap.pools()[snap.vips()[v].pool as usize].backends().len();
            (base..base + n).map(|s| counters.get(s).0).sum::<u64>()
        };
        assert_eq!((packets(0), packets(1)), (63, 35), "{slots} slots");
        assert_eq!(p.counters().forwarded, 98);
    }
}

/// A flood of new flows (every packet of four bursts a new flow, to every kind of VIP) turns
/// on the first pass's Maglev hash and ring prefetch after the first burst: the verdicts,
/// bytes and counters stay the general path's, GUE's source port included.
#[test]
fn a_flood_of_new_flows_is_forwarded_as_the_general_path_forwards_it() {
    let snap = Snapshot::build(&spec()).unwrap();
    let general = PipelineOptions { general_path_only: true, oracle: true, ..PipelineOptions::default() };
    let mut fast = pipeline();
    let mut slow = Pipeline::with_flow_table(FlowTable::with_keys(4096, (7, 9)), general);
    for burst in 0..4usize {
        let frames: Vec<Vec<u8>> = (0..32)
            .map(|i| {
                burst_frame(&BurstPacket {
                    flow: burst * 32 + i,
                    fin_or_rst: 0,
                    dont_frag: true,
                    payload: 10,
                })
            })
            .collect();
        let mut outs = Vec::new();
        for p in [&mut fast, &mut slow] {
            let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
            let mut verdicts = vec![Verdict::Forward; bufs.len()];
            p.process(&snap, SECOND, &mut bufs, &mut verdicts);
            outs.push((verdicts, bufs.iter().map(|b| b.as_slice().to_vec()).collect::<Vec<_>>()));
        }
        assert_eq!(outs[0], outs[1], "burst {burst}");
        assert_eq!(verdicts_of(fast.counters()), verdicts_of(slow.counters()), "burst {burst}");
        assert!(outs[0].0.iter().filter(|v| **v == Verdict::Forward).count() >= 20, "burst {burst}");
    }
    assert!(fast.counters().flow_misses >= 80, "{}", fast.counters().flow_misses);
    assert_eq!(slow.counters().express_forwarded, 0);
    assert!(fast.counters().express_forwarded > 0, "{:?}", fast.counters());
}

/// The counters two pipelines must agree on: all but which path forwarded a packet.
fn verdicts_of(c: &vipgate_engine::counters::Counters) -> vipgate_engine::counters::Counters {
    vipgate_engine::counters::Counters { express_forwarded: 0, ..c.clone() }
}

/// Plain TCP and UDP to VIPs the lane serves (IPv4 over IPIP and GUE, IPv6 in IPv6) takes
/// the express lane: nearly every packet, new flows and known ones; with the lane off,
/// none. Without this, a lane that always declined would pass every other test.
#[test]
fn plain_tcp_and_udp_take_the_express_lane() {
    let snap = Snapshot::build(&spec()).unwrap();
    let frames: Vec<Vec<u8>> = (0..300u16)
        .map(|i| match i % 3 {
            // (A frame on the wire is 60 bytes at least: the lane reads 54 of every one.)
            0 => udp4([198, 51, 100, 7], [203, 0, 113, 10], 20000 + i, 8000, b"heartbeat from a phone"),
            1 => tcp4([198, 51, 100, 8], [203, 0, 113, 10], 20000 + i, 5222, b"hb"),
            _ => tcp6(v6("2001:db8:c::7"), v6("2001:db8:ab::10"), 20000 + i, 443, b"hb"),
        })
        .collect();
    for general_path_only in [false, true] {
        let options = PipelineOptions { general_path_only, ..PipelineOptions::default() };
        let mut p = Pipeline::with_flow_table(FlowTable::with_keys(4096, (7, 9)), options);
        for round in 0..2u64 {
            for chunk in frames.chunks(32) {
                let mut bufs: Vec<PacketBuf> = chunk.iter().map(|f| PacketBuf::from_frame(f)).collect();
                let mut verdicts = vec![Verdict::Forward; bufs.len()];
                p.process(&snap, (round + 1) * SECOND, &mut bufs, &mut verdicts);
                assert!(verdicts.iter().all(|v| *v == Verdict::Forward), "{verdicts:?}");
            }
        }
        let c = p.counters();
        assert_eq!(c.forwarded, 600);
        if general_path_only {
            assert_eq!(c.express_forwarded, 0, "{c:?}");
        } else {
            assert!(c.express_forwarded >= 570, "95% or more through the lane: {c:?}");
        }
    }
}

/// Thousands of VIPs make the per-(VIP, backend) counters too large for the cache, and the
/// pipeline counts them at the end of each chunk instead of as each packet is forwarded:
/// the counts come out the same, and a packet the port refuses is taken back the same.
#[test]
fn large_traffic_counter_sets_count_the_same() {
    use std::sync::Arc;
    use vipgate_engine::stats::TrafficCounters;
    let snap = Snapshot::build(&spec()).unwrap();
    let frames: Vec<Vec<u8>> = (0..40u16)
        .map(|i| match i % 3 {
            0 => udp4([198, 51, 100, 7], [203, 0, 113, 10], 40000 + i, 8000, b"x"),
            1 => tcp4([198, 51, 100, 8], [203, 0, 113, 10], 40000 + i, 443, b"yy"),
            _ => udp4([198, 51, 100, 9], [203, 0, 113, 20], 40000 + i, 53, b"zzz"),
        })
        .collect();
    let mut results = Vec::new();
    for slots in [snap.traffic_slots(), 20_000] {
        let mut p = pipeline();
        let counters = Arc::new(TrafficCounters::new(snap.generation(), slots));
        p.set_traffic(counters.clone());
        for round in 0..2u64 {
            let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
            let mut verdicts = vec![Verdict::Forward; bufs.len()];
            p.process(&snap, SECOND * (1 + round), &mut bufs, &mut verdicts);
            assert!(verdicts.iter().all(|v| *v == Verdict::Forward));
        }
        // The port refused the last burst's third packet.
        p.count_tx_full(2, Verdict::Forward);
        let seen: Vec<(u64, u64)> = (0..snap.traffic_slots()).map(|s| counters.get(s)).collect();
        assert_eq!(seen.iter().map(|c| c.0).sum::<u64>(), 79, "{slots} slots");
        results.push(seen);
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn jumbo_mtu_fragments_fit_their_buffers() {
    let mut s = spec();
    s.tunnel.mtu = 9000;
    let snap = Snapshot::build(&s).unwrap();
    let mut p = pipeline();
    let mut f = Vec::new();
    let mut ip4 =
        ep::Ipv4Header::new(8 + 8992, 60, ep::IpNumber::UDP, [198, 51, 100, 7], [203, 0, 113, 10]).unwrap();
    ip4.dont_fragment = false;
    eth()
        .ip(ep::IpHeaders::Ipv4(ip4, Default::default()))
        .udp(40000, 8000)
        .write(&mut f, &[7; 8992])
        .unwrap();
    let out = run(&mut p, &snap, SECOND, &f);
    assert_eq!(out.verdict, Verdict::Forward);
    let rest: Vec<PacketBuf> = p.take_extra().map(|(_, b)| b).collect();
    assert_eq!(rest.len(), 1);
    assert!(out.bytes.len() <= 14 + 9000 && rest[0].len() <= 14 + 9000);
    assert_eq!(out.bytes.len() - 34 + rest[0].len() - 34, 9020, "inner packet split without loss");
}

#[test]
fn a_tunnel_without_its_source_drops_and_leaves_the_packet() {
    let mut s = spec();
    s.tunnel.source_v4 = None;
    let snap = Snapshot::build(&s).unwrap();
    let mut p = pipeline();
    let frame = udp4([198, 51, 100, 7], [203, 0, 113, 10], 40000, 8000, b"x");
    let out = run(&mut p, &snap, SECOND, &frame);
    assert_eq!(out.verdict, Verdict::Drop(DropReason::Unsupported));
    assert_eq!(out.bytes, frame);
}

#[test]
fn spreading_keeps_order_and_gives_fragments_to_their_packet() {
    use vipgate_engine::spread::Spreader;
    let snap = Snapshot::build(&spec()).unwrap();
    let mut pipelines: Vec<Pipeline> = (0..3).map(|_| pipeline()).collect();
    let mut spreader = Spreader::new(3, 32, vipgate_engine::buf::DEFAULT_CAPACITY);
    // Small datagrams of many flows, and at index 5 one too big for the MTU without DF.
    let mut frames: Vec<Vec<u8>> =
        (0..20u16).map(|i| udp4([198, 51, 100, 7], [203, 0, 113, 10], 40000 + i, 8000, b"x")).collect();
    let mut big = Vec::new();
    let mut ip4 =
        ep::Ipv4Header::new(8 + 1600, 60, ep::IpNumber::UDP, [198, 51, 100, 8], [203, 0, 113, 10]).unwrap();
    ip4.dont_fragment = false;
    eth().ip(ep::IpHeaders::Ipv4(ip4, Default::default())).udp(1, 8000).write(&mut big, &[3; 1600]).unwrap();
    frames[5] = big;
    let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
    let mut verdicts = vec![Verdict::Drop(DropReason::Malformed); bufs.len()];
    let mut extra = Vec::new();
    spreader
        .process(&mut pipelines, &snap, SECOND, &mut bufs, &mut verdicts, |i, f| extra.push((i, f.to_vec())));
    assert!(verdicts.iter().all(|v| *v == Verdict::Forward));
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0].0, 5, "the fragment belongs to the big packet");
    // Every packet came back to its own place: its inner source port is still in order.
    for (i, b) in bufs.iter().enumerate() {
        let s = b.as_slice();
        if i != 5 {
            assert_eq!(u16::from_be_bytes([s[54], s[55]]), 40000 + i as u16, "packet {i} moved");
        }
    }
    assert!(
        spreader.lane_sizes().filter(|&k| k > 0).count() >= 2,
        "20 flows over 3 workers use more than one"
    );
    assert_eq!(spreader.lane_sizes().sum::<usize>(), 20);
}
