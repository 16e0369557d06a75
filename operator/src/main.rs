//! `transit-operator`: `run` reconciles TransitStreams; `crd` prints the CRD YAML.
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "transit-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the TransitStream CRD as YAML (crds/transitstream.yaml is this output).
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", stallwatch_crds::crd_yaml()),
    }
    Ok(())
}
