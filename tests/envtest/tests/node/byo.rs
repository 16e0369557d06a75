//! Bring your own broadcaster on the node: `examples/workload-ref.yaml` with the Python
//! report-client example (`examples/report-clients/python/transit_service.py`, in its own
//! image from Debian's python3) as the user's service, injected by the operator's webhook
//! through the API server, poisoned in its real container.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;
use stallwatch_envtest::node::Node;
use stallwatch_envtest::{apply, eventually, say};

use crate::story::PodsSeen;
use crate::support::{all_containers_ready, condition};

/// `examples/workload-ref.yaml` with the Python service as the Deployment's container: one
/// replica, a poison message `poison_after` seconds after start, its HTTP on the pod IP;
/// `fs_group` adds `fsGroup: 65532` to the pod's security context (finding 1's workaround).
pub fn workload_ref_yaml(node: &Node, poison_after: u32, fs_group: bool) -> String {
    let path = stallwatch_envtest::assets::workspace_root().join("examples/workload-ref.yaml");
    let text = std::fs::read_to_string(path).expect("examples/workload-ref.yaml");
    let mut docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    let deployment = docs
        .iter_mut()
        .find(|d| d["kind"] == "Deployment")
        .expect("the example's Deployment");
    deployment["spec"]["replicas"] = 1.into();
    let pod = &mut deployment["spec"]["template"]["spec"];
    if fs_group {
        pod["securityContext"]["fsGroup"] = 65532.into();
    }
    let container = &mut pod["containers"][0];
    container["image"] = node.image("report-client-python").reference.clone().into();
    container["args"] = json!(["--poison-after", poison_after.to_string()]);
    container["env"] = json!([{"name": "TRANSIT_HTTP_ADDR", "value": "0.0.0.0:8090"}]);
    docs.iter()
        .map(|d| serde_yaml::to_string(d).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The Python service's `updates_total` for stream `all`, on the pod's IP.
pub async fn updates_total(pod_ip: &str) -> Option<u64> {
    let body = reqwest::get(format!("http://{pod_ip}:8090/v1/streams"))
        .await
        .ok()?
        .json::<serde_json::Value>()
        .await
        .ok()?;
    body["streams"]["all"]["updates_total"].as_u64()
}

/// The whole bring-your-own story; returns the TransitStream's status.
pub async fn byo_story(node: &Node, ns: &str, fs_group: bool) -> serde_json::Value {
    let admin = node.plane().admin().await;
    let (_, refused) = apply::apply_yaml(
        &admin,
        &workload_ref_yaml(node, 25, fs_group),
        ns,
        "kubectl",
    )
    .await;
    assert!(refused.is_empty(), "{refused:?}");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let selector = "app=orders-feed";
    let mut seen = PodsSeen::default();
    // Injected by the webhook (called by the API server through its Service), then Ready.
    let first = eventually(
        "the injected pod Ready",
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .ok()?;
            list.items
                .into_iter()
                .find(|p| condition(p, "Ready") == Some("True"))
        },
    )
    .await;
    seen.poll(&pods, selector).await;
    let spec = first.spec.clone().expect("a pod spec");
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"stallwatch-sidecar") || names.iter().any(|n| n.contains("sidecar")),
        "not injected: {names:?}"
    );
    let gates: Vec<String> = spec
        .readiness_gates
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.condition_type)
        .collect();
    assert!(
        gates.iter().any(|g| g == "stallwatch.io/DispatchHealthy"),
        "{gates:?}"
    );
    assert!(all_containers_ready(&first), "{:?}", first.status);
    let first_name = first.metadata.name.clone().unwrap();
    let first_ip = first
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");
    eventually(
        "the service broadcasting",
        Duration::from_secs(30),
        || async { updates_total(&first_ip).await.filter(|n| *n > 0) },
    )
    .await;

    // The poison kills the dispatcher thread: detected, dumped, the pod deleted and replaced.
    let start = std::time::Instant::now();
    let replacement = loop {
        let list = seen.poll(&pods, selector).await;
        if let Some(p) = list.into_iter().find(|p| {
            p.metadata.name.as_deref() != Some(&first_name)
                && p.metadata.deletion_timestamp.is_none()
                && condition(p, "Ready") == Some("True")
        }) {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "no injected replacement Ready after 150 s: {seen:?}\n{}",
            node.tails(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    seen.poll(&pods, selector).await;
    assert_eq!(
        seen.gone.iter().collect::<Vec<_>>(),
        [&first_name],
        "{seen:?}"
    );
    let injected: Vec<String> = replacement
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    assert!(
        injected.len() >= 2,
        "the replacement is not injected: {injected:?}"
    );
    let ip = replacement
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");
    eventually(
        "updates again on the replacement",
        Duration::from_secs(30),
        || async { updates_total(&ip).await.filter(|n| *n > 0) },
    )
    .await;
    let status = eventually("the history entry", Duration::from_secs(30), || async {
        let ts = apply::get_json(
            &admin,
            "stallwatch.io/v1alpha1",
            "TransitStream",
            ns,
            "orders-feed",
        )
        .await?;
        let history = ts["status"]["remediation"]["history"].as_array()?.clone();
        (!history.is_empty() && history[0]["restart"] == "Succeeded")
            .then_some(ts["status"].clone())
    })
    .await;
    say(&format!(
        "envtest node: bring-your-own history {:#}",
        status["remediation"]["history"]
    ));
    status
}
