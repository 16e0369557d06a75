//! The HTTP client a Rust broadcaster uses to send reports to its sidecar.

use std::time::Duration;

use crate::report::Report;

/// Why a report did not reach the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No HTTP answer (connection refused, timeout, DNS).
    #[error("sidecar unreachable at {url}: {source}")]
    Unreachable {
        /// The ingest URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The sidecar answered with an error status.
    #[error("sidecar refused the report with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The answer's body (the sidecar says why).
        body: String,
    },
}

/// Posts reports to the sidecar's ingest endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReportClient {
    http: reqwest::Client,
    url: String,
}

impl ReportClient {
    /// `url` is the full ingest URL, e.g. `http://127.0.0.1:9464/v1/reports`. Each request is
    /// bounded by `timeout` so a wedged sidecar cannot hold up the next report.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(Self {
            http,
            url: url.into(),
        })
    }

    /// The ingest URL reports go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts one report; an answer other than 2xx is [`SendError::Refused`].
    pub async fn send(&self, report: &Report) -> Result<(), SendError> {
        let resp = self
            .http
            .post(&self.url)
            .json(report)
            .send()
            .await
            .map_err(|source| SendError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(SendError::Refused {
            status: status.as_u16(),
            body: crate::report::truncate(&body, 512),
        })
    }
}
