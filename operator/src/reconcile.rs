//! The reconcile pipeline: fetch (from the caches), validate, build, apply, remediate, write
//! status. The remediation loop around `stallwatch_core::remediation::decide` persists the
//! ledger in status (server-side apply with a resourceVersion precondition) before every
//! effect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stallwatch_core::remediation::{
    self as rem, Blocked, Decision, Effect, EffectResult, Ledger, Observation, PodState,
};
use stallwatch_core::sync::lock;
use stallwatch_crds::{TransitStream, TransitStreamStatus, condition_types as ct, labels};

use crate::builders::{self, BuildContext, RESTARTED_AT_ANNOTATION, TOKEN_KEY};
use crate::drift::Drift;
use crate::error::{Error, Result, backoff};
use crate::metrics::{Metrics, OutcomeLabels, ReasonLabels, StepLabels};
use crate::observe::{self, Observed};
use crate::sidecar::{SidecarApi, SidecarTarget};
use crate::workload;

/// Field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "transit-operator";
/// Field manager of the rollout-restart annotation (kept apart so applies never drop it).
pub const RESTART_FIELD_MANAGER: &str = "transit-operator-restart";
/// Most decide/act rounds in one reconcile (an attempt has at most 8 transitions).
const MAX_ROUNDS: usize = 12;
/// Env var of the test hook that ends the process at once (exit 137, as a SIGKILL would, no
/// shutdown) right after an attempt's step named in it (`Recorded`, `Dump`, `Restart`, ...)
/// is on record. For tests only: it is how `tests/real_api_crash_phases.rs` restarts the
/// operator in each phase of an episode.
pub const CRASH_AFTER_ENV: &str = "STALLWATCH_TEST_CRASH_AFTER";
/// Periodic resync when nothing else is due.
const RESYNC: Duration = Duration::from_secs(300);

/// The operator's settings (from the CLI).
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_image: String,
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

pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Wall clock in ms since the Unix epoch.
pub fn system_clock() -> Clock {
    Arc::new(stallwatch_core::clock::now_ms)
}

/// Shared state of every reconcile.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub pods: Store<Pod>,
    pub streams: Store<TransitStream>,
    pub sidecar: Arc<dyn SidecarApi>,
    pub metrics: Metrics,
    pub recorder: Recorder,
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
    let result = match tokio::time::timeout(bound, reconcile_inner(&ts, &ctx)).await {
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

/// The pipeline: fetch (the resource's key) → validate → build desired → apply → remediate →
/// write status. Each step is one function below.
async fn reconcile_inner(ts: &TransitStream, ctx: &Context) -> Result<Action> {
    let target = Target::of(ts, ctx)?;
    if ts.metadata.deletion_timestamp.is_some() {
        // Owned objects go with it (owner references); nothing to clean up by hand.
        ctx.forget(ts);
        return Ok(Action::await_change());
    }
    if ctx.drift.is_dirty(&target.key) && !still_exists(&target, ts).await? {
        ctx.forget(ts);
        return Ok(Action::await_change());
    }
    let mut ts = ts.clone();

    // Validate (pure). An invalid spec is reported and waits for a change.
    let invalid = stallwatch_crds::validate(&ts.spec);
    if !invalid.is_empty() {
        report_invalid(ctx, &target, &mut ts, &invalid).await?;
        return Ok(Action::await_change());
    }

    drill::handle(ctx, &target, &mut ts).await?;

    if let Some(reference) = ts.spec.workload_ref.clone() {
        return reconcile_workload_ref(ctx, &target, &mut ts, &reference).await;
    }
    let desired = build_desired(ctx, &ts);
    let deployment = apply_desired(ctx, &target, &ts, &desired).await?;
    let (ledger, blocked, requeue) = remediate(ctx, &target, &mut ts, &deployment).await?;
    write_observed_status(ctx, &target, &mut ts, &deployment, &ledger, blocked, None).await?;
    Ok(requeue)
}

/// The pipeline for a TransitStream that protects an existing workload: no broadcaster is
/// deployed and the workload is never written; the sidecar's Role (bound to the workload's
/// pod ServiceAccount), the admin token and a templated dump claim are applied, then the
/// same remediation (dump through the injected sidecar, restart = delete the pod) and a
/// status that says which pods are covered.
async fn reconcile_workload_ref(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    reference: &stallwatch_crds::WorkloadRef,
) -> Result<Action> {
    let ns = &target.ns;
    let view = workload::fetch(&ctx.client, ns, reference).await?;
    ensure_token(ctx, ts, ns, &target.name, true).await?;
    apply(ctx, ns, &builders::role(ts)).await?;
    if let Some(v) = &view {
        apply(ctx, ns, &workload::role_binding(ts, &v.service_account)).await?;
    }
    if let Some(claim) = builders::dump_claim(ts) {
        apply(ctx, ns, &claim).await?;
    }
    let pods = match &view {
        Some(v) => workload::list_pods(&ctx.client, ns, v).await?,
        None => Vec::new(),
    };
    let coverage = workload::coverage(&target.name, reference, view.as_ref(), &pods);
    let others = workload::claimed_by_others(&target.name, &pods);
    // The status's replica counters are the workload's (never written back to the spec).
    let deployment = view
        .as_ref()
        .map(|v| {
            ts.spec.replicas = v.replicas;
            v.as_deployment.clone()
        })
        .unwrap_or_default();
    let (ledger, blocked, requeue) = remediate(ctx, target, ts, &deployment).await?;
    write_observed_status(
        ctx,
        target,
        ts,
        &deployment,
        &ledger,
        blocked,
        Some((coverage, others)),
    )
    .await?;
    Ok(requeue)
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

/// Writes the InvalidSpec status, and an Event when the spec just turned invalid.
async fn report_invalid(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    invalid: &[stallwatch_crds::SpecError],
) -> Result<()> {
    let was_invalid = ts
        .status
        .as_ref()
        .is_some_and(|s| observe::condition_is(s, ct::INVALID_SPEC, true));
    let ledger = ledger_of(ts)?;
    let status = observe::next_status(&Observed {
        ts,
        deployment: None,
        pods: &[],
        ledger: &ledger,
        blocked: None,
        invalid,
        now_ms: ctx.now(),
        health: &[],
    });
    write_status(&target.api, ts, status).await?;
    if !was_invalid {
        let msg = invalid
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        publish(ctx, ts, true, "InvalidSpec", "Validate", msg).await;
    }
    Ok(())
}

/// Whether this TransitStream (same uid) is still on the API server and not being deleted.
/// Asked before a drift re-apply only: the cache lags the API server, and the drift may be the
/// garbage collector deleting the objects of a TransitStream that is already gone; re-applying
/// them would recreate, under a dead owner, what the collector just deleted.
async fn still_exists(target: &Target, ts: &TransitStream) -> Result<bool> {
    let live = target.api.get_opt(&target.name).await?;
    Ok(live.is_some_and(|l| {
        l.metadata.uid == ts.metadata.uid && l.metadata.deletion_timestamp.is_none()
    }))
}

fn build_desired(ctx: &Context, ts: &TransitStream) -> builders::Desired {
    let build = BuildContext {
        default_image: ctx.settings.default_image.clone(),
    };
    builders::desired(ts, &build)
}

/// Applies every desired object. All but the Deployment only when the generation changed or
/// one of them drifted (deleted or changed by someone else, as the owned-object watches report):
/// an unchanged TransitStream costs one request here. The Deployment every time: its status
/// feeds the TransitStream's.
async fn apply_desired(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    desired: &builders::Desired,
) -> Result<Deployment> {
    let ns = &target.ns;
    let generation = ts.metadata.generation.unwrap_or_default();
    let fresh = lock(&ctx.applied).get(&target.uid) != Some(&generation);
    let drifted = ctx.drift.take(&target.key);
    if fresh || drifted {
        if let Err(e) = apply_owned(ctx, target, ts, desired).await {
            // Try again at the retry of this reconcile.
            ctx.drift.mark(&target.key);
            return Err(e);
        }
        if drifted && !fresh {
            tracing::info!(resource = %target.key, "owned objects drifted; re-applied");
        }
    }
    let deployment = apply(ctx, ns, &desired.deployment).await?;
    if fresh {
        lock(&ctx.applied).insert(target.uid.clone(), generation);
    }
    Ok(deployment)
}

/// Applies every owned object but the Deployment, recording what each looks like after.
async fn apply_owned(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    desired: &builders::Desired,
) -> Result<()> {
    let ns = &target.ns;
    ensure_token(ctx, ts, ns, &target.name, true).await?;
    tracked_apply(ctx, ns, &desired.service_account).await?;
    tracked_apply(ctx, ns, &desired.role).await?;
    tracked_apply(ctx, ns, &desired.role_binding).await?;
    tracked_apply(ctx, ns, &desired.config_map).await?;
    if let Some(claim) = &desired.claim {
        tracked_apply(ctx, ns, claim).await?;
    }
    tracked_apply(ctx, ns, &desired.service).await?;
    Ok(())
}

/// Writes the status computed from what was observed (when it changed), then the Events of
/// its transitions: the budget just spent, the spec valid again.
async fn write_observed_status(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    ledger: &Ledger,
    blocked: Option<Blocked>,
    workload: Option<(stallwatch_crds::WorkloadCoverage, Vec<String>)>,
) -> Result<()> {
    let pods = pod_states(ctx, &target.ns, &target.name);
    let health = pod_health(ctx, &target.ns, &target.name);
    let mut status = observe::next_status(&Observed {
        ts,
        deployment: Some(deployment),
        pods: &pods,
        ledger,
        blocked: blocked.as_ref(),
        invalid: &[],
        now_ms: ctx.now(),
        health: &health,
    });
    let mut conflict = None;
    if let Some((coverage, others)) = workload {
        let update = observe::conflict_condition(&others, coverage.message.as_deref());
        if update.status {
            conflict = Some(update.message.clone());
        }
        observe::apply_condition(&mut status, update, ts.metadata.generation, ctx.now());
        status.workload = Some(coverage);
    }
    let was_conflict = ts
        .status
        .as_ref()
        .is_some_and(|s| observe::condition_is(s, observe::CONFLICT, true));
    let was = |type_: &str| {
        ts.status
            .as_ref()
            .is_some_and(|s| observe::condition_is(s, type_, true))
    };
    // By the budget: `Degraded` can already hold for an unwritable dump volume.
    let budget_spent = |s: &TransitStreamStatus| {
        observe::condition_is(s, ct::DEGRADED, true)
            && s.conditions
                .iter()
                .any(|c| c.type_ == ct::DEGRADED && c.reason == "BudgetSpent")
    };
    let was_degraded = ts.status.as_ref().is_some_and(budget_spent);
    let was_invalid = was(ct::INVALID_SPEC);
    let degraded = budget_spent(&status);
    if ts.status.as_ref() != Some(&status) {
        write_status(&target.api, ts, status).await?;
    }
    if let Some(message) = conflict
        && !was_conflict
    {
        publish(ctx, ts, true, "Conflict", "Reconcile", message).await;
    }
    if degraded
        && !was_degraded
        && let Some(b @ Blocked::BudgetSpent { .. }) = &blocked
    {
        ctx.metrics.budget_exhausted.inc();
        let message = observe::blocked_message(b, ctx.now());
        publish(ctx, ts, true, "BudgetSpent", "Remediate", message).await;
    }
    if was_invalid {
        publish(
            ctx,
            ts,
            false,
            "SpecValid",
            "Validate",
            "spec is valid again".into(),
        )
        .await;
    }
    Ok(())
}

/// The ledger persisted in status.
fn ledger_of(ts: &TransitStream) -> Result<Ledger> {
    Ok(ts
        .status
        .as_ref()
        .map(|s| Ledger::try_from(&s.remediation))
        .transpose()?
        .unwrap_or_default())
}

fn pods_of(ctx: &Context, ns: &str, name: &str) -> Vec<Arc<Pod>> {
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && p.labels().get(labels::TRANSITSTREAM).map(String::as_str) == Some(name)
        })
        .collect()
}

/// Whether each live pod's streams are judged, and why not (the status's reasons).
fn pod_health(ctx: &Context, ns: &str, name: &str) -> Vec<observe::PodHealth> {
    let mut health: Vec<observe::PodHealth> = pods_of(ctx, ns, name)
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| observe::pod_health(p))
        .collect();
    health.sort_by(|a, b| a.name.cmp(&b.name));
    health
}

fn pod_states(ctx: &Context, ns: &str, name: &str) -> Vec<PodState> {
    let mut states: Vec<PodState> = pods_of(ctx, ns, name)
        .iter()
        .map(|p| observe::pod_state(p))
        .collect();
    states.sort_by(|a, b| a.name.cmp(&b.name));
    states
}

/// Run decide/act rounds until the decision function waits or idles.
async fn remediate(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
) -> Result<(Ledger, Option<Blocked>, Action)> {
    let policy = observe::policy(ts);
    let mut ledger = ledger_of(ts)?;
    for _ in 0..MAX_ROUNDS {
        let now = ctx.now();
        let obs = Observation {
            now_ms: now,
            pods: pod_states(ctx, &target.ns, &target.name),
            paused: ts.spec.paused,
            opted_out: observe::opted_out(ts.metadata.annotations.as_ref()),
            in_flight_elsewhere: ctx.in_flight_elsewhere(&target.uid),
            max_concurrent: ctx.settings.max_concurrent_remediations,
        };
        match rem::decide(&policy, &ledger, &obs) {
            Decision::Record { ledger: next, note } => {
                ledger = record(ctx, target, ts, deployment, &ledger, next, note).await?;
            }
            Decision::Act {
                ledger: next,
                effect,
                note,
            } => {
                // Recorded before acting: if this write fails, nothing is done.
                ledger = record(ctx, target, ts, deployment, &ledger, next, note).await?;
                ledger = act(ctx, target, ts, deployment, ledger, &effect).await?;
            }
            Decision::Wait { until_ms, .. } => {
                lock(&ctx.blocked).remove(&target.uid);
                let delay = Duration::from_millis(until_ms.saturating_sub(now).max(100));
                return Ok((ledger, None, Action::requeue(delay)));
            }
            Decision::Idle {
                recheck_at_ms,
                blocked,
            } => {
                note_blocked(ctx, target, ts, blocked.as_ref(), &obs.pods).await;
                let delay = recheck_at_ms
                    .map(|t| Duration::from_millis(t.saturating_sub(now).max(100)))
                    .unwrap_or(RESYNC)
                    .min(RESYNC);
                return Ok((ledger, blocked, Action::requeue(delay)));
            }
        }
    }
    Ok((ledger, None, Action::requeue(Duration::from_secs(1))))
}

/// Persists `next` (over `ledger`) and publishes its Event; returns the new ledger.
async fn record(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    ledger: &Ledger,
    next: Ledger,
    note: rem::Note,
) -> Result<Ledger> {
    persist_ledger(ctx, target, ts, deployment, ledger, &next).await?;
    crash_hook(&next);
    publish(
        ctx,
        ts,
        note.warning,
        note.reason,
        "Remediate",
        note.message,
    )
    .await;
    Ok(next)
}

/// The [`CRASH_AFTER_ENV`] test hook; nothing when the env var is unset.
fn crash_hook(ledger: &Ledger) {
    static STEP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(step) = STEP.get_or_init(|| std::env::var(CRASH_AFTER_ENV).ok()) else {
        return;
    };
    if let Some(a) = &ledger.in_flight
        && format!("{:?}", a.step) == *step
    {
        tracing::warn!(attempt = %a.id, "{CRASH_AFTER_ENV}: exiting after step {step} (tests only)");
        std::process::exit(137);
    }
}

/// Runs the effect the ledger just recorded and records its result. A failed restart is an
/// error, so the (idempotent) restart is retried with backoff, not in a tight loop.
async fn act(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    ledger: Ledger,
    effect: &Effect,
) -> Result<Ledger> {
    let result = execute(ctx, ts, &target.ns, &target.name, &ledger, effect).await?;
    let failed = matches!(
        result,
        EffectResult::RestartFailed { .. } | EffectResult::SoftRestartFailed { .. }
    );
    let note = rem::result_note(effect.attempt_id(), &result);
    let message = note.message.clone();
    count_step(ctx, effect, &result);
    let next = rem::record_result(&ledger, effect.attempt_id(), result);
    let ledger = record(ctx, target, ts, deployment, &ledger, next, note).await?;
    if failed
        && matches!(
            effect,
            Effect::RestartPod { .. } | Effect::RolloutRestart { .. }
        )
    {
        return Err(Error::Remediation(message));
    }
    Ok(ledger)
}

/// A stall held back by a rail: counted, logged and published as an Event (Warning, reason =
/// the rail) once per change of rail or of the stalled pods it holds back. The budget's Event
/// is `BudgetSpent`, published with the `Degraded` condition (`write_observed_status`).
async fn note_blocked(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    blocked: Option<&Blocked>,
    pods: &[PodState],
) {
    let Some(b) = blocked else {
        lock(&ctx.blocked).remove(&target.uid);
        return;
    };
    let stalled: Vec<String> = pods
        .iter()
        .filter(|p| p.stalled_since_ms.is_some() && !p.terminating)
        .map(|p| match p.stalled.first() {
            Some(s) => format!("pod {} (stream {}: {})", p.name, s.stream, s.reason),
            None => format!("pod {}", p.name),
        })
        .collect();
    let identity = format!("{}: {}", b.label(), stalled.join(", "));
    let changed = lock(&ctx.blocked).insert(target.uid.clone(), identity.clone()) != Some(identity);
    if !changed {
        return;
    }
    ctx.metrics
        .remediations_blocked
        .get_or_create(&ReasonLabels {
            reason: b.label().into(),
        })
        .inc();
    let why = observe::blocked_message(b, ctx.now());
    let message = if stalled.is_empty() {
        format!("stall not acted on: {why}")
    } else {
        format!("stall of {} not acted on: {why}", stalled.join(", "))
    };
    if matches!(b, Blocked::BudgetSpent { .. }) {
        tracing::info!(resource = %target.key, rail = b.label(), "{message}");
    } else {
        publish(ctx, ts, true, b.label(), "Remediate", message).await;
    }
}

fn count_step(ctx: &Context, effect: &Effect, result: &EffectResult) {
    let step = match effect {
        Effect::SoftRestart { .. } => "soft_restart",
        Effect::CaptureDump { .. } => "dump",
        Effect::RestartPod { .. } => "restart_pod",
        Effect::RolloutRestart { .. } => "rollout_restart",
    };
    let result = match result {
        EffectResult::SoftRestartAccepted
        | EffectResult::DumpCaptured { .. }
        | EffectResult::RestartIssued => "ok",
        EffectResult::DumpFailed {
            timed_out: true, ..
        } => "timeout",
        _ => "failed",
    };
    ctx.metrics
        .remediation_steps
        .get_or_create(&StepLabels {
            step: step.into(),
            result: result.into(),
        })
        .inc();
}

/// Write the ledger with the rest of the status recomputed from it and from the pods as they
/// are now (so `Stalled`, `Remediating`, the phase and the stall count are current at every
/// step), and count finished attempts.
async fn persist_ledger(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    before: &Ledger,
    next: &Ledger,
) -> Result<()> {
    if before == next {
        return Ok(());
    }
    let pods = pod_states(ctx, &target.ns, &target.name);
    let health = pod_health(ctx, &target.ns, &target.name);
    let mut status = observe::next_status(&Observed {
        ts,
        deployment: Some(deployment),
        pods: &pods,
        ledger: next,
        blocked: None,
        invalid: &[],
        now_ms: ctx.now(),
        health: &health,
    });
    // Coverage of a referenced workload is observed once per reconcile; keep it across steps.
    status.workload = ts.status.as_ref().and_then(|s| s.workload.clone());
    write_status(&target.api, ts, status).await?;
    ctx.track_in_flight(&target.uid, next.in_flight.is_some());
    // An attempt that just left the in-flight slot has finished.
    if let Some(done) = before
        .in_flight
        .as_ref()
        .and_then(|a| next.history.iter().rev().find(|h| h.id == a.id))
        .or_else(|| {
            // Observe records go straight to history.
            next.history
                .last()
                .filter(|h| !before.history.iter().any(|b| b.id == h.id))
                .filter(|_| next.in_flight.is_none())
        })
        && let Some(outcome) = done.outcome
    {
        ctx.metrics
            .remediations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().into(),
            })
            .inc();
    }
    Ok(())
}

/// Server-side apply of the status with the resourceVersion as precondition: a stale
/// leader's write fails with 409 instead of overwriting the record.
///
/// A 409 is also what a reconcile gets whose cached object has not caught up with this
/// operator's own previous status write (the usual case on a new TransitStream, whose owned
/// objects trigger reconciles within milliseconds). The precondition protects the remediation
/// record, so the write is retried once at the live resourceVersion when the live record is
/// still the one this reconcile decided on; a record that changed keeps the conflict.
async fn write_status(
    api: &Api<TransitStream>,
    ts: &mut TransitStream,
    status: TransitStreamStatus,
) -> Result<()> {
    let name = ts.name_any();
    let rv = ts.metadata.resource_version.clone();
    let updated = match apply_status(api, &name, rv, &status).await {
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let live = api.get_status(&name).await?;
            let record = |t: &TransitStream| {
                t.status
                    .as_ref()
                    .map(|s| s.remediation.clone())
                    .unwrap_or_default()
            };
            if live.metadata.uid != ts.metadata.uid || record(&live) != record(ts) {
                return Err(kube::Error::Api(e).into());
            }
            apply_status(api, &name, live.metadata.resource_version, &status).await?
        }
        other => other?,
    };
    ts.metadata.resource_version = updated.metadata.resource_version;
    ts.status = Some(updated.status.unwrap_or(status));
    Ok(())
}

async fn apply_status(
    api: &Api<TransitStream>,
    name: &str,
    resource_version: Option<String>,
    status: &TransitStreamStatus,
) -> kube::Result<TransitStream> {
    let patch = serde_json::json!({
        "apiVersion": "stallwatch.io/v1alpha1",
        "kind": "TransitStream",
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
}

/// [`apply`], and records the result's resourceVersion as the operator's own (drift).
async fn tracked_apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let applied = apply(ctx, ns, obj).await?;
    ctx.drift.applied(&K::kind(&()), applied.meta());
    Ok(())
}

async fn apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// The admin token: from the cache, else from the Secret, else a new one written once.
async fn ensure_token(
    ctx: &Context,
    ts: &TransitStream,
    ns: &str,
    name: &str,
    reread: bool,
) -> Result<String> {
    let key = uid_of(ts);
    if !reread && let Some(t) = lock(&ctx.tokens).get(&key) {
        return Ok(t.clone());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret_name = builders::secret_name(name);
    let existing = secrets.get_opt(&secret_name).await?;
    let token = match existing
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(TOKEN_KEY).cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .filter(|t| !t.is_empty())
    {
        Some(t) => {
            match &existing {
                // Left by a deleted TransitStream of the same name (the garbage collector has
                // not got to it yet): adopted with its token, or the collector would delete it
                // under the new owner's sidecars.
                Some(s) if !owned_by(&s.metadata, ts) => {
                    tracked_apply(ctx, ns, &builders::admin_secret(ts, &t)).await?;
                }
                Some(s) => ctx.drift.applied("Secret", &s.metadata),
                None => {}
            }
            t
        }
        None => {
            // Deleted by hand under running pods: their sidecars read the token once, at
            // start, so the token this process knows comes back (a new one would answer 401
            // to every dump and soft restart until the pods restart).
            let known = lock(&ctx.tokens).get(&key).cloned();
            let token = known.unwrap_or_else(builders::new_token);
            tracked_apply(ctx, ns, &builders::admin_secret(ts, &token)).await?;
            token
        }
    };
    lock(&ctx.tokens).insert(key, token.clone());
    Ok(token)
}

/// Whether `ts` (this uid) is the controller owner of `meta`.
fn owned_by(meta: &ObjectMeta, ts: &TransitStream) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == ts.metadata.uid.as_ref())
    })
}

/// Perform one effect. Sidecar and restart failures become results (recorded, retried by
/// the decision function's rules); only a missing token is an error.
async fn execute(
    ctx: &Context,
    ts: &TransitStream,
    ns: &str,
    name: &str,
    ledger: &Ledger,
    effect: &Effect,
) -> Result<EffectResult> {
    Ok(match effect {
        Effect::SoftRestart { pod, stream, .. } => {
            soft_restart(ctx, &sidecar_of(ctx, ts, pod).await?, stream).await
        }
        Effect::CaptureDump {
            pod,
            stream,
            reason,
            timeout_ms,
            ..
        } => {
            let timeout = Duration::from_millis(*timeout_ms);
            capture_dump(
                ctx,
                &sidecar_of(ctx, ts, pod).await?,
                stream,
                *reason,
                timeout,
            )
            .await
        }
        Effect::RestartPod { pod, pod_uid, .. } => {
            delete_pod(ctx, ns, pod, pod_uid.as_deref(), ledger).await
        }
        Effect::RolloutRestart {
            restarted_at_ms, ..
        } => rollout_restart(ctx, ns, name, *restarted_at_ms, ledger).await,
    })
}

/// The sidecar of `pod` (no IP when the pod is gone from the cache: the call then fails).
async fn sidecar_of(ctx: &Context, ts: &TransitStream, pod: &str) -> Result<SidecarTarget> {
    let ns = ts.metadata.namespace.as_deref().unwrap_or_default();
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let token = ensure_token(ctx, ts, ns, name, false).await?;
    let found = pods_of(ctx, ns, name)
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod));
    Ok(SidecarTarget {
        pod_ip: found
            .as_deref()
            .and_then(observe::pod_ip)
            .unwrap_or_default(),
        token,
    })
}

async fn soft_restart(ctx: &Context, target: &SidecarTarget, stream: &str) -> EffectResult {
    let timeout = Duration::from_secs(5);
    match ctx.sidecar.soft_restart(target, stream, timeout).await {
        Ok(()) => EffectResult::SoftRestartAccepted,
        Err(e) => EffectResult::SoftRestartFailed {
            error: e.to_string(),
        },
    }
}

async fn capture_dump(
    ctx: &Context,
    target: &SidecarTarget,
    stream: &str,
    reason: stallwatch_core::condition::StallReason,
    timeout: Duration,
) -> EffectResult {
    match ctx
        .sidecar
        .capture_dump(target, stream, reason, timeout)
        .await
    {
        Ok(manifest) => EffectResult::DumpCaptured {
            bundle_path: manifest.path,
        },
        Err(e) => EffectResult::DumpFailed {
            timed_out: e.is_timeout(),
            error: e.to_string(),
        },
    }
}

/// Deletes the stalled pod, only if it is still the same pod (uid precondition).
async fn delete_pod(
    ctx: &Context,
    ns: &str,
    pod: &str,
    pod_uid: Option<&str>,
    ledger: &Ledger,
) -> EffectResult {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let dp = DeleteParams {
        preconditions: pod_uid.map(|uid| Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(pod, &dp).await {
        // 404: already gone; 409: the name now belongs to a replacement pod.
        Ok(_) => restarted(ctx, ledger),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => restarted(ctx, ledger),
        Err(e) => EffectResult::RestartFailed {
            error: e.to_string(),
        },
    }
}

/// `kubectl rollout restart`: the annotation is fixed per attempt, so a re-issue is a no-op.
async fn rollout_restart(
    ctx: &Context,
    ns: &str,
    name: &str,
    restarted_at_ms: u64,
    ledger: &Ledger,
) -> EffectResult {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let at = observe::time(restarted_at_ms).0.to_string();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT_ANNOTATION: at
    }}}}});
    let params = PatchParams {
        field_manager: Some(RESTART_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match deployments
        .patch(name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => restarted(ctx, ledger),
        Err(e) => EffectResult::RestartFailed {
            error: e.to_string(),
        },
    }
}

fn restarted(ctx: &Context, ledger: &Ledger) -> EffectResult {
    if let Some(a) = &ledger.in_flight {
        let secs = ctx.now().saturating_sub(a.stalled_since_ms) as f64 / 1000.0;
        ctx.metrics.stall_to_restart.observe(secs);
    }
    EffectResult::RestartIssued
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

mod drill;

#[cfg(test)]
mod tests;
