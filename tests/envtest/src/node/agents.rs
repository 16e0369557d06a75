//! The node's agents: kubelet, kube-scheduler and kube-proxy, each with a client certificate
//! of its own identity and a configuration fitted to this kind of machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::Error;
use crate::certs::{CertFiles, NodeCerts};
use crate::cluster::kubeconfig_yaml;
use crate::node::guard::write;
use crate::node::net::{KUBELET_PORT, NODE_IP, POD_SUBNET};
use crate::procs::{Group, Proc, free_port};

/// The node's name (its kubelet's identity is `system:node:<name>`).
pub const NODE_NAME: &str = "stallwatch-node";
/// The kubelet's cgroup root: every pod cgroup is under `/sys/fs/cgroup/*/<this>`.
pub(crate) const CGROUP_ROOT: &str = "stallwatch-node";

fn kubeconfig(
    dir: &Path,
    name: &str,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<PathBuf, Error> {
    let path = dir.join(format!("{name}.kubeconfig"));
    write(
        &path,
        &kubeconfig_yaml(
            server,
            ca,
            json!({"client-certificate": cert, "client-key": key}),
        ),
    )?;
    Ok(path)
}

/// The kubeconfig of one agent: the API server, our CA, and the client certificate and key
/// that `identity` picks from the node's certificates.
fn agent_kubeconfig(
    dir: &Path,
    name: &str,
    server: &str,
    certs: &CertFiles,
    identity: fn(&NodeCerts) -> (&Path, &Path),
) -> Result<PathBuf, Error> {
    let (cert, key) = identity(node_certs(certs)?);
    kubeconfig(dir, name, server, &certs.ca_cert, cert, key)
}

fn node_certs(certs: &CertFiles) -> Result<&NodeCerts, Error> {
    certs
        .node
        .as_ref()
        .ok_or_else(|| Error::Start("the control plane has no node certificates".into()))
}

/// Starts the kubelet.
pub(crate) fn kubelet(
    group: &Group,
    bin: &Path,
    dir: &Path,
    server: &str,
    certs: &CertFiles,
) -> Result<Proc, Error> {
    let node = node_certs(certs)?;
    let kubeconfig = agent_kubeconfig(dir, "kubelet", server, certs, |n| {
        (n.kubelet_cert.as_path(), n.kubelet_key.as_path())
    })?;
    // cgroupfs creates the pod cgroups under this root; it must exist in every hierarchy.
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let _ = std::fs::create_dir(e.path().join(CGROUP_ROOT));
        }
    }
    let config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        // This machine has cgroup v1 (hybrid); kubelet 1.32 refuses it unless told.
        "failCgroupV1": false,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": format!("/{CGROUP_ROOT}"),
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": node.kubelet_serving_cert,
        "tlsPrivateKeyFile": node.kubelet_serving_key,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": false},
            "x509": {"clientCAFile": certs.ca_cert},
        },
        // Only the API server's client certificate (our CA) gets in: the port is guarded.
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": format!("unix://{}", crate::node::runtime::socket(dir).display()),
        // No cluster DNS here: pods see Services through their environment.
        "resolvConf": "",
        "failSwapOn": false,
        // Images cannot be pulled back: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        // A busy shared disk must not evict test pods.
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": false,
        "syncFrequency": "10s",
        "fileCheckFrequency": "60s",
        "maxPods": 50,
        "protectKernelDefaults": false,
        "shutdownGracePeriod": "0s",
        "localStorageCapacityIsolation": true,
    });
    let config_path = dir.join("kubelet.yaml");
    write(
        &config_path,
        &serde_json::to_string_pretty(&config).expect("JSON"),
    )?;
    let mut cmd = Command::new(bin.join("kubelet"));
    cmd.arg(format!("--config={}", config_path.display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--root-dir={}", dir.join("kubelet").display()))
        .arg(format!("--cert-dir={}", dir.join("kubelet-pki").display()))
        .arg(format!("--hostname-override={NODE_NAME}"))
        .arg(format!("--node-ip={NODE_IP}"))
        .arg("--v=1");
    group.spawn("kubelet", cmd, &dir.join("kubelet.log"))
}

/// Starts kube-scheduler (flags only, no leader election).
pub(crate) fn scheduler(
    group: &Group,
    bin: &Path,
    dir: &Path,
    server: &str,
    certs: &CertFiles,
) -> Result<Proc, Error> {
    let kubeconfig = agent_kubeconfig(dir, "scheduler", server, certs, |n| {
        (n.scheduler_cert.as_path(), n.scheduler_key.as_path())
    })?;
    let mut cmd = Command::new(bin.join("kube-scheduler"));
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!(
            "--authentication-kubeconfig={}",
            kubeconfig.display()
        ))
        .arg(format!(
            "--authorization-kubeconfig={}",
            kubeconfig.display()
        ))
        .arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()));
    group.spawn("kube-scheduler", cmd, &dir.join("kube-scheduler.log"))
}

/// Starts kube-proxy in iptables mode, leaving the host's sysctls alone.
pub(crate) fn proxy(
    group: &Group,
    bin: &Path,
    dir: &Path,
    server: &str,
    certs: &CertFiles,
) -> Result<Proc, Error> {
    let kubeconfig = agent_kubeconfig(dir, "proxy", server, certs, |n| {
        (n.proxy_cert.as_path(), n.proxy_key.as_path())
    })?;
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_SUBNET,
        "bindAddress": NODE_IP,
        "healthzBindAddress": format!("127.0.0.1:{}", free_port()),
        "metricsBindAddress": format!("127.0.0.1:{}", free_port()),
        "nodePortAddresses": [format!("{NODE_IP}/32")],
        // 0: leave the host's conntrack sysctls as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        // false: kube-proxy would set route_localnet=1.
        "iptables": {"localhostNodePorts": false, "masqueradeAll": false, "syncPeriod": "30s", "minSyncPeriod": "0s"},
    });
    // kube-proxy exits when its config file changes: written once, never touched again.
    let config_path = dir.join("kube-proxy.yaml");
    write(
        &config_path,
        &serde_json::to_string_pretty(&config).expect("JSON"),
    )?;
    let mut cmd = Command::new(bin.join("kube-proxy"));
    cmd.arg(format!("--config={}", config_path.display()))
        .arg("--v=1");
    group.spawn("kube-proxy", cmd, &dir.join("kube-proxy.log"))
}
