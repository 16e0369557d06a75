//! `transit-sidecar run` and `transit-sidecar inspect`; see `docs/architecture.md`.

use anyhow::Context as _;
use clap::Parser as _;
use transit_sidecar::cli::{Cli, Command, LogFormat};
use transit_sidecar::{inspect, run};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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
