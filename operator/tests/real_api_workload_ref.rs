//! `spec.workloadRef` journeys (issue 21), with the webhook, on a control plane of their own
//! (the webhook's configuration is cluster-scoped): two TransitStreams naming the same
//! workload, and the referenced workload deleted and created again. A pod belongs to the one
//! TransitStream its template's `stallwatch.io/inject` label names (the webhook sets
//! `stallwatch.io/transitstream` from it), so the second TransitStream never remediates it:
//! it covers none of its pods and says so in a `Conflict` condition naming the first.

mod envtest_support;

use std::time::Duration;

use envtest_support::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::kubelet::{self, Overrides};
use stallwatch_envtest::{ControlPlane, Timer, eventually, free_port};

const WORKLOAD: &str = "feed";

fn reference() -> serde_json::Value {
    json!({
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKLOAD},
        "remediation": {"cooldown": "120s"}
    })
}

async fn status(client: &Client, ns: &str, name: &str) -> serde_json::Value {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .ok()
        .and_then(|t| serde_json::to_value(t.status?).ok())
        .unwrap_or_default()
}

async fn workload_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("app={WORKLOAD}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test]
async fn two_streams_naming_one_workload_never_both_remediate_and_the_workload_can_come_back() {
    let test =
        "two_streams_naming_one_workload_never_both_remediate_and_the_workload_can_come_back";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("workload-ref-journeys").await;
    let client = plane.admin().await;
    let webhook_port = free_port();
    if install_chart(&client, &ns, &webhook_values(&ns, webhook_port), test)
        .await
        .is_none()
    {
        return;
    }
    let op_pod = operator_pods(&client, &ns, 1).await.remove(0);
    let operator = run_operator_on(plane, &client, &op_pod, webhook_port).await;
    create_stream(&client, &ns, "feed-ts", reference()).await;
    create_stream(&client, &ns, "feed-ts-2", reference()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // The webhook's certificate registered before the pod is created.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    eventually("the caBundle written", Duration::from_secs(30), || async {
        let config = configs.get_opt(RELEASE).await.ok()??;
        let bundle = config.webhooks?.first()?.client_config.ca_bundle.clone()?;
        (!bundle.0.is_empty()).then_some(())
    })
    .await;
    deployments
        .create(
            &PostParams::default(),
            &injected_workload(WORKLOAD, "feed-ts"),
        )
        .await
        .unwrap();
    let pod = eventually("the injected pod", Duration::from_secs(30), || async {
        workload_pods(&client, &ns)
            .await
            .into_iter()
            .find(|p| p.spec.as_ref().is_some_and(|s| s.containers.len() == 2))
    })
    .await;
    let name = pod.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &client, &pod, &Overrides::default()).await;
    let first = eventually(
        "feed-ts's attempt finished",
        Duration::from_secs(60),
        || async {
            let st = status(&client, &ns, "feed-ts").await;
            (!st["remediation"]["history"][0]["outcome"].is_null()).then_some(st)
        },
    )
    .await;
    drop(local);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The second TransitStream reports the conflict: a `Conflict` condition naming the first,
    // and none of the pod under its coverage.
    let conflict = |st: &serde_json::Value| {
        st["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Conflict").cloned())
            .unwrap_or_default()
    };
    let reported = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let st = status(&client, &ns, "feed-ts-2").await;
            if conflict(&st)["status"] == "True" {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let second = status(&client, &ns, "feed-ts-2").await;
    if reported.is_err() {
        eprintln!("{}", operator.tails(60));
    }
    assert!(
        reported.is_ok(),
        "feed-ts-2 reports no conflict with feed-ts: {second:#}"
    );
    let c = conflict(&second);
    assert_eq!(c["reason"], "WorkloadClaimed", "{c:#}");
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("TransitStream \"feed-ts\"")),
        "the condition does not name feed-ts: {c:#}"
    );
    assert!(
        second["workload"]["coveredPods"]
            .as_array()
            .is_none_or(|p| p.is_empty()),
        "feed-ts-2 lists feed-ts's pod as covered: {:#}",
        second["workload"]
    );
    let first_now = status(&client, &ns, "feed-ts").await;
    assert_eq!(conflict(&first_now)["status"], "False", "{first_now:#}");
    assert!(
        first_now["workload"]["coveredPods"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "feed-ts covers none of its workload's pods: {first_now:#}"
    );
    if std::thread::panicking() {
        eprintln!("{}", operator.tails(60));
    }
    assert_eq!(first["remediation"]["history"][0]["pod"], name.as_str());
    assert_eq!(
        first["remediation"]["history"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(
        second["remediation"]["history"]
            .as_array()
            .is_none_or(|h| h.is_empty())
            && second["remediation"]["inFlight"].is_null(),
        "the second TransitStream acted on the pod too: {second:#}"
    );
    println!(
        "two TransitStreams, one workload: feed-ts-2's workload status {:#}",
        second["workload"]
    );

    // The workload deleted, then created again: its new pod is injected and covered.
    deployments
        .delete(WORKLOAD, &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the workload gone", Duration::from_secs(120), || async {
        deployments
            .get_opt(WORKLOAD)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    deployments
        .create(
            &PostParams::default(),
            &injected_workload(WORKLOAD, "feed-ts"),
        )
        .await
        .unwrap();
    let again = eventually(
        "the re-created workload's pod",
        Duration::from_secs(30),
        || async {
            workload_pods(&client, &ns)
                .await
                .into_iter()
                .find(|p| p.metadata.name.as_deref() != Some(name.as_str()))
        },
    )
    .await;
    if std::thread::panicking() {
        eprintln!("{}", operator.tails(60));
    }
    assert_eq!(
        again.spec.as_ref().map(|s| s.containers.len()),
        Some(2),
        "the re-created workload's pod was not injected"
    );
    plane.delete_namespace(&ns).await;
}
