//! Where the control plane's binaries are: `KUBEBUILDER_ASSETS` (controller-runtime's
//! convention, what `setup-envtest use 1.32.x -p path` prints), then `../shared/envtest/bin`
//! beside the workspace root.

use std::path::{Path, PathBuf};

const BINARIES: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// The workspace root: this crate lives in `<root>/tests/envtest`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn complete(dir: &Path) -> bool {
    BINARIES.iter().all(|b| dir.join(b).is_file())
}

/// The directory holding etcd, kube-apiserver and kube-controller-manager, or why there is none.
pub fn find() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let dir = PathBuf::from(dir);
        if complete(&dir) {
            return Ok(dir);
        }
        tried.push(format!("KUBEBUILDER_ASSETS={}", dir.display()));
    }
    let shared = workspace_root().join("../shared/envtest/bin");
    if complete(&shared) {
        return Ok(shared);
    }
    tried.push(shared.display().to_string());
    Err(format!(
        "no etcd/kube-apiserver/kube-controller-manager in {}; get them with \
         `setup-envtest use 1.32.x -p path` and set KUBEBUILDER_ASSETS to the directory it prints",
        tried.join(" or ")
    ))
}
