//! The chart upgraded between namespaced and cluster-wide while streams run (issue 21). Its own
//! test binary, so its own control plane: a cluster-wide operator acts on every namespace.
//! `helm upgrade` is played as the chart rendered with the new values, applied server-side,
//! the objects the new render no longer has deleted, and the kubelet's part of the rollout:
//! the new operator pod started, then the old one SIGTERMed.

mod envtest_support;
mod journey_support;

use std::collections::BTreeMap;
use std::time::Duration;

use envtest_support::*;
use journey_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_envtest::{ControlPlane, Timer, apply, chart, eventually};

fn values(ns: &str, namespaced: bool) -> serde_json::Value {
    let mut v = namespaced_values(ns, 1);
    v["namespaced"] = json!(namespaced);
    if !namespaced {
        v["watchNamespace"] = json!("");
    }
    v
}

/// `helm upgrade`: applies the chart rendered with `values` and deletes the RBAC objects the
/// previous render had and this one has not (a Role for a ClusterRole, or back).
async fn upgrade(client: &Client, ns: &str, values: &serde_json::Value) {
    let rendered = chart::render(values, RELEASE, ns).expect("the chart renders");
    let (applied, refused) = apply::apply_yaml(client, &rendered, ns, MANAGER).await;
    assert!(refused.is_empty(), "refused: {refused:#?}");
    for (kind, cluster) in [
        ("Role", false),
        ("RoleBinding", false),
        ("ClusterRole", true),
        ("ClusterRoleBinding", true),
    ] {
        if applied.contains(&format!("{kind}/{RELEASE}")) {
            continue;
        }
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "rbac.authorization.k8s.io",
            "v1",
            kind,
        ));
        let api: Api<DynamicObject> = if cluster {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), ns, &ar)
        };
        let _ = api.delete(RELEASE, &DeleteParams::default()).await;
    }
}

/// The kubelet's part of a rollout: the operator pod that is not `old` started; `old`
/// SIGTERMed once it runs.
async fn roll(plane: &ControlPlane, client: &Client, ns: &str, old: &mut Operator) -> Operator {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/component=operator,app.kubernetes.io/instance={RELEASE}"
    ));
    let new = eventually("the new operator pod", Duration::from_secs(30), || async {
        pods.list(&lp)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.metadata.name.as_deref() != Some(old.pod.name.as_str()))
    })
    .await;
    let new = run_operator(plane, client, &new).await;
    let exit = sigterm_exit_time(old, Duration::from_secs(15));
    assert!(exit.is_some(), "the old replica did not stop on SIGTERM");
    new
}

#[tokio::test]
async fn the_chart_switched_between_namespaced_and_cluster_wide_keeps_streams_reconciled() {
    let test = "the_chart_switched_between_namespaced_and_cluster_wide_keeps_streams_reconciled";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("upgrade-scope").await;
    let other = plane.namespace("upgrade-scope-other").await;
    let client = plane.admin().await;
    let Some(mut ops) = stack_with(plane, &client, &ns, &values(&ns, true), &[], test).await else {
        return;
    };
    let spec = json!({"source": {"synthetic": {}}});
    create_stream(&client, &ns, "a", spec.clone()).await;
    all_owned(&client, &ns, "a").await;

    // Namespaced → cluster-wide: a TransitStream in another namespace is reconciled.
    upgrade(&client, &ns, &values(&ns, false)).await;
    let wide = roll(plane, &client, &ns, &mut ops[0]).await;
    ops = vec![wide];
    create_stream(&client, &other, "b", spec.clone()).await;
    let b = owned_back(
        &client,
        &other,
        "b",
        &BTreeMap::new(),
        Duration::from_secs(60),
    )
    .await;
    let refused_wide = forbidden(&ops);

    // Cluster-wide → namespaced: its own namespace still, the other one no more.
    upgrade(&client, &ns, &values(&ns, true)).await;
    let narrow = roll(plane, &client, &ns, &mut ops[0]).await;
    ops = vec![narrow];
    create_stream(&client, &ns, "c", spec.clone()).await;
    let c = owned_back(&client, &ns, "c", &BTreeMap::new(), Duration::from_secs(60)).await;
    create_stream(&client, &other, "d", spec).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = owned_now(&client, &other, "d").await;
    let refused_narrow = forbidden(&ops);
    dump_on_panic(&ops);
    b.unwrap_or_else(|m| panic!("cluster-wide: b in {other} not reconciled: {m:?}"));
    c.unwrap_or_else(|m| panic!("namespaced again: c not reconciled: {m:?}"));
    assert!(
        d.is_empty(),
        "namespaced again, yet {other}/d reconciled: {d:?}"
    );
    assert!(
        refused_wide.is_empty(),
        "403s cluster-wide: {refused_wide:#?}"
    );
    assert!(
        refused_narrow.is_empty(),
        "403s namespaced: {refused_narrow:#?}"
    );
    assert_eq!(owned_now(&client, &ns, "a").await.len(), owned("a").len());
    plane.delete_namespace(&other).await;
    plane.delete_namespace(&ns).await;
}
