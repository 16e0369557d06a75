//! Fuzzing report ingest with proptest: arbitrary bytes, mutated real reports and
//! structure-aware random documents go through the sidecar's real ingest path
//! (`Monitor::ingest`: parse, validate, order-check, judge). Nothing may panic, every refusal
//! must be counted under its kind, and a refused report must change no verdict.
//!
//! Each property prints how many inputs it ran (`cargo test -p transit-sidecar --test
//! ingest_fuzz -- --nocapture`). `FUZZ_CASES` overrides the per-property count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use stallwatch_core::report::DispatcherState;
use stallwatch_core::verdict::VerdictConfig;
use stallwatch_testkit::report::{report, stream};
use transit_sidecar::metrics::Metrics;
use transit_sidecar::monitor::Monitor;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}

fn monitor() -> Arc<Monitor> {
    let (m, _outputs) = Monitor::new(
        VerdictConfig {
            stall_after: Duration::ZERO,
            report_timeout: Duration::from_secs(3600),
            recover_after: Duration::ZERO,
        },
        Arc::new(Metrics::new()),
    );
    m
}

fn counter(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Runs `inputs` through one monitor and checks the bookkeeping.
fn check_counts(m: &Monitor, accepted: u64, refused: u64) {
    let text = m.metrics.encode();
    assert_eq!(
        counter(&text, "stallwatch_sidecar_reports_received_total"),
        accepted
    );
    assert_eq!(
        counter(&text, "stallwatch_sidecar_reports_rejected_total{"),
        refused
    );
}

fn base_report(seq: u64) -> Vec<u8> {
    serde_json::to_vec(&report(
        "fuzz",
        seq,
        vec![
            stream("downtown", 5, 20, 10, DispatcherState::Running),
            stream("airport", 0, 20, 20, DispatcherState::Running),
        ],
    ))
    .unwrap()
}

fn run(name: &str, body: impl Fn(&mut TestRunner, &AtomicU64)) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let ran = AtomicU64::new(0);
    body(&mut runner, &ran);
    let n = ran.load(Ordering::SeqCst);
    eprintln!("fuzz {name}: {n} inputs");
    assert!(n >= u64::from(cases()), "{name} ran only {n} inputs");
}

#[test]
fn arbitrary_bytes_are_refused_cleanly() {
    run("arbitrary_bytes", |runner, ran| {
        let m = monitor();
        let (acc, rej) = (AtomicU64::new(0), AtomicU64::new(0));
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..4096), |body| {
                ran.fetch_add(1, Ordering::SeqCst);
                match m.ingest(&body) {
                    Ok(()) => acc.fetch_add(1, Ordering::SeqCst),
                    Err(_) => rej.fetch_add(1, Ordering::SeqCst),
                };
                Ok(())
            })
            .unwrap();
        check_counts(&m, acc.load(Ordering::SeqCst), rej.load(Ordering::SeqCst));
        assert!(!m.any_stalled());
    });
}

#[test]
fn mutated_reports_never_panic_and_refusals_change_nothing() {
    run("mutated_reports", |runner, ran| {
        let m = monitor();
        let (acc, rej) = (AtomicU64::new(0), AtomicU64::new(0));
        let seq = AtomicU64::new(1);
        let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8);
        runner
            .run(&edits, |edits| {
                ran.fetch_add(1, Ordering::SeqCst);
                let s = seq.fetch_add(1, Ordering::SeqCst);
                let mut body = base_report(s);
                for (pos, byte, op) in edits {
                    let i = pos % (body.len() + 1);
                    match op {
                        0 if i < body.len() => body[i] = byte,
                        1 => body.insert(i, byte),
                        _ if i < body.len() => {
                            body.remove(i);
                        }
                        _ => {}
                    }
                }
                let before = m.status();
                match m.ingest(&body) {
                    Ok(()) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        rej.fetch_add(1, Ordering::SeqCst);
                        prop_assert!(
                            [
                                "malformed",
                                "invalid",
                                "unsupported_protocol",
                                "out_of_order",
                                "too_large"
                            ]
                            .contains(&e.label())
                        );
                        let after = m.status();
                        prop_assert_eq!(
                            before
                                .streams
                                .iter()
                                .map(|s| (&s.name, &s.verdict, s.reason))
                                .collect::<Vec<_>>(),
                            after
                                .streams
                                .iter()
                                .map(|s| (&s.name, &s.verdict, s.reason))
                                .collect::<Vec<_>>()
                        );
                    }
                }
                Ok(())
            })
            .unwrap();
        check_counts(&m, acc.load(Ordering::SeqCst), rej.load(Ordering::SeqCst));
        eprintln!(
            "  mutated_reports: {} accepted, {} refused",
            acc.load(Ordering::SeqCst),
            rej.load(Ordering::SeqCst)
        );
    });
}

/// Random JSON in the report's own shape: right keys, random values and types.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..10).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z0-9-]{0,70}".prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        Just(json!("running")),
        Just(json!("dead")),
        Just(json!("stallwatch.report.v1")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("depth".to_owned()),
                    Just("capacity".to_owned()),
                    Just("state".to_owned()),
                    Just("restarts_total".to_owned()),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn structure_aware_documents_are_judged_or_refused() {
    const KEYS: [&str; 12] = [
        "name",
        "channel",
        "enqueued_total",
        "dequeued_total",
        "dropped_oldest_total",
        "quarantined_total",
        "last_dequeue_ms",
        "dispatcher",
        "last_error",
        "subscribers",
        "delivered_total",
        "extra",
    ];
    run("structure_aware", |runner, ran| {
        let m = monitor();
        let (acc, rej) = (AtomicU64::new(0), AtomicU64::new(0));
        let seq = AtomicU64::new(1);
        let strategy = (
            proptest::collection::vec((0usize..KEYS.len(), json_value()), 0..6),
            0usize..3,
            prop_oneof![Just(None), json_value().prop_map(Some)],
        );
        runner
            .run(&strategy, |(edits, which, top)| {
                ran.fetch_add(1, Ordering::SeqCst);
                let s = seq.fetch_add(1, Ordering::SeqCst);
                let mut doc: Value = serde_json::from_slice(&base_report(s)).unwrap();
                let streams = doc["streams"].as_array_mut().unwrap();
                let target = &mut streams[which % 2];
                for (k, v) in edits {
                    target[KEYS[k]] = v;
                }
                if let Some(v) = top {
                    doc["interval_ms"] = v;
                }
                let body = serde_json::to_vec(&doc).unwrap();
                match m.ingest(&body) {
                    Ok(()) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        for st in m.status().streams {
                            prop_assert!(st.depth <= st.capacity);
                        }
                    }
                    Err(_) => {
                        rej.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(())
            })
            .unwrap();
        check_counts(&m, acc.load(Ordering::SeqCst), rej.load(Ordering::SeqCst));
        eprintln!(
            "  structure_aware: {} accepted, {} refused",
            acc.load(Ordering::SeqCst),
            rej.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn reordered_and_replayed_sequences_are_refused() {
    run("sequences", |runner, ran| {
        let strategy = proptest::collection::vec((1u64..40, 0u8..3), 1..60);
        runner
            .run(&strategy, |steps| {
                ran.fetch_add(1, Ordering::SeqCst);
                let m = monitor();
                let mut last: Option<(String, u64)> = None;
                // Instances replaced by a newer one: their late reports are refused.
                let mut retired: Vec<String> = Vec::new();
                let mut refused = 0u64;
                let mut accepted = 0u64;
                for (seq, inst) in steps {
                    let instance = format!("i-{inst}");
                    let body = serde_json::to_vec(&report(
                        &instance,
                        seq,
                        vec![stream("a", 0, seq, seq, DispatcherState::Running)],
                    ))
                    .unwrap();
                    let expect_ok = match &last {
                        Some((i, s)) if *i == instance => seq > *s,
                        Some(_) => !retired.contains(&instance),
                        None => true,
                    };
                    let got = m.ingest(&body);
                    prop_assert_eq!(got.is_ok(), expect_ok, "seq {} instance {}", seq, instance);
                    if let Err(e) = got {
                        prop_assert_eq!(e.label(), "out_of_order");
                        refused += 1;
                    } else {
                        accepted += 1;
                        if let Some((i, _)) = &last
                            && *i != instance
                        {
                            retired.push(i.clone());
                        }
                        last = Some((instance.clone(), seq));
                    }
                    prop_assert_eq!(m.status().instance, last.as_ref().map(|(i, _)| i.clone()));
                }
                check_counts(&m, accepted, refused);
                Ok(())
            })
            .unwrap();
    });
}
