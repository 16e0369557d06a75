//! Report ingest: `POST /v1/reports`, loopback (or a Unix socket) only.
//!
//! A malformed, oversize or out-of-order report gets a clear 4xx answer
//! (`{"error","kind"}`, see `docs/report-protocol.md`), is counted in
//! `stallwatch_sidecar_reports_rejected_total{kind}` and changes no verdict.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use stallwatch_core::report::MAX_REPORT_BYTES;

use crate::monitor::Monitor;

/// Where the ingest listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IngestAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestAddrError {
    #[error("ingest address {0:?} is neither IP:PORT nor unix:/path")]
    Unparsable(String),
    #[error("ingest address {0} is not loopback: reports must never leave the pod")]
    NotLoopback(SocketAddr),
}

impl std::str::FromStr for IngestAddr {
    type Err = IngestAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(IngestAddrError::Unparsable(s.to_owned()));
            }
            return Ok(IngestAddr::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| IngestAddrError::Unparsable(s.to_owned()))?;
        if !addr.ip().is_loopback() {
            return Err(IngestAddrError::NotLoopback(addr));
        }
        Ok(IngestAddr::Tcp(addr))
    }
}

pub(crate) fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/v1/reports", post(receive))
        // The body is read with our own bound, to answer 413 in the protocol's format.
        .layer(DefaultBodyLimit::disable())
        .with_state(monitor)
}

fn refusal(status: u16, kind: &str, error: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({ "error": error, "kind": kind }))).into_response()
}

fn too_large(monitor: &Monitor, size: Option<u64>) -> Response {
    monitor.metrics.reject("too_large");
    let error = match size {
        Some(size) => format!("report is {size} bytes, more than the {MAX_REPORT_BYTES} allowed"),
        None => format!("report is more than the {MAX_REPORT_BYTES} bytes allowed"),
    };
    refusal(413, "too_large", error)
}

async fn receive(State(monitor): State<Arc<Monitor>>, headers: HeaderMap, body: Body) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > MAX_REPORT_BYTES as u64
    {
        return too_large(&monitor, Some(len));
    }
    let bytes = match axum::body::to_bytes(body, MAX_REPORT_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                return too_large(&monitor, None);
            }
            monitor.metrics.reject("malformed");
            return refusal(
                400,
                "malformed",
                format!("cannot read the report body: {e}"),
            );
        }
    };
    match monitor.ingest(&bytes) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": true })),
        )
            .into_response(),
        Err(e) => {
            tracing::debug!(kind = e.label(), error = %e, "report refused");
            refusal(e.http_status(), e.label(), e.to_string())
        }
    }
}

#[cfg(test)]
mod tests;
