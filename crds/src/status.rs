//! The TransitStream status: phase, conditions, counters and the remediation record.
//!
//! The remediation record mirrors `stallwatch_core::remediation::{Attempt, Ledger}` field for
//! field (camelCase JSON, RFC 3339 times instead of epoch milliseconds) and converts both ways,
//! so the decision function stays free of kube types while the record lives in status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stallwatch_core::condition::StallReason;
use stallwatch_core::remediation as core;

/// Entries kept in `status.remediation.history` (newest last).
pub const MAX_HISTORY: usize = 20;

/// Condition types the operator writes.
pub mod condition_types {
    /// `True`: the workload is up and every stream is healthy.
    pub const READY: &str = "Ready";
    /// `True`: a rollout or a change of spec is being applied.
    pub const PROGRESSING: &str = "Progressing";
    /// `True`: a pod reports a stalled stream; the message names the pod and stream.
    pub const STALLED: &str = "Stalled";
    /// `True`: a remediation is in flight (soft restart, dump, restart).
    pub const REMEDIATING: &str = "Remediating";
    /// `True`: the hourly remediation budget is spent while a stall waits, or the last attempt
    /// failed; Stallwatch stops restarting and only records.
    pub const DEGRADED: &str = "Degraded";
    /// Set (`True`, reason `InvalidSpec`) while the spec fails validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Every condition type above.
    pub const ALL: [&str; 6] = [
        READY,
        PROGRESSING,
        STALLED,
        REMEDIATING,
        DEGRADED,
        INVALID_SPEC,
    ];
}

/// Removes `null` from every `enum` list in `schema`. schemars lists `null` among the values
/// of an optional enum; the API server publishes it as is and `kubectl explain` shows it as
/// `<no value>`. `nullable: true` (kube's rewrite of the `null` type) already allows null.
pub(crate) fn no_null_in_enums(schema: &mut schemars::Schema) {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                    values.retain(|e| !e.is_null());
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.values_mut().for_each(walk);
    }
}

/// Observed state of a TransitStream.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = no_null_in_enums)]
pub struct TransitStreamStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-word summary for `kubectl get ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `Progressing`, `Stalled`, `Remediating`, `Degraded`, `InvalidSpec`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Number of configured streams.
    #[serde(default)]
    pub streams: i32,
    /// Broadcaster pods the Deployment has.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods (ready includes the `stallwatch.io/DispatchHealthy` readiness gate).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Stall episodes seen since the TransitStream was created.
    #[serde(default)]
    pub stalls: i64,
    /// Start of the newest stall episode counted in `stalls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stall_time: Option<Time>,
    /// When the last remediation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_remediation_time: Option<Time>,
    /// Streams currently stalled, as `pod/stream: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub stalled_streams: Vec<String>,
    /// The in-flight remediation and a bounded history.
    #[serde(default)]
    pub remediation: RemediationStatus,
    /// With `spec.workloadRef`: which of the workload's pods carry the sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadCoverage>,
    /// The last drill asked for with the `stallwatch.io/drill` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillRecord>,
}

/// One drill: what was asked, what the operator did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillRecord {
    /// The stream whose dispatcher was (to be) killed.
    pub stream: String,
    /// The pod whose broadcaster was asked; empty when refused before choosing one.
    #[serde(default)]
    pub pod: String,
    /// When the operator handled it.
    pub at: Time,
    /// `Started` (the dispatcher was killed: expect the verdict, a dump and a restart),
    /// `Refused` (`spec.allowDrills` is false, or no such stream) or `Failed`.
    pub outcome: String,
    /// Why, in a sentence: what the broadcaster answered, or why the drill was refused.
    pub message: String,
}

/// Most pods listed in each of `coveredPods` and `uncoveredPods`.
pub const MAX_COVERAGE_PODS: usize = 64;

/// How much of a referenced workload Stallwatch protects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadCoverage {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// The workload's name.
    pub name: String,
    /// The workload exists.
    #[serde(default)]
    pub found: bool,
    /// The workload's pods (matched by its selector).
    #[serde(default)]
    pub pods: i32,
    /// Pods carrying the sidecar (injected), with whether they are ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub covered_pods: Vec<CoveredPod>,
    /// Pods without the sidecar: created before the `stallwatch.io/inject` label was on the
    /// pod template, or while no operator answered the webhook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub uncovered_pods: Vec<String>,
    /// What to do about uncovered pods, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// One injected pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CoveredPod {
    /// The pod's name.
    pub name: String,
    /// Ready (which includes the `stallwatch.io/DispatchHealthy` readiness gate).
    #[serde(default)]
    pub ready: bool,
}

/// One-word state.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Stalled,
    Remediating,
    Degraded,
    Paused,
    InvalidSpec,
}

impl Phase {
    /// The phase as written in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Stalled => "Stalled",
            Self::Remediating => "Remediating",
            Self::Degraded => "Degraded",
            Self::Paused => "Paused",
            Self::InvalidSpec => "InvalidSpec",
        }
    }
}

/// The remediation record: written before every action so a crash or a leader hand-over
/// resumes exactly where the last operator stopped.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStatus {
    /// The remediation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<AttemptStatus>,
    /// Finished remediations, oldest first, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub history: Vec<AttemptStatus>,
}

/// One remediation attempt for one stall episode.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AttemptStatus {
    /// Unique id, e.g. `ts-name-7`.
    pub id: String,
    /// The stalled pod.
    pub pod: String,
    /// The pod's uid, to tell a replacement pod with a reused name apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The stalled stream (the longest-stalled one when several are).
    pub stream: String,
    /// `ChannelStuck`, `DispatcherDead` or `ReportsLost`.
    pub reason: String,
    /// When the stall episode began (the pod condition's transition); identifies the episode.
    pub stalled_since: MicroTime,
    /// When the attempt was recorded.
    pub started_at: MicroTime,
    /// The step in progress (or the last one).
    pub step: AttemptStep,
    /// When the current step was recorded.
    pub step_started_at: MicroTime,
    /// Observe mode: the attempt records what would have been done.
    #[serde(default)]
    pub observe_only: bool,
    /// The soft restart's result, when one was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_restart: Option<StepResult>,
    /// The dump's result, when one was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<StepResult>,
    /// The bundle directory on the dump volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_path: Option<String>,
    /// The restart's result, when one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<StepResult>,
    /// How the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// When the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Human-readable detail of the last step (errors included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// Steps of an attempt, in order.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptStep {
    Recorded,
    SoftRestart,
    Dump,
    Restart,
    Done,
}

/// How one step ended.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepResult {
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
}

/// How an attempt ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The soft restart (or the stall by itself) cleared it; no pod was restarted.
    Recovered,
    /// A pod was deleted or the Deployment rolled.
    Restarted,
    /// `DumpOnly`: a bundle was captured and nothing restarted.
    Dumped,
    /// `Observe`: recorded what would have been done.
    Observed,
    /// The pod went away before the attempt finished (someone else restarted it).
    PodGone,
    /// Paused or opted out while in flight; the remaining steps were not taken.
    Cancelled,
    /// Nothing worked (the restart itself failed or timed out).
    Failed,
}

fn time(ms: u64) -> MicroTime {
    MicroTime(Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn ms(t: &MicroTime) -> u64 {
    t.0.as_millisecond().max(0) as u64
}

impl From<core::Step> for AttemptStep {
    fn from(s: core::Step) -> Self {
        match s {
            core::Step::Recorded => Self::Recorded,
            core::Step::SoftRestart => Self::SoftRestart,
            core::Step::Dump => Self::Dump,
            core::Step::Restart => Self::Restart,
            core::Step::Done => Self::Done,
        }
    }
}

impl From<AttemptStep> for core::Step {
    fn from(s: AttemptStep) -> Self {
        match s {
            AttemptStep::Recorded => Self::Recorded,
            AttemptStep::SoftRestart => Self::SoftRestart,
            AttemptStep::Dump => Self::Dump,
            AttemptStep::Restart => Self::Restart,
            AttemptStep::Done => Self::Done,
        }
    }
}

impl From<core::StepResult> for StepResult {
    fn from(s: core::StepResult) -> Self {
        match s {
            core::StepResult::Succeeded => Self::Succeeded,
            core::StepResult::Failed => Self::Failed,
            core::StepResult::TimedOut => Self::TimedOut,
            core::StepResult::Skipped => Self::Skipped,
        }
    }
}

impl From<StepResult> for core::StepResult {
    fn from(s: StepResult) -> Self {
        match s {
            StepResult::Succeeded => Self::Succeeded,
            StepResult::Failed => Self::Failed,
            StepResult::TimedOut => Self::TimedOut,
            StepResult::Skipped => Self::Skipped,
        }
    }
}

impl From<core::Outcome> for AttemptOutcome {
    fn from(s: core::Outcome) -> Self {
        match s {
            core::Outcome::Recovered => Self::Recovered,
            core::Outcome::Restarted => Self::Restarted,
            core::Outcome::Dumped => Self::Dumped,
            core::Outcome::Observed => Self::Observed,
            core::Outcome::PodGone => Self::PodGone,
            core::Outcome::Cancelled => Self::Cancelled,
            core::Outcome::Failed => Self::Failed,
        }
    }
}

impl From<AttemptOutcome> for core::Outcome {
    fn from(s: AttemptOutcome) -> Self {
        match s {
            AttemptOutcome::Recovered => Self::Recovered,
            AttemptOutcome::Restarted => Self::Restarted,
            AttemptOutcome::Dumped => Self::Dumped,
            AttemptOutcome::Observed => Self::Observed,
            AttemptOutcome::PodGone => Self::PodGone,
            AttemptOutcome::Cancelled => Self::Cancelled,
            AttemptOutcome::Failed => Self::Failed,
        }
    }
}

impl From<&core::Attempt> for AttemptStatus {
    fn from(a: &core::Attempt) -> Self {
        Self {
            id: a.id.clone(),
            pod: a.pod.clone(),
            pod_uid: a.pod_uid.clone(),
            stream: a.stream.clone(),
            reason: a.reason.as_str().to_string(),
            stalled_since: time(a.stalled_since_ms),
            started_at: time(a.started_at_ms),
            step: a.step.into(),
            step_started_at: time(a.step_started_at_ms),
            observe_only: a.observe_only,
            soft_restart: a.soft_restart.map(Into::into),
            dump: a.dump.map(Into::into),
            bundle_path: a.bundle_path.clone(),
            restart: a.restart.map(Into::into),
            outcome: a.outcome.map(Into::into),
            finished_at: a.finished_at_ms.map(time),
            message: a.message.clone(),
        }
    }
}

/// A status record that does not convert back (an unknown reason written by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status.remediation record {id:?}: {problem}")]
pub struct RecordError {
    /// The record's `id` in `status.remediation`.
    pub id: String,
    /// What does not convert.
    pub problem: String,
}

impl TryFrom<&AttemptStatus> for core::Attempt {
    type Error = RecordError;
    fn try_from(a: &AttemptStatus) -> Result<Self, RecordError> {
        let reason: StallReason = a.reason.parse().map_err(|_| RecordError {
            id: a.id.clone(),
            problem: format!("unknown reason {:?}", a.reason),
        })?;
        Ok(Self {
            id: a.id.clone(),
            pod: a.pod.clone(),
            pod_uid: a.pod_uid.clone(),
            stream: a.stream.clone(),
            reason,
            stalled_since_ms: ms(&a.stalled_since),
            started_at_ms: ms(&a.started_at),
            step: a.step.into(),
            step_started_at_ms: ms(&a.step_started_at),
            observe_only: a.observe_only,
            soft_restart: a.soft_restart.map(Into::into),
            dump: a.dump.map(Into::into),
            bundle_path: a.bundle_path.clone(),
            restart: a.restart.map(Into::into),
            outcome: a.outcome.map(Into::into),
            finished_at_ms: a.finished_at.as_ref().map(ms),
            message: a.message.clone(),
        })
    }
}

impl From<&core::Ledger> for RemediationStatus {
    fn from(l: &core::Ledger) -> Self {
        Self {
            in_flight: l.in_flight.as_ref().map(Into::into),
            history: l.history.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<&RemediationStatus> for core::Ledger {
    type Error = RecordError;
    fn try_from(s: &RemediationStatus) -> Result<Self, RecordError> {
        Ok(Self {
            in_flight: s.in_flight.as_ref().map(TryInto::try_into).transpose()?,
            history: s
                .history
                .iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
        })
    }
}
