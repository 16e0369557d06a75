//! Journeys during a stall episode on a real API server (issue 21): pause and unpause,
//! observe mode switched off, the namespace deleted while a remediation runs. The stream's pod
//! is played locally with the story's poison message (a legacy dispatcher that dies on it), so
//! a real sidecar publishes a real stall.

mod envtest_support;
mod journey_support;

use std::time::Duration;

use envtest_support::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::kubelet::{self, LocalPod};
use stallwatch_envtest::{ControlPlane, Timer, eventually};

/// The operator, a TransitStream `demo` with `spec` and its pod running poisoned.
async fn episode(
    plane: &'static ControlPlane,
    ns: &str,
    test: &str,
    spec: serde_json::Value,
) -> Option<(String, Client, Vec<Operator>, LocalPod, String)> {
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let ops = operator_stack(plane, &client, &ns, 1, test).await?;
    create_stream(&client, &ns, "demo", spec).await;
    let pod = stream_pods(&client, &ns, "demo", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &client, &pod, &poisoned()).await;
    Some((ns, client, ops, local, name))
}

async fn event_reasons(client: &Client, ns: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("TransitStream"))
        .filter_map(|e| e.reason)
        .collect()
}

/// Whether pod `name` is gone or being deleted.
async fn deleted(client: &Client, ns: &str, name: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.get_opt(name).await {
        Ok(Some(p)) => p.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        Err(_) => false,
    }
}

async fn set_spec(client: &Client, ns: &str, spec: serde_json::Value) {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    api.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn paused_during_a_stall_holds_back_and_unpausing_remediates_once() {
    let test = "paused_during_a_stall_holds_back_and_unpausing_remediates_once";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let spec = json!({"source": {"synthetic": {}}, "paused": true,
                      "remediation": {"cooldown": "120s"}});
    let Some((ns, client, ops, local, pod)) = episode(plane, "episode-pause", test, spec).await
    else {
        return;
    };
    eventually("a Paused Event", Duration::from_secs(40), || async {
        event_reasons(&client, &ns)
            .await
            .iter()
            .any(|r| r == "Paused")
            .then_some(())
    })
    .await;
    // Held back: no attempt, the pod still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = demo_status(&client, &ns).await;
    assert!(held["remediation"]["inFlight"].is_null(), "{held:#}");
    assert!(
        !deleted(&client, &ns, &pod).await,
        "paused, yet the pod was deleted"
    );
    set_spec(&client, &ns, json!({"paused": false})).await;
    eventually(
        "the stalled pod deleted once unpaused",
        Duration::from_secs(40),
        || async { deleted(&client, &ns, &pod).await.then_some(()) },
    )
    .await;
    let done = eventually("the attempt finished", Duration::from_secs(20), || async {
        let st = demo_status(&client, &ns).await;
        (!st["remediation"]["history"][0]["outcome"].is_null()).then_some(st)
    })
    .await;
    drop(local);
    dump_on_panic(&ops);
    let history = done["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn observe_mode_records_without_acting_and_switched_off_remediates() {
    let test = "observe_mode_records_without_acting_and_switched_off_remediates";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let spec = json!({"source": {"synthetic": {}},
                      "remediation": {"mode": "Observe", "cooldown": "1s"}});
    let Some((ns, client, ops, local, pod)) = episode(plane, "episode-observe", test, spec).await
    else {
        return;
    };
    let observed = eventually("an Observe record", Duration::from_secs(40), || async {
        let st = demo_status(&client, &ns).await;
        let history = st["remediation"]["history"].as_array()?.clone();
        (!history.is_empty()).then_some(history)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !deleted(&client, &ns, &pod).await,
        "observe mode deleted the pod: {observed:#?}"
    );
    set_spec(
        &client,
        &ns,
        json!({"remediation": {"mode": "DumpAndRestart"}}),
    )
    .await;
    eventually(
        "the stalled pod deleted once observe mode is off",
        Duration::from_secs(40),
        || async { deleted(&client, &ns, &pod).await.then_some(()) },
    )
    .await;
    drop(local);
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn the_namespace_deleted_during_a_remediation_leaves_no_error_loop_and_no_series() {
    let test = "the_namespace_deleted_during_a_remediation_leaves_no_error_loop_and_no_series";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    // The operator in its own namespace, cluster-wide would see the other tests: watch one
    // other namespace (the chart in namespaced mode with `watchNamespace`).
    let home = plane.namespace("episode-ns-operator").await;
    let ns = plane.namespace("episode-ns-doomed").await;
    let client = plane.admin().await;
    let mut values = namespaced_values(&ns, 1);
    values["watchNamespace"] = json!(ns);
    if install_chart(&client, &home, &values, test).await.is_none() {
        return;
    }
    let op_pod = operator_pods(&client, &home, 1).await.remove(0);
    let ops = vec![run_operator(plane, &client, &op_pod).await];
    let pod = demo_stream_pod(&client, &ns).await;
    let overrides = poisoned_dump_hanging("20s");
    let local = kubelet::run_pod(plane, &client, &pod, &overrides).await;
    attempt_in_dump_step(&client, &ns, Duration::from_secs(40)).await;
    plane.delete_namespace(&ns).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    eventually("the namespace gone", Duration::from_secs(120), || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    drop(local);
    // Settle, then count the errors logged over a while: a loop would keep adding.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let errors = |log: &str| log.matches("reconcile failed").count();
    let before = errors(&ops[0].log());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = errors(&ops[0].log());
    let metrics = reqwest::get(format!("{}/metrics", ops[0].http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    dump_on_panic(&ops);
    assert!(
        after - before <= 1,
        "an error loop: {before} -> {after} failed reconciles in 10 s"
    );
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains(&format!("namespace=\"{ns}\"")))
        .collect();
    assert!(series.is_empty(), "series left behind: {series:#?}");
    assert!(
        metrics.contains("stallwatch_operator_remediations_in_flight 0"),
        "in flight after the namespace went: {}",
        metrics
            .lines()
            .filter(|l| l.contains("in_flight"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    plane.delete_namespace(&home).await;
}

async fn annotate(client: &Client, ns: &str, value: Option<&str>) {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {stallwatch_crds::OPT_OUT_ANNOTATION: value}}});
    api.patch("demo", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn kubectl_annotate_opt_out_during_a_stall_holds_back_and_removing_it_remediates() {
    let test = "kubectl_annotate_opt_out_during_a_stall_holds_back_and_removing_it_remediates";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("episode-opt-out").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    create_stream(
        &client,
        &ns,
        "demo",
        json!({"source": {"synthetic": {}}, "remediation": {"cooldown": "120s"}}),
    )
    .await;
    // `kubectl annotate ts demo stallwatch.io/remediation=disabled` before the stall.
    annotate(&client, &ns, Some("disabled")).await;
    let pod = stream_pods(&client, &ns, "demo", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &client, &pod, &poisoned()).await;
    eventually("an OptedOut Event", Duration::from_secs(40), || async {
        event_reasons(&client, &ns)
            .await
            .iter()
            .any(|r| r == "OptedOut")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !deleted(&client, &ns, &name).await,
        "opted out, yet deleted"
    );
    // `kubectl annotate ts demo stallwatch.io/remediation-`
    annotate(&client, &ns, None).await;
    eventually(
        "the stalled pod deleted once the opt-out is removed",
        Duration::from_secs(40),
        || async { deleted(&client, &ns, &name).await.then_some(()) },
    )
    .await;
    drop(local);
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

// The graceful shutdown cuts a reconcile still waiting on a sidecar call at half the grace
// (`run::until_done_or_drained`); the next operator must finish that attempt exactly once.
#[tokio::test]
async fn sigterm_in_the_dump_step_then_a_new_operator_finishes_the_attempt_exactly_once() {
    let test = "sigterm_in_the_dump_step_then_a_new_operator_finishes_the_attempt_exactly_once";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("episode-sigterm-dump").await;
    let client = plane.admin().await;
    let Some(mut ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let pod = demo_stream_pod(&client, &ns).await;
    let name = pod.metadata.name.clone().unwrap();
    // The dump hangs 8 s on the broadcaster's task dump: longer than the drain (5 s).
    let overrides = poisoned_dump_hanging("8s");
    let local = kubelet::run_pod(plane, &client, &pod, &overrides).await;
    attempt_in_dump_step(&client, &ns, Duration::from_secs(40)).await;
    let proc = ops[0].pod.proc_mut("operator");
    proc.signal("TERM");
    let stopped = std::time::Instant::now();
    while proc.alive() && stopped.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!proc.alive(), "still running after SIGTERM");
    println!(
        "SIGTERM in the Dump step: exited after {:.1?}",
        stopped.elapsed()
    );
    let op_pod: Pod = Api::namespaced(client.clone(), &ns)
        .get(&ops[0].pod.name)
        .await
        .unwrap();
    ops.clear();
    ops.push(run_operator(plane, &client, &op_pod).await);
    let done = eventually("the attempt finished", Duration::from_secs(60), || async {
        let st = demo_status(&client, &ns).await;
        (!st["remediation"]["history"][0]["outcome"].is_null()).then_some(st)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = demo_status(&client, &ns).await;
    drop(local);
    dump_on_panic(&ops);
    let history = st["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["pod"], name.as_str());
    assert!(st["remediation"]["inFlight"].is_null(), "{st:#}");
    assert!(deleted(&client, &ns, &name).await);
    println!(
        "finished once: {}",
        done["remediation"]["history"][0]["outcome"]
    );
    plane.delete_namespace(&ns).await;
}

/// `kubectl delete pod` of the stalled pod by hand while the operator is in its Dump step:
/// the attempt ends once (the restart finds the pod gone and counts it done), and the
/// replacement pod is never deleted.
#[tokio::test]
async fn kubectl_delete_of_the_stalled_pod_mid_remediation_ends_the_attempt_once() {
    let test = "kubectl_delete_of_the_stalled_pod_mid_remediation_ends_the_attempt_once";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("episode-pod-deleted").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let pod = demo_stream_pod(&client, &ns).await;
    let name = pod.metadata.name.clone().unwrap();
    let overrides = poisoned_dump_hanging("8s");
    let local = kubelet::run_pod(plane, &client, &pod, &overrides).await;
    attempt_in_dump_step(&client, &ns, Duration::from_secs(40)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.delete(&name, &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let st = demo_status(&client, &ns).await;
            if !st["remediation"]["history"][0]["outcome"].is_null() {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = demo_status(&client, &ns).await;
    let replacements: Vec<Pod> = pods
        .list(&kube::api::ListParams::default().labels("stallwatch.io/transitstream=demo"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.name.as_deref() != Some(name.as_str()))
        .collect();
    drop(local);
    dump_on_panic(&ops);
    assert!(done.is_ok(), "the attempt never ended: {st:#}");
    let history = st["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["pod"], name.as_str());
    assert!(st["remediation"]["inFlight"].is_null(), "{st:#}");
    assert!(
        replacements
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_none()),
        "a replacement pod was deleted"
    );
    println!(
        "the stalled pod deleted by hand mid-Dump: {} ({})",
        history[0]["outcome"], history[0]["message"]
    );
    plane.delete_namespace(&ns).await;
}
