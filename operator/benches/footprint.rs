//! Footprint benchmark: feed N TransitStreams and their pods (2 per stream by default)
//! through a mock API server into the operator's caches (the same reflectors, watch
//! configuration and slimming `transit-operator run` uses) and print the process RSS.
//!
//! `cargo bench -p transit-operator --bench footprint` (env `FOOTPRINT_STREAMS`,
//! `FOOTPRINT_PODS_PER_STREAM`). Target: under 32 MiB RSS with 1,000 TransitStreams.
//! The mock API runs in a child process (this binary, `FOOTPRINT_ROLE=server`) and is reached
//! over HTTP with a real kube client, so the RSS printed is the operator side only: client,
//! runtime, reflectors and caches.

use std::convert::Infallible;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use serde_json::{Value, json};
use stallwatch_crds::TransitStream;
use stallwatch_testkit::TransitStreamExt as _;
use transit_operator::builders::{self, BuildContext};

#[path = "footprint/common.rs"]
mod common;
use common::{fill_caches, on_operator_runtime, print_table, rss_kib};

fn managed_fields(manager: &str) -> Value {
    // Real objects carry a few KiB of managedFields; the operator drops them in its caches.
    let fields: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("f:field{i}"), json!({"f:sub": {}, "f:other": {}})))
        .collect();
    json!([{"manager": manager, "operation": "Apply", "apiVersion": "v1",
            "time": "2026-11-28T02:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}])
}

fn stream_json(i: usize) -> Value {
    let name = format!("stream-{i:04}");
    let ts = TransitStream::test(&name)
        .streams(["all", "downtown", "airport"], &["R1", "R2"])
        .namespace(&format!("ns-{}", i % 50))
        .uid(&format!("00000000-0000-0000-0000-{i:012}"))
        .resource_version(&i.to_string())
        .generation(3)
        .build();
    let mut v = serde_json::to_value(&ts).unwrap();
    v["metadata"]["managedFields"] = managed_fields("kubectl");
    let history: Vec<Value> = (0..5)
        .map(|h| json!({"id": format!("{name}-abc/all@{h}"), "pod": format!("{name}-abc"), "podUid": "u",
            "stream": "all", "reason": "ChannelStuck", "stalledSince": "2026-11-28T01:00:00.000000Z",
            "startedAt": "2026-11-28T01:00:01.000000Z", "step": "Done",
            "stepStartedAt": "2026-11-28T01:00:02.000000Z", "dump": "Succeeded",
            "bundlePath": format!("/dumps/{name}/20261128T010001.000Z-all-ChannelStuck"),
            "restart": "Succeeded", "outcome": "Restarted",
            "finishedAt": "2026-11-28T01:00:03.000000Z", "message": "pod deleted"}))
        .collect();
    let conditions: Vec<Value> = ["Ready", "Progressing", "Stalled", "Remediating", "Degraded", "InvalidSpec"]
        .iter()
        .map(|t| json!({"type": t, "status": "False", "reason": "AsExpected", "message": "every stream is making progress",
            "observedGeneration": 3, "lastTransitionTime": "2026-11-28T01:00:00Z"}))
        .collect();
    v["status"] = json!({"observedGeneration": 3, "phase": "Running", "conditions": conditions,
        "streams": 3, "replicas": 2, "readyReplicas": 2, "stalls": 5,
        "remediation": {"history": history}});
    v
}

fn pod_json(i: usize, replica: usize, template: &Value) -> Value {
    let name = format!("stream-{i:04}");
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2026-11-28T01:00:00Z"}))
    .chain(std::iter::once(
        json!({"type": "stallwatch.io/DispatchHealthy", "status": "True",
        "reason": "Healthy", "lastTransitionTime": "2026-11-28T01:00:00Z"}),
    ))
    .collect();
    let containers: Vec<Value> = ["broadcaster", "sidecar"]
        .iter()
        .map(|c| json!({
            "name": c, "ready": true, "restartCount": 0, "image": "stallwatch:0.1.0",
            "imageID": "docker.io/library/stallwatch@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "started": true, "state": {"running": {"startedAt": "2026-11-28T01:00:00Z"}}}))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-7d9c8b6f5-{replica:05}"),
            "namespace": format!("ns-{}", i % 50),
            "uid": format!("10000000-0000-0000-{replica:04}-{i:012}"),
            "resourceVersion": format!("{}", 100_000 + i * 10 + replica),
            "labels": stallwatch_crds::selector_labels(&name),
            "annotations": {"stallwatch.io/config-hash": "0123456789abcdef"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-7d9c8b6f5"), "uid": "x", "controller": true}],
            "managedFields": managed_fields("kube-controller-manager"),
        },
        "spec": template.clone(),
        "status": {
            "phase": "Running", "podIP": format!("10.{}.{}.{}", i / 250, i % 250, replica),
            "hostIP": "192.168.0.10", "startTime": "2026-11-28T01:00:00Z", "qosClass": "Burstable",
            "conditions": conditions,
            "containerStatuses": containers,
        }
    });
    pod["spec"]["nodeName"] = json!("node-1");
    pod
}

/// The mock API server: lists paginated like the API server (`limit`, `continue`), watches
/// that stay open and quiet. Runs in a child process so its own allocations are not counted.
async fn serve_mock(streams: usize, per: usize) {
    use axum::body::Body as AxBody;
    use axum::http::Uri;
    let template = {
        let ts: TransitStream = serde_json::from_value(stream_json(0)).unwrap();
        let d = builders::deployment(
            &ts,
            &BuildContext {
                default_image: "stallwatch:0.1.0".into(),
            },
            "h",
        );
        serde_json::to_value(d.spec.unwrap().template.spec.unwrap()).unwrap()
    };
    let handler = move |uri: Uri| {
        let template = template.clone();
        async move {
            let query = uri.query().unwrap_or("").to_string();
            let path = uri.path().to_string();
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            let limit = param("limit").unwrap_or(usize::MAX);
            let offset = param("continue").unwrap_or(0);
            let page = |total: usize| {
                let end = total.min(offset.saturating_add(limit));
                let cont = if end < total {
                    json!(end.to_string())
                } else {
                    Value::Null
                };
                (offset..end, cont)
            };
            if query.contains("watch=true") {
                return AxBody::from_stream(futures::stream::pending::<Result<Bytes, Infallible>>());
            }
            let v = if path.ends_with("/transitstreams") {
                let (range, cont) = page(streams);
                let items: Vec<Value> = range.map(stream_json).collect();
                json!({"apiVersion": "stallwatch.io/v1alpha1", "kind": "TransitStreamList",
                    "metadata": {"resourceVersion": "500000", "continue": cont}, "items": items})
            } else if path.ends_with("/pods") {
                let (range, cont) = page(streams * per);
                let items: Vec<Value> = range
                    .map(|n| pod_json(n / per, n % per, &template))
                    .collect();
                json!({"apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": "500000", "continue": cont}, "items": items})
            } else {
                json!({"kind": "Status", "code": 404})
            };
            AxBody::from(serde_json::to_vec(&v).unwrap())
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

fn main() {
    if std::env::var("FOOTPRINT_ROLE").as_deref() == Ok("server") {
        let (streams, per) = sizes();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(serve_mock(streams, per));
        return;
    }
    on_operator_runtime(measure());
}

/// TransitStreams, and pods per TransitStream.
fn sizes() -> (usize, usize) {
    let streams: usize = std::env::var("FOOTPRINT_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let per: usize = std::env::var("FOOTPRINT_PODS_PER_STREAM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    (streams, per)
}

/// The operator side: fill the caches from the mock and print the table.
async fn measure() {
    let (streams, per) = sizes();
    let template = {
        let ts: TransitStream = serde_json::from_value(stream_json(0)).unwrap();
        let d = builders::deployment(
            &ts,
            &BuildContext {
                default_image: "stallwatch:0.1.0".into(),
            },
            "h",
        );
        serde_json::to_value(d.spec.unwrap().template.spec.unwrap()).unwrap()
    };
    let sample_pod = serde_json::to_vec(&pod_json(0, 0, &template))
        .unwrap()
        .len();
    let sample_ts = serde_json::to_vec(&stream_json(0)).unwrap().len();
    drop(template);

    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .env("FOOTPRINT_ROLE", "server")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the mock API server");
    let mut addr = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut addr,
    )
    .unwrap();
    let baseline = rss_kib("VmRSS:");
    let config = kube::Config::new(format!("http://{}", addr.trim()).parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let (footprint, cached_streams, pod_store) =
        fill_caches(&client, streams, streams * per, baseline).await;
    // What one cached pod still holds after slimming.
    let slim: &Pod = &pod_store.state()[0];
    let slim_pod = serde_json::to_vec(slim).unwrap().len();

    print_table(
        &format!(
            "operator cache footprint (mock API, {} TransitStreams, {} pods)",
            cached_streams,
            pod_store.len()
        ),
        &[
            ("TransitStream JSON as served", format!("{sample_ts:>9} B ")),
            ("Pod JSON as served", format!("{sample_pod:>9} B ")),
            ("Pod JSON as cached (slimmed)", format!("{slim_pod:>9} B ")),
        ],
        &footprint,
    );
    let _ = server.kill();
    let _ = server.wait();
}
