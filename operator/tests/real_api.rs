//! The operator on a real API server (the envtest control plane, `tests/envtest`), installed
//! by its chart in namespaced mode and run as the chart's ServiceAccount from the chart's own
//! Deployment (its pods played locally by the envtest kubelet): the chart applies, owned
//! objects carry owner references and the `transit-operator` field manager, drift is repaired,
//! spec changes roll out, deletion garbage-collects, and the sidecar's RBAC is what it needs.
//! Skipped, with one line saying how to get the binaries, where they are missing.

mod envtest_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use envtest_support::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

/// The owned objects of TransitStream `name`: `(kind, object name)`.
fn owned(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Deployment", name.to_string()),
        ("Service", name.to_string()),
        ("ConfigMap", format!("{name}-config")),
        ("Secret", format!("{name}-sidecar-admin")),
        ("ServiceAccount", format!("{name}-sidecar")),
        ("Role", format!("{name}-sidecar")),
        ("RoleBinding", format!("{name}-sidecar")),
    ]
}

fn api_for(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = match kind {
        "Deployment" => GroupVersionKind::gvk("apps", "v1", kind),
        "Role" | "RoleBinding" => GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
        _ => GroupVersionKind::gvk("", "v1", kind),
    };
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Waits until every owned object of `name` exists; returns their uids by kind.
async fn all_owned(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, String> {
    let mut uids = BTreeMap::new();
    for (kind, object) in owned(name) {
        let api = api_for(client, ns, kind);
        let obj = eventually(
            &format!("{kind}/{object}"),
            Duration::from_secs(30),
            || async { api.get_opt(&object).await.ok().flatten() },
        )
        .await;
        uids.insert(kind, obj.metadata.uid.unwrap_or_default());
    }
    uids
}

/// The namespace, admin client and a running operator with one TransitStream `demo`.
async fn stack(
    plane: &'static ControlPlane,
    ns: &str,
    test: &str,
    spec: serde_json::Value,
) -> Option<(String, Client, Vec<Operator>)> {
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let ops = operator_stack(plane, &client, &ns, 1, test).await?;
    create_stream(&client, &ns, "demo", spec).await;
    Some((ns, client, ops))
}

fn synthetic() -> serde_json::Value {
    json!({"source": {"synthetic": {}}})
}

#[tokio::test]
async fn the_chart_applies_server_side_with_default_values() {
    let test = "the_chart_applies_server_side_with_default_values";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("chart-defaults").await;
    let client = plane.admin().await;
    let Some(applied) = install_chart(&client, &ns, &json!({}), test).await else {
        return;
    };
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(
            applied.iter().any(|a| a.starts_with(&format!("{kind}/"))),
            "no {kind} in {applied:?}"
        );
    }
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn the_chart_applies_server_side_with_namespaced_ha_values() {
    let test = "the_chart_applies_server_side_with_namespaced_ha_values";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("chart-namespaced-ha").await;
    let client = plane.admin().await;
    let Some(applied) = install_chart(&client, &ns, &namespaced_values(&ns, 2), test).await else {
        return;
    };
    for kind in [
        "Role/",
        "RoleBinding/",
        "PodDisruptionBudget/",
        "NetworkPolicy/",
    ] {
        assert!(
            applied.iter().any(|a| a.starts_with(kind)),
            "no {kind} in {applied:?}"
        );
    }
    assert!(
        !applied.iter().any(|a| a.starts_with("ClusterRole")),
        "{applied:?}"
    );
    let dep: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let dep = dep.get(RELEASE).await.unwrap();
    assert_eq!(dep.spec.unwrap().replicas, Some(2));
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn owned_objects_carry_owner_references_and_the_operators_field_manager() {
    let test = "owned_objects_carry_owner_references_and_the_operators_field_manager";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "reconcile-owned", test, synthetic()).await else {
        return;
    };
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let ts_uid = ts.get("demo").await.unwrap().metadata.uid.unwrap();
    all_owned(&client, &ns, "demo").await;
    for (kind, object) in owned("demo") {
        let obj = api_for(&client, &ns, kind).get(&object).await.unwrap();
        let owner = obj.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owner.iter().any(|o| o.kind == "TransitStream"
                && o.uid == ts_uid
                && o.controller == Some(true)),
            "{kind}/{object}: owner references {owner:?}"
        );
        let managers: Vec<(String, String)> = obj
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.manager.unwrap_or_default(),
                    m.operation.unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            managers.contains(&("transit-operator".into(), "Apply".into())),
            "{kind}/{object}: managers {managers:?}"
        );
    }
    // The status is written too.
    eventually(
        "status.observedGeneration",
        Duration::from_secs(20),
        || async { ts.get("demo").await.ok()?.status?.observed_generation },
    )
    .await;
    let refused = forbidden(&ops);
    dump_on_panic(&ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
    plane.delete_namespace(&ns).await;
}

/// Deletes each owned object of `kinds` and reports which did not come back (with a new uid)
/// within `within`.
async fn delete_and_wait(
    client: &Client,
    ns: &str,
    kinds: &[&str],
    within: Duration,
) -> Vec<String> {
    let before = all_owned(client, ns, "demo").await;
    let mut missing = Vec::new();
    for (kind, object) in owned("demo").into_iter().filter(|(k, _)| kinds.contains(k)) {
        let api = api_for(client, ns, kind);
        api.delete(&object, &DeleteParams::default()).await.unwrap();
        let start = Instant::now();
        let back = loop {
            match api.get_opt(&object).await.unwrap() {
                Some(o) if o.metadata.uid.as_deref() != Some(before[kind].as_str()) => break true,
                _ if start.elapsed() > within => break false,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        println!(
            "deleted {kind}/{object}: back={back} after {:.1?}",
            start.elapsed()
        );
        if !back {
            missing.push(format!("{kind}/{object}"));
        }
    }
    missing
}

#[tokio::test]
async fn a_deleted_deployment_is_repaired_within_seconds() {
    let test = "a_deleted_deployment_is_repaired_within_seconds";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "repair-deployment", test, synthetic()).await else {
        return;
    };
    let missing = delete_and_wait(&client, &ns, &["Deployment"], Duration::from_secs(10)).await;
    dump_on_panic(&ops);
    assert!(missing.is_empty(), "not repaired: {missing:?}");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn deleted_owned_objects_of_every_other_kind_are_repaired_within_seconds() {
    let test = "deleted_owned_objects_of_every_other_kind_are_repaired_within_seconds";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "repair-others", test, synthetic()).await else {
        return;
    };
    let kinds = [
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ];
    let missing = delete_and_wait(&client, &ns, &kinds, Duration::from_secs(10)).await;
    dump_on_panic(&ops);
    assert!(missing.is_empty(), "not repaired within 10 s: {missing:?}");
    plane.delete_namespace(&ns).await;
}

/// A hand-edit: `(kind, object, merge patch, whether the operator's value is back)`.
type HandEdit = (
    &'static str,
    String,
    serde_json::Value,
    fn(&DynamicObject) -> bool,
);

/// Hand-edits (another field manager, as `kubectl edit` would) and what the operator must
/// put back: `(kind, object, merge patch, check that the operator's value is back)`.
async fn hand_edit_and_wait(client: &Client, ns: &str, kinds: &[&str]) -> Vec<String> {
    all_owned(client, ns, "demo").await;
    let edits: Vec<HandEdit> = vec![
        (
            "Deployment",
            "demo".into(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "hand-edited"}]}}}}),
            |o| !o.data.to_string().contains("hand-edited"),
        ),
        (
            "ConfigMap",
            "demo-config".into(),
            json!({"data": {"BROADCASTER_CHANNEL_CAPACITY": "99"}}),
            |o| o.data["data"]["BROADCASTER_CHANNEL_CAPACITY"] == "5",
        ),
        (
            "Service",
            "demo".into(),
            json!({"spec": {"selector": {"stallwatch.io/transitstream": "hand-edited"}}}),
            |o| o.data["spec"]["selector"]["stallwatch.io/transitstream"] == "demo",
        ),
        (
            "Role",
            "demo-sidecar".into(),
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            |o| o.data.to_string().contains("pods/status"),
        ),
    ];
    let mut not_repaired = Vec::new();
    for (kind, object, patch, repaired) in edits.into_iter().filter(|e| kinds.contains(&e.0)) {
        let api = api_for(client, ns, kind);
        let pp = PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..PatchParams::default()
        };
        let patch = if kind == "Deployment" {
            Patch::Strategic(patch)
        } else {
            Patch::Merge(patch)
        };
        api.patch(&object, &pp, &patch).await.unwrap();
        let start = Instant::now();
        let back = loop {
            let o = api.get(&object).await.unwrap();
            if repaired(&o) {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "hand-edited {kind}/{object}: repaired={back} after {:.1?}",
            start.elapsed()
        );
        if !back {
            not_repaired.push(format!("{kind}/{object}"));
        }
    }
    not_repaired
}

#[tokio::test]
async fn a_hand_edited_deployment_is_repaired_within_seconds() {
    let test = "a_hand_edited_deployment_is_repaired_within_seconds";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "edit-deployment", test, synthetic()).await else {
        return;
    };
    let left = hand_edit_and_wait(&client, &ns, &["Deployment"]).await;
    dump_on_panic(&ops);
    assert!(left.is_empty(), "not repaired: {left:?}");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn hand_edited_owned_objects_of_every_other_kind_are_repaired_within_seconds() {
    let test = "hand_edited_owned_objects_of_every_other_kind_are_repaired_within_seconds";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "edit-others", test, synthetic()).await else {
        return;
    };
    let left = hand_edit_and_wait(&client, &ns, &["ConfigMap", "Service", "Role"]).await;
    dump_on_panic(&ops);
    assert!(left.is_empty(), "not repaired within 10 s: {left:?}");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_spec_change_rolls_out() {
    let test = "a_spec_change_rolls_out";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "rollout", test, synthetic()).await else {
        return;
    };
    all_owned(&client, &ns, "demo").await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    eventually("the first ReplicaSet", Duration::from_secs(30), || async {
        let n = sets.list(&ListParams::default()).await.ok()?.items.len();
        (n >= 1).then_some(())
    })
    .await;
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    ts.patch(
        "demo",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"channelCapacity": 7}})),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the ConfigMap carries the new capacity",
        Duration::from_secs(15),
        || async {
            let cm = cms.get("demo-config").await.ok()?;
            (cm.data?.get("BROADCASTER_CHANNEL_CAPACITY")? == "7").then_some(())
        },
    )
    .await;
    // A changed pod template (the config hash) is a new ReplicaSet: the rollout.
    eventually("a second ReplicaSet", Duration::from_secs(15), || async {
        let n = sets.list(&ListParams::default()).await.ok()?.items.len();
        (n >= 2).then_some(())
    })
    .await;
    let refused = forbidden(&ops);
    dump_on_panic(&ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn deleting_the_transitstream_garbage_collects_everything() {
    let test = "deleting_the_transitstream_garbage_collects_everything";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "gc", test, synthetic()).await else {
        return;
    };
    all_owned(&client, &ns, "demo").await;
    stream_pods(&client, &ns, "demo", 1).await;
    let ts: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    ts.delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    // The garbage collector learns about new resource types (our CRD) by re-reading discovery
    // every 30 s, and retries owners it cannot map with backoff: on a fresh control plane the
    // first collection can take more than 30 s (measured: up to ~45 s on a loaded machine).
    for (kind, object) in owned("demo") {
        let api = api_for(&client, &ns, kind);
        eventually(
            &format!("{kind}/{object} garbage-collected"),
            Duration::from_secs(120),
            || async { api.get_opt(&object).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the pods garbage-collected",
        Duration::from_secs(30),
        || async {
            let lp = ListParams::default().labels("stallwatch.io/transitstream=demo");
            pods.list(&lp).await.ok()?.items.is_empty().then_some(())
        },
    )
    .await;
    dump_on_panic(&ops);
    plane.delete_namespace(&ns).await;
}

fn pod_event(ns: &str, pod: &Pod) -> Event {
    serde_json::from_value(json!({
        "metadata": {"generateName": "sidecar-", "namespace": ns},
        "eventTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        "reportingController": "stallwatch.io/sidecar", "reportingInstance": "test",
        "action": "Stall", "reason": "Stalled", "type": "Warning", "note": "test",
        "regarding": {"kind": "Pod", "namespace": ns, "name": pod.metadata.name,
                      "uid": pod.metadata.uid, "apiVersion": "v1"}
    }))
    .unwrap()
}

fn condition_patch() -> Patch<serde_json::Value> {
    Patch::Strategic(json!({"status": {"conditions": [{
        "type": "stallwatch.io/DispatchHealthy", "status": "True", "reason": "Healthy",
        "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()
    }]}}))
}

#[tokio::test]
async fn the_sidecar_account_patches_its_pod_status_and_creates_events_and_nothing_else() {
    let test = "the_sidecar_account_patches_its_pod_status_and_creates_events_and_nothing_else";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, ops)) = stack(plane, "sidecar-rbac", test, synthetic()).await else {
        return;
    };
    all_owned(&client, &ns, "demo").await;
    let pod = stream_pods(&client, &ns, "demo", 1).await.remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();
    let sidecar = plane.service_account_client(&ns, "demo-sidecar").await;
    let pods: Api<Pod> = Api::namespaced(sidecar.clone(), &ns);
    pods.patch_status(&pod_name, &PatchParams::default(), &condition_patch())
        .await
        .expect("the sidecar may patch its pod's status");
    let events: Api<Event> = Api::namespaced(sidecar.clone(), &ns);
    events
        .create(&PostParams::default(), &pod_event(&ns, &pod))
        .await
        .expect("the sidecar may create Events");
    // Nothing else: not the pod itself, not Secrets, not another namespace's pods.
    let err = pods
        .delete(&pod_name, &DeleteParams::default())
        .await
        .expect_err("the sidecar may not delete pods");
    assert!(err.to_string().contains("forbidden"), "{err}");
    let err = Api::<Secret>::namespaced(sidecar.clone(), &ns)
        .get("demo-sidecar-admin")
        .await
        .expect_err("the sidecar may not read Secrets through the API");
    assert!(err.to_string().contains("forbidden"), "{err}");
    let other = plane.namespace("sidecar-rbac-other").await;
    let other_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "other"}, "spec": {"containers": [{"name": "c", "image": "none"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), &other)
        .create(&PostParams::default(), &other_pod)
        .await
        .unwrap();
    let err = Api::<Pod>::namespaced(sidecar, &other)
        .patch_status("other", &PatchParams::default(), &condition_patch())
        .await
        .expect_err("the sidecar may not patch a pod in another namespace");
    assert!(err.to_string().contains("forbidden"), "{err}");
    let refused = forbidden(&ops);
    dump_on_panic(&ops);
    assert!(refused.is_empty(), "operator 403s: {refused:#?}");
    plane.delete_namespace(&other).await;
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
#[ignore = "known limit: RBAC cannot name a Deployment's pods (generated names), so the sidecar's Role grants pods/status on every pod of its namespace; narrowing it needs an admission policy (open)"]
async fn the_sidecar_account_is_refused_on_another_pod_of_its_namespace() {
    let test = "the_sidecar_account_is_refused_on_another_pod_of_its_namespace";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, _ops)) = stack(plane, "sidecar-rbac-same-ns", test, synthetic()).await
    else {
        return;
    };
    all_owned(&client, &ns, "demo").await;
    let other: Pod = serde_json::from_value(json!({
        "metadata": {"name": "not-the-sidecars"}, "spec": {"containers": [{"name": "c", "image": "none"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let sidecar = plane.service_account_client(&ns, "demo-sidecar").await;
    let result = Api::<Pod>::namespaced(sidecar, &ns)
        .patch_status(
            "not-the-sidecars",
            &PatchParams::default(),
            &condition_patch(),
        )
        .await;
    assert!(result.is_err(), "the sidecar patched another pod's status");
    plane.delete_namespace(&ns).await;
}
