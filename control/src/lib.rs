//! vipgate's control plane: everything that is not per packet.
//!
//! This crate turns configuration into forwarding snapshots for the engine, runs the
//! operator socket and the metrics endpoint, and provides the `vipgate` command.
//! Nothing here runs on a worker's data path.

#![warn(missing_docs, unreachable_pub)]

pub mod answer;
pub mod appliance;
pub mod bench;
pub mod bgp;
pub mod build;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod diff;
pub mod edit;
pub mod engine;
pub mod fleet;
pub mod health;
pub mod listen;
pub mod metrics;
pub mod overrides;
pub mod ports;
pub mod protocol;
pub mod replay;
pub mod soak;
pub mod state;
