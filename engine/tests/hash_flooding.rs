//! Hash flooding: 5-tuples crafted to collide in the flow table under a known key do not
//! collide under the per-process key every real table gets.

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
    // Under the known key they all want one window of four entries: most of them can only
    // go to their second window, and a few more would evict each other.
    assert!(crafted.iter().all(|k| known.home(known.hash(k)) == target));

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
