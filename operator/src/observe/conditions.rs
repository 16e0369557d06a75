//! The TransitStream's conditions: one function per condition type, each returning a
//! [`ConditionUpdate`] (built by name, as stackable's condition builders do), and
//! [`set_condition`], which keeps `lastTransitionTime` when the status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use stallwatch_core::remediation::{Blocked, Ledger};
use stallwatch_crds::{TransitStream, TransitStreamStatus, condition_types as ct};

use super::pod::{NotRunning, PodHealth, PodVerdict};
use super::{Workload, time};

/// One condition's next value, built by name instead of by position (as stackable's
/// condition builders do); `next_status` stamps it with the generation and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// The condition type (`stallwatch_crds::condition_types`).
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// The machine-readable reason.
    pub reason: &'static str,
    /// What a person reads.
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

    /// `type_` is `status` for `reason`.
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

/// Whether `status` has condition `type_` at `value`.
pub fn condition_is(status: &TransitStreamStatus, type_: &str, value: bool) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == if value { "True" } else { "False" })
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

/// `AllStreamsFlowing` only when every pod's streams are judged: a pod that cannot judge
/// (`MetricsUnavailable`) or does not run (an unbound claim) is named instead.
pub(super) fn stalled_condition(
    stalled: &[String],
    unjudged: &[String],
    no_pods: bool,
) -> ConditionUpdate {
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

pub(super) fn progressing_condition(w: &Workload, want: i32) -> ConditionUpdate {
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

pub(super) fn ready_condition(
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

pub(super) fn remediating_condition(ledger: &Ledger) -> ConditionUpdate {
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
pub(super) fn degraded_condition(
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
pub(super) fn dump_storage_degraded(
    degraded: ConditionUpdate,
    health: &[PodHealth],
) -> ConditionUpdate {
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

/// `pod NAME: why` for every pod whose streams are not judged. A pod the scheduler holds for an
/// unbound claim gets the claims named: the scheduler's message says only "unbound immediate
/// PersistentVolumeClaims", and the dump claim is the usual one (issue 20, finding 5).
pub(super) fn unjudged(health: &[PodHealth], claims: &[String]) -> Vec<String> {
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
pub(super) fn claims_of(ts: &TransitStream) -> Vec<String> {
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
