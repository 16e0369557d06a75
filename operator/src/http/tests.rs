use super::*;
use tower::ServiceExt;

#[tokio::test]
async fn endpoints() {
    let mut registry = Registry::default();
    let m = crate::metrics::Metrics::new(&mut registry);
    m.error("timeout");
    let (tx, rx) = watch::channel(false);
    let health = Health::new("");
    let _controller = health.watch("controller", std::time::Duration::from_secs(60));
    let app = router(HttpState {
        registry: Arc::new(registry),
        ready: rx,
        health: health.clone(),
    });
    let call = |path: &str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = app.clone().oneshot(call("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.clone().oneshot(call("/readyz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    tx.send(true).unwrap();
    let r = app.clone().oneshot(call("/readyz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A loop that stopped going round fails the liveness endpoint, named.
    let _stuck = health.watch("elector", std::time::Duration::ZERO);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let r = app.clone().oneshot(call("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("elector loop: no progress for"), "{text}");
    let r = app.oneshot(call("/metrics")).await.unwrap();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("stallwatch_operator_reconcile_errors_total{error=\"timeout\"} 1"),
        "{text}"
    );
    assert!(text.contains("stallwatch_operator_stall_to_restart_seconds"));
}
