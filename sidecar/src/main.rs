//! `transit-sidecar run` and `transit-sidecar inspect`; see `docs/architecture.md`. The options
//! are in [`transit_sidecar::cli`], what is done with them in [`transit_sidecar::run::run`].
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    transit_sidecar::run::run(transit_sidecar::cli::Cli::parse())
}
