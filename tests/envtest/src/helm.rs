//! `helm install`, `upgrade` and `uninstall` of the chart with Helm's own library
//! (helm-python-sdk's `helm_python.config.Config`, in the `.venv` of `scripts/setup.sh`; no
//! helm binary), as a user's `helm` would do them against the cluster.

use std::path::Path;
use std::process::Command;

use crate::assets::workspace_root;
use crate::chart::chart_dir;

const ACTION: &str = r#"
import json, sys
from helm_python.config import Config
action, kubeconfig, namespace, release, chart, values, timeout = sys.argv[1:8]
config = Config(kubeconfig_path=kubeconfig, namespace=namespace)
values = json.loads(values)
if action == "install":
    r = config.install(chart, release, values, namespace=namespace, wait="watcher",
                       timeout=int(timeout), create_namespace=True)
elif action == "upgrade":
    r = config.upgrade(chart, release, values, namespace=namespace, wait="watcher",
                       timeout=int(timeout))
elif action == "uninstall":
    r = config.uninstall(release, wait="watcher", timeout=int(timeout))
else:
    r = {"releases": config.list()}
print(json.dumps(r, default=str))
"#;

/// What a Helm action returned (the release summary as JSON).
pub type Release = serde_json::Value;

fn run(
    action: &str,
    kubeconfig: &Path,
    namespace: &str,
    release: &str,
    values: &serde_json::Value,
    timeout_secs: u64,
) -> Result<Release, String> {
    let python = workspace_root().join(".venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} is missing: run scripts/setup.sh (it installs helm-python-sdk)",
            python.display()
        ));
    }
    let out = Command::new(&python)
        .arg("-c")
        .arg(ACTION)
        .arg(action)
        .arg(kubeconfig)
        .arg(namespace)
        .arg(release)
        .arg(chart_dir())
        .arg(values.to_string())
        .arg(timeout_secs.to_string())
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "helm {action} {release} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "helm {action}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `helm install --wait --create-namespace` of `charts/stallwatch` (its `crds/` first).
pub fn install(
    kubeconfig: &Path,
    namespace: &str,
    release: &str,
    values: &serde_json::Value,
    timeout_secs: u64,
) -> Result<Release, String> {
    run(
        "install",
        kubeconfig,
        namespace,
        release,
        values,
        timeout_secs,
    )
}

/// `helm upgrade --wait` with new values.
pub fn upgrade(
    kubeconfig: &Path,
    namespace: &str,
    release: &str,
    values: &serde_json::Value,
    timeout_secs: u64,
) -> Result<Release, String> {
    run(
        "upgrade",
        kubeconfig,
        namespace,
        release,
        values,
        timeout_secs,
    )
}

/// `helm uninstall --wait`.
pub fn uninstall(
    kubeconfig: &Path,
    namespace: &str,
    release: &str,
    timeout_secs: u64,
) -> Result<Release, String> {
    run(
        "uninstall",
        kubeconfig,
        namespace,
        release,
        &serde_json::json!({}),
        timeout_secs,
    )
}
