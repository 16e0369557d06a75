use super::*;
use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;

/// A stand-in for the sidecar's admin API on a loopback port; `dump_status` decides the
/// answer to `POST /v1/dumps`.
async fn serve(dump_status: u16, delay: Duration) -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s1 = seen.clone();
    let s2 = seen.clone();
    let app = axum::Router::new()
        .route(
            "/v1/dumps",
            post(move |headers: HeaderMap, Json(body): Json<serde_json::Value>| {
                let seen = s1.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    seen.lock().unwrap().push(("dump".into(), auth, body));
                    tokio::time::sleep(delay).await;
                    let manifest = serde_json::json!({
                        "format": "stallwatch.bundle.v1", "id": "b", "path": "/dumps/ns/p/b",
                        "versions": {"sidecar": "0.1.0", "report_protocol": "stallwatch.report.v1", "bundle_format": "stallwatch.bundle.v1"},
                        "pod": "p", "namespace": "ns", "requested_by": "operator", "created_at_ms": 1,
                        "timings": {"task_dump_ms": 1, "process_dump_ms": 0, "write_ms": 1, "total_ms": 2},
                        "files": [], "task_dump": {"outcome": "fetched", "tasks": 3},
                        "process_dump": {"outcome": "skipped", "why": "disabled"}
                    });
                    let code = StatusCode::from_u16(dump_status).unwrap();
                    if code.is_success() {
                        (code, Json(manifest))
                    } else {
                        (code, Json(serde_json::json!({"error": "volume full"})))
                    }
                }
            }),
        )
        .route(
            "/v1/streams/{name}/restart",
            post(move |Path(name): Path<String>, headers: HeaderMap| {
                let seen = s2.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    seen.lock().unwrap().push((name.clone(), auth, serde_json::Value::Null));
                    if name == "nope" {
                        (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "unknown stream"})))
                    } else {
                        (StatusCode::ACCEPTED, Json(serde_json::json!({"restarted": name})))
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// The client always targets :8081; route it to the test port through a URL override.
async fn call_dump(port: u16, timeout: Duration) -> Result<Manifest, SidecarError> {
    let client = HttpSidecar::new();
    let target = SidecarTarget {
        pod_ip: "127.0.0.1".into(),
        token: "s3cret".into(),
    };
    let body = serde_json::to_value(DumpRequest {
        stream: Some("downtown".into()),
        reason: Some(StallReason::ChannelStuck),
        requested_by: Some("operator".into()),
    })
    .unwrap();
    let text = client
        .post_to(
            &format!("http://127.0.0.1:{port}/v1/dumps"),
            &target,
            body,
            timeout,
        )
        .await?;
    serde_json::from_str(&text).map_err(|e| SidecarError::BadResponse(Arc::new(e)))
}

#[tokio::test]
async fn dumps_are_requested_with_the_bearer_token_and_parsed() {
    let (port, seen) = serve(201, Duration::ZERO).await;
    let m = call_dump(port, Duration::from_secs(5)).await.unwrap();
    assert_eq!(m.path, "/dumps/ns/p/b");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].1.as_deref(), Some("Bearer s3cret"));
    assert_eq!(seen[0].2["stream"], "downtown");
    assert_eq!(seen[0].2["reason"], "ChannelStuck");
    assert_eq!(seen[0].2["requested_by"], "operator");
}

#[tokio::test]
async fn a_full_volume_and_a_slow_sidecar_are_errors() {
    let (port, _) = serve(507, Duration::ZERO).await;
    let err = call_dump(port, Duration::from_secs(5)).await.unwrap_err();
    assert!(
        matches!(&err, SidecarError::Status { status: 507, body } if body.contains("volume full")),
        "{err}"
    );
    let (port, _) = serve(201, Duration::from_secs(5)).await;
    let err = call_dump(port, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn urls_and_missing_ips() {
    let t = |ip: &str| SidecarTarget {
        pod_ip: ip.into(),
        token: "t".into(),
    };
    assert_eq!(
        HttpSidecar::url(&t("10.0.0.7"), "/v1/dumps"),
        "http://10.0.0.7:8081/v1/dumps"
    );
    assert_eq!(
        HttpSidecar::url(&t("fd00::7"), "/v1/dumps"),
        "http://[fd00::7]:8081/v1/dumps"
    );
    let err = HttpSidecar::new()
        .soft_restart(&t(""), "all", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, SidecarError::NoPodIp);
}

#[tokio::test]
async fn soft_restart_maps_statuses() {
    let (port, seen) = serve(201, Duration::ZERO).await;
    let client = HttpSidecar::new();
    let target = SidecarTarget {
        pod_ip: "127.0.0.1".into(),
        token: "s3cret".into(),
    };
    let ok = client
        .post_to(
            &format!("http://127.0.0.1:{port}/v1/streams/downtown/restart"),
            &target,
            serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let err = client
        .post_to(
            &format!("http://127.0.0.1:{port}/v1/streams/nope/restart"),
            &target,
            serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SidecarError::Status { status: 404, .. }));
    assert_eq!(seen.lock().unwrap()[0].1.as_deref(), Some("Bearer s3cret"));
}
