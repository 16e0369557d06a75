//! Command line of `transit-sidecar`, fixed by `docs/architecture.md`. Every option has an
//! environment-variable fallback and a documented default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stallwatch_core::ports;
use stallwatch_core::scrape::{Capacity, MetricsMapping};

#[derive(Debug, Parser)]
#[command(
    name = "transit-sidecar",
    version,
    about = "Per-stream stall verdicts for a transit broadcaster, published on its Pod, with diagnostic dump bundles"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge the broadcaster's reports and serve the HTTP and admin APIs.
    Run(Box<RunArgs>),
    /// Print what a person needs first from a dump bundle.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Report ingest: a loopback `IP:PORT` or `unix:/path/to.sock`.
    #[arg(long, env = "SIDECAR_INGEST_ADDR", default_value_t = ports::loopback(ports::SIDECAR_INGEST).to_string())]
    pub ingest_addr: String,
    /// Public HTTP: /healthz, /readyz, /metrics, /v1/status.
    #[arg(long, env = "SIDECAR_HTTP_ADDR", default_value_t = ports::any(ports::SIDECAR_HTTP).to_string())]
    pub http_addr: String,
    /// Admin API (bearer token).
    #[arg(long, env = "SIDECAR_ADMIN_ADDR", default_value_t = ports::any(ports::SIDECAR_ADMIN).to_string())]
    pub admin_addr: String,
    /// File holding the admin bearer token (a mounted Secret). Without it every admin request
    /// answers 401.
    #[arg(long, env = "SIDECAR_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The broadcaster's loopback admin address (task dumps, stream restarts).
    #[arg(
        long,
        env = "SIDECAR_BROADCASTER_ADMIN_URL",
        default_value_t = ports::broadcaster_admin_url()
    )]
    pub broadcaster_admin_url: String,
    /// Items waiting with no dequeue for this long: ChannelStuck.
    #[arg(long, env = "SIDECAR_STALL_AFTER", default_value = "2s", value_parser = parse_duration)]
    pub stall_after: Duration,
    /// No report for this long: ReportsLost.
    #[arg(long, env = "SIDECAR_REPORT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub report_timeout: Duration,
    /// Sustained progress for this long before a stalled stream is healthy again.
    #[arg(long, env = "SIDECAR_RECOVER_AFTER", default_value = "1s", value_parser = parse_duration)]
    pub recover_after: Duration,
    /// Root of the dump volume; bundles go to `<dir>/<namespace>/<pod>/`.
    #[arg(long, env = "SIDECAR_DUMP_DIR", default_value = "/dumps")]
    pub dump_dir: PathBuf,
    /// Keep at most this many bundles for this pod.
    #[arg(long, env = "SIDECAR_MAX_BUNDLES", default_value_t = 20)]
    pub max_bundles: usize,
    /// Keep at most this many bytes of bundles for this pod (suffixes Ki, Mi, Gi allowed).
    #[arg(long, env = "SIDECAR_MAX_BYTES", default_value = "1073741824", value_parser = parse_bytes)]
    pub max_bytes: u64,
    /// Process dump of the broadcaster in each bundle.
    #[arg(long, env = "SIDECAR_PROCESS_DUMP", value_enum, default_value_t = ProcessDumpMode::None)]
    pub process_dump: ProcessDumpMode,
    /// Capture a bundle by itself on each new stall.
    #[arg(long, env = "SIDECAR_DUMP_ON_STALL", default_value_t = false)]
    pub dump_on_stall: bool,
    /// How long to wait for the broadcaster's task dump when capturing a bundle.
    #[arg(long, env = "SIDECAR_TASK_DUMP_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub task_dump_timeout: Duration,
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod_name: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    pub pod_namespace: String,
    /// The Pod's uid (downward API `metadata.uid`), used in Events' object reference.
    #[arg(long, env = "POD_UID")]
    pub pod_uid: Option<String>,
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Publish the pod condition and Events: `auto` when running in a cluster.
    #[arg(long, env = "SIDECAR_PUBLISH", value_enum, default_value_t = PublishMode::Auto)]
    pub publish: PublishMode,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// `/healthz` fails once the judge loop (ticking every 100 ms) has not gone round for
    /// this long.
    #[arg(long, env = "SIDECAR_LIVENESS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub liveness_timeout: Duration,
    /// After SIGTERM/SIGINT the process exits within this, whatever it was doing (below the
    /// pod's terminationGracePeriodSeconds, 30 s by default).
    #[arg(long, env = "SIDECAR_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Test hook, hidden: `judge` wedges the judge loop (see `liveness`).
    #[arg(long, env = crate::liveness::WEDGE_ENV, default_value = "", hide = true)]
    pub test_wedge: String,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Zero-code mode: judge an app's own Prometheus/OpenMetrics metrics instead of reports.
/// Off unless `--metrics-url` is set; then reports are refused and the mapping flags apply.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsArgs {
    /// The app's metrics endpoint, e.g. `http://127.0.0.1:9100/metrics` (empty: report mode).
    #[arg(long, env = "SIDECAR_METRICS_URL", default_value = "")]
    pub metrics_url: String,
    /// How often to scrape.
    #[arg(long, env = "SIDECAR_METRICS_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub metrics_interval: Duration,
    /// Bound on one scrape; a slower answer counts as a failed scrape (no verdict).
    #[arg(long, env = "SIDECAR_METRICS_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub metrics_timeout: Duration,
    /// Gauge: items waiting, one series per stream.
    #[arg(long, env = "SIDECAR_METRICS_DEPTH", default_value = "")]
    pub metrics_depth: String,
    /// Gauge: the queue's bound, per stream (or `--metrics-capacity-value`).
    #[arg(long, env = "SIDECAR_METRICS_CAPACITY", default_value = "")]
    pub metrics_capacity: String,
    /// A fixed queue bound for every stream, instead of a capacity gauge.
    #[arg(long, env = "SIDECAR_METRICS_CAPACITY_VALUE")]
    pub metrics_capacity_value: Option<u64>,
    /// Counter: items taken out of the queue (the `_total` suffix may be left out).
    #[arg(long, env = "SIDECAR_METRICS_DEQUEUED", default_value = "")]
    pub metrics_dequeued: String,
    /// Counter (optional): items put into the queue.
    #[arg(long, env = "SIDECAR_METRICS_ENQUEUED", default_value = "")]
    pub metrics_enqueued: String,
    /// Counter (optional): items dropped because the queue was full.
    #[arg(long, env = "SIDECAR_METRICS_DROPPED", default_value = "")]
    pub metrics_dropped: String,
    /// Gauge (optional): 0 while the stream's consumer is not running, for `DispatcherDead`.
    #[arg(long, env = "SIDECAR_METRICS_CONSUMER_UP", default_value = "")]
    pub metrics_consumer_up: String,
    /// The label whose value names the stream.
    #[arg(long, env = "SIDECAR_METRICS_STREAM_LABEL", default_value = "stream")]
    pub metrics_stream_label: String,
    /// Scrapes kept for bundles (`scrapes.txt`).
    #[arg(long, env = "SIDECAR_METRICS_HISTORY", default_value_t = 60)]
    pub metrics_history: usize,
}

impl MetricsArgs {
    /// The mapping, `None` in report mode, or what is missing from the flags.
    pub fn mapping(&self) -> Result<Option<MetricsMapping>, String> {
        if self.metrics_url.is_empty() {
            return Ok(None);
        }
        let required = |value: &str, flag: &str| {
            if value.is_empty() {
                Err(format!("--metrics-url needs --{flag}"))
            } else {
                Ok(value.to_owned())
            }
        };
        let optional = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let capacity = match (self.metrics_capacity.as_str(), self.metrics_capacity_value) {
            ("", Some(0)) => return Err("--metrics-capacity-value must be at least 1".into()),
            ("", Some(n)) => Capacity::Fixed(n),
            ("", None) => {
                return Err(
                    "--metrics-url needs --metrics-capacity or --metrics-capacity-value".into(),
                );
            }
            (_, Some(_)) => {
                return Err("give --metrics-capacity or --metrics-capacity-value, not both".into());
            }
            (name, None) => Capacity::Metric(name.to_owned()),
        };
        if self.metrics_interval.is_zero() || self.metrics_history == 0 {
            return Err("--metrics-interval and --metrics-history must be above 0".into());
        }
        Ok(Some(MetricsMapping {
            depth: required(&self.metrics_depth, "metrics-depth")?,
            capacity,
            dequeued: required(&self.metrics_dequeued, "metrics-dequeued")?,
            enqueued: optional(&self.metrics_enqueued),
            dropped: optional(&self.metrics_dropped),
            consumer_up: optional(&self.metrics_consumer_up),
            stream_label: required(&self.metrics_stream_label, "metrics-stream-label")?,
        }))
    }
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// A bundle directory (the one holding manifest.json).
    pub bundle: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProcessDumpMode {
    /// No process dump.
    None,
    /// A minidump (threads, stacks, modules; tens of KB) via ptrace.
    Minidump,
    /// A minidump and a full core with `gcore` (as large as the process).
    Full,
}

impl ProcessDumpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessDumpMode::None => "none",
            ProcessDumpMode::Minidump => "minidump",
            ProcessDumpMode::Full => "full",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishMode {
    Auto,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 250ms or 2s: {e}"))
}

/// Bytes with an optional binary suffix: `1073741824`, `512Mi`, `1Gi`.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ]
    .iter()
    .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|d| (d, *m)))
    .unwrap_or((s, 1));
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a byte count like 1073741824 or 512Mi"))
}

#[cfg(test)]
mod tests;
