//! Port drivers: where packets come from and go to.
//!
//! - [`pcap`]: read a capture, write one (what `vipgate replay` uses).
//!
//! The drivers sit outside the pipeline: the pipeline never does I/O.

pub mod pcap;
