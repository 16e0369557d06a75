use super::*;
use crate::{
    BoundingBox, DumpVolume, DumpVolumeTemplate, FileSource, SecretKeyRef, StreamSpec, UrlSource,
};

fn synthetic() -> TransitStreamSpec {
    crate::testing::synthetic_spec()
}

fn fields(spec: &TransitStreamSpec) -> Vec<String> {
    validate(spec).into_iter().map(|e| e.field).collect()
}

#[test]
fn defaults_are_valid() {
    assert_eq!(validate(&synthetic()), vec![]);
}

#[test]
fn exactly_one_source() {
    let mut spec = synthetic();
    spec.source.as_mut().unwrap().nats = Some(UrlSource {
        url: Some("nats://n:4222/x".into()),
        url_secret_ref: None,
    });
    assert_eq!(fields(&spec), ["source"]);
    spec.source = Some(Source::default());
    assert_eq!(fields(&spec), ["source"]);
}

#[test]
fn credentials_only_by_secret() {
    let mut spec = synthetic();
    spec.source = Some(Source {
        nats: Some(UrlSource {
            url: Some("nats://user:pw@n:4222/x".into()),
            url_secret_ref: None,
        }),
        ..Source::default()
    });
    let errs = validate(&spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("urlSecretRef"));
    spec.source.as_mut().unwrap().nats = Some(UrlSource {
        url: None,
        url_secret_ref: Some(SecretKeyRef {
            name: "feed".into(),
            key: "url".into(),
        }),
    });
    assert_eq!(validate(&spec), vec![]);
    spec.source.as_mut().unwrap().nats.as_mut().unwrap().url = Some("nats://n:4222/x".into());
    assert_eq!(fields(&spec), ["source.nats"]);
}

#[test]
fn nats_needs_a_subject_and_http_a_scheme() {
    let mut spec = synthetic();
    spec.source = Some(Source {
        nats: Some(UrlSource {
            url: Some("nats://n:4222".into()),
            url_secret_ref: None,
        }),
        ..Source::default()
    });
    assert_eq!(fields(&spec), ["source.nats.url"]);
    spec.source = Some(Source {
        http: Some(crate::HttpSource {
            url: Some("ftp://feed".into()),
            url_secret_ref: None,
            poll_interval: StdDuration::from_millis(100).into(),
        }),
        ..Source::default()
    });
    assert_eq!(
        fields(&spec),
        ["source.http.url", "source.http.pollInterval"]
    );
}

#[test]
fn file_paths_stay_inside_the_claim() {
    let mut spec = synthetic();
    for (path, ok) in [
        ("rec/a.pb", true),
        ("/etc/passwd", false),
        ("a/../../b", false),
    ] {
        spec.source = Some(Source {
            file: Some(FileSource {
                claim_name: "recordings".into(),
                path: path.into(),
                replay_rate: 10,
                replay_loop: false,
            }),
            ..Source::default()
        });
        assert_eq!(validate(&spec).is_empty(), ok, "{path}");
    }
}

#[test]
fn stream_names_are_dns_labels_and_unique() {
    let mut spec = synthetic();
    spec.streams = vec![
        StreamSpec {
            name: "downtown".into(),
            routes: vec!["R1".into()],
            bbox: None,
        },
        StreamSpec {
            name: "Downtown_2".into(),
            ..StreamSpec::default()
        },
        StreamSpec {
            name: "downtown".into(),
            ..StreamSpec::default()
        },
    ];
    assert_eq!(fields(&spec), ["streams[1].name", "streams[2].name"]);
    spec.streams.clear();
    assert_eq!(fields(&spec), ["streams"]);
}

#[test]
fn bad_filters_are_refused() {
    let mut spec = synthetic();
    spec.streams = vec![StreamSpec {
        name: "a".into(),
        routes: vec!["R 1".into()],
        bbox: Some(BoundingBox {
            min_lat: 10.0,
            min_lon: 0.0,
            max_lat: 5.0,
            max_lon: f64::NAN,
        }),
    }];
    assert_eq!(fields(&spec), ["streams[0].routes", "streams[0].bbox"]);
}

#[test]
fn stall_after_must_exceed_the_report_interval() {
    let mut spec = synthetic();
    spec.stall_after = StdDuration::from_millis(250).into();
    let errs = validate(&spec);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "stallAfter");
    assert!(errs[0].to_string().contains("longer than reportInterval"));
    spec.stall_after = StdDuration::ZERO.into();
    assert_eq!(fields(&spec), ["stallAfter"]);
    spec.stall_after = "-1s".parse().unwrap();
    assert_eq!(fields(&spec), ["stallAfter"]);
}

#[test]
fn remediation_limits() {
    let mut spec = synthetic();
    spec.remediation.budget_per_hour = 11;
    spec.remediation.cooldown = StdDuration::from_secs(90_000).into();
    spec.remediation.dump_timeout = StdDuration::ZERO.into();
    assert_eq!(
        fields(&spec),
        [
            "remediation.dumpTimeout",
            "remediation.cooldown",
            "remediation.budgetPerHour"
        ]
    );
}

#[test]
fn dump_only_with_soft_restart_is_refused() {
    let mut spec = synthetic();
    spec.remediation.mode = RemediationMode::DumpOnly;
    spec.remediation.soft_restart_first = true;
    assert_eq!(fields(&spec), ["remediation.softRestartFirst"]);
}

#[test]
fn dump_volume_rules() {
    let mut spec = synthetic();
    spec.dumps.process_dump = ProcessDump::Full;
    assert_eq!(fields(&spec), ["dumps.processDump"]);
    spec.dumps.volume = Some(DumpVolume {
        existing_claim: Some("dumps".into()),
        template: Some(DumpVolumeTemplate {
            size: "5Gi".into(),
            ..DumpVolumeTemplate::default()
        }),
    });
    assert_eq!(fields(&spec), ["dumps.volume"]);
    spec.dumps.volume = Some(DumpVolume {
        existing_claim: None,
        template: Some(DumpVolumeTemplate {
            size: "lots".into(),
            ..DumpVolumeTemplate::default()
        }),
    });
    assert_eq!(fields(&spec), ["dumps.volume.template.size"]);
    spec.dumps
        .volume
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .size = "1.5Gi".into();
    assert_eq!(validate(&spec), vec![]);
    spec.dumps.max_bytes = 10;
    assert_eq!(fields(&spec), ["dumps.maxBytes"]);
}

#[test]
fn quantities() {
    for q in ["1", "5Gi", "1.5Gi", "500M", "100k"] {
        assert!(is_quantity(q), "{q}");
    }
    for q in ["", "Gi", "5GB", "1.Gi", "-1Gi", "5 Gi"] {
        assert!(!is_quantity(q), "{q}");
    }
}

fn workload() -> TransitStreamSpec {
    TransitStreamSpec::with_workload(crate::WorkloadKind::Deployment, "orders-feed")
}

#[test]
fn a_workload_ref_with_defaults_is_valid() {
    assert_eq!(validate(&workload()), vec![]);
}

#[test]
fn exactly_one_of_source_and_workload_ref() {
    let mut both = workload();
    both.source = synthetic().source;
    let errs = validate(&both);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].message.contains("exactly one of source"),
        "{errs:?}"
    );
    let mut neither = workload();
    neither.workload_ref = None;
    assert_eq!(fields(&neither), ["source"]);
}

#[test]
fn a_workload_ref_stays_in_its_namespace_and_on_apps_v1() {
    let mut spec = workload();
    let w = spec.workload_ref.as_mut().unwrap();
    w.namespace = Some("other".into());
    w.api_version = "apps/v1beta1".into();
    w.name = "Not_A_Name".into();
    assert_eq!(
        fields(&spec),
        [
            "workloadRef.apiVersion",
            "workloadRef.name",
            "workloadRef.namespace"
        ]
    );
    assert!(validate(&spec)[2].message.contains("same-namespace only"));
}

#[test]
fn a_workload_ref_restarts_pods_not_the_workload() {
    let mut spec = workload();
    spec.remediation.restart_target = crate::RestartTarget::Deployment;
    assert_eq!(fields(&spec), ["remediation.restartTarget"]);
}
