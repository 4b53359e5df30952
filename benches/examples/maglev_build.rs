//! Builds one Maglev table, for instruction counts under callgrind:
//!
//! ```sh
//! cargo build --release -p vipgate-benches --example maglev_build
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/maglev_build 1000 65537
//! callgrind_annotate /tmp/cg.out | grep Ring::build
//! ```
//!
//! Arguments: backends (default 1000) and table size (default 65537).

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use vipgate_engine::maglev::{Backend, BackendId, Ring, DEFAULT_TABLE_SIZE};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let m: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(DEFAULT_TABLE_SIZE);
    let backends: Vec<Backend> = (0..n)
        .map(|i| Backend { id: BackendId::new(IpAddr::V4(Ipv4Addr::from(0xc000_0201u32 + i))), weight: 1 })
        .collect();
    match Ring::build(&backends, 24301, m) {
        Ok(ring) => {
            println!("{} backends, {} slots, slot 0 -> backend {}", n, ring.size(), ring.slots()[0]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("maglev_build: {e}");
            ExitCode::FAILURE
        }
    }
}
