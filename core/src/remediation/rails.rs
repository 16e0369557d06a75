//! Starting an attempt: the stall episodes without one, the rails that stop a start (paused,
//! opt-out, budget, cooldown, concurrency) and the first record (`Observe`: the only one).

use super::decision::{Blocked, Decision, Note};
use super::input::{Mode, Observation, PodState, Policy, RestartTarget};
use super::ledger::{Attempt, Ledger, Outcome, Step};
use super::rungs::next_step;
use crate::condition::StallReason;

/// The stall episodes present now that have no attempt yet, longest-stalled first. When
/// acting, an `Observe` record does not count: observe mode switched off during a stall
/// remediates that stall (issue 21: it stayed stalled, "already observed").
fn new_episodes<'a>(ledger: &Ledger, obs: &'a Observation, acting: bool) -> Vec<&'a PodState> {
    let mut out: Vec<&PodState> = obs
        .pods
        .iter()
        .filter(|p| p.is_stalled())
        .filter(|p| {
            let since = p.stalled_since_ms.unwrap_or_default();
            !ledger
                .all()
                .any(|a| a.is_episode(p, since) && !(acting && a.observe_only))
        })
        .collect();
    out.sort_by_key(|p| (p.stalled_since_ms, p.name.clone()));
    out
}

/// No attempt in flight: record one for the longest-stalled new episode, unless a rail stops it.
pub(super) fn maybe_start(policy: &Policy, ledger: &Ledger, obs: &Observation) -> Decision {
    let episodes = new_episodes(ledger, obs, policy.mode != Mode::Observe);
    if episodes.is_empty() {
        return Decision::Idle {
            recheck_at_ms: None,
            blocked: None,
        };
    }
    let pod = match remediable_pod(&episodes, obs) {
        Ok(pod) => pod,
        Err(blocked) => return blocked_idle(blocked, None),
    };
    let attempt = new_attempt(pod, obs.now_ms);
    if policy.mode == Mode::Observe {
        // Observe is not limited by budget, cooldown or concurrency: it does nothing.
        return record_observed(policy, ledger, attempt, obs.now_ms);
    }
    if let Some(idle) = acting_rail(policy, ledger, obs) {
        return idle;
    }
    record_started(ledger, attempt)
}

fn blocked_idle(blocked: Blocked, recheck_at_ms: Option<u64>) -> Decision {
    Decision::Idle {
        recheck_at_ms,
        blocked: Some(blocked),
    }
}

/// The longest-stalled pod of `episodes` (not empty) that may be remediated, or the rail
/// (paused, opted out) that forbids every one of them.
fn remediable_pod<'a>(
    episodes: &[&'a PodState],
    obs: &Observation,
) -> Result<&'a PodState, Blocked> {
    if obs.paused {
        return Err(Blocked::Paused);
    }
    if obs.opted_out {
        return Err(Blocked::OptedOut { pod: None });
    }
    // An opted-out pod is skipped; another stalled pod may still be remediated.
    episodes
        .iter()
        .copied()
        .find(|p| !p.opted_out)
        .ok_or_else(|| Blocked::OptedOut {
            pod: episodes.first().map(|p| p.name.clone()),
        })
}

/// A fresh attempt for `pod`'s stall episode, about its longest-stalled stream.
fn new_attempt(pod: &PodState, now: u64) -> Attempt {
    let stream = pod
        .stalled
        .first()
        .map(|s| s.stream.clone())
        .unwrap_or_else(|| "pod".to_string());
    let reason = pod
        .reason
        .or_else(|| pod.stalled.first().map(|s| s.reason))
        .unwrap_or(StallReason::ReportsLost);
    Attempt {
        id: format!("{}/{}@{}", pod.name, stream, now),
        pod: pod.name.clone(),
        pod_uid: pod.uid.clone(),
        stream,
        reason,
        stalled_since_ms: pod.stalled_since_ms.unwrap_or(now),
        started_at_ms: now,
        step: Step::Recorded,
        step_started_at_ms: now,
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

/// `Observe`: the attempt goes straight to the history with what would have been done.
fn record_observed(policy: &Policy, ledger: &Ledger, mut attempt: Attempt, now: u64) -> Decision {
    attempt.observe_only = true;
    let text = plan_text(policy, &attempt.pod, &attempt.stream);
    let note = Note::warning(
        "RemediationObserved",
        format!(
            "pod {} stream {} stalled ({}); {text}",
            attempt.pod, attempt.stream, attempt.reason
        ),
    );
    attempt.finish(Outcome::Observed, now, text);
    let mut next = ledger.clone();
    next.in_flight = Some(attempt);
    next.retire();
    Decision::Record { ledger: next, note }
}

/// The rail that keeps an acting attempt from starting now (budget, cooldown, concurrency),
/// as the `Idle` decision to return.
fn acting_rail(policy: &Policy, ledger: &Ledger, obs: &Observation) -> Option<Decision> {
    let now = obs.now_ms;
    let used = ledger.used_budget(now);
    if used >= policy.budget_per_hour {
        let frees_at_ms = ledger.budget_frees_at(now);
        let blocked = Blocked::BudgetSpent {
            used,
            limit: policy.budget_per_hour,
            frees_at_ms,
        };
        return Some(blocked_idle(blocked, frees_at_ms));
    }
    if let Some(last) = ledger.last_finished_acting() {
        let until = last.saturating_add(policy.cooldown_ms);
        if now < until {
            return Some(blocked_idle(
                Blocked::Cooldown { until_ms: until },
                Some(until),
            ));
        }
    }
    if obs.in_flight_elsewhere >= obs.max_concurrent {
        let blocked = Blocked::Concurrency {
            active: obs.in_flight_elsewhere,
            max: obs.max_concurrent,
        };
        // Another resource finishing triggers no event here: look again soon.
        return Some(blocked_idle(blocked, Some(now + 5_000)));
    }
    None
}

/// Rung 1: the attempt is on record before anything is done about it.
fn record_started(ledger: &Ledger, mut attempt: Attempt) -> Decision {
    let message = format!(
        "pod {} stream {} stalled ({}); remediation {} recorded",
        attempt.pod, attempt.stream, attempt.reason, attempt.id
    );
    attempt.message = Some(message.clone());
    let mut next = ledger.clone();
    next.in_flight = Some(attempt);
    Decision::Record {
        ledger: next,
        note: Note::warning("RemediationStarted", message),
    }
}

/// What would be done, for `Observe` records.
fn plan_text(policy: &Policy, pod: &str, stream: &str) -> String {
    let acting = Policy {
        mode: Mode::DumpAndRestart,
        ..policy.clone()
    };
    let mut steps = Vec::new();
    let mut step = Step::Recorded;
    loop {
        step = next_step(&acting, step);
        match step {
            Step::SoftRestart => steps.push(format!("soft-restart stream {stream}")),
            Step::Dump => steps.push(format!("capture a dump of pod {pod}")),
            Step::Restart => steps.push(match policy.restart_target {
                RestartTarget::Pod => format!("delete pod {pod}"),
                RestartTarget::Deployment => "roll the Deployment".to_string(),
            }),
            _ => break,
        }
    }
    format!("Observe mode: would {}", steps.join(", then "))
}
