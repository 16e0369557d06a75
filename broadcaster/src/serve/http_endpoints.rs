//! The HTTP endpoints: public `/metrics` and `/healthz`, and the loopback admin API
//! (`GET /debug/dump`, `POST /admin/streams/{name}/restart`, `POST /admin/streams/{name}/drill`).
//!
//! The admin server runs on its own OS thread with its own single-threaded runtime, so a dump
//! can be taken even when the main runtime is wedged (the `block-runtime` fault): that is
//! exactly when one is needed. The dump itself is bounded by a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::pipeline::engine::Engine;

/// Default and ceiling for `GET /debug/dump?timeout_ms=`.
pub const DEFAULT_DUMP_TIMEOUT: Duration = Duration::from_millis(2000);
pub const MAX_DUMP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Public {
    engine: Arc<Engine>,
    registry: Arc<prometheus_client::registry::Registry>,
}

/// A stream's hub held this long across `/healthz` checks fails the check.
pub const HUB_STUCK_AFTER: Duration = Duration::from_secs(5);

/// Env var of the test hook that wedges every stream's hub (value `hub`). Tests only.
pub const WEDGE_ENV: &str = "STALLWATCH_TEST_WEDGE";

pub fn public_router(engine: Arc<Engine>) -> Router {
    if std::env::var(WEDGE_ENV).is_ok_and(|v| v.split(',').any(|w| w.trim() == "hub")) {
        tracing::warn!("{WEDGE_ENV}: every stream's hub is wedged on purpose (tests only)");
        for st in engine.streams().iter() {
            st.hub.wedge_for_tests();
        }
    }
    let registry = Arc::new(crate::serve::metrics::registry(engine.clone()));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(Public { engine, registry })
}

async fn metrics(State(s): State<Public>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            // prometheus-client writes the OpenMetrics text format (with `# UNIT`, `# EOF`).
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::serve::metrics::render(&s.registry),
    )
        .into_response()
}

/// Process liveness, with each stream's state in the body: 503 when a stream's hub has been
/// wedged for [`HUB_STUCK_AFTER`] (the process cannot serve anyone), 200 otherwise. A stalled
/// *dispatcher* is the sidecar's to judge and the operator's to remediate (a dump first), so
/// it never fails this check.
async fn healthz(State(s): State<Public>) -> Response {
    let now_ms = stallwatch_core::clock::now_ms();
    let wedged: Vec<String> = s
        .engine
        .streams()
        .iter()
        .filter_map(|st| {
            let ms = st.hub.stuck_for(now_ms)?;
            (ms > HUB_STUCK_AFTER.as_millis() as u64).then(|| st.name().to_string())
        })
        .collect();
    let stuck_after = s.engine.stuck_after();
    let streams: Vec<_> = s
        .engine
        .streams()
        .iter()
        .map(|st| {
            serde_json::json!({
                "name": st.name(),
                "dispatcher": st.dispatcher_state().as_str(),
                "serving": st.is_serving(stuck_after),
            })
        })
        .collect();
    if !wedged.is_empty() {
        let body =
            serde_json::json!({"status": "hub wedged", "wedged": wedged, "streams": streams});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(serde_json::json!({"status": "ok", "streams": streams})).into_response()
}

pub fn admin_router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/debug/dump", get(dump))
        .route("/admin/streams/{name}/restart", post(restart))
        .route("/admin/streams/{name}/drill", post(drill))
        .with_state(engine)
}

#[derive(Debug, Deserialize)]
struct DumpParams {
    timeout_ms: Option<u64>,
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": message.into()})),
    )
        .into_response()
}

async fn dump(State(engine): State<Arc<Engine>>, Query(p): Query<DumpParams>) -> Response {
    let timeout = p
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_DUMP_TIMEOUT)
        .min(MAX_DUMP_TIMEOUT);
    let work = tokio::task::spawn_blocking(move || engine.dump());
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(dump)) => axum::Json(dump).into_response(),
        Ok(Err(e)) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("dump failed: {e}"),
        ),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("dump did not complete within {} ms", timeout.as_millis()),
        ),
    }
}

async fn drill(State(engine): State<Arc<Engine>>, Path(name): Path<String>) -> Response {
    if engine.drill_stream(&name) {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"drilled": name})),
        )
            .into_response()
    } else {
        json_error(StatusCode::NOT_FOUND, format!("no stream {name:?}"))
    }
}

async fn restart(State(engine): State<Arc<Engine>>, Path(name): Path<String>) -> Response {
    if engine.restart_stream(&name) {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"restarted": name})),
        )
            .into_response()
    } else {
        json_error(StatusCode::NOT_FOUND, format!("no stream {name:?}"))
    }
}

/// The admin server's thread; stops when `shutdown` is cancelled.
#[derive(Debug)]
pub struct AdminServer {
    pub addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    pub fn start(
        listener: std::net::TcpListener,
        engine: Arc<Engine>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("admin")
            .build()?;
        let thread = std::thread::Builder::new()
            .name("admin-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("admin listener: {e}");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, admin_router(engine))
                        .with_graceful_shutdown(shutdown.cancelled_owned());
                    if let Err(e) = serve.await {
                        tracing::error!("admin server: {e}");
                    }
                });
            })?;
        Ok(Self {
            addr,
            thread: Some(thread),
        })
    }

    /// Waits for the admin thread to finish (after its shutdown token was cancelled).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
