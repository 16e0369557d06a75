//! containerd with its own root, state and socket in the node's directory, configured for
//! this kind of machine (cgroup v1 with cgroupfs, no hugetlb controller, no
//! CAP_SYS_RESOURCE for negative OOM scores), and images imported without a registry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Error;
use crate::node::guard::write;
use crate::node::prereq::CNI_BIN;
use crate::procs::{Group, Proc};

/// The pod sandbox image (built by `scripts/build-images.py` from the envtest `pause`).
pub(crate) const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// containerd's socket in `dir`.
pub(crate) fn socket(dir: &Path) -> PathBuf {
    dir.join("containerd/containerd.sock")
}

fn config(dir: &Path) -> String {
    let c = dir.join("containerd");
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{c}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # root here lacks CAP_SYS_RESOURCE: runc cannot write a negative oom_score_adj.
  restrict_oom_score_adj = true
  # cgroup v1 without the hugetlb controller mounted.
  tolerate_missing_hugetlb_controller = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"#,
        root = c.join("root").display(),
        state = c.join("state").display(),
        sock = socket(dir).display(),
        c = c.display(),
        pause = PAUSE_IMAGE,
        cni_bin = CNI_BIN,
        cni_conf = dir.join("cni/net.d").display(),
    )
}

/// Starts containerd and waits until it answers.
pub(crate) async fn start(group: &Group, dir: &Path) -> Result<Proc, Error> {
    let c = dir.join("containerd");
    std::fs::create_dir_all(&c).map_err(|e| Error::io("creating containerd's dir", e))?;
    // The shims put their sockets under /run/containerd whatever the state dir: remove it
    // on teardown if it was not there before.
    if !Path::new("/run/containerd").exists() {
        write(&dir.join("run-containerd-ours"), "")?;
    }
    let conf = c.join("config.toml");
    write(&conf, &config(dir))?;
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&conf).arg("--log-level=warn");
    let mut proc = group.spawn("containerd", cmd, &dir.join("containerd.log"))?;
    let start = Instant::now();
    loop {
        if ctr(dir, &["version"]).is_ok() {
            return Ok(proc);
        }
        if !proc.alive() {
            return Err(Error::Start(format!(
                "containerd exited\n{}",
                proc.tail(30)
            )));
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(Error::Start(format!(
                "containerd not answering after 30 s\n{}",
                proc.tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ctr -a <socket> -n k8s.io ARGS`.
pub(crate) fn ctr(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let sock = socket(dir).display().to_string();
    let mut all = vec!["-a", sock.as_str(), "-n", "k8s.io"];
    all.extend_from_slice(args);
    crate::node::net::run("ctr", &all)
}

/// Imports an OCI image archive into the CRI's namespace (unpacked for the snapshotter).
pub(crate) fn import(dir: &Path, archive: &Path) -> Result<(), Error> {
    let archive = archive.display().to_string();
    ctr(dir, &["images", "import", &archive]).map(|_| ())
}
