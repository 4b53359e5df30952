//! Every wire parser on arbitrary bytes: the checked views and their Reprs, the L2 walk
//! and the IPv6 extension-header walk. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipgate_engine::wire::{arp, ethernet, gre, gue, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, vlan};

fuzz_target!(|data: &[u8]| {
    let _ = vlan::parse_l2(data);
    if let Ok(f) = ethernet::Frame::new_checked(data) {
        let _ = ethernet::Repr::parse(&f);
    }
    if let Ok(p) = vlan::Packet::new_checked(data) {
        let _ = vlan::Repr::parse(&p);
    }
    if let Ok(p) = arp::Packet::new_checked(data) {
        let _ = arp::Repr::parse(&p);
    }
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = ipv4::Repr::parse(&p);
    }
    if let Ok(p) = ipv4::Packet::new_checked_prefix(data) {
        let _ = ipv4::Repr::parse(&p);
    }
    if let Ok(p) = ipv6::Packet::new_checked(data) {
        let _ = ipv6::Repr::parse(&p);
        let _ = p.upper_layer();
    }
    if let Ok(p) = ipv6::Packet::new_checked_prefix(data) {
        let _ = p.upper_layer();
    }
    let _ = ipv6::FragmentRepr::parse(data);
    if let Ok(p) = tcp::Packet::new_checked(data) {
        let _ = tcp::Repr::parse(&p);
    }
    if let Ok(p) = udp::Packet::new_checked(data) {
        let _ = udp::Repr::parse(&p);
    }
    if let Ok(p) = icmpv4::Packet::new_checked(data) {
        let _ = icmpv4::Repr::parse(&p);
    }
    if let Ok(p) = icmpv6::Packet::new_checked(data) {
        let _ = icmpv6::Repr::parse(&p);
    }
    if let Ok(p) = gre::Packet::new_checked(data) {
        let _ = gre::Repr::parse(&p);
    }
    if let Ok(p) = gue::Packet::new_checked(data) {
        let _ = gue::Repr::parse(&p);
    }
});
