use super::*;

pub(crate) fn sample() -> Report {
    Report {
        protocol: PROTOCOL_V1.into(),
        instance: "i-1".into(),
        seq: 1,
        sent_at_ms: 1_700_000_000_000,
        interval_ms: 250,
        pid: Some(42),
        version: Some("transit-broadcaster 0.1.0".into()),
        streams: vec![
            testing::StreamReportBuilder::new("downtown")
                .channel(5, 5)
                .totals(10, 5)
                .quarantined(1)
                .last_dequeue(1_700_000_000_000)
                .subscribers(2)
                .build(),
        ],
    }
}

#[test]
fn round_trips_through_json() {
    let r = sample();
    let body = serde_json::to_vec(&r).unwrap();
    assert_eq!(parse_report(&body).unwrap(), r);
}

#[test]
fn documented_example_parses() {
    let doc = include_str!("../../../docs/report-protocol.md");
    let start = doc.find("```json").expect("example in docs") + "```json".len();
    let end = start + doc[start..].find("```").unwrap();
    let report = parse_report(&doc.as_bytes()[start..end]).expect("doc example is valid");
    assert_eq!(report.streams.len(), 2);
}

#[test]
fn refuses_oversize_before_parsing() {
    let body = vec![b' '; MAX_REPORT_BYTES + 1];
    assert!(matches!(
        parse_report(&body),
        Err(ReportError::TooLarge { .. })
    ));
}

#[test]
fn refuses_garbage_and_unknown_fields() {
    assert_eq!(parse_report(b"\x00\xff").unwrap_err().label(), "malformed");
    let mut v = serde_json::to_value(sample()).unwrap();
    v["surprise"] = 1.into();
    let err = parse_report(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.label(), "malformed");
    assert!(err.to_string().contains("surprise"), "{err}");
}

#[test]
fn refuses_other_protocol_versions_by_name() {
    let mut v = serde_json::to_value(sample()).unwrap();
    v["protocol"] = "stallwatch.report.v2".into();
    v["new_field"] = 1.into();
    let err = parse_report(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ReportError::UnsupportedProtocol("stallwatch.report.v2".into())
    );
}

#[test]
fn refuses_broken_invariants() {
    type Mutation = fn(&mut Report);
    let cases: Vec<(Mutation, &str)> = vec![
        (|r| r.seq = 0, "seq"),
        (|r| r.instance.clear(), "instance"),
        (|r| r.interval_ms = 0, "interval_ms"),
        (|r| r.streams[0].name = "Bad_Name".into(), "DNS label"),
        (|r| r.streams[0].channel.depth = 6, "exceeds capacity"),
        (|r| r.streams[0].channel.capacity = 0, "capacity is 0"),
        (|r| r.streams[0].dequeued_total = 11, "exceeds enqueued"),
        (
            |r| {
                let s = r.streams[0].clone();
                r.streams.push(s)
            },
            "twice",
        ),
    ];
    for (mutate, expect) in cases {
        let mut r = sample();
        mutate(&mut r);
        let err = parse_report(&serde_json::to_vec(&r).unwrap()).unwrap_err();
        assert_eq!(err.label(), "invalid");
        assert!(err.to_string().contains(expect), "{err} lacks {expect}");
    }
}

#[test]
fn order_guard_rejects_replays_and_accepts_new_instances() {
    let mut guard = OrderGuard::default();
    let mut r = sample();
    guard.check(&r).unwrap();
    assert_eq!(guard.check(&r).unwrap_err().label(), "out_of_order");
    r.seq = 2;
    guard.check(&r).unwrap();
    r.instance = "i-2".into();
    r.seq = 1;
    guard.check(&r).unwrap();
    assert_eq!(guard.current_instance(), Some("i-2"));
    // A late report from the replaced process is refused, not taken for a restart.
    let mut late = sample();
    late.seq = 3;
    assert_eq!(guard.check(&late).unwrap_err().label(), "out_of_order");
    assert_eq!(guard.current_instance(), Some("i-2"));
}

#[test]
fn stream_names_are_dns_labels() {
    for ok in ["a", "downtown", "route-7", &"x".repeat(63)] {
        assert!(is_valid_stream_name(ok), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
        assert!(!is_valid_stream_name(bad), "{bad}");
    }
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate("héllo", 2), "h");
    assert_eq!(truncate("abc", 10), "abc");
}

proptest::proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let _ = parse_report(&body);
    }

    #[test]
    fn parser_never_panics_on_mutated_reports(pos in 0usize..600, byte in proptest::num::u8::ANY) {
        let mut body = serde_json::to_vec(&sample()).unwrap();
        let i = pos % body.len();
        body[i] = byte;
        let _ = parse_report(&body);
    }
}
