//! The control plane: etcd, kube-apiserver and kube-controller-manager on loopback, with
//! generated certificates, free ports and a temp dir; clients for the admin and for any
//! ServiceAccount.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use crate::certs::{self, CertFiles};
use crate::procs::{Group, Proc, free_port};
use crate::{Error, assets};

/// A running control plane. Dropping it stops every process and removes its directory.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: processes first, then the group's watchdog, then the dir.
    procs: Vec<Proc>,
    group: Group,
    dir: tempfile::TempDir,
    server: String,
    certs: CertFiles,
    admin_kubeconfig: PathBuf,
    started_in: Duration,
}

pub(crate) fn kubeconfig_yaml(server: &str, ca: &Path, user: serde_json::Value) -> String {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "user"}}],
        "current-context": "envtest",
    });
    serde_yaml::to_string(&config).expect("a kubeconfig serialises")
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

async fn client_from(kubeconfig: &Path) -> Result<Client, Error> {
    let file = Kubeconfig::read_from(kubeconfig).map_err(|e| Error::Kube(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kube(e.to_string()))?;
    Client::try_from(config).map_err(|e| Error::Kube(e.to_string()))
}

async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    procs: &mut [Proc],
    mut check: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(());
        }
        for p in procs.iter_mut() {
            if !p.alive() {
                return Err(Error::Start(format!(
                    "{what}: a process exited\n{}",
                    p.tail(40)
                )));
            }
        }
        if start.elapsed() > timeout {
            let tails: Vec<String> = procs.iter().map(|p| p.tail(20)).collect();
            return Err(Error::Start(format!(
                "{what} not ready after {timeout:?}\n{}",
                tails.join("\n")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager from the binaries in `bin`,
    /// and waits until the API server is ready.
    pub async fn start(bin: &Path) -> Result<ControlPlane, Error> {
        Self::start_inner(bin, None).await
    }

    /// The control plane of a node ([`crate::node`]): the API server listens on the node's
    /// bridge address `node.1` (pods reach it there; loopback clients too), advertises it as
    /// the `kubernetes` Service's endpoint, and may call the kubelet (logs, exec).
    pub(crate) async fn start_for_node(
        bin: &Path,
        node: (&str, &str),
    ) -> Result<ControlPlane, Error> {
        Self::start_inner(bin, Some(node)).await
    }

    async fn start_inner(bin: &Path, node: Option<(&str, &str)>) -> Result<ControlPlane, Error> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("stallwatch-envtest-")
            .tempdir()
            .map_err(|e| Error::io("creating the temp dir", e))?;
        let root = dir.path().to_path_buf();
        let group = Group::new(&root);
        let certs = certs::generate(&root, node)?;
        let mut procs = Vec::new();

        let etcd_url = format!("http://127.0.0.1:{}", free_port());
        let etcd = etcd_command(bin, &root, &etcd_url);
        procs.push(group.spawn("etcd", etcd, &root.join("etcd.log"))?);
        wait_for_etcd(&etcd_url, &mut procs).await?;

        let port = free_port();
        let host = node.map(|(_, ip)| ip).unwrap_or("127.0.0.1");
        let server = format!("https://{host}:{port}");
        let apiserver = apiserver_command(bin, &root, port, &etcd_url, &certs);
        procs.push(group.spawn(
            "kube-apiserver",
            apiserver,
            &root.join("kube-apiserver.log"),
        )?);
        let admin_kubeconfig = root.join("admin.kubeconfig");
        write(
            &admin_kubeconfig,
            &kubeconfig_yaml(
                &server,
                &certs.ca_cert,
                json!({"client-certificate": certs.admin_cert, "client-key": certs.admin_key}),
            ),
        )?;
        let admin = client_from(&admin_kubeconfig).await?;
        wait_for_apiserver(&admin, &mut procs).await?;

        let kcm_kubeconfig = root.join("kcm.kubeconfig");
        write(
            &kcm_kubeconfig,
            &kubeconfig_yaml(
                &server,
                &certs.ca_cert,
                json!({"client-certificate": certs.kcm_cert, "client-key": certs.kcm_key}),
            ),
        )?;
        let kcm = controller_manager_command(bin, &kcm_kubeconfig, &certs);
        procs.push(group.spawn(
            "kube-controller-manager",
            kcm,
            &root.join("kube-controller-manager.log"),
        )?);

        Ok(ControlPlane {
            procs,
            group,
            dir,
            server,
            certs,
            admin_kubeconfig,
            started_in: started.elapsed(),
        })
    }

    /// The control plane shared by every test of this test binary, started on first use;
    /// `None` (after printing one line saying why and how to get the binaries) when the
    /// binaries are missing. Its processes end when the test binary ends (see `procs`).
    pub fn shared(test: &str) -> Option<&'static ControlPlane> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let plane = SHARED.get_or_init(|| {
            let bin = assets::find()?;
            // Its own runtime on its own thread: the caller may be inside a test's runtime,
            // and the started processes outlive that runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let plane = rt
                    .block_on(ControlPlane::start(&bin))
                    .map_err(|e| e.to_string())?;
                crate::say(&format!(
                    "envtest: control plane ({}) started in {:.1?}",
                    bin.display(),
                    plane.started_in
                ));
                Ok(plane)
            })
            .join()
            .unwrap_or_else(|_| Err("starting the control plane panicked".into()))
        });
        match plane {
            Ok(plane) => Some(plane),
            Err(why) if why.starts_with("no etcd") => {
                crate::say(&format!("skipped {test}: real-API-server test, {why}"));
                None
            }
            Err(why) => panic!("the envtest control plane did not start: {why}"),
        }
    }

    /// Stops kube-apiserver and, `down_for` later, starts it again with the same command line
    /// (etcd, and so every object, kept): an API server restart as its clients see it. Returns
    /// how long it was away, until ready again. Needs a control plane of the test's own
    /// ([`ControlPlane::start`]), not the shared one.
    pub async fn restart_apiserver(&mut self, down_for: Duration) -> Result<Duration, Error> {
        // Start order: etcd, kube-apiserver, kube-controller-manager.
        let index = 1;
        let pid = self.procs[index].pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_err(|e| Error::io("reading the API server's command line", e))?;
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let started = Instant::now();
        self.procs[index].kill();
        tokio::time::sleep(down_for).await;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let log = self.dir.path().join("kube-apiserver-restarted.log");
        self.procs[index] = self.group.spawn("kube-apiserver", cmd, &log)?;
        let admin = client_from(&self.admin_kubeconfig).await?;
        wait_for_apiserver(&admin, &mut self.procs).await?;
        Ok(started.elapsed())
    }

    /// How long [`ControlPlane::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The control plane's temp dir (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kubeconfig for the admin (`system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A new admin client (a client is bound to the runtime that first uses it, so each test
    /// makes its own).
    pub async fn admin(&self) -> Client {
        client_from(&self.admin_kubeconfig)
            .await
            .expect("an admin client for the envtest API server")
    }

    /// Creates the namespace `name` (deleted again with [`ControlPlane::delete_namespace`]).
    pub async fn namespace(&self, name: &str) -> String {
        let api: Api<Namespace> = Api::all(self.admin().await);
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        // Pods are refused until the controller manager has created the `default` account.
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin().await, name);
        crate::eventually(
            &format!("the default ServiceAccount of {name}"),
            Duration::from_secs(20),
            || async { accounts.get_opt("default").await.ok().flatten() },
        )
        .await;
        name.to_string()
    }

    /// Deletes a namespace (best effort).
    pub async fn delete_namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.admin().await);
        let _ = api.delete(name, &DeleteParams::background()).await;
    }

    /// A bearer token for the ServiceAccount `namespace/name` (TokenRequest, one hour).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin().await, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let start = Instant::now();
        loop {
            match api
                .create_token_request(name, &PostParams::default(), &request)
                .await
            {
                Ok(t) => return t.status.expect("a token status").token,
                // The ServiceAccount may have just been applied.
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("TokenRequest for {namespace}/{name}: {e}"),
            }
        }
    }

    /// Writes a kubeconfig that authenticates as the ServiceAccount `namespace/name` and
    /// returns its path: for processes that use `kube::Client::try_default()` (`KUBECONFIG`).
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.service_account_token(namespace, name).await;
        let path = self
            .dir()
            .join(format!("sa-{namespace}-{name}-{}.kubeconfig", unique()));
        write(
            &path,
            &kubeconfig_yaml(&self.server, &self.certs.ca_cert, json!({"token": token})),
        )
        .expect("writing a kubeconfig");
        path
    }

    /// A client that authenticates as the ServiceAccount `namespace/name`.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let path = self.service_account_kubeconfig(namespace, name).await;
        client_from(&path).await.expect("a ServiceAccount client")
    }

    /// The certificates (node mode: the node's too).
    pub(crate) fn certs(&self) -> &CertFiles {
        &self.certs
    }

    /// The control plane's process group (for pod processes).
    pub(crate) fn group(&self) -> &Group {
        &self.group
    }

    /// The logs of the control plane's processes, for a failing test.
    pub fn tails(&self, lines: usize) -> String {
        let tails: Vec<String> = self.procs.iter().map(|p| p.tail(lines)).collect();
        tails.join("\n")
    }
}

/// A number unique in this process (file names).
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// etcd serving clients on `etcd_url`, its data under `root`.
fn etcd_command(bin: &Path, root: &Path, etcd_url: &str) -> Command {
    let mut etcd = Command::new(bin.join("etcd"));
    etcd.arg("--name=envtest")
        .arg(format!("--data-dir={}", root.join("etcd").display()))
        .arg(format!("--listen-client-urls={etcd_url}"))
        .arg(format!("--advertise-client-urls={etcd_url}"))
        // etcd's peer port must match its initial cluster; give it its own advertise URL.
        .arg(format!(
            "--listen-peer-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .arg(format!(
            "--listen-metrics-urls=http://127.0.0.1:{}",
            free_port()
        ))
        .arg("--quota-backend-bytes=4294967296")
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn");
    etcd
}

/// Waits until etcd's `/health` says healthy (or one of `procs` exits).
async fn wait_for_etcd(etcd_url: &str, procs: &mut [Proc]) -> Result<(), Error> {
    let http = reqwest::Client::new();
    let health = format!("{etcd_url}/health");
    wait_for("etcd", Duration::from_secs(30), procs, || {
        let http = http.clone();
        let health = health.clone();
        async move {
            match http.get(&health).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .is_ok_and(|t| t.contains("\"health\":\"true\"")),
                Err(_) => false,
            }
        }
    })
    .await
}

/// kube-apiserver on loopback `port`, backed by etcd at `etcd_url`.
fn apiserver_command(
    bin: &Path,
    root: &Path,
    port: u16,
    etcd_url: &str,
    certs: &CertFiles,
) -> Command {
    let p = path_arg;
    let mut apiserver = Command::new(bin.join("kube-apiserver"));
    apiserver
        .arg(format!("--secure-port={port}"))
        .arg(format!("--etcd-servers={etcd_url}"))
        .arg("--authorization-mode=Node,RBAC")
        .arg(format!("--client-ca-file={}", p(&certs.ca_cert)))
        .arg(format!("--tls-cert-file={}", p(&certs.serving_cert)))
        .arg(format!("--tls-private-key-file={}", p(&certs.serving_key)))
        .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
        .arg(format!("--service-account-key-file={}", p(&certs.sa_pub)))
        .arg(format!(
            "--service-account-signing-key-file={}",
            p(&certs.sa_key)
        ))
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        .arg("--profiling=false")
        .arg(format!("--cert-dir={}", p(&root.join("apiserver-certs"))));
    match &certs.node {
        None => {
            // The API server refuses a loopback address as the `kubernetes` Service's endpoint.
            apiserver
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg("--endpoint-reconciler-type=none");
        }
        Some(node) => {
            let ip = certs.node_ip.as_deref().unwrap_or("127.0.0.1");
            apiserver
                .arg(format!("--bind-address={ip}"))
                .arg(format!("--advertise-address={ip}"))
                .arg("--endpoint-reconciler-type=lease")
                .arg(format!(
                    "--kubelet-client-certificate={}",
                    p(&node.apiserver_kubelet_cert)
                ))
                .arg(format!(
                    "--kubelet-client-key={}",
                    p(&node.apiserver_kubelet_key)
                ))
                .arg("--kubelet-preferred-address-types=InternalIP");
        }
    }
    apiserver
}

/// Waits until the API server's `/readyz` answers `ok` to the admin (or one of `procs` exits).
async fn wait_for_apiserver(admin: &Client, procs: &mut [Proc]) -> Result<(), Error> {
    wait_for("kube-apiserver", Duration::from_secs(60), procs, || {
        let admin = admin.clone();
        async move {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a request");
            admin
                .request_text(req)
                .await
                .is_ok_and(|t| t.trim() == "ok")
        }
    })
    .await
}

/// kube-controller-manager with every controller, signing with the envtest CA.
fn controller_manager_command(bin: &Path, kubeconfig: &Path, certs: &CertFiles) -> Command {
    let p = path_arg;
    let mut kcm = Command::new(bin.join("kube-controller-manager"));
    kcm.arg(format!("--kubeconfig={}", p(kubeconfig)))
        .arg(format!("--authentication-kubeconfig={}", p(kubeconfig)))
        .arg(format!("--authorization-kubeconfig={}", p(kubeconfig)))
        .arg("--use-service-account-credentials=true")
        .arg(format!("--root-ca-file={}", p(&certs.ca_cert)))
        .arg(format!(
            "--service-account-private-key-file={}",
            p(&certs.sa_key)
        ))
        .arg(format!("--cluster-signing-cert-file={}", p(&certs.ca_cert)))
        .arg(format!("--cluster-signing-key-file={}", p(&certs.ca_key)))
        .arg("--controllers=*")
        .arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()))
        .arg("--service-cluster-ip-range=10.96.0.0/16");
    kcm
}
