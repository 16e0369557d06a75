//! What the binary does once the command line is parsed: logging, the panic hook, the tokio
//! runtime, then `serve` (start the server, wait for SIGTERM/SIGINT, drain) or `subscribe`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{Cli, Command, LogFormat, ServeArgs, SubscribeArgs};

/// Runs the parsed command; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    install_panic_hook();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Subscribe(args) => subscribe(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("transit-broadcaster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stallwatch_core::logging::ansi_colours(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Panics that are caught (a poison message panicking in prepare is quarantined) would
/// otherwise each print a multi-line message to stderr: route them through the log, one line,
/// at most one per few seconds with a count of the ones held back.
fn install_panic_hook() {
    let limiter = transit_broadcaster::util::RateLimiter::new(Duration::from_secs(5));
    std::panic::set_hook(Box::new(move |info| {
        if let Some(suppressed) = limiter.check() {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            tracing::error!(%location, suppressed, "panic: {payload}");
        }
    }));
}

/// SIGTERM/SIGINT ends the process within this, below the pod's 30 s termination grace.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("broadcaster");
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n.into());
    }
    let runtime = builder.build().context("building the tokio runtime")?;
    let config = args.config();
    // Its own thread and runtime see the signal even when every worker of the main runtime is
    // blocked (a wedged hub, the `block-runtime` fault), where draining would never finish.
    stallwatch_core::shutdown::exit_at_grace_after_signal(SHUTDOWN_GRACE, || {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "shutdown did not finish within its grace; exiting");
    });
    let result = runtime.block_on(async move {
        let running = transit_broadcaster::start(config).await?;
        stallwatch_core::shutdown::signal().await;
        // One line for either signal; "SIGTERM received" is what tests/process.rs looks for.
        tracing::info!("SIGINT or SIGTERM received");
        running.shutdown().await;
        anyhow::Ok(())
    });
    // Never wait on worker threads a fault may have wedged.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let opts = args.options();
    let mut out = std::io::stdout().lock();
    runtime.block_on(transit_broadcaster::client::subscribe::run(&opts, &mut out))?;
    Ok(())
}
