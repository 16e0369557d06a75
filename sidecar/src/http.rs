//! The public HTTP API: `/healthz`, `/readyz`, `/metrics`, `GET /v1/status`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::liveness::Liveness;
use crate::monitor::Monitor;

pub fn router(monitor: Arc<Monitor>, liveness: Arc<Liveness>) -> Router {
    Router::new()
        .route("/healthz", get(move || healthz(liveness.clone())))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .with_state(monitor)
}

/// 200 while the judge loop goes round; 503 once it is late (the liveness probe then
/// restarts the container). A stalled *stream* is not the sidecar's own failure: `/readyz`.
async fn healthz(liveness: Arc<Liveness>) -> Response {
    match liveness.late(std::time::Instant::now()) {
        None => "ok\n".into_response(),
        Some(since) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("judge loop: no progress for {since:.0?}\n"),
        )
            .into_response(),
    }
}

/// 503 while any stream is stalled, for clusters that use a readiness probe rather than the
/// pod condition as a readiness gate, and while the dump volume cannot be written (a stall
/// would lose its bundle).
async fn readyz(State(monitor): State<Arc<Monitor>>) -> Response {
    let stalled = monitor.stalled_streams();
    let storage = monitor.storage();
    if stalled.is_empty() && !storage.ok {
        let message = storage.error.unwrap_or_default();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "message": message })),
        )
            .into_response()
    } else if stalled.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "ready": true }))).into_response()
    } else {
        let message = stallwatch_core::condition::format_message(&stalled);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "message": message })),
        )
            .into_response()
    }
}

async fn metrics(State(monitor): State<Arc<Monitor>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        monitor.metrics.encode(),
    )
        .into_response()
}

async fn status(State(monitor): State<Arc<Monitor>>) -> Response {
    axum::Json(monitor.status()).into_response()
}
