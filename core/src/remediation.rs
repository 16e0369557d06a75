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

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::condition::{StallReason, StalledStream};

/// Attempts kept in [`Ledger::history`].
pub const MAX_HISTORY: usize = 20;
/// The rolling window of the budget.
pub const BUDGET_WINDOW_MS: u64 = 3_600_000;

/// What to do about a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Mode {
    /// Soft restart (if enabled), dump, restart.
    #[default]
    DumpAndRestart,
    /// Soft restart (if enabled), restart.
    RestartOnly,
    /// Dump only; nothing is restarted.
    DumpOnly,
    /// Record what would be done; do nothing.
    Observe,
}

/// What the restart rung restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartTarget {
    /// Delete the stalled pod; its ReplicaSet replaces it.
    #[default]
    Pod,
    /// Roll the whole Deployment (`kubectl rollout restart`).
    Deployment,
}

/// The remediation policy, from the TransitStream spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// What a stall may lead to (observe, dump, restart, both).
    pub mode: Mode,
    /// Ask the sidecar to restart the stalled stream's dispatcher before anything else.
    pub soft_restart_first: bool,
    /// How long a soft restart may take to clear the stall before the next step.
    pub soft_restart_timeout_ms: u64,
    /// How long the sidecar may take to capture a dump bundle.
    pub dump_timeout_ms: u64,
    /// How long a restarted pod (or rollout) may take before the attempt counts as failed.
    pub restart_timeout_ms: u64,
    /// Attempts allowed per rolling hour (0: never act; stalls only set `Degraded`).
    pub budget_per_hour: u32,
    /// Minimum time from the end of one attempt to the start of the next.
    pub cooldown_ms: u64,
    /// What a restart restarts: the pod or the whole Deployment.
    pub restart_target: RestartTarget,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::DumpAndRestart,
            soft_restart_first: false,
            soft_restart_timeout_ms: 5_000,
            dump_timeout_ms: 10_000,
            restart_timeout_ms: 120_000,
            budget_per_hour: 3,
            cooldown_ms: 300_000,
            restart_target: RestartTarget::Pod,
        }
    }
}

/// The step an attempt is at. Each step is recorded before its effect is performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Recorded: the episode is in the ledger, no effect yet.
    Recorded,
    /// Asking the sidecar to restart the stream's dispatcher.
    SoftRestart,
    /// Capturing a dump bundle.
    Dump,
    /// Restarting the pod or the Deployment.
    Restart,
    /// Finished; `outcome` says how.
    Done,
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepResult {
    /// It did what it was for.
    Succeeded,
    /// It returned an error.
    Failed,
    /// It took longer than its timeout.
    TimedOut,
    /// Not performed.
    Skipped,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The stall cleared (after a soft restart, or by itself) before any restart.
    Recovered,
    /// The pod was deleted or the Deployment rolled.
    Restarted,
    /// `DumpOnly`: the dump rung ran, nothing was restarted.
    Dumped,
    /// `Observe`: what would have been done is recorded.
    Observed,
    /// The stalled pod went away before the restart rung (someone else restarted it).
    PodGone,
    /// Paused or opted out while in flight; the remaining steps were not taken.
    Cancelled,
    /// The restart could not be issued within `restart_timeout_ms`.
    Failed,
}

impl Outcome {
    /// Metric label / Event reason suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recovered => "Recovered",
            Outcome::Restarted => "Restarted",
            Outcome::Dumped => "Dumped",
            Outcome::Observed => "Observed",
            Outcome::PodGone => "PodGone",
            Outcome::Cancelled => "Cancelled",
            Outcome::Failed => "Failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One remediation attempt: the record the adapter persists (the operator in the
/// TransitStream's status, the demo wherever it likes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// `<pod>/<stream>@<started_at_ms>`: unique per episode.
    pub id: String,
    /// The pod the stall is on.
    pub pod: String,
    /// The pod's uid (or, for a local adapter, the process instance) this attempt is about.
    pub pod_uid: Option<String>,
    /// The stalled stream.
    pub stream: String,
    /// Why it is stalled.
    pub reason: StallReason,
    /// When the episode began (the stall condition's transition), for the episode identity
    /// and the stall-to-restart measurement.
    pub stalled_since_ms: u64,
    /// When this attempt started.
    pub started_at_ms: u64,
    /// The step it is at.
    pub step: Step,
    /// When that step started (its timeout counts from here).
    pub step_started_at_ms: u64,
    /// Mode `Observe`: recorded with what would have been done, nothing performed, not
    /// counted against the budget.
    pub observe_only: bool,
    /// How the soft restart ended, if there was one.
    pub soft_restart: Option<StepResult>,
    /// How the dump ended, if there was one.
    pub dump: Option<StepResult>,
    /// Where the dump bundle is, if one was captured.
    pub bundle_path: Option<String>,
    /// How the restart ended, if there was one.
    pub restart: Option<StepResult>,
    /// How the attempt ended, once it did.
    pub outcome: Option<Outcome>,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// A sentence on how it ended, for the status and the Event.
    pub message: Option<String>,
}

impl Attempt {
    fn is_episode(&self, pod: &PodState, since_ms: u64) -> bool {
        // Condition times have one-second resolution in Kubernetes: compare at that grain.
        self.stalled_since_ms / 1000 == since_ms / 1000
            && self.pod == pod.name
            && (self.pod_uid.is_none() || pod.uid.is_none() || self.pod_uid == pod.uid)
    }

    fn finish(&mut self, outcome: Outcome, now_ms: u64, message: impl Into<String>) {
        self.step = Step::Done;
        self.step_started_at_ms = now_ms;
        self.outcome = Some(outcome);
        self.finished_at_ms = Some(now_ms);
        self.message = Some(message.into());
    }

    fn enter(&mut self, step: Step, now_ms: u64) {
        self.step = step;
        self.step_started_at_ms = now_ms;
    }
}

/// The persisted record: the attempt in flight (at most one per resource) and a bounded
/// history of finished attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// The attempt being carried out, if any.
    pub in_flight: Option<Attempt>,
    /// Finished attempts, oldest first, bounded.
    pub history: Vec<Attempt>,
}

impl Ledger {
    /// Non-observe attempts started within the budget window ending at `now_ms`.
    pub fn used_budget(&self, now_ms: u64) -> u32 {
        let from = now_ms.saturating_sub(BUDGET_WINDOW_MS);
        self.all()
            .filter(|a| !a.observe_only && a.started_at_ms > from)
            .count() as u32
    }

    /// When the oldest attempt counted by [`Ledger::used_budget`] leaves the window.
    pub fn budget_frees_at(&self, now_ms: u64) -> Option<u64> {
        let from = now_ms.saturating_sub(BUDGET_WINDOW_MS);
        self.all()
            .filter(|a| !a.observe_only && a.started_at_ms > from)
            .map(|a| a.started_at_ms + BUDGET_WINDOW_MS)
            .min()
    }

    fn all(&self) -> impl Iterator<Item = &Attempt> {
        self.history.iter().chain(self.in_flight.as_ref())
    }

    fn last_finished_acting(&self) -> Option<u64> {
        self.history
            .iter()
            .filter(|a| !a.observe_only)
            .filter_map(|a| a.finished_at_ms)
            .max()
    }

    /// Move the in-flight attempt (finished) to the history, keeping it bounded.
    fn retire(&mut self) {
        if let Some(a) = self.in_flight.take() {
            self.history.push(a);
            let excess = self.history.len().saturating_sub(MAX_HISTORY);
            self.history.drain(..excess);
        }
    }

    /// A copy with `change` applied to the attempt in flight: the ledger a step's decision
    /// persists.
    fn with_in_flight(&self, change: impl FnOnce(&mut Attempt)) -> Ledger {
        let mut next = self.clone();
        if let Some(a) = next.in_flight.as_mut() {
            change(a);
        }
        next
    }

    /// A copy with the attempt in flight changed by `change`, finished with `outcome` and
    /// moved to the history.
    fn with_finished(
        &self,
        now_ms: u64,
        outcome: Outcome,
        message: String,
        change: impl FnOnce(&mut Attempt),
    ) -> Ledger {
        let mut next = self.with_in_flight(|a| {
            change(a);
            a.finish(outcome, now_ms, message);
        });
        next.retire();
        next
    }

    /// The most recent attempt, in flight or finished.
    pub fn latest(&self) -> Option<&Attempt> {
        self.in_flight.as_ref().or(self.history.last())
    }
}

/// One pod as observed now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// The pod's name.
    pub name: String,
    /// The pod's uid (`None` when unknown: any pod of that name matches).
    pub uid: Option<String>,
    /// `Some(t)` while the pod's stall condition is `False`, `t` being its transition time.
    pub stalled_since_ms: Option<u64>,
    /// The stalled streams the condition message names (longest-stalled first).
    pub stalled: Vec<StalledStream>,
    /// The condition's reason (the longest-stalled stream's reason).
    pub reason: Option<StallReason>,
    /// The pod carries the opt-out annotation.
    pub opted_out: bool,
    /// The pod is being deleted (it does not count as a new episode).
    pub terminating: bool,
}

impl PodState {
    /// A healthy pod.
    pub fn healthy(name: &str, uid: &str) -> Self {
        PodState {
            name: name.into(),
            uid: Some(uid.into()),
            stalled_since_ms: None,
            stalled: Vec::new(),
            reason: None,
            opted_out: false,
            terminating: false,
        }
    }

    /// A pod stalled since `since_ms` on `streams` (the first is the longest-stalled).
    pub fn stalled(name: &str, uid: &str, since_ms: u64, streams: Vec<StalledStream>) -> Self {
        let reason = streams.first().map(|s| s.reason);
        PodState {
            stalled_since_ms: Some(since_ms),
            stalled: streams,
            reason,
            ..PodState::healthy(name, uid)
        }
    }

    fn is_stalled(&self) -> bool {
        self.stalled_since_ms.is_some() && !self.terminating
    }
}

/// Everything observed now besides the policy and the ledger.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// The wall clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// The resource's pods.
    pub pods: Vec<PodState>,
    /// The resource's `paused`.
    pub paused: bool,
    /// The resource carries the opt-out annotation.
    pub opted_out: bool,
    /// Attempts in flight for *other* resources, operator-wide.
    pub in_flight_elsewhere: usize,
    /// The operator-wide cap on attempts in flight (0 means no attempt may start).
    pub max_concurrent: usize,
}

/// What the adapter should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do. Re-run at `recheck_at_ms` if set (a rail that lifts with time), else on
    /// the next change. `blocked` says why a stall is not being acted on.
    Idle {
        /// When to decide again at the latest (a rail that lifts with time).
        recheck_at_ms: Option<u64>,
        /// Why a stall is not acted on, if one is not.
        blocked: Option<Blocked>,
    },
    /// Persist `ledger`, then decide again. No effect.
    Record {
        /// The ledger to persist.
        ledger: Ledger,
        /// The Event to emit.
        note: Note,
    },
    /// Persist `ledger` (which records the step); only once that succeeded, perform `effect`
    /// and persist [`record_result`]`(&ledger, effect.attempt_id(), result)`. After a failed
    /// effect, requeue with backoff rather than deciding again at once.
    Act {
        /// The ledger to persist first.
        ledger: Ledger,
        /// The effect to perform once it is persisted.
        effect: Effect,
        /// The Event to emit.
        note: Note,
    },
    /// An effect may be running (or the stall may clear): decide again at `until_ms` or on
    /// the next change, whichever is first.
    Wait {
        /// When to decide again at the latest.
        until_ms: u64,
        /// The step waited on.
        step: Step,
    },
}

/// Why a stall is not being acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// The resource's `paused` is set.
    Paused,
    /// The pod (or, with `pod: None`, the resource) carries the opt-out annotation.
    OptedOut {
        /// The opted-out pod, if the opt-out is the pod's.
        pod: Option<String>,
    },
    /// The hourly budget is spent: set `Degraded`, emit an Event, count it.
    BudgetSpent {
        /// Attempts started in the last hour.
        used: u32,
        /// Attempts allowed per hour.
        limit: u32,
        /// When the oldest of them leaves the window, if one will.
        frees_at_ms: Option<u64>,
    },
    /// The previous attempt ended less than the cooldown ago.
    Cooldown {
        /// When the cooldown ends.
        until_ms: u64,
    },
    /// Too many attempts in flight operator-wide.
    Concurrency {
        /// Attempts in flight.
        active: usize,
        /// The operator-wide cap.
        max: usize,
    },
}

impl Blocked {
    /// Metric label / Event reason.
    pub fn label(&self) -> &'static str {
        match self {
            Blocked::Paused => "Paused",
            Blocked::OptedOut { .. } => "OptedOut",
            Blocked::BudgetSpent { .. } => "BudgetSpent",
            Blocked::Cooldown { .. } => "Cooldown",
            Blocked::Concurrency { .. } => "ConcurrencyLimit",
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Paused => f.write_str("remediation is paused"),
            Blocked::OptedOut { pod: Some(p) } => write!(f, "pod {p} opted out of remediation"),
            Blocked::OptedOut { pod: None } => f.write_str("remediation is opted out"),
            Blocked::BudgetSpent { used, limit, .. } => write!(
                f,
                "remediation budget spent: {used} of {limit} in the last hour; not restarting"
            ),
            Blocked::Cooldown { until_ms } => write!(f, "cooling down until {until_ms} ms"),
            Blocked::Concurrency { active, max } => write!(
                f,
                "{active} remediations in flight operator-wide (limit {max})"
            ),
        }
    }
}

/// A side effect, performed by the adapter after the ledger that records it is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ask the pod's sidecar to restart one stream's dispatcher.
    SoftRestart {
        /// The attempt the effect belongs to.
        attempt_id: String,
        /// The pod whose sidecar is asked.
        pod: String,
        /// The stream to restart.
        stream: String,
    },
    /// Ask the pod's sidecar for a dump bundle, bounded by `timeout_ms`.
    CaptureDump {
        /// The attempt the effect belongs to.
        attempt_id: String,
        /// The pod whose sidecar is asked.
        pod: String,
        /// The stream the dump is about.
        stream: String,
        /// Why it is stalled.
        reason: StallReason,
        /// How long the capture may take.
        timeout_ms: u64,
    },
    /// Restart the pod, only if it still is the one with `pod_uid` (a uid precondition).
    RestartPod {
        /// The attempt the effect belongs to.
        attempt_id: String,
        /// The pod to delete.
        pod: String,
        /// Its uid: deleted only if the pod still has it.
        pod_uid: Option<String>,
    },
    /// Roll the Deployment: set its pod template's `restartedAt` annotation to this value.
    RolloutRestart {
        /// The attempt the effect belongs to.
        attempt_id: String,
        /// The annotation's value, ms since the Unix epoch.
        restarted_at_ms: u64,
    },
}

impl Effect {
    /// The attempt the effect belongs to.
    pub fn attempt_id(&self) -> &str {
        match self {
            Effect::SoftRestart { attempt_id, .. }
            | Effect::CaptureDump { attempt_id, .. }
            | Effect::RestartPod { attempt_id, .. }
            | Effect::RolloutRestart { attempt_id, .. } => attempt_id,
        }
    }
}

/// What an effect did, reported with [`record_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectResult {
    /// The sidecar accepted the soft restart; the attempt now waits for the stall to clear.
    SoftRestartAccepted,
    /// The sidecar refused the soft restart or did not answer.
    SoftRestartFailed {
        /// What went wrong.
        error: String,
    },
    /// The sidecar wrote a dump bundle.
    DumpCaptured {
        /// Where it is.
        bundle_path: String,
    },
    /// No dump bundle.
    DumpFailed {
        /// What went wrong.
        error: String,
        /// The capture ran past its timeout.
        timed_out: bool,
    },
    /// The pod was deleted (or was already gone) / the Deployment was patched.
    RestartIssued,
    /// The pod could not be deleted / the Deployment not patched.
    RestartFailed {
        /// What went wrong.
        error: String,
    },
}

/// A step worth an Event: `reason` is a stable CamelCase word, `message` a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// A stable CamelCase word (the Event's reason).
    pub reason: &'static str,
    /// A sentence (the Event's message).
    pub message: String,
    /// Warning (something is wrong) or Normal.
    pub warning: bool,
}

impl Note {
    fn normal(reason: &'static str, message: String) -> Self {
        Note {
            reason,
            message,
            warning: false,
        }
    }
    fn warning(reason: &'static str, message: String) -> Self {
        Note {
            reason,
            message,
            warning: true,
        }
    }
}

/// The next step after the current one in this mode.
fn next_step(policy: &Policy, after: Step) -> Step {
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

/// Decide the next action. Pure; see the module docs for the protocol.
pub fn decide(policy: &Policy, ledger: &Ledger, obs: &Observation) -> Decision {
    match &ledger.in_flight {
        Some(attempt) => continue_attempt(policy, ledger, attempt, obs),
        None => maybe_start(policy, ledger, obs),
    }
}

/// No attempt in flight: record one for the longest-stalled new episode, unless a rail stops it.
fn maybe_start(policy: &Policy, ledger: &Ledger, obs: &Observation) -> Decision {
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

fn continue_attempt(
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

/// Fold an effect's result into the ledger. Returns the ledger unchanged when the attempt is
/// no longer the one in flight (a late result of a cancelled attempt).
pub fn record_result(ledger: &Ledger, attempt_id: &str, result: EffectResult) -> Ledger {
    let mut next = ledger.clone();
    let Some(a) = next.in_flight.as_mut().filter(|a| a.id == attempt_id) else {
        return next;
    };
    match result {
        EffectResult::SoftRestartAccepted => {
            a.message = Some(format!(
                "soft restart of stream {} accepted; waiting for the stall to clear",
                a.stream
            ));
        }
        EffectResult::SoftRestartFailed { error } => {
            a.soft_restart = Some(StepResult::Failed);
            a.message = Some(format!("soft restart failed: {error}"));
        }
        EffectResult::DumpCaptured { bundle_path } => {
            a.dump = Some(StepResult::Succeeded);
            a.message = Some(format!("dump bundle at {bundle_path}"));
            a.bundle_path = Some(bundle_path);
        }
        EffectResult::DumpFailed { error, timed_out } => {
            a.dump = Some(if timed_out {
                StepResult::TimedOut
            } else {
                StepResult::Failed
            });
            a.message = Some(format!("dump failed: {error}"));
        }
        EffectResult::RestartIssued => {
            a.restart = Some(StepResult::Succeeded);
        }
        EffectResult::RestartFailed { error } => {
            a.restart = Some(StepResult::Failed);
            a.message = Some(format!("restart failed: {error}"));
        }
    }
    next
}

/// The Event/metric to emit for an effect's result.
pub fn result_note(attempt_id: &str, result: &EffectResult) -> Note {
    match result {
        EffectResult::SoftRestartAccepted => Note::normal(
            "SoftRestartAccepted",
            format!("{attempt_id}: soft restart accepted"),
        ),
        EffectResult::SoftRestartFailed { error } => Note::warning(
            "SoftRestartFailed",
            format!("{attempt_id}: soft restart failed: {error}"),
        ),
        EffectResult::DumpCaptured { bundle_path } => Note::normal(
            "DumpCaptured",
            format!("{attempt_id}: dump bundle at {bundle_path}"),
        ),
        EffectResult::DumpFailed { error, .. } => Note::warning(
            "DumpFailed",
            format!("{attempt_id}: dump failed, restarting anyway: {error}"),
        ),
        EffectResult::RestartIssued => {
            Note::normal("RestartIssued", format!("{attempt_id}: restart issued"))
        }
        EffectResult::RestartFailed { error } => Note::warning(
            "RestartFailed",
            format!("{attempt_id}: restart failed (will retry): {error}"),
        ),
    }
}

#[cfg(test)]
mod tests;
