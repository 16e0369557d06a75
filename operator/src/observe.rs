//! Pure translations between the cluster's objects and the decision function's world:
//! pods to [`PodState`], the spec to a [`Policy`], and the status (phase and conditions)
//! from what was observed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use stallwatch_core::condition::{CONDITION_TYPE, StallReason, StalledStream, parse_message};
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
}

/// The next status. Pure; the previous status supplies transition times and counters.
pub fn next_status(o: &Observed<'_>) -> TransitStreamStatus {
    let prev = o.ts.status.clone().unwrap_or_default();
    let generation = o.ts.metadata.generation;
    let now = time(o.now_ms);
    let mut st = TransitStreamStatus {
        observed_generation: generation,
        conditions: prev.conditions.clone(),
        streams: o.ts.spec.streams.len() as i32,
        stalls: prev.stalls,
        last_stall_time: prev.last_stall_time.clone(),
        last_remediation_time: o
            .ledger
            .latest()
            .filter(|a| !a.observe_only)
            .map(|a| time(a.started_at_ms))
            .or(prev.last_remediation_time.clone()),
        remediation: o.ledger.into(),
        ..TransitStreamStatus::default()
    };

    if !o.invalid.is_empty() {
        let msg = o
            .invalid
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        set_condition(
            &mut st.conditions,
            ct::INVALID_SPEC,
            true,
            "InvalidSpec",
            msg.clone(),
            generation,
            &now,
        );
        set_condition(
            &mut st.conditions,
            ct::READY,
            false,
            "InvalidSpec",
            msg,
            generation,
            &now,
        );
        st.phase = Some(Phase::InvalidSpec);
        // Keep the workload's counters as they were: nothing was applied.
        st.replicas = prev.replicas;
        st.ready_replicas = prev.ready_replicas;
        return st;
    }
    set_condition(
        &mut st.conditions,
        ct::INVALID_SPEC,
        false,
        "Valid",
        "spec is valid".into(),
        generation,
        &now,
    );

    // Count new episodes: stalls that began after the newest one already counted.
    let counted = prev.last_stall_time.as_ref().map(ms).unwrap_or(0);
    let mut newest = counted;
    for p in o.pods {
        if let Some(since) = p.stalled_since_ms
            && since > counted
        {
            st.stalls += 1;
            newest = newest.max(since);
        }
    }
    if newest > counted {
        st.last_stall_time = Some(time(newest));
    }

    let (replicas, ready, updated, observed_gen) = o
        .deployment
        .and_then(|d| Some((d.status.as_ref()?, d.metadata.generation)))
        .map(|(s, g)| {
            (
                s.replicas.unwrap_or(0),
                s.ready_replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
                s.observed_generation == g,
            )
        })
        .unwrap_or((0, 0, 0, false));
    st.replicas = replicas;
    st.ready_replicas = ready;
    let want = o.ts.spec.replicas;

    let stalled: Vec<String> = o
        .pods
        .iter()
        .filter(|p| p.stalled_since_ms.is_some())
        .flat_map(|p| {
            p.stalled
                .iter()
                .map(move |s| format!("{}/{}: {}", p.name, s.stream, s.reason))
        })
        .take(64)
        .collect();
    st.stalled_streams = stalled.clone();
    let is_stalled = !stalled.is_empty();
    set_condition(
        &mut st.conditions,
        ct::STALLED,
        is_stalled,
        if is_stalled {
            "StreamsStalled"
        } else {
            "AllStreamsFlowing"
        },
        if is_stalled {
            stalled.join("; ")
        } else {
            "every stream is making progress".into()
        },
        generation,
        &now,
    );

    let progressing = !observed_gen || updated < want || replicas != want;
    set_condition(
        &mut st.conditions,
        ct::PROGRESSING,
        progressing,
        if progressing { "RollingOut" } else { "Stable" },
        format!("{updated} of {want} replicas updated, {replicas} present"),
        generation,
        &now,
    );

    let ready_ok = ready >= want && !is_stalled;
    set_condition(
        &mut st.conditions,
        ct::READY,
        ready_ok,
        if is_stalled {
            "StreamsStalled"
        } else if ready >= want {
            "AllReplicasReady"
        } else {
            "ReplicasNotReady"
        },
        format!("{ready} of {want} replicas ready"),
        generation,
        &now,
    );

    match &o.ledger.in_flight {
        Some(a) => set_condition(
            &mut st.conditions,
            ct::REMEDIATING,
            true,
            "InProgress",
            format!(
                "{}: step {:?} for pod {} stream {}",
                a.id, a.step, a.pod, a.stream
            ),
            generation,
            &now,
        ),
        None => set_condition(
            &mut st.conditions,
            ct::REMEDIATING,
            false,
            "Idle",
            "no remediation in flight".into(),
            generation,
            &now,
        ),
    }

    // Degraded: the budget is spent while a stall waits, or the last attempt failed. It stays
    // until a later attempt succeeds or the stall is gone.
    let last_failed = o
        .ledger
        .history
        .last()
        .is_some_and(|a| a.outcome == Some(stallwatch_core::remediation::Outcome::Failed));
    match o.blocked {
        Some(b @ Blocked::BudgetSpent { .. }) => set_condition(
            &mut st.conditions,
            ct::DEGRADED,
            true,
            "BudgetSpent",
            b.to_string(),
            generation,
            &now,
        ),
        _ if last_failed && is_stalled => set_condition(
            &mut st.conditions,
            ct::DEGRADED,
            true,
            "RemediationFailed",
            o.ledger
                .history
                .last()
                .and_then(|a| a.message.clone())
                .unwrap_or_default(),
            generation,
            &now,
        ),
        _ => set_condition(
            &mut st.conditions,
            ct::DEGRADED,
            false,
            "AsExpected",
            "remediation is within its budget".into(),
            generation,
            &now,
        ),
    }

    st.phase = Some(if o.ts.spec.paused {
        Phase::Paused
    } else if condition_is(&st, ct::DEGRADED, true) {
        Phase::Degraded
    } else if o.ledger.in_flight.is_some() {
        Phase::Remediating
    } else if is_stalled {
        Phase::Stalled
    } else if ready_ok && !progressing {
        Phase::Running
    } else {
        Phase::Pending
    });
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use stallwatch_core::condition::format_message;
    use stallwatch_crds::{Source, SyntheticSource, TransitStreamSpec};

    const T0: u64 = 1_700_000_000_000;

    fn ts() -> TransitStream {
        let mut ts = TransitStream::new(
            "demo",
            TransitStreamSpec::with_source(Source {
                synthetic: Some(SyntheticSource::default()),
                ..Source::default()
            }),
        );
        ts.metadata.generation = Some(2);
        ts
    }

    fn pod(status: &str, reason: &str, message: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("demo-abc".into());
        p.metadata.uid = Some("u1".into());
        p.status = Some(PodStatus {
            pod_ip: Some("10.0.0.7".into()),
            conditions: Some(vec![PodCondition {
                type_: CONDITION_TYPE.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(time(T0)),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        p
    }

    fn stalled(name: &str, reason: StallReason) -> StalledStream {
        StalledStream {
            stream: name.into(),
            reason,
            depth: 5,
            capacity: 5,
            secs_since_dequeue: Some(2.5),
        }
    }

    #[test]
    fn a_false_condition_is_a_stall_led_by_its_reason() {
        let msg = format_message(&[
            stalled("airport", StallReason::ChannelStuck),
            stalled("downtown", StallReason::DispatcherDead),
        ]);
        let s = pod_state(&pod("False", "DispatcherDead", &msg));
        assert_eq!(s.stalled_since_ms, Some(T0));
        assert_eq!(s.reason, Some(StallReason::DispatcherDead));
        assert_eq!(s.stalled[0].stream, "downtown");
        assert_eq!(s.stalled.len(), 2);
        assert_eq!(s.uid.as_deref(), Some("u1"));
        assert_eq!(pod_ip(&pod("False", "x", "")).as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn healthy_and_garbled_conditions() {
        assert_eq!(
            pod_state(&pod("True", "Healthy", "")).stalled_since_ms,
            None
        );
        let s = pod_state(&pod("False", "ReportsLost", "something else entirely"));
        assert_eq!(s.stalled_since_ms, Some(T0));
        assert_eq!(s.stalled[0].stream, "pod");
        assert_eq!(s.reason, Some(StallReason::ReportsLost));
        let mut p = pod("True", "Healthy", "");
        p.metadata.annotations =
            Some([(OPT_OUT_ANNOTATION.to_string(), "disabled".to_string())].into());
        assert!(pod_state(&p).opted_out);
        // No condition yet (sidecar starting): healthy, not stalled.
        p.status.as_mut().unwrap().conditions = None;
        assert_eq!(pod_state(&p).stalled_since_ms, None);
    }

    #[test]
    fn policy_from_spec() {
        let mut t = ts();
        t.spec.remediation.mode = RemediationMode::Observe;
        t.spec.remediation.restart_target = RestartTarget::Deployment;
        let p = policy(&t);
        assert_eq!(p.mode, Mode::Observe);
        assert_eq!(p.restart_target, CoreTarget::Deployment);
        assert_eq!(p.cooldown_ms, 300_000);
        assert_eq!(p.dump_timeout_ms, 10_000);
        assert!(!p.soft_restart_first);
    }

    #[test]
    fn transition_times_survive_unchanged_statuses() {
        let mut cs = Vec::new();
        set_condition(&mut cs, "Ready", false, "A", "m".into(), Some(1), &time(T0));
        set_condition(
            &mut cs,
            "Ready",
            false,
            "B",
            "m2".into(),
            Some(2),
            &time(T0 + 5),
        );
        assert_eq!(cs[0].last_transition_time, time(T0));
        assert_eq!(cs[0].reason, "B");
        assert_eq!(cs[0].observed_generation, Some(2));
        set_condition(
            &mut cs,
            "Ready",
            true,
            "C",
            "m3".into(),
            Some(2),
            &time(T0 + 9),
        );
        assert_eq!(cs[0].last_transition_time, time(T0 + 9));
        assert_eq!(cs.len(), 1);
    }

    fn deployment(ready: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(1),
            ready_replicas: Some(ready),
            updated_replicas: Some(1),
            ..DeploymentStatus::default()
        });
        d
    }

    fn cond<'a>(st: &'a TransitStreamStatus, t: &str) -> &'a Condition {
        st.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn running_when_ready_and_flowing() {
        let t = ts();
        let d = deployment(1);
        let pods = vec![PodState::healthy("p", "u")];
        let st = next_status(&Observed {
            ts: &t,
            deployment: Some(&d),
            pods: &pods,
            ledger: &Ledger::default(),
            blocked: None,
            invalid: &[],
            now_ms: T0,
        });
        assert_eq!(st.phase, Some(Phase::Running));
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(cond(&st, "Ready").status, "True");
        assert_eq!(cond(&st, "Stalled").status, "False");
        assert_eq!(cond(&st, "Degraded").status, "False");
        assert_eq!(cond(&st, "Ready").observed_generation, Some(2));
        assert_eq!((st.streams, st.ready_replicas, st.stalls), (1, 1, 0));
    }

    #[test]
    fn stalls_are_counted_once_per_episode() {
        let mut t = ts();
        let d = deployment(0);
        let pods = vec![PodState::stalled(
            "p",
            "u",
            T0,
            vec![stalled("all", StallReason::ChannelStuck)],
        )];
        let o = |t: &TransitStream| {
            next_status(&Observed {
                ts: t,
                deployment: Some(&d),
                pods: &pods,
                ledger: &Ledger::default(),
                blocked: None,
                invalid: &[],
                now_ms: T0 + 10,
            })
        };
        let st = o(&t);
        assert_eq!(st.stalls, 1);
        assert_eq!(st.phase, Some(Phase::Stalled));
        assert_eq!(cond(&st, "Stalled").message, "p/all: ChannelStuck");
        assert_eq!(st.stalled_streams, ["p/all: ChannelStuck"]);
        t.status = Some(st);
        assert_eq!(o(&t).stalls, 1, "the same episode is not counted again");
    }

    #[test]
    fn invalid_spec_and_budget_spent() {
        let t = ts();
        let errs = vec![SpecError {
            field: "stallAfter".into(),
            message: "must be longer".into(),
        }];
        let st = next_status(&Observed {
            ts: &t,
            deployment: None,
            pods: &[],
            ledger: &Ledger::default(),
            blocked: None,
            invalid: &errs,
            now_ms: T0,
        });
        assert_eq!(st.phase, Some(Phase::InvalidSpec));
        assert_eq!(cond(&st, "InvalidSpec").status, "True");
        assert!(
            cond(&st, "InvalidSpec")
                .message
                .contains("spec.stallAfter: must be longer")
        );
        let blocked = Blocked::BudgetSpent {
            used: 3,
            limit: 3,
            frees_at_ms: None,
        };
        let st = next_status(&Observed {
            ts: &t,
            deployment: None,
            pods: &[],
            ledger: &Ledger::default(),
            blocked: Some(&blocked),
            invalid: &[],
            now_ms: T0,
        });
        assert_eq!(st.phase, Some(Phase::Degraded));
        assert_eq!(cond(&st, "Degraded").reason, "BudgetSpent");
        assert_eq!(cond(&st, "InvalidSpec").status, "False");
    }
}
