//! The operator's caches (reflectors): TransitStreams and the pods of the TransitStreams, each
//! trimmed on the way in to what the operator reads (footprint); the pod watch's selector and
//! its mapping to the TransitStream a pod belongs to.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use stallwatch_crds::{TransitStream, labels};
use tokio::sync::mpsc;

use super::{Gone, Scope, WatchBackoff, api};

/// Objects per list page when (re)filling the caches: small pages keep the transient memory
/// of a relist low (the API server default page is 500 full objects).
pub const LIST_PAGE_SIZE: u32 = 50;

/// Pods per list page: a pod as the API server serves it (defaulted spec, `managedFields`)
/// deserializes to about 90 KB before slimming, so a page of 50 held 4.5 MB at once (heap
/// profile of `benches/footprint_real.rs`); its pages are smaller.
pub const POD_LIST_PAGE_SIZE: u32 = 10;

/// The caches the operator keeps: TransitStreams and their pods, both slimmed.
pub struct Caches {
    /// The TransitStreams.
    pub streams: Store<TransitStream>,
    /// The pods of every TransitStream (label `stallwatch.io/transitstream`).
    pub pods: Store<Pod>,
    stream_writer: reflector::store::Writer<TransitStream>,
    pod_writer: reflector::store::Writer<Pod>,
    /// Where the TransitStream watch reports deletions (the reconciler forgets them).
    gone: Option<mpsc::UnboundedSender<Gone>>,
}

impl Caches {
    /// Empty caches, filled by [`cache_streams`].
    pub fn new() -> Self {
        let (streams, stream_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        Caches {
            streams,
            pods,
            stream_writer,
            pod_writer,
            gone: None,
        }
    }

    pub(super) fn reporting_deletions(mut self, gone: mpsc::UnboundedSender<Gone>) -> Self {
        self.gone = Some(gone);
        self
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
        gone,
    } = caches;
    let ts_stream = watcher(
        api::<TransitStream>(client, scope),
        watcher::Config::default().page_size(LIST_PAGE_SIZE),
    )
    .backoff(WatchBackoff::default())
    .modify(slim_stream)
    .reflect(stream_writer)
    .inspect_ok(move |event| {
        let report = match event {
            watcher::Event::Delete(ts) => Gone::Deleted(Box::new(ts.clone())),
            watcher::Event::InitDone => Gone::Relisted,
            _ => return,
        };
        if let Some(tx) = &gone {
            let _ = tx.send(report);
        }
    })
    .applied_objects();
    let pod_stream = watcher(
        api::<Pod>(client, scope),
        watcher::Config::default()
            .labels(&managed_pods_selector())
            .page_size(POD_LIST_PAGE_SIZE),
    )
    .backoff(WatchBackoff::default())
    .modify(slim_pod)
    .reflect(pod_writer)
    .touched_objects();
    (ts_stream, pod_stream, streams, pods)
}

/// Map a pod to its TransitStream (the controller's pod watch).
pub fn pod_to_stream(pod: &Pod) -> Option<ObjectRef<TransitStream>> {
    let name = pod.labels().get(labels::TRANSITSTREAM)?;
    let ns = pod.metadata.namespace.as_deref()?;
    Some(ObjectRef::new(name).within(ns))
}

/// Labels selecting every pod the operator manages (for the pod watch): its own
/// broadcasters' and the injected pods of referenced workloads, which both carry the
/// TransitStream label (the webhook adds it).
pub fn managed_pods_selector() -> String {
    labels::TRANSITSTREAM.to_string()
}

/// Keep only what the operator reads from a Pod in its cache (footprint): name, namespace,
/// uid, the TransitStream label, the opt-out annotation, the deletion timestamp, the
/// `DispatchHealthy` condition and the pod IP. Built anew rather than stripped, so fields a
/// real API server adds (`ownerReferences`, `hostIP`, `startTime`, `qosClass`, the other
/// labels...) never reach the cache (368 B of JSON per cached pod instead of 713).
pub fn slim_pod(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    let keep_only = |map: Option<BTreeMap<String, String>>, key: &str| {
        let kept: BTreeMap<String, String> = map
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == key)
            .collect();
        (!kept.is_empty()).then_some(kept)
    };
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels: keep_only(meta.labels, labels::TRANSITSTREAM),
        annotations: keep_only(meta.annotations, stallwatch_crds::OPT_OUT_ANNOTATION),
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    };
    pod.spec = None;
    pod.status = pod.status.take().map(|s| PodStatus {
        conditions: s.conditions.map(|mut cs| {
            // A failed PodScheduled says why a pod has no verdict (the status names it);
            // DumpStorageReady says whether the next stall's bundle can be written.
            cs.retain(|c| {
                c.type_ == stallwatch_core::condition::CONDITION_TYPE
                    || c.type_ == stallwatch_core::condition::DUMP_STORAGE_CONDITION_TYPE
                    || (c.type_ == "PodScheduled" && c.status == "False")
            });
            cs
        }),
        // Only waiting containers, and only why they wait: the status names it.
        container_statuses: s.container_statuses.and_then(|cs| {
            let waiting: Vec<_> = cs
                .into_iter()
                .filter_map(|c| {
                    let waiting = c.state?.waiting?;
                    Some(k8s_openapi::api::core::v1::ContainerStatus {
                        name: c.name,
                        state: Some(k8s_openapi::api::core::v1::ContainerState {
                            waiting: Some(waiting),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                })
                .collect();
            (!waiting.is_empty()).then_some(waiting)
        }),
        pod_ip: s.pod_ip,
        ..PodStatus::default()
    });
}

/// Keep only what the operator reads from a TransitStream in its cache.
pub fn slim_stream(ts: &mut TransitStream) {
    ts.metadata.managed_fields = None;
    if let Some(a) = ts.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests;
