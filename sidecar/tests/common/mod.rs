//! Shared helpers for the sidecar's integration tests and benchmarks: a fake broadcaster
//! admin API (task dumps, restarts) and report builders.
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
use stallwatch_core::report::{
    ChannelReport, DispatcherReport, DispatcherState, PROTOCOL_V1, Report, StreamReport,
};
use stallwatch_core::taskdump::{
    ErrorRecord, QuarantinedMessage, TASKDUMP_V1, TaskDump, TaskInfo, TaskKind,
};
use transit_sidecar::cli::{Command, RunArgs};

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn stream(name: &str, depth: u64, enq: u64, deq: u64, state: DispatcherState) -> StreamReport {
    StreamReport {
        name: name.into(),
        channel: ChannelReport { depth, capacity: 5 },
        enqueued_total: enq,
        dequeued_total: deq,
        dropped_oldest_total: enq.saturating_sub(deq).saturating_sub(depth),
        quarantined_total: 0,
        last_dequeue_ms: None,
        dispatcher: DispatcherReport {
            state,
            restarts_total: 0,
        },
        last_error: None,
        subscribers: 3,
        delivered_total: deq * 3,
    }
}

pub fn report(instance: &str, seq: u64, streams: Vec<StreamReport>) -> Report {
    Report {
        protocol: PROTOCOL_V1.into(),
        instance: instance.into(),
        seq,
        sent_at_ms: now_ms(),
        interval_ms: 250,
        pid: Some(std::process::id()),
        version: Some("fake-broadcaster 1.0".into()),
        streams,
    }
}

/// A task dump like the broadcaster's for a process serving `streams` streams with
/// `subscribers` subscriber tasks each, where `dead_stream` (if any) has no dispatcher.
pub fn task_dump(streams: &[&str], subscribers: usize, dead_stream: Option<&str>) -> TaskDump {
    let mut tasks = vec![
        TaskInfo {
            name: "source/synthetic".into(),
            kind: TaskKind::Source,
            stream: None,
            spawned_at_ms: 1,
            frames: vec![
                "transit_broadcaster::source::run at src/source.rs:88".into(),
                "transit_broadcaster::source::synthetic::next at src/source/synthetic.rs:140"
                    .into(),
                "tokio::time::sleep".into(),
            ],
        },
        TaskInfo {
            name: "reporter".into(),
            kind: TaskKind::Reporter,
            stream: None,
            spawned_at_ms: 1,
            frames: vec![
                "transit_broadcaster::reporter::run at src/reporter.rs:51".into(),
                "tokio::time::interval::tick".into(),
            ],
        },
    ];
    for s in streams {
        if Some(*s) != dead_stream {
            tasks.push(TaskInfo {
                name: format!("dispatcher/{s}"),
                kind: TaskKind::Dispatcher,
                stream: Some((*s).into()),
                spawned_at_ms: 2,
                frames: vec![
                    "transit_broadcaster::dispatch::supervise at src/dispatch.rs:40".into(),
                    "transit_broadcaster::dispatch::run at src/dispatch.rs:80".into(),
                    "transit_broadcaster::channel::Receiver::recv at src/channel.rs:120".into(),
                ],
            });
        }
        for i in 0..subscribers {
            tasks.push(TaskInfo {
                name: format!("subscriber/{s}/{i}"),
                kind: TaskKind::Subscriber,
                stream: Some((*s).into()),
                spawned_at_ms: 3,
                frames: vec![
                    "tonic::server::streaming at tonic/src/server/grpc.rs:300".into(),
                    "transit_broadcaster::grpc::subscribe::{{closure}} at src/grpc.rs:210".into(),
                    "tokio::sync::mpsc::Receiver::recv".into(),
                ],
            });
        }
    }
    let stream_reports = streams
        .iter()
        .map(|s| {
            let dead = Some(*s) == dead_stream;
            let mut r = stream(
                s,
                if dead { 5 } else { 0 },
                1000,
                if dead { 900 } else { 1000 },
                if dead {
                    DispatcherState::Dead
                } else {
                    DispatcherState::Running
                },
            );
            if dead {
                r.quarantined_total = 1;
                r.last_error = Some(stallwatch_core::report::ErrorReport {
                    at_ms: now_ms() - 5000,
                    message: "prepare failed: invalid digit found in string (vehicle 4412 field 'bearing')".into(),
                });
            }
            r
        })
        .collect();
    TaskDump {
        protocol: TASKDUMP_V1.into(),
        instance: "fake-1".into(),
        pid: std::process::id(),
        captured_at_ms: now_ms(),
        tasks,
        backtrace: "╼ transit_broadcaster::source::run at src/source.rs:88\n".repeat(20),
        streams: stream_reports,
        quarantine: dead_stream
            .map(|s| {
                vec![QuarantinedMessage {
                    stream: s.into(),
                    at_ms: now_ms() - 5000,
                    kind: "entity".into(),
                    error: "invalid digit found in string (vehicle 4412 field 'bearing')".into(),
                    excerpt_hex: "0a0434343132".repeat(40),
                    size: 412,
                }]
            })
            .unwrap_or_default(),
        recent_errors: dead_stream
            .map(|s| {
                vec![ErrorRecord {
                    stream: Some(s.into()),
                    at_ms: now_ms() - 5000,
                    message: "dispatcher ended: prepare failed".into(),
                }]
            })
            .unwrap_or_default(),
    }
}

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
