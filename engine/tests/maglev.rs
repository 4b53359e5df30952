//! Maglev's table against the properties of the paper (Eisenbud et al., NSDI 2016, §3.4)
//! and against the paper's Pseudocode 1 written out plainly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vipgate_engine::maglev::{Backend, BackendId, Ring, DEFAULT_TABLE_SIZE, TABLE_SIZES};

const SEED: u64 = 24301;
const M: u32 = DEFAULT_TABLE_SIZE;

/// `n` backends in 192.0.2.0/24 and 198.51.100.0/24..., all of weight `w`.
fn pool(n: u32, w: u32) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            id: BackendId::new(IpAddr::V4(Ipv4Addr::from(
                0xc000_0200u32 + (i / 250) * 0x1_0000 + i % 250 + 1,
            ))),
            weight: w,
        })
        .collect()
}

/// Pseudocode 1 of the paper, as printed, with the permutation table computed up front:
/// `permutation[i][j] = (offset + j × skip) mod M`.
fn paper_populate(backends: &[BackendId], m: u32, seed: u64) -> Vec<i64> {
    let n = backends.len();
    let m = m as usize;
    let permutation: Vec<Vec<u32>> = backends
        .iter()
        .map(|b| {
            let (offset, skip) = b.offset_skip(seed, m as u32);
            (0..m).map(|j| ((offset as usize + j * skip as usize) % m) as u32).collect()
        })
        .collect();
    let mut next = vec![0usize; n];
    let mut entry = vec![-1i64; m];
    let mut filled = 0;
    loop {
        for i in 0..n {
            let mut c = permutation[i][next[i]] as usize;
            while entry[c] >= 0 {
                next[i] += 1;
                c = permutation[i][next[i]] as usize;
            }
            entry[c] = i as i64;
            next[i] += 1;
            filled += 1;
            if filled == m {
                return entry;
            }
        }
    }
}

#[test]
fn oracle_equal_weights_match_pseudocode_1() {
    for (n, m) in [(1, 251), (3, 251), (7, 4093), (10, M), (100, M), (257, 16381)] {
        let backends = pool(n, 100);
        let ring = Ring::build(&backends, SEED, m).unwrap();
        let ids: Vec<BackendId> = ring.backends().iter().map(|b| b.id).collect();
        let expected = paper_populate(&ids, m, SEED);
        let got: Vec<i64> = ring.slots().iter().map(|&s| i64::from(s)).collect();
        assert_eq!(got, expected, "n = {n}, m = {m}");
    }
}

#[test]
fn balance_equal_weights_within_one_percent() {
    for n in 2..=100 {
        let ring = Ring::build(&pool(n, 1), SEED, M).unwrap();
        let counts = ring.slot_counts();
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(f64::from(max) / f64::from(min) <= 1.01, "n = {n}: min {min}, max {max}");
        assert_eq!(counts.iter().sum::<u32>(), M);
    }
}

#[test]
fn weights_give_proportional_shares() {
    let cases: Vec<Vec<u32>> = vec![
        vec![1, 2, 3, 4],
        vec![100, 100, 50, 1],
        vec![1, 1000],
        vec![0, 7, 13, 0, 29],
        (1..=60).collect(),
        (0..40).map(|i| (i * 37 % 11) + 1).collect(),
    ];
    for weights in cases {
        let mut backends = pool(weights.len() as u32, 0);
        for (b, w) in backends.iter_mut().zip(&weights) {
            b.weight = *w;
        }
        let ring = Ring::build(&backends, SEED, M).unwrap();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        for (b, &count) in ring.backends().iter().zip(&ring.slot_counts()) {
            let ideal = f64::from(M) * f64::from(b.weight) / total as f64;
            let err = (f64::from(count) - ideal).abs();
            assert!(
                err <= 0.005 * f64::from(M),
                "weights {weights:?}: {} has {count}, ideal {ideal:.1}",
                b.id
            );
            if b.weight == 0 {
                assert_eq!(count, 0, "a weight-0 backend owns slots");
            }
        }
    }
}

/// How many of the slots owned by survivors before are owned by someone else after.
fn moved_survivor_slots(before: &Ring, after: &Ring) -> (usize, usize) {
    let owner = |r: &Ring, s: usize| r.backends()[usize::from(r.slots()[s])].id;
    let removed: Vec<BackendId> = before
        .backends()
        .iter()
        .map(|b| b.id)
        .filter(|id| !after.backends().iter().any(|a| a.id == *id))
        .collect();
    let mut held = 0;
    let mut moved = 0;
    for s in 0..before.slots().len() {
        let was = owner(before, s);
        if removed.contains(&was) {
            continue;
        }
        held += 1;
        if owner(after, s) != was {
            moved += 1;
        }
    }
    (moved, held)
}

#[test]
fn disruption_removing_one_backend_is_minimal() {
    for n in [10u32, 100, 1000] {
        let all = pool(n, 1);
        let before = Ring::build(&all, SEED, M).unwrap();
        for gone in [0usize, n as usize / 2, n as usize - 1] {
            let mut rest = all.clone();
            rest.remove(gone);
            let after = Ring::build(&rest, SEED, M).unwrap();
            let (moved, held) = moved_survivor_slots(&before, &after);
            let share = moved as f64 / held as f64;
            assert!(share <= 0.01, "n = {n}, removing #{gone}: {moved} of {held} survivor slots moved");
            // Every slot of the removed backend went to a survivor.
            assert!(after.slots().iter().all(|&s| usize::from(s) < rest.len()));
            // Adding it back restores the original table exactly.
            let restored = Ring::build(&all, SEED, M).unwrap();
            assert_eq!(restored, before);
        }
    }
}

/// FNV-1a over the slots (little-endian u16) and the backend order: an independent digest.
fn digest(ring: &Ring) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for b in ring.backends() {
        let (k, len) = b.id.key();
        k[..len].iter().copied().for_each(&mut eat);
    }
    for s in ring.slots() {
        s.to_le_bytes().into_iter().for_each(&mut eat);
    }
    h
}

#[test]
fn determinism_golden_digest() {
    // Pinned: if this changes, every appliance of a fleet would send flows elsewhere
    // after an upgrade. See the contract in engine/src/maglev.rs.
    let mut backends = pool(10, 100);
    backends[3].weight = 50;
    backends.push(Backend {
        id: BackendId {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11)),
            port: Some(8000),
        },
        weight: 100,
    });
    let ring = Ring::build(&backends, SEED, M).unwrap();
    assert_eq!(digest(&ring), GOLDEN_DIGEST, "digest {:#018x}", digest(&ring));
    let small = Ring::build(&pool(3, 1), 1, 251).unwrap();
    assert_eq!(&small.slots()[..16], GOLDEN_SMALL, "{:?}", &small.slots()[..16]);
}

// From engine/tests/reference/maglev.py, a separate implementation of the documented
// algorithm; it prints these values.
const GOLDEN_DIGEST: u64 = 0xdcf7_d77c_6f16_ab14;
const GOLDEN_SMALL: &[u16] = &[1, 0, 0, 2, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1];

#[test]
fn every_table_size_fills_every_slot() {
    for &m in TABLE_SIZES {
        let ring = Ring::build(&pool(7, 3), SEED, m).unwrap();
        assert_eq!(ring.slots().len(), m as usize);
        let counts = ring.slot_counts();
        assert!(counts.iter().all(|&c| c > 0), "m = {m}: {counts:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The order in which the config lists backends never matters.
    #[test]
    fn insertion_order_does_not_matter(n in 1u32..40, seed in any::<u64>(), rot in 0usize..40, weights in proptest::collection::vec(1u32..100, 40)) {
        let mut backends = pool(n, 1);
        for (b, w) in backends.iter_mut().zip(&weights) {
            b.weight = *w;
        }
        let a = Ring::build(&backends, seed, 4093).unwrap();
        backends.rotate_left(rot % n as usize);
        backends.reverse();
        let b = Ring::build(&backends, seed, 4093).unwrap();
        prop_assert_eq!(a, b);
    }

    /// Lookups land on a backend with weight, and agree with `ring[hash % M]`.
    #[test]
    fn lookup_is_ring_at_hash_mod_m(hash in any::<u32>(), n in 1u32..20) {
        let mut backends = pool(n, 5);
        backends[0].weight = 0;
        if n == 1 { backends[0].weight = 1; }
        let ring = Ring::build(&backends, SEED, 8191).unwrap();
        let i = ring.lookup(hash);
        prop_assert_eq!(i, ring.slots()[(hash % 8191) as usize]);
        prop_assert!(ring.backends()[usize::from(i)].weight > 0);
    }
}

/// The Python reference (engine/tests/reference/maglev.py) is run, and what it computes
/// from the documented formulas must be what this crate computes.
#[test]
fn reference_implementation_agrees() {
    use vipgate_engine::maglev::{flow_hash, hash64};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/maglev.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let value = |label: &str| -> String {
        let line =
            text.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {text}"));
        line[label.len()..].trim().to_string()
    };
    assert_eq!(value("hash64(0, '')"), format!("{:#x}", hash64(0, b"")));
    assert_eq!(value("hash64(24301, 'vipgate')"), format!("{:#x}", hash64(24301, b"vipgate")));
    let id = BackendId::new("192.0.2.11".parse().unwrap());
    assert_eq!(value("offset_skip 192.0.2.11"), format!("{:?}", id.offset_skip(SEED, M)));
    let (s, d): (IpAddr, IpAddr) = ("198.51.100.7".parse().unwrap(), "203.0.113.10".parse().unwrap());
    assert_eq!(value("flow_hash v4"), format!("{:#x}", flow_hash(SEED, s, d, 6, 40000, 8000)));
    let (s, d): (IpAddr, IpAddr) = ("2001:db8::7".parse().unwrap(), "2001:db8:ffff::10".parse().unwrap());
    assert_eq!(value("flow_hash v6"), format!("{:#x}", flow_hash(SEED, s, d, 17, 40000, 8000)));
    assert_eq!(value("golden digest"), format!("{GOLDEN_DIGEST:#x}"));
    assert_eq!(value("golden small"), format!("{GOLDEN_SMALL:?}"));
}
