use super::*;

#[test]
fn defaults_match_the_architecture_doc() {
    let cli = Cli::try_parse_from(["transit-sidecar", "run"]).unwrap();
    let Command::Run(a) = cli.command else {
        panic!("run")
    };
    assert_eq!(a.ingest_addr, "127.0.0.1:9464");
    assert_eq!(a.http_addr, "0.0.0.0:8080");
    assert_eq!(a.admin_addr, "0.0.0.0:8081");
    assert_eq!(a.broadcaster_admin_url, "http://127.0.0.1:9091");
    assert_eq!(a.stall_after, Duration::from_secs(2));
    assert_eq!(a.report_timeout, Duration::from_secs(2));
    assert_eq!(a.recover_after, Duration::from_secs(1));
    assert_eq!(a.dump_dir, PathBuf::from("/dumps"));
    assert_eq!(a.max_bundles, 20);
    assert_eq!(a.max_bytes, 1_073_741_824);
    assert_eq!(a.process_dump, ProcessDumpMode::None);
    assert!(!a.dump_on_stall);
    assert_eq!(a.publish, PublishMode::Auto);
    assert_eq!(a.metrics.metrics_url, "");
    assert_eq!(a.metrics.metrics_interval, Duration::from_secs(1));
    assert_eq!(a.metrics.metrics_timeout, Duration::from_millis(500));
    assert_eq!(a.metrics.metrics_stream_label, "stream");
    assert_eq!(a.metrics.metrics_history, 60);
    assert_eq!(a.metrics.mapping(), Ok(None));
}

#[test]
fn zero_code_mapping_flags() {
    let parse = |extra: &[&str]| {
        let mut argv = vec![
            "transit-sidecar",
            "run",
            "--metrics-url=http://127.0.0.1:9100/metrics",
        ];
        argv.extend_from_slice(extra);
        let Command::Run(a) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("run")
        };
        a.metrics.mapping()
    };
    let m = parse(&[
        "--metrics-depth=q_depth",
        "--metrics-capacity-value=64",
        "--metrics-dequeued=q_out",
        "--metrics-stream-label=queue",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(m.capacity, Capacity::Fixed(64));
    assert_eq!(m.stream_label, "queue");
    assert_eq!(m.enqueued, None);
    let err = parse(&["--metrics-depth=d", "--metrics-dequeued=o"]).unwrap_err();
    assert!(err.contains("--metrics-capacity"), "{err}");
    let err = parse(&["--metrics-capacity=c", "--metrics-dequeued=o"]).unwrap_err();
    assert!(err.contains("--metrics-depth"), "{err}");
    let both = [
        "--metrics-depth=d",
        "--metrics-dequeued=o",
        "--metrics-capacity=c",
        "--metrics-capacity-value=3",
    ];
    assert!(parse(&both).unwrap_err().contains("not both"));
}

#[test]
fn byte_sizes() {
    assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
    assert_eq!(parse_bytes("10"), Ok(10));
    assert!(parse_bytes("ten").is_err());
    assert!(parse_bytes("99999999999Ti").is_err());
}

#[test]
fn inspect_args() {
    let cli = Cli::try_parse_from(["transit-sidecar", "inspect", "/b", "--json"]).unwrap();
    let Command::Inspect(a) = cli.command else {
        panic!("inspect")
    };
    assert!(a.json);
    assert_eq!(a.bundle, PathBuf::from("/b"));
}
