//! Shared helpers for the sidecar's integration tests and benchmarks: a fake broadcaster
//! admin API (task dumps, restarts) and in-process `run` arguments. Reports and task dumps
//! come from `stallwatch_testkit`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use stallwatch_core::taskdump::TaskDump;
use transit_sidecar::cli::{Command, RunArgs};

pub struct FakeBroadcaster {
    pub url: String,
    pub restarts: Arc<AtomicU64>,
}

#[derive(Clone)]
struct FakeState {
    dump: Arc<String>,
    streams: Arc<Vec<String>>,
    restarts: Arc<AtomicU64>,
    delay: Duration,
}

async fn debug_dump(State(s): State<FakeState>) -> Response {
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        s.dump.as_str().to_owned(),
    )
        .into_response()
}

async fn restart(State(s): State<FakeState>, UrlPath(name): UrlPath<String>) -> Response {
    if s.streams.contains(&name) {
        s.restarts.fetch_add(1, Ordering::SeqCst);
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "restarted": name })),
        )
            .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Serve `/debug/dump` and `/admin/streams/{name}/restart` on a loopback port.
pub async fn fake_broadcaster(dump: &TaskDump, delay: Duration) -> FakeBroadcaster {
    let restarts = Arc::new(AtomicU64::new(0));
    let state = FakeState {
        dump: Arc::new(serde_json::to_string(dump).unwrap()),
        streams: Arc::new(dump.streams.iter().map(|s| s.name.clone()).collect()),
        restarts: restarts.clone(),
        delay,
    };
    let app = Router::new()
        .route("/debug/dump", get(debug_dump))
        .route("/admin/streams/{name}/restart", post(restart))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeBroadcaster {
        url: format!("http://{addr}"),
        restarts,
    }
}

/// `transit-sidecar run` arguments for an in-process test sidecar: every port 0, dumps in
/// `dump_dir`, publishing off.
pub fn run_args(dump_dir: &Path, token_file: Option<&Path>, broadcaster_url: &str) -> RunArgs {
    let mut argv = vec![
        "transit-sidecar".to_owned(),
        "run".to_owned(),
        "--ingest-addr=127.0.0.1:0".to_owned(),
        "--http-addr=127.0.0.1:0".to_owned(),
        "--admin-addr=127.0.0.1:0".to_owned(),
        format!("--broadcaster-admin-url={broadcaster_url}"),
        format!("--dump-dir={}", dump_dir.display()),
        "--pod-name=bc-0".to_owned(),
        "--pod-namespace=transit".to_owned(),
        "--node-name=node-1".to_owned(),
        "--publish=off".to_owned(),
    ];
    if let Some(t) = token_file {
        argv.push(format!("--admin-token-file={}", t.display()));
    }
    use clap::Parser as _;
    match transit_sidecar::cli::Cli::try_parse_from(argv)
        .unwrap()
        .command
    {
        Command::Run(a) => *a,
        Command::Inspect(_) => panic!("run args expected"),
    }
}
