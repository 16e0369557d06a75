//! `transit-broadcaster`: `serve` runs the broadcaster, `subscribe` prints a stream's updates.
//! [`cli`] holds the options, [`run`] what is done with them.
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::Parser as _;

mod cli;
mod run;

fn main() -> ExitCode {
    run::run(cli::Cli::parse())
}
