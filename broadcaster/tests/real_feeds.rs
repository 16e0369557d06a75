//! Real agencies' GTFS-realtime captures (`shared/gtfs-rt/`, beside the workspace; each test
//! prints `SKIPPED` and passes when it is missing): the recording replayed whole, every entity
//! carried and none quarantined; the bad captures refused whole while the stream keeps
//! serving; and the HTTP source against a local server that serves the captures the ways
//! agencies do (gzip, content types, redirects, error pages, slow and huge answers).

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use common::*;
use stallwatch_testkit::wait::eventually;
use transit_broadcaster::generated::transit_v1::{StreamUpdate, SubscribeRequest};
use transit_broadcaster::pipeline::prepare::MAX_FEED_BYTES;
use transit_broadcaster::pipeline::quarantine::QuarantineKind;
use transit_broadcaster::pipeline::source::file::{Frame, FrameReader};
use transit_broadcaster::pipeline::source::http::{Validators, poll_once};
use transit_broadcaster::pipeline::source::{SourceError, SourceSpec};
use transit_broadcaster::{Config, Running};

/// The recording's totals (its README).
const MESSAGES: usize = 20;
const VEHICLES: usize = 830;
const TRIP_UPDATES: usize = 1_305;
const ALERTS: usize = 137;

async fn start() -> Running {
    transit_broadcaster::start(Config {
        // Room for the whole recording: nothing is dropped, every message is accounted for.
        channel_capacity: 64,
        subscriber_queue: 64,
        ..Config::loopback(SourceSpec::Manual)
    })
    .await
    .expect("broadcaster starts")
}

async fn recording_frames(dir: &Path) -> Vec<bytes::Bytes> {
    let file = tokio::fs::File::open(dir.join("recording.bin"))
        .await
        .unwrap();
    let mut reader = FrameReader::new(tokio::io::BufReader::new(file), "recording.bin");
    let mut frames = Vec::new();
    loop {
        match reader.next_frame().await.unwrap() {
            Frame::Message(m) => frames.push(m),
            Frame::Oversize(n) => panic!("oversize frame of {n} bytes"),
            Frame::End => return frames,
        }
    }
}

async fn subscribe_raw(running: &Running, raw: bool) -> tonic::Streaming<StreamUpdate> {
    client(running.grpc_addr)
        .await
        .max_decoding_message_size(64 * 1024 * 1024)
        .subscribe(SubscribeRequest {
            stream: "all".into(),
            include_raw_entities: raw,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_is_carried_whole_with_nothing_quarantined() {
    let Some(dir) = gtfs_rt_dir() else { return };
    let frames = recording_frames(&dir).await;
    assert_eq!(frames.len(), MESSAGES);
    let running = start().await;
    let mut plain = subscribe_raw(&running, false).await;
    let mut raw = subscribe_raw(&running, true).await;
    let stream = running.stream("all").unwrap();
    eventually("subscribers", || stream.hub.subscriber_count() == 2).await;
    let ingest = running.ingest();
    for frame in &frames {
        ingest.push(frame.clone());
    }
    let (mut vehicles, mut trip_updates, mut alerts, mut quarantined) = (0, 0, 0, 0);
    let (mut without_position, mut raw_entities) = (0, 0);
    for frame in &frames {
        let u = next_update(&mut plain).await;
        vehicles += u.vehicles.len();
        trip_updates += u.trip_updates.len();
        alerts += u.alerts.len();
        quarantined += u.quarantined_entities;
        without_position += u.vehicles.iter().filter(|v| !v.has_position).count();
        let r = next_update(&mut raw).await;
        assert_eq!(r.seq, u.seq);
        raw_entities += r.raw_entities.len();
        // Raw entities are the producer's bytes: together with the header they are the message.
        let original = transit_broadcaster::pipeline::prepare::decode(frame).unwrap();
        for (e, c) in r.raw_entities.iter().zip(&original.carried) {
            assert_eq!(e.feed_entity[..], frame[c.raw.clone()]);
        }
    }
    assert_eq!(
        (vehicles, trip_updates, alerts, quarantined),
        (VEHICLES, TRIP_UPDATES, ALERTS, 0)
    );
    // MTA NYCT's trip-and-stop-only vehicle positions (21 + 21 + 102) are carried.
    assert_eq!(without_position, 144);
    assert_eq!(raw_entities, VEHICLES + TRIP_UPDATES + ALERTS);
    assert_eq!(stream.quarantine.total(), 0);
    // NMBS's alerts repeat entity ids: counted, not refused.
    assert_eq!(stream.entities.duplicate_ids(), 4);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_captures_are_refused_whole_and_the_stream_keeps_serving() {
    let Some(dir) = gtfs_rt_dir() else { return };
    let running = start().await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    let stream = running.stream("all").unwrap();
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    let good = bytes::Bytes::from(
        std::fs::read(dir.join("feeds/caltrain-vehiclepositions-2023-11.pb")).unwrap(),
    );
    let bad = stallwatch_testkit::gtfs_rt::files(&dir.join("bad"));
    assert_eq!(bad.len(), 2);
    let ingest = running.ingest();
    ingest.push(good.clone());
    for (_, data) in bad.iter() {
        ingest.push(data.clone().into());
        ingest.push(good.clone());
    }
    for _ in 0..=bad.len() {
        let u = next_update(&mut sub).await;
        assert_eq!((u.vehicles.len(), u.quarantined_entities), (14, 0));
    }
    assert_eq!(stream.quarantine.count(QuarantineKind::Decode), 2);
    assert_eq!(stream.quarantine.total(), 2);
    let reasons: Vec<String> = stream
        .quarantine
        .recent()
        .into_iter()
        .map(|q| q.error)
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("not a GTFS-realtime FeedMessage")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("text, not protobuf: \"not valid pb data\"")),
        "{reasons:?}"
    );
    running.shutdown().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Serves one capture the ways agencies do.
async fn start_agency_server(feed: Vec<u8>) -> std::net::SocketAddr {
    use axum::routing::get;
    let gz = gzip(&feed);
    // Decompresses to more than the feed size limit.
    let bomb = gzip(&vec![0u8; MAX_FEED_BYTES + 1024]);
    let feed = Bytes::from(feed);
    let protobuf = move |ct: &'static str, body: Bytes| {
        move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, ct)], body).into_response() }
        }
    };
    let gzipped = |body: Vec<u8>| {
        let body = Bytes::from(body);
        move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/x-protobuf"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    body,
                )
                    .into_response()
            }
        }
    };
    let app = axum::Router::new()
        .route("/gzip", get(gzipped(gz)))
        .route("/bomb", get(gzipped(bomb)))
        .route(
            "/protobuf",
            get(protobuf("application/x-protobuf", feed.clone())),
        )
        .route(
            "/octet",
            get(protobuf("application/octet-stream", feed.clone())),
        )
        .route("/untyped", get(protobuf("", feed.clone())))
        .route("/moved", get(|| async { Redirect::temporary("/octet") }))
        .route(
            "/html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body><h1>Service Unavailable</h1></body></html>",
                )
            }),
        )
        .route(
            "/down",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "feed down for maintenance",
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Response::new(axum::body::Body::empty())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_takes_what_agencies_serve_and_refuses_error_pages_whole() {
    let Some(dir) = gtfs_rt_dir() else { return };
    let capture = std::fs::read(dir.join("feeds/nyct-g-mixed-2023-08.pb")).unwrap();
    let addr = start_agency_server(capture.clone()).await;
    // The source's own client settings, with the shortest timeout it uses.
    let client =
        transit_broadcaster::pipeline::source::http::client(Duration::from_secs(1)).unwrap();
    let poll = |path: &str| {
        let client = client.clone();
        let url = format!("http://{addr}{path}");
        async move { poll_once(&client, &url, &mut Validators::default()).await }
    };
    for path in ["/gzip", "/protobuf", "/octet", "/untyped", "/moved"] {
        let body = poll(path).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(body.as_deref(), Some(&capture[..]), "{path}");
        let decoded = transit_broadcaster::pipeline::prepare::decode(&body.unwrap()).unwrap();
        assert_eq!((decoded.carried.len(), decoded.malformed.len()), (42, 0));
    }
    match poll("/html").await {
        Err(e @ SourceError::NotAFeed { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("text/html") && msg.contains("Service Unavailable"),
                "{msg}"
            );
        }
        other => panic!("html: {other:?}"),
    }
    match poll("/down").await {
        Err(e @ SourceError::Status { status: 503, .. }) => {
            assert!(e.to_string().contains("feed down for maintenance"), "{e}");
        }
        other => panic!("down: {other:?}"),
    }
    assert!(
        matches!(poll("/bomb").await, Err(SourceError::Oversize { .. })),
        "a body over the limit after decompression is refused"
    );
    assert!(
        matches!(poll("/slow").await, Err(SourceError::Request { .. })),
        "a slow answer times out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_serves_a_gzip_feed_end_to_end() {
    let Some(dir) = gtfs_rt_dir() else { return };
    let capture = std::fs::read(dir.join("feeds/bart-alerts-2019-08.pb")).unwrap();
    let addr = start_agency_server(capture).await;
    let running = transit_broadcaster::start(Config {
        source_options: transit_broadcaster::pipeline::source::SourceOptions {
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        },
        ..Config::loopback(format!("http://{addr}/gzip").parse().unwrap())
    })
    .await
    .unwrap();
    let mut sub = subscribe(running.grpc_addr, "all").await;
    let u = next_update(&mut sub).await;
    assert_eq!(u.alerts.len(), 1);
    assert!(!u.alerts[0].header_text.is_empty());
    running.shutdown().await;
}
