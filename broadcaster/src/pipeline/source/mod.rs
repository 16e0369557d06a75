//! Where raw feed messages come from, and how they get into every stream's channel.
//!
//! A source produces encoded GTFS-realtime `FeedMessage`s and hands each to [`Ingest::push`],
//! which puts the same shared bytes into every stream's drop-oldest channel. A source never
//! waits for a dispatcher. Source URLs are documented in docs/architecture.md.

pub mod file;
pub mod http;
pub mod nats;
pub mod synthetic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use stallwatch_core::sync::lock;

use crate::pipeline::channel::Item;
use crate::pipeline::quarantine::ErrorLog;
use crate::pipeline::stream_runtime::StreamRuntime;
use crate::util::RateLimiter;

pub use synthetic::SyntheticConfig;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceUrlError {
    #[error(
        "source URL {0:?} has no scheme (expected synthetic://, nats://, http(s):// or file://)"
    )]
    NoScheme(String),
    #[error("unsupported source scheme {0:?} (expected synthetic, nats, http, https or file)")]
    UnknownScheme(String),
    #[error("source URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
}

/// A parsed `--source` URL.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    Synthetic(SyntheticConfig),
    Nats {
        server: String,
        subject: String,
    },
    Http {
        url: String,
    },
    File {
        path: PathBuf,
    },
    /// No source: feed messages arrive only through [`Ingest`] (library use, benchmarks).
    Manual,
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Synthetic(_) => "synthetic",
            SourceSpec::Nats { .. } => "nats",
            SourceSpec::Http { .. } => "http",
            SourceSpec::File { .. } => "file",
            SourceSpec::Manual => "manual",
        }
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = SourceUrlError;
    fn from_str(url: &str) -> Result<Self, SourceUrlError> {
        let url = url.trim();
        let invalid = |reason: &str| SourceUrlError::Invalid {
            url: url.into(),
            reason: reason.into(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| SourceUrlError::NoScheme(url.into()))?;
        match scheme {
            "synthetic" => Ok(SourceSpec::Synthetic(
                SyntheticConfig::from_query(rest.trim_start_matches('/').trim_start_matches('?'))
                    .map_err(|r| invalid(&r))?,
            )),
            "nats" => {
                let (server, subject) = rest
                    .split_once('/')
                    .ok_or_else(|| invalid("expected nats://host:port/subject"))?;
                if server.is_empty() {
                    return Err(invalid("missing host:port"));
                }
                if subject.is_empty() || subject.contains(char::is_whitespace) {
                    return Err(invalid("missing or invalid subject"));
                }
                Ok(SourceSpec::Nats {
                    server: server.into(),
                    subject: subject.into(),
                })
            }
            "http" | "https" => {
                if rest.is_empty() || rest.starts_with('/') {
                    return Err(invalid("missing host"));
                }
                Ok(SourceSpec::Http { url: url.into() })
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(invalid(
                        "expected an absolute path, file:///path/to/recording",
                    ));
                }
                Ok(SourceSpec::File {
                    path: PathBuf::from(rest),
                })
            }
            other => Err(SourceUrlError::UnknownScheme(other.into())),
        }
    }
}

/// Options that apply to some sources only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceOptions {
    /// http(s): time between polls.
    pub poll_interval: Duration,
    /// file: messages per second, 0 = as fast as possible.
    pub replay_rate: f64,
    /// file: start over at the end.
    pub replay_loop: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(10),
            replay_rate: 10.0,
            replay_loop: false,
        }
    }
}

/// A source failure, logged (rate-limited), counted by kind and kept in the dump's recent
/// errors. Sources retry; none of these ends the process.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("{url} answered HTTP {status}{}", excerpt_suffix(body))]
    Status {
        url: String,
        status: u16,
        /// The start of the error body, as text.
        body: String,
    },
    #[error(
        "{url} answered {content_type:?}, not a GTFS-realtime feed; refused whole{}",
        excerpt_suffix(body)
    )]
    NotAFeed {
        url: String,
        content_type: String,
        body: String,
    },
    #[error("feed message of {size} bytes exceeds the {max}-byte limit; skipped")]
    Oversize { size: u64, max: usize },
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("recording {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: String,
        offset: u64,
        reason: String,
    },
}

impl SourceError {
    pub fn label(&self) -> &'static str {
        match self {
            SourceError::Connect { .. } => "connect",
            SourceError::Request { .. } => "request",
            SourceError::Status { .. } => "status",
            SourceError::NotAFeed { .. } => "not_a_feed",
            SourceError::Oversize { .. } => "oversize",
            SourceError::Io { .. } => "io",
            SourceError::Corrupt { .. } => "corrupt",
        }
    }
}

fn excerpt_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body:?}")
    }
}

/// Source counters.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// http(s): polls answered 304 Not Modified.
    pub not_modified: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl SourceStats {
    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.errors).clone()
    }
}

/// The handle sources (and library users) push raw feed messages through.
#[derive(Clone)]
pub struct Ingest {
    streams: Arc<[Arc<StreamRuntime>]>,
    stats: Arc<SourceStats>,
    errors: Arc<ErrorLog>,
    log: Arc<RateLimiter>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl Ingest {
    pub fn new(
        streams: Arc<[Arc<StreamRuntime>]>,
        stats: Arc<SourceStats>,
        errors: Arc<ErrorLog>,
    ) -> Self {
        Self {
            streams,
            stats,
            errors,
            log: Arc::new(RateLimiter::new(Duration::from_secs(5))),
        }
    }

    /// Puts one encoded feed message into every stream's channel. Never waits.
    pub fn push(&self, payload: Bytes) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let item = Item::new(payload);
        for stream in self.streams.iter() {
            stream.channel.push(item.clone());
        }
    }

    /// Records a source failure: counted, kept for dumps, logged at most every few seconds.
    pub fn error(&self, err: &SourceError) {
        *lock(&self.stats.errors).entry(err.label()).or_default() += 1;
        let message = format!("source: {err}");
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(kind = err.label(), suppressed, "{message}");
        }
        self.errors.push(None, message);
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }
}

/// Runs `spec` until it ends (a `limit`, the end of a non-looping recording) or forever.
#[async_backtrace::framed]
pub async fn run_source(spec: SourceSpec, options: SourceOptions, ingest: Ingest) {
    match spec {
        SourceSpec::Synthetic(cfg) => synthetic::run(cfg, ingest).await,
        SourceSpec::Nats { server, subject } => nats::run(server, subject, ingest).await,
        SourceSpec::Http { url } => http::run(url, options.poll_interval, ingest).await,
        SourceSpec::File { path } => {
            file::run(path, options.replay_rate, options.replay_loop, ingest).await
        }
        SourceSpec::Manual => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
