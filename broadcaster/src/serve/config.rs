//! What `serve` is configured with: [`Config`] (its defaults are the documented ones,
//! docs/architecture.md) and the choice of gRPC server, [`GrpcServer`].

use std::net::SocketAddr;
use std::time::Duration;

use stallwatch_core::ports;

use crate::pipeline::dispatcher::{Backoff, PrepareFn, default_prepare};
use crate::pipeline::source::{SourceOptions, SourceSpec};
use crate::pipeline::spec::StreamSpec;
use crate::serve::fault::FaultConfig;

/// Everything `serve` is configured with. Defaults are the documented ones
/// (docs/architecture.md).
#[derive(Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// `None`: no admin server.
    pub admin_addr: Option<SocketAddr>,
    pub source: SourceSpec,
    pub source_options: SourceOptions,
    /// Empty: one stream `all`.
    pub streams: Vec<StreamSpec>,
    pub channel_capacity: usize,
    pub subscriber_queue: usize,
    /// `None`: reporting disabled.
    pub report_url: Option<String>,
    pub report_interval: Duration,
    pub fault: FaultConfig,
    /// A stream whose channel has had items waiting this long with no dequeue is "stuck"
    /// (NOT_SERVING in gRPC health).
    pub stuck_after: Duration,
    pub backoff: Backoff,
    pub prepare: PrepareFn,
    /// How long SIGTERM waits for subscribers to be told and connections to close.
    pub shutdown_grace: Duration,
    /// Which HTTP/2 server serves the gRPC listener.
    pub grpc_server: GrpcServer,
}

/// The gRPC listener's HTTP/2 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrpcServer {
    /// Our own (`lean-h2`, glue in `serve/lean`): Subscribe streams served inside each connection's task, updates
    /// batched into one write per connection.
    #[default]
    Lean,
    /// tonic's (hyper, h2).
    Tonic,
}

impl GrpcServer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lean => "lean",
            Self::Tonic => "tonic",
        }
    }
}

impl std::fmt::Display for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GrpcServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lean" => Ok(Self::Lean),
            "tonic" => Ok(Self::Tonic),
            other => Err(format!("unknown gRPC server {other:?} (lean | tonic)")),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("admin_addr", &self.admin_addr)
            .field("source", &self.source)
            .field("streams", &self.streams)
            .field("channel_capacity", &self.channel_capacity)
            .field("subscriber_queue", &self.subscriber_queue)
            .field("report_url", &self.report_url)
            .field("report_interval", &self.report_interval)
            .field("fault", &self.fault)
            .field("grpc_server", &self.grpc_server)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ports::any(ports::BROADCASTER_GRPC),
            http_addr: ports::any(ports::BROADCASTER_HTTP),
            admin_addr: Some(ports::loopback(ports::BROADCASTER_ADMIN)),
            source: SourceSpec::Synthetic(Default::default()),
            source_options: SourceOptions::default(),
            streams: Vec::new(),
            channel_capacity: 5,
            subscriber_queue: 64,
            report_url: Some(ports::sidecar_report_url()),
            report_interval: Duration::from_millis(250),
            fault: FaultConfig::default(),
            stuck_after: Duration::from_secs(2),
            backoff: Backoff::default(),
            prepare: default_prepare(),
            shutdown_grace: Duration::from_secs(5),
            grpc_server: GrpcServer::default(),
        }
    }
}

impl Config {
    /// Every listener on an ephemeral loopback port, no reporting: for tests and benchmarks.
    pub fn loopback(source: SourceSpec) -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            admin_addr: Some(([127, 0, 0, 1], 0).into()),
            source,
            report_url: None,
            ..Self::default()
        }
    }
}
