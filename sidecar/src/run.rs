//! `transit-sidecar run`: wires the monitor, the three listeners, the ticker, the publisher
//! and the reactor together. [`start`] binds everything and returns the bound addresses, so
//! tests and benchmarks can run a whole sidecar in-process on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stallwatch_core::bundle::{DumpRequest, RetentionPolicy};
use stallwatch_core::verdict::{Change, VerdictConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::auth::AdminToken;
use crate::broadcaster::BroadcasterClient;
use crate::bundles::{BundleStore, LocalStorage, Storage};
use crate::capture::{Capturer, PodIdentity};
use crate::cli::{PublishMode, RunArgs};
use crate::http;
use crate::ingest::{self, IngestAddr, IngestAddrError};
use crate::metrics::Metrics;
use crate::monitor::{Monitor, Notice};
use crate::publish::{self, KubePublisher, PodTarget};

/// How often silence is checked for (`ReportsLost`).
pub const TICK: Duration = Duration::from_millis(100);
/// Captures started by `--dump-on-stall` are at least this far apart, so that a whole pod
/// going silent (every stream `ReportsLost` at once) yields one bundle, not fifty.
pub const AUTO_DUMP_MIN_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    IngestAddr(#[from] IngestAddrError),
    #[error("cannot parse {what} address {addr:?}")]
    Addr { what: &'static str, addr: String },
    #[error("cannot listen on {what} address {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
}

/// Where the ingest listener ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestBound {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A started sidecar.
pub struct Running {
    pub ingest: IngestBound,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub monitor: Arc<Monitor>,
    pub capturer: Arc<Capturer>,
    /// Why the sidecar does not publish to the Pod, or `None` when it does.
    pub not_publishing: Option<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop serving (in-flight requests finish) and wait for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sidecar".to_owned())
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    let parsed: SocketAddr = addr.parse().map_err(|_| StartError::Addr {
        what,
        addr: addr.to_owned(),
    })?;
    TcpListener::bind(parsed)
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: addr.to_owned(),
            source,
        })
}

/// Decide whether to publish to the Pod; `Err` says why not.
async fn make_publisher(args: &RunArgs) -> Result<KubePublisher, String> {
    if args.publish == PublishMode::Off {
        return Err("publishing is off (--publish off)".to_owned());
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        return Err("not running in a cluster (KUBERNETES_SERVICE_HOST is unset)".to_owned());
    }
    if args.pod_name.is_empty() || args.pod_namespace.is_empty() {
        return Err("POD_NAME and POD_NAMESPACE are needed to publish (downward API)".to_owned());
    }
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot build an in-cluster Kubernetes client: {e}"))?;
    Ok(KubePublisher::new(
        client,
        PodTarget {
            namespace: args.pod_namespace.clone(),
            name: args.pod_name.clone(),
            uid: args.pod_uid.clone(),
        },
    ))
}

/// Start a sidecar with the real file system.
pub async fn start(args: RunArgs) -> Result<Running, StartError> {
    start_with_storage(args, Arc::new(LocalStorage)).await
}

/// Start a sidecar whose bundle writes go through `storage` (tests inject faults here).
pub async fn start_with_storage(
    args: RunArgs,
    storage: Arc<dyn Storage>,
) -> Result<Running, StartError> {
    let ingest_addr: IngestAddr = args.ingest_addr.parse()?;
    let config = VerdictConfig {
        stall_after: args.stall_after,
        report_timeout: args.report_timeout,
        recover_after: args.recover_after,
    };
    let metrics = Arc::new(Metrics::new());
    let (monitor, outputs) = Monitor::new(config, metrics.clone());

    let token = match &args.admin_token_file {
        None => {
            tracing::warn!("no --admin-token-file: every admin request will answer 401");
            AdminToken::none()
        }
        Some(path) => AdminToken::from_file(path).unwrap_or_else(|e| {
            tracing::error!(error = %e, "admin token unavailable: every admin request will answer 401");
            AdminToken::none()
        }),
    };

    let identity = PodIdentity {
        namespace: if args.pod_namespace.is_empty() {
            "local".to_owned()
        } else {
            args.pod_namespace.clone()
        },
        pod: if args.pod_name.is_empty() {
            hostname()
        } else {
            args.pod_name.clone()
        },
        node: args.node_name.clone(),
    };
    let store = Arc::new(BundleStore::new(
        args.dump_dir.clone(),
        &identity.namespace,
        &identity.pod,
        RetentionPolicy {
            max_bundles: args.max_bundles,
            max_bytes: args.max_bytes,
        },
        storage,
    ));
    let stale = store.clean_stale_temps();
    if stale > 0 {
        tracing::warn!(
            removed = stale,
            "removed half-written bundles left by an earlier run"
        );
    }
    let broadcaster = BroadcasterClient::new(&args.broadcaster_admin_url);
    let capturer = Arc::new(Capturer::new(
        monitor.clone(),
        store.clone(),
        broadcaster.clone(),
        args.process_dump,
        args.task_dump_timeout,
        identity.clone(),
    ));

    let http_listener = bind("http", &args.http_addr).await?;
    let admin_listener = bind("admin", &args.admin_addr).await?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "http",
            addr: args.http_addr.clone(),
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "admin",
            addr: args.admin_addr.clone(),
            source,
        })?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stop = move || {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();

    let ingest_router = ingest::router(monitor.clone());
    let ingest = match ingest_addr {
        IngestAddr::Tcp(addr) => {
            let l = bind("ingest", &addr.to_string()).await?;
            let bound = l.local_addr().map_err(|source| StartError::Bind {
                what: "ingest",
                addr: addr.to_string(),
                source,
            })?;
            let fut = axum::serve(l, ingest_router).with_graceful_shutdown(stop());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::error!(error = %e, "ingest server failed");
                }
            }));
            IngestBound::Tcp(bound)
        }
        IngestAddr::Unix(path) => {
            // A socket left by a previous run would make bind fail.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) {
                let _ = std::fs::remove_file(&path);
            }
            let l = tokio::net::UnixListener::bind(&path).map_err(|source| StartError::Bind {
                what: "ingest",
                addr: path.display().to_string(),
                source,
            })?;
            let fut = axum::serve(l, ingest_router).with_graceful_shutdown(stop());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::error!(error = %e, "ingest server failed");
                }
            }));
            IngestBound::Unix(path)
        }
    };

    let http_fut =
        axum::serve(http_listener, http::router(monitor.clone())).with_graceful_shutdown(stop());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = http_fut.await {
            tracing::error!(error = %e, "http server failed");
        }
    }));
    let admin_state = AdminState {
        monitor: monitor.clone(),
        capturer: capturer.clone(),
        broadcaster,
    };
    let admin_fut = axum::serve(admin_listener, admin::router(admin_state, Arc::new(token)))
        .with_graceful_shutdown(stop());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = admin_fut.await {
            tracing::error!(error = %e, "admin server failed");
        }
    }));

    // Ticker: notices silence.
    {
        let monitor = monitor.clone();
        let stopped = stop();
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = interval.tick() => monitor.tick(),
                    _ = &mut stopped => return,
                }
            }
        }));
    }

    // Publisher.
    let (events_tx, not_publishing) = match make_publisher(&args).await {
        Ok(publisher) => {
            tracing::info!(
                pod = %args.pod_name, namespace = %args.pod_namespace,
                "publishing the {} pod condition and Events", stallwatch_core::condition::CONDITION_TYPE
            );
            let publisher = Arc::new(publisher);
            let (tx, rx) = mpsc::channel(64);
            let stopped = stop();
            let cond =
                publish::run_condition_loop(publisher.clone(), outputs.condition, metrics.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! { _ = cond => {}, _ = stopped => {} }
            }));
            let stopped = stop();
            let events = publish::run_event_loop(publisher, rx, metrics.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! { _ = events => {}, _ = stopped => {} }
            }));
            (Some(tx), None)
        }
        Err(why) => {
            tracing::warn!(
                "not publishing to the Pod: {why}; verdicts are on /v1/status, /readyz and /metrics only"
            );
            (None, Some(why))
        }
    };

    // Reactor: Events and dumps on stall.
    {
        let capturer = capturer.clone();
        let dump_on_stall = args.dump_on_stall;
        let mut notices = outputs.notices;
        let stopped = stop();
        let metrics = metrics.clone();
        tasks.push(tokio::spawn(async move {
            let mut last_auto: Option<Instant> = None;
            tokio::pin!(stopped);
            loop {
                let notice = tokio::select! {
                    n = notices.recv() => match n { Some(n) => n, None => return },
                    _ = &mut stopped => return,
                };
                if let (Some(tx), Some(event)) = (&events_tx, publish::event_for(&notice))
                    && tx.try_send(event).is_err()
                {
                    metrics.published("event_dropped", false);
                }
                if dump_on_stall
                    && let Notice::Verdict { transition, .. } = &notice
                    && let Change::Stalled { reason } = transition.change
                    && last_auto.is_none_or(|t| t.elapsed() >= AUTO_DUMP_MIN_INTERVAL)
                {
                    last_auto = Some(Instant::now());
                    let capturer = capturer.clone();
                    let req = DumpRequest {
                        stream: Some(transition.stream.clone()),
                        reason: Some(reason),
                        requested_by: Some("sidecar".to_owned()),
                    };
                    tokio::spawn(async move {
                        // Outcomes are logged, counted and turned into Events by `capture`.
                        let _ = capturer.capture(req).await;
                    });
                }
            }
        }));
    }

    tracing::info!(
        ingest = ?ingest, %http_addr, %admin_addr,
        stall_after = ?config.stall_after, report_timeout = ?config.report_timeout,
        recover_after = ?config.recover_after, dump_dir = %args.dump_dir.display(),
        process_dump = args.process_dump.as_str(),
        "transit-sidecar running"
    );
    Ok(Running {
        ingest,
        http_addr,
        admin_addr,
        monitor,
        capturer,
        not_publishing,
        shutdown: shutdown_tx,
        tasks,
    })
}
