//! The story on the node: a TransitStream whose broadcaster stalls in its real container, its
//! dump bundle on a hostPath PersistentVolume, the pod replaced by its ReplicaSet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use stallwatch_envtest::node::Node;

/// The storage class of the node's hand-made hostPath PersistentVolumes (no provisioner).
pub const HOSTPATH_CLASS: &str = "stallwatch-node-hostpath";

/// A hostPath PersistentVolume on `dir` bound to the claim `ns/claim`, and the claim, as YAML.
pub fn hostpath_volume(dir: &Path, ns: &str, claim: &str) -> String {
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("{ns}-{claim}")},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": HOSTPATH_CLASS,
            "hostPath": {"path": dir, "type": "Directory"},
            "claimRef": {"namespace": ns, "name": claim},
        },
    });
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": ns},
        "spec": {
            "storageClassName": HOSTPATH_CLASS,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    });
    format!(
        "{}\n---\n{}",
        serde_yaml::to_string(&pv).expect("YAML"),
        serde_yaml::to_string(&pvc).expect("YAML")
    )
}

/// Every bundle directory (holding `manifest.json`) under `dir`.
pub fn bundles(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.join("manifest.json").is_file() {
                found.push(p);
            } else {
                found.extend(bundles(&p));
            }
        }
    }
    found
}

/// What a poll of the stream's pods saw over time.
#[derive(Debug, Default)]
pub struct PodsSeen {
    pub names: Vec<String>,
    /// Deleted: no longer listed, or listed with a deletion timestamp (terminating).
    pub gone: BTreeSet<String>,
}

impl PodsSeen {
    /// One poll: new names appended, names no longer listed or terminating counted as gone.
    pub async fn poll(&mut self, pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let now: BTreeSet<String> = list
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        for name in &self.names {
            if !now.contains(name) {
                self.gone.insert(name.clone());
            }
        }
        for name in &now {
            if !self.names.contains(name) {
                self.names.push(name.clone());
            }
        }
        for p in &list {
            if p.metadata.deletion_timestamp.is_some() {
                self.gone.extend(p.metadata.name.clone());
            }
        }
        list
    }
}

/// The Events about `kind/name` in `ns`: `(reason, message)`.
pub async fn events(client: &Client, ns: &str, kind: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// The node's hostPath directory for a dump volume: owned by the sidecar's user (65532), as a
/// hostPath or local PersistentVolume must be (`fsGroup` does not apply to them).
pub fn dump_dir(node: &Node, name: &str) -> PathBuf {
    // As the chart README tells users to prepare a hostPath or local PV: owned by 65532 and
    // group-writable with setgid, so the uid-0 process-dump sidecar (gid 65532, no
    // DAC_OVERRIDE) writes it too. chmod after the chown, which may clear setgid.
    use std::os::unix::fs::PermissionsExt;
    let dir = node.volume_dir(name, Some((65532, 65532)), 0o2770);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2770))
        .expect("chmod the dump dir");
    dir
}
