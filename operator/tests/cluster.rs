//! Tests against a real cluster. Ignored by default; run them with a kubeconfig that may
//! create CRDs and namespaces:
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test -p transit-operator --test cluster -- --ignored --test-threads=1
//! ```
//!
//! Each test works in a fresh namespace (`stallwatch-test-<n>`) and deletes it at the end.
//! `STALLWATCH_IMAGE` sets the image for the workload (pods need not become ready: the tests
//! patch the pod condition the sidecar would write).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use prometheus_client::registry::Registry;
use serde_json::json;
use stallwatch_crds::TransitStream;
use transit_operator::metrics::Metrics;
use transit_operator::reconcile::{Context, Settings, system_clock};
use transit_operator::run::{Scope, run_controller};
use transit_operator::sidecar::HttpSidecar;

async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a cluster from KUBECONFIG (or in-cluster config)")
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "transitstreams.stallwatch.io",
        &PatchParams::apply("stallwatch-tests").force(),
        &Patch::Apply(TransitStream::crd()),
    )
    .await
    .expect("applying the CRD");
    // Wait until it is served.
    let api: Api<TransitStream> = Api::all(client.clone());
    let start = Instant::now();
    while api.list(&ListParams::default().limit(1)).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "CRD not established"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn namespace(client: &Client) -> String {
    let name = format!("stallwatch-test-{}", std::process::id());
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let _ = api.create(&PostParams::default(), &ns).await;
    name
}

async fn cleanup(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(ns, &DeleteParams::default()).await;
}

fn resource(name: &str, spec: serde_json::Value) -> TransitStream {
    serde_json::from_value(json!({
        "apiVersion": "stallwatch.io/v1alpha1", "kind": "TransitStream",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn the_api_server_accepts_the_crd_and_refuses_bad_resources_with_clear_messages() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client).await;
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let created = api
        .create(
            &PostParams::default(),
            &resource("ok", json!({"source": {"synthetic": {}}})),
        )
        .await
        .expect("a minimal resource is accepted");
    // Defaults come from the schema.
    assert_eq!(created.spec.channel_capacity, 5);
    assert_eq!(created.spec.streams[0].name, "all");
    for (name, spec, message) in [
        (
            "two-sources",
            json!({"source": {"synthetic": {}, "nats": {"url": "nats://n:4222/x"}}}),
            "exactly one of synthetic, nats, http or file",
        ),
        (
            "no-source",
            json!({"source": {}}),
            "exactly one of synthetic, nats, http or file",
        ),
        (
            "creds",
            json!({"source": {"nats": {"url": "nats://u:p@n:4222/x"}}}),
            "must not carry credentials",
        ),
        (
            "dup",
            json!({"source": {"synthetic": {}}, "streams": [{"name": "a"}, {"name": "a"}]}),
            "Duplicate value",
        ),
        (
            "bad-name",
            json!({"source": {"synthetic": {}}, "streams": [{"name": "Not_A_Label"}]}),
            "should match",
        ),
        (
            "bad-mode",
            json!({"source": {"synthetic": {}}, "remediation": {"mode": "Reboot"}}),
            "Unsupported value",
        ),
        (
            "full-no-volume",
            json!({"source": {"synthetic": {}}, "dumps": {"processDump": "Full"}}),
            "processDump Full needs a persistent volume",
        ),
        (
            "two-volumes",
            json!({"source": {"synthetic": {}}, "dumps": {"volume": {"existingClaim": "x", "template": {"size": "1Gi"}}}}),
            "exactly one of existingClaim or template",
        ),
        (
            "budget",
            json!({"source": {"synthetic": {}}, "remediation": {"budgetPerHour": 100}}),
            "less than or equal to 10",
        ),
    ] {
        let err = api
            .create(&PostParams::default(), &resource(name, spec))
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(text.contains(message), "{name}: {text}");
    }
    cleanup(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn the_operator_deploys_the_workload_and_reacts_to_a_stall_condition() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client).await;
    let image = std::env::var("STALLWATCH_IMAGE").unwrap_or_else(|_| "stallwatch:latest".into());
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (ready_tx, _ready_rx) = tokio::sync::watch::channel(false);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let ctl_client = client.clone();
    let controller = tokio::spawn(run_controller(
        client.clone(),
        Scope::Namespace(ns.clone()),
        move |pods, streams| {
            Arc::new(Context::new(
                ctl_client,
                Settings {
                    default_image: image,
                    ..Settings::default()
                },
                pods,
                streams,
                Arc::new(HttpSidecar::new()),
                metrics,
                system_clock(),
            ))
        },
        ready_tx,
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource(
            "demo",
            json!({"source": {"synthetic": {}}, "remediation": {"mode": "Observe"}}),
        ),
    )
    .await
    .unwrap();
    // The Deployment appears, owned by the TransitStream.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    let dep = loop {
        if let Some(d) = deployments.get_opt("demo").await.unwrap() {
            break d;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no Deployment");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        dep.metadata.owner_references.unwrap()[0].kind,
        "TransitStream"
    );
    // A pod object exists (it need not run); write the stall condition the sidecar would.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = loop {
        if let Some(p) = pods
            .list(&ListParams::default().labels("stallwatch.io/transitstream=demo"))
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
        {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no pod");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = pod.metadata.name.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    pods.patch_status(
        &name,
        &PatchParams::apply("stallwatch-tests"),
        &Patch::Strategic(json!({"status": {"conditions": [{
            "type": "stallwatch.io/DispatchHealthy", "status": "False", "reason": "DispatcherDead",
            "message": "stream all: DispatcherDead, 5/5 waiting, never dequeued",
            "lastTransitionTime": now
        }]}})),
    )
    .await
    .unwrap();
    let patched = Instant::now();
    // Observe mode: one record, through the watch.
    loop {
        let ts = api.get("demo").await.unwrap();
        if let Some(a) = ts
            .status
            .as_ref()
            .and_then(|s| s.remediation.history.first())
        {
            assert!(a.observe_only);
            assert_eq!(a.pod, name);
            println!(
                "stall condition to first recorded action: {:?}",
                patched.elapsed()
            );
            break;
        }
        assert!(
            patched.elapsed() < Duration::from_secs(10),
            "no remediation record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    let _ = controller.await;
    cleanup(&client, &ns).await;
}
