//! What the node journeys share: one at a time, the chart installed once, pods waited for,
//! a container's process looked at from the host, a real subscriber.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use stallwatch_envtest::node::Node;
use stallwatch_envtest::{eventually, helm, kubelet};

/// The release every journey uses, in its own namespace.
pub const RELEASE: &str = "stallwatch";
pub const OPERATOR_NS: &str = "stallwatch-system";

/// One journey at a time: they share the node, the release and the CRD.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The chart's values with the node's local images (never pulled).
pub fn values(node: &Node) -> serde_json::Value {
    let (op_repo, op_tag) = split(&node.image("operator").reference);
    let (sw_repo, sw_tag) = split(&node.image("stallwatch").reference);
    json!({
        "image": {"repository": op_repo, "tag": op_tag, "pullPolicy": "Never"},
        "streamImage": {"repository": sw_repo, "tag": sw_tag},
    })
}

fn split(reference: &str) -> (String, String) {
    let (repo, tag) = reference.rsplit_once(':').expect("a tagged reference");
    (repo.to_string(), tag.to_string())
}

/// Installs the chart (with `wait`) unless a journey before did; returns how long it took.
pub async fn ensure_installed(node: &Node) -> Option<Duration> {
    let admin = node.plane().admin().await;
    let deployments: Api<Deployment> = Api::namespaced(admin, OPERATOR_NS);
    let existing = deployments.get_opt(RELEASE).await.ok().flatten();
    if existing
        .as_ref()
        .is_some_and(|d| d.metadata.deletion_timestamp.is_some())
    {
        // An uninstall's leftovers on their way out: install anew once they are gone.
        eventually(
            "the uninstalled operator's Deployment gone",
            Duration::from_secs(120),
            || async {
                deployments
                    .get_opt(RELEASE)
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    } else if existing.is_some() {
        // Installed by a journey before. Its operator may be between pods (a journey deleted
        // one) or its Deployment's status not yet caught up: wait, never install again (Helm
        // refuses a release name still in use).
        eventually(
            "the installed chart's operator Ready",
            Duration::from_secs(120),
            || async {
                let d = deployments.get_opt(RELEASE).await.ok().flatten()?;
                (d.status?.ready_replicas? > 0).then_some(())
            },
        )
        .await;
        return None;
    }
    let start = Instant::now();
    let release = helm::install(
        node.plane().admin_kubeconfig(),
        OPERATOR_NS,
        RELEASE,
        &values(node),
        180,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node.tails(30)));
    assert_eq!(release["status"].as_str(), Some("deployed"), "{release}");
    let took = start.elapsed();
    node.record("helm install (wait) to operator Ready", took);
    Some(took)
}

/// An example of `examples/` as shipped.
pub fn example(name: &str) -> String {
    let path = stallwatch_envtest::assets::workspace_root()
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `kubectl apply -f examples/minimal-synthetic.yaml` (TransitStream `demo`) in a new
/// namespace named after `prefix`: the namespace, an admin client and the stream's Ready pod.
pub async fn minimal_stream(node: &Node, prefix: &str) -> (String, Client, Pod) {
    let ns = node.plane().namespace(prefix).await;
    let admin = node.plane().admin().await;
    let (_, refused) = stallwatch_envtest::apply::apply_yaml(
        &admin,
        &example("minimal-synthetic.yaml"),
        &ns,
        "kubectl",
    )
    .await;
    assert!(refused.is_empty(), "{refused:?}");
    let pod = ready_pod(&admin, &ns, MINIMAL_SELECTOR, Duration::from_secs(120)).await;
    (ns, admin, pod)
}

/// The pods of `examples/minimal-synthetic.yaml`'s TransitStream.
pub const MINIMAL_SELECTOR: &str = "stallwatch.io/transitstream=demo";

/// The pods matching `selector` once one is Ready (the pod condition), with all its
/// containers ready.
pub async fn ready_pod(client: &Client, ns: &str, selector: &str, timeout: Duration) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(selector);
    eventually(
        &format!("a Ready pod {selector} in {ns}"),
        timeout,
        || async {
            let list = pods.list(&lp).await.ok()?;
            list.items.into_iter().find(|p| {
                p.metadata.deletion_timestamp.is_none() && condition(p, "Ready") == Some("True")
            })
        },
    )
    .await
}

/// A pod condition's status.
pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Whether every container of the pod is ready.
pub fn all_containers_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
}

/// The host pid of a container's main process, through containerd (`ctr tasks ls`).
pub fn container_pid(node: &Node, pod: &Pod, container: &str) -> u32 {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.container_id.clone())
        .unwrap_or_else(|| panic!("no container id for {container}"));
    let id = id.trim_start_matches("containerd://");
    let tasks = node.ctr(&["tasks", "ls"]).expect("ctr tasks ls");
    tasks
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task {id} in\n{tasks}"))
}

/// `(real uid, effective uid)` of a host pid.
pub fn uids(pid: u32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("a Uid line");
    let ids: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (ids[0], ids[1])
}

/// Whether the process's root filesystem (as it sees it) is mounted read-only.
pub fn root_read_only(pid: u32) -> bool {
    let info =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("/proc/PID/mountinfo");
    info.lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/"))
        .is_some_and(|l| {
            l.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|x| x == "ro"))
        })
}

/// Resident set size of a host pid in KiB (what the kubelet's cgroup sees is close to it).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A Service's ClusterIP.
pub async fn cluster_ip(client: &Client, ns: &str, name: &str) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Service {ns}/{name}: {e}"))
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP")
}

/// The workspace's `transit-broadcaster` (the `subscribe` CLI a user runs).
pub fn broadcaster_cli() -> PathBuf {
    kubelet::bin_dir().join("transit-broadcaster")
}

/// [`subscribe`] again until it gets its updates or `within` has passed: right after a pod is
/// Ready the Service reaches it only once kube-proxy has its endpoint, and a user's client
/// reconnects until then.
pub async fn subscribe_within(
    addr: &str,
    count: u32,
    within: Duration,
) -> Result<Vec<serde_json::Value>, String> {
    let start = Instant::now();
    loop {
        match subscribe(addr, count, Duration::from_secs(10)) {
            Ok(u) => return Ok(u),
            Err(e) if start.elapsed() > within => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A real subscriber: `transit-broadcaster subscribe --addr URL --count N --json`; the
/// updates it printed, or why it failed.
pub fn subscribe(
    addr: &str,
    count: u32,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new("timeout")
        .arg(format!("{}", timeout.as_secs().max(1)))
        .arg(broadcaster_cli())
        .args([
            "subscribe",
            "--addr",
            addr,
            "--count",
            &count.to_string(),
            "--json",
        ])
        .output()
        .map_err(|e| format!("running the subscriber: {e}"))?;
    let updates: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if updates.len() < count as usize {
        return Err(format!(
            "{} of {count} updates from {addr} ({}): {}",
            updates.len(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(updates)
}

/// Each container's memory as the kubelet sees it (`/stats/summary` through the API server):
/// `(pod, container, rssBytes, workingSetBytes)` for the pods of `ns`.
pub async fn kubelet_memory(client: &Client, ns: &str) -> Vec<(String, String, u64, u64)> {
    let req = http::Request::get(format!(
        "/api/v1/nodes/{}/proxy/stats/summary",
        stallwatch_envtest::node::NODE_NAME
    ))
    .body(Vec::new())
    .expect("a request");
    let text = client
        .request_text(req)
        .await
        .expect("the kubelet's /stats/summary");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut out = Vec::new();
    for pod in summary["pods"].as_array().cloned().unwrap_or_default() {
        if pod["podRef"]["namespace"] != ns {
            continue;
        }
        let name = pod["podRef"]["name"].as_str().unwrap_or("").to_string();
        for c in pod["containers"].as_array().cloned().unwrap_or_default() {
            out.push((
                name.clone(),
                c["name"].as_str().unwrap_or("").to_string(),
                c["memory"]["rssBytes"].as_u64().unwrap_or(0),
                c["memory"]["workingSetBytes"].as_u64().unwrap_or(0),
            ));
        }
    }
    out
}

/// Prints each container's memory as the kubelet sees it (MiB) and returns it.
pub async fn print_memory(client: &Client, ns: &str) -> Vec<(String, String, u64, u64)> {
    let mem = kubelet_memory(client, ns).await;
    for (pod, container, rss, ws) in &mem {
        stallwatch_envtest::say(&format!(
            "envtest node memory: {ns}/{pod} {container}: rss {:.1} MiB, working set {:.1} MiB",
            *rss as f64 / 1048576.0,
            *ws as f64 / 1048576.0
        ));
    }
    mem
}

/// The user's removal: every TransitStream deleted (and its pods gone), `helm uninstall
/// --wait`, the CRD deleted. Returns what is left of ours (pods, Deployments, Services,
/// ServiceAccounts, RBAC, the webhook configuration, claims), in the release namespace and
/// `stream_namespaces`.
pub async fn uninstall_everything(node: &Node, stream_namespaces: &[&str]) -> Vec<String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{DeleteParams, DynamicObject};
    use kube::core::GroupVersionKind;
    use kube::discovery::ApiResource;

    let admin = node.plane().admin().await;
    let ts = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "stallwatch.io",
        "v1alpha1",
        "TransitStream",
    ));
    let all: Api<DynamicObject> = Api::all_with(admin.clone(), &ts);
    for obj in all
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &ns, &ts);
        let _ = api
            .delete(
                &obj.metadata.name.clone().unwrap_or_default(),
                &DeleteParams::foreground(),
            )
            .await;
    }
    eventually(
        "every TransitStream gone",
        Duration::from_secs(120),
        || async {
            all.list(&ListParams::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
                .then_some(())
        },
    )
    .await;
    let start = Instant::now();
    helm::uninstall(node.plane().admin_kubeconfig(), OPERATOR_NS, RELEASE, 180)
        .unwrap_or_else(|e| panic!("{e}"));
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let _ = crds
        .delete("transitstreams.stallwatch.io", &DeleteParams::default())
        .await;
    eventually("the CRD gone", Duration::from_secs(60), || async {
        crds.get_opt("transitstreams.stallwatch.io")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    node.record("uninstall (streams, release, CRD)", start.elapsed());

    // The garbage collector removes what the TransitStreams owned shortly after them.
    let start = Instant::now();
    loop {
        let left = leftovers(&admin, stream_namespaces).await;
        if left.is_empty() || start.elapsed() > Duration::from_secs(60) {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What is left of ours in the release namespace and `stream_namespaces`, and cluster-wide.
async fn leftovers(admin: &Client, stream_namespaces: &[&str]) -> Vec<String> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
    let mut left = Vec::new();
    let mut namespaces = vec![OPERATOR_NS];
    namespaces.extend_from_slice(stream_namespaces);
    for ns in namespaces {
        let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
        // Pods take their grace period to go.
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while pods
                .list(&ListParams::default())
                .await
                .is_ok_and(|l| !l.items.is_empty())
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        for p in pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            left.push(format!("Pod {ns}/{}", p.metadata.name.unwrap_or_default()));
        }
        let names = |kind: &str, items: Vec<Option<String>>| -> Vec<String> {
            items
                .into_iter()
                .flatten()
                .filter(|n| n != "default" && n != "kubernetes")
                .map(|n| format!("{kind} {ns}/{n}"))
                .collect()
        };
        let lp = ListParams::default();
        let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
        let services: Api<Service> = Api::namespaced(admin.clone(), ns);
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
        let roles: Api<Role> = Api::namespaced(admin.clone(), ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), ns);
        let meta = |l: Vec<Option<String>>| l;
        left.extend(names(
            "Deployment",
            meta(
                deployments
                    .list(&lp)
                    .await
                    .map(|l| l.items.into_iter().map(|o| o.metadata.name).collect())
                    .unwrap_or_default(),
            ),
        ));
        left.extend(names(
            "Service",
            meta(
                services
                    .list(&lp)
                    .await
                    .map(|l| l.items.into_iter().map(|o| o.metadata.name).collect())
                    .unwrap_or_default(),
            ),
        ));
        left.extend(names(
            "ServiceAccount",
            meta(
                accounts
                    .list(&lp)
                    .await
                    .map(|l| l.items.into_iter().map(|o| o.metadata.name).collect())
                    .unwrap_or_default(),
            ),
        ));
        left.extend(names(
            "Role",
            meta(
                roles
                    .list(&lp)
                    .await
                    .map(|l| l.items.into_iter().map(|o| o.metadata.name).collect())
                    .unwrap_or_default(),
            ),
        ));
        left.extend(names(
            "PersistentVolumeClaim",
            meta(
                claims
                    .list(&lp)
                    .await
                    .map(|l| l.items.into_iter().map(|o| o.metadata.name).collect())
                    .unwrap_or_default(),
            ),
        ));
    }
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    if webhooks.get_opt(RELEASE).await.ok().flatten().is_some() {
        left.push(format!("MutatingWebhookConfiguration {RELEASE}"));
    }
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for name in [RELEASE.to_string(), format!("{RELEASE}-webhook")] {
        if cluster_roles.get_opt(&name).await.ok().flatten().is_some() {
            left.push(format!("ClusterRole {name}"));
        }
        if bindings.get_opt(&name).await.ok().flatten().is_some() {
            left.push(format!("ClusterRoleBinding {name}"));
        }
    }
    left
}

/// `kubectl get <plural>.<group> -n ns`: the server-side Table's column names and its first
/// row's cells (what kubectl prints).
pub async fn table(client: &Client, path: &str) -> (Vec<String>, Vec<serde_json::Value>) {
    let req = http::Request::get(path)
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .expect("a request");
    let text = client.request_text(req).await.expect("a Table");
    let t: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let columns = t["columnDefinitions"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|d| d["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let cells = t["rows"][0]["cells"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (columns, cells)
}
