//! `transit-sidecar run` and `transit-sidecar inspect`; see `docs/architecture.md`.

use anyhow::Context as _;
use clap::Parser as _;
use transit_sidecar::cli::{Cli, Command, LogFormat};
use transit_sidecar::{inspect, run};

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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_tracing(args.log_format);
            // Two worker threads are plenty for a sidecar and keep its footprint small.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(4)
                .enable_all()
                .build()
                .context("building the tokio runtime")?;
            rt.block_on(async move {
                let running = run::start(*args)
                    .await
                    .context("starting transit-sidecar")?;
                shutdown_signal().await;
                tracing::info!("shutting down");
                running.shutdown().await;
                Ok(())
            })
        }
        Command::Inspect(args) => {
            let report = inspect::load(&args.bundle)
                .with_context(|| format!("inspecting {}", args.bundle.display()))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", inspect::render(&report));
            }
            Ok(())
        }
    }
}
