//! Findings of issue 20 (a user's first run on a real node) held on the real API server: the
//! operator installed by its chart in namespaced mode and run as the chart's ServiceAccount,
//! as in `real_api.rs`. Skipped, with one line saying how to get the binaries, where they are
//! missing.

mod envtest_support;

use std::time::Duration;

use envtest_support::*;
use kube::Api;
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

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
