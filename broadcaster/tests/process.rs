//! The real binary as a process: SIGTERM, the `block-runtime` and `legacy-unsupervised`
//! faults through the CLI, and the `subscribe` command.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{Broadcaster, serve_command, wait_exit};
use common::*;
use stallwatch_core::report::DispatcherState;
use stallwatch_core::taskdump::TaskDump;
use stallwatch_testkit::wait::{WAIT, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_transit-broadcaster");

#[test]
fn sigterm_ends_subscriber_streams_with_unavailable_and_exits_zero() {
    sigterm_ends_subscriber_streams(&[], "lean");
}

#[test]
fn the_tonic_grpc_server_still_serves_and_shuts_down_the_same() {
    sigterm_ends_subscriber_streams(&["--grpc-server", "tonic"], "tonic");
}

fn sigterm_ends_subscriber_streams(extra: &[&str], grpc_server: &str) {
    let mut args = vec![
        "--source",
        "synthetic://?rate=20&vehicles=8",
        "--report-url",
        "",
    ];
    args.extend_from_slice(extra);
    let mut server = Broadcaster::start(&args);
    let mut sub = Command::new(BIN)
        .args([
            "subscribe",
            "--addr",
            &format!("http://{}", server.grpc),
            "--stream",
            "all",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        let line = lines.next().expect("an update line").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["stream"], "all");
        assert_eq!(v["vehicles"].as_array().unwrap().len(), 8);
        // All three kinds, with their counts: 8 trip updates, 2 alerts (synthetic defaults).
        assert_eq!(v["trip_updates"].as_array().unwrap().len(), 8);
        assert_eq!(v["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(v["deleted_entity_ids"].as_array().unwrap().len(), 0);
        assert_eq!(v["counts"]["vehicles"], 8);
        assert_eq!(v["counts"]["trip_updates"], 8);
        assert_eq!(v["counts"]["alerts"], 2);
        assert_eq!(v["counts"]["stop_time_updates"], 24);
        assert_eq!(v["incrementality"], "FULL_DATASET");
        let tu = &v["trip_updates"][0];
        assert!(
            tu["stop_time_updates"][0]["arrival"]["delay"].is_i64(),
            "{tu}"
        );
        assert!(v["alerts"][0]["header_text"][0]["text"].is_string());
    }
    server.sigterm();
    let status = server.wait_exit();
    assert!(status.success(), "server exit status {status:?}");
    let sub_status = wait_exit(&mut sub);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!sub_status.success());
    assert!(
        err.contains("Unavailable") && err.contains("server shutting down"),
        "{err}"
    );
    let log = server.log_text();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        log.contains(&format!("\"grpc_server\":\"{grpc_server}\"")),
        "{log}"
    );
}

#[test]
fn subscribe_command_prints_a_count_of_text_lines() {
    let server = Broadcaster::start(&[
        "--source",
        "synthetic://?rate=50",
        "--report-url",
        "",
        "--stream",
        "r1=routes:R1",
    ]);
    let out = Command::new(BIN)
        .args([
            "subscribe",
            "--addr",
            &format!("http://{}", server.grpc),
            "--count",
            "2",
        ])
        .env("BROADCASTER_SUBSCRIBE_STREAM", "r1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("r1 seq=")
                && l.contains("vehicles=10 trip_updates=10 alerts=2")),
        "{text}"
    );
    let out = Command::new(BIN)
        .args([
            "subscribe",
            "--addr",
            &format!("http://{}", server.grpc),
            "--stream",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}

#[test]
fn bad_options_are_refused_with_clear_errors() {
    for (args, expect) in [
        (vec!["--source", "ftp://x"], "unsupported source scheme"),
        (vec!["--stream", "Bad_Name"], "DNS label"),
        (vec!["--fault", "explode"], "unknown fault mode"),
        (vec!["--grpc-server", "hyper"], "unknown gRPC server"),
        (vec!["--channel-capacity", "0"], "channel-capacity"),
        (vec!["--report-interval", "soon"], "report-interval"),
        (
            vec!["--fault", "hang-dispatcher", "--fault-stream", "nope"],
            "not a configured stream",
        ),
    ] {
        let out = serve_command().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_runtime_stops_reports_but_the_dump_still_answers() {
    let sidecar = FakeSidecar::start().await;
    let server = Broadcaster::start(&[
        "--report-url",
        &sidecar.url(),
        "--report-interval",
        "100ms",
        "--fault",
        "block-runtime",
        "--fault-after",
        "1s",
        "--worker-threads",
        "2",
    ]);
    eventually("reports before the fault", || sidecar.count() >= 3).await;
    // After the fault triggers, reports stop for good.
    let mut stable_since = (sidecar.count(), Instant::now());
    let deadline = Instant::now() + WAIT;
    while stable_since.1.elapsed() < Duration::from_millis(1500) {
        assert!(Instant::now() < deadline, "reports never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sidecar.count() != stable_since.0 {
            stable_since = (sidecar.count(), Instant::now());
        }
    }
    // The admin server has its own thread: the dump still answers, and shows the blockers.
    let resp = reqwest::get(format!(
        "http://{}/debug/dump?timeout_ms=3000",
        server.admin
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let dump: TaskDump = resp.json().await.unwrap();
    for name in [
        "fault/block-runtime/worker-0",
        "fault/block-runtime/worker-1",
        "reporter",
    ] {
        assert!(
            dump.tasks.iter().any(|t| t.name == name),
            "{name} missing: {:?}",
            dump.tasks
        );
    }
    assert!(dump.backtrace.contains("block_this_worker") || dump.backtrace.contains("POLLING"));
    let log = server.log_text();
    assert!(log.contains("FAULT INJECTION ENABLED"), "{log}");
    assert!(log.contains("blocking every executor thread"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_unsupervised_reproduces_the_story_through_the_cli() {
    let sidecar = FakeSidecar::start().await;
    let server = Broadcaster::start(&[
        "--source",
        "synthetic://?rate=20&poison_after=500ms&poison_stream_route=R1",
        "--stream",
        "downtown=routes:R1,R2",
        "--stream",
        "airport=routes:R3,R4",
        "--report-url",
        &sidecar.url(),
        "--report-interval",
        "100ms",
        "--fault",
        "legacy-unsupervised",
    ]);
    eventually("downtown dead, airport flowing, in a report", || {
        sidecar.last().is_some_and(|r| {
            let d = r.stream("downtown").unwrap();
            let a = r.stream("airport").unwrap();
            d.dispatcher.state == DispatcherState::Dead
                && d.channel.depth == d.channel.capacity
                && d.dropped_oldest_total > 0
                && a.dispatcher.state == DispatcherState::Running
                && a.dequeued_total > 20
        })
    })
    .await;
    let r = sidecar.last().unwrap();
    let d = r.stream("downtown").unwrap();
    assert_eq!(d.dispatcher.restarts_total, 0);
    assert_eq!(d.quarantined_total, 0);
    assert!(d.last_error.is_none(), "nothing recorded it");
    let dump: TaskDump = reqwest::get(format!("http://{}/debug/dump", server.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump.streams_without_dispatcher(), ["downtown"]);
    // Nothing was logged about the death: only the start-up fault warning and the poison notice.
    let log = server.log.lock().unwrap().clone();
    assert!(
        !log.iter()
            .any(|l| l.contains("\"level\":\"ERROR\"") || l.contains("NOT_SERVING")),
        "{log:#?}"
    );
}
