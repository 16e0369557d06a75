//! A real one-node cluster that runs real containers: the control plane of [`ControlPlane`]
//! plus containerd, the CNI bridge, kubelet, kube-scheduler and kube-proxy, with the images
//! of `scripts/build-images.py` imported (there is no registry).
//!
//! - One per machine at a time and one per test binary: [`Node::shared`] starts it on first
//!   use (in seconds) and every node test of that binary shares it, each in its own
//!   namespace(s). A second test binary waits for the machine-wide lock (see `guard`).
//! - Nothing leaves the machine (see `net`), and nothing is left behind: when the test
//!   process ends (exit, panic, SIGKILL) its watchdog stops every process, unmounts, removes
//!   the iptables chains and the bridge, restores the sysctls, and removes the directory.
//! - Where a piece is missing (root, the envtest binaries, Debian's `containerd runc
//!   containernetworking-plugins iptables debootstrap`, the built images) the test prints one
//!   `skipped` line saying what, and passes; with `STALLWATCH_REQUIRE_TEST_TOOLS=1` (as
//!   `scripts/test.sh` sets) it fails instead.
//!
//! Facts this rests on: `../shared/envtest/NODE.md`.

mod agents;
mod guard;
mod net;
mod prereq;
mod runtime;

pub use agents::NODE_NAME;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node as KubeNode, ServiceAccount};
use kube::Api;

use crate::procs::{Group, Proc};
use crate::{ControlPlane, Error};

/// The node's address on its bridge (the API server listens there too).
pub const NODE_IP: &str = net::NODE_IP;
/// The Service range (`kubernetes` is `10.96.0.1`).
pub const SERVICE_RANGE: &str = net::SERVICE_RANGE;

/// One built image: its reference and its archive.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Image {
    #[serde(rename = "ref")]
    pub reference: String,
    pub archive: PathBuf,
    pub config: String,
    /// `dockerfile` (release binaries, the small-profile sidecar) or `debug`.
    #[serde(default)]
    pub profile: Option<String>,
}

/// A running node with its control plane. It lives for the whole test binary.
#[derive(Debug)]
pub struct Node {
    plane: ControlPlane,
    dir: PathBuf,
    _group: Group,
    procs: Mutex<Vec<Proc>>,
    images: BTreeMap<String, Image>,
    imported: Mutex<Vec<String>>,
    timings: Mutex<Vec<(String, Duration)>>,
    _guard: guard::Guard,
}

fn required() -> bool {
    std::env::var_os("CI").is_some()
        || std::env::var_os("STALLWATCH_REQUIRE_TEST_TOOLS").is_some_and(|v| v == "1")
}

impl Node {
    /// The node shared by every test of this test binary, started on first use; `None`
    /// (after one line saying what is missing) where this machine cannot run one, unless the
    /// suite requires it (`STALLWATCH_REQUIRE_TEST_TOOLS=1`, `CI`): then it panics.
    pub fn shared(test: &str) -> Option<&'static Node> {
        static SHARED: OnceLock<Result<Node, String>> = OnceLock::new();
        let node = SHARED.get_or_init(|| {
            let found = prereq::check()?;
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let node = rt
                    .block_on(Node::start(&found))
                    .map_err(|e| e.to_string())?;
                crate::say(&node.summary());
                Ok(node)
            })
            .join()
            .unwrap_or_else(|_| Err("starting the node panicked".into()))
        });
        match node {
            Ok(node) => Some(node),
            Err(why) if why.starts_with("no ") && !required() => {
                crate::say(&format!("skipped {test}: node test, {why}"));
                None
            }
            Err(why) => panic!("the envtest node did not start: {why}"),
        }
    }

    async fn start(found: &prereq::Found) -> Result<Node, Error> {
        let started = Instant::now();
        let mut timings = Vec::new();
        let dir = tempfile::Builder::new()
            .prefix("stallwatch-node-")
            .tempdir()
            .map_err(|e| Error::io("creating the node's temp dir", e))?
            .keep();
        let guard = guard::Guard::acquire(&guard::Teardown {
            dir: dir.clone(),
            bridge: net::BRIDGE.to_string(),
            cgroup: agents::CGROUP_ROOT.to_string(),
            kube_proxy: found.bin.join("kube-proxy"),
        })?;
        net::setup(&dir)?;
        net::cni_config(&dir)?;
        let plane = ControlPlane::start_for_node(&found.bin, (NODE_NAME, NODE_IP)).await?;
        let port = plane
            .server()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::Start(format!("no port in {}", plane.server())))?;
        net::guard_port(port)?;
        timings.push(("control plane".to_string(), started.elapsed()));

        let group = Group::unwatched(&dir);
        let mut procs = vec![runtime::start(&group, &dir).await?];
        if let Some(pgid) = group.pgid() {
            guard::write(&dir.join("pgid"), &pgid.to_string())?;
        }
        let images = load_images(&found.images)?;
        // The ones every journey needs now; the others on first use (`Node::image`).
        let import = Instant::now();
        for name in EAGER_IMAGES {
            runtime::import(&dir, &images[name].archive)?;
        }
        timings.push((
            format!("import {}", EAGER_IMAGES.join(", ")),
            import.elapsed(),
        ));

        let server = plane.server().to_string();
        let certs = plane.certs().clone();
        procs.push(agents::kubelet(&group, &found.bin, &dir, &server, &certs)?);
        procs.push(agents::scheduler(
            &group, &found.bin, &dir, &server, &certs,
        )?);
        procs.push(agents::proxy(&group, &found.bin, &dir, &server, &certs)?);
        let node = Node {
            plane,
            dir,
            _group: group,
            procs: Mutex::new(procs),
            images,
            imported: Mutex::new(EAGER_IMAGES.iter().map(|s| s.to_string()).collect()),
            timings: Mutex::new(timings),
            _guard: guard,
        };
        node.wait_ready(started).await?;
        node.record("node start (all of it)", started.elapsed());
        Ok(node)
    }

    /// Waits until the Node is Ready and the `default` ServiceAccount exists.
    async fn wait_ready(&self, started: Instant) -> Result<(), Error> {
        let admin = self.plane.admin().await;
        let nodes: Api<KubeNode> = Api::all(admin.clone());
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, "default");
        loop {
            let ready = nodes
                .get_opt(NODE_NAME)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
            if ready && accounts.get_opt("default").await.ok().flatten().is_some() {
                return Ok(());
            }
            {
                let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(dead) = procs.iter_mut().find_map(|p| (!p.alive()).then_some(p)) {
                    return Err(Error::Start(format!(
                        "a node process exited\n{}",
                        dead.tail(40)
                    )));
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(Error::Start(format!(
                    "the node is not Ready after 120 s\n{}",
                    self.tails(30)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn summary(&self) -> String {
        let timings = self.timings();
        let parts: Vec<String> = timings
            .iter()
            .map(|(what, d)| format!("{what} {:.1}s", d.as_secs_f64()))
            .collect();
        let profile = self
            .images
            .get("stallwatch")
            .and_then(|i| i.profile.clone())
            .unwrap_or_else(|| "dockerfile".into());
        format!(
            "envtest node: {NODE_NAME} Ready ({}; images of the {profile} binaries)",
            parts.join(", ")
        )
    }

    /// Its control plane (admin client, ServiceAccount clients, namespaces).
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// A built image (`operator`, `stallwatch`, `stallwatch-debug`, `stallwatch-drill`,
    /// `report-client-python`, `pause`), imported into the node's containerd on first use.
    pub fn image(&self, name: &str) -> &Image {
        let image = self
            .images
            .get(name)
            .unwrap_or_else(|| panic!("no image {name}: run scripts/build-images.py"));
        let mut imported = self.imported.lock().unwrap_or_else(|p| p.into_inner());
        if !imported.iter().any(|i| i == name) {
            let start = Instant::now();
            runtime::import(&self.dir, &image.archive)
                .unwrap_or_else(|e| panic!("importing {name}: {e}"));
            imported.push(name.to_string());
            drop(imported);
            self.record(&format!("import {name}"), start.elapsed());
        }
        image
    }

    /// A directory for a hostPath PersistentVolume, created with `uid:gid` as owner and
    /// `mode`; it goes with the node.
    pub fn volume_dir(&self, name: &str, owner: Option<(u32, u32)>, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("volumes").join(name);
        std::fs::create_dir_all(&path).expect("creating a volume dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod a volume dir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown a volume dir");
        }
        path
    }

    /// The node's directory (logs of containerd, kubelet, kube-proxy, kube-scheduler).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records a timing (printed by [`Node::timings`] users and the journeys).
    pub fn record(&self, what: &str, took: Duration) {
        crate::say(&format!(
            "envtest node timing: {what}: {:.1}s",
            took.as_secs_f64()
        ));
        self.timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((what.to_string(), took));
    }

    /// Every timing recorded so far.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `ctr -n k8s.io ARGS` against the node's containerd.
    pub fn ctr(&self, args: &[&str]) -> Result<String, Error> {
        runtime::ctr(&self.dir, args)
    }

    /// The last `lines` of every node process's log, and the control plane's.
    pub fn tails(&self, lines: usize) -> String {
        let procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<String> = procs.iter().map(|p| p.tail(lines)).collect();
        all.push(self.plane.tails(lines));
        all.join("\n")
    }
}

/// Imported when the node starts: the sandbox and the chart's two images.
const EAGER_IMAGES: [&str; 3] = ["pause", "operator", "stallwatch"];

fn load_images(index: &Path) -> Result<BTreeMap<String, Image>, Error> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| Error::io(format!("reading {}", index.display()), e))?;
    let images: BTreeMap<String, Image> = serde_json::from_str(&text)
        .map_err(|e| Error::Start(format!("{}: {e}", index.display())))?;
    for required in EAGER_IMAGES {
        if !images.contains_key(required) {
            return Err(Error::Start(format!(
                "{} has no {required} image: run scripts/build-images.py",
                index.display()
            )));
        }
    }
    Ok(images)
}
