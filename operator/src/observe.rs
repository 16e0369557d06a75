//! Pure translations between the cluster's objects and the decision function's world:
//! pods to [`PodState`], the spec to a [`Policy`], and the status (phase and conditions)
//! from what was observed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use stallwatch_core::condition::{
    CONDITION_TYPE, DUMP_STORAGE_CONDITION_TYPE, StallReason, StalledStream, parse_message,
};
use stallwatch_core::remediation::{
    Blocked, Ledger, Mode, PodState, Policy, RestartTarget as CoreTarget,
};
use stallwatch_crds::condition_types as ct;
use stallwatch_crds::{
    OPT_OUT_ANNOTATION, OPT_OUT_VALUE, Phase, RemediationMode, RestartTarget, SpecError,
    TransitStream, TransitStreamStatus, to_std,
};

pub fn ms(t: &Time) -> u64 {
    t.0.as_millisecond().max(0) as u64
}

pub fn time(ms: u64) -> Time {
    Time(Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The remediation policy of a spec.
pub fn policy(ts: &TransitStream) -> Policy {
    let r = &ts.spec.remediation;
    let ms = |d: &kube::core::Duration| to_std(d).as_millis() as u64;
    Policy {
        mode: match r.mode {
            RemediationMode::DumpAndRestart => Mode::DumpAndRestart,
            RemediationMode::RestartOnly => Mode::RestartOnly,
            RemediationMode::DumpOnly => Mode::DumpOnly,
            RemediationMode::Observe => Mode::Observe,
        },
        soft_restart_first: r.soft_restart_first,
        soft_restart_timeout_ms: ms(&r.soft_restart_timeout),
        dump_timeout_ms: ms(&r.dump_timeout),
        restart_timeout_ms: ms(&r.restart_timeout),
        budget_per_hour: r.budget_per_hour,
        cooldown_ms: ms(&r.cooldown),
        restart_target: match r.restart_target {
            RestartTarget::Pod => CoreTarget::Pod,
            RestartTarget::Deployment => CoreTarget::Deployment,
        },
    }
}

pub fn opted_out(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .is_some_and(|v| v == OPT_OUT_VALUE)
}

/// A pod as the decision function sees it: stalled while its `DispatchHealthy` condition is
/// `False`, since that condition's `lastTransitionTime`.
pub fn pod_state(pod: &Pod) -> PodState {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == CONDITION_TYPE));
    let mut state = PodState {
        name,
        uid: pod.metadata.uid.clone(),
        stalled_since_ms: None,
        stalled: Vec::new(),
        reason: None,
        opted_out: opted_out(pod.metadata.annotations.as_ref()),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    };
    if let Some(c) = condition.filter(|c| c.status == "False") {
        let reason = c
            .reason
            .as_deref()
            .and_then(|r| r.parse::<StallReason>().ok());
        let mut stalled = c
            .message
            .as_deref()
            .and_then(|m| parse_message(m).ok())
            .unwrap_or_default();
        // The condition's reason is the longest-stalled stream's: put that stream first.
        if let Some(r) = reason
            && let Some(i) = stalled.iter().position(|s| s.reason == r)
        {
            stalled.swap(0, i);
        }
        if stalled.is_empty() {
            // An unparsable message still means a stalled pod.
            stalled.push(StalledStream {
                stream: "pod".into(),
                reason: reason.unwrap_or(StallReason::ReportsLost),
                depth: 0,
                capacity: 0,
                secs_since_dequeue: None,
            });
        }
        state.stalled_since_ms = Some(c.last_transition_time.as_ref().map(ms).unwrap_or_default());
        state.reason = reason.or(Some(stalled[0].reason));
        state.stalled = stalled;
    }
    state
}

/// Whether a pod's streams are judged, and if not, why: what the status names when nothing
/// is stalled but nothing is known to flow either (issue 20, findings 4 and 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodVerdict {
    /// `DispatchHealthy` is `True` or `False`.
    Judged,
    /// `DispatchHealthy` is `Unknown`: the sidecar runs but cannot judge (zero-code mode's
    /// `MetricsUnavailable`).
    Unknown { reason: String, message: String },
    /// No `DispatchHealthy` yet: why the pod is not running, or that its sidecar has not
    /// published yet.
    NotReporting { cause: NotRunning, why: String },
}

/// Why a pod without a verdict has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRunning {
    /// The scheduler could not place it (an unbound claim, no node fits).
    Unscheduled,
    /// A container waits (image pull, configuration, crash loop).
    ContainerWaiting,
    /// Scheduled and running, but the sidecar has not published a verdict yet.
    NoVerdictYet,
}

/// One live pod's [`PodVerdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHealth {
    pub name: String,
    pub verdict: PodVerdict,
    /// The sidecar's `DumpStorageReady` is `False`: why no bundle can be written.
    pub dump_storage: Option<DumpStorageProblem>,
}

/// A `False` `stallwatch.io/DumpStorageReady` pod condition (issue 20, finding 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpStorageProblem {
    /// `PermissionDenied`, `ReadOnly`, `Missing`, `Full`, `Failed`.
    pub reason: String,
    /// The sidecar's probe message.
    pub message: String,
}

/// The [`PodHealth`] of a pod (as the slimmed cache keeps it: the `DispatchHealthy`,
/// `DumpStorageReady` and a failed `PodScheduled` condition, waiting containers).
pub fn pod_health(pod: &Pod) -> PodHealth {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
    let verdict = match condition(CONDITION_TYPE) {
        Some(c) if c.status == "Unknown" => PodVerdict::Unknown {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        },
        Some(_) => PodVerdict::Judged,
        None => not_reporting(pod, condition("PodScheduled")),
    };
    let dump_storage = condition(DUMP_STORAGE_CONDITION_TYPE)
        .filter(|c| c.status == "False")
        .map(|c| DumpStorageProblem {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    PodHealth {
        name,
        verdict,
        dump_storage,
    }
}

fn not_reporting(
    pod: &Pod,
    scheduled: Option<&k8s_openapi::api::core::v1::PodCondition>,
) -> PodVerdict {
    if let Some(c) = scheduled.filter(|c| c.status == "False") {
        return PodVerdict::NotReporting {
            cause: NotRunning::Unscheduled,
            why: format!(
                "not scheduled ({}): {}",
                c.reason.as_deref().unwrap_or("Unschedulable"),
                c.message.as_deref().unwrap_or_default()
            ),
        };
    }
    let waiting = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[])
        .iter()
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "container {} waiting ({}): {}",
                c.name,
                w.reason.as_deref().unwrap_or("Waiting"),
                w.message.as_deref().unwrap_or_default()
            ))
        });
    match waiting {
        Some(why) => PodVerdict::NotReporting {
            cause: NotRunning::ContainerWaiting,
            why,
        },
        None => PodVerdict::NotReporting {
            cause: NotRunning::NoVerdictYet,
            why: "its sidecar has not published a verdict yet".into(),
        },
    }
}

/// `pod NAME: why` for every pod whose streams are not judged. A pod the scheduler holds for an
/// unbound claim gets the claims named: the scheduler's message says only "unbound immediate
/// PersistentVolumeClaims", and the dump claim is the usual one (issue 20, finding 5).
fn unjudged(health: &[PodHealth], claims: &[String]) -> Vec<String> {
    health
        .iter()
        .filter_map(|h| match &h.verdict {
            PodVerdict::Judged => None,
            PodVerdict::Unknown { reason, message } => {
                Some(format!("pod {}: {reason}: {message}", h.name))
            }
            PodVerdict::NotReporting {
                cause: NotRunning::Unscheduled,
                why,
            } if why.contains("PersistentVolumeClaim") && !claims.is_empty() => Some(format!(
                "pod {}: {why} (its claims: {}; is each one Bound?)",
                h.name,
                claims.join(", ")
            )),
            PodVerdict::NotReporting { why, .. } => Some(format!("pod {}: {why}", h.name)),
        })
        .collect()
}

/// The PersistentVolumeClaims the TransitStream's pods mount: the dump claim (existing or
/// templated) and a file source's recordings claim.
fn claims_of(ts: &TransitStream) -> Vec<String> {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let dump = ts.spec.dumps.volume.as_ref().map(|v| {
        v.existing_claim
            .clone()
            .unwrap_or_else(|| crate::builders::dump_claim_name(name))
    });
    let recordings = ts
        .spec
        .source
        .as_ref()
        .and_then(|s| s.file.as_ref())
        .map(|f| f.claim_name.clone());
    dump.into_iter().chain(recordings).collect()
}

/// The reason `Ready` gives for pods that are not ready, from the first pod not judged.
fn not_ready_reason(health: &[PodHealth]) -> &'static str {
    health
        .iter()
        .find_map(|h| match &h.verdict {
            PodVerdict::Judged => None,
            PodVerdict::Unknown { reason, .. } if reason == "MetricsUnavailable" => {
                Some("MetricsUnavailable")
            }
            PodVerdict::Unknown { .. } => Some("VerdictUnknown"),
            PodVerdict::NotReporting { cause, .. } => Some(match cause {
                NotRunning::Unscheduled => "PodsNotScheduled",
                NotRunning::ContainerWaiting => "ContainersNotRunning",
                NotRunning::NoVerdictYet => "ReplicasNotReady",
            }),
        })
        .unwrap_or("ReplicasNotReady")
}

pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// Set one condition, keeping `lastTransitionTime` when the status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let mut message = message;
    if message.len() > 32_000 {
        message = stallwatch_core::report::truncate(&message, 32_000);
    }
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// Why a rail holds a stall back, with times as RFC 3339 and a duration from `now_ms` (the
/// core's `Display` prints epoch milliseconds).
pub fn blocked_message(b: &Blocked, now_ms: u64) -> String {
    let at = |ms: u64| {
        format!(
            "{} (in {}s)",
            time(ms).0,
            ms.saturating_sub(now_ms).div_ceil(1000)
        )
    };
    match b {
        Blocked::Cooldown { until_ms } => format!("cooling down until {}", at(*until_ms)),
        Blocked::BudgetSpent {
            frees_at_ms: Some(frees),
            ..
        } => format!("{b}; the next one frees at {}", at(*frees)),
        _ => b.to_string(),
    }
}

/// `Conflict`: written on TransitStreams with a `workloadRef` only. `True` (reason
/// `WorkloadClaimed`) when the workload's pods belong to other TransitStreams naming the same
/// workload (`workload::claimed_by_others`); this one remediates none of those pods.
pub const CONFLICT: &str = "Conflict";

/// The `Conflict` condition of a `workloadRef` TransitStream; `message` says what to do.
pub fn conflict_condition(others: &[String], message: Option<&str>) -> ConditionUpdate {
    if others.is_empty() {
        return ConditionUpdate::fails(
            CONFLICT,
            "NoConflict",
            "no other TransitStream owns the workload's pods",
        );
    }
    ConditionUpdate::holds(
        CONFLICT,
        "WorkloadClaimed",
        message.unwrap_or_default().to_string(),
    )
}

/// Sets one update on a status, stamped with the TransitStream's generation and `now_ms`.
pub fn apply_condition(
    status: &mut TransitStreamStatus,
    c: ConditionUpdate,
    generation: Option<i64>,
    now_ms: u64,
) {
    set_condition(
        &mut status.conditions,
        c.type_,
        c.status,
        c.reason,
        c.message,
        generation,
        &time(now_ms),
    );
}

pub fn condition_is(status: &TransitStreamStatus, type_: &str, value: bool) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == if value { "True" } else { "False" })
}

/// Everything the status is computed from.
pub struct Observed<'a> {
    pub ts: &'a TransitStream,
    pub deployment: Option<&'a Deployment>,
    pub pods: &'a [PodState],
    pub ledger: &'a Ledger,
    pub blocked: Option<&'a Blocked>,
    pub invalid: &'a [SpecError],
    pub now_ms: u64,
    /// Whether each live pod's streams are judged (empty: as `pods` says).
    pub health: &'a [PodHealth],
}

/// One condition's next value, built by name instead of by position (as stackable's
/// condition builders do); [`Conditions::set`] stamps it with the generation and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionUpdate {
    /// `type_` is `True` for `reason`.
    pub fn holds(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(type_, true, reason, message)
    }

    /// `type_` is `False` for `reason`.
    pub fn fails(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(type_, false, reason, message)
    }

    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ConditionUpdate {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Writes condition updates for one generation at one time.
struct Conditions<'a> {
    conditions: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: &'a Time,
}

impl Conditions<'_> {
    fn set(&mut self, c: ConditionUpdate) {
        set_condition(
            self.conditions,
            c.type_,
            c.status,
            c.reason,
            c.message,
            self.generation,
            self.now,
        );
    }
}

/// What the Deployment's status says.
#[derive(Debug, Clone, Copy)]
struct Workload {
    replicas: i32,
    ready: i32,
    updated: i32,
    /// The Deployment controller has seen the current generation.
    observed: bool,
}

impl Workload {
    fn of(deployment: Option<&Deployment>) -> Self {
        deployment
            .and_then(|d| Some((d.status.as_ref()?, d.metadata.generation)))
            .map(|(s, g)| Workload {
                replicas: s.replicas.unwrap_or(0),
                ready: s.ready_replicas.unwrap_or(0),
                updated: s.updated_replicas.unwrap_or(0),
                observed: s.observed_generation == g,
            })
            .unwrap_or(Workload {
                replicas: 0,
                ready: 0,
                updated: 0,
                observed: false,
            })
    }

    fn progressing(&self, want: i32) -> bool {
        !self.observed || self.updated < want || self.replicas != want
    }
}

/// The next status. Pure; the previous status supplies transition times and counters.
pub fn next_status(o: &Observed<'_>) -> TransitStreamStatus {
    let prev = o.ts.status.clone().unwrap_or_default();
    let now = time(o.now_ms);
    let mut st = TransitStreamStatus {
        observed_generation: o.ts.metadata.generation,
        conditions: prev.conditions.clone(),
        streams: o.ts.spec.streams.len() as i32,
        stalls: prev.stalls,
        last_stall_time: prev.last_stall_time.clone(),
        last_drill: prev.last_drill.clone(),
        last_remediation_time: o
            .ledger
            .latest()
            .filter(|a| !a.observe_only)
            .map(|a| time(a.started_at_ms))
            .or(prev.last_remediation_time.clone()),
        remediation: o.ledger.into(),
        ..TransitStreamStatus::default()
    };
    let mut conditions = Conditions {
        conditions: &mut st.conditions,
        generation: o.ts.metadata.generation,
        now: &now,
    };

    if !o.invalid.is_empty() {
        let msg = invalid_spec_message(o.invalid);
        conditions.set(ConditionUpdate::holds(
            ct::INVALID_SPEC,
            "InvalidSpec",
            msg.clone(),
        ));
        conditions.set(ConditionUpdate::fails(ct::READY, "InvalidSpec", msg));
        st.phase = Some(Phase::InvalidSpec);
        // Keep the workload's counters as they were: nothing was applied.
        st.replicas = prev.replicas;
        st.ready_replicas = prev.ready_replicas;
        return st;
    }
    conditions.set(ConditionUpdate::fails(
        ct::INVALID_SPEC,
        "Valid",
        "spec is valid",
    ));

    let workload = Workload::of(o.deployment);
    let want = o.ts.spec.replicas;
    let stalled = stalled_streams(o.pods);
    let is_stalled = !stalled.is_empty();
    let unjudged = unjudged(o.health, &claims_of(o.ts));
    let no_pods = o.pods.is_empty() && o.health.is_empty();
    conditions.set(stalled_condition(&stalled, &unjudged, no_pods));
    conditions.set(progressing_condition(&workload, want));
    conditions.set(ready_condition(
        &workload, want, is_stalled, o.health, &unjudged,
    ));
    conditions.set(remediating_condition(o.ledger));
    let degraded = degraded_condition(o.ledger, o.blocked, is_stalled);
    // Remediation trouble is the phase `Degraded`; an unwritable dump volume is not: streams
    // still flow, only the next stall's bundle would be lost.
    let remediation_degraded = degraded.status;
    conditions.set(dump_storage_degraded(degraded, o.health));

    count_new_stalls(&mut st, &prev, o.pods, o.ledger);
    st.replicas = workload.replicas;
    st.ready_replicas = workload.ready;
    st.stalled_streams = stalled;
    st.phase = Some(phase(
        o,
        remediation_degraded,
        is_stalled,
        workload.ready >= want && !is_stalled && unjudged.is_empty(),
        workload.progressing(want),
    ));
    st
}

fn invalid_spec_message(invalid: &[SpecError]) -> String {
    invalid
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Counts new episodes: stalls that began after the newest one already counted, seen on a
/// pod now or in the remediation ledger (a stall remediated within one reconcile is gone from
/// the pods by the time the status is written). One episode per pod and second (condition
/// times have one-second resolution), however many places show it.
fn count_new_stalls(
    st: &mut TransitStreamStatus,
    prev: &TransitStreamStatus,
    pods: &[PodState],
    ledger: &Ledger,
) {
    let counted = prev.last_stall_time.as_ref().map(ms).unwrap_or(0);
    let from_pods = pods
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.stalled_since_ms?)));
    let from_ledger = ledger
        .in_flight
        .iter()
        .chain(&ledger.history)
        .map(|a| (a.pod.as_str(), a.stalled_since_ms));
    let new: Vec<(&str, u64)> = from_pods
        .chain(from_ledger)
        // At the grain of the stored time (seconds), so a counted one never counts again.
        .filter(|(_, since)| since / 1000 > counted / 1000)
        .collect();
    let episodes: std::collections::BTreeSet<(&str, u64)> = new
        .iter()
        .map(|(pod, since)| (*pod, since / 1000))
        .collect();
    st.stalls += episodes.len() as i64;
    let newest = new.iter().map(|(_, since)| *since).max().unwrap_or(counted);
    if newest > counted {
        st.last_stall_time = Some(time(newest));
    }
}

/// `pod/stream: reason` for every stalled stream (at most 64).
fn stalled_streams(pods: &[PodState]) -> Vec<String> {
    pods.iter()
        .filter(|p| p.stalled_since_ms.is_some())
        .flat_map(|p| {
            p.stalled
                .iter()
                .map(move |s| format!("{}/{}: {}", p.name, s.stream, s.reason))
        })
        .take(64)
        .collect()
}

/// `AllStreamsFlowing` only when every pod's streams are judged: a pod that cannot judge
/// (`MetricsUnavailable`) or does not run (an unbound claim) is named instead.
fn stalled_condition(stalled: &[String], unjudged: &[String], no_pods: bool) -> ConditionUpdate {
    if !stalled.is_empty() {
        ConditionUpdate::holds(ct::STALLED, "StreamsStalled", stalled.join("; "))
    } else if no_pods {
        ConditionUpdate::fails(
            ct::STALLED,
            "NoPods",
            "no pod runs yet: no stream is judged",
        )
    } else if !unjudged.is_empty() {
        ConditionUpdate::fails(
            ct::STALLED,
            "NotJudged",
            format!(
                "no stall seen, but not every stream is judged: {}",
                unjudged.join("; ")
            ),
        )
    } else {
        ConditionUpdate::fails(
            ct::STALLED,
            "AllStreamsFlowing",
            "every stream is making progress",
        )
    }
}

fn progressing_condition(w: &Workload, want: i32) -> ConditionUpdate {
    let progressing = w.progressing(want);
    let reason = if progressing {
        "RollingOut"
    } else if w.ready < want {
        // Rolled out, but not every pod is ready: `Ready` says why.
        "RolledOutNotReady"
    } else {
        "Stable"
    };
    ConditionUpdate::new(
        ct::PROGRESSING,
        progressing,
        reason,
        format!(
            "{} of {want} replicas updated, {} present, {} ready",
            w.updated, w.replicas, w.ready
        ),
    )
}

fn ready_condition(
    w: &Workload,
    want: i32,
    is_stalled: bool,
    health: &[PodHealth],
    unjudged: &[String],
) -> ConditionUpdate {
    // Ready means every stream is known to be healthy: a pod that cannot judge is not, even
    // where its readiness gate is not enforced.
    let reason = if is_stalled {
        "StreamsStalled"
    } else if !unjudged.is_empty() {
        not_ready_reason(health)
    } else if w.ready >= want {
        "AllReplicasReady"
    } else {
        "ReplicasNotReady"
    };
    let mut message = format!("{} of {want} replicas ready", w.ready);
    if !unjudged.is_empty() {
        message = format!("{message}: {}", unjudged.join("; "));
    }
    let ready = w.ready >= want && !is_stalled && unjudged.is_empty();
    ConditionUpdate::new(ct::READY, ready, reason, message)
}

fn remediating_condition(ledger: &Ledger) -> ConditionUpdate {
    match &ledger.in_flight {
        Some(a) => ConditionUpdate::holds(
            ct::REMEDIATING,
            "InProgress",
            format!(
                "{}: step {:?} for pod {} stream {}",
                a.id, a.step, a.pod, a.stream
            ),
        ),
        None => ConditionUpdate::fails(ct::REMEDIATING, "Idle", "no remediation in flight"),
    }
}

/// Degraded: the budget is spent while a stall waits, or the last attempt failed. It stays
/// until a later attempt succeeds or the stall is gone.
fn degraded_condition(
    ledger: &Ledger,
    blocked: Option<&Blocked>,
    is_stalled: bool,
) -> ConditionUpdate {
    let last_failed = ledger
        .history
        .last()
        .is_some_and(|a| a.outcome == Some(stallwatch_core::remediation::Outcome::Failed));
    match blocked {
        Some(b @ Blocked::BudgetSpent { .. }) => {
            ConditionUpdate::holds(ct::DEGRADED, "BudgetSpent", b.to_string())
        }
        _ if last_failed && is_stalled => ConditionUpdate::holds(
            ct::DEGRADED,
            "RemediationFailed",
            ledger
                .history
                .last()
                .and_then(|a| a.message.clone())
                .unwrap_or_default(),
        ),
        _ => ConditionUpdate::fails(
            ct::DEGRADED,
            "AsExpected",
            "remediation is within its budget",
        ),
    }
}

/// A `Degraded=False` becomes `DumpVolumeUnavailable` when a pod's sidecar cannot write to
/// its dump volume; remediation trouble (`BudgetSpent`, `RemediationFailed`) is named first.
fn dump_storage_degraded(degraded: ConditionUpdate, health: &[PodHealth]) -> ConditionUpdate {
    let broken: Vec<String> = health
        .iter()
        .filter_map(|h| {
            let p = h.dump_storage.as_ref()?;
            Some(format!("pod {}: {}: {}", h.name, p.reason, p.message))
        })
        .collect();
    if degraded.status || broken.is_empty() {
        return degraded;
    }
    ConditionUpdate::holds(
        ct::DEGRADED,
        "DumpVolumeUnavailable",
        stallwatch_core::report::truncate(
            &format!(
                "no diagnostic bundle can be written (streams still flow): {}",
                broken.join("; ")
            ),
            2048,
        ),
    )
}

fn phase(
    o: &Observed<'_>,
    remediation_degraded: bool,
    is_stalled: bool,
    ready: bool,
    progressing: bool,
) -> Phase {
    if o.ts.spec.paused {
        Phase::Paused
    } else if remediation_degraded {
        Phase::Degraded
    } else if o.ledger.in_flight.is_some() {
        Phase::Remediating
    } else if is_stalled {
        Phase::Stalled
    } else if ready && !progressing {
        Phase::Running
    } else {
        Phase::Pending
    }
}

#[cfg(test)]
mod tests;
