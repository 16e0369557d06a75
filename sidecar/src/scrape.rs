//! Zero-code mode's scrape loop: every `--metrics-interval`, GET the app's metrics endpoint,
//! parse it (`stallwatch_core::exposition`), map it (`stallwatch_core::scrape`) and hand the
//! outcome to the monitor. Every way a scrape can fail (timeout, refused connection, an HTTP
//! error, an HTML page, a body that does not parse, a wrong mapping) becomes a
//! [`ScrapeOutcome::Failed`] with a message for people: no verdict, never a false one.

use std::sync::Arc;
use std::time::Duration;

use stallwatch_core::clock::now_ms;
use stallwatch_core::exposition::{self, Sample};
use stallwatch_core::scrape::{MetricsMapping, ScrapeAdapter};

use crate::http_client::{ClientError, HttpClient};
use crate::monitor::{Monitor, ScrapeOutcome};

/// Bodies above this are refused: an app's queue metrics are a few KiB.
const MAX_BODY_BYTES: usize = 4 << 20;
/// What we ask for: OpenMetrics first, the 0.0.4 text format otherwise.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// What to scrape and how to read it.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub mapping: MetricsMapping,
}

/// Why a scrape gave no samples.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the endpoint: {0}")]
    Unreachable(#[source] ClientError),
    #[error("the endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the endpoint answered {0}, not metrics (check the port and path)")]
    NotMetrics(String),
    #[error("the answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the answer is not the Prometheus or OpenMetrics text format: {0}")]
    Parse(#[from] exposition::ParseError),
}

impl FetchError {
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Status(_) => "http_status",
            FetchError::NotMetrics(_) | FetchError::TooLarge => "not_metrics",
            FetchError::Parse(_) => "parse_error",
        }
    }
}

/// GET and parse one scrape.
pub async fn fetch(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, FetchError> {
    let get = async {
        let resp = client
            .get(url, Some(ACCEPT))
            .await
            .map_err(FetchError::Unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.contains("html") || content_type.contains("json") {
            return Err(FetchError::NotMetrics(content_type));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        // One byte more than allowed tells a body that is too large.
        let body = resp
            .read_limited(MAX_BODY_BYTES + 1)
            .await
            .map_err(FetchError::Unreachable)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(FetchError::TooLarge);
        }
        let text = String::from_utf8_lossy(&body);
        Ok(exposition::parse(&text)?)
    };
    tokio::time::timeout(timeout, get)
        .await
        .unwrap_or(Err(FetchError::Timeout(timeout)))
}

/// One scrape, fetched and mapped, as the monitor takes it.
pub async fn scrape_once(
    client: &HttpClient,
    cfg: &ScrapeConfig,
    adapter: &mut ScrapeAdapter,
) -> ScrapeOutcome {
    let samples = match fetch(client, &cfg.url, cfg.timeout).await {
        Ok(s) => s,
        Err(e) => {
            return ScrapeOutcome::Failed {
                kind: e.label(),
                error: e.to_string(),
                series: Vec::new(),
            };
        }
    };
    let series: Vec<String> = samples
        .iter()
        .filter(|s| cfg.mapping.reads(s))
        .map(ToString::to_string)
        .collect();
    let interval_ms = u64::try_from(cfg.interval.as_millis()).unwrap_or(u64::MAX);
    match adapter.adapt(&samples, now_ms(), interval_ms) {
        Ok(adapted) => ScrapeOutcome::Mapped {
            adapted: Box::new(adapted),
            series,
        },
        Err(e) => ScrapeOutcome::Failed {
            kind: e.label(),
            error: e.to_string(),
            series,
        },
    }
}

/// Scrape every `cfg.interval` until the future is dropped.
pub async fn run(monitor: Arc<Monitor>, cfg: ScrapeConfig) {
    // Each scrape is bounded by `cfg.timeout` in `fetch`.
    let client = HttpClient::new(1);
    let mut adapter = ScrapeAdapter::new(cfg.mapping.clone(), &instance_prefix(&cfg.url));
    let mut interval = tokio::time::interval(cfg.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let outcome = scrape_once(&client, &cfg, &mut adapter).await;
        monitor.observe_scrape(outcome);
    }
}

/// `host:port` of the URL, for the synthetic instance ids people see in `/v1/status`.
fn instance_prefix(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    let prefix = if host.is_empty() { "app" } else { host };
    stallwatch_core::report::truncate(&format!("metrics@{prefix}"), 100)
}

#[cfg(test)]
mod tests;
