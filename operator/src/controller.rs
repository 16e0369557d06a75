//! The controller's wiring: the caches (`cache`: reflectors for TransitStreams and their
//! pods), the metadata-only watches of owned objects, and the controller itself until its
//! shutdown future fires (start-up and leader election: `run`).

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use stallwatch_crds::TransitStream;
use tokio::sync::{mpsc, watch};

use crate::drift::Drift;
use crate::health::{self, Heartbeat};
use crate::reconcile::{self, Context};

use self::cache::pod_to_stream;
#[cfg(test)]
pub(crate) use self::cache::slim_pod;
pub use self::cache::{Caches, LIST_PAGE_SIZE, POD_LIST_PAGE_SIZE, cache_streams};

/// Shortest and longest wait before a failed watch (or the controller's triggers after an
/// error) tries again.
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(500);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The backoff of every watch and of the controller's triggers: 0.5 s doubling up to 5 s,
/// reset by the next success. kube's default goes up to 30 s, and the controller applies it
/// to all its triggers at once: after an API server restart the first answer of every watch is
/// a 410 ("too old resource version", which only means "list again"), one more error on top of
/// the outage's, and a new TransitStream was reconciled 66 s after the API server was back
/// (issue 21, `tests/real_api_restart.rs`). A relist costs a list per kind, every 5 s at
/// worst while the API server refuses.
#[derive(Debug, Clone)]
pub(crate) struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_BACKOFF_MIN,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(WATCH_BACKOFF_MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_MIN;
    }
}

/// Labels on every object the operator applies (builders).
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=transit-operator";

/// Which namespace(s) to watch.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Namespace(String),
}

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Scope::All => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    }
}

/// What the TransitStream watch reports beside the objects it passes on: the controller
/// stream (`applied_objects`) carries no deletions, and the reconciler's per-resource state
/// must be dropped at deletion (issue 21). A watch event rather than a finalizer: a finalizer
/// would make every deletion wait for a running operator (and an uninstalled operator leaves
/// TransitStreams that cannot be deleted), for state that only lives in this process's memory
/// and that a restart drops anyway.
#[derive(Debug)]
pub(crate) enum Gone {
    Deleted(Box<TransitStream>),
    /// A (re)list completed: objects deleted while the watch was down got no event of their
    /// own; whatever is not in the cache now is gone.
    Relisted,
}

/// A metadata-only watch of one owned kind (no cache: the events feed [`Drift`] and trigger
/// the owner's reconcile).
fn owned_trigger<K>(
    client: &Client,
    scope: &Scope,
    drift: Arc<Drift>,
    streams: Store<TransitStream>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let kind = K::kind(&()).to_string();
    watcher(
        api::<PartialObjectMeta<K>>(client, scope),
        watcher::Config::default()
            .labels(MANAGED_SELECTOR)
            .page_size(LIST_PAGE_SIZE),
    )
    .backoff(WatchBackoff::default())
    .inspect_ok(move |event| match event {
        watcher::Event::Init => drift.relist_started(&kind),
        watcher::Event::InitApply(o) | watcher::Event::Apply(o) => drift.seen(&kind, &o.metadata),
        watcher::Event::Delete(o) => drift.deleted(&kind, &o.metadata, |ns, name| {
            streams.get(&ObjectRef::new(name).within(ns)).is_some()
        }),
        watcher::Event::InitDone => drift.relisted(&kind),
    })
    .touched_objects()
    // Logged and dropped here: a watch error passed on to the controller's trigger streams
    // was seen to stall them (a mock API refusing every owned kind's list: the caches never
    // synced); the watcher retries with backoff either way.
    .filter(move |r| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "watching owned objects failed; retrying");
        }
        futures::future::ready(r.is_ok())
    })
}

/// How often the controller loop beats its heartbeat when nothing else happens.
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// Run the controller until `shutdown` fires.
pub async fn run_controller(
    client: Client,
    scope: Scope,
    make_ctx: impl FnOnce(Store<Pod>, Store<TransitStream>) -> Arc<Context>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_controller_beating(
        client,
        scope,
        make_ctx,
        ready,
        shutdown,
        health::unwatched(),
    )
    .await
}

/// [`run_controller`], beating `heartbeat` each time the loop that drives the controller
/// goes round (a reconcile finished, a deletion handled, or every `BEAT_EVERY`).
pub async fn run_controller_beating(
    client: Client,
    scope: Scope,
    make_ctx: impl FnOnce(Store<Pod>, Store<TransitStream>) -> Arc<Context>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    heartbeat: Heartbeat,
) {
    let (gone_tx, gone) = mpsc::unbounded_channel();
    let caches = Caches::new().reporting_deletions(gone_tx);
    let (ts_stream, pod_stream, streams, pods) = cache_streams(&client, &scope, caches);
    let ctx = make_ctx(pods.clone(), streams.clone());
    let drift = ctx.drift.clone();
    let deployments = api::<PartialObjectMeta<Deployment>>(&client, &scope);
    report_ready_when_synced(streams.clone(), pods.clone(), ready);
    let owners = streams.clone();
    let deployment_stream = watcher(
        deployments,
        watcher::Config::default().labels(MANAGED_SELECTOR),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let controller = Controller::for_stream(ts_stream, streams)
        .with_config(
            ControllerConfig::default()
                .concurrency(16)
                .debounce(Duration::from_millis(50)),
        )
        .trigger_backoff(WatchBackoff::default())
        .owns_stream(deployment_stream);
    let results = with_owned_triggers(controller, &client, &scope, &drift, &owners)
        .watches_stream(pod_stream, |pod| pod_to_stream(&pod))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .map(|r| r.map(|(obj, _)| obj));
    drive(results, gone, &ctx, &heartbeat).await;
}

/// Polls the controller until it ends, forgets deleted TransitStreams, and beats: the beat
/// proves that this loop, which every watch event and reconcile goes through, still goes
/// round (a reconcile blocking its thread, or this loop stuck, stops it).
async fn drive<T: std::fmt::Display, E: std::fmt::Display>(
    results: impl futures::Stream<Item = Result<T, E>>,
    mut gone: mpsc::UnboundedReceiver<Gone>,
    ctx: &Context,
    heartbeat: &Heartbeat,
) {
    let mut results = std::pin::pin!(results);
    let mut tick = tokio::time::interval(BEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            r = results.next() => match r {
                Some(Ok(obj)) => tracing::debug!(resource = %obj, "reconciled"),
                Some(Err(e)) => tracing::debug!(error = %e, "reconcile failed"),
                None => return,
            },
            Some(g) = gone.recv() => match g {
                Gone::Deleted(ts) => ctx.forget(&ts),
                Gone::Relisted => ctx.forget_missing(),
            },
            _ = tick.tick() => {}
        }
        heartbeat.beat();
        heartbeat.wedge_point().await;
    }
}

/// Sends `true` on `ready` once both caches have synced (in the background).
fn report_ready_when_synced(
    streams: Store<TransitStream>,
    pods: Store<Pod>,
    ready: watch::Sender<bool>,
) {
    tokio::spawn(async move {
        // Re-poll with a fresh future each time: a waiter registered before the store's
        // first InitDone was seen to miss the wake-up.
        loop {
            let both = async {
                streams.wait_until_ready().await.is_ok() && pods.wait_until_ready().await.is_ok()
            };
            match tokio::time::timeout(Duration::from_millis(200), both).await {
                Ok(true) => {
                    tracing::info!("caches synced");
                    ready.send_replace(true);
                    return;
                }
                Ok(false) => return,
                Err(_) => continue,
            }
        }
    });
}

/// Every owned kind but Deployments: a deletion or someone else's change is re-applied at once.
fn with_owned_triggers(
    controller: Controller<TransitStream>,
    client: &Client,
    scope: &Scope,
    drift: &Arc<Drift>,
    owners: &Store<TransitStream>,
) -> Controller<TransitStream> {
    let d = || drift.clone();
    let o = || owners.clone();
    controller
        .owns_stream(owned_trigger::<Service>(client, scope, d(), o()))
        .owns_stream(owned_trigger::<ConfigMap>(client, scope, d(), o()))
        .owns_stream(owned_trigger::<Secret>(client, scope, d(), o()))
        .owns_stream(owned_trigger::<ServiceAccount>(client, scope, d(), o()))
        .owns_stream(owned_trigger::<Role>(client, scope, d(), o()))
        .owns_stream(owned_trigger::<RoleBinding>(client, scope, d(), o()))
        .owns_stream(owned_trigger::<PersistentVolumeClaim>(
            client,
            scope,
            d(),
            o(),
        ))
}

mod cache;

#[cfg(test)]
mod tests;
