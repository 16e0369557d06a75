//! The sidecar's client of the broadcaster's loopback admin API: task dumps for bundles and
//! stream restarts for the operator's soft remediation.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use stallwatch_core::taskdump::{TASKDUMP_V1, TaskDump};

use crate::http_client::{ClientError, HttpClient};

#[derive(Debug, thiserror::Error)]
pub enum BroadcasterError {
    #[error("broadcaster admin API at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error(
        "broadcaster admin API at {url} is unreachable: {}",
        error_chain(source)
    )]
    Unreachable {
        url: String,
        #[source]
        source: ClientError,
    },
    #[error("broadcaster admin API at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("broadcaster task dump from {url} is unusable: {source}")]
    BadDump {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "broadcaster task dump from {url} is unusable: protocol {protocol:?}, expected {TASKDUMP_V1:?}"
    )]
    WrongProtocol { url: String, protocol: String },
}

/// What the broadcaster said to a restart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// 202: the dispatcher was aborted and a fresh one started.
    Restarted,
    /// 404: no such stream.
    UnknownStream,
}

#[derive(Debug, Clone)]
pub struct BroadcasterClient {
    base: String,
    /// Built on first use: an HTTP client (its connection pool) costs memory the sidecar
    /// does not need until someone asks for a bundle or a restart.
    http: Arc<OnceLock<HttpClient>>,
}

/// Task dumps are bounded so a huge or hostile answer cannot exhaust the sidecar.
pub const MAX_TASK_DUMP_BYTES: usize = 16 << 20;

impl BroadcasterClient {
    pub fn new(base_url: &str) -> Self {
        BroadcasterClient {
            base: base_url.trim_end_matches('/').to_owned(),
            http: Arc::new(OnceLock::new()),
        }
    }

    fn http(&self) -> &HttpClient {
        self.http.get_or_init(|| HttpClient::new(1))
    }

    fn unreachable(url: &str) -> impl FnOnce(ClientError) -> BroadcasterError + '_ {
        move |source| BroadcasterError::Unreachable {
            url: url.to_owned(),
            source,
        }
    }

    /// `GET /debug/dump?timeout_ms=..`, bounded by `timeout` overall.
    pub async fn task_dump(&self, timeout: Duration) -> Result<TaskDump, BroadcasterError> {
        // Ask the broadcaster to give up a little before we do, so we get its partial answer
        // rather than our own timeout.
        let inner_ms = (timeout.as_millis() as u64).saturating_mul(8) / 10;
        let url = format!("{}/debug/dump?timeout_ms={}", self.base, inner_ms.max(1));
        let fetch = async {
            let resp = self
                .http()
                .get(&url, None)
                .await
                .map_err(Self::unreachable(&url))?;
            let status = resp.status().as_u16();
            let body = resp
                .read_limited(MAX_TASK_DUMP_BYTES)
                .await
                .map_err(Self::unreachable(&url))?;
            if status != 200 {
                return Err(BroadcasterError::Status {
                    url: url.clone(),
                    status,
                    body: snippet(&body),
                });
            }
            let dump: TaskDump =
                serde_json::from_slice(&body).map_err(|source| BroadcasterError::BadDump {
                    url: url.clone(),
                    source,
                })?;
            if dump.protocol != TASKDUMP_V1 {
                return Err(BroadcasterError::WrongProtocol {
                    url: url.clone(),
                    protocol: dump.protocol,
                });
            }
            Ok(dump)
        };
        match tokio::time::timeout(timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(BroadcasterError::Timeout { url, timeout }),
        }
    }

    /// `POST /admin/streams/{name}/restart`.
    pub async fn restart(
        &self,
        stream: &str,
        timeout: Duration,
    ) -> Result<RestartOutcome, BroadcasterError> {
        self.stream_action(stream, "restart", timeout).await
    }

    /// `POST /admin/streams/{name}/drill`: the broadcaster kills the stream's dispatcher once
    /// and leaves it dead until a restart (`Restarted` here means "done").
    pub async fn drill(
        &self,
        stream: &str,
        timeout: Duration,
    ) -> Result<RestartOutcome, BroadcasterError> {
        self.stream_action(stream, "drill", timeout).await
    }

    async fn stream_action(
        &self,
        stream: &str,
        action: &str,
        timeout: Duration,
    ) -> Result<RestartOutcome, BroadcasterError> {
        let url = format!("{}/admin/streams/{stream}/{action}", self.base);
        let act = async {
            let resp = self
                .http()
                .post(&url)
                .await
                .map_err(Self::unreachable(&url))?;
            let status = resp.status().as_u16();
            match status {
                200..=299 => Ok(RestartOutcome::Restarted),
                404 => Ok(RestartOutcome::UnknownStream),
                _ => {
                    let body = resp.read_limited(4096).await.unwrap_or_default();
                    Err(BroadcasterError::Status {
                        url: url.clone(),
                        status,
                        body: snippet(&body),
                    })
                }
            }
        };
        match tokio::time::timeout(timeout, act).await {
            Ok(r) => r,
            Err(_) => Err(BroadcasterError::Timeout { url, timeout }),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    stallwatch_core::report::truncate(String::from_utf8_lossy(body).trim(), 512)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
