//! Shared by the `real_api*` tests: the chart installed on the envtest control plane, the
//! operator run from the chart's own Deployment (its pods played locally, so it runs as the
//! chart's ServiceAccount with the chart's env), TransitStreams and their pods, the story's
//! poisoned stream pod and the user workload the webhook injects into.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
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
    run_operator_env(plane, client, pod, &[]).await
}

/// [`run_operator`] with `env` added (test hooks, short bounds), set last: it wins over the
/// pod's env and the local addresses.
pub async fn run_operator_env(
    plane: &ControlPlane,
    client: &Client,
    pod: &Pod,
    env: &[(&str, &str)],
) -> Operator {
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
    for (name, value) in env {
        overrides = overrides.env("operator", name, value);
    }
    Operator {
        pod: kubelet::run_pod(plane, client, pod, &overrides).await,
        http: format!("http://127.0.0.1:{port}"),
    }
}

/// The values of the webhook tests: [`namespaced_values`] with the webhook on, called by
/// `clientConfig.url` on loopback at `webhook_port` (each test runs a control plane of its own:
/// the webhook's configuration is cluster-scoped).
pub fn webhook_values(ns: &str, webhook_port: u16) -> serde_json::Value {
    let mut v = namespaced_values(ns, 1);
    v["webhook"] = json!({
        "enabled": true,
        "url": format!("https://127.0.0.1:{webhook_port}"),
        "timeoutSeconds": 5,
    });
    v
}

/// Runs the operator pod of [`webhook_values`] locally, its webhook on `webhook_port` (the port
/// the chart's `webhook.url` names).
pub async fn run_operator_on(
    plane: &ControlPlane,
    client: &Client,
    pod: &Pod,
    webhook_port: u16,
) -> LocalPod {
    let webhook = format!("127.0.0.1:{webhook_port}");
    run_operator_env(plane, client, pod, &[("WEBHOOK_ADDR", &webhook)])
        .await
        .pod
}

/// The user workload of the webhook tests, Deployment `name`: our own broadcaster with the
/// story's poison as the "user" container, opted in for TransitStream `ts` by its pod
/// template's `stallwatch.io/inject` label.
pub fn injected_workload(name: &str, ts: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "stallwatch.io/inject": ts}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.example.com/feed:1",
                    "command": ["/usr/local/bin/transit-broadcaster"],
                    "args": ["serve"],
                    "env": [
                        {"name": "BROADCASTER_FAULT", "value": "legacy-unsupervised"},
                        {"name": "BROADCASTER_SOURCE",
                         "value": "synthetic://?vehicles=40&routes=4&rate=10&seed=1&poison_after=2s"}
                    ]
                }]}
            }
        }
    }))
    .expect("a Deployment")
}

/// The story's poison for a stream pod played locally: the dispatcher dies on the first
/// malformed entity, 2 s in.
pub fn poisoned() -> Overrides {
    Overrides::default()
        .env("broadcaster", "BROADCASTER_FAULT", "legacy-unsupervised")
        .env(
            "broadcaster",
            "BROADCASTER_SOURCE",
            "synthetic://?vehicles=40&routes=4&rate=10&seed=1&poison_after=2s",
        )
}

/// [`poisoned`], and the sidecar's task dump of the broadcaster hangs (its admin URL answers
/// nothing) until the sidecar's `timeout` (`"8s"`): the attempt stays in its `Dump` step.
pub fn poisoned_dump_hanging(timeout: &str) -> Overrides {
    poisoned()
        .env(
            "sidecar",
            "SIDECAR_BROADCASTER_ADMIN_URL",
            &format!(
                "http://127.0.0.1:{}",
                stallwatch_testkit::net::hung_http_port()
            ),
        )
        .env("sidecar", "SIDECAR_TASK_DUMP_TIMEOUT", timeout)
}

/// Creates TransitStream `demo` (a synthetic source, a 120 s cooldown: one attempt per
/// episode) and returns its pod, not running yet.
pub async fn demo_stream_pod(client: &Client, ns: &str) -> Pod {
    create_stream(
        client,
        ns,
        "demo",
        json!({"source": {"synthetic": {}}, "remediation": {"cooldown": "120s"}}),
    )
    .await;
    stream_pods(client, ns, "demo", 1).await.remove(0)
}

/// The status of TransitStream `demo` as JSON (`null` while it has none or cannot be read).
pub async fn demo_status(client: &Client, ns: &str) -> serde_json::Value {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    api.get("demo")
        .await
        .ok()
        .and_then(|t| serde_json::to_value(t.status?).ok())
        .unwrap_or_default()
}

/// Waits (at most `within`) until the remediation attempt of `demo` is in its `Dump` step.
pub async fn attempt_in_dump_step(client: &Client, ns: &str, within: Duration) {
    eventually("the attempt in its Dump step", within, || async {
        let st = demo_status(client, ns).await;
        (st["remediation"]["inFlight"]["step"] == "Dump").then_some(())
    })
    .await;
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
