//! The binary's parts around start-up: logging, the runtime, printing an `inspect` report, and
//! turning a failure into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use super::serve::StartError;
use crate::cli::{InspectArgs, LogFormat};
use crate::inspect::{self, InspectError};

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

/// The exit code for `result`; a failure is printed with its causes on one line.
pub(super) fn exit_code(result: Result<(), RunError>) -> ExitCode {
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
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

/// One thread runs every task: a sidecar's work is a few small requests a second, and the
/// slow parts (fsync, process dumps, bundle listing) go to the blocking pool. Worker threads
/// would each add a stack and a malloc arena, and the multi-thread scheduler is the only user
/// of libm (`pow`), whose loading alone keeps ~0.5 MiB resident.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

pub(super) fn print_inspection(args: &InspectArgs) -> Result<(), RunError> {
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

pub(super) fn init_tracing(format: LogFormat) {
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
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(stallwatch_core::logging::ansi_colours(
                        std::io::IsTerminal::is_terminal(&std::io::stderr()),
                        std::env::var_os("NO_COLOR").as_deref(),
                    )),
            )
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
