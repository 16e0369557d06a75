//! Unit tests of `grpc.rs`: how a subscriber's stream notices shutdown; the appended
//! `missed` field.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::task::noop_waker_ref;
use prost::Message as _;

use super::*;
use crate::generated::transit_v1::{StreamUpdate, Vehicle};
use crate::pipeline::fanout::{Hub, PreparedUpdate};
use crate::pipeline::tasks::TaskRegistry;

fn subscriber(hub: &Arc<Hub>, shutdown: &CancellationToken) -> SubscriberStream {
    SubscriberStream {
        subscription: hub.subscribe(),
        _registration: TaskRegistry::new().register("subscriber", TaskKind::Subscriber, None, None),
        shutdown: Box::pin(shutdown.clone().cancelled_owned()),
        unchecked: 0,
        filter: Filter::default(),
        raw: false,
        done: false,
    }
}

fn publish(hub: &Hub, seq: u64) {
    hub.publish(&Arc::new(PreparedUpdate::new(StreamUpdate {
        seq,
        ..Default::default()
    })));
}

/// Polls until the stream is pending or has ended: the updates it gave, then how it ended
/// (`None`: pending).
fn drain(stream: &mut SubscriberStream) -> (usize, Option<Option<Status>>) {
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut updates = 0;
    loop {
        match Pin::new(&mut *stream).poll_next(&mut cx) {
            Poll::Pending => return (updates, None),
            Poll::Ready(Some(Ok(_))) => updates += 1,
            Poll::Ready(Some(Err(status))) => return (updates, Some(Some(status))),
            Poll::Ready(None) => return (updates, Some(None)),
        }
    }
}

#[test]
fn an_idle_subscriber_ends_with_unavailable_at_once() {
    let hub = Hub::new(8);
    let shutdown = CancellationToken::new();
    let mut stream = subscriber(&hub, &shutdown);
    assert_eq!(drain(&mut stream).0, 0);
    shutdown.cancel();
    let (updates, end) = drain(&mut stream);
    assert_eq!(updates, 0);
    let status = end.flatten().expect("ended with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "server shutting down");
    assert!(
        drain(&mut stream).1.is_some_and(|s| s.is_none()),
        "then ends"
    );
}

#[test]
fn a_subscriber_whose_queue_never_runs_dry_still_ends_at_shutdown() {
    let hub = Hub::new(1000);
    let shutdown = CancellationToken::new();
    let mut stream = subscriber(&hub, &shutdown);
    for seq in 1..=10 {
        publish(&hub, seq);
    }
    // Part of the queue goes before shutdown, so the count since the last check is not 0.
    let mut cx = Context::from_waker(noop_waker_ref());
    for _ in 0..5 {
        assert!(matches!(
            Pin::new(&mut stream).poll_next(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
    }
    for seq in 11..=500 {
        publish(&hub, seq);
    }
    shutdown.cancel();
    let (updates, end) = drain(&mut stream);
    assert!(
        updates < SHUTDOWN_CHECK_EVERY as usize,
        "{updates} updates after shutdown"
    );
    let status = end.flatten().expect("ended with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[test]
fn updates_flow_until_shutdown() {
    let hub = Hub::new(1000);
    let shutdown = CancellationToken::new();
    let mut stream = subscriber(&hub, &shutdown);
    for seq in 1..=100 {
        publish(&hub, seq);
    }
    let (updates, end) = drain(&mut stream);
    assert_eq!(updates, 100);
    assert!(end.is_none(), "still open");
}

#[test]
fn appended_missed_field_decodes_as_the_full_message() {
    let update = StreamUpdate {
        stream: "all".into(),
        seq: 7,
        received_at_us: 42,
        vehicles: vec![Vehicle {
            vehicle_id: "V1".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let encoded = Bytes::from(update.encode_to_vec());
    for missed in [0u64, 1, 300, u64::MAX] {
        let out = OutgoingUpdate {
            head: encoded.clone(),
            body: Bytes::new(),
            missed,
        };
        let decoded = StreamUpdate::decode(&out.to_bytes()[..]).unwrap();
        assert_eq!(
            decoded,
            StreamUpdate {
                missed,
                ..update.clone()
            }
        );
    }
}
