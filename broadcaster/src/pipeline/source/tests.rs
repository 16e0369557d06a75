use super::*;

#[test]
fn parses_every_documented_url_form() {
    assert!(matches!(
        "synthetic://".parse::<SourceSpec>().unwrap(),
        SourceSpec::Synthetic(_)
    ));
    let SourceSpec::Synthetic(cfg) =
        "synthetic://?vehicles=5&routes=2&rate=20&malformed_rate=0.5&poison_after=3s&poison_stream_route=R2&limit=7&seed=9"
            .parse()
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (cfg.vehicles, cfg.routes, cfg.limit, cfg.seed),
        (5, 2, 7, 9)
    );
    assert_eq!(cfg.poison_after, Some(Duration::from_secs(3)));
    assert_eq!(cfg.poison_stream_route.as_deref(), Some("R2"));
    assert_eq!(
        "nats://127.0.0.1:4222/feeds.vehicles"
            .parse::<SourceSpec>()
            .unwrap(),
        SourceSpec::Nats {
            server: "127.0.0.1:4222".into(),
            subject: "feeds.vehicles".into()
        }
    );
    assert_eq!(
        "http://127.0.0.1:8080/gtfs-rt"
            .parse::<SourceSpec>()
            .unwrap(),
        SourceSpec::Http {
            url: "http://127.0.0.1:8080/gtfs-rt".into()
        }
    );
    assert_eq!(
        "file:///tmp/rec.pb".parse::<SourceSpec>().unwrap(),
        SourceSpec::File {
            path: "/tmp/rec.pb".into()
        }
    );
}

#[test]
fn refuses_bad_urls_clearly() {
    for (url, expect) in [
        ("localhost:4222", "no scheme"),
        ("ftp://x/y", "unsupported source scheme"),
        ("nats://127.0.0.1:4222", "subject"),
        ("nats:///subj", "host:port"),
        ("file://relative/path", "absolute path"),
        ("http:///x", "missing host"),
        ("synthetic://?vehicles=many", "vehicles"),
        ("synthetic://?rate=0", "rate"),
        ("synthetic://?malformed_rate=2", "malformed_rate"),
        ("synthetic://?colour=red", "unknown parameter"),
    ] {
        let err = url.parse::<SourceSpec>().unwrap_err().to_string();
        assert!(err.contains(expect), "{url}: {err}");
    }
}
