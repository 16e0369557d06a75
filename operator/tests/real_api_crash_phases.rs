//! The operator killed in each phase of a stall episode on a real API server (issue 21): right
//! after the attempt is recorded (nothing done yet) and right after the restart step is
//! recorded (the pod not yet deleted). The kill is the hidden test hook
//! `STALLWATCH_TEST_CRASH_AFTER` (exit 137 with no shutdown, as a SIGKILL at that point);
//! the Dump phase is `real_api_story` (SIGKILL) and `real_api_episodes` (SIGTERM). Each time
//! a new operator finishes the attempt exactly once: one history entry, the stalled pod
//! deleted, its replacement left alone.

mod envtest_support;
mod journey_support;

use std::time::Duration;

use envtest_support::*;
use journey_support::stack_with;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use stallwatch_envtest::kubelet;
use stallwatch_envtest::{ControlPlane, Timer};
use transit_operator::reconcile::CRASH_AFTER_ENV;

/// Every pod of `demo` ever seen now: name → being deleted (or gone: not listed).
async fn pods_deleting(client: &Client, ns: &str) -> Vec<(String, bool)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels("stallwatch.io/transitstream=demo"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.metadata.deletion_timestamp.is_some(),
            )
        })
        .collect()
}

/// The operator dies right after step `step` is on record; a new one finishes the attempt.
async fn killed_after_step(step: &str, test: &str, ns: &str) {
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let values = namespaced_values(&ns, 1);
    let env = [(CRASH_AFTER_ENV, step)];
    let Some(mut ops) = stack_with(plane, &client, &ns, &values, &env, test).await else {
        return;
    };
    let pod = demo_stream_pod(&client, &ns).await;
    let name = pod.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &client, &pod, &poisoned()).await;
    let proc = ops[0].pod.proc_mut("operator");
    let started = std::time::Instant::now();
    while proc.alive() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let died = !proc.alive();
    let at_crash = demo_status(&client, &ns).await;
    let pod_then = pods_deleting(&client, &ns).await;
    if !died {
        dump_on_panic(&ops);
    }
    assert!(died, "the operator did not reach step {step}: {at_crash:#}");
    assert_eq!(
        at_crash["remediation"]["inFlight"]["step"], step,
        "{at_crash:#}"
    );
    assert!(
        pod_then.iter().all(|(_, deleting)| !deleting),
        "a pod was deleted before the operator died after {step}: {pod_then:?}"
    );
    println!(
        "killed after {step}: in flight {}",
        at_crash["remediation"]["inFlight"]
    );

    let op_pod: Pod = Api::namespaced(client.clone(), &ns)
        .get(&ops[0].pod.name)
        .await
        .unwrap();
    ops.clear();
    ops.push(run_operator(plane, &client, &op_pod).await);
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
    if done.is_err() {
        dump_on_panic(&ops);
    }
    let done = done.expect("the new operator did not finish the attempt within 60 s");
    // Time for a second attempt or a second delete, if there were to be one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = demo_status(&client, &ns).await;
    let pods = pods_deleting(&client, &ns).await;
    drop(local);
    dump_on_panic(&ops);
    let history = st["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["pod"], name.as_str());
    assert_eq!(history[0]["outcome"], "Restarted", "{:#}", history[0]);
    assert!(st["remediation"]["inFlight"].is_null(), "{st:#}");
    let others_deleted: Vec<_> = pods
        .iter()
        .filter(|(n, deleting)| *deleting && *n != name)
        .collect();
    assert!(
        others_deleted.is_empty(),
        "the replacement pod was deleted too: {others_deleted:?}"
    );
    assert!(
        pods.iter().all(|(n, deleting)| n != &name || *deleting),
        "the stalled pod {name} was not deleted: {pods:?}"
    );
    println!(
        "killed after {step}: the new operator finished once: {}",
        done["remediation"]["history"][0]["outcome"]
    );
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn killed_after_the_attempt_is_recorded_a_new_operator_finishes_it_exactly_once() {
    killed_after_step(
        "Recorded",
        "killed_after_the_attempt_is_recorded_a_new_operator_finishes_it_exactly_once",
        "crash-recorded",
    )
    .await;
}

#[tokio::test]
async fn killed_after_the_restart_is_recorded_a_new_operator_restarts_the_pod_exactly_once() {
    killed_after_step(
        "Restart",
        "killed_after_the_restart_is_recorded_a_new_operator_restarts_the_pod_exactly_once",
        "crash-restart",
    )
    .await;
}
