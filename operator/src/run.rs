//! The operator's start-up: the HTTP endpoints, the shutdown signal, leader election, then the
//! controller (in `controller`) while this replica leads.
//!
//! `main.rs` parses the CLI into a [`Config`] and calls [`run`]; nothing else starts here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::health::Health;
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
    run_controller_beating,
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
    /// `/healthz` fails once the controller loop has not gone round for this long (the
    /// elector's loop: this or the lease duration, whichever is longer).
    pub liveness_timeout: Duration,
    /// After SIGTERM/SIGINT, the process exits by itself at the latest this much later,
    /// whatever it was doing (below the chart's `terminationGracePeriodSeconds`, 30 s).
    pub shutdown_grace: Duration,
    /// Test hook: the loops to wedge (`controller`, `elector`), see
    /// [`crate::health::WEDGE_ENV`]; empty in production.
    pub test_wedge: String,
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
    let health = Health::new(&config.test_wedge);
    serve_http(config.http_addr, registry, ready_rx, health.clone()).await?;
    let stop_rx = stop_on_signal(config.shutdown_grace);
    if let Some(webhook) = &config.webhook {
        start_webhook(webhook, &client, &config.default_image, stop_rx.clone()).await?;
    }

    let identity = identity(&config);
    // The sender lives as long as this function: without an elector nothing else holds it,
    // and a dropped sender reads as "deposed" (issue 21: with `--leader-election false` the
    // controller stopped at once).
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
        let bound = config.liveness_timeout.max(config.lease_duration);
        let heartbeat = health.watch("elector", bound);
        spawn_elector(
            &config,
            &client,
            &identity,
            lead_tx.clone(),
            stop_rx.clone(),
            heartbeat,
        )
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
    let heartbeat = health.watch("controller", config.liveness_timeout);
    let controller = run_controller_beating(
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
        heartbeat,
    );
    until_done_or_drained(controller, stop_rx.clone(), config.shutdown_grace / 2).await;
    let stopped = stop_elector(*stop_rx.borrow(), elector_task).await;
    drop(lead_tx);
    stopped
}

/// Runs the controller until it ends, or until `drain` after the stop signal: its graceful
/// shutdown waits for reconciles in flight (a sidecar call can take a minute) and was seen
/// not to end at all while its watches kept failing, and the lease must still be released
/// within the grace. Cutting a reconcile short is safe: the ledger is written before every
/// effect, and the next leader resumes from it (as after a crash).
async fn until_done_or_drained(
    work: impl std::future::Future<Output = ()>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let drained = async move {
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        _ = work => {}
        _ = drained => tracing::warn!(
            ?drain,
            "the controller did not stop in time; leaving its reconciles in flight (each \
             step's ledger is persisted)"
        ),
    }
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
    health: Arc<Health>,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    let app = router(HttpState {
        registry: Arc::new(registry),
        ready,
        health,
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

/// A flag that turns true at the first SIGTERM/SIGINT; from then on the process exits within
/// `grace` whatever state it is in: a thread with a runtime of its own watches the signal
/// too, so a wedged loop, a request that never returns or a blocked worker cannot hold the
/// pod until the kubelet's SIGKILL.
fn stop_on_signal(grace: Duration) -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stallwatch_core::shutdown::signal().await;
        tracing::info!(grace = ?grace, "shutting down");
        stop_tx.send_replace(true);
    });
    stallwatch_core::shutdown::exit_at_grace_after_signal(grace, move || {
        tracing::warn!(grace = ?grace, "shutdown did not finish within its grace; exiting");
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
    heartbeat: crate::health::Heartbeat,
) -> tokio::task::JoinHandle<()> {
    let elector = Elector {
        store: KubeLeases::new(client.clone(), &config.lease_namespace, &config.lease_name),
        name: config.lease_name.clone(),
        identity: identity.to_string(),
        duration: config.lease_duration,
        last_seen: Default::default(),
    };
    let clock = system_clock();
    tokio::spawn(async move {
        elector
            .run_beating(lead_tx, move || clock(), stop, &heartbeat)
            .await;
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
