//! Hash flooding: 5-tuples crafted to collide in the flow table under a known key evict
//! each other there, and do not collide under the per-process key every real table gets.

use std::collections::HashSet;

use vipgate_engine::flow::{FlowKey, FlowTable, IdleTimeouts, Inserted, TimeoutClass};

const CAPACITY: usize = 1 << 16;

#[test]
fn crafted_collisions_under_a_known_key_spread_under_the_process_key() {
    // The attacker's model: a table keyed with (1, 2). Find 64 flows (one carrier
    // gateway, many source ports and addresses) whose first window is the same.
    let known = FlowTable::with_keys(CAPACITY, (1, 2));
    let target = known.home(known.hash(&FlowKey::new_v4(0xc633_6401, 0xcb00_710a, 6, 1024, 5222)));
    let mut crafted = Vec::new();
    let mut i: u32 = 0;
    while crafted.len() < 64 {
        let key = FlowKey::new_v4(0xc633_6400 | (i >> 16), 0xcb00_710a, 6, i as u16, 5222);
        if known.home(known.hash(&key)) == target {
            crafted.push(key);
        }
        i += 1;
    }
    // (Under the known key they all want one window of four entries; the test below shows
    // what flows crafted for both their windows do to such a table.)

    // Under a per-process key they spread like any other flows.
    let mut table = FlowTable::new(CAPACITY);
    let windows: HashSet<usize> = crafted.iter().map(|k| table.home(table.hash(k))).collect();
    assert!(windows.len() >= 56, "{} distinct windows of 64 flows", windows.len());
    let timeouts = IdleTimeouts::new(u64::MAX, u64::MAX, u64::MAX);
    for (n, k) in crafted.iter().enumerate() {
        let h = table.hash(k);
        let r = table.insert(k, h, n as u32, 1, &timeouts, TimeoutClass::Tcp);
        assert_eq!(r, Inserted::Fresh, "flow {n} found room without evicting another");
    }
    for (n, k) in crafted.iter().enumerate() {
        assert_eq!(table.lookup(k, table.hash(k), 2, &timeouts, None), Some(n as u32));
    }
}

/// The attack itself, shown working where the key is known, and failing where it is not:
/// flows crafted so that both their windows are the same two evict each other (eight
/// entries for sixty-four flows), and under the per-process key the same flows all find
/// room and stay found.
#[test]
fn crafted_flows_evict_each_other_under_the_known_key_only() {
    // A small table, so that crafting both windows takes a few million tries.
    const SMALL: usize = 1 << 10;
    let timeouts = IdleTimeouts::new(u64::MAX, u64::MAX, u64::MAX);
    let mut known = FlowTable::with_keys(SMALL, (1, 2));
    let windows = |t: &FlowTable, k: &FlowKey| {
        let (h, c) = t.hash_check(k);
        let mut w = t.homes(h, c);
        w.sort_unstable();
        w
    };
    let target = windows(&known, &FlowKey::new_v4(0xc633_6401, 0xcb00_710a, 17, 1024, 8000));
    let mut crafted = Vec::new();
    let mut i: u32 = 0;
    while crafted.len() < 64 {
        let key = FlowKey::new_v4(0xc633_6400 | (i >> 16), 0xcb00_710a, 17, i as u16, 8000);
        if windows(&known, &key) == target {
            crafted.push(key);
        }
        i += 1;
        assert!(i < 1 << 28, "crafting took too long");
    }
    // Under the known key: once the two windows are full, every new flow evicts one.
    let mut evicted = 0;
    for (n, k) in crafted.iter().enumerate() {
        if known.insert(k, known.hash(k), n as u32, 1, &timeouts, TimeoutClass::Udp) == Inserted::Evicted {
            evicted += 1;
        }
    }
    assert!(evicted >= 64 - 2 * vipgate_engine::flow::WINDOW, "{evicted} evictions");
    let kept =
        crafted.iter().filter(|k| known.lookup(k, known.hash(k), 2, &timeouts, None).is_some()).count();
    assert!(kept <= 2 * vipgate_engine::flow::WINDOW, "{kept} of 64 still found: the rest were pushed out");

    // Under a per-process key the same flows spread: no eviction, every one found.
    let mut table = FlowTable::new(SMALL);
    for (n, k) in crafted.iter().enumerate() {
        let r = table.insert(k, table.hash(k), n as u32, 1, &timeouts, TimeoutClass::Udp);
        assert_eq!(r, Inserted::Fresh, "flow {n} found room without evicting another");
    }
    for (n, k) in crafted.iter().enumerate() {
        assert_eq!(table.lookup(k, table.hash(k), 2, &timeouts, None), Some(n as u32));
    }
}
