//! Renders the Helm chart the way `charts/validate.py` does: with Helm's own library
//! (helm-python-sdk, in the `.venv` that `scripts/setup.sh` creates). There is no helm binary.

use std::path::PathBuf;
use std::process::Command;

use crate::assets::workspace_root;

const RENDER: &str = r#"
import json, sys
import helm_python as helm
chart = helm.Chart.load(sys.argv[1])
files = chart.render(json.loads(sys.argv[2]), name=sys.argv[3], namespace=sys.argv[4], is_install=True)
docs = [text for path, text in sorted(files.items()) if path.endswith((".yaml", ".yml"))]
print("\n---\n".join(docs))
"#;

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/stallwatch")
}

/// The chart's CRDs (`charts/stallwatch/crds/*.yaml`, which `helm install` applies first).
pub fn crds() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("crds"))
        .expect("charts/stallwatch/crds")
        .map(|e| e.expect("a dir entry").path())
        .collect();
    files.sort();
    let docs: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("a CRD file"))
        .collect();
    docs.join("\n---\n")
}

/// The templates rendered with `values` for release `release` in `namespace`, as one
/// multi-document YAML; `Err` says why it cannot render here (no `.venv`: run
/// `scripts/setup.sh`) or what Helm said.
pub fn render(
    values: &serde_json::Value,
    release: &str,
    namespace: &str,
) -> Result<String, String> {
    let python = workspace_root().join(".venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} is missing: run scripts/setup.sh (it installs helm-python-sdk)",
            python.display()
        ));
    }
    let out = Command::new(&python)
        .arg("-c")
        .arg(RENDER)
        .arg(chart_dir())
        .arg(values.to_string())
        .arg(release)
        .arg(namespace)
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "rendering the chart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
