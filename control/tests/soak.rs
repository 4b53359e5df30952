//! The soak in its short mode (the long one: benches/examples/soak.rs): real workers on
//! the synth driver at full speed, a reload every 200 ms with backends flipping between
//! active, draining and down.

use std::time::Duration;

use vipgate_control::soak::{run, SoakSpec};

#[test]
fn churn_loses_nothing_and_moves_only_flows_of_backends_that_went_down() {
    let r = run(&SoakSpec {
        seconds: 4.0,
        workers: 2,
        flow_capacity: 1 << 18,
        flows_per_gateway: 2000,
        reload_every: Duration::from_millis(200),
        follow_flows: true,
    })
    .unwrap();
    assert!(r.reloads >= 10, "{r:?}");
    assert!(r.received > 10_000, "{r:?}");
    assert_eq!(r.received, r.sent + r.dropped, "in = out + drops: {r:?}");
    assert_eq!(r.moved_unexpected, 0, "{r:?}");
    assert!(r.moved_off_down > 0, "backends went down and their flows moved: {r:?}");
    assert!(r.flows_followed > 1000, "{r:?}");
}

#[test]
fn a_flow_table_past_capacity_loses_nothing() {
    let r = run(&SoakSpec {
        seconds: 3.0,
        workers: 2,
        flow_capacity: 1024,
        flows_per_gateway: 4000,
        reload_every: Duration::from_millis(200),
        follow_flows: false,
    })
    .unwrap();
    assert!(r.flow_table_full > 1000, "the table was driven past capacity: {r:?}");
    assert_eq!(r.received, r.sent + r.dropped, "in = out + drops: {r:?}");
    assert!(r.reloads >= 8, "{r:?}");
}
