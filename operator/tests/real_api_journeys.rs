//! Everyday journeys on a real API server (issue 21), one scenario per test: what a user does
//! first with `kubectl` (create, edit, delete, apply the same file again, touch the objects
//! the operator owns) and what the operator must do about each. The operator runs from the
//! chart's own Deployment (namespaced mode), its pods played locally by the envtest kubelet.
//! The table of journeys and what each shows is in `operator/README.md`.

mod envtest_support;
mod journey_support;

use std::collections::BTreeMap;
use std::time::Duration;

use envtest_support::*;
use journey_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

/// The chart's default `leaderElection.leaseName`.
const LEASE: &str = "stallwatch-operator";

fn synthetic() -> serde_json::Value {
    json!({"source": {"synthetic": {}}})
}

/// The namespace, admin client and one operator of the chart (namespaced mode).
async fn operator_in(
    plane: &'static ControlPlane,
    ns: &str,
    test: &str,
) -> Option<(String, Client, Vec<Operator>)> {
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let ops = operator_stack(plane, &client, &ns, 1, test).await?;
    Some((ns, client, ops))
}

/// Waits until the TransitStream `name` is gone from the API server.
async fn stream_gone(client: &Client, ns: &str, name: &str) {
    let api: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("TransitStream {name} deleted"),
        Duration::from_secs(30),
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

// Issue 21, bug 1: the per-resource state was keyed by namespace/name, so the re-created
// TransitStream (generation 1 again) looked already applied: only the Deployment came back.
#[tokio::test]
async fn deleted_then_the_same_file_applied_again_brings_every_owned_object_back() {
    let test = "deleted_then_the_same_file_applied_again_brings_every_owned_object_back";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-reapply", test).await else {
        return;
    };
    let file = stream_yaml("demo", &synthetic());
    apply_file(&client, &ns, &file).await;
    let first = all_owned(&client, &ns, "demo").await;
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    ts.delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    stream_gone(&client, &ns, "demo").await;
    all_gone(&client, &ns, "demo").await;

    apply_file(&client, &ns, &file).await;
    let back = owned_back(&client, &ns, "demo", &first, Duration::from_secs(30)).await;
    dump_on_panic(&ops);
    let back = back.unwrap_or_else(|missing| panic!("not re-created within 30 s: {missing:?}"));
    println!("re-applied: every owned object back with a new uid ({back:?})");
    let refused = forbidden(&ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
    plane.delete_namespace(&ns).await;
}

// The same file applied again while the first object's owned objects are still being
// collected: the new object must end up with a complete set of its own.
#[tokio::test]
async fn deleted_and_applied_again_at_once_ends_with_every_owned_object() {
    let test = "deleted_and_applied_again_at_once_ends_with_every_owned_object";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-reapply-fast", test).await else {
        return;
    };
    let file = stream_yaml("demo", &synthetic());
    apply_file(&client, &ns, &file).await;
    all_owned(&client, &ns, "demo").await;
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    ts.delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    stream_gone(&client, &ns, "demo").await;
    apply_file(&client, &ns, &file).await;
    let uid = ts.get("demo").await.unwrap().metadata.uid.unwrap();
    // Every owned object ends up owned by the new TransitStream (the collector may delete the
    // old ones first; the operator then re-creates them).
    eventually(
        "every owned object owned by the new TransitStream",
        Duration::from_secs(150),
        || async {
            for (kind, object) in owned("demo") {
                let o = api_for(&client, &ns, kind).get_opt(&object).await.ok()??;
                let refs = o.metadata.owner_references.unwrap_or_default();
                if !(refs.len() == 1 && refs[0].uid == uid) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn the_same_file_applied_in_another_namespace_is_a_second_independent_stream() {
    let test = "the_same_file_applied_in_another_namespace_is_a_second_independent_stream";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    // Cluster-wide would act on the other tests' namespaces: one namespaced operator per
    // namespace, as a user with two teams' namespaces would run them.
    let Some((ns_a, client, ops_a)) = operator_in(plane, "journey-ns-a", test).await else {
        return;
    };
    let ns_b = plane.namespace("journey-ns-b").await;
    let Some(ops_b) = operator_stack(plane, &client, &ns_b, 1, test).await else {
        return;
    };
    let file = stream_yaml("demo", &synthetic());
    apply_file(&client, &ns_a, &file).await;
    let a = all_owned(&client, &ns_a, "demo").await;
    apply_file(&client, &ns_b, &file).await;
    let b = all_owned(&client, &ns_b, "demo").await;
    assert!(
        a.values().all(|uid| !b.values().any(|u| u == uid)),
        "shared objects: {a:?} {b:?}"
    );
    // Deleting one leaves the other whole.
    let ts_a: Api<TransitStream> = Api::namespaced(client.clone(), &ns_a);
    ts_a.delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    all_gone(&client, &ns_a, "demo").await;
    let still: BTreeMap<_, _> = owned_now(&client, &ns_b, "demo").await;
    dump_on_panic(&ops_a);
    dump_on_panic(&ops_b);
    assert_eq!(still, b, "the other namespace's objects changed");
    let lp = ListParams::default();
    let ts_b: Api<TransitStream> = Api::namespaced(client.clone(), &ns_b);
    assert_eq!(ts_b.list(&lp).await.unwrap().items.len(), 1);
    plane.delete_namespace(&ns_a).await;
    plane.delete_namespace(&ns_b).await;
}

/// What an edit of one spec field must do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Effect {
    /// The pod template changes: a rollout.
    RollsOut,
    /// `spec.replicas` of the Deployment becomes this (no new pod template).
    Scales(i64),
    /// Applied (observedGeneration catches up), the pod template unchanged.
    NoRollout,
    /// Refused by the API server (schema or CEL) with this text in the message.
    Refused(&'static str),
}

/// Every field a user may edit, as `(what, merge patch of spec, effect)`.
fn spec_edits() -> Vec<(&'static str, serde_json::Value, Effect)> {
    use Effect::*;
    vec![
        ("channelCapacity", json!({"channelCapacity": 7}), RollsOut),
        ("replicas", json!({"replicas": 2}), Scales(2)),
        (
            "image",
            json!({"image": "registry.example/stallwatch:edited"}),
            RollsOut,
        ),
        (
            "imagePullPolicy",
            json!({"imagePullPolicy": "Always"}),
            RollsOut,
        ),
        (
            "resources",
            json!({"resources": {"requests": {"cpu": "50m"}}}),
            RollsOut,
        ),
        (
            "sidecarResources",
            json!({"sidecarResources": {"requests": {"cpu": "20m"}}}),
            RollsOut,
        ),
        (
            "reportInterval",
            json!({"reportInterval": "500ms"}),
            RollsOut,
        ),
        ("stallAfter", json!({"stallAfter": "3s"}), RollsOut),
        (
            "streams",
            json!({"streams": [{"name": "north"}, {"name": "south"}]}),
            RollsOut,
        ),
        (
            "source",
            json!({"source": {"synthetic": {"vehicles": 12}}}),
            RollsOut,
        ),
        (
            "dumps.maxBundles",
            json!({"dumps": {"maxBundles": 5}}),
            RollsOut,
        ),
        (
            "remediation.mode",
            json!({"remediation": {"mode": "Observe"}}),
            NoRollout,
        ),
        (
            "remediation.cooldown",
            json!({"remediation": {"cooldown": "10m"}}),
            NoRollout,
        ),
        (
            "remediation.budgetPerHour",
            json!({"remediation": {"budgetPerHour": 5}}),
            NoRollout,
        ),
        ("paused", json!({"paused": true}), NoRollout),
        (
            "channelCapacity 0",
            json!({"channelCapacity": 0}),
            Refused("spec.channelCapacity in body should be greater than or equal to 1"),
        ),
        (
            "stallAfter not a duration",
            json!({"stallAfter": "soon"}),
            Refused("spec.stallAfter in body should match"),
        ),
        (
            "budgetPerHour 11",
            json!({"remediation": {"budgetPerHour": 11}}),
            Refused("spec.remediation.budgetPerHour in body should be less than or equal to 10"),
        ),
        (
            "workloadRef beside source",
            json!({"workloadRef": {"kind": "Deployment", "name": "x"}}),
            Refused("set exactly one of source"),
        ),
    ]
}

async fn template_and_replicas(client: &Client, ns: &str) -> (serde_json::Value, i64) {
    let d = api_for(client, ns, "Deployment").get("demo").await.unwrap();
    let spec = &d.data["spec"];
    (
        spec["template"].clone(),
        spec["replicas"].as_i64().unwrap_or(1),
    )
}

#[tokio::test]
async fn every_spec_field_edited_rolls_out_or_is_refused_with_a_clear_message() {
    let test = "every_spec_field_edited_rolls_out_or_is_refused_with_a_clear_message";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-edit-spec", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let mut wrong = Vec::new();
    for (what, patch, effect) in spec_edits() {
        let observed = |ts: TransitStream| {
            let g = ts.metadata.generation;
            (ts.status?.observed_generation == g).then_some(())
        };
        eventually("caught up", Duration::from_secs(30), || async {
            observed(ts.get("demo").await.ok()?)
        })
        .await;
        let (template, replicas) = template_and_replicas(&client, &ns).await;
        let pp = kube::api::PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        };
        let result = ts
            .patch(
                "demo",
                &pp,
                &kube::api::Patch::Merge(json!({"spec": patch})),
            )
            .await;
        let seen = match (&result, effect) {
            (Err(e), Effect::Refused(text)) if e.to_string().contains(text) => effect,
            (Err(e), _) => {
                wrong.push(format!("{what}: refused: {e}"));
                continue;
            }
            (Ok(_), Effect::Refused(_)) => {
                wrong.push(format!("{what}: accepted"));
                continue;
            }
            (Ok(_), _) => {
                eventually(
                    &format!("{what} observed"),
                    Duration::from_secs(30),
                    || async { observed(ts.get("demo").await.ok()?) },
                )
                .await;
                // The Deployment is applied in the same reconcile that writes the status.
                let (after, replicas_after) = template_and_replicas(&client, &ns).await;
                if after != template {
                    Effect::RollsOut
                } else if replicas_after != replicas {
                    Effect::Scales(replicas_after)
                } else {
                    Effect::NoRollout
                }
            }
        };
        println!("edit {what}: {seen:?}");
        if seen != effect {
            wrong.push(format!("{what}: {seen:?}, want {effect:?}"));
        }
    }
    dump_on_panic(&ops);
    assert!(wrong.is_empty(), "{wrong:#?}");
    plane.delete_namespace(&ns).await;
}

/// Patches the Deployment `demo` as `manager` (kubectl's own field managers).
async fn patch_deployment(client: &Client, ns: &str, manager: &str, patch: serde_json::Value) {
    let pp = kube::api::PatchParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    };
    api_for(client, ns, "Deployment")
        .patch("demo", &pp, &kube::api::Patch::Strategic(patch))
        .await
        .unwrap();
}

/// Nudges a reconcile (an annotation on the TransitStream: no spec change) and waits until
/// the operator has been through it (its Deployment apply included).
async fn after_a_reconcile(client: &Client, ns: &str) {
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    let nudge = json!({"metadata": {"annotations": {"test/nudge": format!("{:?}", std::time::Instant::now())}}});
    ts.patch(
        "demo",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(nudge),
    )
    .await
    .unwrap();
    // The Deployment's own watch and the nudge both trigger reconciles within milliseconds;
    // give them time to land (what is checked after is a state, not a timing).
    tokio::time::sleep(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn kubectl_scale_of_the_owned_deployment_is_reverted_to_spec_replicas() {
    let test = "kubectl_scale_of_the_owned_deployment_is_reverted_to_spec_replicas";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-scale", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    // `kubectl scale` writes the scale subresource; its field manager is kubectl's.
    patch_deployment(&client, &ns, "kubectl", json!({"spec": {"replicas": 3}})).await;
    eventually("replicas back to 1", Duration::from_secs(15), || async {
        let (_, r) = template_and_replicas(&client, &ns).await;
        (r == 1).then_some(())
    })
    .await;
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn kubectl_rollout_restart_of_the_owned_deployment_is_kept() {
    let test = "kubectl_rollout_restart_of_the_owned_deployment_is_kept";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-rollout-restart", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    let at = "2026-12-06T12:00:00Z";
    patch_deployment(
        &client,
        &ns,
        "kubectl-rollout",
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}}),
    )
    .await;
    after_a_reconcile(&client, &ns).await;
    let (template, _) = template_and_replicas(&client, &ns).await;
    dump_on_panic(&ops);
    assert_eq!(
        template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"], at,
        "the rollout restart was reverted: {template:#}"
    );
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn kubectl_edit_of_a_field_the_operator_does_not_set_is_kept_and_of_one_it_sets_is_reverted()
{
    let test =
        "kubectl_edit_of_a_field_the_operator_does_not_set_is_kept_and_of_one_it_sets_is_reverted";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-edit-deployment", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    patch_deployment(
        &client,
        &ns,
        "kubectl-edit",
        json!({
            "metadata": {"labels": {"team": "transit"}},
            "spec": {"minReadySeconds": 7, "template": {"spec": {"containers": [
                {"name": "broadcaster", "image": "hand-edited"}
            ]}}}
        }),
    )
    .await;
    after_a_reconcile(&client, &ns).await;
    let d = api_for(&client, &ns, "Deployment")
        .get("demo")
        .await
        .unwrap();
    dump_on_panic(&ops);
    let containers = d.data["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert!(
        containers.iter().all(|c| c["image"] != "hand-edited"),
        "the image edit was kept: {containers:#?}"
    );
    assert_eq!(d.metadata.labels.unwrap_or_default()["team"], "transit");
    assert_eq!(d.data["spec"]["minReadySeconds"], 7);
    plane.delete_namespace(&ns).await;
}

/// Renders the chart with `values` and applies it (`helm upgrade`).
async fn upgrade_chart(client: &Client, ns: &str, values: &serde_json::Value) {
    let rendered =
        stallwatch_envtest::chart::render(values, RELEASE, ns).expect("the chart renders");
    let (_, refused) = stallwatch_envtest::apply::apply_yaml(client, &rendered, ns, MANAGER).await;
    assert!(refused.is_empty(), "refused: {refused:#?}");
}

/// The names of the chart's operator pods not being deleted.
async fn live_operator_pods(client: &Client, ns: &str) -> Vec<String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/component=operator,app.kubernetes.io/instance={RELEASE}"
    ));
    pods.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

#[tokio::test]
async fn the_chart_upgraded_from_one_replica_to_two_and_back_keeps_streams_reconciled() {
    let test = "the_chart_upgraded_from_one_replica_to_two_and_back_keeps_streams_reconciled";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, mut ops)) = operator_in(plane, "journey-upgrade-replicas", test).await
    else {
        return;
    };
    create_stream(&client, &ns, "one", synthetic()).await;
    all_owned(&client, &ns, "one").await;

    // 1 → 2: the controller manager adds a pod; played, it stands by.
    upgrade_chart(&client, &ns, &namespaced_values(&ns, 2)).await;
    let pods = operator_pods(&client, &ns, 2).await;
    let new = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() != Some(ops[0].pod.name.as_str()))
        .expect("a second operator pod")
        .clone();
    ops.push(run_operator(plane, &client, &new).await);
    eventually("the new replica stands by", Duration::from_secs(30), || {
        let standing = ops[1]
            .log()
            .contains("standing by: waiting for the leader lease");
        async move { standing.then_some(()) }
    })
    .await;
    create_stream(&client, &ns, "two", synthetic()).await;
    all_owned(&client, &ns, "two").await;

    // 2 → 1: the controller manager deletes one pod; the kubelet would SIGTERM its process.
    upgrade_chart(&client, &ns, &namespaced_values(&ns, 1)).await;
    let kept = eventually("one operator pod left", Duration::from_secs(30), || async {
        let live = live_operator_pods(&client, &ns).await;
        (live.len() == 1).then(|| live[0].clone())
    })
    .await;
    for op in ops.iter_mut().filter(|o| o.pod.name != kept) {
        let exit = sigterm_exit_time(op, Duration::from_secs(15));
        assert!(
            exit.is_some(),
            "the removed replica did not stop on SIGTERM"
        );
    }
    ops.retain(|o| o.pod.name == kept);
    create_stream(&client, &ns, "three", synthetic()).await;
    let back = owned_back(
        &client,
        &ns,
        "three",
        &BTreeMap::new(),
        Duration::from_secs(40),
    )
    .await;
    dump_on_panic(&ops);
    back.unwrap_or_else(|missing| panic!("not reconciled after 2 → 1: {missing:?}"));
    let refused = forbidden(&ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
    plane.delete_namespace(&ns).await;
}

/// `kubectl delete lease stallwatch-operator` while two replicas run, right after the leader
/// renewed it (so the standby's next round comes first). The leader re-creates it; the standby
/// never leads beside it. Was: the standby created the missing Lease and led until the old
/// leader's next renewal found it (two leaders for up to a renew period).
#[tokio::test]
async fn kubectl_delete_of_the_lease_under_its_leader_never_makes_two_leaders() {
    let test = "kubectl_delete_of_the_lease_under_its_leader_never_makes_two_leaders";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("journey-lease-deleted").await;
    let client = plane.admin().await;
    let Some(mut ops) = operator_stack(plane, &client, &ns, 2, test).await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());
    let lease = eventually("a Lease holder", Duration::from_secs(30), || async {
        let l = leases.get_opt(LEASE).await.ok()??;
        l.spec.as_ref()?.holder_identity.as_ref()?;
        Some(l)
    })
    .await;
    let holder = lease
        .spec
        .as_ref()
        .unwrap()
        .holder_identity
        .clone()
        .unwrap();
    ops.sort_by_key(|o| o.pod.name != holder);
    eventually("the standby stands by", Duration::from_secs(30), || {
        let standing = ops[1]
            .log()
            .contains("standing by: waiting for the leader lease");
        async move { standing.then_some(()) }
    })
    .await;
    // Right after a renewal: the leader's next round is a renew period away.
    let before = renewed(&lease);
    let started = std::time::Instant::now();
    loop {
        let now = leases.get(LEASE).await.unwrap();
        if renewed(&now) != before || started.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leases
        .delete(LEASE, &DeleteParams::default())
        .await
        .unwrap();
    // A lease duration (6 s) and a renew period more.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let after = leases.get_opt(LEASE).await.unwrap();
    create_stream(&client, &ns, "after", synthetic()).await;
    all_owned(&client, &ns, "after").await;
    let standby_led = ops[1].log().contains("acquired the leader lease");
    let leader_lost = ops[0].log().contains("lost the leader lease");
    dump_on_panic(&ops);
    assert_eq!(
        after.and_then(|l| l.spec?.holder_identity).as_deref(),
        Some(holder.as_str()),
        "the Lease is not the leader's again"
    );
    assert!(!standby_led, "the standby led beside the leader");
    assert!(!leader_lost, "the leader lost the Lease it held");
    plane.delete_namespace(&ns).await;
}

/// `kubectl label` and `kubectl annotate` (not the opt-out) of a TransitStream: nothing rolls
/// out and no owned object is written (its labels and annotations are not copied anywhere).
#[tokio::test]
async fn kubectl_label_and_annotate_of_the_transitstream_roll_nothing_out() {
    let test = "kubectl_label_and_annotate_of_the_transitstream_roll_nothing_out";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-label", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let observed = || async {
        let st = api.get("demo").await.ok()?.status?;
        st.observed_generation
    };
    eventually("the status observed", Duration::from_secs(30), observed).await;
    // Settled: the operator has written what it writes after the first rollout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = deployments.get("demo").await.unwrap().metadata;
    api.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {
            "labels": {"team": "dispatch"},
            "annotations": {"example.com/owner": "ops"},
        }})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = deployments.get("demo").await.unwrap().metadata;
    dump_on_panic(&ops);
    assert_eq!(after.generation, before.generation, "the Deployment rolled");
    assert_eq!(
        after.resource_version, before.resource_version,
        "the Deployment was written"
    );
    plane.delete_namespace(&ns).await;
}

/// `kubectl patch ts demo --subresource=status` by hand (a wrong phase, the conditions
/// dropped): the operator writes its own status back within seconds.
#[tokio::test]
async fn a_hand_patched_status_is_written_back() {
    let test = "a_hand_patched_status_is_written_back";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-status-patch", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let phase = || async {
        let st = serde_json::to_value(api.get("demo").await.ok()?.status?).ok()?;
        let n = st["conditions"].as_array().map_or(0, Vec::len);
        Some((st["phase"].as_str()?.to_string(), n))
    };
    let (was, conditions) = eventually("a phase", Duration::from_secs(30), phase).await;
    api.patch_status(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Stalled", "conditions": []}})),
    )
    .await
    .unwrap();
    let back = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some((p, n)) = phase().await
                && p != "Stalled"
                && n >= conditions
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let now = phase().await;
    dump_on_panic(&ops);
    assert!(
        back.is_ok(),
        "the hand-patched status stayed: {now:?} (was {was:?} with {conditions} conditions)"
    );
    plane.delete_namespace(&ns).await;
}

/// `kubectl delete secret demo-sidecar-admin` while the stream runs: the Secret comes back
/// with the same token. The running sidecars read it once, at start; a new token would
/// answer 401 to every dump and soft restart until the pods restart. Was: a new token.
#[tokio::test]
async fn kubectl_delete_of_the_admin_token_secret_brings_the_same_token_back() {
    let test = "kubectl_delete_of_the_admin_token_secret_brings_the_same_token_back";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = operator_in(plane, "journey-token-deleted", test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", synthetic()).await;
    all_owned(&client, &ns, "demo").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = "demo-sidecar-admin";
    let before = secrets.get(name).await.unwrap();
    secrets
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let uid = before.metadata.uid.clone();
    let after = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Some(s)) = secrets.get_opt(name).await
                && s.metadata.uid != uid
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    dump_on_panic(&ops);
    let after = after.expect("the admin token Secret did not come back within 20 s");
    assert!(
        after.data.as_ref().and_then(|d| d.get("token")).is_some(),
        "no token in {:?}",
        after.data.as_ref().map(|d| d.keys().collect::<Vec<_>>())
    );
    assert!(
        after.data.as_ref().and_then(|d| d.get("token"))
            == before.data.as_ref().and_then(|d| d.get("token")),
        "the re-created Secret holds a new token: the running sidecars would answer 401"
    );
    plane.delete_namespace(&ns).await;
}
