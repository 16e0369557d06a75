//! The sidecar's admin API as the operator uses it: a trait so reconcile tests can fake it,
//! and the HTTP implementation (pod IP, port 8081, bearer token, per-call timeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use stallwatch_core::bundle::{DumpRequest, Manifest};
use stallwatch_core::condition::StallReason;

use crate::builders::SIDECAR_ADMIN_PORT;

/// Why a sidecar call failed. Sources are shared (`Arc`) so the error stays `Clone` for the
/// reconcile's notes and the tests' fakes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SidecarError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unreachable: {0}")]
    Transport(#[source] Arc<reqwest::Error>),
    #[error("pod has no IP")]
    NoPodIp,
    #[error("bad response: {0}")]
    BadResponse(#[source] Arc<serde_json::Error>),
}

/// Equal when the same variant says the same thing (source errors compare by their message).
impl PartialEq for SidecarError {
    fn eq(&self, other: &Self) -> bool {
        use SidecarError::*;
        match (self, other) {
            (Timeout(a), Timeout(b)) => a == b,
            (Status { status: a, body: x }, Status { status: b, body: y }) => a == b && x == y,
            (Transport(a), Transport(b)) => a.to_string() == b.to_string(),
            (NoPodIp, NoPodIp) => true,
            (BadResponse(a), BadResponse(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl Eq for SidecarError {}

impl SidecarError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, SidecarError::Timeout(_))
    }
}

/// Where to reach one pod's sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarTarget {
    pub pod_ip: String,
    pub token: String,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The admin calls remediation (and a drill) makes.
pub trait SidecarApi: Send + Sync {
    /// `POST /v1/streams/{stream}/restart`.
    fn soft_restart<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>>;

    /// `POST /v1/dumps`; returns the bundle manifest.
    fn capture_dump<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        reason: StallReason,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Manifest, SidecarError>>;

    /// `POST /v1/streams/{stream}/drill`: a drill the TransitStream allows.
    fn drill<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        let _ = (target, stream, timeout);
        Box::pin(async {
            Err(SidecarError::Status {
                status: 501,
                body: "drills are not supported here".into(),
            })
        })
    }
}

/// The real client.
#[derive(Clone, Default)]
pub struct HttpSidecar {
    client: reqwest::Client,
}

impl HttpSidecar {
    pub fn new() -> Self {
        HttpSidecar {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    fn url(target: &SidecarTarget, path: &str) -> String {
        // IPv6 pod IPs need brackets.
        if target.pod_ip.contains(':') {
            format!("http://[{}]:{SIDECAR_ADMIN_PORT}{path}", target.pod_ip)
        } else {
            format!("http://{}:{SIDECAR_ADMIN_PORT}{path}", target.pod_ip)
        }
    }

    async fn post(
        &self,
        target: &SidecarTarget,
        path: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<String, SidecarError> {
        if target.pod_ip.is_empty() {
            return Err(SidecarError::NoPodIp);
        }
        self.post_to(&Self::url(target, path), target, body, timeout)
            .await
    }

    /// POST `body` to `url` with the target's token; the body of a 2xx answer.
    async fn post_to(
        &self,
        url: &str,
        target: &SidecarTarget,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<String, SidecarError> {
        let send = async {
            let resp = self
                .client
                .post(url)
                .bearer_auth(&target.token)
                .json(&body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        SidecarError::Timeout(timeout)
                    } else {
                        SidecarError::Transport(Arc::new(e))
                    }
                })?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .map_err(|e| SidecarError::Transport(Arc::new(e)))?;
            if (200..300).contains(&status) {
                Ok(text)
            } else {
                Err(SidecarError::Status {
                    status,
                    body: stallwatch_core::report::truncate(&text, 512),
                })
            }
        };
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| SidecarError::Timeout(timeout))?
    }
}

impl SidecarApi for HttpSidecar {
    fn soft_restart<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        Box::pin(async move {
            self.post(
                target,
                &format!("/v1/streams/{stream}/restart"),
                serde_json::json!({}),
                timeout,
            )
            .await
            .map(|_| ())
        })
    }

    fn drill<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        Box::pin(async move {
            self.post(
                target,
                &format!("/v1/streams/{stream}/drill"),
                serde_json::json!({}),
                timeout,
            )
            .await
            .map(|_| ())
        })
    }

    fn capture_dump<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        reason: StallReason,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Manifest, SidecarError>> {
        Box::pin(async move {
            let req = DumpRequest {
                stream: Some(stream.to_string()),
                reason: Some(reason),
                requested_by: Some("operator".into()),
            };
            let body =
                serde_json::to_value(&req).map_err(|e| SidecarError::BadResponse(Arc::new(e)))?;
            let text = self.post(target, "/v1/dumps", body, timeout).await?;
            serde_json::from_str(&text).map_err(|e| SidecarError::BadResponse(Arc::new(e)))
        })
    }
}

#[cfg(test)]
mod tests;
