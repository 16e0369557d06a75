//! What a node needs from the machine, and one line saying what is missing.

use std::path::{Path, PathBuf};

use crate::assets;

/// The node's binaries from the envtest assets (v1.32, like the control plane).
pub(crate) const NODE_BINARIES: [&str; 4] = ["kubelet", "kube-scheduler", "kube-proxy", "pause"];
/// From Debian's packages (`scripts/setup.sh`).
const COMMANDS: [(&str, &str); 7] = [
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("iptables", "iptables"),
    ("ip", "iproute2"),
    ("flock", "util-linux"),
    ("debootstrap", "debootstrap"),
];
const CNI_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];
pub(crate) const CNI_BIN: &str = "/usr/lib/cni";

/// Where everything is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// etcd, kube-apiserver, kube-controller-manager and the node's binaries.
    pub bin: PathBuf,
    /// `images.json` of `scripts/build-images.py`.
    pub images: PathBuf,
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(command).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The images `scripts/build-images.py` wrote (`<target>/images/images.json`).
pub(crate) fn images_index() -> PathBuf {
    match std::env::var_os("STALLWATCH_IMAGES") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| assets::workspace_root().join("target"));
            target.join("images/images.json")
        }
    }
}

/// Everything a node needs, or one line naming what is missing and how to get it.
pub(crate) fn check() -> Result<Found, String> {
    let bin = assets::find()?;
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (containers, iptables and the bridge need it)".to_string());
    }
    let absent: Vec<&str> = NODE_BINARIES
        .iter()
        .copied()
        .filter(|b| !bin.join(b).is_file())
        .collect();
    if !absent.is_empty() {
        missing.push(format!(
            "{} in {} (../shared/envtest/bin has them)",
            absent.join(", "),
            bin.display()
        ));
    }
    let packages: Vec<&str> = COMMANDS
        .iter()
        .filter(|(c, _)| !on_path(c))
        .map(|(_, p)| *p)
        .chain(
            CNI_PLUGINS
                .iter()
                .any(|p| !Path::new(CNI_BIN).join(p).is_file())
                .then_some("containernetworking-plugins"),
        )
        .collect();
    if !packages.is_empty() {
        missing.push(format!(
            "Debian packages {} (scripts/setup.sh installs them)",
            packages.join(", ")
        ));
    }
    let images = images_index();
    if !images.is_file() {
        missing.push(format!(
            "the images ({} is missing: cargo build --release, cargo build --profile small \
             --bin transit-sidecar, then scripts/build-images.py)",
            images.display()
        ));
    }
    if missing.is_empty() {
        Ok(Found { bin, images })
    } else {
        Err(format!("no node here: missing {}", missing.join("; ")))
    }
}
