//! The user's journeys in real containers on a real node (`stallwatch_envtest::node`): the
//! chart installed with Helm's own library and the images built by
//! `scripts/build-images.py`, `kubectl apply` of the examples, a real subscriber through the
//! Service. One node for the whole binary; the journeys run one at a time.
//!
//! Without a node here (not root, no containerd, no images, ...) each test prints one
//! `skipped` line and passes; with `STALLWATCH_REQUIRE_TEST_TOOLS=1` it fails.

#[path = "node/support.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use stallwatch_envtest::node::Node;
use stallwatch_envtest::{Timer, apply, assets, eventually};
use support::*;

fn example(name: &str) -> String {
    let path = assets::workspace_root().join("examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `helm install` with the local images: the operator pod Running and Ready as uid 65532 with
/// a read-only root filesystem, holding the Lease.
#[tokio::test]
async fn helm_install_runs_the_operator_as_nonroot_on_a_read_only_root_holding_the_lease() {
    let test = "helm_install_runs_the_operator_as_nonroot_on_a_read_only_root_holding_the_lease";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let admin = node.plane().admin().await;
    let pod = ready_pod(
        &admin,
        OPERATOR_NS,
        "app.kubernetes.io/name=stallwatch",
        Duration::from_secs(60),
    )
    .await;
    let name = pod.metadata.name.clone().expect("a name");
    assert!(all_containers_ready(&pod), "{:?}", pod.status);
    let pid = container_pid(node, &pod, "operator");
    assert_eq!(uids(pid), (65532, 65532), "the operator's uids");
    assert!(
        root_read_only(pid),
        "the operator's root filesystem is writable"
    );
    let leases: Api<Lease> = Api::namespaced(admin, OPERATOR_NS);
    let holder = eventually(
        "the operator holding its Lease",
        Duration::from_secs(30),
        || async {
            let lease = leases.get_opt("stallwatch-operator").await.ok().flatten()?;
            lease.spec?.holder_identity
        },
    )
    .await;
    assert_eq!(holder, name, "the Lease's holder");
    stallwatch_envtest::say(&format!(
        "envtest node rss: operator {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0
    ));
}

/// `kubectl apply -f examples/minimal-synthetic.yaml`: the stream's pod Running with both
/// containers Ready and the readiness gate True, and a real subscriber gets updates through
/// the Service.
#[tokio::test]
async fn apply_minimal_synthetic_serves_a_subscriber_through_the_service() {
    let test = "apply_minimal_synthetic_serves_a_subscriber_through_the_service";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-minimal").await;
    let admin = node.plane().admin().await;
    let start = Instant::now();
    let (_, refused) =
        apply::apply_yaml(&admin, &example("minimal-synthetic.yaml"), &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let pod: Pod = ready_pod(
        &admin,
        &ns,
        "stallwatch.io/transitstream=demo",
        Duration::from_secs(120),
    )
    .await;
    node.record("kubectl apply to stream pod Ready", start.elapsed());
    assert!(all_containers_ready(&pod), "{:?}", pod.status);
    assert_eq!(
        condition(&pod, "stallwatch.io/DispatchHealthy"),
        Some("True"),
        "the readiness gate"
    );
    for container in ["broadcaster", "sidecar"] {
        let pid = container_pid(node, &pod, container);
        assert_eq!(uids(pid), (65532, 65532), "{container}'s uids");
        assert!(
            root_read_only(pid),
            "{container}'s root filesystem is writable"
        );
    }
    let ip = cluster_ip(&admin, &ns, "demo").await;
    let updates = subscribe(&format!("http://{ip}:50051"), 3, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", node.tails(20)));
    assert!(updates.iter().all(|u| u["stream"] == "all"), "{updates:?}");
    node.plane().delete_namespace(&ns).await;
}
