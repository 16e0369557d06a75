//! The user's journeys in real containers on a real node (`stallwatch_envtest::node`): the
//! chart installed with Helm's own library and the images built by
//! `scripts/build-images.py`, `kubectl apply` of the examples, a real subscriber through the
//! Service. One node for the whole binary; the journeys run one at a time.
//!
//! Without a node here (not root, no containerd, no images, ...) each test prints one
//! `skipped` line and passes; with `STALLWATCH_REQUIRE_TEST_TOOLS=1` it fails.

#[path = "node/byo.rs"]
mod byo;
#[path = "node/drift.rs"]
mod drift;
#[path = "node/shutdown.rs"]
mod shutdown;
#[path = "node/story.rs"]
mod story;
#[path = "node/support.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use stallwatch_envtest::node::Node;
use stallwatch_envtest::{Timer, apply, eventually, kubelet, say};
use story::*;
use support::*;

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
    let updates = subscribe_within(&format!("http://{ip}:50051"), 3, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.tails(20)));
    assert!(updates.iter().all(|u| u["stream"] == "all"), "{updates:?}");
    // `kubectl get ts`: every column filled once the stream is Ready.
    let path = format!("/apis/stallwatch.io/v1alpha1/namespaces/{ns}/transitstreams");
    let row = eventually(
        "kubectl get ts with its columns filled",
        Duration::from_secs(30),
        || async {
            let (columns, cells) = table(&admin, &path).await;
            let col = |n: &str| {
                columns
                    .iter()
                    .position(|c| c == n)
                    .and_then(|i| cells.get(i).cloned())
            };
            (col("Phase")? == "Running" && col("Ready")? == 1 && col("Streams")? == 1)
                .then_some((columns.clone(), cells.clone()))
        },
    )
    .await;
    say(&format!("envtest node: kubectl get ts: {row:?}"));
    // Steady state: a few report intervals after Ready.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let memory = print_memory(&admin, &ns).await;
    for container in ["broadcaster", "sidecar"] {
        let pid = container_pid(node, &pod, container);
        say(&format!(
            "envtest node rss: {container} {:.1} MiB (VmRSS of its process)",
            rss_kib(pid) as f64 / 1024.0
        ));
    }
    assert!(
        memory.iter().any(|(_, c, _, _)| c == "sidecar"),
        "the kubelet reports no sidecar container: {memory:?}"
    );
    node.plane().delete_namespace(&ns).await;
}

/// The story in real containers, rehearsed as a user would with a drill (`spec.allowDrills`
/// and the `stallwatch.io/drill` annotation: the broadcaster's dispatcher dies in its
/// container, as the story's poison killed it) → the pod condition and
/// Events → one dump bundle on a hostPath PersistentVolume owned by 65532, which
/// `transit-sidecar inspect` reads → exactly one pod deletion → the ReplicaSet's replacement
/// Ready → a subscriber gets updates again → the TransitStream's status and Events.
#[tokio::test]
async fn the_story_stall_dump_on_a_hostpath_volume_one_restart_and_updates_resume() {
    let test = "the_story_stall_dump_on_a_hostpath_volume_one_restart_and_updates_resume";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-story").await;
    let admin = node.plane().admin().await;
    let dir = dump_dir(node, "journey-story-dumps");
    let (_, refused) = apply::apply_yaml(
        &admin,
        &hostpath_volume(&dir, &ns, "story-dumps"),
        &ns,
        "kubectl",
    )
    .await;
    assert!(refused.is_empty(), "{refused:?}");
    let ts = format!(
        "apiVersion: stallwatch.io/v1alpha1\nkind: TransitStream\nmetadata:\n  name: story\n\
         spec:\n  source:\n    synthetic: {{}}\n  image: {}\n  allowDrills: true\n  dumps:\n    \
         volume:\n      existingClaim: story-dumps\n",
        node.image("stallwatch").reference
    );
    let (_, refused) = apply::apply_yaml(&admin, &ts, &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let selector = "stallwatch.io/transitstream=story";
    let first = ready_pod(&admin, &ns, selector, Duration::from_secs(120)).await;
    let first_name = first.metadata.name.clone().expect("a name");
    let ip = cluster_ip(&admin, &ns, "story").await;
    let grpc = format!("http://{ip}:50051");
    subscribe_within(&grpc, 2, Duration::from_secs(15))
        .await
        .expect("updates before the stall");

    // The drill: one annotation, what a user types (`kubectl annotate ts story
    // stallwatch.io/drill=`, the first stream).
    let streams: Api<kube::api::DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &ns,
        &kube::api::ApiResource {
            group: "stallwatch.io".into(),
            version: "v1alpha1".into(),
            api_version: "stallwatch.io/v1alpha1".into(),
            kind: "TransitStream".into(),
            plural: "transitstreams".into(),
        },
    );
    streams
        .patch(
            "story",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"stallwatch.io/drill": ""}}
            })),
        )
        .await
        .expect("annotating the TransitStream for a drill");
    let fault_at = std::time::SystemTime::now();
    let since_fault = || {
        std::time::SystemTime::now()
            .duration_since(fault_at)
            .unwrap_or_default()
    };
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let mut seen = PodsSeen::default();
    let (mut condition_after, mut bundle_after, mut deleted_after) = (None, None, None);
    let replacement = loop {
        let list = seen.poll(&pods, selector).await;
        if condition_after.is_none()
            && list.iter().any(|p| {
                p.metadata.name.as_deref() == Some(&first_name)
                    && condition(p, "stallwatch.io/DispatchHealthy") == Some("False")
            })
        {
            condition_after = Some(since_fault());
        }
        if bundle_after.is_none() && !bundles(&dir).is_empty() {
            bundle_after = Some(since_fault());
        }
        if deleted_after.is_none() && seen.gone.contains(&first_name) {
            deleted_after = Some(since_fault());
        }
        if let Some(p) = list.into_iter().find(|p| {
            p.metadata.name.as_deref() != Some(&first_name)
                && p.metadata.deletion_timestamp.is_none()
                && condition(p, "Ready") == Some("True")
        }) {
            break p;
        }
        assert!(
            since_fault() < Duration::from_secs(120),
            "no Ready replacement 120 s after the stall; seen {seen:?}, condition after \
             {condition_after:?}, bundle after {bundle_after:?}\n{}",
            node.tails(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let replacement_after = since_fault();
    // The Service follows the replacement once kube-proxy has its endpoint; a user's client
    // reconnects until then.
    let updates = subscribe_within(&grpc, 2, Duration::from_secs(30)).await;
    let updates_after = since_fault();
    assert!(
        updates.is_ok(),
        "no updates 30 s after the replacement was Ready: {updates:?}"
    );
    for (what, took) in [
        ("stall to pod condition False", condition_after),
        ("stall to bundle on the volume", bundle_after),
        ("stall to pod deleted", deleted_after),
        ("stall to replacement Ready", Some(replacement_after)),
        ("stall to updates flowing again", Some(updates_after)),
    ] {
        node.record(what, took.unwrap_or_else(|| panic!("never seen: {what}")));
    }

    // Exactly one pod deleted; the replacement is the ReplicaSet's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    seen.poll(&pods, selector).await;
    assert_eq!(
        seen.gone.iter().collect::<Vec<_>>(),
        [&first_name],
        "{seen:?}"
    );
    let owners = replacement
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert!(owners.iter().any(|o| o.kind == "ReplicaSet"), "{owners:?}");
    assert!(
        all_containers_ready(&replacement),
        "{:?}",
        replacement.status
    );

    // One bundle, written by the sidecar's user, that `transit-sidecar inspect` reads.
    let found = bundles(&dir);
    assert_eq!(found.len(), 1, "bundles: {found:?}");
    let manifest = found[0].join("manifest.json");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&manifest).unwrap());
    assert_eq!(
        owner,
        65532,
        "{} is owned by uid {owner}",
        manifest.display()
    );
    let inspect = std::process::Command::new(kubelet::bin_dir().join("transit-sidecar"))
        .arg("inspect")
        .arg(&found[0])
        .output()
        .expect("transit-sidecar inspect");
    assert!(
        inspect.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    say(&format!(
        "envtest node: inspect {}:\n{}",
        found[0].display(),
        String::from_utf8_lossy(&inspect.stdout)
    ));

    // The TransitStream's status and Events, and the pod's Events.
    let status = eventually("the history entry", Duration::from_secs(30), || async {
        let ts = apply::get_json(
            &admin,
            "stallwatch.io/v1alpha1",
            "TransitStream",
            &ns,
            "story",
        )
        .await?;
        let history = ts["status"]["remediation"]["history"].as_array()?.clone();
        (history.len() == 1 && history[0]["restart"] == "Succeeded").then_some(ts["status"].clone())
    })
    .await;
    let history = &status["remediation"]["history"][0];
    assert_eq!(history["pod"], first_name.as_str(), "{history:#}");
    assert_eq!(history["dump"], "Succeeded", "{history:#}");
    assert!(status["stalls"].as_i64().unwrap_or(0) >= 1, "{status:#}");
    assert_eq!(status["lastDrill"]["outcome"], "Started", "{status:#}");
    assert_eq!(history["reason"], "DispatcherDead", "{history:#}");
    let ts_events = events(&admin, &ns, "TransitStream", "story").await;
    assert!(ts_events.len() >= 3, "TransitStream Events: {ts_events:?}");
    let pod_events = events(&admin, &ns, "Pod", &first_name).await;
    let kubelet_reasons = ["Scheduled", "Pulled", "Created", "Started", "Killing"];
    assert!(
        pod_events
            .iter()
            .any(|(r, _)| !kubelet_reasons.contains(&r.as_str())),
        "no Stallwatch Event on the stalled pod: {pod_events:?}"
    );
    say(&format!(
        "envtest node: story Events {ts_events:?} / pod {pod_events:?}"
    ));
    node.plane().delete_namespace(&ns).await;
}

/// `helm upgrade` with changed values rolls the operator to a new pod that runs with them,
/// is Ready and takes the Lease.
#[tokio::test]
async fn helm_upgrade_rolls_the_operator_with_the_new_values() {
    let test = "helm_upgrade_rolls_the_operator_with_the_new_values";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let admin = node.plane().admin().await;
    let selector = "app.kubernetes.io/name=stallwatch,app.kubernetes.io/component=operator";
    let before = ready_pod(&admin, OPERATOR_NS, selector, Duration::from_secs(60)).await;
    let mut values = values(node);
    values["maxConcurrentRemediations"] = 3.into();
    let start = Instant::now();
    let release = stallwatch_envtest::helm::upgrade(
        node.plane().admin_kubeconfig(),
        OPERATOR_NS,
        RELEASE,
        &values,
        180,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node.tails(20)));
    assert_eq!(release["status"].as_str(), Some("deployed"), "{release}");
    let after = eventually(
        "a new Ready operator pod",
        Duration::from_secs(90),
        || async {
            let pod = ready_pod(&admin, OPERATOR_NS, selector, Duration::from_secs(5)).await;
            (pod.metadata.name != before.metadata.name).then_some(pod)
        },
    )
    .await;
    node.record("helm upgrade to the new operator Ready", start.elapsed());
    let env = after.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "MAX_CONCURRENT_REMEDIATIONS" && e.value.as_deref() == Some("3")),
        "{env:?}"
    );
    let name = after.metadata.name.clone().unwrap();
    let leases: Api<Lease> = Api::namespaced(admin, OPERATOR_NS);
    eventually(
        "the new pod holding the Lease",
        Duration::from_secs(60),
        || async {
            let lease = leases.get_opt("stallwatch-operator").await.ok().flatten()?;
            (lease.spec?.holder_identity? == name).then_some(())
        },
    )
    .await;
}

/// What a user does to remove Stallwatch: delete the TransitStreams, `helm uninstall`, delete
/// the CRD (Helm never deletes `crds/`). The chart's objects and every stream's objects are
/// gone.
#[tokio::test]
async fn helm_uninstall_removes_the_chart_and_the_streams() {
    let test = "helm_uninstall_removes_the_chart_and_the_streams";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let admin = node.plane().admin().await;
    let ns = node.plane().namespace("journey-uninstall").await;
    let (_, refused) =
        apply::apply_yaml(&admin, &example("minimal-synthetic.yaml"), &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    ready_pod(
        &admin,
        &ns,
        "stallwatch.io/transitstream=demo",
        Duration::from_secs(120),
    )
    .await;
    let leftovers = uninstall_everything(node, &[&ns]).await;
    assert!(leftovers.is_empty(), "left after uninstall: {leftovers:#?}");
    node.plane().delete_namespace(&ns).await;
}

/// Finding 9 of issue 20: the webhook's TLS Secret and the Lease stay after uninstall.
#[tokio::test]
async fn helm_uninstall_leaves_no_secret_or_lease_of_ours() {
    let test = "helm_uninstall_leaves_no_secret_or_lease_of_ours";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    uninstall_everything(node, &[]).await;
    let admin = node.plane().admin().await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(admin.clone(), OPERATOR_NS);
    let leases: Api<Lease> = Api::namespaced(admin, OPERATOR_NS);
    let secret = secrets.get_opt("stallwatch-webhook-tls").await.unwrap();
    let lease = leases.get_opt("stallwatch-operator").await.unwrap();
    assert!(
        secret.is_none() && lease.is_none(),
        "left: Secret {:?}, Lease {:?}",
        secret.map(|s| s.metadata.name),
        lease.map(|l| l.metadata.name)
    );
}

/// Bring your own broadcaster as `examples/workload-ref.yaml` shows it, with `fsGroup: 65532`
/// added to the pod (the workaround for finding 1): the Python service injected through the
/// API server, its dispatcher killed by a poison message, dumped, the pod replaced (injected
/// again), updates again.
#[tokio::test]
async fn bring_your_own_python_broadcaster_is_injected_dumped_and_restarted() {
    let test = "bring_your_own_python_broadcaster_is_injected_dumped_and_restarted";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-byo").await;
    let status = byo::byo_story(node, &ns, true).await;
    let history = &status["remediation"]["history"][0];
    assert_eq!(history["dump"], "Succeeded", "{history:#}");
    node.plane().delete_namespace(&ns).await;
}

/// Finding 1 of issue 20: without `fsGroup` (as the example ships) the injected sidecar
/// cannot read its admin token and every dump fails with 401.
#[tokio::test]
async fn bring_your_own_as_shipped_dumps_without_fs_group() {
    let test = "bring_your_own_as_shipped_dumps_without_fs_group";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-byo-shipped").await;
    let status = byo::byo_story(node, &ns, false).await;
    let history = &status["remediation"]["history"][0];
    assert_eq!(history["dump"], "Succeeded", "{history:#}");
    node.plane().delete_namespace(&ns).await;
}

/// A TransitStream with `dumps.processDump: mode` on a hostPath volume owned by 65532, whose
/// dispatcher hangs 20 s after start (`image`: a drill image); returns the history entry and
/// the bundle's files.
async fn process_dump_story(
    node: &Node,
    name: &str,
    mode: &str,
    image: &str,
) -> (serde_json::Value, Vec<String>) {
    ensure_installed(node).await;
    let ns = node.plane().namespace(&format!("journey-{name}")).await;
    let admin = node.plane().admin().await;
    let dir = dump_dir(node, &format!("journey-{name}-dumps"));
    let (_, refused) =
        apply::apply_yaml(&admin, &hostpath_volume(&dir, &ns, "dumps"), &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    // A process dump of the debug binaries these images hold (a core of ~100 MiB through gcore
    // on a busy 2-core machine) takes longer than the default 10 s dump timeout.
    let ts = format!(
        "apiVersion: stallwatch.io/v1alpha1\nkind: TransitStream\nmetadata:\n  name: {name}\n\
         spec:\n  source:\n    synthetic: {{}}\n  image: {image}\n  dumps:\n    processDump: {mode}\n    \
         volume:\n      existingClaim: dumps\n  remediation:\n    dumpTimeout: 90s\n"
    );
    let (_, refused) = apply::apply_yaml(&admin, &ts, &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let entry = eventually(
        "a finished remediation",
        Duration::from_secs(150),
        || async {
            let ts = apply::get_json(&admin, "stallwatch.io/v1alpha1", "TransitStream", &ns, name)
                .await?;
            let history = ts["status"]["remediation"]["history"].as_array()?.clone();
            history.first().filter(|h| h["step"] == "Done").cloned()
        },
    )
    .await;
    let files: Vec<String> = bundles(&dir)
        .iter()
        .flat_map(|b| std::fs::read_dir(b).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    say(&format!(
        "envtest node: processDump {mode}: {entry:#} files {files:?}"
    ));
    node.plane().delete_namespace(&ns).await;
    (entry, files)
}

/// `processDump: Minidump`: the bundle holds the broadcaster's minidump. Finding 3 of issue
/// 20: the uid-0 process-dump sidecar (no DAC_OVERRIDE) cannot write the volume owned by
/// 65532.
#[tokio::test]
async fn process_dump_minidump_lands_in_the_bundle() {
    let test = "process_dump_minidump_lands_in_the_bundle";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    let image = node.image("stallwatch-drill").reference.clone();
    let (entry, files) = process_dump_story(node, "minidump", "Minidump", &image).await;
    assert_eq!(entry["dump"], "Succeeded", "{entry:#}");
    assert!(
        files.iter().any(|f| f.starts_with("broadcaster")),
        "{files:?}"
    );
}

/// `processDump: Full` with the debug image (gdb's gcore): the bundle holds the core. Finding
/// 3 of issue 20 as for Minidump.
#[tokio::test]
async fn process_dump_full_with_the_debug_image_lands_in_the_bundle() {
    let test = "process_dump_full_with_the_debug_image_lands_in_the_bundle";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    let image = node.image("stallwatch-debug-drill").reference.clone();
    let (entry, files) = process_dump_story(node, "full", "Full", &image).await;
    assert_eq!(entry["dump"], "Succeeded", "{entry:#}");
    assert!(
        files.iter().any(|f| f.starts_with("broadcaster")),
        "{files:?}"
    );
}

/// `kubectl apply -f examples/zero-code-metrics.yaml` works as shipped: the stream pod Ready
/// with its readiness gate True. Finding 4 of issue 20: the example pairs a synthetic source
/// with metrics nothing serves.
#[tokio::test]
async fn zero_code_example_works_as_shipped() {
    let test = "zero_code_example_works_as_shipped";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-zero-code").await;
    let admin = node.plane().admin().await;
    let (applied, refused) =
        apply::apply_yaml(&admin, &example("zero-code-metrics.yaml"), &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let name = applied
        .iter()
        .find_map(|a| a.strip_prefix("TransitStream/"))
        .expect("a TransitStream")
        .to_string();
    let pod = ready_pod(
        &admin,
        &ns,
        &format!("stallwatch.io/transitstream={name}"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        condition(&pod, "stallwatch.io/DispatchHealthy"),
        Some("True")
    );
    node.plane().delete_namespace(&ns).await;
}

/// The stream pods against the Pod Security Standards, enforced by the API server's own
/// PodSecurity admission: a default TransitStream's pod is admitted under `restricted`; one
/// with `processDump: Minidump` (a sidecar as uid 0 with SYS_PTRACE, sharing the process
/// namespace) is refused under `restricted` and under `baseline`, so its namespace must be
/// `privileged`.
#[tokio::test]
async fn stream_pods_meet_restricted_and_process_dumps_need_privileged() {
    let test = "stream_pods_meet_restricted_and_process_dumps_need_privileged";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let admin = node.plane().admin().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    for (level, process_dump, admitted) in [
        ("restricted", "None", true),
        ("restricted", "Minidump", false),
        ("baseline", "Minidump", false),
    ] {
        let ns = node
            .plane()
            .namespace(&format!(
                "journey-pss-{level}-{}",
                process_dump.to_lowercase()
            ))
            .await;
        let label = serde_json::json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": level,
        }}});
        namespaces
            .patch(
                &ns,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&label),
            )
            .await
            .expect("labelling the namespace");
        let ts = format!(
            "apiVersion: stallwatch.io/v1alpha1\nkind: TransitStream\nmetadata:\n  name: pss\n\
             spec:\n  source:\n    synthetic: {{}}\n  dumps:\n    processDump: {process_dump}\n"
        );
        let (_, refused) = apply::apply_yaml(&admin, &ts, &ns, "kubectl").await;
        assert!(refused.is_empty(), "{refused:?}");
        let selector = "stallwatch.io/transitstream=pss";
        if admitted {
            ready_pod(&admin, &ns, selector, Duration::from_secs(120)).await;
        } else {
            // The ReplicaSet's pod creation is refused, with the reason in an Event.
            let message = eventually(
                &format!("a PodSecurity refusal under {level}"),
                Duration::from_secs(60),
                || async {
                    let list: Api<k8s_openapi::api::core::v1::Event> =
                        Api::namespaced(admin.clone(), &ns);
                    let events = list.list(&Default::default()).await.ok()?;
                    events.items.into_iter().find_map(|e| {
                        let m = e.message.unwrap_or_default();
                        (e.reason.as_deref() == Some("FailedCreate")
                            && m.contains("violates PodSecurity"))
                        .then_some(m)
                    })
                },
            )
            .await;
            say(&format!(
                "envtest node: {level} + {process_dump}: {message}"
            ));
            let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
            let list = pods
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .unwrap();
            assert!(list.items.is_empty(), "a pod was admitted under {level}");
        }
        node.plane().delete_namespace(&ns).await;
    }
}

/// Bring your own broadcaster with the operator down: a new pod of the workload is admitted
/// without the sidecar (the webhook's `failurePolicy: Ignore`), and once the operator is back
/// the TransitStream lists it under `status.workload.uncoveredPods`.
#[tokio::test]
async fn bring_your_own_with_the_operator_down_admits_uninjected_and_lists_it_uncovered() {
    let test = "bring_your_own_with_the_operator_down_admits_uninjected_and_lists_it_uncovered";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-byo-down").await;
    let admin = node.plane().admin().await;
    // Only the injection and the listing matter here: no poison.
    let (_, refused) = apply::apply_yaml(
        &admin,
        &byo::workload_ref_yaml(node, 100_000, true),
        &ns,
        "kubectl",
    )
    .await;
    assert!(refused.is_empty(), "{refused:?}");
    ready_pod(&admin, &ns, "app=orders-feed", Duration::from_secs(120)).await;
    let scale = |replicas: i32| {
        let admin = admin.clone();
        async move {
            let api: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(admin, OPERATOR_NS);
            api.patch(
                RELEASE,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
            )
            .await
            .expect("scaling the operator");
        }
    };
    scale(0).await;
    let operator_pods: Api<Pod> = Api::namespaced(admin.clone(), OPERATOR_NS);
    eventually("the operator down", Duration::from_secs(60), || async {
        let list = operator_pods
            .list(&kube::api::ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    let workloads: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), &ns);
    workloads
        .patch(
            "orders-feed",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let uninjected = eventually(
        "a pod admitted without the sidecar",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&kube::api::ListParams::default().labels("app=orders-feed"))
                .await
                .ok()?;
            list.items
                .into_iter()
                .find(|p| p.spec.as_ref().is_some_and(|s| s.containers.len() == 1))
        },
    )
    .await;
    let name = uninjected.metadata.name.clone().unwrap();
    scale(1).await;
    let status = eventually(
        "the uninjected pod listed as uncovered",
        Duration::from_secs(120),
        || async {
            let ts = apply::get_json(
                &admin,
                "stallwatch.io/v1alpha1",
                "TransitStream",
                &ns,
                "orders-feed",
            )
            .await?;
            let uncovered = ts["status"]["workload"]["uncoveredPods"]
                .as_array()?
                .clone();
            uncovered
                .iter()
                .any(|p| p.as_str() == Some(&name))
                .then_some(ts["status"]["workload"].clone())
        },
    )
    .await;
    say(&format!(
        "envtest node: operator back, workload status {status}"
    ));
    ready_pod(
        &admin,
        OPERATOR_NS,
        "app.kubernetes.io/component=operator",
        Duration::from_secs(60),
    )
    .await;
    node.plane().delete_namespace(&ns).await;
}

/// The operator's log (container `operator` of its Ready pod).
async fn operator_log(node: &Node) -> String {
    let admin = node.plane().admin().await;
    let pod = ready_pod(
        &admin,
        OPERATOR_NS,
        "app.kubernetes.io/component=operator",
        Duration::from_secs(60),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(admin, OPERATOR_NS);
    pods.logs(
        &pod.metadata.name.unwrap(),
        &kube::api::LogParams {
            container: Some("operator".into()),
            ..Default::default()
        },
    )
    .await
    .expect("the operator's log (kubectl logs through the kubelet)")
}

/// Finding 8 of issue 20: a new TransitStream's first reconcile logs `WARN reconcile failed
/// ... the object has been modified` (its status write racing its own update). Four new
/// TransitStreams with the chart's operator (one did not show it on the node before the fix;
/// `real_api_findings` applies four too): once each is Ready and its status says `Running`,
/// the operator's log as the kubelet serves it (`kubectl logs`) has no `reconcile failed` for
/// any of them.
#[tokio::test]
async fn a_new_stream_reconciles_without_a_conflict_warning() {
    let test = "a_new_stream_reconciles_without_a_conflict_warning";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-first-reconcile").await;
    let admin = node.plane().admin().await;
    let names = ["demo", "demo-2", "demo-3", "demo-4"];
    for name in names {
        let yaml =
            example("minimal-synthetic.yaml").replace("name: demo", &format!("name: {name}"));
        let (_, refused) = apply::apply_yaml(&admin, &yaml, &ns, "kubectl").await;
        assert!(refused.is_empty(), "{refused:?}");
    }
    for name in names {
        let selector = format!("stallwatch.io/transitstream={name}");
        ready_pod(&admin, &ns, &selector, Duration::from_secs(120)).await;
        eventually(
            &format!("{ns}/{name} Running in its status"),
            Duration::from_secs(60),
            || async {
                let ts =
                    apply::get_json(&admin, "stallwatch.io/v1alpha1", "TransitStream", &ns, name)
                        .await?;
                (ts["status"]["phase"] == "Running").then_some(())
            },
        )
        .await;
    }
    let log = operator_log(node).await;
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("{ns}/"))
                && (l.contains("reconcile failed") || l.contains("has been modified"))
        })
        .collect();
    say(&format!(
        "envtest node: {} reconcile failures logged for {} new TransitStreams",
        failed.len(),
        names.len()
    ));
    assert!(failed.is_empty(), "{failed:#?}");
    node.plane().delete_namespace(&ns).await;
}

/// Finding 10 of issue 20: `logFormat: text` writes ANSI colour escapes into the container
/// log.
#[tokio::test]
async fn log_format_text_writes_plain_logs() {
    let test = "log_format_text_writes_plain_logs";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let mut text = values(node);
    text["logFormat"] = "text".into();
    let kubeconfig = node.plane().admin_kubeconfig();
    stallwatch_envtest::helm::upgrade(kubeconfig, OPERATOR_NS, RELEASE, &text, 180).unwrap();
    // The new pod is the Ready one once the old one is gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = operator_log(node).await;
    stallwatch_envtest::helm::upgrade(kubeconfig, OPERATOR_NS, RELEASE, &values(node), 180)
        .unwrap();
    assert!(!log.is_empty(), "an empty log");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in the log: {:?}",
        log.lines().next()
    );
}

/// A TransitStream whose dumps go to the claim `claim` (created by the caller or not), and the
/// text of its status conditions once `matches` holds for it (`None` after 60 s).
async fn conditions_text_when(
    node: &Node,
    ns: &str,
    claim: &str,
    matches: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let admin = node.plane().admin().await;
    let ts = format!(
        "apiVersion: stallwatch.io/v1alpha1\nkind: TransitStream\nmetadata:\n  name: vol\n\
         spec:\n  source:\n    synthetic: {{}}\n  dumps:\n    volume:\n      existingClaim: {claim}\n"
    );
    let (_, refused) = apply::apply_yaml(&admin, &ts, ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(ts) =
            apply::get_json(&admin, "stallwatch.io/v1alpha1", "TransitStream", ns, "vol").await
        {
            last = ts["status"]["conditions"].to_string();
            if matches(&last.to_lowercase()) {
                return Ok(last);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// Finding 2 of issue 20: a dump volume the sidecar's user cannot write (a hostPath PV owned by
/// root) is only found out when the first stall needs it; it must be named in the status.
#[tokio::test]
async fn an_unwritable_dump_volume_is_named_in_the_status() {
    let test = "an_unwritable_dump_volume_is_named_in_the_status";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-unwritable").await;
    let admin = node.plane().admin().await;
    let dir = node.volume_dir("journey-unwritable-dumps", Some((0, 0)), 0o755);
    let (_, refused) =
        apply::apply_yaml(&admin, &hostpath_volume(&dir, &ns, "dumps"), &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    // `Degraded=True DumpVolumeUnavailable`, from the sidecar's `DumpStorageReady=False`.
    let found = conditions_text_when(node, &ns, "dumps", |c| {
        c.contains("dumpvolumeunavailable") && (c.contains("writable") || c.contains("permission"))
    })
    .await;
    assert!(
        found.is_ok(),
        "no condition names the unwritable volume: {found:?}"
    );
    eprintln!("the status names it: {}", found.unwrap_or_default());
    node.plane().delete_namespace(&ns).await;
}

/// Finding 5 of issue 20: with the dump claim Pending the TransitStream says `Stable` and
/// `AllStreamsFlowing`; its status must name the claim.
#[tokio::test]
async fn a_pending_dump_claim_is_named_in_the_status() {
    let test = "a_pending_dump_claim_is_named_in_the_status";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-pending-claim").await;
    let admin = node.plane().admin().await;
    // A claim no volume satisfies: it stays Pending.
    let pvc = format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: nowhere\nspec:\n  \
         storageClassName: {HOSTPATH_CLASS}-none\n  accessModes: [ReadWriteOnce]\n  resources:\n    \
         requests:\n      storage: 1Gi\n"
    );
    let (_, refused) = apply::apply_yaml(&admin, &pvc, &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let found = conditions_text_when(node, &ns, "nowhere", |c| c.contains("nowhere")).await;
    assert!(
        found.is_ok(),
        "no condition names the Pending claim: {found:?}"
    );
    node.plane().delete_namespace(&ns).await;
}

/// Zero-code mode on the node: the metrics-only app (`tests/apps/queue_app.py`, no report
/// client) as the user's Deployment, injected, watched through its own metrics; its consumer
/// stops 20 s after start → `ChannelStuck` from the scraped series → one pod deletion → the
/// replacement injected and Ready. (`fsGroup: 65532` as for finding 1.)
#[tokio::test]
async fn zero_code_metrics_only_app_is_watched_and_restarted() {
    let test = "zero_code_metrics_only_app_is_watched_and_restarted";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let ns = node.plane().namespace("journey-zero-code-app").await;
    let admin = node.plane().admin().await;
    let image = node.image("report-client-python").reference.clone();
    let yaml = format!(
        r#"apiVersion: stallwatch.io/v1alpha1
kind: TransitStream
metadata:
  name: queue-app
spec:
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: queue-app
  stallAfter: 2s
  detection:
    metrics:
      port: 9100
      path: /metrics
      interval: 1s
      depth: queue_app_depth
      capacityValue: 8
      dequeued: queue_app_dequeued_total
      enqueued: queue_app_enqueued_total
      streamLabel: stream
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: queue-app
spec:
  replicas: 1
  selector:
    matchLabels: {{app: queue-app}}
  template:
    metadata:
      labels: {{app: queue-app, stallwatch.io/inject: queue-app}}
    spec:
      securityContext:
        runAsNonRoot: true
        fsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: app
          image: {image}
          command: ["/usr/bin/python3", "/app/queue_app.py", "--port", "9100", "--stream", "all",
                    "--stop-consumer-after", "20"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: ["ALL"]}}
"#
    );
    let (_, refused) = apply::apply_yaml(&admin, &yaml, &ns, "kubectl").await;
    assert!(refused.is_empty(), "{refused:?}");
    let selector = "app=queue-app";
    let first = ready_pod(&admin, &ns, selector, Duration::from_secs(120)).await;
    let first_name = first.metadata.name.clone().unwrap();
    assert!(
        first.spec.as_ref().is_some_and(|s| s.containers.len() == 2),
        "not injected"
    );
    assert_eq!(
        condition(&first, "stallwatch.io/DispatchHealthy"),
        Some("True")
    );
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let mut seen = PodsSeen::default();
    seen.poll(&pods, selector).await;
    let start = Instant::now();
    let replacement = loop {
        let list = seen.poll(&pods, selector).await;
        if let Some(p) = list.into_iter().find(|p| {
            p.metadata.name.as_deref() != Some(&first_name)
                && p.metadata.deletion_timestamp.is_none()
                && condition(p, "Ready") == Some("True")
        }) {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no replacement after the consumer stopped: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        replacement
            .spec
            .as_ref()
            .is_some_and(|s| s.containers.len() == 2),
        "the replacement is not injected"
    );
    let status = eventually("the history entry", Duration::from_secs(30), || async {
        let ts = apply::get_json(
            &admin,
            "stallwatch.io/v1alpha1",
            "TransitStream",
            &ns,
            "queue-app",
        )
        .await?;
        let history = ts["status"]["remediation"]["history"].as_array()?.clone();
        history
            .first()
            .filter(|h| h["restart"] == "Succeeded")
            .cloned()
    })
    .await;
    assert_eq!(status["reason"], "ChannelStuck", "{status:#}");
    assert_eq!(status["pod"], first_name.as_str(), "{status:#}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    seen.poll(&pods, selector).await;
    assert_eq!(
        seen.gone.iter().collect::<Vec<_>>(),
        [&first_name],
        "{seen:?}"
    );
    node.plane().delete_namespace(&ns).await;
}
