use super::*;
use crate::condition::{StallReason, StalledStream};

const T0: u64 = 1_700_000_000_000;

fn stream(name: &str, reason: StallReason) -> StalledStream {
    StalledStream {
        stream: name.into(),
        reason,
        depth: 5,
        capacity: 5,
        secs_since_dequeue: Some(3.0),
    }
}

fn stalled_pod(name: &str, uid: &str, since: u64) -> PodState {
    PodState::stalled(
        name,
        uid,
        since,
        vec![stream("downtown", StallReason::DispatcherDead)],
    )
}

fn obs(now_ms: u64, pods: Vec<PodState>) -> Observation {
    Observation {
        now_ms,
        pods,
        paused: false,
        opted_out: false,
        in_flight_elsewhere: 0,
        max_concurrent: 2,
    }
}

fn expect_record(d: Decision) -> (Ledger, Note) {
    match d {
        Decision::Record { ledger, note } => (ledger, note),
        other => panic!("expected Record, got {other:?}"),
    }
}

fn expect_act(d: Decision) -> (Ledger, Effect) {
    match d {
        Decision::Act { ledger, effect, .. } => (ledger, effect),
        other => panic!("expected Act, got {other:?}"),
    }
}

fn expect_blocked(d: Decision) -> (Blocked, Option<u64>) {
    match d {
        Decision::Idle {
            blocked: Some(b),
            recheck_at_ms,
        } => (b, recheck_at_ms),
        other => panic!("expected a blocked Idle, got {other:?}"),
    }
}

/// Runs the default pipeline up to the restart effect; returns the ledger that records it.
fn up_to_restart(policy: &Policy, pods: Vec<PodState>, now: u64) -> (Ledger, Effect) {
    let o = obs(now, pods);
    let (l, _) = expect_record(decide(policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(policy, &l, &o));
    assert!(matches!(e, Effect::CaptureDump { .. }), "{e:?}");
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::DumpCaptured {
            bundle_path: "ns/p/b1".into(),
        },
    );
    expect_act(decide(policy, &l, &o))
}

#[test]
fn healthy_pods_need_nothing() {
    let d = decide(
        &Policy::default(),
        &Ledger::default(),
        &obs(T0, vec![PodState::healthy("p", "u1")]),
    );
    assert_eq!(
        d,
        Decision::Idle {
            recheck_at_ms: None,
            blocked: None
        }
    );
}

#[test]
fn the_attempt_is_recorded_before_any_effect() {
    let policy = Policy::default();
    let o = obs(T0 + 100, vec![stalled_pod("p", "u1", T0)]);
    let (ledger, note) = expect_record(decide(&policy, &Ledger::default(), &o));
    assert_eq!(note.reason, "RemediationStarted");
    let a = ledger.in_flight.as_ref().unwrap();
    assert_eq!(a.step, Step::Recorded);
    assert_eq!(
        (a.pod.as_str(), a.pod_uid.as_deref(), a.stream.as_str()),
        ("p", Some("u1"), "downtown")
    );
    assert_eq!(a.reason, StallReason::DispatcherDead);
    assert_eq!((a.stalled_since_ms, a.started_at_ms), (T0, T0 + 100));
    // Every effect comes with the ledger that already names its step.
    let (ledger, effect) = expect_act(decide(&policy, &ledger, &o));
    assert_eq!(ledger.in_flight.as_ref().unwrap().step, Step::Dump);
    assert_eq!(
        effect,
        Effect::CaptureDump {
            attempt_id: a.id.clone(),
            pod: "p".into(),
            stream: "downtown".into(),
            reason: StallReason::DispatcherDead,
            timeout_ms: 10_000
        }
    );
}

#[test]
fn dump_then_restart_then_complete() {
    let policy = Policy::default();
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (ledger, effect) = up_to_restart(&policy, pods.clone(), T0 + 10);
    assert_eq!(
        effect,
        Effect::RestartPod {
            attempt_id: effect.attempt_id().into(),
            pod: "p".into(),
            pod_uid: Some("u1".into())
        }
    );
    let a = ledger.in_flight.as_ref().unwrap();
    assert_eq!(a.step, Step::Restart);
    assert_eq!(a.dump, Some(StepResult::Succeeded));
    assert_eq!(a.bundle_path.as_deref(), Some("ns/p/b1"));
    let ledger = record_result(&ledger, effect.attempt_id(), EffectResult::RestartIssued);
    let (ledger, note) = expect_record(decide(&policy, &ledger, &obs(T0 + 20, pods.clone())));
    assert_eq!(note.reason, "RemediationCompleted");
    assert!(ledger.in_flight.is_none());
    let done = &ledger.history[0];
    assert_eq!(done.outcome, Some(Outcome::Restarted));
    assert_eq!(done.restart, Some(StepResult::Succeeded));
    assert_eq!(done.finished_at_ms, Some(T0 + 20));
    // The same episode (condition not yet cleared) never gets a second attempt, even with
    // no cooldown.
    let policy = Policy {
        cooldown_ms: 0,
        ..policy
    };
    assert_eq!(
        decide(&policy, &ledger, &obs(T0 + 30, pods)),
        Decision::Idle {
            recheck_at_ms: None,
            blocked: None
        }
    );
}

#[test]
fn soft_restart_that_clears_the_stall_ends_the_attempt() {
    let policy = Policy {
        soft_restart_first: true,
        ..Policy::default()
    };
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    assert!(matches!(&e, Effect::SoftRestart { stream, .. } if stream == "downtown"));
    let l = record_result(&l, e.attempt_id(), EffectResult::SoftRestartAccepted);
    assert_eq!(
        decide(
            &policy,
            &l,
            &obs(T0 + 1_000, vec![stalled_pod("p", "u1", T0)])
        ),
        Decision::Wait {
            until_ms: T0 + 5_000,
            step: Step::SoftRestart
        }
    );
    let (l, note) = expect_record(decide(
        &policy,
        &l,
        &obs(T0 + 2_000, vec![PodState::healthy("p", "u1")]),
    ));
    assert_eq!(note.reason, "SoftRestartRecovered");
    let a = &l.history[0];
    assert_eq!(a.outcome, Some(Outcome::Recovered));
    assert_eq!(a.soft_restart, Some(StepResult::Succeeded));
    assert_eq!(a.dump, None);
    assert_eq!(a.restart, None);
}

#[test]
fn soft_restart_timeout_moves_on_to_dump_and_restart() {
    let policy = Policy {
        soft_restart_first: true,
        ..Policy::default()
    };
    let pods = vec![stalled_pod("p", "u1", T0)];
    let o = obs(T0, pods.clone());
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    let l = record_result(&l, e.attempt_id(), EffectResult::SoftRestartAccepted);
    let late = obs(T0 + 5_000, pods);
    let (l, note) = expect_record(decide(&policy, &l, &late));
    assert_eq!(note.reason, "SoftRestartTimedOut");
    assert_eq!(
        l.in_flight.as_ref().unwrap().soft_restart,
        Some(StepResult::TimedOut)
    );
    let (_, e) = expect_act(decide(&policy, &l, &late));
    assert!(matches!(e, Effect::CaptureDump { .. }));
}

#[test]
fn failed_soft_restart_goes_straight_to_the_dump() {
    let policy = Policy {
        soft_restart_first: true,
        ..Policy::default()
    };
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::SoftRestartFailed {
            error: "502".into(),
        },
    );
    let (l, e) = expect_act(decide(&policy, &l, &o));
    assert!(matches!(e, Effect::CaptureDump { .. }));
    assert_eq!(
        l.in_flight.as_ref().unwrap().soft_restart,
        Some(StepResult::Failed)
    );
}

#[test]
fn a_failed_dump_does_not_block_the_restart() {
    let policy = Policy::default();
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::DumpFailed {
            error: "507 volume full".into(),
            timed_out: false,
        },
    );
    let (l, e) = expect_act(decide(&policy, &l, &o));
    assert!(matches!(e, Effect::RestartPod { .. }));
    let a = l.in_flight.unwrap();
    assert_eq!(a.dump, Some(StepResult::Failed));
    assert_eq!(a.bundle_path, None);
}

#[test]
fn a_dump_lost_in_a_crash_is_waited_out_not_repeated() {
    let policy = Policy::default();
    let pods = vec![stalled_pod("p", "u1", T0)];
    let o = obs(T0, pods.clone());
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    // The Dump step was persisted, then the operator died before the result was recorded.
    let (persisted, _) = expect_act(decide(&policy, &l, &o));
    let resumed = roundtrip(&persisted);
    assert_eq!(
        decide(&policy, &resumed, &obs(T0 + 3_000, pods.clone())),
        Decision::Wait {
            until_ms: T0 + 10_000,
            step: Step::Dump
        }
    );
    let (l, note) = expect_record(decide(&policy, &resumed, &obs(T0 + 10_000, pods.clone())));
    assert_eq!(note.reason, "DumpFailed");
    assert_eq!(
        l.in_flight.as_ref().unwrap().dump,
        Some(StepResult::TimedOut)
    );
    let (_, e) = expect_act(decide(&policy, &l, &obs(T0 + 10_001, pods)));
    assert!(matches!(e, Effect::RestartPod { .. }), "{e:?}");
}

fn roundtrip(l: &Ledger) -> Ledger {
    serde_json::from_str(&serde_json::to_string(l).unwrap()).unwrap()
}

#[test]
fn operator_restart_mid_restart_reissues_idempotently_or_completes() {
    let policy = Policy::default();
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (persisted, first) = up_to_restart(&policy, pods.clone(), T0);
    // Crash before the delete's result was recorded. The new leader issues the same
    // uid-guarded delete: it can only hit the pod that stalled.
    let resumed = roundtrip(&persisted);
    let (l, again) = expect_act(decide(&policy, &resumed, &obs(T0 + 500, pods)));
    assert_eq!(again, first);
    assert_eq!(l, resumed, "re-issuing records nothing new");
    // If the delete had gone through, the pod is gone: complete without acting.
    let replaced = vec![PodState::healthy("p-2", "u2")];
    let (l, _) = expect_record(decide(&policy, &resumed, &obs(T0 + 600, replaced)));
    let a = &l.history[0];
    assert_eq!(a.outcome, Some(Outcome::Restarted));
    assert_eq!(l.history.len(), 1);
}

#[test]
fn a_replacement_pod_with_the_same_name_is_not_the_stalled_one() {
    let policy = Policy::default();
    let (persisted, _) = up_to_restart(&policy, vec![stalled_pod("p", "u1", T0)], T0);
    // StatefulSet-like name reuse: same name, new uid, healthy.
    let (l, _) = expect_record(decide(
        &policy,
        &persisted,
        &obs(T0 + 10, vec![PodState::healthy("p", "u2")]),
    ));
    assert_eq!(l.history[0].outcome, Some(Outcome::Restarted));
}

#[test]
fn restart_failures_are_retried_until_the_timeout() {
    let policy = Policy::default();
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (l, e) = up_to_restart(&policy, pods.clone(), T0);
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::RestartFailed {
            error: "500".into(),
        },
    );
    let (l2, again) = expect_act(decide(&policy, &l, &obs(T0 + 1_000, pods.clone())));
    assert_eq!(again, e);
    let (l3, note) = expect_record(decide(&policy, &l2, &obs(T0 + 120_000, pods)));
    assert_eq!(note.reason, "RemediationFailed");
    assert!(note.warning);
    assert_eq!(l3.history[0].outcome, Some(Outcome::Failed));
}

#[test]
fn a_restart_with_no_result_by_the_timeout_is_recorded_as_failed() {
    let policy = Policy::default();
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (l, _) = up_to_restart(&policy, pods.clone(), T0);
    let restart_started = l.in_flight.as_ref().unwrap().step_started_at_ms;
    let (l2, note) = expect_record(decide(
        &policy,
        &l,
        &obs(restart_started + policy.restart_timeout_ms, pods),
    ));
    assert_eq!(note.reason, "RemediationFailed");
    assert_eq!(l2.history[0].restart, Some(StepResult::Failed));
    assert_eq!(l2.history[0].outcome, Some(Outcome::Failed));
}

#[test]
fn rollout_restart_carries_a_fixed_timestamp() {
    let policy = Policy {
        restart_target: RestartTarget::Deployment,
        ..Policy::default()
    };
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (l, e) = up_to_restart(&policy, pods.clone(), T0 + 7);
    assert_eq!(
        e,
        Effect::RolloutRestart {
            attempt_id: e.attempt_id().into(),
            restarted_at_ms: T0 + 7
        }
    );
    // Retried later, the annotation value is the same: patching twice rolls once.
    let (_, again) = expect_act(decide(&policy, &l, &obs(T0 + 9_000, pods)));
    assert_eq!(again, e);
}

#[test]
fn restart_only_skips_the_dump() {
    let policy = Policy {
        mode: Mode::RestartOnly,
        ..Policy::default()
    };
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (_, e) = expect_act(decide(&policy, &l, &o));
    assert!(matches!(e, Effect::RestartPod { .. }));
}

#[test]
fn dump_only_never_restarts() {
    let policy = Policy {
        mode: Mode::DumpOnly,
        soft_restart_first: true,
        ..Policy::default()
    };
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    assert!(
        matches!(e, Effect::CaptureDump { .. }),
        "no soft restart in DumpOnly"
    );
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::DumpCaptured {
            bundle_path: "b".into(),
        },
    );
    let (l, _) = expect_record(decide(&policy, &l, &o));
    assert_eq!(l.history[0].outcome, Some(Outcome::Dumped));
    assert_eq!(l.history[0].restart, None);
}

#[test]
fn observe_records_once_per_episode_and_spends_nothing() {
    let policy = Policy {
        mode: Mode::Observe,
        budget_per_hour: 1,
        ..Policy::default()
    };
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (l, note) = expect_record(decide(&policy, &Ledger::default(), &obs(T0, pods.clone())));
    assert_eq!(note.reason, "RemediationObserved");
    assert!(
        note.message
            .contains("would capture a dump of pod p, then delete pod p"),
        "{}",
        note.message
    );
    let a = &l.history[0];
    assert!(a.observe_only);
    assert_eq!(a.outcome, Some(Outcome::Observed));
    assert!(l.in_flight.is_none());
    assert_eq!(l.used_budget(T0), 0);
    // Same episode: nothing more. A new episode: one more record, no budget limit.
    assert!(matches!(
        decide(&policy, &l, &obs(T0 + 1_000, pods)),
        Decision::Idle { blocked: None, .. }
    ));
    let (l, _) = expect_record(decide(
        &policy,
        &l,
        &obs(T0 + 2_000, vec![stalled_pod("p", "u1", T0 + 2_000)]),
    ));
    assert_eq!(l.history.len(), 2);
}

#[test]
fn observe_switched_off_during_a_stall_remediates_that_stall() {
    let observe = Policy {
        mode: Mode::Observe,
        ..Policy::default()
    };
    let pods = vec![stalled_pod("p", "u1", T0)];
    let (l, _) = expect_record(decide(&observe, &Ledger::default(), &obs(T0, pods.clone())));
    assert!(l.history[0].observe_only);
    // The same stall, the mode now acting: an attempt starts (no cooldown from the record).
    let acting = Policy::default();
    let (l, note) = expect_record(decide(&acting, &l, &obs(T0 + 5_000, pods.clone())));
    assert_eq!(note.reason, "RemediationStarted", "{}", note.message);
    let started = l.in_flight.as_ref().expect("an attempt in flight");
    assert_eq!(started.pod, "p");
    // Back in Observe, the attempt's episode is not observed a second time.
    let mut done = l.clone();
    done.in_flight = None;
    assert!(matches!(
        decide(&observe, &done, &obs(T0 + 6_000, pods)),
        Decision::Idle { blocked: None, .. }
    ));
}

#[test]
fn paused_blocks_new_attempts_and_cancels_one_in_flight() {
    let policy = Policy::default();
    let pods = vec![stalled_pod("p", "u1", T0)];
    let mut o = obs(T0, pods);
    o.paused = true;
    assert_eq!(
        expect_blocked(decide(&policy, &Ledger::default(), &o)).0,
        Blocked::Paused
    );
    o.paused = false;
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, _) = expect_act(decide(&policy, &l, &o));
    o.paused = true;
    let (l, note) = expect_record(decide(&policy, &l, &o));
    assert_eq!(note.reason, "RemediationCancelled");
    assert_eq!(l.history[0].outcome, Some(Outcome::Cancelled));
    // A late dump result for the cancelled attempt changes nothing.
    let late = record_result(
        &l,
        &l.history[0].id,
        EffectResult::DumpCaptured {
            bundle_path: "b".into(),
        },
    );
    assert_eq!(late, l);
}

#[test]
fn opt_out_on_the_resource_or_the_pod() {
    let policy = Policy::default();
    let mut o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    o.opted_out = true;
    assert_eq!(
        expect_blocked(decide(&policy, &Ledger::default(), &o)).0,
        Blocked::OptedOut { pod: None }
    );
    o.opted_out = false;
    o.pods[0].opted_out = true;
    assert_eq!(
        expect_blocked(decide(&policy, &Ledger::default(), &o)).0,
        Blocked::OptedOut {
            pod: Some("p".into())
        }
    );
    // Another stalled pod without the annotation is still remediated.
    o.pods.push(stalled_pod("q", "u2", T0 + 5));
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    assert_eq!(l.in_flight.unwrap().pod, "q");
}

#[test]
fn budget_spent_stops_restarts_until_the_window_frees() {
    let policy = Policy {
        budget_per_hour: 2,
        cooldown_ms: 0,
        ..Policy::default()
    };
    let mut ledger = Ledger::default();
    let mut now = T0;
    for i in 0..2u64 {
        let pods = vec![stalled_pod("p", &format!("u{i}"), now)];
        let (l, e) = up_to_restart(&policy, pods.clone(), now);
        let l = Ledger {
            history: ledger.history.clone(),
            ..l
        };
        let l = record_result(&l, e.attempt_id(), EffectResult::RestartIssued);
        ledger = expect_record(decide(&policy, &l, &obs(now, pods))).0;
        now += 60_000;
    }
    assert_eq!(ledger.used_budget(now), 2);
    let pods = vec![stalled_pod("p", "u9", now)];
    let (blocked, recheck) = expect_blocked(decide(&policy, &ledger, &obs(now, pods.clone())));
    assert_eq!(
        blocked,
        Blocked::BudgetSpent {
            used: 2,
            limit: 2,
            frees_at_ms: Some(T0 + BUDGET_WINDOW_MS)
        }
    );
    assert_eq!(blocked.label(), "BudgetSpent");
    assert_eq!(recheck, Some(T0 + BUDGET_WINDOW_MS));
    // An hour after the first attempt, one slot frees up.
    let (l, _) = expect_record(decide(&policy, &ledger, &obs(T0 + BUDGET_WINDOW_MS, pods)));
    assert!(l.in_flight.is_some());
}

#[test]
fn a_zero_budget_never_acts() {
    let policy = Policy {
        budget_per_hour: 0,
        ..Policy::default()
    };
    let (b, _) = expect_blocked(decide(
        &policy,
        &Ledger::default(),
        &obs(T0, vec![stalled_pod("p", "u1", T0)]),
    ));
    assert!(matches!(
        b,
        Blocked::BudgetSpent {
            used: 0,
            limit: 0,
            ..
        }
    ));
}

#[test]
fn cooldown_after_the_last_attempt() {
    let policy = Policy::default();
    let (l, e) = up_to_restart(&policy, vec![stalled_pod("p", "u1", T0)], T0);
    let l = record_result(&l, e.attempt_id(), EffectResult::RestartIssued);
    let (l, _) = expect_record(decide(&policy, &l, &obs(T0 + 1_000, vec![])));
    let next = vec![stalled_pod("p2", "u2", T0 + 2_000)];
    let (b, recheck) = expect_blocked(decide(&policy, &l, &obs(T0 + 2_000, next.clone())));
    assert_eq!(
        b,
        Blocked::Cooldown {
            until_ms: T0 + 1_000 + 300_000
        }
    );
    assert_eq!(recheck, Some(T0 + 301_000));
    let (l, _) = expect_record(decide(&policy, &l, &obs(T0 + 301_000, next)));
    assert_eq!(l.in_flight.unwrap().pod, "p2");
}

#[test]
fn the_operator_wide_cap_holds_new_attempts() {
    let policy = Policy::default();
    let mut o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    o.in_flight_elsewhere = 2;
    let (b, recheck) = expect_blocked(decide(&policy, &Ledger::default(), &o));
    assert_eq!(b, Blocked::Concurrency { active: 2, max: 2 });
    assert!(recheck.is_some());
    // An attempt already in flight is not held back by the cap.
    o.in_flight_elsewhere = 0;
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    o.in_flight_elsewhere = 5;
    let (_, e) = expect_act(decide(&policy, &l, &o));
    assert!(matches!(e, Effect::CaptureDump { .. }));
}

#[test]
fn two_stalls_at_once_one_attempt_each_in_order() {
    let policy = Policy {
        cooldown_ms: 0,
        ..Policy::default()
    };
    // Two pods stalled; the longer-stalled one (q) goes first.
    let both = vec![stalled_pod("p", "u1", T0 + 50), stalled_pod("q", "u2", T0)];
    let o = obs(T0 + 100, both.clone());
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    assert_eq!(l.in_flight.as_ref().unwrap().pod, "q");
    // While q's attempt is in flight, p waits (one attempt per resource at a time).
    let (l, e) = expect_act(decide(&policy, &l, &o));
    assert!(matches!(&e, Effect::CaptureDump { pod, .. } if pod == "q"));
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::DumpCaptured {
            bundle_path: "b".into(),
        },
    );
    let (l, e) = expect_act(decide(&policy, &l, &o));
    let l = record_result(&l, e.attempt_id(), EffectResult::RestartIssued);
    let (l, _) = expect_record(decide(&policy, &l, &o));
    // Then p gets its own attempt; q's episode is not repeated.
    let after = obs(T0 + 200, vec![stalled_pod("p", "u1", T0 + 50)]);
    let (l, _) = expect_record(decide(&policy, &l, &after));
    assert_eq!(l.in_flight.as_ref().unwrap().pod, "p");
    assert_eq!(l.history.len(), 1);
}

#[test]
fn a_pod_gone_before_the_restart_ends_the_attempt() {
    let policy = Policy::default();
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::DumpCaptured {
            bundle_path: "b".into(),
        },
    );
    let (l, note) = expect_record(decide(&policy, &l, &obs(T0 + 1, vec![])));
    assert_eq!(note.reason, "RemediationPodGone");
    assert_eq!(l.history[0].outcome, Some(Outcome::PodGone));
}

#[test]
fn a_stall_that_clears_before_the_first_step_is_recovered() {
    let policy = Policy::default();
    let (l, _) = expect_record(decide(
        &policy,
        &Ledger::default(),
        &obs(T0, vec![stalled_pod("p", "u1", T0)]),
    ));
    let (l, _) = expect_record(decide(
        &policy,
        &l,
        &obs(T0 + 1, vec![PodState::healthy("p", "u1")]),
    ));
    assert_eq!(l.history[0].outcome, Some(Outcome::Recovered));
}

#[test]
fn a_new_episode_on_the_same_pod_gets_a_new_attempt() {
    let policy = Policy {
        mode: Mode::DumpOnly,
        cooldown_ms: 0,
        ..Policy::default()
    };
    let o = obs(T0, vec![stalled_pod("p", "u1", T0)]);
    let (l, _) = expect_record(decide(&policy, &Ledger::default(), &o));
    let (l, e) = expect_act(decide(&policy, &l, &o));
    let l = record_result(
        &l,
        e.attempt_id(),
        EffectResult::DumpCaptured {
            bundle_path: "b".into(),
        },
    );
    let (l, _) = expect_record(decide(&policy, &l, &o));
    assert!(matches!(
        decide(&policy, &l, &o),
        Decision::Idle { blocked: None, .. }
    ));
    let again = obs(T0 + 9_000, vec![stalled_pod("p", "u1", T0 + 8_000)]);
    let (l, _) = expect_record(decide(&policy, &l, &again));
    assert_eq!(l.in_flight.unwrap().stalled_since_ms, T0 + 8_000);
}

#[test]
fn terminating_pods_are_not_new_episodes() {
    let mut pod = stalled_pod("p", "u1", T0);
    pod.terminating = true;
    assert!(matches!(
        decide(&Policy::default(), &Ledger::default(), &obs(T0, vec![pod])),
        Decision::Idle { blocked: None, .. }
    ));
}

#[test]
fn history_is_bounded() {
    let mut l = Ledger::default();
    let policy = Policy {
        mode: Mode::Observe,
        ..Policy::default()
    };
    for i in 0..(MAX_HISTORY as u64 + 5) {
        l = expect_record(decide(
            &policy,
            &l,
            &obs(T0 + i * 1_000, vec![stalled_pod("p", "u", T0 + i * 1_000)]),
        ))
        .0;
    }
    assert_eq!(l.history.len(), MAX_HISTORY);
    assert_eq!(l.history[0].stalled_since_ms, T0 + 5_000);
}

/// A small world for the adapter loop: one stalled pod that a restart replaces.
struct World {
    pod: PodState,
    next_uid: u32,
    effects: Vec<Effect>,
    deletes_that_hit: u32,
    persisted: Ledger,
    now: u64,
}

impl World {
    fn new() -> Self {
        World {
            pod: stalled_pod("p", "u0", T0),
            next_uid: 1,
            effects: Vec::new(),
            deletes_that_hit: 0,
            persisted: Ledger::default(),
            now: T0,
        }
    }

    fn execute(&mut self, effect: &Effect) -> EffectResult {
        self.effects.push(effect.clone());
        match effect {
            Effect::SoftRestart { .. } => EffectResult::SoftRestartAccepted,
            Effect::CaptureDump { .. } => EffectResult::DumpCaptured {
                bundle_path: "ns/p/bundle".into(),
            },
            Effect::RestartPod { pod_uid, .. } => {
                if *pod_uid == self.pod.uid {
                    self.deletes_that_hit += 1;
                    self.pod = PodState::healthy("p", &format!("u{}", self.next_uid));
                    self.next_uid += 1;
                }
                EffectResult::RestartIssued
            }
            Effect::RolloutRestart { .. } => EffectResult::RestartIssued,
        }
    }

    /// Run the adapter loop; `crash_after` operations (persist or effect) it stops dead,
    /// keeping only what was persisted. Returns true when it ran to quiescence.
    fn run(&mut self, policy: &Policy, crash_after: &mut Option<u32>) -> bool {
        let tick = |crash: &mut Option<u32>| match crash {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        };
        for _ in 0..50 {
            self.now += 10;
            let o = obs(self.now, vec![self.pod.clone()]);
            let ledger = roundtrip(&self.persisted);
            match decide(policy, &ledger, &o) {
                Decision::Record { ledger, .. } => {
                    if !tick(crash_after) {
                        return false;
                    }
                    self.persisted = ledger;
                }
                Decision::Act { ledger, effect, .. } => {
                    if !tick(crash_after) {
                        return false;
                    }
                    self.persisted = ledger.clone();
                    if !tick(crash_after) {
                        return false;
                    }
                    let result = self.execute(&effect);
                    if !tick(crash_after) {
                        return false;
                    }
                    self.persisted = record_result(&ledger, effect.attempt_id(), result);
                }
                Decision::Wait { until_ms, .. } => self.now = until_ms,
                Decision::Idle { .. } => return true,
            }
        }
        panic!("the loop did not settle");
    }
}

#[test]
fn a_crash_at_any_point_neither_repeats_nor_skips_a_step() {
    let policy = Policy::default();
    for crash_point in 0..12 {
        let mut w = World::new();
        let mut crash = Some(crash_point);
        let finished_first = w.run(&policy, &mut crash);
        if !finished_first {
            // A new leader resumes from what was persisted.
            assert!(w.run(&policy, &mut None), "crash point {crash_point}");
        }
        let dumps = w
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::CaptureDump { .. }))
            .count();
        assert!(dumps <= 1, "crash point {crash_point}: {dumps} dumps");
        assert_eq!(w.deletes_that_hit, 1, "crash point {crash_point}");
        assert!(w.persisted.in_flight.is_none());
        assert_eq!(w.persisted.history.len(), 1, "crash point {crash_point}");
        let a = &w.persisted.history[0];
        assert_eq!(
            a.outcome,
            Some(Outcome::Restarted),
            "crash point {crash_point}"
        );
        assert!(a.dump.is_some(), "the dump step is never skipped");
        // The dump is issued only after the record naming it is persisted, and only once:
        // without a crash it succeeds; a crash may lose its result (then TimedOut).
        if crash_point == 0 || dumps == 1 && a.dump == Some(StepResult::Succeeded) {
            assert_eq!(a.bundle_path.as_deref(), Some("ns/p/bundle"));
        }
    }
}

#[test]
fn blocked_reasons_read_well() {
    assert_eq!(
        Blocked::BudgetSpent {
            used: 3,
            limit: 3,
            frees_at_ms: None
        }
        .to_string(),
        "remediation budget spent: 3 of 3 in the last hour; not restarting"
    );
    assert_eq!(
        Blocked::Concurrency { active: 2, max: 2 }.label(),
        "ConcurrencyLimit"
    );
}
