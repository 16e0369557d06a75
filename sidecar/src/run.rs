//! Start-up of `transit-sidecar run`: [`start`] builds the shared state (monitor, bundle store,
//! capturer), binds the three listeners, spawns the servers and the background tasks and
//! returns the bound addresses, so tests and benchmarks can run a whole sidecar in-process on
//! port 0. [`run`] is what the binary does with its parsed command line.
//!
//! Start-up only: the state modules (`monitor`, `bundles`, `capture`, ...) never import this
//! one. The steps live in submodules: `serve` (listeners and the serve-and-log helper),
//! `background` (ticker, publisher, reactor), `command` (logging, runtime, `inspect` output, exit
//! code for the binary).

mod background;
mod command;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use stallwatch_core::bundle::RetentionPolicy;
use stallwatch_core::verdict::VerdictConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::auth::AdminToken;
use crate::broadcaster::BroadcasterClient;
use crate::bundles::{BundleStore, LocalStorage, Storage};
use crate::capture::{Capturer, PodIdentity};
use crate::cli::{Cli, Command, RunArgs};
use crate::http;
use crate::ingest::{self, IngestAddr};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::monitor::Monitor;
use crate::scrape::ScrapeConfig;

pub use command::RunError;
use serve::Stop;
pub use serve::{IngestBound, StartError};

/// A started sidecar.
pub struct Running {
    pub ingest: IngestBound,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub monitor: Arc<Monitor>,
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

/// What the binary does with its parsed command line; the exit code says whether it worked.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => serve_until_signal(*args),
        Command::Inspect(args) => command::print_inspection(&args),
    };
    command::exit_code(result)
}

/// `transit-sidecar run`: start, wait for SIGTERM or SIGINT, drain.
fn serve_until_signal(args: RunArgs) -> Result<(), RunError> {
    command::init_tracing(args.log_format);
    command::runtime()?.block_on(async move {
        let grace = args.shutdown_grace;
        // Draining waits for requests in flight (a dump can take its whole timeout) and the
        // runtime's drop for blocking tasks (a process dump): the process still ends `grace`
        // after the signal.
        stallwatch_core::shutdown::exit_at_grace_after_signal(grace, move || {
            tracing::warn!(?grace, "shutdown did not finish within its grace; exiting");
        });
        let running = start(args).await.map_err(RunError::Start)?;
        stallwatch_core::shutdown::signal().await;
        tracing::info!(?grace, "shutting down");
        running.shutdown().await;
        Ok(())
    })
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
    let zero_code = zero_code(&args)?;
    let config = verdict_config(&args, zero_code.as_ref());
    let metrics = Arc::new(Metrics::new());
    let (monitor, outputs) = Monitor::new(config, metrics.clone());
    if let Some(cfg) = &zero_code {
        monitor.enable_zero_code(&cfg.url, args.metrics.metrics_history);
    }
    let token = admin_token(&args);
    let broadcaster = BroadcasterClient::new(&args.broadcaster_admin_url);
    let capturer = capturer(&args, storage, &monitor, &broadcaster);

    let (http_listener, http_addr) = serve::bind("http", &args.http_addr).await?;
    let (admin_listener, admin_addr) = serve::bind("admin", &args.admin_addr).await?;
    let (shutdown, stop) = Stop::new();
    let mut tasks = Vec::new();

    let ingest_router = ingest::router(monitor.clone());
    let (ingest, ingest_task) = serve::ingest(ingest_addr, ingest_router, stop.clone()).await?;
    tasks.push(ingest_task);
    let liveness = Arc::new(Liveness::new(args.liveness_timeout, &args.test_wedge));
    let http_router = http::router(monitor.clone(), liveness.clone());
    tasks.push(serve::serve(
        "http",
        http_listener,
        http_router,
        stop.clone(),
    ));
    let admin_state = AdminState {
        monitor: monitor.clone(),
        capturer: capturer.clone(),
        broadcaster,
    };
    let admin_router = admin::router(admin_state, Arc::new(token));
    tasks.push(serve::serve(
        "admin",
        admin_listener,
        admin_router,
        stop.clone(),
    ));

    tasks.push(background::ticker(monitor.clone(), liveness, stop.clone()));
    tasks.push(storage_prober(capturer.clone(), stop.clone()));
    if let Some(cfg) = zero_code.clone() {
        tasks.push(background::scraper(monitor.clone(), cfg, stop.clone()));
    }
    let published = background::publish(&args, outputs.condition, &capturer, &metrics, &stop).await;
    tasks.extend(published.tasks);
    tasks.push(background::reactor(
        background::Reactor {
            capturer: capturer.clone(),
            dump_on_stall: args.dump_on_stall,
            events: published.events,
            metrics,
        },
        outputs.notices,
        stop,
    ));
    tracing::info!(
        ingest = ?ingest, %http_addr, %admin_addr,
        stall_after = ?config.stall_after, report_timeout = ?config.report_timeout,
        recover_after = ?config.recover_after, dump_dir = %args.dump_dir.display(),
        process_dump = args.process_dump.as_str(),
        zero_code = zero_code.as_ref().map(|c| c.url.as_str()),
        "transit-sidecar running"
    );
    Ok(Running {
        ingest,
        http_addr,
        admin_addr,
        monitor,
        not_publishing: published.not_publishing,
        shutdown,
        tasks,
    })
}

/// The scrape configuration in zero-code mode (`--metrics-url`), `None` in report mode.
fn zero_code(args: &RunArgs) -> Result<Option<ScrapeConfig>, StartError> {
    let m = &args.metrics;
    Ok(m.mapping()
        .map_err(StartError::MetricsMapping)?
        .map(|mapping| ScrapeConfig {
            url: m.metrics_url.clone(),
            interval: m.metrics_interval,
            timeout: m.metrics_timeout,
            mapping,
        }))
}

fn verdict_config(args: &RunArgs, zero_code: Option<&ScrapeConfig>) -> VerdictConfig {
    // Zero-code mode judges no silence, but the verdict machine still measures "no progress"
    // afresh after a gap longer than report_timeout: keep that gap above a scrape interval
    // (plus a slow scrape), or no wait would ever last long enough to be judged.
    let report_timeout = match zero_code {
        Some(c) => args.report_timeout.max(c.interval * 2 + c.timeout),
        None => args.report_timeout,
    };
    VerdictConfig {
        stall_after: args.stall_after,
        report_timeout,
        recover_after: args.recover_after,
    }
}

/// The admin bearer token; without one every admin request answers 401 (logged once here).
fn admin_token(args: &RunArgs) -> AdminToken {
    match &args.admin_token_file {
        None => {
            tracing::warn!("no --admin-token-file: every admin request will answer 401");
            AdminToken::none()
        }
        Some(path) => AdminToken::from_file(path).unwrap_or_else(|e| {
            tracing::error!(error = %e, "admin token unavailable: every admin request will answer 401");
            AdminToken::none()
        }),
    }
}

/// Who this sidecar is in bundle paths and manifests; outside a cluster, `local/<hostname>`.
fn pod_identity(args: &RunArgs) -> PodIdentity {
    PodIdentity {
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
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sidecar".to_owned())
}

/// The bundle store (half-written bundles of an earlier run removed) and the capturer on it.
fn capturer(
    args: &RunArgs,
    storage: Arc<dyn Storage>,
    monitor: &Arc<Monitor>,
    broadcaster: &BroadcasterClient,
) -> Arc<Capturer> {
    let identity = pod_identity(args);
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
    let capturer = Arc::new(Capturer::new(
        monitor.clone(),
        store,
        broadcaster.clone(),
        args.process_dump,
        args.task_dump_timeout,
        identity,
    ));
    // At start, not at the first stall: a volume this sidecar cannot write shows now.
    let _ = capturer.probe_storage();
    capturer
}

/// How often the dump volume is probed after the start.
const STORAGE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Probes the dump volume again every minute: it can be fixed (ownership changed) or break
/// (remounted read-only, full) while the pod runs.
fn storage_prober(capturer: Arc<Capturer>, stop: Stop) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = stop.wait();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(STORAGE_PROBE_EVERY) => {}
                _ = &mut stopped => return,
            }
            let c = capturer.clone();
            let _ = tokio::task::spawn_blocking(move || c.probe_storage()).await;
        }
    })
}
