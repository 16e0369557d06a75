//! Shared by the `real_api*` tests: the chart installed on the envtest control plane, the
//! operator run from the chart's own Deployment (its pods played locally, so it runs as the
//! chart's ServiceAccount with the chart's env), TransitStreams and their pods.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::kubelet::{self, LocalPod, Overrides};
use stallwatch_envtest::{ControlPlane, apply, chart, eventually, free_port};

pub const RELEASE: &str = "stallwatch";
pub const MANAGER: &str = "stallwatch-tests";

/// The values the tests run the operator with in namespaced mode (a short lease so hand-overs
/// are quick to observe). No sidecar-injection webhook: its configuration and ClusterRole are
/// cluster-scoped, so the tests sharing a control plane would fight over them
/// (`real_api_webhook` installs it in a control plane of its own).
pub fn namespaced_values(ns: &str, replicas: u32) -> serde_json::Value {
    json!({
        "namespaced": true,
        "watchNamespace": ns,
        "replicaCount": replicas,
        "leaderElection": {"enabled": true, "leaseDuration": "6s"},
        "networkPolicy": {"enabled": true},
        "webhook": {"enabled": false},
    })
}

/// Applies the chart's CRDs and its templates rendered with `values` into `ns`; `None` (after
/// one line saying why) when the chart cannot be rendered here.
pub async fn install_chart(
    client: &Client,
    ns: &str,
    values: &serde_json::Value,
    test: &str,
) -> Option<Vec<String>> {
    let rendered = match chart::render(values, RELEASE, ns) {
        Ok(r) => r,
        Err(why) => {
            stallwatch_envtest::say(&format!("skipped {test}: {why}"));
            return None;
        }
    };
    let (_, refused) = apply::apply_yaml(client, &chart::crds(), ns, MANAGER).await;
    assert!(
        refused.is_empty(),
        "the chart's CRDs were refused: {refused:?}"
    );
    let (applied, refused) = apply::apply_yaml(client, &rendered, ns, MANAGER).await;
    assert!(refused.is_empty(), "refused: {refused:#?}");
    // The CRD must be served before an operator lists it.
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    eventually(
        "TransitStreams are served",
        Duration::from_secs(20),
        || async { api.list(&ListParams::default().limit(1)).await.ok() },
    )
    .await;
    Some(applied)
}

/// The operator pods the controller manager made from the chart's Deployment, `count` of them.
pub async fn operator_pods(client: &Client, ns: &str, count: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/component=operator,app.kubernetes.io/instance={RELEASE}"
    ));
    eventually(
        "the chart's operator pods",
        Duration::from_secs(30),
        || async {
            let list = pods.list(&lp).await.ok()?.items;
            (list.len() >= count).then_some(list)
        },
    )
    .await
}

/// One operator pod of the chart, played locally.
#[derive(Debug)]
pub struct Operator {
    pub pod: LocalPod,
    /// `http://127.0.0.1:<port>`: `/readyz`, `/metrics`.
    pub http: String,
}

impl Operator {
    pub fn log(&self) -> String {
        self.pod.procs[0].1.log()
    }
}

/// Runs one operator pod locally: `target/debug/transit-operator` with the pod's env, as the
/// chart's ServiceAccount.
pub async fn run_operator(plane: &ControlPlane, client: &Client, pod: &Pod) -> Operator {
    let port = free_port();
    let mut overrides = Overrides::default()
        .program("operator", "transit-operator")
        .env(
            "operator",
            "OPERATOR_HTTP_ADDR",
            &format!("127.0.0.1:{port}"),
        )
        .env("operator", "LOG_FORMAT", "text");
    // The chart's webhook port is fixed; local operators must not share it.
    if pod_env(pod, "WEBHOOK_ADDR").is_some() {
        let webhook = format!("127.0.0.1:{}", free_port());
        overrides = overrides.env("operator", "WEBHOOK_ADDR", &webhook);
    }
    Operator {
        pod: kubelet::run_pod(plane, client, pod, &overrides).await,
        http: format!("http://127.0.0.1:{port}"),
    }
}

/// The plain value of `name` in the pod's first container's env.
pub fn pod_env(pod: &Pod, name: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// A namespaced stack: the chart in `ns` (namespaced mode) and its operator pods running.
pub async fn operator_stack(
    plane: &ControlPlane,
    client: &Client,
    ns: &str,
    replicas: u32,
    test: &str,
) -> Option<Vec<Operator>> {
    install_chart(client, ns, &namespaced_values(ns, replicas), test).await?;
    let pods = operator_pods(client, ns, replicas as usize).await;
    let mut ops = Vec::new();
    for pod in &pods {
        ops.push(run_operator(plane, client, pod).await);
    }
    Some(ops)
}

/// Lines of the operators' logs that show a refusal by RBAC.
pub fn forbidden(ops: &[Operator]) -> Vec<String> {
    ops.iter()
        .map(Operator::log)
        .flat_map(|log| {
            log.lines()
                .filter(|l| {
                    l.contains("forbidden") || l.contains("Forbidden") || l.contains(" 403")
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Creates a TransitStream `name` with `spec`.
pub async fn create_stream(
    client: &Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> TransitStream {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    let ts: TransitStream = serde_json::from_value(json!({
        "apiVersion": "stallwatch.io/v1alpha1", "kind": "TransitStream",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("a TransitStream");
    api.create(&PostParams::default(), &ts)
        .await
        .unwrap_or_else(|e| panic!("creating TransitStream {name}: {e}"))
}

/// The pods of TransitStream `name` (label `stallwatch.io/transitstream`), waiting for `count`.
pub async fn stream_pods(client: &Client, ns: &str, name: &str, count: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("stallwatch.io/transitstream={name}"));
    eventually(
        &format!("{count} pod(s) of TransitStream {name}"),
        Duration::from_secs(60),
        || async {
            let list: Vec<Pod> = pods
                .list(&lp)
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            (list.len() >= count).then_some(list)
        },
    )
    .await
}

/// Prints the logs of `ops` when the test is failing (they are dropped after this).
pub fn dump_on_panic(ops: &[Operator]) {
    if std::thread::panicking() {
        for o in ops {
            eprintln!("{}", o.pod.tails(40));
        }
    }
}
