//! The API server restarted under a running operator, etcd kept (issue 21): the watches
//! resume (a new TransitStream is reconciled, a deleted owned object repaired) and nothing is
//! done twice (the objects applied before are not written again). Its own test binary and a
//! control plane of its own: the restart would disturb every other test.

mod envtest_support;
mod journey_support;

use std::collections::BTreeMap;
use std::time::Duration;

use envtest_support::*;
use journey_support::*;
use kube::Client;
use kube::api::DeleteParams;
use serde_json::json;
use stallwatch_envtest::{ControlPlane, Timer, assets};

/// `(kind, resourceVersion)` of each owned object of `name`.
async fn versions(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for (kind, object) in owned(name) {
        if let Ok(Some(o)) = api_for(client, ns, kind).get_opt(&object).await {
            out.insert(kind, o.metadata.resource_version.unwrap_or_default());
        }
    }
    out
}

#[tokio::test]
async fn the_api_server_restarted_under_the_operator_watches_resume_and_nothing_is_done_twice() {
    let test =
        "the_api_server_restarted_under_the_operator_watches_resume_and_nothing_is_done_twice";
    let bin = match assets::find() {
        Ok(bin) => bin,
        Err(why) => {
            stallwatch_envtest::say(&format!("skipped {test}: real-API-server test, {why}"));
            return;
        }
    };
    let _t = Timer::new(test);
    let mut plane = ControlPlane::start(&bin).await.expect("a control plane");
    let ns = plane.namespace("journey-apiserver-restart").await;
    let client = plane.admin().await;
    // A lease longer than the outage: a leader that cannot renew for a whole lease duration
    // steps down and exits by design (restarted by the kubelet as a clean follower).
    let mut values = namespaced_values(&ns, 1);
    values["leaderElection"]["leaseDuration"] = json!("30s");
    let Some(ops) = stack_with(&plane, &client, &ns, &values, &[], test).await else {
        return;
    };
    create_stream(&client, &ns, "demo", json!({"source": {"synthetic": {}}})).await;
    all_owned(&client, &ns, "demo").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = versions(&client, &ns, "demo").await;

    let away = plane
        .restart_apiserver(Duration::from_secs(3))
        .await
        .expect("the API server back");
    println!("API server restarted: away {away:.1?}");
    let client = plane.admin().await;
    // The watches resumed: a new TransitStream is reconciled, a deleted object repaired.
    let back_at = std::time::Instant::now();
    create_stream(&client, &ns, "after", json!({"source": {"synthetic": {}}})).await;
    let reconciled = owned_back(
        &client,
        &ns,
        "after",
        &BTreeMap::new(),
        Duration::from_secs(60),
    )
    .await;
    println!(
        "a TransitStream created once the API server was back: reconciled in {:.1?}",
        back_at.elapsed()
    );
    let service_uid = owned_now(&client, &ns, "demo").await["Service"].clone();
    api_for(&client, &ns, "Service")
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    let mut not = BTreeMap::new();
    not.insert("Service", service_uid);
    let repaired = owned_back(&client, &ns, "demo", &not, Duration::from_secs(30)).await;
    let after = versions(&client, &ns, "demo").await;
    let healthy = probe(&ops[0], "/healthz").await;
    dump_on_panic(&ops);
    reconciled.unwrap_or_else(|m| panic!("not reconciled after the restart: {m:?}"));
    repaired.unwrap_or_else(|m| panic!("not repaired after the restart: {m:?}"));
    assert_eq!(healthy, 200);
    // Nothing applied again: every object but the Deployment (whose status the controller
    // manager writes) and the Service (deleted above) has the version it had.
    for kind in [
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ] {
        assert_eq!(
            before.get(kind),
            after.get(kind),
            "{kind} was written again"
        );
    }
    plane.delete_namespace(&ns).await;
}
