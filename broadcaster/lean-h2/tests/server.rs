//! The server behind its seam, with the test handler (`support`): local streams and the
//! bridge on one connection, protocol errors cost only their own connection. The
//! broadcaster's `tests/http2_server.rs` covers every RFC rule against the real services.

mod support;

use stallwatch_testkit::wait::eventually;
use support::raw::*;
use support::{ECHO, REFUSED, Server, WATCH};

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
