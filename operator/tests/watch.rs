//! The whole controller (caches, pod watch, reconcile) against a mock API server that streams
//! watch events: a stall condition arriving on the pod watch triggers the first remediation
//! action without waiting for the periodic resync (300 s). The latency is printed, not
//! asserted (shared machines are noisy); the 10 s bound only proves the watch path.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Frame;
use kube::Client;
use kube::client::Body;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use stallwatch_core::bundle::Manifest;
use stallwatch_core::condition::StallReason;
use stallwatch_crds::TransitStream;
use stallwatch_testkit::TransitStreamExt as _;
use tokio::sync::{mpsc, watch};
use transit_operator::metrics::Metrics;
use transit_operator::reconcile::{Context, Settings, system_clock};
use transit_operator::run::{Scope, run_controller};
use transit_operator::sidecar::{BoxFuture, SidecarApi, SidecarError, SidecarTarget};

type MockBody = BoxBody<Bytes, Infallible>;

fn full(v: &Value) -> MockBody {
    http_body_util::Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed()
}

struct Mock {
    ts: Value,
    pod: Value,
    pod_events: Option<mpsc::UnboundedReceiver<Value>>,
    /// (when, what) of every status write.
    status_writes: Vec<(Instant, Value)>,
    version: u64,
}

struct NoSidecar;

impl SidecarApi for NoSidecar {
    fn soft_restart<'a>(
        &'a self,
        _: &'a SidecarTarget,
        _: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        Box::pin(async { Err(SidecarError::NoPodIp) })
    }
    fn capture_dump<'a>(
        &'a self,
        _: &'a SidecarTarget,
        _: &'a str,
        _: StallReason,
        _: Duration,
    ) -> BoxFuture<'a, Result<Manifest, SidecarError>> {
        Box::pin(async { Err(SidecarError::NoPodIp) })
    }
}

fn pod(stalled: bool, version: &str) -> Value {
    let condition = if stalled {
        json!({"type": "stallwatch.io/DispatchHealthy", "status": "False", "reason": "DispatcherDead",
               "message": "stream all: DispatcherDead, 5/5 waiting, never dequeued",
               "lastTransitionTime": "2026-11-28T03:00:00Z"})
    } else {
        json!({"type": "stallwatch.io/DispatchHealthy", "status": "True", "reason": "Healthy",
               "lastTransitionTime": "2026-11-28T02:00:00Z"})
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo-abc", "namespace": "transit", "uid": "pod-uid",
            "resourceVersion": version, "labels": stallwatch_crds::selector_labels("demo")},
        "status": {"podIP": "10.1.2.3", "conditions": [condition]}})
}

fn handle(
    mock: &Arc<Mutex<Mock>>,
    method: &Method,
    path: &str,
    query: &str,
    body: Value,
) -> (u16, MockBody) {
    let mut m = mock.lock().unwrap();
    let list = |kind: &str, items: Vec<Value>| {
        full(
            &json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items}),
        )
    };
    if query.contains("watch=true") {
        if path.ends_with("/pods")
            && let Some(rx) = m.pod_events.take()
        {
            let stream = tokio_stream_of(rx);
            return (200, http_body_util::StreamBody::new(stream).boxed());
        }
        let pending = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>();
        return (200, http_body_util::StreamBody::new(pending).boxed());
    }
    if *method == Method::GET && path.ends_with("/transitstreams") {
        return (200, list("TransitStreamList", vec![m.ts.clone()]));
    }
    if *method == Method::GET && path.ends_with("/pods") {
        return (200, list("PodList", vec![m.pod.clone()]));
    }
    if *method == Method::GET && path.ends_with("/deployments") {
        return (200, list("DeploymentList", vec![]));
    }
    if path.contains("/events") {
        return (201, full(&body));
    }
    if *method == Method::GET {
        return (
            404,
            full(
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ),
        );
    }
    m.version += 1;
    let version = m.version.to_string();
    if path.ends_with("/transitstreams/demo/status") {
        m.status_writes.push((Instant::now(), body.clone()));
        m.ts["status"] = body["status"].clone();
        m.ts["metadata"]["resourceVersion"] = json!(version);
        return (200, full(&m.ts.clone()));
    }
    let mut obj = body;
    obj["metadata"]["resourceVersion"] = json!(version);
    obj["metadata"]["uid"] = json!("uid");
    if path.contains("/deployments/") {
        obj["status"] = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1});
        obj["metadata"]["generation"] = json!(1);
    }
    (200, full(&obj))
}

fn tokio_stream_of(
    rx: mpsc::UnboundedReceiver<Value>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        Some((Ok(Frame::data(Bytes::from(line))), rx))
    })
}

#[tokio::test]
async fn a_stall_condition_on_the_pod_watch_triggers_the_first_action() {
    let ts = TransitStream::test("demo")
        .namespace("transit")
        .uid("ts-uid")
        .resource_version("1")
        .build();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mock = Arc::new(Mutex::new(Mock {
        ts: serde_json::to_value(&ts).unwrap(),
        pod: pod(false, "10"),
        pod_events: Some(events_rx),
        status_writes: Vec::new(),
        version: 1000,
    }));
    let m = mock.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        let m = m.clone();
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, body) = handle(&m, &method, &path, &query, body);
            Ok::<_, Infallible>(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let client = Client::new(service, "transit");
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let ctl_client = client.clone();
    let controller = tokio::spawn(run_controller(
        client,
        Scope::All,
        move |pods, streams| {
            Arc::new(Context::new(
                ctl_client,
                Settings {
                    default_image: "stallwatch:test".into(),
                    ..Settings::default()
                },
                pods,
                streams,
                Arc::new(NoSidecar),
                metrics,
                system_clock(),
            ))
        },
        ready_tx,
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    tokio::time::timeout(Duration::from_secs(10), ready_rx.wait_for(|r| *r))
        .await
        .expect("caches sync")
        .unwrap();
    // The first reconcile (from the initial list) writes the status; wait for it.
    let start = Instant::now();
    while mock.lock().unwrap().status_writes.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no first reconcile"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = mock.lock().unwrap().status_writes.len();

    // The sidecar writes the stall condition: it reaches the operator as a watch event.
    let sent = Instant::now();
    events_tx
        .send(json!({"type": "MODIFIED", "object": pod(true, "11")}))
        .unwrap();
    let recorded = loop {
        let first = mock
            .lock()
            .unwrap()
            .status_writes
            .iter()
            .skip(before)
            .find(|(_, b)| b["status"]["remediation"]["inFlight"]["step"] == "Recorded")
            .map(|(t, b)| (*t, b.clone()));
        if let Some(r) = first {
            break r;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "the stall did not trigger a reconcile through the watch"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "stall condition on the watch -> attempt recorded: {:?}",
        recorded.0.duration_since(sent)
    );
    assert_eq!(
        recorded.1["status"]["remediation"]["inFlight"]["pod"],
        "demo-abc"
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("graceful shutdown")
        .unwrap();
}
