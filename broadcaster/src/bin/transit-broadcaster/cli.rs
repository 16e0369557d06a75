//! The command line: clap types (every option with an environment variable fallback;
//! defaults are in docs/architecture.md) and their translation into library types.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stallwatch_core::ports;
use transit_broadcaster::client::subscribe::SubscribeOptions;
use transit_broadcaster::pipeline::source::{SourceOptions, SourceSpec};
use transit_broadcaster::pipeline::spec::StreamSpec;
use transit_broadcaster::serve::fault::{FaultConfig, FaultMode};
use transit_broadcaster::{Config, GrpcServer};

#[derive(Debug, Parser)]
#[command(
    name = "transit-broadcaster",
    version,
    about = "gRPC transit stream broadcaster that cannot silently stall"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broadcaster.
    Serve(Box<ServeArgs>),
    /// Print a stream's updates.
    Subscribe(SubscribeArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 250ms, 2s, 1m)"))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC listen address (TransitBroadcaster, health, reflection).
    #[arg(long, env = "BROADCASTER_GRPC_ADDR", default_value_t = ports::any(ports::BROADCASTER_GRPC))]
    grpc_addr: SocketAddr,
    /// HTTP listen address (/metrics, /healthz).
    #[arg(long, env = "BROADCASTER_HTTP_ADDR", default_value_t = ports::any(ports::BROADCASTER_HTTP))]
    http_addr: SocketAddr,
    /// Admin HTTP listen address (/debug/dump, /admin/streams/{name}/restart); keep it on loopback.
    #[arg(long, env = "BROADCASTER_ADMIN_ADDR", default_value_t = ports::loopback(ports::BROADCASTER_ADMIN))]
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
        default_value_t = ports::sidecar_report_url()
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
    pub worker_threads: Option<u16>,
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
    /// The gRPC listener's HTTP/2 server: lean (ours) or tonic (hyper/h2).
    #[arg(long, env = "BROADCASTER_GRPC_SERVER", default_value = "lean")]
    grpc_server: GrpcServer,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The broadcaster's gRPC URL.
    #[arg(
        long,
        env = "BROADCASTER_SUBSCRIBE_ADDR",
        default_value_t = format!("http://{}", ports::loopback(ports::BROADCASTER_GRPC))
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
    /// Also ask for each entity's original GTFS-realtime bytes (`raw_entities`, hex in --json).
    #[arg(
        long,
        env = "BROADCASTER_SUBSCRIBE_RAW_ENTITIES",
        default_value_t = false
    )]
    raw_entities: bool,
}

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(self) -> Config {
        Config {
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            admin_addr: Some(self.admin_addr),
            source: self.source,
            source_options: SourceOptions {
                poll_interval: self.poll_interval,
                replay_rate: self.replay_rate,
                replay_loop: self.replay_loop,
            },
            streams: self.streams,
            channel_capacity: self.channel_capacity as usize,
            subscriber_queue: self.subscriber_queue as usize,
            report_url: Some(self.report_url).filter(|u| !u.trim().is_empty()),
            report_interval: self.report_interval,
            fault: FaultConfig {
                mode: self.fault,
                stream: self.fault_stream,
                after: self.fault_after,
            },
            stuck_after: self.stuck_after,
            shutdown_grace: self.shutdown_grace,
            grpc_server: self.grpc_server,
            ..Config::default()
        }
    }
}

impl SubscribeArgs {
    pub fn options(self) -> SubscribeOptions {
        SubscribeOptions {
            addr: self.addr,
            stream: self.stream,
            count: self.count,
            json: self.json,
            routes: self.routes,
            raw_entities: self.raw_entities,
        }
    }
}

#[cfg(test)]
mod tests;
