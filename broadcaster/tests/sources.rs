//! Each source against a real peer: a `nats-server` process, a local HTTP server with
//! ETag/Last-Modified, and recordings on disk, including malformed and oversize input.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::*;
use stallwatch_testkit::net::free_port;
use stallwatch_testkit::wait::eventually;
use transit_broadcaster::pipeline::prepare::MAX_FEED_BYTES;
use transit_broadcaster::pipeline::quarantine::QuarantineKind;
use transit_broadcaster::pipeline::source::file::encode_frame;
use transit_broadcaster::pipeline::source::http::{Validators, poll_once};
use transit_broadcaster::pipeline::source::{SourceError, SourceOptions, SourceSpec};
use transit_broadcaster::{Config, Running};

async fn start(source: SourceSpec, options: SourceOptions) -> Running {
    transit_broadcaster::start(Config {
        channel_capacity: 64,
        source_options: options,
        ..Config::loopback(source)
    })
    .await
    .expect("broadcaster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_source_against_a_real_nats_server() {
    let port = free_port();
    let source: SourceSpec = format!("nats://127.0.0.1:{port}/transit.vehicles")
        .parse()
        .unwrap();
    // The broadcaster starts first: it must keep retrying until the server is up.
    let running = start(source, SourceOptions::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Some(nats) = NatsServer::start_on(port) else {
        running.shutdown().await;
        return;
    };
    nats.wait_ready().await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    let stream = running.stream("all").unwrap();
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    let publisher = async_nats::connect(nats.url()).await.unwrap();
    // Core NATS drops messages nobody is subscribed to yet: publish until one arrives.
    let first = loop {
        publisher
            .publish("transit.vehicles", good_feed())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(Ok(u))) = tokio::time::timeout(Duration::from_millis(200), sub.message())
            .await
            .map(|r| r.transpose())
        {
            break u;
        }
    };
    assert_eq!(first.vehicles.len(), 2);
    assert!(
        running
            .engine
            .errors()
            .recent()
            .iter()
            .any(|e| e.message.contains("cannot connect to nats://")),
        "the failed early connection attempts are recorded"
    );
    let seq = first.seq;
    publisher
        .publish(
            "transit.vehicles",
            Bytes::from_static(b"\xde\xad\xbe\xef garbage"),
        )
        .await
        .unwrap();
    publisher
        .publish("transit.vehicles", half_bad_feed())
        .await
        .unwrap();
    publisher
        .publish("transit.vehicles", good_feed())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let u = next_update(&mut sub).await;
    assert_eq!(
        (u.seq, u.vehicles.len(), u.quarantined_entities),
        (seq + 1, 1, 1)
    );
    let u = next_update(&mut sub).await;
    assert_eq!((u.seq, u.vehicles.len()), (seq + 2, 2));
    assert_eq!(stream.quarantine.count(QuarantineKind::Decode), 1);
    assert_eq!(stream.quarantine.count(QuarantineKind::Entity), 1);
    running.shutdown().await;
}

#[derive(Clone, Default)]
struct FeedServer {
    body: Arc<Mutex<(Bytes, u64)>>,
    requests: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
}

async fn serve_feed(State(s): State<FeedServer>, headers: HeaderMap) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let (body, version) = s.body.lock().unwrap().clone();
    let etag = format!("\"v{version}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn serve_last_modified(headers: HeaderMap) -> Response {
    const LM: &str = "Sat, 28 Nov 2026 02:00:00 GMT";
    if headers
        .get(header::IF_MODIFIED_SINCE)
        .is_some_and(|v| v == LM)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::LAST_MODIFIED, LM)], good_feed()).into_response()
}

async fn start_feed_server(feed: FeedServer) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/feed", axum::routing::get(serve_feed))
        .route("/lm", axum::routing::get(serve_last_modified))
        .route(
            "/broken",
            axum::routing::get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/huge",
            axum::routing::get(|| async { vec![0u8; MAX_FEED_BYTES + 1] }),
        )
        .with_state(feed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_polls_with_conditional_get() {
    let feed = FeedServer::default();
    *feed.body.lock().unwrap() = (good_feed(), 1);
    let addr = start_feed_server(feed.clone()).await;
    let running = start(
        format!("http://{addr}/feed").parse().unwrap(),
        SourceOptions {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    let stream = running.stream("all").unwrap();
    // The first poll may happen before we subscribe; wait for it, then subscribe.
    eventually("first poll taken", || stream.report().dequeued_total == 1).await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    eventually("several 304s", || {
        feed.not_modified.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert_eq!(
        stream.report().enqueued_total,
        1,
        "an unchanged feed is not re-broadcast"
    );
    // The server counts a 304 when it sends it; the source counts it once received.
    eventually("the source counted the 304s", || {
        running
            .engine
            .source_stats()
            .not_modified
            .load(Ordering::Relaxed)
            >= 4
    })
    .await;
    *feed.body.lock().unwrap() = (feed_of(vec![entity("V7", "R7", 1.0, 2.0)]), 2);
    let u = next_update(&mut sub).await;
    assert_eq!(u.seq, 2);
    assert_eq!(u.vehicles[0].vehicle_id, "V7");
    running.shutdown().await;

    // Errors are clear and leave the validators alone; Last-Modified works too.
    let client = reqwest::Client::new();
    let mut v = Validators::default();
    let err = poll_once(&client, &format!("http://{addr}/broken"), &mut v)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Status { status: 500, .. }),
        "{err}"
    );
    let err = poll_once(&client, &format!("http://{addr}/huge"), &mut v)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Oversize { .. }), "{err}");
    let err = poll_once(&client, "http://127.0.0.1:1/feed", &mut v)
        .await
        .unwrap_err();
    assert_eq!(err.label(), "request");
    let lm = format!("http://{addr}/lm");
    assert!(poll_once(&client, &lm, &mut v).await.unwrap().is_some());
    assert!(v.last_modified.is_some());
    assert!(poll_once(&client, &lm, &mut v).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_replays_a_recording_skipping_bad_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recording.pb");
    let mut data = Vec::new();
    encode_frame(&good_feed(), &mut data);
    encode_frame(b"\x0a\xff\xff garbage", &mut data);
    encode_frame(&half_bad_feed(), &mut data);
    encode_frame(&vec![0u8; MAX_FEED_BYTES + 1], &mut data);
    encode_frame(&feed_of(vec![entity("V3", "R3", 3.0, 3.0)]), &mut data);
    std::fs::write(&path, &data).unwrap();

    let running = start(
        format!("file://{}", path.display()).parse().unwrap(),
        SourceOptions {
            replay_rate: 0.0,
            replay_loop: false,
            ..Default::default()
        },
    )
    .await;
    let stream = running.stream("all").unwrap();
    eventually("4 messages replayed", || {
        stream.report().dequeued_total == 4
    })
    .await;
    assert_eq!(stream.quarantine.count(QuarantineKind::Decode), 1);
    assert_eq!(stream.quarantine.count(QuarantineKind::Entity), 1);
    assert_eq!(
        running.engine.source_stats().errors().get("oversize"),
        Some(&1),
        "the oversize frame is skipped with an error"
    );
    assert_eq!(
        running
            .engine
            .source_stats()
            .messages
            .load(Ordering::Relaxed),
        4
    );
    running.shutdown().await;

    // Looping replay at a rate, watched by a subscriber.
    let running = start(
        format!("file://{}", path.display()).parse().unwrap(),
        SourceOptions {
            replay_rate: 100.0,
            replay_loop: true,
            ..Default::default()
        },
    )
    .await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    let mut vehicles = std::collections::BTreeSet::new();
    for _ in 0..8 {
        for v in next_update(&mut sub).await.vehicles {
            vehicles.insert(v.vehicle_id);
        }
    }
    assert_eq!(
        vehicles.into_iter().collect::<Vec<_>>(),
        ["V1", "V2", "V3"],
        "valid vehicles of every good or half-bad message come through, loop after loop"
    );
    running.shutdown().await;

    // A truncated recording stops with an error naming the byte offset.
    let truncated = dir.path().join("truncated.pb");
    let mut cut = Vec::new();
    encode_frame(&good_feed(), &mut cut);
    let good_len = cut.len();
    encode_frame(&good_feed(), &mut cut);
    cut.truncate(cut.len() - 5);
    std::fs::write(&truncated, &cut).unwrap();
    let running = start(
        format!("file://{}", truncated.display()).parse().unwrap(),
        SourceOptions {
            replay_rate: 0.0,
            ..Default::default()
        },
    )
    .await;
    eventually("corruption reported", || {
        running.engine.errors().recent().iter().any(|e| {
            e.message.contains("truncated.pb")
                && e.message.contains(&format!("corrupt at byte {good_len}"))
        })
    })
    .await;
    let stream = running.stream("all").unwrap();
    eventually("the good frame went through", || {
        stream.report().dequeued_total == 1
    })
    .await;
    running.shutdown().await;

    // A missing file is a clear error, not a crash.
    let running = start(
        "file:///nonexistent/recording.pb".parse().unwrap(),
        SourceOptions::default(),
    )
    .await;
    eventually("missing file reported", || {
        running
            .engine
            .errors()
            .recent()
            .iter()
            .any(|e| e.message.contains("cannot read /nonexistent/recording.pb"))
    })
    .await;
    running.shutdown().await;
}
