//! The reconcile harness: a [`FakeApi`], reflector stores fed by hand, a settable clock, and
//! helpers to build pods and read status. Each user passes its own sidecar (a fake, or the
//! operator's real HTTP client).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use stallwatch_core::condition::{CONDITION_TYPE, StallReason, StalledStream, format_message};
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;
use transit_operator::Error;
use transit_operator::metrics::Metrics;
use transit_operator::reconcile::{Context, Settings, reconcile};
use transit_operator::sidecar::SidecarApi;

use crate::TransitStreamExt as _;
use crate::fake_api::{FakeApi, NS, T0, TS_PATH, Timeline};

/// `ms` (since the Unix epoch) as the API's MicroTime.
pub fn micro_time(ms: u64) -> MicroTime {
    MicroTime(Timestamp::from_millisecond(ms as i64).unwrap())
}

/// A remediation status whose history holds `n` finished restarts of pod `demo-old`, long
/// before [`T0`] (a spent budget for a small enough `n`).
pub fn spent_history(n: usize) -> Value {
    let at = micro_time;
    let entries: Vec<Value> = (0..n as u64)
        .map(|i| {
            json!({
                "id": format!("demo-old/all@{i}"), "pod": "demo-old", "stream": "all",
                "reason": "ChannelStuck",
                "stalledSince": at(T0 - 3_000_000 + i), "startedAt": at(T0 - 3_000_000 + i),
                "step": "Done", "stepStartedAt": at(T0 - 2_000_000),
                "restart": "Succeeded", "outcome": "Restarted", "finishedAt": at(T0 - 2_000_000)
            })
        })
        .collect();
    json!({"history": entries})
}

/// One operator context wired to a fake API, with the stores and clock it reads.
pub struct Harness {
    /// The fake API server the operator's client talks to.
    pub api: FakeApi,
    /// The operator's reconcile context, as `controller.rs` builds it.
    pub ctx: Arc<Context>,
    /// API and sidecar calls in the order they happened.
    pub timeline: Timeline,
    /// The pod store the context reads (fill it to stand for the watch).
    pub pods: Writer<Pod>,
    /// The TransitStream store the context reads.
    pub streams: Writer<TransitStream>,
    /// The operator's wall clock, milliseconds; starts at [`T0`].
    pub clock: Arc<AtomicU64>,
    /// The operator's metrics registry, to read counters back.
    pub registry: Registry,
}

/// The TransitStream `demo` in [`NS`], as the reconcile tests start from.
pub fn fixture() -> TransitStream {
    TransitStream::test("demo")
        .namespace(NS)
        .uid("ts-uid")
        .build()
}

/// A harness whose operator calls `sidecar`; API calls go on `timeline` too.
pub fn harness_with(
    timeout: Duration,
    timeline: Timeline,
    sidecar: Arc<dyn SidecarApi>,
) -> Harness {
    let api = FakeApi::new(timeline.clone());
    let (pod_store, pods) = reflector::store::<Pod>();
    let (ts_store, streams) = reflector::store::<TransitStream>();
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let ctx = Arc::new(Context::new(
        api.client(),
        Settings {
            default_image: "stallwatch:test".into(),
            max_concurrent_remediations: 2,
            reconcile_timeout: timeout,
            instance: Some("op-0".into()),
        },
        pod_store,
        ts_store,
        sidecar,
        metrics,
        Arc::new(move || c.load(Ordering::SeqCst)),
    ));
    Harness {
        api,
        ctx,
        timeline,
        pods,
        streams,
        clock,
        registry,
    }
}

impl Harness {
    /// Store the TransitStream in the API and the cache; returns what the controller would pass.
    pub fn stream(&mut self, ts: &TransitStream) -> Arc<TransitStream> {
        self.api.put(TS_PATH, serde_json::to_value(ts).unwrap());
        let stored: TransitStream = serde_json::from_value(self.api.get(TS_PATH).unwrap()).unwrap();
        self.streams
            .apply_watcher_event(&watcher::Event::Apply(stored.clone()));
        Arc::new(stored)
    }

    /// The TransitStream as the API now has it.
    pub fn current(&self) -> TransitStream {
        serde_json::from_value(self.api.get(TS_PATH).unwrap()).unwrap()
    }

    /// Put `pod` into the pod cache.
    pub fn pod(&mut self, pod: Pod) {
        self.pods.apply_watcher_event(&watcher::Event::Apply(pod));
    }

    /// A copy of the timeline so far.
    pub fn timeline(&self) -> Vec<String> {
        lock(&self.timeline).clone()
    }

    /// The operator's metrics, rendered.
    pub fn metrics(&self) -> String {
        transit_operator::metrics::render(&self.registry)
    }

    /// Reconcile the TransitStream as the API now has it (the cache updated first, as a
    /// watch event would).
    pub async fn reconcile(&mut self) -> Result<Action, Error> {
        let ts = Arc::new(self.current());
        self.streams
            .apply_watcher_event(&watcher::Event::Apply((*ts).clone()));
        reconcile(ts, self.ctx.clone()).await
    }
}

/// A pod of TransitStream `demo` at `pod_ip`: stalled (`DispatcherDead` on stream `all`)
/// since `stalled_since`, or healthy.
pub fn pod_with_ip(name: &str, uid: &str, stalled_since: Option<u64>, pod_ip: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some(NS.into());
    p.metadata.uid = Some(uid.into());
    p.metadata.labels = Some(stallwatch_crds::selector_labels("demo"));
    let condition = match stalled_since {
        Some(since) => PodCondition {
            type_: CONDITION_TYPE.into(),
            status: "False".into(),
            reason: Some("DispatcherDead".into()),
            message: Some(format_message(&[StalledStream {
                stream: "all".into(),
                reason: StallReason::DispatcherDead,
                depth: 5,
                capacity: 5,
                secs_since_dequeue: None,
            }])),
            last_transition_time: Some(Time(Timestamp::from_millisecond(since as i64).unwrap())),
            ..PodCondition::default()
        },
        None => PodCondition {
            type_: CONDITION_TYPE.into(),
            status: "True".into(),
            reason: Some("Healthy".into()),
            ..PodCondition::default()
        },
    };
    p.status = Some(PodStatus {
        pod_ip: Some(pod_ip.into()),
        conditions: Some(vec![condition]),
        ..PodStatus::default()
    });
    p
}

/// Where the first line containing `needle` is; panics with the timeline if none.
pub fn position(timeline: &[String], needle: &str) -> usize {
    timeline
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in timeline:\n{}", timeline.join("\n")))
}

/// How many lines contain `needle`.
pub fn count(timeline: &[String], needle: &str) -> usize {
    timeline.iter().filter(|l| l.contains(needle)).count()
}

/// The (status, reason) of condition `type_`; panics if missing.
pub fn condition(ts: &TransitStream, type_: &str) -> (String, String) {
    let c = ts
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}
