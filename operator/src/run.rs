//! The operator's start-up: the HTTP endpoints, the shutdown signal, leader election, then the
//! controller (in `controller`) while this replica leads.
//!
//! `main.rs` parses the CLI into a [`Config`] and calls [`run`]; nothing else starts here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::http::{HttpState, router};
use crate::leader::{Elector, KubeLeases};
use crate::metrics::Metrics;
use crate::reconcile::{Context, Settings, system_clock};
use crate::sidecar::HttpSidecar;
use crate::webhook::inject::InjectContext;
use crate::webhook::registration::{CertSource, keep_current, sync_once};
use crate::webhook::server::{
    ApiLookup, CertSlot, router as webhook_router, serve as serve_webhook,
};

// The controller's wiring lived here before start-up did; tests and the footprint bench still
// name it through this path.
pub use crate::controller::{
    Caches, LIST_PAGE_SIZE, POD_LIST_PAGE_SIZE, Scope, cache_streams, run_controller,
};

/// Worker threads of the operator's runtime unless told otherwise (`--worker-threads`).
///
/// One is enough: the work waits on the API server, and `block_on` polls [`run`] (so the
/// controller) on the main thread, so the lease renewals and HTTP endpoints, spawned onto the
/// worker, never wait behind a relist. Each more thread costs a glibc malloc arena whose freed
/// list pages the others cannot reuse: 2 workers measured +6 MiB RSS with 1,000
/// TransitStreams on a real API server (`benches/footprint_real.rs`, `operator/README.md`).
pub const DEFAULT_WORKER_THREADS: u16 = 1;

/// The Tokio runtime `transit-operator run` and the footprint benches run on.
pub fn runtime(worker_threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(worker_threads.max(1)))
        .enable_all()
        .build()
}

/// What `transit-operator run` needs, already parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace to watch; empty watches all namespaces.
    pub namespace: String,
    /// Broadcaster+sidecar image for TransitStreams that name none.
    pub default_image: String,
    /// Address of /metrics, /healthz, /readyz.
    pub http_addr: SocketAddr,
    /// Elect a leader with a Lease.
    pub leader_election: bool,
    pub lease_name: String,
    /// The operator's own namespace.
    pub lease_namespace: String,
    /// This replica's identity in the Lease (default: `$HOSTNAME`, then the process id).
    pub identity: Option<String>,
    pub lease_duration: Duration,
    pub max_concurrent_remediations: usize,
    pub reconcile_timeout: Duration,
    /// The sidecar-injection webhook; `None` serves none (TransitStreams with a
    /// `workloadRef` then get no sidecar).
    pub webhook: Option<WebhookConfig>,
}

/// The admission webhook's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The HTTPS address it listens on.
    pub addr: SocketAddr,
    /// Where its certificates come from (its own CA, or cert-manager's files).
    pub certs: CertSource,
    /// How often the certificates and the `caBundle` are checked.
    pub check_every: Duration,
}

/// Why the operator stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")]
    Connect(#[source] kube::Error),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election ended")]
    ElectionEnded(#[source] watch::error::RecvError),
    /// Lost the lease while running: the process exits so the pod restarts as a clean follower.
    #[error("lost the leader lease")]
    LostLease,
}

/// Runs the operator until SIGTERM/SIGINT (`Ok`) or until it loses the lease (`Err`).
pub async fn run(config: Config) -> Result<(), RunError> {
    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Connect)?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    serve_http(config.http_addr, registry, ready_rx).await?;
    let stop_rx = stop_on_signal();
    if let Some(webhook) = &config.webhook {
        start_webhook(webhook, &client, &config.default_image, stop_rx.clone()).await?;
    }

    let identity = identity(&config);
    let (lead_tx, lead_rx) = watch::channel(!config.leader_election);
    let elector_task = config.leader_election.then(|| {
        // A standby is ready (200) on purpose. The chart rolls the operator out with
        // `maxSurge: 1, maxUnavailable: 0`: the new pod must be Ready before the old one (the
        // leader) goes, and it cannot lead before the old one goes, so a standby that is not
        // Ready would stall every rollout; a PodDisruptionBudget would also count it as
        // disrupted and block node drains. Nothing routes traffic to the operator by
        // readiness. Who leads: the Lease, `stallwatch_operator_leader`, and the standby's log
        // line "standing by: waiting for the leader lease".
        ready_tx.send_replace(true);
        spawn_elector(&config, &client, &identity, lead_tx, stop_rx.clone())
    });

    if !wait_to_lead(lead_rx.clone(), stop_rx.clone()).await? {
        if let Some(t) = elector_task {
            let _ = t.await;
        }
        return Ok(());
    }
    metrics.leader.set(1);
    tracing::info!(identity = %identity, "leading; starting the controller");
    ready_tx.send_replace(false);

    let scope = scope(&config);
    let settings = settings(&config, identity);
    let shutdown = until_stopped_or_deposed(stop_rx.clone(), lead_rx);
    let ctl_client = client.clone();
    run_controller(
        client,
        scope,
        move |pods, streams| {
            Arc::new(Context::new(
                ctl_client,
                settings,
                pods,
                streams,
                Arc::new(HttpSidecar::new()),
                metrics.clone(),
                system_clock(),
            ))
        },
        ready_tx,
        shutdown,
    )
    .await;
    stop_elector(*stop_rx.borrow(), elector_task).await
}

/// Which namespace(s) the controller watches: all when `namespace` is empty.
fn scope(config: &Config) -> Scope {
    if config.namespace.is_empty() {
        Scope::All
    } else {
        Scope::Namespace(config.namespace.clone())
    }
}

/// The reconciler's settings, with this replica's lease identity as its instance.
fn settings(config: &Config, identity: String) -> Settings {
    Settings {
        default_image: config.default_image.clone(),
        max_concurrent_remediations: config.max_concurrent_remediations,
        reconcile_timeout: config.reconcile_timeout,
        instance: Some(identity),
    }
}

/// After the controller ended: on a shutdown signal the elector is awaited (it releases the
/// lease) and the run is `Ok`; otherwise the lease was lost, the elector is aborted and the
/// run fails.
async fn stop_elector(
    stopping: bool,
    elector_task: Option<tokio::task::JoinHandle<()>>,
) -> Result<(), RunError> {
    if let Some(t) = elector_task {
        if stopping {
            let _ = t.await;
        } else {
            t.abort();
        }
    }
    if stopping {
        Ok(())
    } else {
        Err(RunError::LostLease)
    }
}

/// Binds `/metrics`, `/healthz`, `/readyz` and serves them in the background.
async fn serve_http(
    addr: SocketAddr,
    registry: Registry,
    ready: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    let app = router(HttpState {
        registry: Arc::new(registry),
        ready,
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(())
}

/// Binds the webhook's port, then in the background: gets a certificate (retrying until the
/// API server answers), serves, and keeps the certificate current. Every replica serves it,
/// leader or not.
async fn start_webhook(
    config: &WebhookConfig,
    client: &kube::Client,
    default_image: &str,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.addr,
            source,
        })?;
    let app = webhook_router(
        Arc::new(ApiLookup(client.clone())),
        InjectContext {
            default_image: default_image.to_string(),
        },
    );
    let (client, config) = (client.clone(), config.clone());
    tokio::spawn(async move {
        let clock = system_clock();
        let mut serving = None;
        let slot = loop {
            match sync_once(&client, &config.certs, &mut serving, &clock).await {
                Ok(Some(key)) => break CertSlot::new(key),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "no webhook certificate yet; retrying");
                }
            }
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        tracing::info!(addr = %config.addr, "serving the sidecar-injection webhook");
        let mut until = stop.clone();
        tokio::spawn(serve_webhook(listener, app, slot.clone(), async move {
            let _ = until.wait_for(|s| *s).await;
        }));
        keep_current(
            client,
            config.certs,
            slot,
            serving,
            clock,
            config.check_every,
            stop,
        )
        .await;
    });
    Ok(())
}

/// A flag that turns true at the first SIGTERM/SIGINT.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stallwatch_core::shutdown::signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    stop_rx
}

fn identity(config: &Config) -> String {
    config
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("transit-operator-{}", std::process::id()))
}

fn spawn_elector(
    config: &Config,
    client: &kube::Client,
    identity: &str,
    lead_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let elector = Elector {
        store: KubeLeases::new(client.clone(), &config.lease_namespace, &config.lease_name),
        name: config.lease_name.clone(),
        identity: identity.to_string(),
        duration: config.lease_duration,
    };
    let clock = system_clock();
    tokio::spawn(async move {
        elector.run(lead_tx, move || clock(), stop).await;
    })
}

/// Waits to lead (`true`) or to be told to stop (`false`).
async fn wait_to_lead(
    mut lead: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, RunError> {
    tokio::select! {
        r = lead.wait_for(|l| *l) => { r.map_err(RunError::ElectionEnded)?; Ok(true) }
        _ = stop.wait_for(|s| *s) => Ok(false),
    }
}

/// Resolves at shutdown or when this replica stops leading.
async fn until_stopped_or_deposed(
    mut stop: watch::Receiver<bool>,
    mut lead: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = lead.wait_for(|l| !*l) => { tracing::warn!("leadership lost; stopping the controller"); }
    }
}
