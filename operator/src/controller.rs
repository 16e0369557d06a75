//! The controller's wiring: caches (reflectors) for TransitStreams and their pods, and the
//! controller itself until its shutdown future fires (start-up and leader election: `run`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use stallwatch_crds::TransitStream;
use tokio::sync::watch;

use crate::reconcile::{
    self, Context, managed_pods_selector, pod_to_stream, slim_pod, slim_stream,
};

/// Objects per list page when (re)filling the caches: small pages keep the transient memory
/// of a relist low (the API server default page is 500 full objects).
pub const LIST_PAGE_SIZE: u32 = 50;

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

/// The caches the operator keeps: TransitStreams and their pods, both slimmed.
pub struct Caches {
    pub streams: Store<TransitStream>,
    pub pods: Store<Pod>,
    stream_writer: reflector::store::Writer<TransitStream>,
    pod_writer: reflector::store::Writer<Pod>,
}

impl Caches {
    pub fn new() -> Self {
        let (streams, stream_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        Caches {
            streams,
            pods,
            stream_writer,
            pod_writer,
        }
    }
}

impl Default for Caches {
    fn default() -> Self {
        Self::new()
    }
}

/// The watch streams that fill the caches (each must be polled).
#[allow(clippy::type_complexity)] // two opaque stream types and their stores
pub fn cache_streams(
    client: &Client,
    scope: &Scope,
    caches: Caches,
) -> (
    impl futures::Stream<Item = Result<TransitStream, watcher::Error>> + Send + 'static,
    impl futures::Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
    Store<TransitStream>,
    Store<Pod>,
) {
    let Caches {
        streams,
        pods,
        stream_writer,
        pod_writer,
    } = caches;
    let ts_stream = watcher(
        api::<TransitStream>(client, scope),
        watcher::Config::default().page_size(LIST_PAGE_SIZE),
    )
    .default_backoff()
    .modify(slim_stream)
    .reflect(stream_writer)
    .applied_objects();
    let pod_stream = watcher(
        api::<Pod>(client, scope),
        watcher::Config::default()
            .labels(&managed_pods_selector())
            .page_size(LIST_PAGE_SIZE),
    )
    .default_backoff()
    .modify(slim_pod)
    .reflect(pod_writer)
    .touched_objects();
    (ts_stream, pod_stream, streams, pods)
}

/// Run the controller until `shutdown` fires.
pub async fn run_controller(
    client: Client,
    scope: Scope,
    make_ctx: impl FnOnce(Store<Pod>, Store<TransitStream>) -> Arc<Context>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (ts_stream, pod_stream, streams, pods) = cache_streams(&client, &scope, Caches::new());
    let ctx = make_ctx(pods.clone(), streams.clone());
    let deployments = api::<Deployment>(&client, &scope);
    let ready_streams = streams.clone();
    let ready_pods = pods.clone();
    tokio::spawn(async move {
        // Re-poll with a fresh future each time: a waiter registered before the store's
        // first InitDone was seen to miss the wake-up.
        loop {
            let both = async {
                ready_streams.wait_until_ready().await.is_ok()
                    && ready_pods.wait_until_ready().await.is_ok()
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
    Controller::for_stream(ts_stream, streams)
        .with_config(
            ControllerConfig::default()
                .concurrency(16)
                .debounce(Duration::from_millis(50)),
        )
        .owns(
            deployments,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=transit-operator"),
        )
        .watches_stream(pod_stream, |pod| pod_to_stream(&pod))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(resource = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
}
