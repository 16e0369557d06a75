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
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

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
    let owned_by_new = eventually(
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
    let _ = owned_by_new;
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
