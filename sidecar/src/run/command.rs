//! What the `transit-sidecar` binary does once its command line is parsed: `run` (logging, the
//! runtime, start, wait for SIGTERM/SIGINT, drain) or `inspect` (print a bundle).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command, InspectArgs, LogFormat, RunArgs};
use crate::inspect::{self, InspectError};

use super::StartError;

/// Why the binary failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("building the tokio runtime")]
    Runtime(#[source] std::io::Error),
    #[error("starting transit-sidecar")]
    Start(#[source] StartError),
    #[error("inspecting {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: InspectError,
    },
    #[error("encoding the inspect report")]
    Json(#[source] serde_json::Error),
}

/// Runs the parsed command; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => serve(*args),
        Command::Inspect(args) => print_inspection(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("transit-sidecar: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: RunArgs) -> Result<(), RunError> {
    init_tracing(args.log_format);
    // Two worker threads are plenty for a sidecar and keep its footprint small.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(async move {
        let running = super::start(args).await.map_err(RunError::Start)?;
        stallwatch_core::shutdown::signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

fn print_inspection(args: &InspectArgs) -> Result<(), RunError> {
    let report = inspect::load(&args.bundle).map_err(|source| RunError::Inspect {
        path: args.bundle.clone(),
        source,
    })?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).map_err(RunError::Json)?;
        println!("{json}");
    } else {
        print!("{}", inspect::render(&report));
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    // `Targets` (RUST_LOG-style `target=level` lists) rather than `EnvFilter`: no regex
    // engine at start, which keeps the sidecar's resident set small.
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
