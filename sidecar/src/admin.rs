//! The admin API for the operator: capture and list dump bundles, restart one stream's
//! dispatcher. Every route (unknown ones included) needs `Authorization: Bearer <token>`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use stallwatch_core::bundle::DumpRequest;
use stallwatch_core::report::is_valid_stream_name;

use crate::auth::AdminToken;
use crate::broadcaster::{BroadcasterClient, RestartOutcome};
use crate::capture::Capturer;
use crate::metrics::OutcomeLabels;
use crate::monitor::Monitor;

/// Admin request bodies are tiny.
const MAX_ADMIN_BODY: usize = 16 * 1024;
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AdminState {
    pub monitor: Arc<Monitor>,
    pub capturer: Arc<Capturer>,
    pub broadcaster: BroadcasterClient,
}

pub fn router(state: AdminState, token: Arc<AdminToken>) -> Router {
    Router::new()
        .route("/v1/dumps", post(create_dump).get(list_dumps))
        .route("/v1/streams/{name}/restart", post(restart_stream))
        .route("/v1/streams/{name}/drill", post(drill_stream))
        .fallback(not_found)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .layer(middleware::from_fn_with_state(token, require_token))
}

async fn require_token(State(token): State<Arc<AdminToken>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if token.verify(presented) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({ "error": "a valid bearer token is required" })),
        )
            .into_response()
    }
}

fn error(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    error(404, "no such admin route".to_owned())
}

async fn create_dump(State(s): State<AdminState>, body: Bytes) -> Response {
    let req: DumpRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DumpRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("invalid dump request: {e}")),
        }
    };
    match s.capturer.capture(req).await {
        Ok(manifest) => (StatusCode::CREATED, axum::Json(manifest)).into_response(),
        Err(e) => error(e.http_status(), e.to_string()),
    }
}

async fn list_dumps(State(s): State<AdminState>) -> Response {
    match s.capturer.list().await {
        Ok(list) => axum::Json(list).into_response(),
        Err(e) => error(e.http_status(), e.to_string()),
    }
}

/// A drill the operator asks for (the TransitStream allows drills): the broadcaster kills the
/// stream's dispatcher once, so the whole story (verdict, dump, restart) can be rehearsed.
async fn drill_stream(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    if !is_valid_stream_name(&name) {
        return error(400, "not a valid stream name".to_owned());
    }
    match s.broadcaster.drill(&name, RESTART_TIMEOUT).await {
        Ok(RestartOutcome::Restarted) => {
            tracing::warn!(stream = %name, "drill: asked the broadcaster to kill the stream's dispatcher");
            (StatusCode::ACCEPTED, axum::Json(json!({ "drilled": name }))).into_response()
        }
        Ok(RestartOutcome::UnknownStream) => error(
            404,
            format!("the broadcaster has no stream {name}, or does not support drills"),
        ),
        Err(e) => {
            tracing::warn!(stream = %name, error = %e, "drill failed");
            error(502, e.to_string())
        }
    }
}

async fn restart_stream(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    let count = |outcome: &str| {
        s.monitor
            .metrics
            .restarts_requested
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    };
    if !is_valid_stream_name(&name) {
        count("bad_request");
        return error(400, "not a valid stream name".to_owned());
    }
    match s.broadcaster.restart(&name, RESTART_TIMEOUT).await {
        Ok(RestartOutcome::Restarted) => {
            count("restarted");
            tracing::info!(stream = %name, "asked the broadcaster to restart the stream's dispatcher");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "restarted": name })),
            )
                .into_response()
        }
        Ok(RestartOutcome::UnknownStream) => {
            count("unknown_stream");
            error(404, format!("the broadcaster has no stream {name}"))
        }
        Err(e) => {
            count("upstream_error");
            tracing::warn!(stream = %name, error = %e, "stream restart failed");
            error(502, e.to_string())
        }
    }
}
