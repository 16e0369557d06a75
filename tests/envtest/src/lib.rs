//! A real Kubernetes control plane for Stallwatch's tests, envtest-style: etcd,
//! kube-apiserver and kube-controller-manager run as plain processes on loopback (no kubelet,
//! no scheduler, no container runtime).
//!
//! - Binaries: `KUBEBUILDER_ASSETS`, then `<workspace>/../shared/envtest/bin` ([`assets`]).
//!   Without them [`ControlPlane::shared`] prints one "skipped" line and returns `None`, and
//!   the test returns (passes).
//! - One control plane per test binary ([`ControlPlane::shared`]); each test works in its own
//!   namespace.
//! - Clients: the admin, and any ServiceAccount through a TokenRequest, so a process runs with
//!   exactly the RBAC we ship.
//! - [`kubelet`]: plays the kubelet for one pod (status Running/Ready with `podIP` 127.0.0.1)
//!   and runs the pod's processes locally with the env and files the pod would get.
//! - [`apply`]: server-side apply of multi-document YAML; [`chart`]: the chart rendered with
//!   Helm's library (`.venv`, from `scripts/setup.sh`); [`helm`]: install, upgrade, uninstall
//!   with that library.
//! - [`node`]: a real one-node cluster (containerd, the CNI bridge, kubelet, kube-scheduler,
//!   kube-proxy) running the images of `scripts/build-images.py`; [`oci`] reads those images.
//!
//! Process hygiene: see `procs` (a process group and a pipe watchdog; no `unsafe`).
#![forbid(unsafe_code)]

pub mod apply;
pub mod assets;
mod certs;
pub mod chart;
mod cluster;
pub mod helm;
pub mod kubelet;
pub mod node;
pub mod oci;
mod procs;

pub use cluster::ControlPlane;
pub use procs::{Proc, free_port};

use std::future::Future;
use std::time::{Duration, Instant};

/// Why the harness could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certs(String),
    #[error("kube client: {0}")]
    Kube(String),
    #[error("control plane: {0}")]
    Start(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// One line on the test process's stderr, past libtest's output capture (which only takes
/// `print!`/`eprint!`), so that a skip is visible in a normal `cargo test` run.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Polls `check` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints how long a test took (the suite's budget is tracked from these lines).
pub struct Timer {
    name: String,
    start: Instant,
}

impl Timer {
    pub fn new(name: &str) -> Self {
        Timer {
            name: name.to_string(),
            start: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        println!("envtest: {} took {:.1?}", self.name, self.start.elapsed());
    }
}
