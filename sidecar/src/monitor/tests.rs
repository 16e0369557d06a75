use super::*;
use stallwatch_core::condition::StallReason;
use stallwatch_core::report::testing::StreamReportBuilder;
use stallwatch_core::report::{DispatcherState, PROTOCOL_V1, Report};

pub(crate) fn report(seq: u64, depth: u64, deq: u64, state: DispatcherState) -> Report {
    Report {
        protocol: PROTOCOL_V1.into(),
        instance: "i-1".into(),
        seq,
        sent_at_ms: now_ms(),
        interval_ms: 250,
        pid: Some(4242),
        version: Some("test 1".into()),
        streams: vec![
            StreamReportBuilder::new("downtown")
                .channel(depth, 5)
                .totals(200, deq)
                .state(state)
                .subscribers(0)
                .build(),
        ],
    }
}

fn instant_config() -> VerdictConfig {
    VerdictConfig {
        stall_after: Duration::ZERO,
        report_timeout: Duration::from_secs(3600),
        recover_after: Duration::ZERO,
    }
}

#[test]
fn first_report_publishes_healthy_then_changes_only_on_transitions() {
    let (m, mut out) = Monitor::new(instant_config(), Arc::new(Metrics::new()));
    assert!(out.condition.borrow().is_none());
    m.ingest(&serde_json::to_vec(&report(1, 0, 100, DispatcherState::Running)).unwrap())
        .unwrap();
    assert!(out.condition.has_changed().unwrap());
    let c = out.condition.borrow_and_update().clone().unwrap();
    assert!(c.healthy);
    assert_eq!(c.reason, "Healthy");
    m.ingest(&serde_json::to_vec(&report(2, 0, 100, DispatcherState::Running)).unwrap())
        .unwrap();
    assert!(!out.condition.has_changed().unwrap());
    // Stuck (stall_after is zero here): condition False, one notice.
    m.ingest(&serde_json::to_vec(&report(3, 5, 100, DispatcherState::Running)).unwrap())
        .unwrap();
    let c = out.condition.borrow_and_update().clone().unwrap();
    assert!(!c.healthy);
    assert_eq!(c.reason, "ChannelStuck");
    assert!(
        c.message
            .starts_with("stream downtown: ChannelStuck, 5/5 waiting"),
        "{}",
        c.message
    );
    match out.notices.try_recv().unwrap() {
        Notice::Verdict { transition, detail } => {
            assert_eq!(transition.stream, "downtown");
            assert!(detail.contains("ChannelStuck"));
        }
        other => panic!("{other:?}"),
    }
    assert!(out.notices.try_recv().is_err());
    assert!(m.any_stalled());
    let text = m.metrics.encode();
    assert!(
        text.contains(r#"stallwatch_sidecar_detections_total{reason="ChannelStuck"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"stallwatch_sidecar_stream_stalled{stream="downtown",reason="ChannelStuck"} 1"#
        ),
        "{text}"
    );
    let status = m.status();
    assert_eq!(status.instance.as_deref(), Some("i-1"));
    assert_eq!(status.streams[0].verdict, "stalled");
    assert_eq!(status.streams[0].reason, Some(StallReason::ChannelStuck));
    // Recovers.
    m.ingest(&serde_json::to_vec(&report(4, 0, 105, DispatcherState::Running)).unwrap())
        .unwrap();
    assert!(out.condition.borrow_and_update().clone().unwrap().healthy);
    let snap = m.snapshot();
    assert_eq!(snap.recent_reports.len(), 4);
    assert_eq!(snap.history.len(), 2);
    assert_eq!(snap.pid, Some(4242));
}

#[test]
fn refusals_are_counted_and_change_nothing() {
    let (m, mut out) = Monitor::new(instant_config(), Arc::new(Metrics::new()));
    m.ingest(&serde_json::to_vec(&report(5, 0, 1, DispatcherState::Running)).unwrap())
        .unwrap();
    out.condition.borrow_and_update();
    let err = m
        .ingest(&serde_json::to_vec(&report(5, 5, 1, DispatcherState::Dead)).unwrap())
        .unwrap_err();
    assert_eq!(err.label(), "out_of_order");
    assert_eq!(m.ingest(b"{").unwrap_err().label(), "malformed");
    assert!(!m.any_stalled());
    assert!(!out.condition.has_changed().unwrap());
    let text = m.metrics.encode();
    assert!(
        text.contains(r#"reports_rejected_total{kind="out_of_order"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"reports_rejected_total{kind="malformed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("stallwatch_sidecar_reports_received_total 1"),
        "{text}"
    );
    assert_eq!(m.snapshot().recent_reports.len(), 1);
}

#[test]
fn silence_becomes_reports_lost_on_tick() {
    let cfg = VerdictConfig {
        report_timeout: Duration::ZERO,
        ..instant_config()
    };
    let (m, out) = Monitor::new(cfg, Arc::new(Metrics::new()));
    m.tick();
    assert!(!m.any_stalled());
    m.ingest(&serde_json::to_vec(&report(1, 0, 1, DispatcherState::Running)).unwrap())
        .unwrap();
    m.tick();
    assert_eq!(m.status().streams[0].reason, Some(StallReason::ReportsLost));
    assert_eq!(
        out.condition.borrow().as_ref().unwrap().reason,
        "ReportsLost"
    );
}

#[test]
fn full_notice_queue_never_blocks() {
    let (m, _out) = Monitor::new(instant_config(), Arc::new(Metrics::new()));
    for _ in 0..NOTICE_QUEUE + 10 {
        m.notify(Notice::DumpFailed { error: "x".into() });
    }
    assert!(
        m.metrics
            .encode()
            .contains(r#"publish_errors_total{what="dropped_notice"} 10"#)
    );
}

#[test]
fn storage_status_is_reported() {
    let (m, _out) = Monitor::new(instant_config(), Arc::new(Metrics::new()));
    m.set_storage(Err("no space left on /dumps".into()));
    let s = m.status().dump_storage;
    assert!(!s.ok);
    assert!(s.error.unwrap().contains("no space"));
    assert!(
        m.metrics
            .encode()
            .contains("stallwatch_sidecar_dump_storage_ok 0")
    );
    m.set_storage(Ok(()));
    assert!(m.status().dump_storage.ok);
}

#[test]
fn the_dump_volume_turning_unusable_or_usable_is_one_notice_each() {
    let (m, mut out) = Monitor::new(instant_config(), Arc::new(Metrics::new()));
    m.set_storage(Ok(()));
    m.set_storage(Err("permission denied".into()));
    m.set_storage(Err("permission denied".into()));
    m.set_storage(Ok(()));
    m.set_storage(Ok(()));
    let mut notices = Vec::new();
    while let Ok(n) = out.notices.try_recv() {
        notices.push(n);
    }
    assert_eq!(
        notices,
        vec![
            Notice::DumpStorage {
                error: Some("permission denied".into())
            },
            Notice::DumpStorage { error: None },
        ]
    );
    let unusable = crate::publish::event_for(&notices[0]).unwrap();
    assert!(unusable.warning);
    assert_eq!(unusable.reason, "DumpVolumeUnavailable");
    assert!(unusable.note.contains("permission denied"));
    let usable = crate::publish::event_for(&notices[1]).unwrap();
    assert!(!usable.warning);
    assert_eq!(usable.reason, "DumpVolumeAvailable");
}
