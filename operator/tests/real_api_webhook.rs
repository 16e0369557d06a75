//! Bring your own broadcaster on a real API server (the envtest control plane, one of its own:
//! the webhook's configuration and ClusterRole are cluster-scoped). The chart with the
//! webhook on, called by `clientConfig.url` on loopback; the operator from the chart's
//! Deployment. A user Deployment (our own broadcaster in `legacy-unsupervised` mode with a
//! poison message as the "user" container) is referenced by a TransitStream and opted in by
//! its pod template's label:
//! - the webhook is registered (the operator writes the `caBundle`) and the created pod
//!   carries the sidecar, the readiness gate, the dump volume, the downward-API env;
//! - the stall of that pod leads to one dump (through the injected sidecar) and one pod
//!   deletion, and the replacement is injected too;
//! - the certificate rotates (a 40 s lifetime here): the new `caBundle` keeps the old CA,
//!   and a pod created after the rotation is still injected;
//! - with the operator down, a labelled pod, and the workload's pod when it is scaled up, are
//!   created unmodified, not refused; back up, the operator lists that pod in
//!   `status.workload.uncoveredPods` with the `kubectl rollout restart` advice.
//!
//! Skipped (one line) where the control-plane binaries or `.venv` are missing.

mod envtest_support;

use std::path::Path;
use std::time::Duration;

use envtest_support::*;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::kubelet::{self, LocalPod, Overrides};
use stallwatch_envtest::{ControlPlane, Timer, eventually, free_port};

const WORKLOAD: &str = "feed";
const SIDECAR: &str = "stallwatch-sidecar";

fn values(ns: &str, webhook_port: u16) -> serde_json::Value {
    let mut v = webhook_values(ns, webhook_port);
    v["webhook"]["certValidity"] = json!("40s");
    v["extraEnv"] = json!([{"name": "WEBHOOK_CERT_CHECK", "value": "1s"}]);
    v
}

/// A bare pod with the opt-in label (as if its workload had created it).
fn labelled_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bare", "stallwatch.io/inject": "feed-ts"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/feed:1"}]}
    }))
    .unwrap()
}

fn containers(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

async fn ca_bundle(client: &Client) -> Option<String> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = api.get_opt(RELEASE).await.ok()??;
    let bytes = config.webhooks?.first()?.client_config.ca_bundle.clone()?;
    Some(String::from_utf8(bytes.0).ok()?).filter(|b| !b.is_empty())
}

fn bundles(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.join("manifest.json").exists() {
            found.push(p.display().to_string());
        } else if p.is_dir() {
            found.extend(bundles(&p));
        }
    }
    found
}

fn first_cert(pem: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    pem.split_inclusive(end)
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn a_referenced_deployment_is_injected_remediated_and_never_blocked() {
    let test = "a_referenced_deployment_is_injected_remediated_and_never_blocked";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("byo").await;
    let client = plane.admin().await;
    let webhook_port = free_port();
    let Some(_) = install_chart(&client, &ns, &values(&ns, webhook_port), test).await else {
        return;
    };
    let op_pod = operator_pods(&client, &ns, 1).await.remove(0);
    let mut operator = run_operator_on(plane, &client, &op_pod, webhook_port).await;
    let dump = |op: &LocalPod| {
        if std::thread::panicking() {
            eprintln!("{}", op.tails(60));
        }
    };

    // Registered: the operator wrote its CA into the chart's configuration.
    let first_bundle = eventually("the caBundle written", Duration::from_secs(30), || {
        ca_bundle(&client)
    })
    .await;
    println!("webhook: caBundle registered");

    // The TransitStream first (the webhook looks it up), then the user's workload.
    create_stream(
        &client,
        &ns,
        "feed-ts",
        json!({
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKLOAD},
            "remediation": {"cooldown": "120s"}
        }),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the admin token Secret",
        Duration::from_secs(30),
        || async { secrets.get_opt("feed-ts-sidecar-admin").await.ok()? },
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(
            &PostParams::default(),
            &injected_workload(WORKLOAD, "feed-ts"),
        )
        .await
        .unwrap();

    // The created pod, inspected.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let app_pods = ListParams::default().labels(&format!("app={WORKLOAD}"));
    let pod = eventually("the workload's pod", Duration::from_secs(30), || async {
        pods.list(&app_pods).await.ok()?.items.into_iter().next()
    })
    .await;
    dump(&operator);
    let name = pod.metadata.name.clone().unwrap();
    assert_eq!(
        containers(&pod),
        ["app", SIDECAR],
        "{name} was not injected"
    );
    let spec = pod.spec.as_ref().unwrap();
    let gates: Vec<&str> = spec
        .readiness_gates
        .iter()
        .flatten()
        .map(|g| g.condition_type.as_str())
        .collect();
    assert_eq!(gates, ["stallwatch.io/DispatchHealthy"]);
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert!(volumes.contains(&"stallwatch-dumps"), "{volumes:?}");
    let sidecar = &spec.containers[1];
    let downward: Vec<&str> = sidecar
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.as_ref().is_some_and(|v| v.field_ref.is_some()))
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        downward,
        ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME"]
    );
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["stallwatch.io/transitstream"],
        "feed-ts"
    );
    // The workload itself was not touched.
    let d = deployments.get(WORKLOAD).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(
        containers(&Pod {
            spec: d.spec.unwrap().template.spec,
            ..Pod::default()
        }),
        ["app"]
    );
    println!("webhook: {name} injected: {:?}", containers(&pod));

    // The stall: one dump through the injected sidecar, one pod deletion.
    let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watch = {
        let deleted = deleted.clone();
        let pods = pods.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(&format!("app={WORKLOAD}"));
            let mut stream = watcher(pods, cfg).boxed();
            while let Some(Ok(event)) = stream.next().await {
                let (p, gone) = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                    watcher::Event::Delete(p) => (p, true),
                    _ => continue,
                };
                let n = p.metadata.name.clone().unwrap_or_default();
                let mut d = deleted.lock().unwrap();
                if (gone || p.metadata.deletion_timestamp.is_some()) && !d.contains(&n) {
                    d.push(n);
                }
            }
        })
    };
    let local = kubelet::run_pod(plane, &client, &pod, &Overrides::default()).await;
    let dumps_dir = local.root.join("volumes/stallwatch-dumps");
    {
        let deleted = deleted.clone();
        let name = name.clone();
        eventually(
            "the stalled pod deleted",
            Duration::from_secs(60),
            move || {
                let found = deleted.lock().unwrap().contains(&name);
                async move { found.then_some(()) }
            },
        )
        .await;
    }
    if std::thread::panicking() {
        eprintln!("{}", local.tails(40));
    }
    let found = bundles(&dumps_dir);
    drop(local);
    let ts_api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let status = eventually("the attempt finished", Duration::from_secs(30), || async {
        let status = serde_json::to_value(ts_api.get("feed-ts").await.ok()?.status?).ok()?;
        (!status["remediation"]["history"][0]["outcome"].is_null()).then_some(status)
    })
    .await;
    let replacement = eventually(
        "an injected replacement pod",
        Duration::from_secs(30),
        || async {
            pods.list(&app_pods)
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| p.metadata.name.as_deref() != Some(name.as_str()))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    dump(&operator);
    assert_eq!(
        *deleted.lock().unwrap(),
        std::slice::from_ref(&name),
        "exactly one pod deletion"
    );
    assert_eq!(found.len(), 1, "bundles: {found:?}");
    let history = status["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["pod"], name.as_str());
    assert_eq!(history[0]["dump"], "Succeeded", "{:#?}", history[0]);
    assert_eq!(history[0]["restart"], "Succeeded", "{:#?}", history[0]);
    assert_eq!(containers(&replacement), ["app", SIDECAR]);
    println!(
        "webhook: stall -> 1 dump, 1 deletion; replacement injected; status.workload {}",
        status["workload"]
    );
    watch.abort();

    // Rotation: the new caBundle carries the new CA and the old one.
    let rotated = eventually("the caBundle rotated", Duration::from_secs(60), || async {
        ca_bundle(&client).await.filter(|b| *b != first_bundle)
    })
    .await;
    assert_ne!(first_cert(&rotated), first_cert(&first_bundle));
    assert!(
        rotated.contains(&first_cert(&first_bundle)),
        "the rotated caBundle dropped the previous CA"
    );
    // Let the operator switch to the new certificate, then a new pod must still be injected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pods
        .create(&PostParams::default(), &labelled_pod("after-rotation"))
        .await
        .unwrap();
    assert_eq!(
        containers(&after),
        ["app", SIDECAR],
        "not injected after the rotation"
    );
    println!("webhook: rotated; a pod created after the rotation is injected");

    // The operator down: a labelled pod is admitted unmodified (failurePolicy Ignore).
    dump(&operator);
    let refused = operator.procs[0].1.log();
    assert!(
        !refused.contains("forbidden") && !refused.contains(" 403"),
        "403s in the operator's log"
    );
    operator.proc_mut("operator").kill();
    let started = std::time::Instant::now();
    let unmodified = pods
        .create(&PostParams::default(), &labelled_pod("while-down"))
        .await
        .expect("a pod created while the operator is down is admitted");
    assert_eq!(containers(&unmodified), ["app"]);
    println!(
        "webhook: with the operator down, a pod was admitted unmodified in {:.1?}",
        started.elapsed()
    );
    // The workload scaled while the operator is down: its new pod starts without the sidecar.
    let before: Vec<String> = pods
        .list(&app_pods)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    deployments
        .patch(
            WORKLOAD,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let uncovered = eventually("the scaled-up pod", Duration::from_secs(30), || async {
        pods.list(&app_pods)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| {
                p.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| !before.contains(n))
            })
    })
    .await;
    assert_eq!(containers(&uncovered), ["app"], "created unmodified");
    let uncovered_name = uncovered.metadata.name.clone().unwrap();

    // Back up: the status names the pod without the sidecar and says what to do.
    // Played again from the current object: a pod keeps its IP.
    let op_now = pods
        .get(op_pod.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    let _back = run_operator_on(plane, &client, &op_now, webhook_port).await;
    let workload = eventually(
        "status.workload lists the uncovered pod",
        Duration::from_secs(30),
        || async {
            let status = serde_json::to_value(ts_api.get("feed-ts").await.ok()?.status?).ok()?;
            let w = status["workload"].clone();
            w["uncoveredPods"]
                .as_array()?
                .iter()
                .any(|p| *p == uncovered_name.as_str())
                .then_some(w)
        },
    )
    .await;
    assert!(
        workload["message"]
            .as_str()
            .is_some_and(|m| m.contains("kubectl rollout restart deployment/feed")),
        "{workload}"
    );
    println!("webhook: after the restart, status.workload = {workload}");
    plane.delete_namespace(&ns).await;
}
