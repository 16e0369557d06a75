//! One raw-frame test per known HTTP/2 attack class: each asserts that the attacking
//! connection is closed with GOAWAY ENHANCE_YOUR_CALM (counted by its reason) or that its
//! work stays bounded, that the server's memory grows by less than a budget, and that a
//! subscriber on another connection keeps receiving. The tests run one at a time (`SERIAL`):
//! the memory checks read the whole process's RSS.

mod support;

use std::time::Duration;

use lean_h2::{Exceeded, Limits, Rate};
use stallwatch_testkit::wait::eventually;
use support::raw::*;
use support::{ECHO, STALL, Server, WATCH};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What an attack may add to the server's resident memory. The bugs these tests guard
/// against grew it by hundreds of MiB.
const MEMORY_BUDGET: usize = 32 << 20;

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A subscriber on its own connection.
async fn watcher(server: &Server) -> Raw {
    let mut raw = Raw::connect(server.addr).await;
    raw.call(1, WATCH, b"all").await;
    raw.headers(1).await;
    // It reads whatever comes: windows wide open.
    raw.send(WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes())
        .await;
    raw.send(WINDOW_UPDATE, 0, 1, &(1u32 << 30).to_be_bytes())
        .await;
    raw
}

/// The watcher still gets what is published.
async fn still_receives(server: &Server, watcher: &mut Raw, tag: &[u8]) {
    server.publish(tag);
    let want = grpc_message(0, tag);
    watcher
        .until("the watcher's message", |f| {
            // Consecutive messages may share a DATA frame.
            f.kind == DATA && f.stream_id == 1 && f.payload.windows(want.len()).any(|w| w == want)
        })
        .await;
}

/// Runs `attack` against a server with `limits`; checks the memory budget and the watcher.
async fn under_attack<F, Fut>(limits: Limits, attack: F) -> Server
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = Server::start_with(limits).await;
    let mut watch = watcher(&server).await;
    still_receives(&server, &mut watch, b"before").await;
    let before = rss();
    attack(server.addr).await;
    let grown = rss().saturating_sub(before);
    assert!(
        grown < MEMORY_BUDGET,
        "the attack grew the server by {grown} bytes"
    );
    still_receives(&server, &mut watch, b"after").await;
    server
}

/// Sends `frames` in one write and expects GOAWAY ENHANCE_YOUR_CALM. The rate limits refill
/// with time, so the floods send well past their bursts; the server reads and drops what
/// follows its GOAWAY before it closes, so the GOAWAY is not lost to a TCP reset.
async fn expect_calm(addr: std::net::SocketAddr, frames: Vec<u8>) {
    let mut raw = Raw::connect(addr).await;
    raw.write(&frames).await;
    let (code, debug) = raw.goaway().await;
    assert_eq!(code, ENHANCE_YOUR_CALM, "{debug}");
}

fn repeat(n: usize, one: impl Fn(u32) -> Vec<u8>) -> Vec<u8> {
    (0..n as u32).flat_map(one).collect()
}

fn open_watch(id: u32) -> Vec<u8> {
    [
        frame(HEADERS, END_HEADERS, id, &request_block(WATCH, &[])),
        frame(DATA, END_STREAM, id, &grpc_message(0, b"all")),
    ]
    .concat()
}

fn setting(id: u16, value: u32) -> Vec<u8> {
    [&id.to_be_bytes()[..], &value.to_be_bytes()].concat()
}

#[tokio::test]
async fn rapid_reset_of_unanswered_streams_is_cut_at_20_pending() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        // CVE-2023-44487: HEADERS then RST_STREAM before the (bridged) answer.
        let pairs = repeat(21, |i| {
            let id = 2 * i + 1;
            [
                frame(HEADERS, END_HEADERS, id, &request_block(STALL, &[])),
                frame(RST_STREAM, 0, id, &8u32.to_be_bytes()),
            ]
            .concat()
        });
        expect_calm(addr, pairs).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::PendingResets), 1);
    server.stop().await;
}

#[tokio::test]
async fn rapid_reset_of_answered_streams_is_cut_by_the_reset_rate() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        let pairs = repeat(600, |i| {
            let id = 2 * i + 1;
            [
                open_watch(id),
                frame(RST_STREAM, 0, id, &8u32.to_be_bytes()),
            ]
            .concat()
        });
        expect_calm(addr, pairs).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::ResetRate), 1);
    server.stop().await;
}

#[tokio::test]
async fn empty_continuation_frames_are_cut_per_header_block() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        // CVE-2024-27316 class: a header block that never ends.
        let mut frames = frame(HEADERS, 0, 1, &request_block(WATCH, &[]));
        frames.extend(repeat(6, |_| frame(CONTINUATION, 0, 1, &[])));
        expect_calm(addr, frames).await;
        // Tiny ones likewise: one byte each.
        let block = request_block(WATCH, &[]);
        let mut frames = frame(HEADERS, 0, 1, &block[..1]);
        frames.extend(repeat(6, |i| {
            frame(CONTINUATION, 0, 1, &block[1 + i as usize..2 + i as usize])
        }));
        expect_calm(addr, frames).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::Continuations), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_header_block_past_32_kib_closes_the_connection() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        let mut frames = frame(HEADERS, 0, 1, &[0u8; 16_000]);
        frames.extend(frame(CONTINUATION, 0, 1, &[0u8; 16_000]));
        frames.extend(frame(CONTINUATION, 0, 1, &[0u8; 16_000]));
        expect_calm(addr, frames).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::HeaderBlock), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_hpack_bomb_closes_the_connection() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        // One 4 KiB entry in the dynamic table (literal with incremental indexing), then a
        // block that names it thousands of times (index 62, one byte each).
        let big = "x".repeat(4000);
        let mut block = vec![0x40];
        block.extend(literal_block(&[("x-bomb", &big)])[1..].iter());
        block.extend(request_block(WATCH, &[]));
        block.extend(std::iter::repeat_n(0xbe, 30));
        expect_calm(addr, frame(HEADERS, END_HEADERS, 1, &block)).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::HeaderList), 1);
    server.stop().await;
}

#[tokio::test]
async fn empty_data_frames_are_cut() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        let mut frames = frame(HEADERS, END_HEADERS, 1, &request_block(STALL, &[]));
        frames.extend(repeat(300, |_| frame(DATA, 0, 1, &[])));
        expect_calm(addr, frames).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::EmptyFrames), 1);
    server.stop().await;
}

#[tokio::test]
async fn settings_ping_and_priority_floods_are_cut() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        expect_calm(addr, repeat(300, |_| frame(SETTINGS, 0, 0, &[]))).await;
        expect_calm(addr, repeat(300, |_| frame(PING, 0, 0, &[0; 8]))).await;
        expect_calm(
            addr,
            repeat(3000, |_| frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 16])),
        )
        .await;
    })
    .await;
    for reason in [Exceeded::Settings, Exceeded::Pings, Exceeded::Priorities] {
        assert_eq!(server.metrics.count(reason), 1, "{reason:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn window_update_floods_are_cut() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        let mut frames = open_watch(1);
        frames.extend(repeat(3000, |_| {
            frame(WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes())
        }));
        expect_calm(addr, frames).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::WindowUpdates), 1);
    server.stop().await;
}

/// With the rate limits lifted, the queues still hold each stream once: 1,000 streams, then
/// SETTINGS and WINDOW_UPDATE +1 storms (the amplification that grew the server by
/// hundreds of MiB) leave memory within the budget and the connection answering.
#[tokio::test]
async fn window_storms_over_many_streams_stay_bounded_by_construction() {
    let _serial = SERIAL.lock().await;
    let lifted = Rate {
        burst: u32::MAX,
        per_second: u32::MAX,
    };
    let limits = Limits {
        settings: lifted,
        window_updates: lifted,
        ..Limits::default()
    };
    let server = under_attack(limits, |addr| async move {
        // A zero connection window: nothing the storm opens can be sent.
        let mut raw = Raw::connect_with(addr, &[(4, 0)]).await;
        raw.write(&repeat(1000, |i| {
            frame(HEADERS, END_HEADERS, 2 * i + 1, &request_block(WATCH, &[]))
        }))
        .await;
        // Each storm in one write: the server reads it in as few rounds as it can.
        let storm = repeat(80_000, |i| frame(SETTINGS, 0, 0, &setting(4, i + 1)));
        raw.write(&storm).await;
        let storm = repeat(40_000, |_| frame(WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes()));
        raw.write(&storm).await;
        raw.send(PING, 0, 0, b"stillup!").await;
        let pong = raw
            .until("PING ACK", |f| f.kind == PING || f.kind == GOAWAY)
            .await;
        assert_eq!(pong.payload, b"stillup!");
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn resets_the_peer_provokes_are_cut_at_1024() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        // MadeYouReset: each stream made to fail with a stream error (a malformed request).
        let block = [request_block(WATCH, &[]), literal_block(&[("Bad", "x")])].concat();
        let frames = repeat(1025, |i| frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
        expect_calm(addr, frames).await;
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::LocalResets), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_the_preface_is_closed() {
    let _serial = SERIAL.lock().await;
    let limits = Limits {
        preface_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = under_attack(limits, |addr| async move {
        let mut silent = Raw::connect_bare(addr).await;
        let (code, _) = silent.goaway().await;
        assert_eq!(code, ENHANCE_YOUR_CALM);
        // Half a preface, then nothing: the same.
        let mut slow = Raw::connect_bare(addr).await;
        slow.write(&PREFACE[..10]).await;
        let (code, _) = slow.goaway().await;
        assert_eq!(code, ENHANCE_YOUR_CALM);
    })
    .await;
    assert_eq!(server.metrics.count(Exceeded::PrefaceTimeout), 2);
    server.stop().await;
}

#[tokio::test]
async fn the_last_stream_id_leaves_no_stream_to_open() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        let mut raw = Raw::connect(addr).await;
        raw.write(&open_watch(0x7fff_ffff)).await;
        raw.headers(0x7fff_ffff).await;
        raw.write(&open_watch(1)).await;
        assert_eq!(raw.goaway().await.0, PROTOCOL_ERROR);
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_with_a_zero_window_that_never_reads_costs_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let mut watch = watcher(&server).await;
    let before = rss();
    // Many streams, no window, and the socket never read: what the server holds for them
    // is its write buffer and one message per stream.
    let mut stalled = Raw::connect_with(server.addr, &[(4, 0)]).await;
    stalled.write(&repeat(500, |i| open_watch(2 * i + 1))).await;
    eventually("500 opened", || {
        server.opened.load(std::sync::atomic::Ordering::SeqCst) >= 501
    })
    .await;
    let message = vec![7u8; 4096];
    for _ in 0..200 {
        server.publish(&message);
    }
    still_receives(&server, &mut watch, b"after").await;
    let grown = rss().saturating_sub(before);
    assert!(grown < MEMORY_BUDGET, "grew by {grown} bytes");
    drop(stalled);
    server.stop().await;
}

#[tokio::test]
async fn a_bridged_request_fed_tiny_data_frames_is_reset_at_its_budget() {
    let _serial = SERIAL.lock().await;
    let server = under_attack(Limits::default(), |addr| async move {
        let mut raw = Raw::connect(addr).await;
        let mut frames = frame(HEADERS, END_HEADERS, 1, &request_block(STALL, &[]));
        frames.extend(repeat(3000, |_| frame(DATA, 0, 1, &[0])));
        raw.write(&frames).await;
        assert_eq!(raw.rst(1).await, ENHANCE_YOUR_CALM);
        // The connection goes on.
        raw.call(3, ECHO, b"hi").await;
        let (head, _) = raw.headers(3).await;
        assert_eq!(field(&head, ":status"), Some("200"));
    })
    .await;
    server.stop().await;
}
