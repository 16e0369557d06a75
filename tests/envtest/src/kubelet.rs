//! Plays the kubelet for one pod: marks it Running/Ready and runs its containers' processes
//! locally (the workspace's built binaries) with the environment and files the pod would get
//! from its ConfigMap, Secret, downward API and ServiceAccount token.
//!
//! Each pod gets its own loopback address (`127.0.0.N`) as `podIP`, so the operator reaches the
//! sidecar's admin API on `podIP:8081` exactly as in a cluster and two pods never collide on
//! that port. Every other port is free and chosen here. The ServiceAccount token is a
//! TokenRequest for the pod's `serviceAccountName`; the processes find it through `KUBECONFIG`
//! (and `KUBERNETES_SERVICE_HOST`, which the sidecar takes as "in a cluster").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::procs::{Proc, free_port};
use crate::{ControlPlane, assets};

/// The port the operator dials on the pod IP.
pub const SIDECAR_ADMIN_PORT: u16 = stallwatch_core::ports::SIDECAR_ADMIN;

/// A fresh loopback address for a pod (`127.0.<pid>.<n>`).
pub fn new_pod_ip() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(2);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250 + 2;
    format!(
        "127.{}.{}.{}",
        std::process::id() % 250 + 1,
        n / 250,
        n % 250
    )
}

/// Marks the pod Running and Ready with `pod_ip`, each container running and ready: a
/// strategic-merge patch on the status subresource, so conditions set by others (the
/// sidecar's `stallwatch.io/DispatchHealthy`) stay.
pub async fn mark_running(client: &Client, namespace: &str, pod: &str, pod_ip: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let current = pods.get(pod).await.expect("the pod to mark running");
    let now = Timestamp::now().to_string();
    let containers: Vec<serde_json::Value> = current
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            json!({"name": name, "ready": true, "started": true, "restartCount": 0,
                   "image": "envtest", "imageID": "", "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running",
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"),
                       condition("ContainersReady"), condition("Ready")],
        "containerStatuses": containers,
    }});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Strategic(status))
        .await
        .unwrap_or_else(|e| panic!("marking pod {namespace}/{pod} running: {e}"))
}

/// The directory of the workspace's built binaries (`cargo build --workspace --bins`).
pub fn bin_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            if dir.join("transit-sidecar").exists() {
                return dir.to_path_buf();
            }
        }
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("debug"),
        None => assets::workspace_root().join("target/debug"),
    }
}

/// Extra settings for the pod's processes (a test's fault injection, faster intervals).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `(container, name, value)`: set after everything the pod would get.
    pub env: Vec<(String, String, String)>,
    /// `(container, binary)`: the program of a container whose image has it as entrypoint.
    pub programs: Vec<(String, String)>,
}

impl Overrides {
    pub fn env(mut self, container: &str, name: &str, value: &str) -> Self {
        self.env.push((container.into(), name.into(), value.into()));
        self
    }

    pub fn program(mut self, container: &str, binary: &str) -> Self {
        self.programs.push((container.into(), binary.into()));
        self
    }
}

/// A pod played locally: its processes, its IP and its files.
#[derive(Debug)]
pub struct LocalPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub ip: String,
    /// `container name -> process`, in the pod's container order.
    pub procs: Vec<(String, Proc)>,
    /// Where the pod's volumes live (`<root>/<mount path>`).
    pub root: PathBuf,
    /// Ports chosen for the processes (`BROADCASTER_GRPC_ADDR` etc. -> port).
    pub ports: BTreeMap<String, u16>,
}

impl LocalPod {
    /// The process of `container`.
    pub fn proc_mut(&mut self, container: &str) -> &mut Proc {
        &mut self
            .procs
            .iter_mut()
            .find(|(c, _)| c == container)
            .unwrap_or_else(|| panic!("no container {container}"))
            .1
    }

    /// The sidecar's public HTTP URL (`/v1/status`).
    pub fn sidecar_http(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports["SIDECAR_HTTP_ADDR"])
    }

    /// The broadcaster's gRPC URL.
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports["BROADCASTER_GRPC_ADDR"])
    }

    /// Every process's log tail.
    pub fn tails(&self, lines: usize) -> String {
        let tails: Vec<String> = self.procs.iter().map(|(_, p)| p.tail(lines)).collect();
        tails.join("\n")
    }
}

fn field(pod: &Pod, path: &str, ip: &str) -> String {
    let meta = &pod.metadata;
    match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "envtest-node".into()),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => ip.to_string(),
        other => panic!("downward API field {other} is not played by the envtest kubelet"),
    }
}

async fn config_map(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("ConfigMap {ns}/{name} the pod needs: {e}"))
        .data
        .unwrap_or_default()
}

async fn secret(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {ns}/{name} the pod needs: {e}"));
    let mut out: BTreeMap<String, String> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    out.extend(s.string_data.unwrap_or_default());
    out
}

fn write_file(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating a pod volume dir");
    }
    std::fs::write(path, text).expect("writing a pod volume file");
}

/// Lays out the pod's volumes under `root/volumes/<name>`; returns `volume name -> dir`.
async fn volumes(
    plane: &ControlPlane,
    client: &Client,
    pod: &Pod,
    root: &Path,
) -> BTreeMap<String, PathBuf> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().expect("a pod spec");
    let mut dirs = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        let dir = root.join("volumes").join(&v.name);
        std::fs::create_dir_all(&dir).expect("creating a volume dir");
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            for (k, val) in secret(client, &ns, &name).await {
                write_file(&dir.join(k), &val);
            }
        }
        if let Some(c) = &v.config_map {
            for (k, val) in config_map(client, &ns, &c.name).await {
                write_file(&dir.join(k), &val);
            }
        }
        if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(t) = &src.service_account_token {
                    let sa = field(pod, "spec.serviceAccountName", "");
                    let token = plane.service_account_token(&ns, &sa).await;
                    write_file(&dir.join(&t.path), &token);
                }
                if src.config_map.is_some() {
                    let ca =
                        std::fs::read_to_string(plane.dir().join("ca.crt")).unwrap_or_default();
                    write_file(&dir.join("ca.crt"), &ca);
                }
                if src.downward_api.is_some() {
                    write_file(&dir.join("namespace"), &ns);
                }
            }
        }
        dirs.insert(v.name.clone(), dir);
    }
    dirs
}

/// Replaces a container path prefix by the local directory it is mounted from.
fn local_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, dir) in mounts {
        if let Some(rest) = value.strip_prefix(mount.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", dir.display());
        }
    }
    value.to_string()
}

/// Starts the pod's containers as local processes and marks the pod running.
pub async fn run_pod(
    plane: &ControlPlane,
    client: &Client,
    pod: &Pod,
    overrides: &Overrides,
) -> LocalPod {
    let ns = pod.metadata.namespace.clone().expect("a namespaced pod");
    let name = pod.metadata.name.clone().expect("a named pod");
    // A pod played again (its process restarted) keeps its IP: podIPs cannot change.
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(new_pod_ip);
    let root = plane.dir().join("pods").join(format!("{ns}-{name}"));
    std::fs::create_dir_all(&root).expect("creating the pod dir");
    let volume_dirs = volumes(plane, client, pod, &root).await;
    let sa = field(pod, "spec.serviceAccountName", &ip);
    let kubeconfig = plane.service_account_kubeconfig(&ns, &sa).await;
    let api_port = plane
        .server()
        .rsplit(':')
        .next()
        .unwrap_or("443")
        .to_string();

    let ports = pod_ports();
    let wiring = localhost_wiring(&ports, &ip);

    let spec = pod.spec.as_ref().expect("a pod spec");
    let bins = bin_dir();
    let mut procs = Vec::new();
    for c in &spec.containers {
        let (program, env) = container_env(client, pod, c, &ip, &volume_dirs).await;
        let exe = container_exe(&bins, overrides, c, program);
        let mut cmd = Command::new(&exe);
        cmd.args(c.args.iter().flatten())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &api_port)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env)
            .envs(wiring.iter())
            .current_dir(&root);
        for (container, k, v) in &overrides.env {
            if *container == c.name {
                cmd.env(k, v);
            }
        }
        let log = root.join(format!("{}.log", c.name));
        let proc = plane
            .group()
            .spawn(&format!("{name}/{}", c.name), cmd, &log)
            .expect("starting a pod process");
        procs.push((c.name.clone(), proc));
    }
    mark_running(client, &ns, &name, &ip).await;
    LocalPod {
        name,
        namespace: ns,
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        ip,
        procs,
        root,
        ports,
    }
}

/// A free local port for each listening address the broadcaster and sidecar take from env.
fn pod_ports() -> BTreeMap<String, u16> {
    let mut ports = BTreeMap::new();
    for key in [
        "BROADCASTER_GRPC_ADDR",
        "BROADCASTER_HTTP_ADDR",
        "BROADCASTER_ADMIN_ADDR",
        "SIDECAR_INGEST_ADDR",
        "SIDECAR_HTTP_ADDR",
    ] {
        ports.insert(key.to_string(), free_port());
    }
    ports
}

/// What the pod's containers share on localhost, rewired to the chosen ports.
fn localhost_wiring(ports: &BTreeMap<String, u16>, ip: &str) -> BTreeMap<String, String> {
    let mut wiring: BTreeMap<String, String> = ports
        .iter()
        .map(|(k, p)| (k.clone(), format!("127.0.0.1:{p}")))
        .collect();
    wiring.insert(
        "SIDECAR_ADMIN_ADDR".into(),
        format!("{ip}:{SIDECAR_ADMIN_PORT}"),
    );
    wiring.insert(
        "BROADCASTER_REPORT_URL".into(),
        format!(
            "http://127.0.0.1:{}/v1/reports",
            ports["SIDECAR_INGEST_ADDR"]
        ),
    );
    wiring.insert(
        "SIDECAR_BROADCASTER_ADMIN_URL".into(),
        format!("http://127.0.0.1:{}", ports["BROADCASTER_ADMIN_ADDR"]),
    );
    wiring
}

/// The workspace binary a container runs: its override, else its command's file name.
fn container_exe(
    bins: &Path,
    overrides: &Overrides,
    c: &Container,
    program: Option<String>,
) -> PathBuf {
    let program = overrides
        .programs
        .iter()
        .find(|(container, _)| *container == c.name)
        .map(|(_, p)| p.clone())
        .or(program)
        .unwrap_or_else(|| panic!("container {} has no command", c.name));
    let exe = bins.join(
        Path::new(&program)
            .file_name()
            .unwrap_or_else(|| panic!("container {} has no command", c.name)),
    );
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        exe.display()
    );
    exe
}

/// The program and environment of one container, with container paths made local.
async fn container_env(
    client: &Client,
    pod: &Pod,
    c: &Container,
    ip: &str,
    volume_dirs: &BTreeMap<String, PathBuf>,
) -> (Option<String>, BTreeMap<String, String>) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mounts: Vec<(String, PathBuf)> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = volume_dirs.get(&m.name)?;
            let dir = match &m.sub_path {
                Some(sub) if !sub.is_empty() => dir.join(sub),
                _ => dir.clone(),
            };
            Some((m.mount_path.trim_end_matches('/').to_string(), dir))
        })
        .collect();
    let mut env = BTreeMap::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            for (k, v) in config_map(client, &ns, &r.name).await {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
        if let Some(r) = &from.secret_ref {
            for (k, v) in secret(client, &ns, &r.name).await {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                field(pod, &f.field_path, ip)
            } else if let Some(s) = &src.secret_key_ref {
                secret(client, &ns, &s.name)
                    .await
                    .remove(&s.key)
                    .unwrap_or_default()
            } else if let Some(m) = &src.config_map_key_ref {
                config_map(client, &ns, &m.name)
                    .await
                    .remove(&m.key)
                    .unwrap_or_default()
            } else {
                continue;
            }
        } else {
            String::new()
        };
        env.insert(e.name.clone(), value);
    }
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let v = local_path(&v, &mounts);
            (k, v)
        })
        .collect();
    let program = c.command.as_ref().and_then(|c| c.first().cloned());
    (program, env)
}
