//! A proptest state machine over the connection loop: random sequences of frames (any
//! kind, flag, a few stream ids, header blocks valid and not, payloads of any bytes) on
//! one connection. After each sequence the connection has either closed or still answers a
//! PING; no connection task ever panics; and a subscriber on another connection still
//! receives. Bounded (256 sequences of up to 40 frames) so CI runs it in seconds.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::raw::*;
use support::{ECHO, STALL, Server, WATCH};

static PANICKED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
enum Step {
    Frame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    },
    Request {
        stream: u32,
        path: &'static str,
        flags: u8,
    },
}

impl Step {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Step::Frame {
                kind,
                flags,
                stream,
                payload,
            } => frame(*kind, *flags, *stream, payload),
            Step::Request {
                stream,
                path,
                flags,
            } => frame(
                HEADERS,
                END_HEADERS | flags,
                *stream,
                &request_block(path, &[]),
            ),
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    let stream = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(3),
        Just(5),
        Just(0x7fff_ffff)
    ];
    prop_oneof![
        3 => (0u8..=10, any::<u8>(), stream.clone(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(kind, flags, stream, payload)| Step::Frame { kind, flags, stream, payload }),
        1 => (stream, prop_oneof![Just(WATCH), Just(ECHO), Just(STALL), Just("/")], prop_oneof![Just(0u8), Just(END_STREAM)])
            .prop_map(|(stream, path, flags)| Step::Request { stream, path, flags }),
    ]
}

#[test]
fn random_frame_sequences_never_panic_and_leave_other_connections_served() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        previous(info);
    }));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(Server::start());
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(step(), 1..40);
    runner
        .run(&strategy, |steps| {
            runtime.block_on(async {
                let mut raw = Raw::connect(server.addr).await;
                let bytes: Vec<u8> = steps.iter().flat_map(Step::bytes).collect();
                let _ = raw.try_write(&bytes).await;
                // Closed, or still answering.
                let _ = raw.try_write(&frame(PING, 0, 0, b"alive?!!")).await;
                loop {
                    match raw.next().await {
                        None => break,
                        Some(f) if f.kind == PING && f.payload == b"alive?!!" => break,
                        Some(f) if f.kind == GOAWAY => {
                            while raw.next().await.is_some() {}
                            break;
                        }
                        Some(_) => {}
                    }
                }
            });
            prop_assert!(!PANICKED.load(Ordering::SeqCst), "a task panicked");
            Ok(())
        })
        .unwrap();
    runtime.block_on(async {
        let mut watcher = Raw::connect(server.addr).await;
        watcher.call(1, WATCH, b"all").await;
        watcher.headers(1).await;
        server.publish(b"after");
        let want = grpc_message(0, b"after");
        watcher
            .until("DATA", |f| f.kind == DATA && f.payload == want)
            .await;
        server.stop().await;
    });
    assert!(!PANICKED.load(Ordering::SeqCst));
}
