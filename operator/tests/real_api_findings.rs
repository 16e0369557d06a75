//! Findings of issue 20 (a user's first run on a real node) held on the real API server: the
//! operator installed by its chart in namespaced mode and run as the chart's ServiceAccount,
//! as in `real_api.rs`. Skipped, with one line saying how to get the binaries, where they are
//! missing.

mod envtest_support;

use std::path::Path;
use std::time::Duration;

use envtest_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::kubelet::{self, Overrides};
use stallwatch_envtest::{ControlPlane, Timer, apply, eventually, free_port};

/// Lines of the operators' logs with a failed reconcile.
fn failed_reconciles(ops: &[Operator]) -> Vec<String> {
    ops.iter()
        .flat_map(|o| {
            o.log()
                .lines()
                .filter(|l| l.contains("reconcile failed") || l.contains("has been modified"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Finding 8: every new TransitStream logged `WARN reconcile failed … the object has been
/// modified` on its first reconcile (its status write, with the resourceVersion of a cache
/// that had not seen the operator's own previous status write yet). Also finding 10: the
/// operator's text log (`LOG_FORMAT=text`, written to a file) holds no colour escapes.
#[tokio::test]
async fn new_transit_streams_reconcile_without_a_single_failure() {
    let test = "new_transit_streams_reconcile_without_a_single_failure";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-first-reconcile").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let names = ["first", "second", "third", "fourth"];
    for name in names {
        create_stream(&client, &ns, name, json!({"source": {"synthetic": {}}})).await;
    }
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    for name in names {
        eventually(
            &format!("{name}: status with observedGeneration and a ReplicaSet seen"),
            Duration::from_secs(60),
            || async {
                let s = api.get(name).await.ok()?.status?;
                s.observed_generation?;
                // The Deployment's status has come back at least once (the controller
                // manager made its ReplicaSet): the owned-object events that raced.
                (s.replicas > 0).then_some(())
            },
        )
        .await;
    }
    // Let the reconciles the owned objects' own status changes trigger run too.
    tokio::time::sleep(Duration::from_secs(5)).await;
    dump_on_panic(&ops);
    let failed = failed_reconciles(&ops);
    assert!(failed.is_empty(), "failed reconciles: {failed:#?}");
    for o in &ops {
        assert!(!o.log().contains('\u{1b}'), "colour escapes in {}", o.log());
    }
    plane.delete_namespace(&ns).await;
}

fn condition(ts: &TransitStream, type_: &str) -> Option<(String, String, String)> {
    ts.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The pod's own `localhost:9090` (the broadcaster's metrics) on a port of its own here: the
/// local kubelet gives every process a free port.
fn zero_code_overrides() -> Overrides {
    let metrics = free_port();
    Overrides::default()
        .env(
            "broadcaster",
            "BROADCASTER_HTTP_ADDR",
            &format!("127.0.0.1:{metrics}"),
        )
        // The local kubelet wires reports to the sidecar; the operator turned them off.
        .env("broadcaster", "BROADCASTER_REPORT_URL", "")
        .env(
            "sidecar",
            "SIDECAR_METRICS_URL",
            &format!("http://127.0.0.1:{metrics}/metrics"),
        )
}

async fn pod_condition(client: &Client, ns: &str, pod: &str) -> Option<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let p = pods.get(pod).await.ok()?;
    p.status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "stallwatch.io/DispatchHealthy")
        .map(|c| (c.status, c.reason.unwrap_or_default()))
}

/// Finding 4: `examples/zero-code-metrics.yaml` mapped `orders_*` metrics on :9100 that
/// nothing served, so it could never judge. As shipped now, the pod's sidecar judges the
/// broadcaster's own metrics: the pod condition turns True and the TransitStream runs.
#[tokio::test]
async fn the_zero_code_example_works_as_shipped() {
    let test = "the_zero_code_example_works_as_shipped";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-zero-code").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/zero-code-metrics.yaml"),
    )
    .unwrap();
    let (_, refused) = apply::apply_yaml(&client, &example, &ns, MANAGER).await;
    assert!(refused.is_empty(), "{refused:?}");
    let pod = stream_pods(&client, &ns, "zero-code", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &client, &pod, &zero_code_overrides()).await;
    let judged = eventually(
        "the pod condition True",
        Duration::from_secs(60),
        || async {
            pod_condition(&client, &ns, &name)
                .await
                .filter(|(s, _)| s == "True")
        },
    )
    .await;
    assert_eq!(judged.1, "Healthy");
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    eventually(
        "Stalled=False AllStreamsFlowing",
        Duration::from_secs(60),
        || async {
            let ts = api.get("zero-code").await.ok()?;
            let (_, reason, _) = condition(&ts, "Stalled")?;
            (reason == "AllStreamsFlowing").then_some(())
        },
    )
    .await;
    if std::thread::panicking() {
        eprintln!("{}", local.tails(30));
    }
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

/// Finding 4: with a mapping that does not fit, the pod condition said `Unknown`
/// (`MetricsUnavailable`) while the TransitStream said `Stalled=False AllStreamsFlowing:
/// "every stream is making progress"`. Now it names the pod and what is wrong.
#[tokio::test]
async fn a_zero_code_mapping_that_does_not_fit_is_named_in_the_status() {
    let test = "a_zero_code_mapping_that_does_not_fit_is_named_in_the_status";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-zero-code-wrong").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let spec = json!({
        "source": {"synthetic": {}},
        "detection": {"metrics": {
            "port": 9090, "depth": "orders_queue_depth", "capacityValue": 1000,
            "dequeued": "orders_dequeued_total", "streamLabel": "queue"
        }}
    });
    create_stream(&client, &ns, "orders", spec).await;
    let pod = stream_pods(&client, &ns, "orders", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let _local = kubelet::run_pod(plane, &client, &pod, &zero_code_overrides()).await;
    eventually(
        "the pod condition Unknown/MetricsUnavailable",
        Duration::from_secs(60),
        || async {
            pod_condition(&client, &ns, &name)
                .await
                .filter(|(s, r)| s == "Unknown" && r == "MetricsUnavailable")
        },
    )
    .await;
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let (stalled, ready) = eventually(
        "the TransitStream naming MetricsUnavailable",
        Duration::from_secs(60),
        || async {
            let ts = api.get("orders").await.ok()?;
            let stalled = condition(&ts, "Stalled")?;
            let ready = condition(&ts, "Ready")?;
            (ready.1 == "MetricsUnavailable").then_some((stalled, ready))
        },
    )
    .await;
    assert_ne!(stalled.1, "AllStreamsFlowing", "{stalled:?}");
    assert_eq!(stalled.1, "NotJudged", "{stalled:?}");
    assert!(stalled.2.contains("MetricsUnavailable"), "{stalled:?}");
    assert!(ready.2.contains("orders_queue_depth"), "{ready:?}");
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

/// Finding 5: with the dump claim Pending (its pod unschedulable), the status said
/// `Progressing=False Stable` and `Stalled=False AllStreamsFlowing`. There is no scheduler
/// here: the test sets the pod's `PodScheduled` condition as kube-scheduler does.
#[tokio::test]
async fn a_pod_waiting_for_its_dump_claim_is_named_in_the_status() {
    let test = "a_pod_waiting_for_its_dump_claim_is_named_in_the_status";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-claim-pending").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let spec = json!({
        "source": {"synthetic": {}},
        "dumps": {"volume": {"template": {"size": "1Gi"}}}
    });
    create_stream(&client, &ns, "claimed", spec).await;
    let pod = stream_pods(&client, &ns, "claimed", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let unschedulable = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
        "lastTransitionTime": "2026-12-06T00:00:00Z"
    }]}});
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Strategic(&unschedulable),
    )
    .await
    .unwrap();
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let (progressing, stalled, ready) = eventually(
        "the TransitStream naming the unscheduled pod",
        Duration::from_secs(60),
        || async {
            let ts = api.get("claimed").await.ok()?;
            let ready = condition(&ts, "Ready")?;
            (ready.1 == "PodsNotScheduled").then_some((
                condition(&ts, "Progressing")?,
                condition(&ts, "Stalled")?,
                ready,
            ))
        },
    )
    .await;
    assert_ne!(progressing.1, "Stable", "{progressing:?}");
    assert_eq!(stalled.1, "NotJudged", "{stalled:?}");
    assert!(
        stalled
            .2
            .contains("unbound immediate PersistentVolumeClaims"),
        "{stalled:?}"
    );
    assert!(ready.2.contains(&name), "{ready:?}");
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

/// Finding 2: a dump volume the sidecar cannot write was found out only when the first stall
/// needed it, and the TransitStream never said so. The sidecar here (the real binary) gets a
/// dump directory that is a regular file, which no user can write into (root included, as in
/// CI); its probe at start publishes `DumpStorageReady=False` on the pod and the operator
/// turns that into `Degraded=True DumpVolumeUnavailable` naming the pod. Streams still flow,
/// so the phase is not `Degraded`.
#[tokio::test]
async fn an_unwritable_dump_dir_is_named_in_the_degraded_condition() {
    let test = "an_unwritable_dump_dir_is_named_in_the_degraded_condition";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-dump-unwritable").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    create_stream(
        &client,
        &ns,
        "nodumps",
        json!({"source": {"synthetic": {}}}),
    )
    .await;
    let pod = stream_pods(&client, &ns, "nodumps", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let not_a_dir = plane.dir().join(format!("{ns}-dumps-is-a-file"));
    std::fs::write(&not_a_dir, b"not a directory\n").unwrap();
    let overrides =
        Overrides::default().env("sidecar", "SIDECAR_DUMP_DIR", not_a_dir.to_str().unwrap());
    let local = kubelet::run_pod(plane, &client, &pod, &overrides).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (reason, message) = eventually(
        "the pod condition DumpStorageReady=False",
        Duration::from_secs(60),
        || async {
            let c = pods
                .get(&name)
                .await
                .ok()?
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "stallwatch.io/DumpStorageReady")?;
            (c.status == "False")
                .then(|| (c.reason.unwrap_or_default(), c.message.unwrap_or_default()))
        },
    )
    .await;
    assert_eq!(reason, "Missing", "{message}");
    assert!(message.contains("is not a directory"), "{message}");
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let (degraded, phase) = eventually(
        "Degraded=True DumpVolumeUnavailable",
        Duration::from_secs(60),
        || async {
            let ts = api.get("nodumps").await.ok()?;
            let degraded = condition(&ts, "Degraded")?;
            (degraded.1 == "DumpVolumeUnavailable")
                .then(|| (degraded, ts.status.and_then(|s| s.phase)))
        },
    )
    .await;
    assert_eq!(degraded.0, "True", "{degraded:?}");
    assert!(
        degraded.2.contains(&format!("pod {name}: Missing")),
        "{degraded:?}"
    );
    assert!(degraded.2.contains("is not a directory"), "{degraded:?}");
    assert_ne!(
        phase,
        Some(stallwatch_crds::Phase::Degraded),
        "{degraded:?}"
    );
    if std::thread::panicking() {
        eprintln!("{}", local.tails(30));
    }
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

async fn annotate_drill(client: &Client, ns: &str, name: &str, stream: &str) {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {"stallwatch.io/drill": stream}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Item 4 of issue 20, the drill: on a TransitStream that allows drills, the annotation
/// `stallwatch.io/drill: all` becomes one admin call that kills the real broadcaster's
/// dispatcher of stream `all` once; the story follows (`DispatcherDead`, a remediation in the
/// history), the drill is recorded in `status.lastDrill` and an Event, and the annotation is
/// removed. On a TransitStream that does not allow drills it is refused and recorded.
#[tokio::test]
async fn a_drill_rehearses_the_story_and_is_refused_unless_allowed() {
    let test = "a_drill_rehearses_the_story_and_is_refused_unless_allowed";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-drill").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    create_stream(
        &client,
        &ns,
        "drilled",
        json!({"source": {"synthetic": {}}, "allowDrills": true}),
    )
    .await;
    create_stream(
        &client,
        &ns,
        "guarded",
        json!({"source": {"synthetic": {}}}),
    )
    .await;
    let pod = stream_pods(&client, &ns, "drilled", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &client, &pod, &Overrides::default()).await;
    eventually("the pod healthy", Duration::from_secs(60), || async {
        pod_condition(&client, &ns, &name)
            .await
            .filter(|(s, _)| s == "True")
    })
    .await;

    annotate_drill(&client, &ns, "drilled", "all").await;
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let drill = eventually("status.lastDrill", Duration::from_secs(30), || async {
        api.get("drilled").await.ok()?.status?.last_drill
    })
    .await;
    assert_eq!(
        (
            drill.outcome.as_str(),
            drill.stream.as_str(),
            drill.pod.as_str()
        ),
        ("Started", "all", name.as_str()),
        "{drill:?}"
    );
    let history = eventually(
        "a remediation of the drilled stream",
        Duration::from_secs(60),
        || async {
            let st = api.get("drilled").await.ok()?.status?;
            let h = st.remediation.history;
            h.iter()
                .any(|a| a.stream == "all" && a.reason == "DispatcherDead")
                .then_some(h)
        },
    )
    .await;
    assert!(!history.is_empty());
    let ts = api.get("drilled").await.unwrap();
    assert!(
        !ts.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("stallwatch.io/drill"),
        "the annotation is removed once handled"
    );
    // Events are published after the status write, best effort: wait for it.
    let reasons = eventually(
        "the DrillStarted Event",
        Duration::from_secs(30),
        || async {
            let reasons = event_reasons(&client, &ns, "drilled").await;
            reasons
                .iter()
                .any(|r| r == "DrillStarted")
                .then_some(reasons)
        },
    )
    .await;
    assert!(reasons.iter().any(|r| r == "DrillStarted"), "{reasons:?}");

    annotate_drill(&client, &ns, "guarded", "all").await;
    let refused = eventually("the refusal recorded", Duration::from_secs(30), || async {
        api.get("guarded").await.ok()?.status?.last_drill
    })
    .await;
    assert_eq!(refused.outcome, "Refused", "{refused:?}");
    assert!(refused.message.contains("allowDrills"), "{refused:?}");
    // Events are published after the status write, best effort: wait for it.
    let reasons = eventually(
        "the DrillRefused Event",
        Duration::from_secs(30),
        || async {
            let reasons = event_reasons(&client, &ns, "guarded").await;
            reasons
                .iter()
                .any(|r| r == "DrillRefused")
                .then_some(reasons)
        },
    )
    .await;
    assert!(reasons.iter().any(|r| r == "DrillRefused"), "{reasons:?}");
    if std::thread::panicking() {
        eprintln!("{}", local.tails(40));
    }
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

/// Finding 9: uninstalling left the Lease (and the webhook's certificate Secret, written by
/// the same code path's owner: `operator/src/owner.rs`) in the release namespace. Both are
/// now owned by the chart's operator Deployment, which `helm uninstall` deletes: the garbage
/// collector takes the Lease along, even one the still-running operator writes again after
/// the Deployment is gone.
#[tokio::test]
async fn the_lease_goes_with_the_operators_deployment() {
    let test = "the_lease_goes_with_the_operators_deployment";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-uninstall").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let uid = deployments
        .get(RELEASE)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let lease = eventually("the Lease", Duration::from_secs(30), || async {
        leases.get_opt("stallwatch-operator").await.ok().flatten()
    })
    .await;
    let owners = lease.metadata.owner_references.unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "Deployment" && o.name == RELEASE && o.uid == uid),
        "{owners:?}"
    );
    // What `helm uninstall` does to the Deployment (background propagation).
    deployments
        .delete(RELEASE, &kube::api::DeleteParams::background())
        .await
        .unwrap();
    // The local operator keeps running a while, as a pod does until its SIGTERM.
    tokio::time::sleep(Duration::from_secs(3)).await;
    dump_on_panic(&ops);
    drop(ops);
    eventually("the Lease gone", Duration::from_secs(60), || async {
        leases
            .get_opt("stallwatch-operator")
            .await
            .ok()
            .filter(Option::is_none)
    })
    .await;
    plane.delete_namespace(&ns).await;
}

fn broadcaster_of(
    d: &k8s_openapi::api::apps::v1::Deployment,
) -> k8s_openapi::api::core::v1::Container {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.iter().find(|c| c.name == "broadcaster"))
        .cloned()
        .expect("a broadcaster container")
}

/// Finding 6, as `operator/README.md` now says it: drift repair undoes a changed field the
/// operator sets (the image), and leaves fields others added (`kubectl set env`'s entry, and
/// `kubectl rollout restart`'s annotation, which must survive).
#[tokio::test]
async fn drift_repair_undoes_changed_fields_and_keeps_added_ones() {
    let test = "drift_repair_undoes_changed_fields_and_keeps_added_ones";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("findings-drift").await;
    let client = plane.admin().await;
    let Some(ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", json!({"source": {"synthetic": {}}})).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let original = eventually("the Deployment", Duration::from_secs(30), || async {
        deployments.get_opt("demo").await.ok().flatten()
    })
    .await;
    let image = broadcaster_of(&original).image.unwrap();
    // What `kubectl set image`, `kubectl set env` and `kubectl rollout restart` send.
    let edit = |manager: &str| PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    let set_image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "broadcaster", "image": "example.invalid/hand-edited:1"}]}}}});
    let set_env = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "broadcaster", "env": [{"name": "ADDED_BY_HAND", "value": "1"}]}]}}}});
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-12-06T18:00:00Z"}}}}});
    deployments
        .patch("demo", &edit("kubectl-set"), &Patch::Strategic(&set_env))
        .await
        .unwrap();
    deployments
        .patch(
            "demo",
            &edit("kubectl-rollout"),
            &Patch::Strategic(&restart),
        )
        .await
        .unwrap();
    deployments
        .patch("demo", &edit("kubectl-set"), &Patch::Strategic(&set_image))
        .await
        .unwrap();
    let repaired = eventually("the image put back", Duration::from_secs(30), || async {
        let d = deployments.get("demo").await.ok()?;
        (broadcaster_of(&d).image.as_deref() == Some(image.as_str())).then_some(d)
    })
    .await;
    let env = broadcaster_of(&repaired).env.unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == "ADDED_BY_HAND"),
        "an added env entry stays (operator/README.md): {env:?}"
    );
    let annotations = repaired
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("kubectl.kubernetes.io/restartedAt")
            .map(String::as_str),
        Some("2026-12-06T18:00:00Z"),
        "a rollout restart is never undone"
    );
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}
