//! The server behind its seam, with the test handler (`support`): local streams and the
//! bridge on one connection, protocol errors cost only their own connection. The
//! broadcaster's `tests/http2_server.rs` covers every RFC rule against the real services.

mod support;

use stallwatch_testkit::wait::eventually;
use std::sync::atomic::Ordering;
use support::raw::*;

use support::{ECHO, HOLD, HOLD_BODY, REFUSED, Server, WATCH};

/// RST_STREAM's CANCEL code.
const CANCEL: u32 = 0x8;

#[tokio::test]
async fn local_streams_and_bridged_calls_share_a_connection() {
    let server = Server::start().await;
    let mut raw = Raw::connect(server.addr).await;
    raw.call(1, WATCH, b"all").await;
    let (head, end) = raw.headers(1).await;
    assert_eq!((field(&head, ":status"), end), (Some("200"), false));
    eventually("opened", || {
        server.opened.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    server.publish(b"first");
    let data = raw
        .until("DATA on 1", |f| f.kind == DATA && f.stream_id == 1)
        .await;
    assert_eq!(data.payload, grpc_message(0, b"first"));

    // Refused by the handler: a trailers-only response with its status.
    raw.call(3, WATCH, REFUSED).await;
    let (fields, end) = raw.headers(3).await;
    assert!(end);
    assert_eq!(field(&fields, "grpc-status"), Some("5"));
    assert_eq!(field(&fields, "grpc-message"), Some("no%20such%20feed"));

    // Bridged: the echo answers its request, with trailers.
    raw.call(5, ECHO, b"hello").await;
    let (head, _) = raw.headers(5).await;
    assert_eq!(field(&head, ":status"), Some("200"));
    let data = raw
        .until("DATA on 5", |f| f.kind == DATA && f.stream_id == 5)
        .await;
    assert_eq!(data.payload, grpc_message(0, b"hello"));
    let (trailers, end) = raw.headers(5).await;
    assert_eq!((field(&trailers, "grpc-status"), end), (Some("0"), true));

    // The local stream still flows.
    server.publish(b"second");
    let data = raw
        .until("DATA on 1", |f| f.kind == DATA && f.stream_id == 1)
        .await;
    assert_eq!(data.payload, grpc_message(0, b"second"));
    server.stop().await;
}

#[tokio::test]
async fn a_connection_error_closes_only_its_connection() {
    let server = Server::start().await;
    let mut watcher = Raw::connect(server.addr).await;
    watcher.call(1, WATCH, b"all").await;
    watcher.headers(1).await;
    let mut bad = Raw::connect(server.addr).await;
    bad.send(PING, 0, 0, &[0; 7]).await;
    let (code, debug) = bad.goaway().await;
    assert_eq!(code, FRAME_SIZE_ERROR, "{debug}");
    eventually("opened", || {
        server.opened.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    server.publish(b"still here");
    let data = watcher
        .until("DATA on 1", |f| f.kind == DATA && f.stream_id == 1)
        .await;
    assert_eq!(data.payload, grpc_message(0, b"still here"));
    server.stop().await;
}

/// A peer that resets a bridged call cancels it: the service's future (still waiting) and its
/// response body (mid-stream) are dropped, and the connection goes on.
#[tokio::test]
async fn resetting_a_bridged_call_drops_its_service_future_and_body() {
    let server = Server::start().await;
    let held = || server.held.load(Ordering::SeqCst);
    let mut raw = Raw::connect(server.addr).await;

    raw.call(1, HOLD, b"").await;
    eventually("the service future running", || held() == 1).await;
    raw.send(RST_STREAM, 0, 1, &CANCEL.to_be_bytes()).await;
    eventually("the service future dropped", || held() == 0).await;

    raw.call(3, HOLD_BODY, b"").await;
    raw.until("DATA on 3", |f| f.kind == DATA && f.stream_id == 3)
        .await;
    assert_eq!(held(), 1, "the body is still being served");
    raw.send(RST_STREAM, 0, 3, &CANCEL.to_be_bytes()).await;
    eventually("the response body dropped", || held() == 0).await;

    raw.call(5, ECHO, b"still here").await;
    let data = raw
        .until("DATA on 5", |f| f.kind == DATA && f.stream_id == 5)
        .await;
    assert_eq!(data.payload, grpc_message(0, b"still here"));
    server.stop().await;
}

/// A connection that closes drops every bridged call on it, waiting or mid-response; while
/// they wait, other calls on the connection are answered.
#[tokio::test]
async fn closing_the_connection_drops_its_bridged_calls() {
    let server = Server::start().await;
    let held = || server.held.load(Ordering::SeqCst);
    let mut raw = Raw::connect(server.addr).await;
    raw.call(1, HOLD, b"").await;
    raw.call(3, HOLD_BODY, b"").await;
    raw.until("DATA on 3", |f| f.kind == DATA && f.stream_id == 3)
        .await;
    eventually("both services running", || held() == 2).await;
    // A service waiting (asynchronously) holds up nothing else on its connection.
    raw.call(5, ECHO, b"meanwhile").await;
    let data = raw
        .until("DATA on 5", |f| f.kind == DATA && f.stream_id == 5)
        .await;
    assert_eq!(data.payload, grpc_message(0, b"meanwhile"));
    drop(raw);
    eventually("both dropped with the connection", || held() == 0).await;
    server.stop().await;
}
