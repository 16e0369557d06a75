use super::*;
use http::{Method, Request, Response};
use kube::client::Body;
use stallwatch_core::condition::{CONDITION_TYPE, DUMP_STORAGE_CONDITION_TYPE, StallReason};
use stallwatch_core::verdict::Transition;
use tower_test::mock::{self, Handle};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn publisher() -> (Arc<KubePublisher>, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "transit");
    let pod = PodTarget {
        namespace: "transit".into(),
        name: "bc-0".into(),
        uid: Some("uid-1".into()),
    };
    (Arc::new(KubePublisher::new(client, pod)), handle)
}

async fn body_json(req: Request<Body>) -> serde_json::Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn ok_json(v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(&v).unwrap()))
        .unwrap()
}

fn pod_json() -> serde_json::Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"bc-0","namespace":"transit"}})
}

fn stalled() -> DesiredCondition {
    DesiredCondition {
        healthy: false,
        unknown: false,
        reason: "ChannelStuck".into(),
        message: "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 2.3s".into(),
    }
}

#[tokio::test]
async fn condition_patch_targets_pod_status_with_strategic_merge() {
    let (p, mut handle) = publisher();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/transit/pods/bc-0/status"
        );
        assert!(
            req.uri()
                .query()
                .unwrap_or("")
                .contains("fieldManager=transit-sidecar")
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/strategic-merge-patch+json"
        );
        let body = body_json(req).await;
        assert_eq!(
            body,
            json!({"status":{"conditions":[{
                "type":"stallwatch.io/DispatchHealthy",
                "status":"False",
                "reason":"ChannelStuck",
                "message":"stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 2.3s",
                "lastTransitionTime":"2026-11-28T02:15:03Z"
            }]}})
        );
        send.send_response(ok_json(pod_json()));
    });
    p.patch_condition(CONDITION_TYPE, &stalled(), "2026-11-28T02:15:03Z")
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn condition_loop_retries_until_it_lands_and_publishes_only_changes() {
    let (p, mut handle) = publisher();
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run_condition_loop(p, CONDITION_TYPE, rx, metrics.clone()));
    tx.send(Some(stalled())).unwrap();
    // First attempt fails with a 500, the retry succeeds.
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.method(), Method::PATCH);
    send.send_response(
        Response::builder()
            .status(500)
            .body(Body::from(
                serde_json::to_vec(&json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd unhappy","reason":"InternalError","code":500})).unwrap(),
            ))
            .unwrap(),
    );
    let (req, send) = handle.next_request().await.unwrap();
    let first = body_json(req).await;
    assert_eq!(first["status"]["conditions"][0]["status"], "False");
    let ltt = first["status"]["conditions"][0]["lastTransitionTime"].clone();
    send.send_response(ok_json(pod_json()));
    // Same desired state again: nothing is sent.
    tx.send(Some(stalled())).unwrap();
    // A different reason while still False keeps lastTransitionTime.
    let mut dead = stalled();
    dead.reason = "DispatcherDead".into();
    tx.send(Some(dead)).unwrap();
    let (req, send) = handle.next_request().await.unwrap();
    let second = body_json(req).await;
    assert_eq!(
        second["status"]["conditions"][0]["reason"],
        "DispatcherDead"
    );
    assert_eq!(second["status"]["conditions"][0]["lastTransitionTime"], ltt);
    send.send_response(ok_json(pod_json()));
    drop(tx);
    task.await.unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(r#"publishes_total{what="condition"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"publish_errors_total{what="condition"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn stall_event_is_a_warning_about_the_pod() {
    let (p, mut handle) = publisher();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/transit/events"
        );
        let body = body_json(req).await;
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["reason"], "ChannelStuck");
        assert_eq!(body["action"], "Judge/downtown");
        assert_eq!(body["reportingController"], REPORTING_CONTROLLER);
        assert_eq!(body["reportingInstance"], "bc-0");
        assert_eq!(
            body["regarding"],
            json!({"apiVersion":"v1","kind":"Pod","name":"bc-0","namespace":"transit","uid":"uid-1"})
        );
        assert!(
            body["note"]
                .as_str()
                .unwrap()
                .starts_with("stream downtown: ChannelStuck")
        );
        send.send_response(ok_json(body));
    });
    let notice = Notice::Verdict {
        transition: Transition {
            stream: "downtown".into(),
            at: Duration::from_secs(3),
            change: Change::Stalled {
                reason: StallReason::ChannelStuck,
            },
        },
        detail: "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 2.3s".into(),
    };
    let event = event_for(&notice).unwrap();
    let metrics = Metrics::new();
    publish_event(&p, &event, &metrics).await;
    server.await.unwrap();
    assert!(
        metrics
            .encode()
            .contains(r#"publishes_total{what="event"} 1"#)
    );
}

#[tokio::test]
async fn failed_events_are_retried_then_given_up() {
    let (p, mut handle) = publisher();
    let server = tokio::spawn(async move {
        for _ in 0..EVENT_ATTEMPTS {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), Method::POST);
            send.send_response(
                Response::builder()
                    .status(403)
                    .body(Body::from(serde_json::to_vec(&json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","reason":"Forbidden","code":403})).unwrap()))
                    .unwrap(),
            );
        }
    });
    let event = event_for(&Notice::DumpFailed {
        error: "the dump volume is full".into(),
    })
    .unwrap();
    assert!(event.warning);
    assert_eq!(event.reason, "DumpFailed");
    let metrics = Metrics::new();
    tokio::time::pause();
    publish_event(&p, &event, &metrics).await;
    server.await.unwrap();
    assert!(
        metrics
            .encode()
            .contains(r#"publish_errors_total{what="event"} 3"#)
    );
}

#[test]
fn events_for_each_notice() {
    let rec = event_for(&Notice::Verdict {
        transition: Transition {
            stream: "a".into(),
            at: Duration::ZERO,
            change: Change::Recovered {
                was: StallReason::DispatcherDead,
                stalled_for_ms: 12_300,
            },
        },
        detail: String::new(),
    })
    .unwrap();
    assert!(!rec.warning);
    assert_eq!(rec.reason, "Recovered");
    assert_eq!(
        rec.note,
        "stream a: dispatching again after 12.3s stalled (DispatcherDead)"
    );
    assert!(
        event_for(&Notice::Verdict {
            transition: Transition {
                stream: "a".into(),
                at: Duration::ZERO,
                change: Change::Removed {
                    was: stallwatch_core::verdict::Verdict::Healthy
                },
            },
            detail: String::new(),
        })
        .is_none()
    );
    let ok = event_for(&Notice::DumpWritten {
        path: "/dumps/x".into(),
        stream: None,
    })
    .unwrap();
    assert_eq!(ok.reason, "DumpCaptured");
}

/// Zero-code mode without a verdict: the condition is `Unknown`, so the readiness gate holds
/// the pod back and the operator (which acts on `False` only) does nothing.
#[test]
fn an_unknown_condition_patches_status_unknown() {
    let c = DesiredCondition {
        healthy: false,
        unknown: true,
        reason: crate::monitor::METRICS_UNAVAILABLE_REASON.into(),
        message: "zero-code mode: no verdict: scraping http://127.0.0.1:9100/metrics: the endpoint answered HTTP 404".into(),
    };
    let patch = condition_patch(CONDITION_TYPE, &c, "2026-11-30T00:00:00Z");
    let cond = &patch["status"]["conditions"][0];
    assert_eq!(cond["status"], "Unknown");
    assert_eq!(cond["reason"], "MetricsUnavailable");
    assert!(cond["message"].as_str().unwrap().contains("HTTP 404"));
    assert_eq!(stalled().status(), "False");
}

/// The dump volume's condition goes through the same loop under its own type, so it patches
/// only its own entry (merge key `type`) and leaves `DispatchHealthy` alone.
#[tokio::test]
async fn the_dump_storage_condition_is_patched_under_its_own_type() {
    let (p, mut handle) = publisher();
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run_condition_loop(
        p,
        DUMP_STORAGE_CONDITION_TYPE,
        rx,
        metrics,
    ));
    tx.send(Some(DesiredCondition {
        healthy: false,
        unknown: false,
        reason: "PermissionDenied".into(),
        message: "the dump volume is unavailable (not writable by this sidecar)".into(),
    }))
    .unwrap();
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.uri().path(),
        "/api/v1/namespaces/transit/pods/bc-0/status"
    );
    let body = body_json(req).await;
    let conds = body["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0]["type"], "stallwatch.io/DumpStorageReady");
    assert_eq!(conds[0]["status"], "False");
    assert_eq!(conds[0]["reason"], "PermissionDenied");
    send.send_response(ok_json(pod_json()));
    drop(tx);
    task.await.unwrap();
}
