//! `transit-broadcaster`: `serve` runs the broadcaster, `subscribe` prints a stream's updates.
//! Every option has an environment variable fallback; defaults are in docs/architecture.md.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use transit_broadcaster::engine::Config;
use transit_broadcaster::fault::{FaultConfig, FaultMode};
use transit_broadcaster::source::{SourceOptions, SourceSpec};
use transit_broadcaster::spec::StreamSpec;
use transit_broadcaster::subscribe::SubscribeOptions;

#[derive(Debug, Parser)]
#[command(
    name = "transit-broadcaster",
    version,
    about = "gRPC transit stream broadcaster that cannot silently stall"
)]
struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broadcaster.
    Serve(Box<ServeArgs>),
    /// Print a stream's updates.
    Subscribe(SubscribeArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 250ms, 2s, 1m)"))
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// gRPC listen address (TransitBroadcaster, health, reflection).
    #[arg(long, env = "BROADCASTER_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    grpc_addr: SocketAddr,
    /// HTTP listen address (/metrics, /healthz).
    #[arg(long, env = "BROADCASTER_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    http_addr: SocketAddr,
    /// Admin HTTP listen address (/debug/dump, /admin/streams/{name}/restart); keep it on loopback.
    #[arg(long, env = "BROADCASTER_ADMIN_ADDR", default_value = "127.0.0.1:9091")]
    admin_addr: SocketAddr,
    /// Feed source: synthetic://?..., nats://host:port/subject, http(s)://..., file:///path.
    #[arg(long, env = "BROADCASTER_SOURCE", default_value = "synthetic://")]
    source: SourceSpec,
    /// A stream: NAME or NAME=FILTER[;FILTER] with routes:R1,R2 / bbox:MINLAT,MINLON,MAXLAT,MAXLON.
    /// Repeatable; the env var is space-separated. Default: one stream "all".
    #[arg(long = "stream", env = "BROADCASTER_STREAMS", value_delimiter = ' ')]
    streams: Vec<StreamSpec>,
    /// Per-stream channel capacity (drop-oldest when full).
    #[arg(long, env = "BROADCASTER_CHANNEL_CAPACITY", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    channel_capacity: u32,
    /// Per-subscriber queue capacity (a full queue makes that subscriber lag).
    #[arg(long, env = "BROADCASTER_SUBSCRIBER_QUEUE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    subscriber_queue: u32,
    /// Sidecar report ingest URL; "" disables reporting.
    #[arg(
        long,
        env = "BROADCASTER_REPORT_URL",
        default_value = "http://127.0.0.1:9464/v1/reports"
    )]
    report_url: String,
    /// Report interval.
    #[arg(long, env = "BROADCASTER_REPORT_INTERVAL", default_value = "250ms", value_parser = duration)]
    report_interval: Duration,
    /// Fault injection, for tests and demos only (UNSAFE in production).
    #[arg(long, env = "BROADCASTER_FAULT", default_value = "none")]
    fault: FaultMode,
    /// The stream the fault applies to (default: every stream for legacy-unsupervised, the first otherwise).
    #[arg(long, env = "BROADCASTER_FAULT_STREAM")]
    fault_stream: Option<String>,
    /// When hang-dispatcher / block-runtime trigger, after start.
    #[arg(long, env = "BROADCASTER_FAULT_AFTER", default_value = "0s", value_parser = duration)]
    fault_after: Duration,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long, env = "BROADCASTER_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// http(s) source: time between polls.
    #[arg(long, env = "BROADCASTER_POLL_INTERVAL", default_value = "10s", value_parser = duration)]
    poll_interval: Duration,
    /// file source: messages per second, 0 = as fast as possible.
    #[arg(long, env = "BROADCASTER_REPLAY_RATE", default_value_t = 10.0)]
    replay_rate: f64,
    /// file source: start over at the end of the recording.
    #[arg(long, env = "BROADCASTER_REPLAY_LOOP", default_value_t = false)]
    replay_loop: bool,
    /// A stream whose items wait this long with no dequeue is stuck (gRPC health NOT_SERVING).
    #[arg(long, env = "BROADCASTER_STUCK_AFTER", default_value = "2s", value_parser = duration)]
    stuck_after: Duration,
    /// On SIGTERM, how long to wait for subscribers to be told and connections to close.
    #[arg(long, env = "BROADCASTER_SHUTDOWN_GRACE", default_value = "5s", value_parser = duration)]
    shutdown_grace: Duration,
}

#[derive(Debug, Args)]
struct SubscribeArgs {
    /// The broadcaster's gRPC URL.
    #[arg(
        long,
        env = "BROADCASTER_SUBSCRIBE_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// The stream to watch.
    #[arg(long, env = "BROADCASTER_SUBSCRIBE_STREAM", default_value = "all")]
    stream: String,
    /// Stop after N updates (0 = until the server ends the stream).
    #[arg(long, env = "BROADCASTER_SUBSCRIBE_COUNT", default_value_t = 0)]
    count: u64,
    /// One JSON object per line instead of text.
    #[arg(long, env = "BROADCASTER_SUBSCRIBE_JSON", default_value_t = false)]
    json: bool,
    /// Only these routes (repeatable; the env var is space-separated).
    #[arg(
        long = "route",
        env = "BROADCASTER_SUBSCRIBE_ROUTES",
        value_delimiter = ' '
    )]
    routes: Vec<String>,
}

fn init_logging(format: LogFormat) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("broadcaster");
    if let Some(n) = args.worker_threads {
        builder.worker_threads(n.into());
    }
    let runtime = builder.build().context("building the tokio runtime")?;
    let config = Config {
        grpc_addr: args.grpc_addr,
        http_addr: args.http_addr,
        admin_addr: Some(args.admin_addr),
        source: args.source,
        source_options: SourceOptions {
            poll_interval: args.poll_interval,
            replay_rate: args.replay_rate,
            replay_loop: args.replay_loop,
        },
        streams: args.streams,
        channel_capacity: args.channel_capacity as usize,
        subscriber_queue: args.subscriber_queue as usize,
        report_url: Some(args.report_url).filter(|u| !u.trim().is_empty()),
        report_interval: args.report_interval,
        fault: FaultConfig {
            mode: args.fault,
            stream: args.fault_stream,
            after: args.fault_after,
        },
        stuck_after: args.stuck_after,
        shutdown_grace: args.shutdown_grace,
        ..Config::default()
    };
    let result = runtime.block_on(async move {
        let running = transit_broadcaster::start(config).await?;
        wait_for_termination().await?;
        running.shutdown().await;
        anyhow::Ok(())
    });
    // Never wait on worker threads a fault may have wedged.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn wait_for_termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let opts = SubscribeOptions {
        addr: args.addr,
        stream: args.stream,
        count: args.count,
        json: args.json,
        routes: args.routes,
    };
    let mut out = std::io::stdout().lock();
    runtime.block_on(transit_broadcaster::subscribe::run(&opts, &mut out))?;
    Ok(())
}
