use super::*;
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use stallwatch_core::condition::{
    CONDITION_TYPE, DUMP_STORAGE_CONDITION_TYPE, StallReason, StalledStream, format_message,
};
use stallwatch_crds::testing::TransitStreamExt as _;

const T0: u64 = 1_700_000_000_000;

fn ts() -> TransitStream {
    TransitStream::test("demo").generation(2).build()
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
        health: &[],
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
            health: &[],
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
        health: &[],
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
        health: &[],
    });
    assert_eq!(st.phase, Some(Phase::Degraded));
    assert_eq!(cond(&st, "Degraded").reason, "BudgetSpent");
    assert_eq!(cond(&st, "InvalidSpec").status, "False");
}

fn attempt(
    pod: &str,
    stalled_since_ms: u64,
    in_flight: bool,
) -> stallwatch_core::remediation::Attempt {
    stallwatch_core::remediation::Attempt {
        id: format!("{pod}/all@{stalled_since_ms}"),
        pod: pod.into(),
        pod_uid: Some("u".into()),
        stream: "all".into(),
        reason: StallReason::DispatcherDead,
        stalled_since_ms,
        started_at_ms: stalled_since_ms + 100,
        step: if in_flight {
            stallwatch_core::remediation::Step::Dump
        } else {
            stallwatch_core::remediation::Step::Done
        },
        step_started_at_ms: stalled_since_ms + 100,
        observe_only: false,
        soft_restart: None,
        dump: None,
        bundle_path: None,
        restart: None,
        outcome: None,
        finished_at_ms: None,
        message: None,
    }
}

#[test]
fn a_stall_remediated_before_the_status_write_is_counted_from_the_ledger() {
    // Issue 10 bug 2: the stalled pod is gone by the time the status is written; only the
    // ledger remembers the episode.
    let mut t = ts();
    let d = deployment(1);
    let ledger = Ledger {
        in_flight: None,
        history: vec![attempt("p", T0, false)],
    };
    let o = |t: &TransitStream, pods: &[PodState]| {
        next_status(&Observed {
            ts: t,
            deployment: Some(&d),
            pods,
            ledger: &ledger,
            blocked: None,
            invalid: &[],
            now_ms: T0 + 5_000,
            health: &[],
        })
    };
    let st = o(&t, &[]);
    assert_eq!(st.stalls, 1);
    assert_eq!(st.last_stall_time, Some(time(T0)));
    t.status = Some(st);
    // The same episode seen on the pod and in the ledger is one stall, never counted again.
    let pods = vec![PodState::stalled(
        "p",
        "u",
        T0,
        vec![stalled("all", StallReason::DispatcherDead)],
    )];
    assert_eq!(o(&t, &pods).stalls, 1);
}

#[test]
fn an_attempt_in_flight_shows_stalled_remediating_and_its_phase() {
    // Issue 10 bug 3: each step's status write recomputes the conditions from the ledger.
    let t = ts();
    let d = deployment(1);
    let ledger = Ledger {
        in_flight: Some(attempt("p", T0, true)),
        history: vec![],
    };
    let pods = vec![PodState::stalled(
        "p",
        "u",
        T0,
        vec![stalled("all", StallReason::DispatcherDead)],
    )];
    let st = next_status(&Observed {
        ts: &t,
        deployment: Some(&d),
        pods: &pods,
        ledger: &ledger,
        blocked: None,
        invalid: &[],
        now_ms: T0 + 1_000,
        health: &[],
    });
    assert_eq!(cond(&st, "Remediating").status, "True");
    assert_eq!(cond(&st, "Stalled").status, "True");
    assert_eq!(st.phase, Some(Phase::Remediating));
    assert_eq!(st.stalls, 1);
}

#[test]
fn held_back_times_are_rfc3339_with_the_time_left() {
    let cooldown = Blocked::Cooldown {
        until_ms: T0 + 90_000,
    };
    let msg = blocked_message(&cooldown, T0);
    assert_eq!(
        msg,
        format!("cooling down until {} (in 90s)", time(T0 + 90_000).0)
    );
    assert!(!msg.contains(&(T0 + 90_000).to_string()), "{msg}");
    let budget = Blocked::BudgetSpent {
        used: 2,
        limit: 2,
        frees_at_ms: Some(T0 + 1_500),
    };
    assert!(
        blocked_message(&budget, T0).ends_with(&format!(
            "the next one frees at {} (in 2s)",
            time(T0 + 1_500).0
        )),
        "{}",
        blocked_message(&budget, T0)
    );
}

fn status_with(pods: &[Pod], ready: i32) -> TransitStreamStatus {
    let t = ts();
    let d = deployment(ready);
    let states: Vec<PodState> = pods.iter().map(pod_state).collect();
    let health: Vec<PodHealth> = pods
        .iter()
        .map(|p| {
            // Through the operator's cache, as the reconciler sees pods.
            let mut slim = p.clone();
            crate::controller::slim_pod(&mut slim);
            pod_health(&slim)
        })
        .collect();
    next_status(&Observed {
        ts: &t,
        deployment: Some(&d),
        pods: &states,
        ledger: &Ledger::default(),
        blocked: None,
        invalid: &[],
        now_ms: T0,
        health: &health,
    })
}

/// Issue 20, finding 4: zero-code mode that cannot judge (the pod condition `Unknown`,
/// `MetricsUnavailable`) showed `Stalled=False AllStreamsFlowing: every stream is making
/// progress`.
#[test]
fn a_pod_that_cannot_judge_is_named_not_called_flowing() {
    let p = pod(
        "Unknown",
        "MetricsUnavailable",
        "metric orders_queue_depth is not in the scrape of http://127.0.0.1:9100/metrics",
    );
    // Ready as the Deployment counts it (a readiness gate not enforced), still not judged.
    let st = status_with(&[p], 1);
    let stalled = cond(&st, "Stalled");
    assert_eq!(stalled.status, "False");
    assert_eq!(stalled.reason, "NotJudged");
    assert!(
        stalled
            .message
            .contains("pod demo-abc: MetricsUnavailable: metric orders_queue_depth"),
        "{}",
        stalled.message
    );
    let ready = cond(&st, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "MetricsUnavailable")
    );
    assert!(
        ready.message.contains("orders_queue_depth"),
        "{}",
        ready.message
    );
    assert_eq!(st.phase, Some(Phase::Pending));
}

/// Issue 20, finding 5: with the dump claim Pending (the pod unschedulable) the status said
/// `Progressing=False Stable` and `Stalled=False AllStreamsFlowing`.
#[test]
fn an_unscheduled_pod_is_named_with_the_schedulers_reason() {
    let mut p = Pod::default();
    p.metadata.name = Some("demo-abc".into());
    p.status = Some(PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(
                "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.".into(),
            ),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    let st = status_with(&[p], 0);
    let progressing = cond(&st, "Progressing");
    assert_eq!(
        progressing.reason, "RolledOutNotReady",
        "not Stable while nothing runs"
    );
    let stalled = cond(&st, "Stalled");
    assert_eq!(stalled.reason, "NotJudged");
    assert!(
        stalled
            .message
            .contains("unbound immediate PersistentVolumeClaims"),
        "{}",
        stalled.message
    );
    let ready = cond(&st, "Ready");
    assert_eq!(ready.reason, "PodsNotScheduled");
    assert!(
        ready.message.contains("not scheduled (Unschedulable)"),
        "{}",
        ready.message
    );
}

/// The scheduler names no claim; the status names the dump claim the pod waits for.
#[test]
fn a_pod_waiting_for_an_unbound_claim_names_the_dump_claim() {
    let mut p = Pod::default();
    p.metadata.name = Some("demo-abc".into());
    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(
                "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.".into(),
            ),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    let mut t = ts();
    t.spec.dumps.volume = Some(stallwatch_crds::DumpVolume {
        existing_claim: Some("nowhere".into()),
        template: None,
    });
    let health = [pod_health(&p)];
    let st = next_status(&Observed {
        ts: &t,
        deployment: Some(&deployment(0)),
        pods: &[pod_state(&p)],
        ledger: &Ledger::default(),
        blocked: None,
        invalid: &[],
        now_ms: T0,
        health: &health,
    });
    for kind in ["Stalled", "Ready"] {
        let c = cond(&st, kind);
        assert!(
            c.message.contains("its claims: nowhere"),
            "{kind}: {}",
            c.message
        );
    }
}

#[test]
fn a_waiting_container_and_a_pod_not_published_yet_are_named() {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
    let mut p = Pod::default();
    p.metadata.name = Some("demo-abc".into());
    p.status = Some(PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: "sidecar".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ImagePullBackOff".into()),
                    message: Some("pull access denied".into()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    let st = status_with(&[p], 0);
    assert_eq!(cond(&st, "Ready").reason, "ContainersNotRunning");
    assert!(
        cond(&st, "Stalled")
            .message
            .contains("container sidecar waiting (ImagePullBackOff)")
    );
    let mut fresh = Pod::default();
    fresh.metadata.name = Some("demo-abc".into());
    let st = status_with(&[fresh], 0);
    assert!(
        cond(&st, "Stalled")
            .message
            .contains("has not published a verdict yet")
    );
    // No pod at all: said so.
    assert_eq!(cond(&status_with(&[], 0), "Stalled").reason, "NoPods");
    // Judged and healthy: flowing.
    let healthy = pod("True", "Healthy", "all 1 streams are dispatching");
    let st = status_with(&[healthy], 1);
    assert_eq!(cond(&st, "Stalled").reason, "AllStreamsFlowing");
    assert_eq!(cond(&st, "Progressing").reason, "Stable");
    assert_eq!(st.phase, Some(Phase::Running));
}

#[test]
fn the_conflict_condition_names_the_other_transitstream_or_says_there_is_none() {
    let none = conflict_condition(&[], None);
    assert!(!none.status);
    assert_eq!((none.type_, none.reason), (CONFLICT, "NoConflict"));
    let some = conflict_condition(&["feed-ts".into()], Some("also named by \"feed-ts\""));
    assert!(some.status);
    assert_eq!(some.reason, "WorkloadClaimed");
    assert!(some.message.contains("feed-ts"));
}

/// A healthy pod whose sidecar's dump volume probe says `status`/`reason`/`message`.
fn with_dump_storage(status: &str, reason: &str, message: &str) -> Pod {
    let mut p = pod("True", "Healthy", "all 1 streams are dispatching");
    p.status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(PodCondition {
            type_: DUMP_STORAGE_CONDITION_TYPE.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..PodCondition::default()
        });
    p
}

/// Issue 20, finding 2: an unwritable dump volume showed on the pod only; the TransitStream
/// said nothing until the first stall lost its bundle.
#[test]
fn an_unwritable_dump_volume_degrades_the_stream_naming_the_pod_and_the_probe() {
    let p = with_dump_storage(
        "False",
        "PermissionDenied",
        "the dump volume is unavailable (not writable by this sidecar, uid 65532): permission denied",
    );
    let st = status_with(&[p], 1);
    let degraded = cond(&st, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "DumpVolumeUnavailable")
    );
    assert!(
        degraded.message.contains(
            "pod demo-abc: PermissionDenied: the dump volume is unavailable (not writable"
        ),
        "{}",
        degraded.message
    );
    // Streams still flow: nothing else changes.
    assert_eq!(cond(&st, "Stalled").reason, "AllStreamsFlowing");
    assert_eq!(cond(&st, "Ready").status, "True");
    assert_eq!(st.phase, Some(Phase::Running));
}

#[test]
fn a_writable_dump_volume_leaves_degraded_false() {
    let p = with_dump_storage("True", "Writable", "the dump volume takes a bundle");
    let st = status_with(&[p], 1);
    let degraded = cond(&st, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("False", "AsExpected")
    );
    assert_eq!(st.phase, Some(Phase::Running));
}

/// Remediation trouble is named first; the phase stays `Degraded` for it.
#[test]
fn a_spent_budget_is_named_before_the_dump_volume() {
    let t = ts();
    let p = with_dump_storage("False", "ReadOnly", "read-only");
    let mut slim = p.clone();
    crate::controller::slim_pod(&mut slim);
    let health = [pod_health(&slim)];
    assert!(health[0].dump_storage.is_some(), "the cache keeps it");
    let blocked = Blocked::BudgetSpent {
        used: 3,
        limit: 3,
        frees_at_ms: None,
    };
    let st = next_status(&Observed {
        ts: &t,
        deployment: None,
        pods: &[pod_state(&p)],
        ledger: &Ledger::default(),
        blocked: Some(&blocked),
        invalid: &[],
        now_ms: T0,
        health: &health,
    });
    assert_eq!(cond(&st, "Degraded").reason, "BudgetSpent");
    assert_eq!(st.phase, Some(Phase::Degraded));
}
