//! Shared by the journey and lifecycle tests (`real_api_journeys.rs`, `real_api_lifecycle.rs`):
//! the owned objects of a TransitStream, the chart's operator pods played locally with extra
//! env (test hooks, short bounds), and small probes of its endpoints and process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use stallwatch_envtest::{ControlPlane, apply, eventually};

use crate::envtest_support::{MANAGER, Operator, install_chart, operator_pods, run_operator_env};

/// The owned objects of TransitStream `name`: `(kind, object name)`.
pub fn owned(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Deployment", name.to_string()),
        ("Service", name.to_string()),
        ("ConfigMap", format!("{name}-config")),
        ("Secret", format!("{name}-sidecar-admin")),
        ("ServiceAccount", format!("{name}-sidecar")),
        ("Role", format!("{name}-sidecar")),
        ("RoleBinding", format!("{name}-sidecar")),
    ]
}

pub fn api_for(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" => GroupVersionKind::gvk("apps", "v1", kind),
        "Role" | "RoleBinding" => GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
        _ => GroupVersionKind::gvk("", "v1", kind),
    };
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Which owned objects of `name` exist now: kind → uid.
pub async fn owned_now(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, String> {
    let mut found = BTreeMap::new();
    for (kind, object) in owned(name) {
        if let Ok(Some(o)) = api_for(client, ns, kind).get_opt(&object).await {
            found.insert(kind, o.metadata.uid.unwrap_or_default());
        }
    }
    found
}

/// Waits until every owned object of `name` exists with a uid not in `not`; returns the uids,
/// or the kinds still missing after `within`.
pub async fn owned_back(
    client: &Client,
    ns: &str,
    name: &str,
    not: &BTreeMap<&'static str, String>,
    within: Duration,
) -> Result<BTreeMap<&'static str, String>, Vec<&'static str>> {
    let start = Instant::now();
    loop {
        let now = owned_now(client, ns, name).await;
        let missing: Vec<&'static str> = owned(name)
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| now.get(k).is_none_or(|uid| not.get(k) == Some(uid)))
            .collect();
        if missing.is_empty() {
            return Ok(now);
        }
        if start.elapsed() > within {
            return Err(missing);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every owned object of `name` exists; returns their uids.
pub async fn all_owned(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, String> {
    owned_back(client, ns, name, &BTreeMap::new(), Duration::from_secs(30))
        .await
        .unwrap_or_else(|missing| panic!("owned objects of {name} missing: {missing:?}"))
}

/// Waits until the garbage collector removed every owned object of `name` (the collector
/// learns our CRD by rereading discovery every 30 s: up to ~45 s on a fresh control plane).
pub async fn all_gone(client: &Client, ns: &str, name: &str) {
    eventually(
        &format!("the owned objects of {name} garbage-collected"),
        Duration::from_secs(120),
        || async { owned_now(client, ns, name).await.is_empty().then_some(()) },
    )
    .await;
}

/// The YAML a user keeps in a file for TransitStream `name`.
pub fn stream_yaml(name: &str, spec: &serde_json::Value) -> String {
    serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "stallwatch.io/v1alpha1", "kind": "TransitStream",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("YAML")
}

/// `kubectl apply --server-side -f` of `yaml` into `ns`; panics when refused.
pub async fn apply_file(client: &Client, ns: &str, yaml: &str) {
    let (_, refused) = apply::apply_yaml(client, yaml, ns, MANAGER).await;
    assert!(refused.is_empty(), "refused: {refused:#?}");
}

/// The chart installed in `ns` with `values`, and its `replicas` operator pods running with
/// `env` added.
pub async fn stack_with(
    plane: &ControlPlane,
    client: &Client,
    ns: &str,
    values: &serde_json::Value,
    env: &[(&str, &str)],
    test: &str,
) -> Option<Vec<Operator>> {
    install_chart(client, ns, values, test).await?;
    let replicas = values["replicaCount"].as_u64().unwrap_or(1) as usize;
    let pods = operator_pods(client, ns, replicas).await;
    let mut ops = Vec::new();
    for pod in &pods {
        ops.push(run_operator_env(plane, client, pod, env).await);
    }
    Some(ops)
}

/// The status code of `GET <op>/<path>` (0: no answer).
pub async fn probe(op: &Operator, path: &str) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a client");
    match client.get(format!("{}{path}", op.http)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// SIGTERM to the operator's process; how long it took to exit, or `None` when it was still
/// running after `bound` (then killed).
pub fn sigterm_exit_time(op: &mut Operator, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let proc = op.pod.proc_mut("operator");
    proc.signal("TERM");
    while start.elapsed() < bound {
        if !proc.alive() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    proc.kill();
    None
}
