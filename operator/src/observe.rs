//! Pure translations between the cluster's objects and the decision function's world:
//! pods to [`PodState`], the spec to a [`Policy`], and the status (phase and conditions)
//! from what was observed.
//!
//! This file: times, the [`Policy`], and [`next_status`] (phase, counters, every condition);
//! `pod`: a pod's [`PodState`] and [`PodHealth`]; `conditions`: one function per condition.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use stallwatch_core::remediation::{
    Blocked, Ledger, Mode, PodState, Policy, RestartTarget as CoreTarget,
};
use stallwatch_crds::{
    OPT_OUT_ANNOTATION, OPT_OUT_VALUE, Phase, RemediationMode, RestartTarget, SpecError,
    TransitStream, TransitStreamStatus, condition_types as ct, to_std,
};

pub use self::conditions::{
    CONFLICT, ConditionUpdate, apply_condition, condition_is, conflict_condition, set_condition,
};
use self::conditions::{
    claims_of, degraded_condition, dump_storage_degraded, progressing_condition, ready_condition,
    remediating_condition, stalled_condition, unjudged,
};
pub use self::pod::{PodHealth, pod_health, pod_ip, pod_state};

/// A condition time in ms since the Unix epoch (0 before it).
pub fn ms(t: &Time) -> u64 {
    t.0.as_millisecond().max(0) as u64
}

/// `ms` since the Unix epoch as a condition time.
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

/// Whether the annotations opt the object out of remediation (`stallwatch.io/remediation:
/// disabled`).
pub fn opted_out(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .is_some_and(|v| v == OPT_OUT_VALUE)
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

/// Everything the status is computed from.
pub struct Observed<'a> {
    /// The TransitStream, its previous status included.
    pub ts: &'a TransitStream,
    /// Its Deployment (none for an invalid spec, a default one for a missing workload).
    pub deployment: Option<&'a Deployment>,
    /// Its pods as the decision function sees them.
    pub pods: &'a [PodState],
    /// The remediation ledger.
    pub ledger: &'a Ledger,
    /// The rail that holds a stall back, if any.
    pub blocked: Option<&'a Blocked>,
    /// What is wrong with the spec (empty: valid).
    pub invalid: &'a [SpecError],
    /// Now, in ms since the Unix epoch.
    pub now_ms: u64,
    /// Whether each live pod's streams are judged (empty: as `pods` says).
    pub health: &'a [PodHealth],
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

mod conditions;
mod pod;

#[cfg(test)]
mod tests;
