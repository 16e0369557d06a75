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
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn endpoints() {
        let mut registry = Registry::default();
        let m = crate::metrics::Metrics::new(&mut registry);
        m.error("timeout");
        let (tx, rx) = watch::channel(false);
        let health = Health::new("");
        let _controller = health.watch("controller", std::time::Duration::from_secs(60));
        let app = router(HttpState {
            registry: Arc::new(registry),
            ready: rx,
            health: health.clone(),
        });
        let call = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app.clone().oneshot(call("/healthz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.clone().oneshot(call("/readyz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        tx.send(true).unwrap();
        let r = app.clone().oneshot(call("/readyz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // A loop that stopped going round fails the liveness endpoint, named.
        let _stuck = health.watch("elector", std::time::Duration::ZERO);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let r = app.clone().oneshot(call("/healthz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with("elector loop: no progress for"), "{text}");
        let r = app.oneshot(call("/metrics")).await.unwrap();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("stallwatch_operator_reconcile_errors_total{error=\"timeout\"} 1"),
            "{text}"
        );
        assert!(text.contains("stallwatch_operator_stall_to_restart_seconds"));
    }
}
