//! The broadcaster in-process, end to end over real gRPC and HTTP on loopback: delivery,
//! quarantine, supervision, slow and failing subscribers, fault modes, reports, dumps, health.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use stallwatch_core::report::DispatcherState;
use stallwatch_core::taskdump::{TaskDump, TaskKind};
use stallwatch_testkit::wait::{WAIT, eventually, eventually_async};
use transit_broadcaster::generated::transit_v1::{ListStreamsRequest, SubscribeRequest};
use transit_broadcaster::pipeline::dispatcher::{Backoff, DispatchError, Spawner, supervise};
use transit_broadcaster::pipeline::prepare::{MAX_FEED_BYTES, PrepareError};
use transit_broadcaster::pipeline::quarantine::{ErrorLog, QuarantineKind};
use transit_broadcaster::pipeline::source::SourceSpec;
use transit_broadcaster::pipeline::spec::StreamSpec;
use transit_broadcaster::pipeline::stream_runtime::StreamRuntime;
use transit_broadcaster::serve::fault::{FaultConfig, FaultMode};
use transit_broadcaster::{Config, Running};

fn config() -> Config {
    Config {
        channel_capacity: 64,
        ..Config::loopback(SourceSpec::Manual)
    }
}

async fn start(config: Config) -> Running {
    transit_broadcaster::start(config)
        .await
        .expect("broadcaster starts")
}

async fn dump(running: &Running) -> TaskDump {
    let url = format!(
        "http://{}/debug/dump?timeout_ms=2000",
        running.admin_addr.unwrap()
    );
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn admin_restart(running: &Running, stream: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!(
            "http://{}/admin/streams/{stream}/restart",
            running.admin_addr.unwrap()
        ))
        .send()
        .await
        .unwrap()
        .status()
}

async fn health(running: &Running, service: &str) -> i32 {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel(running).await);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn channel(running: &Running) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_filter_the_feed_and_subscribers_get_their_own_view() {
    let running = start(Config {
        streams: vec![
            "all".parse().unwrap(),
            "r2=routes:R2".parse().unwrap(),
            "north=bbox:52.55,13.0,53.0,14.0".parse().unwrap(),
        ],
        ..config()
    })
    .await;
    let mut all = subscribe(running.grpc_addr, "all").await;
    let mut r2 = subscribe(running.grpc_addr, "r2").await;
    let mut north = subscribe(running.grpc_addr, "north").await;
    let mut narrowed = client(running.grpc_addr)
        .await
        .subscribe(SubscribeRequest {
            stream: "all".into(),
            route_ids: vec!["R1".into()],
            bbox: None,
            include_raw_entities: false,
        })
        .await
        .unwrap()
        .into_inner();
    eventually("4 subscribers", || {
        running
            .engine
            .streams()
            .iter()
            .map(|s| s.hub.subscriber_count())
            .sum::<usize>()
            == 4
    })
    .await;
    running.ingest().push(good_feed());
    let ids = |u: &transit_broadcaster::generated::transit_v1::StreamUpdate| {
        u.vehicles
            .iter()
            .map(|v| v.vehicle_id.clone())
            .collect::<Vec<_>>()
    };
    let u = next_update(&mut all).await;
    assert_eq!((u.stream.as_str(), u.seq, u.missed), ("all", 1, 0));
    assert_eq!(ids(&u), ["V1", "V2"]);
    assert_eq!(u.feed_timestamp, 1_795_837_200);
    assert!(u.received_at_us > 0);
    assert_eq!(ids(&next_update(&mut r2).await), ["V2"]);
    assert_eq!(ids(&next_update(&mut north).await), ["V2"]);
    assert_eq!(ids(&next_update(&mut narrowed).await), ["V1"]);

    let listed = client(running.grpc_addr)
        .await
        .list_streams(ListStreamsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["all", "r2", "north"]);
    assert_eq!(listed.streams[1].route_ids, ["R2"]);
    assert!(listed.streams[2].bbox.is_some());
    assert!(
        listed
            .streams
            .iter()
            .all(|s| s.dispatcher_state == "running" && s.serving)
    );
    assert_eq!(listed.streams[0].subscribers, 2);
    assert_eq!(listed.streams[0].channel_capacity, 64);

    // Unknown streams and bad filters are clear errors.
    let err = client(running.grpc_addr)
        .await
        .subscribe(SubscribeRequest {
            stream: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains("all, r2, north"),
        "{}",
        err.message()
    );
    let err = client(running.grpc_addr)
        .await
        .subscribe(SubscribeRequest {
            stream: "all".into(),
            route_ids: vec![],
            bbox: Some(transit_broadcaster::generated::transit_v1::BoundingBox {
                min_lat: 10.0,
                min_lon: 0.0,
                max_lat: 5.0,
                max_lon: 1.0,
            }),
            include_raw_entities: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_garbage_oversize_and_panicking_messages_are_quarantined_and_nothing_else_is_lost()
 {
    let default_prepare = transit_broadcaster::pipeline::dispatcher::default_prepare();
    let running = start(Config {
        prepare: Arc::new(move |filter, item| {
            if item.payload.starts_with(b"PANIC") {
                panic!("prepare blew up on purpose");
            }
            default_prepare(filter, item)
        }),
        ..config()
    })
    .await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    eventually("subscriber", || {
        running.stream("all").unwrap().hub.subscriber_count() == 1
    })
    .await;
    let ingest = running.ingest();
    ingest.push(good_feed());
    ingest.push(axum::body::Bytes::from_static(b"\x0a\xff\xff\xff garbage"));
    ingest.push(half_bad_feed());
    ingest.push(axum::body::Bytes::from_static(b"PANIC please"));
    ingest.push(vec![0x0a; MAX_FEED_BYTES + 1].into());
    ingest.push(feed_of(vec![entity("V9", "R1", 1.0, 1.0)]));

    let u1 = next_update(&mut sub).await;
    assert_eq!(u1.vehicles.len(), 2);
    let u2 = next_update(&mut sub).await;
    assert_eq!(
        u2.vehicles.len(),
        1,
        "the valid entity of a half-bad message goes out"
    );
    assert_eq!(u2.vehicles[0].vehicle_id, "V1");
    assert_eq!(u2.quarantined_entities, 1);
    let u3 = next_update(&mut sub).await;
    assert_eq!(u3.vehicles[0].vehicle_id, "V9");
    assert_eq!((u1.seq, u2.seq, u3.seq), (1, 2, 3));

    let stream = running.stream("all").unwrap();
    assert_eq!(stream.quarantine.count(QuarantineKind::Decode), 2);
    assert_eq!(stream.quarantine.count(QuarantineKind::Entity), 1);
    assert_eq!(stream.quarantine.count(QuarantineKind::Panic), 1);
    assert_eq!(stream.dispatcher_state(), DispatcherState::Running);
    assert_eq!(stream.restarts_total(), 0);
    let report = stream.report();
    assert_eq!(report.quarantined_total, 4);
    assert_eq!((report.enqueued_total, report.dequeued_total), (6, 6));

    let dump = dump(&running).await;
    let kinds: Vec<_> = dump.quarantine.iter().map(|q| q.kind.as_str()).collect();
    assert_eq!(kinds, ["decode", "entity", "panic", "decode"]);
    assert!(
        dump.quarantine[0]
            .error
            .contains("not a GTFS-realtime FeedMessage")
    );
    assert!(dump.quarantine[0].excerpt_hex.starts_with("0aff"));
    assert!(dump.quarantine[1].error.contains("latitude"));
    assert!(dump.quarantine[2].error.contains("blew up on purpose"));
    assert!(dump.quarantine[3].error.contains("exceeds"));
    assert_eq!(dump.quarantine[3].size, MAX_FEED_BYTES as u64 + 1);
    assert_eq!(dump.quarantine[3].excerpt_hex.len(), 512);

    let metrics = reqwest::get(format!("http://{}/metrics", running.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "stallwatch_broadcaster_quarantined_total{stream=\"all\",kind=\"panic\"} 1",
        "stallwatch_broadcaster_quarantined_total{stream=\"all\",kind=\"decode\"} 2",
        "stallwatch_broadcaster_dequeued_total{stream=\"all\"} 6",
        "stallwatch_broadcaster_dispatcher_up{stream=\"all\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_restarts_a_dispatcher_that_ends_for_any_reason_with_backoff() {
    let stream = StreamRuntime::new(StreamSpec::all(), 5, 8, true);
    let errors = Arc::new(ErrorLog::new(16));
    let attempts = Arc::new(AtomicU32::new(0));
    let spawner: Spawner = {
        let attempts = attempts.clone();
        Arc::new(move || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                match n {
                    0 => Err(DispatchError::Prepare(PrepareError::Decode("bad".into()))),
                    1 => panic!("dispatcher bug"),
                    2 => Ok(()),
                    _ => std::future::pending().await,
                }
            })
        })
    };
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        reset_after: Duration::from_secs(30),
    };
    let supervisor = tokio::spawn(supervise(stream.clone(), spawner, errors.clone(), backoff));
    eventually("three restarts", || stream.restarts_total() == 3).await;
    eventually("fourth dispatcher started", || {
        attempts.load(Ordering::SeqCst) == 4
    })
    .await;
    let messages: Vec<_> = errors.recent().into_iter().map(|e| e.message).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("dispatcher failed: prepare failed"));
    assert!(messages[1].contains("dispatcher panicked: dispatcher bug"));
    assert!(messages[2].contains("dispatcher ended"));
    assert!(stream.last_error().unwrap().message.contains("ended"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stream.restarts_total(),
        3,
        "a running dispatcher is left alone"
    );
    supervisor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_state_is_visible_during_backoff_and_admin_restart_works() {
    // The admin endpoint asks the supervisor for a restart: the old dispatcher task is
    // aborted, a fresh one takes over the same channel and hub.
    let running = start(Config {
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(100),
            reset_after: Duration::from_secs(30),
        },
        ..config()
    })
    .await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    let stream = running.stream("all").unwrap();
    eventually("subscriber", || stream.hub.subscriber_count() == 1).await;
    running.ingest().push(good_feed());
    assert_eq!(next_update(&mut sub).await.seq, 1);

    assert_eq!(admin_restart(&running, "all").await, 202);
    eventually("restart counted", || stream.restarts_total() == 1).await;
    eventually("running again", || {
        stream.dispatcher_state() == DispatcherState::Running
    })
    .await;
    running.ingest().push(good_feed());
    assert_eq!(
        next_update(&mut sub).await.seq,
        2,
        "subscribers survive a dispatcher restart"
    );
    assert_eq!(admin_restart(&running, "nope").await, 404);
    let dump = dump(&running).await;
    assert!(
        dump.recent_errors
            .iter()
            .any(|e| e.message.contains("restarted on request"))
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_and_failing_subscribers_do_not_disturb_healthy_ones() {
    let running = start(Config {
        subscriber_queue: 4,
        channel_capacity: 256,
        ..config()
    })
    .await;
    let stream = running.stream("all").unwrap();
    let mut healthy = subscribe(running.grpc_addr, "all").await;
    // Never reads: its HTTP/2 window and then its hub queue fill up.
    let mut hung = subscribe(running.grpc_addr, "all").await;
    // Reads one update, then its connection goes away mid-stream.
    let mut failing = Some(subscribe(running.grpc_addr, "all").await);
    eventually("3 subscribers", || stream.hub.subscriber_count() == 3).await;

    // A big feed (about 40 KiB per update) so the hung client's windows fill quickly.
    let big = feed_of(
        (0..500)
            .map(|i| entity(&format!("V{i}"), "R1", 52.5, 13.4))
            .collect(),
    );
    let total = 120u64;
    let ingest = running.ingest();
    for seq in 1..=total {
        ingest.push(big.clone());
        if seq == 1 {
            let mut f = failing.take().unwrap();
            assert_eq!(next_update(&mut f).await.seq, 1);
            drop(f);
        }
        let u = next_update(&mut healthy).await;
        assert_eq!(u.seq, seq, "the healthy subscriber misses nothing");
        assert_eq!(u.missed, 0);
        assert_eq!(u.vehicles.len(), 500);
    }
    eventually("failing subscriber removed", || {
        stream.hub.subscriber_count() == 2
    })
    .await;
    assert!(stream.hub.lagged_total() > 0, "the hung subscriber lagged");
    // When the hung subscriber finally reads, it gets what was queued for it, and the next
    // update after that tells it how many it missed in between.
    let mut missed = 0;
    let mut received = 0;
    while let Ok(next) = tokio::time::timeout(Duration::from_secs(1), hung.message()).await {
        let u = next.unwrap().unwrap();
        missed += u.missed;
        received += 1;
    }
    assert!(
        received < total,
        "the hung subscriber cannot have received everything"
    );
    ingest.push(big.clone());
    assert_eq!(next_update(&mut healthy).await.seq, total + 1);
    let u = next_update(&mut hung).await;
    assert_eq!(u.seq, total + 1);
    missed += u.missed;
    assert_eq!(
        missed,
        total - received,
        "every skipped update is accounted for"
    );
    assert_eq!(missed, stream.hub.lagged_total());
    let total = total + 1;
    let report = stream.report();
    assert_eq!(report.dequeued_total, total);
    assert_eq!(report.dropped_oldest_total, 0);
    assert_eq!(stream.dispatcher_state(), DispatcherState::Running);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_unsupervised_dispatcher_dies_silently_and_the_reporter_sees_it_dead() {
    let sidecar = FakeSidecar::start().await;
    let running = start(Config {
        streams: vec!["downtown".parse().unwrap(), "airport".parse().unwrap()],
        channel_capacity: 5,
        report_url: Some(sidecar.url()),
        report_interval: Duration::from_millis(50),
        fault: FaultConfig {
            mode: FaultMode::LegacyUnsupervised,
            stream: Some("downtown".into()),
            after: Duration::ZERO,
        },
        stuck_after: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut sub = subscribe(running.grpc_addr, "downtown").await;
    let downtown = running.stream("downtown").unwrap();
    eventually("subscriber", || downtown.hub.subscriber_count() == 1).await;
    running.ingest().push(good_feed());
    assert_eq!(next_update(&mut sub).await.seq, 1);
    assert_eq!(
        health(
            &running,
            "stallwatch.transit.v1.TransitBroadcaster/downtown"
        )
        .await,
        SERVING
    );

    // The poison message: one malformed entity ends the legacy dispatcher.
    running.ingest().push(half_bad_feed());
    eventually("dispatcher dead", || {
        downtown.dispatcher_state() == DispatcherState::Dead
    })
    .await;
    for _ in 0..20 {
        running.ingest().push(good_feed());
    }
    eventually("a report showing the stall", || {
        sidecar.last().is_some_and(|r| {
            let d = r.stream("downtown").unwrap();
            let a = r.stream("airport").unwrap();
            d.dispatcher.state == DispatcherState::Dead
                && d.channel.depth == 5
                && d.dropped_oldest_total == 15
                && d.dequeued_total == 2
                && a.dispatcher.state == DispatcherState::Running
                && a.enqueued_total == 22
        })
    })
    .await;
    // Nothing restarts it, nothing records it: exactly the story.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(downtown.dispatcher_state(), DispatcherState::Dead);
    assert_eq!(downtown.restarts_total(), 0);
    assert_eq!(downtown.quarantine.total(), 0);
    assert!(downtown.last_error().is_none());
    let r = sidecar.last().unwrap();
    assert_eq!(r.stream("downtown").unwrap().dispatcher.restarts_total, 0);
    assert!(sidecar.invalid.lock().unwrap().is_empty());

    let dump = dump(&running).await;
    assert_eq!(dump.streams_without_dispatcher(), ["downtown"]);
    assert!(dump.tasks.iter().any(|t| t.name == "dispatcher/airport"));
    assert!(dump.tasks.iter().any(|t| t.kind == TaskKind::Reporter));
    assert!(!dump.tasks.iter().any(|t| t.name == "supervisor/downtown"));
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster/downtown",
        NOT_SERVING,
    )
    .await;
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster",
        NOT_SERVING,
    )
    .await;
    assert_eq!(
        health(&running, "stallwatch.transit.v1.TransitBroadcaster/airport").await,
        SERVING
    );
    assert_eq!(health(&running, "").await, SERVING);

    // An on-demand restart brings it back even in this mode; the backlog drains.
    assert_eq!(admin_restart(&running, "downtown").await, 202);
    eventually("running again", || {
        downtown.dispatcher_state() == DispatcherState::Running
    })
    .await;
    let u = next_update(&mut sub).await;
    assert!(u.seq >= 2);
    assert_eq!(downtown.restarts_total(), 1);
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster/downtown",
        SERVING,
    )
    .await;
    running.shutdown().await;
}

async fn eventually_health(running: &Running, service: &str, want: i32) {
    eventually_async(
        &format!("health of {service:?} to become {want}"),
        || async { health(running, service).await == want },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_dispatcher_wedges_one_stream_while_the_others_flow() {
    let running = start(Config {
        streams: vec!["a".parse().unwrap(), "b".parse().unwrap()],
        channel_capacity: 5,
        fault: FaultConfig {
            mode: FaultMode::HangDispatcher,
            stream: Some("a".into()),
            after: Duration::ZERO,
        },
        stuck_after: Duration::from_millis(300),
        ..config()
    })
    .await;
    let a = running.stream("a").unwrap();
    let b = running.stream("b").unwrap();
    let mut sub_b = subscribe(running.grpc_addr, "b").await;
    eventually("subscriber", || b.hub.subscriber_count() == 1).await;
    for seq in 1..=10 {
        running.ingest().push(good_feed());
        assert_eq!(next_update(&mut sub_b).await.seq, seq);
        if seq == 1 {
            // b's update can arrive before a's dispatcher even ran on a loaded machine; the
            // counts below need a to have taken the first item before the channel fills.
            eventually("a took the first item", || a.report().dequeued_total == 1).await;
        }
    }
    let ra = a.report();
    assert_eq!(ra.dequeued_total, 1, "took one item, then hung");
    assert_eq!(ra.channel.depth, 5);
    assert_eq!(ra.dropped_oldest_total, 4);
    assert_eq!(
        ra.dispatcher.state,
        DispatcherState::Running,
        "alive but stuck"
    );
    eventually("a stuck", || a.is_stuck(Duration::from_millis(300))).await;
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster/a",
        NOT_SERVING,
    )
    .await;
    assert_eq!(
        health(&running, "stallwatch.transit.v1.TransitBroadcaster/b").await,
        SERVING
    );
    let dump = dump(&running).await;
    let task = dump
        .tasks
        .iter()
        .find(|t| t.name == "dispatcher/a")
        .unwrap();
    assert!(
        task.frames.iter().any(|f| f.contains("hang_forever")),
        "{:?}",
        task.frames
    );
    let task = dump
        .tasks
        .iter()
        .find(|t| t.name == "dispatcher/b")
        .unwrap();
    assert!(
        task.frames.iter().any(|f| f.contains("recv")),
        "{:?}",
        task.frames
    );

    // The fault is one-shot: a restart recovers the stream and drains its backlog.
    let mut sub_a = subscribe(running.grpc_addr, "a").await;
    eventually("subscriber a", || a.hub.subscriber_count() == 1).await;
    assert_eq!(admin_restart(&running, "a").await, 202);
    let u = next_update(&mut sub_a).await;
    assert_eq!(u.seq, 1);
    eventually("a drained", || a.report().channel.depth == 0).await;
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster/a",
        SERVING,
    )
    .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_keep_flowing_through_a_slow_and_a_restarting_sidecar() {
    let mut sidecar = FakeSidecar::start().await;
    let running = start(Config {
        report_url: Some(sidecar.url()),
        report_interval: Duration::from_millis(50),
        ..config()
    })
    .await;
    eventually("first reports", || sidecar.count() >= 3).await;
    let first = sidecar.reports.lock().unwrap()[0].clone();
    assert_eq!(first.seq, 1);
    assert_eq!(first.interval_ms, 50);
    assert_eq!(first.pid, Some(std::process::id()));
    assert_eq!(first.streams.len(), 1);

    // A wedged sidecar: every request hangs. Attempts still go out every interval.
    *sidecar.delay.lock().unwrap() = Duration::from_secs(30);
    let before = sidecar.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let attempts = sidecar.requests.load(Ordering::SeqCst) - before;
    assert!(
        attempts >= 4,
        "only {attempts} attempts while the sidecar hung"
    );
    *sidecar.delay.lock().unwrap() = Duration::ZERO;

    // The sidecar goes away and comes back on the same port.
    sidecar.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sub = subscribe(running.grpc_addr, "all").await;
    eventually("subscriber", || {
        running.stream("all").unwrap().hub.subscriber_count() == 1
    })
    .await;
    running.ingest().push(good_feed());
    assert_eq!(
        next_update(&mut sub).await.seq,
        1,
        "broadcasting goes on meanwhile"
    );
    let count = sidecar.count();
    sidecar.restart().await;
    eventually("reports resume", || sidecar.count() >= count + 3).await;
    let reports = sidecar.reports.lock().unwrap().clone();
    assert!(reports.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(reports.iter().all(|r| r.instance == first.instance));
    assert!(sidecar.invalid.lock().unwrap().is_empty());
    assert!(
        running
            .engine
            .reporter_stats()
            .failed
            .load(Ordering::Relaxed)
            > 0
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_metrics_and_shutdown_status() {
    let running = start(Config {
        streams: vec!["all".parse().unwrap(), "r1=routes:R1".parse().unwrap()],
        ..config()
    })
    .await;
    eventually_health(&running, "", SERVING).await;
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster",
        SERVING,
    )
    .await;
    eventually_health(
        &running,
        "stallwatch.transit.v1.TransitBroadcaster/r1",
        SERVING,
    )
    .await;

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel(&running).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let services: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        services.contains(&"stallwatch.transit.v1.TransitBroadcaster"),
        "{services:?}"
    );
    assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");

    let healthz = reqwest::get(format!("http://{}/healthz", running.http_addr))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let body: serde_json::Value = healthz.json().await.unwrap();
    assert_eq!(body["streams"][1]["name"], "r1");
    assert_eq!(body["streams"][1]["dispatcher"], "running");

    let resp = reqwest::get(format!(
        "http://{}/debug/dump?timeout_ms=5000",
        running.admin_addr.unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let dump: TaskDump = resp.json().await.unwrap();
    assert_eq!(dump.protocol, "stallwatch.taskdump.v1");
    for name in [
        "dispatcher/all",
        "dispatcher/r1",
        "supervisor/all",
        "source/manual",
        "server/grpc",
        "server/http",
    ] {
        assert!(
            dump.tasks.iter().any(|t| t.name == name),
            "{name} missing from {:?}",
            dump.tasks
        );
    }
    assert!(dump.streams_without_dispatcher().is_empty());

    // Shutdown ends subscriber streams with a clear status.
    let mut sub = subscribe(running.grpc_addr, "all").await;
    eventually("subscriber", || {
        running.stream("all").unwrap().hub.subscriber_count() == 1
    })
    .await;
    let dump = dump_of(&running).await;
    assert!(dump.tasks.iter().any(|t| t.kind == TaskKind::Subscriber));
    let grpc_addr = running.grpc_addr;
    running.shutdown().await;
    let status = tokio::time::timeout(WAIT, sub.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "server shutting down");
    assert!(
        tokio::net::TcpStream::connect(grpc_addr).await.is_err(),
        "listener closed"
    );
}

async fn dump_of(running: &Running) -> TaskDump {
    dump(running).await
}
