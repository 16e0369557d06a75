use super::*;

#[test]
fn verdict_gauge_keeps_one_series_per_stream() {
    let m = Metrics::new();
    m.set_stream_verdict("a", None);
    m.set_stream_verdict("a", Some("ChannelStuck"));
    let text = m.encode();
    assert!(
        text.contains(r#"stallwatch_sidecar_stream_stalled{stream="a",reason="ChannelStuck"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"reason="none""#), "{text}");
    m.set_stream_verdict("a", None);
    let text = m.encode();
    assert!(
        text.contains(r#"stallwatch_sidecar_stream_stalled{stream="a",reason="none"} 0"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"stallwatch_sidecar_stream_stalled{stream="a",reason="ChannelStuck"}"#),
        "{text}"
    );
    m.remove_stream("a");
    assert!(!m.encode().contains(r#"stream="a""#));
}

#[test]
fn counters_have_conventional_names() {
    let m = Metrics::new();
    m.reports_received.inc();
    m.reject("too_large");
    m.dump("no_space");
    let text = m.encode();
    for name in [
        "stallwatch_sidecar_reports_received_total 1",
        r#"stallwatch_sidecar_reports_rejected_total{kind="too_large"} 1"#,
        r#"stallwatch_sidecar_dumps_total{outcome="no_space"} 1"#,
        "stallwatch_sidecar_dump_storage_ok 1",
        // Pre-created at 0 for the alert rules.
        r#"stallwatch_sidecar_dumps_total{outcome="failed"} 0"#,
        r#"stallwatch_sidecar_detections_total{reason="ReportsLost"} 0"#,
        r#"stallwatch_sidecar_recoveries_total{reason="ChannelStuck"} 0"#,
        r#"stallwatch_sidecar_publish_errors_total{what="condition"} 0"#,
    ] {
        assert!(text.contains(name), "{name} missing in {text}");
    }
}
