//! The TransitStream CRD deleted and created again under a running operator (issue 21): it
//! must recover without a restart. Its own test binary, so its own control plane: deleting the
//! CRD deletes every TransitStream of the cluster, the other tests' too.

mod envtest_support;
mod journey_support;

use std::time::Duration;

use envtest_support::*;
use journey_support::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, apply, chart, eventually};

#[tokio::test]
async fn the_crd_deleted_and_created_again_is_recovered_from_without_a_restart() {
    let test = "the_crd_deleted_and_created_again_is_recovered_from_without_a_restart";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("journey-crd").await;
    let client = plane.admin().await;
    let Some(mut ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    create_stream(&client, &ns, "before", json!({"source": {"synthetic": {}}})).await;
    all_owned(&client, &ns, "before").await;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("transitstreams.stallwatch.io", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the CRD gone", Duration::from_secs(60), || async {
        crds.get_opt("transitstreams.stallwatch.io")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // Some time without the CRD: the operator's watches fail and retry.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, refused) = apply::apply_yaml(&client, &chart::crds(), &ns, MANAGER).await;
    assert!(refused.is_empty(), "{refused:?}");
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    eventually(
        "TransitStreams served again",
        Duration::from_secs(30),
        || async { api.list(&ListParams::default().limit(1)).await.ok() },
    )
    .await;
    create_stream(&client, &ns, "after", json!({"source": {"synthetic": {}}})).await;
    let back = owned_back(
        &client,
        &ns,
        "after",
        &Default::default(),
        Duration::from_secs(90),
    )
    .await;
    let alive = ops[0].pod.proc_mut("operator").alive();
    dump_on_panic(&ops);
    assert!(alive, "the operator exited");
    back.unwrap_or_else(|missing| panic!("not reconciled after the CRD came back: {missing:?}"));
    println!("CRD re-created: the new TransitStream reconciled by the same process");
    plane.delete_namespace(&ns).await;
}
