use super::*;

fn sample_manifest() -> Manifest {
    Manifest {
        format: BUNDLE_V1.into(),
        id: "20261128T021503.042Z-downtown-ChannelStuck".into(),
        path: "/dumps/transit/bc-0/20261128T021503.042Z-downtown-ChannelStuck".into(),
        versions: Versions {
            sidecar: "transit-sidecar 0.1.0".into(),
            broadcaster: Some("transit-broadcaster 0.1.0".into()),
            broadcaster_instance: Some("7f3c".into()),
            report_protocol: crate::report::PROTOCOL_V1.into(),
            bundle_format: BUNDLE_V1.into(),
        },
        pod: "bc-0".into(),
        namespace: "transit".into(),
        node: Some("node-1".into()),
        stream: Some("downtown".into()),
        reason: Some(StallReason::ChannelStuck),
        verdict: Some(Verdict::Stalled {
            reason: StallReason::ChannelStuck,
        }),
        requested_by: "operator".into(),
        created_at_ms: 1_795_837_200_250,
        timings: CaptureTimings {
            task_dump_ms: 12,
            process_dump_ms: 0,
            write_ms: 3,
            total_ms: 16,
        },
        files: vec![BundleFile {
            name: STATE_FILE.into(),
            bytes: 10,
            sha256: "00".repeat(32),
        }],
        task_dump: TaskDumpOutcome::Fetched { tasks: 9 },
        process_dump: ProcessDumpOutcome::Skipped {
            why: "--process-dump none".into(),
        },
    }
}

#[test]
fn manifest_json_shape_is_stable() {
    let v = serde_json::to_value(sample_manifest()).unwrap();
    assert_eq!(v["format"], "stallwatch.bundle.v1");
    assert_eq!(v["reason"], "ChannelStuck");
    assert_eq!(v["verdict"]["verdict"], "stalled");
    assert_eq!(v["task_dump"]["outcome"], "fetched");
    assert_eq!(v["process_dump"]["outcome"], "skipped");
    assert_eq!(v["process_dump"]["why"], "--process-dump none");
    assert_eq!(v["files"][0]["sha256"].as_str().unwrap().len(), 64);
    let back: Manifest = serde_json::from_value(v).unwrap();
    assert_eq!(back, sample_manifest());
}

#[test]
fn manifest_tolerates_absent_optionals() {
    let mut m = sample_manifest();
    m.node = None;
    m.stream = None;
    m.reason = None;
    m.verdict = None;
    m.process_dump = ProcessDumpOutcome::Written {
        kind: ProcessDumpKind::Minidump,
        file: MINIDUMP_FILE.into(),
        bytes: 70_000,
        threads: 12,
    };
    let json = serde_json::to_string(&m).unwrap();
    assert!(!json.contains("\"node\""), "{json}");
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
    assert_eq!(m.process_dump.label(), "written");
}

#[test]
fn dump_request_is_all_optional_and_strict() {
    assert_eq!(
        serde_json::from_str::<DumpRequest>("{}").unwrap(),
        DumpRequest::default()
    );
    let r: DumpRequest = serde_json::from_str(
        r#"{"stream":"downtown","reason":"ChannelStuck","requested_by":"operator"}"#,
    )
    .unwrap();
    assert_eq!(r.reason, Some(StallReason::ChannelStuck));
    assert!(serde_json::from_str::<DumpRequest>(r#"{"reason":"Bored"}"#).is_err());
    assert!(serde_json::from_str::<DumpRequest>(r#"{"strem":"x"}"#).is_err());
}

#[test]
fn timestamps_are_utc_and_round_trip() {
    assert_eq!(utc_timestamp(0), "19700101T000000.000Z");
    // 2026-11-28T02:15:03.042Z
    let ms = 1_795_832_103_042;
    assert_eq!(utc_timestamp(ms), "20261128T021503.042Z");
    assert_eq!(parse_utc_timestamp("20261128T021503.042Z"), Some(ms));
    assert_eq!(utc_timestamp(951_782_400_000), "20000229T000000.000Z");
    for bad in [
        "20260231T000000.000Z",
        "20261128T251503.042Z",
        "20261128 021503.042Z",
        "2026112T021503.042Z",
        "2026+128T021503.042Z",
    ] {
        assert_eq!(parse_utc_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn names_say_when_what_and_why() {
    let ms = 1_795_832_103_042;
    let n = bundle_name(ms, Some("north-7"), Some(StallReason::DispatcherDead));
    assert_eq!(n, "20261128T021503.042Z-north-7-DispatcherDead");
    assert_eq!(
        parse_bundle_name(&n),
        Some(ParsedName {
            created_at_ms: ms,
            stream: Some("north-7".into()),
            reason: Some(StallReason::DispatcherDead)
        })
    );
    let n = bundle_name(ms, None, None);
    assert_eq!(n, "20261128T021503.042Z-pod-manual");
    assert_eq!(
        parse_bundle_name(&n),
        Some(ParsedName {
            created_at_ms: ms,
            stream: None,
            reason: None
        })
    );
    // Invalid stream names never reach the file system.
    assert_eq!(
        bundle_name(ms, Some("../etc"), None),
        "20261128T021503.042Z-pod-manual"
    );
    // Collision suffix.
    let parsed = parse_bundle_name("20261128T021503.042Z-a-b-ChannelStuck-2").unwrap();
    assert_eq!(parsed.stream.as_deref(), Some("a-b"));
    assert_eq!(parsed.reason, Some(StallReason::ChannelStuck));
    for bad in [
        ".tmp-20261128T021503.042Z-a-manual",
        "20261128T021503.042Z-a-Exploded",
        "20261128T021503.042Z-manual",
        "lost+found",
    ] {
        assert_eq!(parse_bundle_name(bad), None, "{bad}");
    }
}

#[test]
fn pod_dir_refuses_escapes() {
    let root = Path::new("/dumps");
    assert_eq!(
        pod_dir(root, "transit", "bc-7d9f-x2"),
        Some(PathBuf::from("/dumps/transit/bc-7d9f-x2"))
    );
    for (ns, pod) in [("..", "x"), ("a/b", "x"), ("ns", ""), ("ns", ".hidden")] {
        assert_eq!(pod_dir(root, ns, pod), None, "{ns}/{pod}");
    }
}

fn b(name: &str, at: u64, bytes: u64) -> RetainedBundle {
    RetainedBundle {
        name: name.into(),
        created_at_ms: at,
        bytes,
    }
}

#[test]
fn retention_by_count_oldest_first() {
    let list = vec![b("c", 3, 1), b("a", 1, 1), b("b", 2, 1), b("d", 4, 1)];
    let p = RetentionPolicy {
        max_bundles: 2,
        max_bytes: u64::MAX,
    };
    assert_eq!(plan_retention(&list, p), vec!["a", "b"]);
}

#[test]
fn retention_by_bytes_oldest_first() {
    let list = vec![b("a", 1, 500), b("b", 2, 300), b("c", 3, 300)];
    let p = RetentionPolicy {
        max_bundles: 10,
        max_bytes: 700,
    };
    assert_eq!(plan_retention(&list, p), vec!["a"]);
    let p = RetentionPolicy {
        max_bundles: 10,
        max_bytes: 1100,
    };
    assert!(plan_retention(&list, p).is_empty());
}

#[test]
fn retention_keeps_the_newest_even_if_too_big() {
    let list = vec![b("a", 1, 10), b("b", 2, 5000)];
    let p = RetentionPolicy {
        max_bundles: 10,
        max_bytes: 100,
    };
    assert_eq!(plan_retention(&list, p), vec!["a"]);
    let p = RetentionPolicy {
        max_bundles: 0,
        max_bytes: 100,
    };
    assert_eq!(plan_retention(&list, p), vec!["a", "b"]);
}

proptest::proptest! {
    #[test]
    fn retention_plan_meets_the_policy(
        sizes in proptest::collection::vec((0u64..1000, 0u64..5000), 0..40),
        max_bundles in 1usize..20,
        max_bytes in 0u64..50_000,
    ) {
        let list: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, (at, bytes))| b(&format!("b{i:03}"), *at, *bytes))
            .collect();
        let policy = RetentionPolicy { max_bundles, max_bytes };
        let delete = plan_retention(&list, policy);
        let kept: Vec<_> = list.iter().filter(|x| !delete.contains(&x.name)).collect();
        if !list.is_empty() {
            proptest::prop_assert!(!kept.is_empty());
        }
        proptest::prop_assert!(kept.len() <= max_bundles);
        let kept_bytes: u64 = kept.iter().map(|x| x.bytes).sum();
        proptest::prop_assert!(kept.len() <= 1 || kept_bytes <= max_bytes);
        // Everything deleted is older than everything kept.
        for d in list.iter().filter(|x| delete.contains(&x.name)) {
            for k in &kept {
                proptest::prop_assert!((d.created_at_ms, &d.name) < (k.created_at_ms, &k.name));
            }
        }
    }

    #[test]
    fn timestamps_round_trip(ms in 0u64..253_402_300_799_999) {
        proptest::prop_assert_eq!(parse_utc_timestamp(&utc_timestamp(ms)), Some(ms));
    }
}
