//! The attempt in flight: rung order (`next_step`), what each step does with what is observed
//! now (one `InFlight` method per step) and the effect each rung issues (`rung_effect`).

use super::decision::{Decision, Effect, Note};
use super::input::{Mode, Observation, PodState, Policy, RestartTarget};
use super::ledger::{Attempt, Ledger, Outcome, Step, StepResult};

/// The next step after the current one in this mode.
pub(super) fn next_step(policy: &Policy, after: Step) -> Step {
    let soft = policy.soft_restart_first && policy.mode != Mode::DumpOnly;
    let dump = matches!(policy.mode, Mode::DumpAndRestart | Mode::DumpOnly);
    let restart = matches!(policy.mode, Mode::DumpAndRestart | Mode::RestartOnly);
    let order = [
        (Step::SoftRestart, soft),
        (Step::Dump, dump),
        (Step::Restart, restart),
    ];
    let start = match after {
        Step::Recorded => 0,
        Step::SoftRestart => 1,
        Step::Dump => 2,
        Step::Restart | Step::Done => 3,
    };
    order[start..]
        .iter()
        .find(|(_, on)| *on)
        .map(|(s, _)| *s)
        .unwrap_or(Step::Done)
}

/// The attempt in flight, seen against what is observed now.
struct InFlight<'a> {
    policy: &'a Policy,
    ledger: &'a Ledger,
    attempt: &'a Attempt,
    /// The attempt's pod (same name, and same uid when both are known), if it still exists.
    pod: Option<&'a PodState>,
    /// The pod is still in the attempt's stall episode.
    stalled: bool,
    now: u64,
}

pub(super) fn continue_attempt(
    policy: &Policy,
    ledger: &Ledger,
    attempt: &Attempt,
    obs: &Observation,
) -> Decision {
    if attempt.step == Step::Done {
        // Finished but not yet moved to history (a record written by hand or an old version).
        return close_finished(ledger, attempt);
    }
    let pod = obs
        .pods
        .iter()
        .find(|p| p.name == attempt.pod && (attempt.pod_uid.is_none() || p.uid == attempt.pod_uid));
    let stalled = pod.is_some_and(|p| {
        // Condition times have one-second resolution in Kubernetes: compare at that grain.
        p.is_stalled()
            && p.stalled_since_ms.map(|s| s / 1000) == Some(attempt.stalled_since_ms / 1000)
    });
    let in_flight = InFlight {
        policy,
        ledger,
        attempt,
        pod,
        stalled,
        now: obs.now_ms,
    };
    if obs.paused {
        return in_flight.cancelled("paused");
    }
    if obs.opted_out || pod.is_some_and(|p| p.opted_out) {
        return in_flight.cancelled("opted out");
    }
    match attempt.step {
        Step::Recorded => in_flight.after_recorded(),
        Step::SoftRestart => in_flight.during_soft_restart(),
        Step::Dump => in_flight.during_dump(),
        Step::Restart => in_flight.during_restart(),
        Step::Done => close_finished(ledger, attempt),
    }
}

impl InFlight<'_> {
    /// Persist `change` to the attempt, then decide again.
    fn record(&self, note: Note, change: impl FnOnce(&mut Attempt)) -> Decision {
        Decision::Record {
            ledger: self.ledger.with_in_flight(change),
            note,
        }
    }

    /// End the attempt with `outcome` after `change` (the last step's result); the note's
    /// message is also the attempt's closing message.
    fn finish(&self, outcome: Outcome, note: Note, change: impl FnOnce(&mut Attempt)) -> Decision {
        let ledger = self
            .ledger
            .with_finished(self.now, outcome, note.message.clone(), change);
        Decision::Record { ledger, note }
    }

    fn pod_gone(&self, message: String) -> Decision {
        let note = Note::normal("RemediationPodGone", message);
        self.finish(Outcome::PodGone, note, |_| {})
    }

    /// Paused or opted out while in flight: the remaining steps are not taken.
    fn cancelled(&self, why: &str) -> Decision {
        let message = format!(
            "{}: remediation {why}; remaining steps not taken",
            self.attempt.id
        );
        let note = Note::normal("RemediationCancelled", message);
        self.finish(Outcome::Cancelled, note, |_| {})
    }

    /// Recorded, nothing done yet: take the first rung unless there is nothing left to fix.
    fn after_recorded(&self) -> Decision {
        let a = self.attempt;
        if self.pod.is_none() {
            return self.pod_gone(format!("{}: pod {} is gone; nothing to do", a.id, a.pod));
        }
        if !self.stalled {
            let message = format!("{}: stall cleared by itself", a.id);
            let note = Note::normal("RemediationRecovered", message);
            return self.finish(Outcome::Recovered, note, |_| {});
        }
        advance(self.policy, self.ledger, Step::Recorded, self.now)
    }

    /// The soft restart is issued: done if the stall clears in time, else the next rung.
    fn during_soft_restart(&self) -> Decision {
        let (policy, a) = (self.policy, self.attempt);
        if self.pod.is_none() {
            return self.pod_gone(format!(
                "{}: pod {} went away during the soft restart",
                a.id, a.pod
            ));
        }
        if a.soft_restart.is_some() {
            // Soft restart resolved (failed or timed out): next rung.
            return advance(policy, self.ledger, Step::SoftRestart, self.now);
        }
        if !self.stalled {
            let message = format!(
                "{}: stream {} recovered after a soft restart",
                a.id, a.stream
            );
            let note = Note::normal("SoftRestartRecovered", message);
            return self.finish(Outcome::Recovered, note, |a| {
                a.soft_restart = Some(StepResult::Succeeded);
            });
        }
        let deadline = a.step_started_at_ms + policy.soft_restart_timeout_ms;
        if self.now < deadline {
            return Decision::Wait {
                until_ms: deadline,
                step: Step::SoftRestart,
            };
        }
        let timeout = policy.soft_restart_timeout_ms;
        let note = Note::warning(
            "SoftRestartTimedOut",
            format!(
                "{}: stream {} still stalled {timeout} ms after the soft restart",
                a.id, a.stream
            ),
        );
        self.record(note, |a| {
            a.soft_restart = Some(StepResult::TimedOut);
            a.message = Some(format!(
                "stall did not clear within {timeout} ms of the soft restart"
            ));
        })
    }

    /// The dump is requested: wait for its result (never issue it twice), then the next rung.
    fn during_dump(&self) -> Decision {
        let (policy, a) = (self.policy, self.attempt);
        if a.dump.is_none() {
            let deadline = a.step_started_at_ms + policy.dump_timeout_ms;
            if self.now < deadline && self.pod.is_some() {
                // The capture is running (or was lost in a crash): never issue it twice.
                return Decision::Wait {
                    until_ms: deadline,
                    step: Step::Dump,
                };
            }
            let note = Note::warning(
                "DumpFailed",
                format!(
                    "{}: no dump result within {} ms; continuing",
                    a.id, policy.dump_timeout_ms
                ),
            );
            return self.record(note, |a| {
                a.dump = Some(StepResult::TimedOut);
                a.message = Some("no dump result within the timeout".into());
            });
        }
        if self.pod.is_none() && next_step(policy, Step::Dump) == Step::Restart {
            return self.pod_gone(format!(
                "{}: pod {} went away before the restart",
                a.id, a.pod
            ));
        }
        advance(policy, self.ledger, Step::Dump, self.now)
    }

    /// The restart is issued: done once it succeeded or the pod is gone, retried (idempotent)
    /// until `restart_timeout_ms`, then failed.
    fn during_restart(&self) -> Decision {
        let (policy, a) = (self.policy, self.attempt);
        if a.restart == Some(StepResult::Succeeded) {
            let note = Note::normal("RemediationCompleted", restart_done_text(policy, a));
            return self.finish(Outcome::Restarted, note, |_| {});
        }
        if self.pod.is_none() && policy.restart_target == RestartTarget::Pod {
            // Deleted by us before a crash, or by someone else: either way restarted.
            let message = format!("{}: pod {} is gone; restart complete", a.id, a.pod);
            let note = Note::normal("RemediationCompleted", message);
            return self.finish(Outcome::Restarted, note, |a| {
                a.restart = Some(StepResult::Succeeded);
            });
        }
        if self.now >= a.step_started_at_ms + policy.restart_timeout_ms {
            let message = format!(
                "{}: restart not issued within {} ms: {}",
                a.id,
                policy.restart_timeout_ms,
                a.message.clone().unwrap_or_default()
            );
            let note = Note::warning("RemediationFailed", message);
            return self.finish(Outcome::Failed, note, |a| {
                a.restart = Some(StepResult::Failed);
            });
        }
        // Idempotent: the effect names the pod uid / a fixed restartedAt.
        Decision::Act {
            ledger: self.ledger.clone(),
            effect: restart_effect(policy, a),
            note: Note::warning(
                "RestartRetried",
                format!("{}: issuing the restart again", a.id),
            ),
        }
    }
}

/// Move an attempt that is already `Done` to the history.
fn close_finished(ledger: &Ledger, attempt: &Attempt) -> Decision {
    let mut next = ledger.clone();
    next.retire();
    Decision::Record {
        ledger: next,
        note: Note::normal("RemediationRecorded", format!("{} closed", attempt.id)),
    }
}

fn restart_done_text(policy: &Policy, attempt: &Attempt) -> String {
    match policy.restart_target {
        RestartTarget::Pod => format!("{}: pod {} deleted", attempt.id, attempt.pod),
        RestartTarget::Deployment => format!("{}: Deployment rollout restarted", attempt.id),
    }
}

fn restart_effect(policy: &Policy, attempt: &Attempt) -> Effect {
    match policy.restart_target {
        RestartTarget::Pod => Effect::RestartPod {
            attempt_id: attempt.id.clone(),
            pod: attempt.pod.clone(),
            pod_uid: attempt.pod_uid.clone(),
        },
        RestartTarget::Deployment => Effect::RolloutRestart {
            attempt_id: attempt.id.clone(),
            restarted_at_ms: attempt.step_started_at_ms,
        },
    }
}

/// Move to the rung after `from`: record it and hand out its effect, or finish.
fn advance(policy: &Policy, ledger: &Ledger, from: Step, now: u64) -> Decision {
    let step = next_step(policy, from);
    let mut next = ledger.clone();
    let Some(a) = next.in_flight.as_mut() else {
        return Decision::Idle {
            recheck_at_ms: None,
            blocked: None,
        };
    };
    if step == Step::Done {
        return finish_after_last_rung(policy, ledger, a, now);
    }
    a.enter(step, now);
    let Some((effect, note)) = rung_effect(policy, a) else {
        return Decision::Idle {
            recheck_at_ms: None,
            blocked: None,
        };
    };
    a.message = Some(note.message.clone());
    Decision::Act {
        ledger: next,
        effect,
        note,
    }
}

/// No rung left: `DumpOnly` is done; any other mode ran out of rungs without a restart.
fn finish_after_last_rung(policy: &Policy, ledger: &Ledger, a: &Attempt, now: u64) -> Decision {
    let (outcome, message) = match policy.mode {
        Mode::DumpOnly => {
            let dump = match &a.bundle_path {
                Some(p) => format!("captured at {p}"),
                None => "failed".into(),
            };
            let message = format!("{}: dump {dump}; DumpOnly mode restarts nothing", a.id);
            (Outcome::Dumped, message)
        }
        _ => (Outcome::Failed, format!("{}: no rung left", a.id)),
    };
    Decision::Record {
        ledger: ledger.with_finished(now, outcome, message.clone(), |_| {}),
        note: Note::normal("RemediationCompleted", message),
    }
}

/// The effect of the rung `a` has just entered, with its note (`None` for a step that is no
/// rung).
fn rung_effect(policy: &Policy, a: &Attempt) -> Option<(Effect, Note)> {
    let rung = match a.step {
        Step::SoftRestart => (
            Effect::SoftRestart {
                attempt_id: a.id.clone(),
                pod: a.pod.clone(),
                stream: a.stream.clone(),
            },
            Note::normal(
                "SoftRestart",
                format!("{}: restarting stream {} in pod {}", a.id, a.stream, a.pod),
            ),
        ),
        Step::Dump => (
            Effect::CaptureDump {
                attempt_id: a.id.clone(),
                pod: a.pod.clone(),
                stream: a.stream.clone(),
                reason: a.reason,
                timeout_ms: policy.dump_timeout_ms,
            },
            Note::normal(
                "DumpRequested",
                format!("{}: capturing a dump bundle from pod {}", a.id, a.pod),
            ),
        ),
        Step::Restart => {
            let effect = restart_effect(policy, a);
            let text = match &effect {
                Effect::RolloutRestart { .. } => format!("{}: rolling the Deployment", a.id),
                _ => format!("{}: deleting pod {}", a.id, a.pod),
            };
            (effect, Note::warning("Restarting", text))
        }
        Step::Recorded | Step::Done => return None,
    };
    Some(rung)
}
