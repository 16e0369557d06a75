//! The remediation decision function: observed state in, next action out.
//!
//! The operator (and the local demo, which restarts a process where the operator deletes a
//! pod) run the same loop around [`decide`]:
//!
//! ```text
//! loop {
//!     match decide(&policy, &ledger, &observation) {
//!         Decision::Record { ledger: next, note } => { persist(next)?; emit(note); }
//!         Decision::Act { ledger: next, effect, note } => {
//!             persist(next)?;                    // the step is on record BEFORE it is taken
//!             emit(note);
//!             let result = execute(effect);      // soft restart, dump, delete pod, roll out
//!             persist(record_result(&next, effect.attempt_id(), result))?;
//!         }
//!         Decision::Wait { until_ms, .. } => { requeue(until_ms); break; }
//!         Decision::Idle { recheck_at_ms, blocked } => { report(blocked); requeue(recheck_at_ms); break; }
//!     }
//! }
//! ```
//!
//! ## Guarantees
//! - **Recorded before acting.** Every effect comes with the [`Ledger`] that records it; the
//!   adapter persists that ledger first and performs the effect only if that succeeded.
//! - **Exactly one remediation per stall episode.** An episode is one pod's stall condition
//!   from its transition to `False` until it is `True` again (`PodState::stalled_since_ms`,
//!   the condition's `lastTransitionTime`). An episode that already has an attempt (in flight
//!   or in history) never gets another, whatever its outcome.
//! - **Crash or hand-over never repeats or skips a step.** A soft restart or a dump whose step
//!   is on record but whose result is not is *not* issued again: the new leader waits out the
//!   step's timeout (the effect may still be running), records `TimedOut` and moves on. A
//!   restart without a recorded result is issued again, which is safe because restart effects
//!   are idempotent by construction: [`Effect::RestartPod`] names the pod's uid (delete with a
//!   uid precondition; the replacement pod is never hit) and [`Effect::RolloutRestart`] carries
//!   a deterministic `restarted_at_ms`.
//!
//! ## Rungs (per attempt)
//! 1. Record the attempt (`Step::Recorded`).
//! 2. Soft restart of the stalled stream, when `soft_restart_first` (not in `DumpOnly`);
//!    done (`Recovered`) if the pod's stall clears within `soft_restart_timeout_ms`.
//! 3. Dump bundle (`DumpAndRestart`, `DumpOnly`) bounded by `dump_timeout_ms`; a failed
//!    capture is recorded and does not block the restart.
//! 4. Restart (`DumpAndRestart`, `RestartOnly`): the pod, or the whole Deployment. Failures are
//!    retried (with the adapter's backoff) until `restart_timeout_ms`, then the attempt is
//!    `Failed`.
//!
//! ## Rails (checked before a new attempt; paused and opt-out also stop an attempt in flight)
//! `paused`, the opt-out annotation (on the resource or on the pod), `Observe` (one record
//! per episode with what would have been done, nothing else), the hourly budget (attempts that
//! are not observe-only and started in the last hour), the cooldown after the last attempt,
//! and an operator-wide cap on concurrent attempts.
//!
//! Times are milliseconds since the Unix epoch, supplied by the caller. No clocks, no I/O.
//!
//! ## Where a change goes
//! - `input`: the [`Policy`] (from the spec) and the [`Observation`] (pods, rails' inputs).
//! - `ledger`: the persisted record: [`Attempt`], its [`Step`]s and [`Outcome`], the
//!   [`Ledger`] and what the budget counts.
//! - `decision`: what the adapter gets: [`Decision`], [`Blocked`], [`Effect`],
//!   [`EffectResult`], [`Note`].
//! - `rails`: starting an attempt: new episodes, `remediable_pod` and `acting_rail` (the
//!   rails), the first record.
//! - `rungs`: the attempt in flight: rung order (`next_step`), one `InFlight` method per step,
//!   the effect a rung issues (`rung_effect`).
//! - `results`: [`record_result`] and [`result_note`], an effect's result folded back in.
//!
//! Each imports only its siblings, never this root (which re-exports the public items).
mod decision;
mod input;
mod ledger;
mod rails;
mod results;
mod rungs;

pub use decision::{Blocked, Decision, Effect, EffectResult, Note};
pub use input::{Mode, Observation, PodState, Policy, RestartTarget};
pub use ledger::{Attempt, BUDGET_WINDOW_MS, Ledger, MAX_HISTORY, Outcome, Step, StepResult};
pub use results::{record_result, result_note};

/// Decide the next action. Pure; see the module docs for the protocol.
pub fn decide(policy: &Policy, ledger: &Ledger, obs: &Observation) -> Decision {
    match &ledger.in_flight {
        Some(attempt) => rungs::continue_attempt(policy, ledger, attempt, obs),
        None => rails::maybe_start(policy, ledger, obs),
    }
}

#[cfg(test)]
mod tests;
