//! `/metrics`, `/healthz`, `/readyz` (axum).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::health::Health;

#[derive(Clone)]
pub struct HttpState {
    pub registry: Arc<Registry>,
    /// True once the caches are synced, and while standing by (see `run`: a standby that is
    /// not Ready would stall the chart's rollouts).
    pub ready: watch::Receiver<bool>,
    /// The heartbeats of the operator's loops: `/healthz` fails while one is late.
    pub health: Arc<Health>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&s.registry),
    )
}

/// 200 while every loop of the operator goes round; 503 naming the late ones otherwise (the
/// liveness probe then restarts the pod).
async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    let late = s.health.late(std::time::Instant::now());
    if late.is_empty() {
        return (StatusCode::OK, "ok".to_string());
    }
    let which: Vec<String> = late
        .iter()
        .map(|(name, since)| format!("{name} loop: no progress for {since:.0?}"))
        .collect();
    (StatusCode::SERVICE_UNAVAILABLE, which.join("; "))
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if *s.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests;
