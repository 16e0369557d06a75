//! The tasks that run beside the servers: the ticker (silence), the publisher (pod condition
//! and Events) and the reactor (Events and dumps on stall).

use std::sync::Arc;
use std::time::{Duration, Instant};

use stallwatch_core::bundle::DumpRequest;
use stallwatch_core::verdict::Change;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::serve::Stop;
use crate::capture::Capturer;
use crate::cli::{PublishMode, RunArgs};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::monitor::{DesiredCondition, Monitor, Notice};
use crate::publish::{self, KubePublisher, PodEvent, PodTarget};
use stallwatch_core::condition::{CONDITION_TYPE, DUMP_STORAGE_CONDITION_TYPE};

/// How often silence is checked for (`ReportsLost`).
const TICK: Duration = Duration::from_millis(100);
/// Captures started by `--dump-on-stall` are at least this far apart, so that a whole pod
/// going silent (every stream `ReportsLost` at once) yields one bundle, not fifty.
const AUTO_DUMP_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Ticks the monitor every [`TICK`] so that silence (`ReportsLost`) is noticed, beating the
/// judge loop's liveness each time.
pub(super) fn ticker(
    monitor: Arc<Monitor>,
    liveness: Arc<Liveness>,
    shutdown: Stop,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let stopped = shutdown.wait();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = interval.tick() => monitor.tick(),
                _ = &mut stopped => return,
            }
            liveness.beat();
            tokio::select! {
                _ = liveness.wedge_point() => {}
                _ = &mut stopped => return,
            }
        }
    })
}

/// Zero-code mode: scrape the app's metrics until stopped.
pub(super) fn scraper(
    monitor: Arc<Monitor>,
    cfg: crate::scrape::ScrapeConfig,
    shutdown: Stop,
) -> JoinHandle<()> {
    until_stopped(crate::scrape::run(monitor, cfg), shutdown)
}

/// What [`publish`] started.
pub(super) struct Publishing {
    /// Where the reactor sends Events; `None` when not publishing.
    pub events: Option<mpsc::Sender<PodEvent>>,
    /// Why the sidecar does not publish, or `None` when it does.
    pub not_publishing: Option<String>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Publish the pod conditions (`DispatchHealthy` from the verdicts in `dispatch`,
/// `DumpStorageReady` from the capturer's dump volume probe) and Events when running in a
/// cluster with a pod identity.
pub(super) async fn publish(
    args: &RunArgs,
    dispatch: watch::Receiver<Option<DesiredCondition>>,
    capturer: &Capturer,
    metrics: &Arc<Metrics>,
    shutdown: &Stop,
) -> Publishing {
    let publisher = match make_publisher(args).await {
        Ok(publisher) => Arc::new(publisher),
        Err(why) => {
            tracing::warn!(
                "not publishing to the Pod: {why}; verdicts are on /v1/status, /readyz and /metrics only"
            );
            return Publishing {
                events: None,
                not_publishing: Some(why),
                tasks: Vec::new(),
            };
        }
    };
    tracing::info!(
        pod = %args.pod_name, namespace = %args.pod_namespace,
        "publishing the {} and {} pod conditions and Events",
        CONDITION_TYPE, DUMP_STORAGE_CONDITION_TYPE
    );
    let (tx, rx) = mpsc::channel(64);
    let cond =
        publish::run_condition_loop(publisher.clone(), CONDITION_TYPE, dispatch, metrics.clone());
    let storage = publish::run_condition_loop(
        publisher.clone(),
        DUMP_STORAGE_CONDITION_TYPE,
        capturer.storage_condition(),
        metrics.clone(),
    );
    let events = publish::run_event_loop(publisher, rx, metrics.clone());
    Publishing {
        events: Some(tx),
        not_publishing: None,
        tasks: vec![
            until_stopped(cond, shutdown.clone()),
            until_stopped(storage, shutdown.clone()),
            until_stopped(events, shutdown.clone()),
        ],
    }
}

fn until_stopped(
    task: impl Future<Output = ()> + Send + 'static,
    shutdown: Stop,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! { _ = task => {}, _ = shutdown.wait() => {} }
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

/// What the reactor acts with.
pub(super) struct Reactor {
    pub capturer: Arc<Capturer>,
    pub dump_on_stall: bool,
    pub events: Option<mpsc::Sender<PodEvent>>,
    pub metrics: Arc<Metrics>,
}

/// Turns notices into Events and, with `--dump-on-stall`, into bundles.
pub(super) fn reactor(
    reactor: Reactor,
    mut notices: mpsc::Receiver<Notice>,
    shutdown: Stop,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_auto: Option<Instant> = None;
        let stopped = shutdown.wait();
        tokio::pin!(stopped);
        loop {
            let notice = tokio::select! {
                n = notices.recv() => match n { Some(n) => n, None => return },
                _ = &mut stopped => return,
            };
            if let (Some(tx), Some(event)) = (&reactor.events, publish::event_for(&notice))
                && tx.try_send(event).is_err()
            {
                reactor.metrics.published("event_dropped", false);
            }
            if reactor.dump_on_stall
                && let Some(req) = auto_dump_request(&notice)
                && last_auto.is_none_or(|t| t.elapsed() >= AUTO_DUMP_MIN_INTERVAL)
            {
                last_auto = Some(Instant::now());
                let capturer = reactor.capturer.clone();
                tokio::spawn(async move {
                    // Outcomes are logged, counted and turned into Events by `capture`.
                    let _ = capturer.capture(req).await;
                });
            }
        }
    })
}

/// The bundle a new stall asks for, if the notice is one.
fn auto_dump_request(notice: &Notice) -> Option<DumpRequest> {
    let Notice::Verdict { transition, .. } = notice else {
        return None;
    };
    let Change::Stalled { reason } = transition.change else {
        return None;
    };
    Some(DumpRequest {
        stream: Some(transition.stream.clone()),
        reason: Some(reason),
        requested_by: Some("sidecar".to_owned()),
    })
}
