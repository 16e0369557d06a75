//! The operator in cluster-wide mode (the chart's default values) on a real API server, as the
//! chart's ServiceAccount: it reconciles and remediates a TransitStream in another namespace
//! with zero 403s. Its own test binary (its own control plane): a cluster-wide operator would
//! act on the other tests' namespaces. Skipped where the binaries are missing.

mod envtest_support;

use std::time::{Duration, Instant};

use envtest_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

#[tokio::test]
async fn cluster_wide_the_operator_reconciles_and_remediates_in_any_namespace_with_zero_403s() {
    let test =
        "cluster_wide_the_operator_reconciles_and_remediates_in_any_namespace_with_zero_403s";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let system = plane.namespace("stallwatch-system").await;
    let client = plane.admin().await;
    if install_chart(&client, &system, &json!({}), test)
        .await
        .is_none()
    {
        return;
    }
    let pod = operator_pods(&client, &system, 1).await.remove(0);
    let ops = vec![run_operator(plane, &client, &pod).await];
    let ns = plane.namespace("transit").await;
    create_stream(
        &client,
        &ns,
        "demo",
        json!({"source": {"synthetic": {}}, "remediation": {"mode": "RestartOnly"}}),
    )
    .await;
    let pod = stream_pods(&client, &ns, "demo", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    stallwatch_envtest::kubelet::mark_running(&client, &ns, &name, "127.0.0.1").await;
    // The stall verdict, written as the sidecar writes it, with the sidecar's own account.
    let sidecar = plane.service_account_client(&ns, "demo-sidecar").await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    Api::<Pod>::namespaced(sidecar, &ns)
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [{
                "type": "stallwatch.io/DispatchHealthy", "status": "False", "reason": "DispatcherDead",
                "message": "stream all: DispatcherDead, 5/5 waiting, never dequeued",
                "lastTransitionTime": now
            }]}})),
        )
        .await
        .expect("the sidecar's account writes its condition");
    let written = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the stalled pod deleted",
        Duration::from_secs(20),
        || async {
            let p = pods.get_opt(&name).await.ok()?;
            (p.is_none() || p?.metadata.deletion_timestamp.is_some()).then_some(())
        },
    )
    .await;
    println!(
        "cluster-wide: condition -> pod deleted {:.1?}",
        written.elapsed()
    );
    let streams: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let status = eventually("the attempt recorded", Duration::from_secs(20), || async {
        let st = serde_json::to_value(streams.get("demo").await.ok()?.status?).ok()?;
        (!st["remediation"]["history"][0]["outcome"].is_null()).then_some(st)
    })
    .await;
    assert_eq!(
        status["remediation"]["history"][0]["restart"], "Succeeded",
        "{status:#}"
    );
    let refused = forbidden(&ops);
    dump_on_panic(&ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
}
