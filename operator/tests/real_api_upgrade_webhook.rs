//! The chart upgraded webhook on → off → on while streams run (issue 21). Its own test
//! binary, so its own control plane (the webhook's configuration is cluster-scoped).
//! `helm upgrade` is played as in `real_api_upgrade_scope`: the chart rendered with the new
//! values applied server-side, the objects the new render no longer has deleted, the new
//! operator pod started and the old one SIGTERMed.
//!
//! What it shows: switched off, the MutatingWebhookConfiguration is gone, pods injected
//! before keep their sidecar and stay covered, a new pod of the workload is created without
//! it (never refused) and reported uncovered; switched on again, the operator writes the
//! `caBundle` of the re-created configuration and new pods are injected again.

mod envtest_support;
mod journey_support;

use std::time::Duration;

use envtest_support::*;
use journey_support::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, apply, chart, eventually, free_port};

const WORKLOAD: &str = "feed";

fn values(ns: &str, webhook_port: u16, enabled: bool) -> serde_json::Value {
    let mut v = namespaced_values(ns, 1);
    v["webhook"] = json!({
        "enabled": enabled,
        "url": format!("https://127.0.0.1:{webhook_port}"),
        "timeoutSeconds": 5,
    });
    v
}

/// What the chart renders only with the webhook on: (group, kind, cluster-scoped, name).
fn webhook_objects() -> Vec<(&'static str, &'static str, bool, String)> {
    vec![
        ("", "Service", false, format!("{RELEASE}-webhook")),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            true,
            RELEASE.to_string(),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            true,
            format!("{RELEASE}-webhook"),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            true,
            format!("{RELEASE}-webhook"),
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            false,
            format!("{RELEASE}-webhook-certs"),
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            false,
            format!("{RELEASE}-webhook-certs"),
        ),
    ]
}

/// `helm upgrade`: applies the render of `values` and deletes what it no longer has.
async fn upgrade(client: &Client, ns: &str, values: &serde_json::Value) {
    let rendered = chart::render(values, RELEASE, ns).expect("the chart renders");
    let (applied, refused) = apply::apply_yaml(client, &rendered, ns, MANAGER).await;
    assert!(refused.is_empty(), "refused: {refused:#?}");
    for (group, kind, cluster, name) in webhook_objects() {
        if applied.contains(&format!("{kind}/{name}")) {
            continue;
        }
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        let ar = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = if cluster {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), ns, &ar)
        };
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
}

/// The kubelet's part of the rollout: `old` SIGTERMed, the operator pod not seen before
/// started (serving the webhook on `webhook_port` when the chart gave it `WEBHOOK_ADDR`).
async fn roll(
    plane: &ControlPlane,
    client: &Client,
    ns: &str,
    old: &mut Operator,
    seen: &mut Vec<String>,
    webhook_port: u16,
) -> Operator {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/component=operator,app.kubernetes.io/instance={RELEASE}"
    ));
    let new = eventually("the new operator pod", Duration::from_secs(30), || async {
        pods.list(&lp).await.ok()?.items.into_iter().find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !seen.contains(p.metadata.name.as_ref().unwrap())
        })
    })
    .await;
    seen.push(new.metadata.name.clone().unwrap());
    // On loopback both pods would serve the webhook on one port (on a cluster each pod has an
    // address of its own): the old one stops first.
    let exit = sigterm_exit_time(old, Duration::from_secs(15));
    assert!(exit.is_some(), "the old operator did not stop on SIGTERM");
    let addr = format!("127.0.0.1:{webhook_port}");
    let env: &[(&str, &str)] = match pod_env(&new, "WEBHOOK_ADDR") {
        Some(_) => &[("WEBHOOK_ADDR", addr.as_str())],
        None => &[],
    };
    run_operator_env(plane, client, &new, env).await
}

fn workload() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": WORKLOAD},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": WORKLOAD}},
            "template": {
                "metadata": {"labels": {"app": WORKLOAD, "stallwatch.io/inject": "feed-ts"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/feed:1"}]}
            }
        }
    }))
    .unwrap()
}

async fn live_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("app={WORKLOAD}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn injected(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| s.containers.len() == 2)
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

async fn ca_bundle(client: &Client) -> Option<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = api.get_opt(RELEASE).await.ok()??;
    let bundle = config.webhooks?.first()?.client_config.ca_bundle.clone()?;
    (!bundle.0.is_empty()).then_some(())
}

/// Scales the workload to `n` and returns its pod that is not in `known`.
async fn scaled_to(client: &Client, ns: &str, n: i32, known: &[String]) -> Pod {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .patch(
            WORKLOAD,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": n}})),
        )
        .await
        .unwrap();
    eventually(
        "the new pod of the workload",
        Duration::from_secs(30),
        || async {
            live_pods(client, ns)
                .await
                .into_iter()
                .find(|p| !known.contains(&name_of(p)))
        },
    )
    .await
}

async fn coverage(client: &Client, ns: &str) -> serde_json::Value {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    api.get("feed-ts")
        .await
        .ok()
        .and_then(|t| serde_json::to_value(t.status?).ok())
        .map(|s| s["workload"].clone())
        .unwrap_or_default()
}

fn lists(w: &serde_json::Value, field: &str, pod: &str) -> bool {
    w[field].as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p == pod || p["name"].as_str() == Some(pod))
    })
}

#[tokio::test]
async fn the_chart_switched_webhook_off_and_on_keeps_injected_pods_and_injects_again() {
    let test = "the_chart_switched_webhook_off_and_on_keeps_injected_pods_and_injects_again";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("upgrade-webhook").await;
    let client = plane.admin().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = [("WEBHOOK_ADDR", addr.as_str())];
    let Some(mut ops) = stack_with(plane, &client, &ns, &values(&ns, port, true), &env, test).await
    else {
        return;
    };
    let mut seen = vec![ops[0].pod.name.clone()];
    create_stream(
        &client,
        &ns,
        "feed-ts",
        json!({"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKLOAD}}),
    )
    .await;
    eventually("the caBundle written", Duration::from_secs(30), || {
        ca_bundle(&client)
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(&PostParams::default(), &workload())
        .await
        .unwrap();
    let first = eventually("the injected pod", Duration::from_secs(30), || async {
        live_pods(&client, &ns).await.into_iter().find(injected)
    })
    .await;
    let first = name_of(&first);

    // Webhook off.
    upgrade(&client, &ns, &values(&ns, port, false)).await;
    let off = roll(plane, &client, &ns, &mut ops[0], &mut seen, port).await;
    ops = vec![off];
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config_off = configs.get_opt(RELEASE).await.unwrap();
    let plain = scaled_to(&client, &ns, 2, std::slice::from_ref(&first)).await;
    let plain_name = name_of(&plain);
    let w_off = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let w = coverage(&client, &ns).await;
            if lists(&w, "coveredPods", &first) && lists(&w, "uncoveredPods", &plain_name) {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let first_still = live_pods(&client, &ns)
        .await
        .into_iter()
        .find(|p| name_of(p) == first);

    // Webhook on again.
    upgrade(&client, &ns, &values(&ns, port, true)).await;
    let on = roll(plane, &client, &ns, &mut ops[0], &mut seen, port).await;
    ops = vec![on];
    let bundle = tokio::time::timeout(Duration::from_secs(30), async {
        while ca_bundle(&client).await.is_none() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let again = scaled_to(&client, &ns, 3, &[first.clone(), plain_name.clone()]).await;
    let refused = forbidden(&ops);
    dump_on_panic(&ops);
    assert!(
        config_off.is_none(),
        "webhook off, yet the MutatingWebhookConfiguration is still there"
    );
    assert!(
        !injected(&plain),
        "webhook off, yet a new pod was injected: {:?}",
        plain.spec
    );
    assert!(
        first_still.as_ref().is_some_and(injected),
        "webhook off: the pod injected before lost its sidecar or was deleted"
    );
    let w_off = w_off.unwrap_or_else(|_| {
        panic!(
            "webhook off: {first} not covered or {plain_name} not reported uncovered: {:#}",
            futures::executor::block_on(coverage(&client, &ns))
        )
    });
    assert!(
        w_off["message"]
            .as_str()
            .is_some_and(|m| m.contains("kubectl rollout restart deployment/feed")),
        "{w_off:#}"
    );
    assert!(
        bundle.is_ok(),
        "webhook on again: the caBundle of the re-created configuration was never written"
    );
    assert!(
        injected(&again),
        "webhook on again: a new pod was not injected"
    );
    assert!(refused.is_empty(), "403s: {refused:#?}");
    println!(
        "webhook off: {first} kept its sidecar, {plain_name} created plain; on again: {} injected",
        name_of(&again)
    );
    plane.delete_namespace(&ns).await;
}
