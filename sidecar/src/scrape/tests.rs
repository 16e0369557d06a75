//! Every way a scrape can go wrong gives a status message and no verdict; a good mapping
//! judges a consumer that stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use stallwatch_core::condition::StallReason;
use stallwatch_core::scrape::Capacity;
use stallwatch_core::verdict::VerdictConfig;

use super::*;
use crate::metrics::Metrics;
use crate::monitor::{METRICS_UNAVAILABLE_REASON, MonitorOutputs};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static DEQUEUED: AtomicU64 = AtomicU64::new(0);
static DEPTH: AtomicU64 = AtomicU64::new(3);

fn body(depth: u64, dequeued: u64) -> String {
    format!(
        "# TYPE app_queue_depth gauge\napp_queue_depth{{queue=\"orders\"}} {depth}\n\
         # TYPE app_dequeued counter\napp_dequeued_total{{queue=\"orders\"}} {dequeued}\n# EOF\n"
    )
}

async fn server() -> String {
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, OPENMETRICS)],
                    body(
                        DEPTH.load(Ordering::SeqCst),
                        DEQUEUED.load(Ordering::SeqCst),
                    ),
                )
            }),
        )
        .route(
            "/html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<!DOCTYPE html><html><body>hello</body></html>",
                )
            }),
        )
        .route(
            "/html-as-text",
            get(|| async { "<!DOCTYPE html>\n<html><body>hello</body></html>\n" }),
        )
        .route(
            "/huge",
            get(|| async { "# a comment\n".repeat(MAX_BODY_BYTES / 12 + 1) }),
        )
        .route(
            "/huge-chunked",
            get(|| async {
                // No Content-Length: only reading tells the size.
                let chunk = bytes::Bytes::from("# a comment\n".repeat(1 << 16));
                let chunks = (0..MAX_BODY_BYTES / chunk.len() + 2)
                    .map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/500",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR.into_response() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                body(0, 0)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn mapping() -> MetricsMapping {
    MetricsMapping {
        depth: "app_queue_depth".into(),
        capacity: Capacity::Fixed(8),
        dequeued: "app_dequeued".into(),
        enqueued: None,
        dropped: None,
        consumer_up: None,
        stream_label: "queue".into(),
    }
}

fn cfg(url: String, mapping: MetricsMapping) -> ScrapeConfig {
    ScrapeConfig {
        url,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(300),
        mapping,
    }
}

fn zero_code_monitor(stall_after: Duration, url: &str) -> (Arc<Monitor>, MonitorOutputs) {
    let (monitor, out) = Monitor::new(
        VerdictConfig {
            stall_after,
            // In report mode, silence this long would be ReportsLost.
            report_timeout: Duration::from_millis(200),
            recover_after: Duration::ZERO,
        },
        Arc::new(Metrics::new()),
    );
    monitor.enable_zero_code(url, 5);
    (monitor, out)
}

/// Scrape `cfg` `n` times through `adapter` into `monitor`, ticking between scrapes.
async fn scrape_n(monitor: &Monitor, cfg: &ScrapeConfig, adapter: &mut ScrapeAdapter, n: usize) {
    let client = HttpClient::new(1);
    for _ in 0..n {
        let outcome = scrape_once(&client, cfg, adapter).await;
        monitor.observe_scrape(outcome);
        monitor.tick();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn failed_fetches_are_named() {
    let base = server().await;
    let client = HttpClient::new(1);
    let t = Duration::from_millis(300);
    let cases = [
        ("/html", "not_metrics", "text/html"),
        (
            "/html-as-text",
            "parse_error",
            "line 1: expected a metric name",
        ),
        ("/missing", "http_status", "HTTP 404"),
        ("/500", "http_status", "HTTP 500"),
        ("/slow", "timeout", "no answer within 300ms"),
    ];
    for (path, label, text) in cases {
        let e = fetch(&client, &format!("{base}{path}"), t)
            .await
            .unwrap_err();
        assert_eq!(e.label(), label, "{path}: {e}");
        assert!(e.to_string().contains(text), "{path}: {e}");
    }
    // Bodies over the limit, declared or only read: a generous bound, reading 4 MiB is slow
    // on a busy machine.
    for path in ["/huge", "/huge-chunked"] {
        let e = fetch(&client, &format!("{base}{path}"), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(e.label(), "not_metrics", "{path}: {e}");
        assert!(e.to_string().contains("larger than"), "{path}: {e}");
    }
    let e = fetch(&client, "http://127.0.0.1:1/metrics", t)
        .await
        .unwrap_err();
    assert_eq!(e.label(), "unreachable", "{e}");
    assert_eq!(
        fetch(&client, &format!("{base}/metrics"), t)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Each wrong endpoint or mapping, scraped while items wait and nothing is dequeued (what a
/// stuck channel looks like), gives no verdict, a status message, the metric and an `Unknown`
/// condition.
#[tokio::test]
async fn wrong_endpoints_and_mappings_give_a_message_and_no_verdict() {
    let base = server().await;
    let mut wrong_metric = mapping();
    wrong_metric.depth = "app_queue_size".into();
    let mut wrong_label = mapping();
    wrong_label.stream_label = "stream".into();
    let cases = [
        (
            format!("{base}/metrics"),
            wrong_metric,
            "missing_metric",
            "metric app_queue_size is not in the scrape",
        ),
        (
            format!("{base}/metrics"),
            wrong_label,
            "missing_label",
            "without the stream label \"stream\"",
        ),
        (
            format!("{base}/html"),
            mapping(),
            "not_metrics",
            "text/html",
        ),
        (
            format!("{base}/html-as-text"),
            mapping(),
            "parse_error",
            "not the Prometheus or OpenMetrics text format",
        ),
        (
            format!("{base}/nothing-here"),
            mapping(),
            "http_status",
            "HTTP 404",
        ),
        (format!("{base}/500"), mapping(), "http_status", "HTTP 500"),
        (
            format!("{base}/slow"),
            mapping(),
            "timeout",
            "no answer within",
        ),
    ];
    for (url, m, kind, text) in cases {
        let (monitor, mut out) = zero_code_monitor(Duration::ZERO, &url);
        let cfg = cfg(url.clone(), m);
        let mut adapter = ScrapeAdapter::new(cfg.mapping.clone(), "t");
        scrape_n(&monitor, &cfg, &mut adapter, 3).await;
        let status = monitor.status();
        assert!(status.streams.is_empty(), "{url}: {status:?}");
        assert!(!monitor.any_stalled(), "{url}: a false verdict");
        let scrape = status.scrape.expect("scrape status");
        assert!(!scrape.ok);
        assert_eq!(scrape.error_kind.as_deref(), Some(kind), "{url}");
        let error = scrape.error.unwrap();
        assert!(error.contains(text), "{url}: {error}");
        let c = out
            .condition
            .borrow_and_update()
            .clone()
            .expect("a condition");
        assert_eq!(
            (c.status(), c.reason.as_str()),
            ("Unknown", METRICS_UNAVAILABLE_REASON)
        );
        assert!(c.message.contains(text), "{}", c.message);
        let metrics = monitor.metrics.encode();
        assert!(
            metrics.contains("stallwatch_sidecar_scrape_ok 0"),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "stallwatch_sidecar_scrapes_total{{outcome=\"{kind}\"}} 3"
            )),
            "{metrics}"
        );
        // The bundle ring keeps the failures too.
        assert_eq!(monitor.snapshot().scrapes.len(), 3);
    }
}

/// A counter that goes backwards (the app restarted) while items wait starts a new instance:
/// no stall is read into it. Then the consumer stops and the channel is judged stuck; the
/// condition goes from Healthy to False, and a failing scrape afterwards keeps the verdict.
#[tokio::test]
async fn restart_is_no_stall_and_a_stopped_consumer_is() {
    let base = server().await;
    let url = format!("{base}/metrics");
    let (monitor, mut out) = zero_code_monitor(Duration::from_millis(300), &url);
    let cfg = cfg(url, mapping());
    let mut adapter = ScrapeAdapter::new(cfg.mapping.clone(), "t");
    DEPTH.store(3, Ordering::SeqCst);
    for i in 0..10u64 {
        DEQUEUED.store(100 + i, Ordering::SeqCst);
        scrape_n(&monitor, &cfg, &mut adapter, 1).await;
    }
    // The restart: the counter starts again at 0, items still wait and move.
    for i in 0..10u64 {
        DEQUEUED.store(i, Ordering::SeqCst);
        scrape_n(&monitor, &cfg, &mut adapter, 1).await;
    }
    let status = monitor.status();
    assert!(!monitor.any_stalled(), "{status:?}");
    let scrape = status.scrape.clone().unwrap();
    assert!(scrape.ok, "{scrape:?}");
    assert_eq!(scrape.app_restarts, 1);
    assert!(
        scrape
            .last_app_restart
            .unwrap()
            .contains("went back from 109 to 0")
    );
    assert_eq!(status.instance.as_deref(), Some("t#2"));
    let c = out.condition.borrow_and_update().clone().unwrap();
    assert_eq!(c.status(), "True");
    // Silence (no scrape) beyond report_timeout is not ReportsLost in zero-code mode.
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.tick();
    assert!(!monitor.any_stalled());

    // The consumer stops.
    let start = std::time::Instant::now();
    while !monitor.any_stalled() && start.elapsed() < Duration::from_secs(5) {
        scrape_n(&monitor, &cfg, &mut adapter, 1).await;
    }
    let s = monitor.status();
    assert_eq!(
        s.streams[0].reason,
        Some(StallReason::ChannelStuck),
        "{s:?}"
    );
    assert_eq!(
        out.condition.borrow_and_update().clone().unwrap().status(),
        "False"
    );
    // A broken scrape now changes no verdict and keeps the False condition.
    let broken = ScrapeConfig {
        url: format!("{base}/500"),
        ..cfg.clone()
    };
    scrape_n(&monitor, &broken, &mut adapter, 2).await;
    assert!(monitor.any_stalled());
    assert_eq!(out.condition.borrow().clone().unwrap().status(), "False");
    assert_eq!(monitor.snapshot().scrapes.len(), 5, "the ring is bounded");
    let rendered = crate::capture::render_scrapes(&monitor.snapshot().scrapes);
    assert!(
        rendered.contains("no verdict: the endpoint answered HTTP 500"),
        "{rendered}"
    );
    assert!(
        rendered.contains("app_queue_depth{queue=\"orders\"} 3"),
        "{rendered}"
    );
}

#[tokio::test]
async fn reports_are_refused_in_zero_code_mode() {
    let (monitor, _out) = zero_code_monitor(Duration::ZERO, "http://127.0.0.1:1/metrics");
    let report = serde_json::to_vec(&crate::monitor::tests::report(
        1,
        1,
        1,
        stallwatch_core::report::DispatcherState::Running,
    ))
    .unwrap();
    let e = monitor.ingest(&report).unwrap_err();
    assert!(e.to_string().contains("zero-code mode"), "{e}");
}
