//! `transit-sidecar run` and `transit-sidecar inspect`; see `docs/architecture.md`. The options
//! are in [`transit_sidecar::cli`], what is done with them in [`transit_sidecar::run::run`].

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    transit_sidecar::run::run(transit_sidecar::cli::Cli::parse())
}
