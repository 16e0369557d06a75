//! Footprint benchmark against a real API server: the envtest control plane (`tests/envtest`)
//! holds N TransitStreams (3 streams each, a status with 5 history entries) and 2 running pods
//! per stream (the operator's own pod template, status written as a kubelet would), spread
//! over 50 namespaces; the operator's reflectors (`cache_streams`, the same watch
//! configuration and slimming `transit-operator run` uses) fill their caches from it, and the
//! process RSS is printed. The companion of `footprint.rs` (mock API); same target: < 32 MiB.
//!
//! `cargo bench -p transit-operator --bench footprint_real` (env `FOOTPRINT_STREAMS`,
//! `FOOTPRINT_PODS_PER_STREAM`). The control plane is started and filled by a child process
//! (this binary, `FOOTPRINT_ROLE=populate`), so the RSS printed is the operator side only.
//! Without the envtest binaries it prints why and exits 0.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use stallwatch_crds::TransitStream;
use stallwatch_envtest::{ControlPlane, apply, assets};
use stallwatch_testkit::TransitStreamExt as _;
use transit_operator::builders::{self, BuildContext};

#[path = "footprint/common.rs"]
mod common;
use common::{fill_caches, on_operator_runtime, print_table, rss_kib};

const NAMESPACES: usize = 50;
const PARALLEL: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stream(i: usize) -> TransitStream {
    TransitStream::test(&format!("stream-{i:04}"))
        .namespace(&format!("ns-{}", i % NAMESPACES))
        .generation(None::<i64>)
        .streams(["all", "downtown", "airport"], &["R1", "R2"])
        .build()
}

fn stream_status(name: &str) -> Value {
    let history: Vec<Value> = (0..5)
        .map(|h| json!({"id": format!("{name}-abc/all@{h}"), "pod": format!("{name}-abc"), "podUid": "u",
            "stream": "all", "reason": "ChannelStuck", "stalledSince": "2026-11-28T01:00:00.000000Z",
            "startedAt": "2026-11-28T01:00:01.000000Z", "step": "Done",
            "stepStartedAt": "2026-11-28T01:00:02.000000Z", "dump": "Succeeded",
            "bundlePath": format!("/dumps/{name}/20261128T010001.000Z-all-ChannelStuck"),
            "restart": "Succeeded", "outcome": "Restarted",
            "finishedAt": "2026-11-28T01:00:03.000000Z", "message": "pod deleted"}))
        .collect();
    let conditions: Vec<Value> = ["Ready", "Progressing", "Stalled", "Remediating", "Degraded", "InvalidSpec"]
        .iter()
        .map(|t| json!({"type": t, "status": "False", "reason": "AsExpected", "message": "every stream is making progress",
            "observedGeneration": 1, "lastTransitionTime": "2026-11-28T01:00:00Z"}))
        .collect();
    json!({"status": {"observedGeneration": 1, "phase": "Running", "conditions": conditions,
        "streams": 3, "replicas": 2, "readyReplicas": 2, "stalls": 5,
        "remediation": {"history": history}}})
}

fn pod_status(i: usize, replica: usize) -> Value {
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2026-11-28T01:00:00Z"}))
    .chain(std::iter::once(
        json!({"type": "stallwatch.io/DispatchHealthy", "status": "True",
            "reason": "Healthy", "lastTransitionTime": "2026-11-28T01:00:00Z"}),
    ))
    .collect();
    let containers: Vec<Value> = ["broadcaster", "sidecar"]
        .iter()
        .map(|c| json!({
            "name": c, "ready": true, "restartCount": 0, "image": "stallwatch:0.1.0",
            "imageID": "docker.io/library/stallwatch@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "started": true, "state": {"running": {"startedAt": "2026-11-28T01:00:00Z"}}}))
        .collect();
    let ip = format!("10.{}.{}.{}", i / 250, i % 250, replica + 1);
    json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.10",
        "startTime": "2026-11-28T01:00:00Z", "conditions": conditions, "containerStatuses": containers}})
}

async fn client_from(path: &str) -> Client {
    let file = Kubeconfig::read_from(path).expect("the admin kubeconfig");
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("a client config");
    Client::try_from(config).expect("a client")
}

/// The child: starts the control plane, fills it, prints the admin kubeconfig path and waits
/// for its stdin to close (the parent ends).
async fn populate(streams: usize, per: usize) {
    let bin = match assets::find() {
        Ok(b) => b,
        Err(why) => {
            println!("skip {why}");
            return;
        }
    };
    let started = Instant::now();
    let plane = ControlPlane::start(&bin).await.expect("the control plane");
    eprintln!(
        "footprint_real: control plane started in {:.1?}",
        plane.started_in()
    );
    let client = plane.admin().await;
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/transitstream.yaml"
    ))
    .unwrap();
    let (_, refused) = apply::apply_yaml(&client, &crd, "default", "footprint").await;
    assert!(refused.is_empty(), "{refused:?}");
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("ns-{n}")}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
    }
    for n in 0..NAMESPACES {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &format!("ns-{n}"));
        while sas.get_opt("default").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let template = {
        let ctx = BuildContext {
            default_image: "stallwatch:0.1.0".into(),
        };
        builders::deployment(&stream(0), &ctx, "h")
            .spec
            .unwrap()
            .template
    };
    futures::stream::iter(0..streams)
        .map(|i| {
            let client = client.clone();
            let template = template.clone();
            async move {
                let ts = stream(i);
                let name = ts.metadata.name.clone().unwrap();
                let ns = ts.metadata.namespace.clone().unwrap();
                let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
                api.create(&PostParams::default(), &ts).await?;
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(stream_status(&name)),
                )
                .await?;
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                for replica in 0..per {
                    let mut pod: Pod = serde_json::from_value(json!({"metadata": {
                        "name": format!("{name}-7d9c8b6f5-{replica:05}"),
                        "labels": stallwatch_crds::selector_labels(&name),
                        "annotations": {"stallwatch.io/config-hash": "0123456789abcdef"},
                    }}))
                    .unwrap();
                    pod.spec = template.spec.clone();
                    if let Some(spec) = pod.spec.as_mut() {
                        spec.node_name = Some("node-1".into());
                        // Each stream's sidecar account is the operator's to create; not here.
                        spec.service_account_name = None;
                    }
                    let pod_name = pod.metadata.name.clone().unwrap();
                    pods.create(&PostParams::default(), &pod).await?;
                    pods.patch_status(
                        &pod_name,
                        &PatchParams::default(),
                        &Patch::Strategic(pod_status(i, replica)),
                    )
                    .await?;
                }
                Ok::<(), kube::Error>(())
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await
        .expect("filling the API server");
    eprintln!(
        "footprint_real: {streams} TransitStreams and {} pods created in {:.1?}",
        streams * per,
        started.elapsed()
    );
    println!("ready {}", plane.admin_kubeconfig().display());
    // Keep the control plane until the parent is done (it closes our stdin).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(plane);
}

fn main() {
    if std::env::var("FOOTPRINT_ROLE").as_deref() == Ok("populate") {
        let streams = env_usize("FOOTPRINT_STREAMS", 1000);
        let per = env_usize("FOOTPRINT_PODS_PER_STREAM", 2);
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(populate(streams, per));
        return;
    }
    on_operator_runtime(measure());
}

/// The operator side: fill the caches from the populated control plane and print the table.
async fn measure() {
    let streams = env_usize("FOOTPRINT_STREAMS", 1000);
    let per = env_usize("FOOTPRINT_PODS_PER_STREAM", 2);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("FOOTPRINT_ROLE", "populate")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the populating child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(kubeconfig) = line.trim().strip_prefix("ready ") else {
        println!(
            "footprint_real: skipped: {}",
            line.trim().trim_start_matches("skip ")
        );
        let _ = child.wait();
        return;
    };
    let baseline = rss_kib("VmRSS:");
    let client = client_from(kubeconfig).await;
    let (footprint, cached_streams, pod_store) =
        fill_caches(&client, streams, streams * per, baseline).await;
    print_table(
        &format!(
            "operator cache footprint (real kube-apiserver, {} TransitStreams, {} pods)",
            cached_streams,
            pod_store.len()
        ),
        &[],
        &footprint,
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
