//! A pod deleted on the node and watched until it is gone: how each of its containers ended,
//! as the kubelet reported it, against the pod's own `terminationGracePeriodSeconds`.
//!
//! Where the final states are: on a graceful delete the API server only sets
//! `metadata.deletionTimestamp` (the deadline: the request's time + the grace). The kubelet
//! stops the containers (SIGTERM, SIGKILL at the deadline), writes the pod's final status
//! (`syncTerminatedPod`: every container `state.terminated` with its exit code) through its
//! status manager, and only then, once nothing of the pod runs, deletes the object with grace
//! 0 (the status manager's `canBeDeleted`). A watch on the pod therefore sees the terminated
//! states in a MODIFIED event (and again in the DELETED one) before the object disappears; a
//! GET after the delete may find nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::{DeleteParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use stallwatch_envtest::node::Node;
use stallwatch_envtest::{Timer, apply, say};

use crate::support::{OPERATOR_NS, ensure_installed, minimal_stream, ready_pod, serial};

/// How one container ended.
#[derive(Debug)]
pub struct Ended {
    pub container: String,
    pub terminated: ContainerStateTerminated,
    /// From our delete call until the watch first showed the container terminated.
    pub seen_after: Duration,
}

/// What the watch saw of one deleted pod.
#[derive(Debug)]
pub struct Deleted {
    /// The grace the API server applied to our delete (`metadata.deletionGracePeriodSeconds`
    /// as first seen), else the pod's `spec.terminationGracePeriodSeconds`.
    pub grace_seconds: i64,
    /// The deadline the API server set for our delete (`metadata.deletionTimestamp` as first
    /// seen: the request's time + the grace).
    pub deadline: Option<k8s_openapi::jiff::Timestamp>,
    pub containers: Vec<Ended>,
    /// From our delete call until the DELETED event.
    pub gone_after: Duration,
}

/// Deletes `pod` (the default grace, as `kubectl delete pod` does) and watches it until it is
/// gone (at most `within`), keeping each container's first terminated state.
pub async fn delete_and_watch(client: &Client, pod: &Pod, within: Duration) -> Deleted {
    let ns = pod.metadata.namespace.clone().expect("a namespace");
    let name = pod.metadata.name.clone().expect("a name");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // From the version we hold, so no event between our read and the delete is missed.
    let version = pods
        .get(&name)
        .await
        .expect("the pod before its deletion")
        .metadata
        .resource_version
        .expect("a resourceVersion");
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(within.as_secs().clamp(10, 290) as u32);
    let mut events = Box::pin(pods.watch(&params, &version).await.expect("a watch"));
    let start = Instant::now();
    pods.delete(&name, &DeleteParams::default())
        .await
        .expect("deleting the pod");
    let mut grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .expect("terminationGracePeriodSeconds on the pod");
    let mut deadline = None;
    let mut ended: BTreeMap<String, Ended> = BTreeMap::new();
    loop {
        let event = tokio::time::timeout(within.saturating_sub(start.elapsed()), events.try_next())
            .await
            .unwrap_or_else(|_| panic!("{ns}/{name} not gone within {within:?}: {ended:?}"))
            .unwrap_or_else(|e| panic!("the watch on {ns}/{name}: {e}"))
            .unwrap_or_else(|| panic!("the watch on {ns}/{name} ended before the pod was gone"));
        let (seen, gone) = match event {
            WatchEvent::Modified(p) => (p, false),
            WatchEvent::Deleted(p) => (p, true),
            WatchEvent::Error(e) => panic!("the watch on {ns}/{name}: {e:?}"),
            _ => continue,
        };
        // The first graceful deletion's values: the kubelet's final delete (grace 0) rewrites
        // both (the timestamp moved back to the request's time).
        if deadline.is_none()
            && let Some(t) = &seen.metadata.deletion_timestamp
        {
            deadline = Some(t.0);
            if let Some(g) = seen.metadata.deletion_grace_period_seconds {
                grace = g;
            }
        }
        let statuses = seen
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        for status in statuses {
            if let Some(terminated) = status.state.and_then(|s| s.terminated) {
                ended.entry(status.name.clone()).or_insert(Ended {
                    container: status.name,
                    terminated,
                    seen_after: start.elapsed(),
                });
            }
        }
        if gone {
            return Deleted {
                grace_seconds: grace,
                deadline,
                containers: ended.into_values().collect(),
                gone_after: start.elapsed(),
            };
        }
    }
}

/// Asserts every container of `pod` ended by itself on SIGTERM (exit code 0, not 137 from
/// the SIGKILL at the deadline), finished before the API server's deadline, and prints the
/// measured times as `envtest node timing:` lines under `label`.
pub fn assert_ended_on_sigterm(label: &str, pod: &Pod, deleted: &Deleted) {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let seen: Vec<&str> = deleted
        .containers
        .iter()
        .map(|e| e.container.as_str())
        .collect();
    assert_eq!(
        seen,
        {
            let mut n: Vec<&str> = names.iter().map(String::as_str).collect();
            n.sort();
            n
        },
        "{label}: the watch saw these containers terminated: {deleted:#?}"
    );
    say(&format!(
        "envtest node timing: {label}: delete to pod gone: {:.1}s (grace {} s)",
        deleted.gone_after.as_secs_f64(),
        deleted.grace_seconds
    ));
    let mut failed = Vec::new();
    for e in &deleted.containers {
        let t = &e.terminated;
        // The kubelet's view, to the second: finishedAt - (deadline - grace).
        let by_kubelet = match (deleted.deadline, &t.finished_at) {
            (Some(d), Some(f)) => format!(
                "{} s",
                f.0.as_second() - (d.as_second() - deleted.grace_seconds)
            ),
            _ => "?".into(),
        };
        say(&format!(
            "envtest node timing: {label}: delete to {} terminated (exit {}, {}): {:.1}s \
             (kubelet's finishedAt: {by_kubelet}; grace {} s)",
            e.container,
            t.exit_code,
            t.reason.as_deref().unwrap_or("-"),
            e.seen_after.as_secs_f64(),
            deleted.grace_seconds
        ));
        if (t.exit_code, t.signal) != (0, None) {
            failed.push(format!(
                "{label}: {} did not end by itself on SIGTERM (137 is the SIGKILL at the end \
                 of the {} s grace): {t:?}",
                e.container, deleted.grace_seconds
            ));
        }
        // The kubelet's own times (to the second): finished before the deadline the API
        // server set, i.e. inside the grace, whatever this machine's load did to the watch.
        match (deleted.deadline, &t.finished_at) {
            (Some(deadline), Some(finished)) if finished.0 >= deadline => failed.push(format!(
                "{label}: {} finished at {} after the deadline {deadline}",
                e.container, finished.0
            )),
            (None, _) | (_, None) => failed.push(format!(
                "{label}: {}: no deletion deadline or finish time seen: {deleted:?}",
                e.container
            )),
            _ => {}
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Issue 20, probes and grace against our shutdown times: the chart's operator pod deleted as
/// a user would (`kubectl delete pod`): its container ends on SIGTERM by itself, exit 0,
/// inside the pod's `terminationGracePeriodSeconds`; the Deployment's replacement is Ready.
#[tokio::test]
async fn deleting_the_operator_pod_ends_it_on_sigterm_within_its_grace() {
    let test = "deleting_the_operator_pod_ends_it_on_sigterm_within_its_grace";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let admin = node.plane().admin().await;
    let selector = "app.kubernetes.io/component=operator";
    let pod = ready_pod(&admin, OPERATOR_NS, selector, Duration::from_secs(60)).await;
    let deleted = delete_and_watch(&admin, &pod, Duration::from_secs(120)).await;
    assert_ended_on_sigterm("operator pod", &pod, &deleted);
    // The journeys after this one need an operator.
    let replacement = ready_pod(&admin, OPERATOR_NS, selector, Duration::from_secs(120)).await;
    assert_ne!(
        replacement.metadata.uid, pod.metadata.uid,
        "the replacement"
    );
}

/// The same for a TransitStream's pod (`examples/minimal-synthetic.yaml`): broadcaster and
/// sidecar each end on SIGTERM by themselves, exit 0, inside the pod's grace.
#[tokio::test]
async fn deleting_a_stream_pod_ends_both_containers_on_sigterm_within_its_grace() {
    let test = "deleting_a_stream_pod_ends_both_containers_on_sigterm_within_its_grace";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let (ns, admin, pod) = minimal_stream(node, "journey-sigterm").await;
    let deleted = delete_and_watch(&admin, &pod, Duration::from_secs(120)).await;
    assert_ended_on_sigterm("stream pod", &pod, &deleted);
    node.plane().delete_namespace(&ns).await;
}

/// The check above, on a container that cannot end on SIGTERM (python3 as PID 1 with no
/// handler: the kernel drops the signal), with a 2 s grace: the kubelet's SIGKILL (exit 137)
/// is what the check reports.
#[tokio::test]
async fn a_container_that_ignores_sigterm_fails_the_check() {
    let test = "a_container_that_ignores_sigterm_fails_the_check";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    let ns = node.plane().namespace("journey-sigkill").await;
    let admin = node.plane().admin().await;
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "deaf", "labels": {"app": "deaf"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "deaf",
                "image": node.image("report-client-python").reference,
                "imagePullPolicy": "Never",
                "command": ["/usr/bin/python3", "-c", "import time; time.sleep(600)"],
            }],
        },
    });
    let yaml = serde_yaml::to_string(&pod).expect("YAML");
    let (_, refused) = apply::apply_yaml(&admin, &yaml, &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let pod = ready_pod(&admin, &ns, "app=deaf", Duration::from_secs(120)).await;
    let deleted = delete_and_watch(&admin, &pod, Duration::from_secs(60)).await;
    say("envtest node: the check's panic printed next is the one this test expects");
    let caught = std::panic::catch_unwind(|| assert_ended_on_sigterm("deaf pod", &pod, &deleted))
        .expect_err("a container killed at the end of its grace passed the check");
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("exit_code: 137"), "{message}");
    node.plane().delete_namespace(&ns).await;
}
