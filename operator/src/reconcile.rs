//! The reconcile pipeline: fetch (from the caches), validate, build, apply, remediate, write
//! status. The remediation loop around `stallwatch_core::remediation::decide` persists the
//! ledger in status (server-side apply with a resourceVersion precondition) before every
//! effect.
//!
//! This file holds the operator's [`Settings`], the [`Context`] every reconcile shares (with
//! the per-resource state it keeps, keyed by uid) and the controller's entry points
//! ([`reconcile`], [`error_policy`]). The steps, one folder module each:
//! - `pipeline`: fetch → validate → build desired → apply → remediate → write status, for a
//!   deployed broadcaster and for a `spec.workloadRef`;
//! - `apply`: server-side apply of owned objects (recorded for drift) and the admin token;
//! - `status`: the status computed from what was observed, written at the end of a reconcile
//!   and with every step of the remediation ledger;
//! - `remediate`: the decide/act rounds, the stalls a rail holds back, the crash test hook;
//! - `effects`: each effect's I/O (sidecar calls, pod delete, rollout restart);
//! - `drill`: the `stallwatch.io/drill` annotation.
//!
//! Imports between them (no cycles): `pipeline → remediate → effects → apply`, `drill →
//! effects`, every step → `status` and this module.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;

use crate::drift::Drift;
use crate::error::{Error, Result, backoff};
use crate::metrics::Metrics;
use crate::sidecar::SidecarApi;

/// Field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "transit-operator";

/// Field manager of the rollout-restart annotation (kept apart so applies never drop it).
pub const RESTART_FIELD_MANAGER: &str = "transit-operator-restart";

/// Env var of the test hook that ends the process at once (exit 137, as a SIGKILL would, no
/// shutdown) right after an attempt's step named in it (`Recorded`, `Dump`, `Restart`, ...)
/// is on record. For tests only: it is how `tests/real_api_crash_phases.rs` restarts the
/// operator in each phase of an episode.
pub const CRASH_AFTER_ENV: &str = "STALLWATCH_TEST_CRASH_AFTER";

/// The operator's settings (from the CLI).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broadcaster and sidecar image when a TransitStream names none.
    pub default_image: String,
    /// Remediation attempts in flight at once, across every TransitStream.
    pub max_concurrent_remediations: usize,
    /// Bound on one reconcile, API calls and sidecar calls included.
    pub reconcile_timeout: Duration,
    /// The `instance` of the Event reporter (the pod name).
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_image: "stallwatch:latest".into(),
            max_concurrent_remediations: 2,
            reconcile_timeout: Duration::from_secs(60),
            instance: None,
        }
    }
}

/// Milliseconds since the Unix epoch (a fixed clock in tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Wall clock in ms since the Unix epoch.
pub fn system_clock() -> Clock {
    Arc::new(stallwatch_core::clock::now_ms)
}

/// Shared state of every reconcile.
pub struct Context {
    /// The API client every request goes through.
    pub client: Client,
    /// The operator's settings.
    pub settings: Settings,
    /// The pod cache (slimmed, `controller`'s `cache`).
    pub pods: Store<Pod>,
    /// The TransitStream cache.
    pub streams: Store<TransitStream>,
    /// The sidecars' admin API.
    pub sidecar: Arc<dyn SidecarApi>,
    /// The operator's metrics.
    pub metrics: Metrics,
    /// Publishes Events on TransitStreams (reporter `transit-operator`).
    pub recorder: Recorder,
    /// Now, in ms since the Unix epoch.
    pub clock: Clock,
    // Every per-resource map below is keyed by the TransitStream's uid, not its
    // namespace/name: a TransitStream deleted and created again under the same name (same
    // file re-applied) is a new object with generation 1 again, and must not inherit the old
    // one's "generation 1 already applied" (issue 21: only its Deployment came back). Entries
    // are dropped when the watch sees the deletion ([`Context::forget`]).
    /// Resources with an attempt in flight that this process knows of (the store may lag).
    in_flight: Mutex<HashSet<String>>,
    /// Consecutive failures per resource, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Admin tokens read from (or written to) the Secrets.
    tokens: Mutex<HashMap<String, String>>,
    /// The generation whose objects were applied last, per resource.
    applied: Mutex<HashMap<String, i64>>,
    /// The rail and stalled pods that last held each resource back (one Event and one count
    /// per change).
    blocked: Mutex<HashMap<String, String>>,
    /// Owned objects changed or deleted by someone else (fed by the controller's watches).
    pub(crate) drift: Arc<Drift>,
}

impl Context {
    /// A context with no per-resource state yet; `metrics` starts observing `streams`.
    pub fn new(
        client: Client,
        settings: Settings,
        pods: Store<Pod>,
        streams: Store<TransitStream>,
        sidecar: Arc<dyn SidecarApi>,
        metrics: Metrics,
        clock: Clock,
    ) -> Self {
        metrics.observe_streams(streams.clone());
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: settings.instance.clone(),
            },
        );
        Context {
            client,
            settings,
            pods,
            streams,
            sidecar,
            metrics,
            recorder,
            clock,
            in_flight: Mutex::default(),
            failures: Mutex::default(),
            tokens: Mutex::default(),
            applied: Mutex::default(),
            blocked: Mutex::default(),
            drift: Arc::default(),
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Attempts in flight for other resources: persisted ones (the store) and ones this
    /// process just started (not in the store yet), among resources that still exist.
    fn in_flight_elsewhere(&self, me: &str) -> usize {
        let known = lock(&self.in_flight).clone();
        self.streams
            .state()
            .iter()
            .filter(|t| {
                let key = uid_of(t);
                key != me
                    && (known.contains(&key)
                        || t.status
                            .as_ref()
                            .is_some_and(|s| s.remediation.in_flight.is_some()))
            })
            .count()
    }

    fn track_in_flight(&self, key: &str, in_flight: bool) {
        let mut set = lock(&self.in_flight);
        if in_flight {
            set.insert(key.to_string());
        } else {
            set.remove(key);
        }
        self.metrics.in_flight.set(set.len() as i64);
    }

    /// Drops everything this process remembers about a TransitStream that is gone (its uid's
    /// entries, and its drift marks). Called for the watch's delete events and when a
    /// reconcile finds it being deleted; a deletion missed while the watch was down leaves
    /// stale entries, which a new object cannot inherit (keyed by uid).
    pub fn forget(&self, ts: &TransitStream) {
        let uid = uid_of(ts);
        self.track_in_flight(&uid, false);
        lock(&self.failures).remove(&uid);
        lock(&self.tokens).remove(&uid);
        lock(&self.applied).remove(&uid);
        lock(&self.blocked).remove(&uid);
        self.drift.forget(&key_of(ts));
    }

    /// After a relist: forgets every TransitStream no longer in the cache (deleted while the
    /// watch was down, so no delete event came).
    pub fn forget_missing(&self) {
        let live: HashSet<String> = self.streams.state().iter().map(|t| uid_of(t)).collect();
        lock(&self.failures).retain(|uid, _| live.contains(uid));
        lock(&self.tokens).retain(|uid, _| live.contains(uid));
        lock(&self.applied).retain(|uid, _| live.contains(uid));
        lock(&self.blocked).retain(|uid, _| live.contains(uid));
        let mut in_flight = lock(&self.in_flight);
        in_flight.retain(|uid| live.contains(uid));
        self.metrics.in_flight.set(in_flight.len() as i64);
    }

    /// How many resources this process holds per-resource state for (tests: nothing left
    /// behind by deleted TransitStreams).
    pub fn remembered(&self) -> usize {
        let mut uids: HashSet<String> = lock(&self.failures).keys().cloned().collect();
        uids.extend(lock(&self.tokens).keys().cloned());
        uids.extend(lock(&self.applied).keys().cloned());
        uids.extend(lock(&self.blocked).keys().cloned());
        uids.extend(lock(&self.in_flight).iter().cloned());
        uids.len()
    }
}

/// The key of the per-resource state: the uid (a re-created TransitStream is a new one), or
/// `namespace/name` for an object without one (only in unit tests' fixtures).
fn uid_of(ts: &TransitStream) -> String {
    ts.metadata.uid.clone().unwrap_or_else(|| key_of(ts))
}

fn key_of(ts: &TransitStream) -> String {
    format!(
        "{}/{}",
        ts.metadata.namespace.as_deref().unwrap_or_default(),
        ts.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Reconcile one TransitStream, bounded by the reconcile timeout.
pub async fn reconcile(ts: Arc<TransitStream>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let bound = ctx.settings.reconcile_timeout;
    let result = match tokio::time::timeout(bound, pipeline::reconcile_inner(&ts, &ctx)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(bound)),
    };
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        lock(&ctx.failures).remove(&uid_of(&ts));
    }
    result
}

/// Requeue with exponential backoff per resource; counts the error by variant.
pub fn error_policy(ts: Arc<TransitStream>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.label());
    let failures = {
        let mut map = lock(&ctx.failures);
        let n = map.entry(uid_of(&ts)).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(failures, error);
    tracing::warn!(resource = %key_of(&ts), error = %error, failures, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Where one TransitStream lives: its namespace, name, cache key, uid (the key of this
/// process's state about it) and API.
struct Target {
    ns: String,
    name: String,
    key: String,
    uid: String,
    api: Api<TransitStream>,
}

impl Target {
    fn of(ts: &TransitStream, ctx: &Context) -> Result<Self> {
        let ns = ts
            .metadata
            .namespace
            .clone()
            .ok_or(Error::MissingObjectKey("namespace"))?;
        let name = ts
            .metadata
            .name
            .clone()
            .ok_or(Error::MissingObjectKey("name"))?;
        Ok(Target {
            api: Api::namespaced(ctx.client.clone(), &ns),
            key: key_of(ts),
            uid: uid_of(ts),
            ns,
            name,
        })
    }
}

/// Publish an Event on the TransitStream; failures are logged, never fatal.
async fn publish(
    ctx: &Context,
    ts: &TransitStream,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(stallwatch_core::report::truncate(&note, 1000)),
        action: action.into(),
        secondary: None,
    };
    tracing::info!(resource = %key_of(ts), reason, "{note}");
    if let Err(e) = ctx.recorder.publish(&event, &ts.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "publishing an Event failed");
    }
}

mod apply;
mod drill;
mod effects;
mod pipeline;
mod remediate;
mod status;
