//! `vipgate`: the command line.

use std::process::ExitCode;

use clap::Parser;
use vipgate_control::cli::{Cli, EXIT_NOT_BUILT};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // No subcommand is implemented in this build yet; say so plainly rather than
    // pretend to have done the work.
    eprintln!(
        "vipgate {}: not built yet in vipgate {}; this subcommand did nothing",
        cli.command.name(),
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(EXIT_NOT_BUILT as u8)
}
