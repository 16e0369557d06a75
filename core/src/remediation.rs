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
    pub mode: Mode,
    pub soft_restart_first: bool,
    pub soft_restart_timeout_ms: u64,
    pub dump_timeout_ms: u64,
    pub restart_timeout_ms: u64,
    /// Attempts allowed per rolling hour (0: never act; stalls only set `Degraded`).
    pub budget_per_hour: u32,
    /// Minimum time from the end of one attempt to the start of the next.
    pub cooldown_ms: u64,
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
    Recorded,
    SoftRestart,
    Dump,
    Restart,
    Done,
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepResult {
    Succeeded,
    Failed,
    TimedOut,
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
    pub pod: String,
    /// The pod's uid (or, for a local adapter, the process instance) this attempt is about.
    pub pod_uid: Option<String>,
    pub stream: String,
    pub reason: StallReason,
    /// When the episode began (the stall condition's transition), for the episode identity
    /// and the stall-to-restart measurement.
    pub stalled_since_ms: u64,
    pub started_at_ms: u64,
    pub step: Step,
    pub step_started_at_ms: u64,
    pub observe_only: bool,
    pub soft_restart: Option<StepResult>,
    pub dump: Option<StepResult>,
    pub bundle_path: Option<String>,
    pub restart: Option<StepResult>,
    pub outcome: Option<Outcome>,
    pub finished_at_ms: Option<u64>,
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
    pub in_flight: Option<Attempt>,
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

    /// The most recent attempt, in flight or finished.
    pub fn latest(&self) -> Option<&Attempt> {
        self.in_flight.as_ref().or(self.history.last())
    }
}

/// One pod as observed now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
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
    pub now_ms: u64,
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
        recheck_at_ms: Option<u64>,
        blocked: Option<Blocked>,
    },
    /// Persist `ledger`, then decide again. No effect.
    Record { ledger: Ledger, note: Note },
    /// Persist `ledger` (which records the step); only once that succeeded, perform `effect`
    /// and persist [`record_result`]`(&ledger, effect.attempt_id(), result)`. After a failed
    /// effect, requeue with backoff rather than deciding again at once.
    Act {
        ledger: Ledger,
        effect: Effect,
        note: Note,
    },
    /// An effect may be running (or the stall may clear): decide again at `until_ms` or on
    /// the next change, whichever is first.
    Wait { until_ms: u64, step: Step },
}

/// Why a stall is not being acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    Paused,
    OptedOut {
        pod: Option<String>,
    },
    /// The hourly budget is spent: set `Degraded`, emit an Event, count it.
    BudgetSpent {
        used: u32,
        limit: u32,
        frees_at_ms: Option<u64>,
    },
    Cooldown {
        until_ms: u64,
    },
    Concurrency {
        active: usize,
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
        attempt_id: String,
        pod: String,
        stream: String,
    },
    /// Ask the pod's sidecar for a dump bundle, bounded by `timeout_ms`.
    CaptureDump {
        attempt_id: String,
        pod: String,
        stream: String,
        reason: StallReason,
        timeout_ms: u64,
    },
    /// Restart the pod, only if it still is the one with `pod_uid` (a uid precondition).
    RestartPod {
        attempt_id: String,
        pod: String,
        pod_uid: Option<String>,
    },
    /// Roll the Deployment: set its pod template's `restartedAt` annotation to this value.
    RolloutRestart {
        attempt_id: String,
        restarted_at_ms: u64,
    },
}

impl Effect {
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
    SoftRestartFailed {
        error: String,
    },
    DumpCaptured {
        bundle_path: String,
    },
    DumpFailed {
        error: String,
        timed_out: bool,
    },
    /// The pod was deleted (or was already gone) / the Deployment was patched.
    RestartIssued,
    RestartFailed {
        error: String,
    },
}

/// A step worth an Event: `reason` is a stable CamelCase word, `message` a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub reason: &'static str,
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

/// The stall episodes present now that have no attempt yet, longest-stalled first.
fn new_episodes<'a>(ledger: &Ledger, obs: &'a Observation) -> Vec<&'a PodState> {
    let mut out: Vec<&PodState> = obs
        .pods
        .iter()
        .filter(|p| p.is_stalled())
        .filter(|p| {
            let since = p.stalled_since_ms.unwrap_or_default();
            !ledger.all().any(|a| a.is_episode(p, since))
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

fn maybe_start(policy: &Policy, ledger: &Ledger, obs: &Observation) -> Decision {
    let now = obs.now_ms;
    let episodes = new_episodes(ledger, obs);
    let Some(pod) = episodes.first().copied() else {
        return Decision::Idle {
            recheck_at_ms: None,
            blocked: None,
        };
    };
    let idle = |blocked: Blocked, recheck_at_ms: Option<u64>| Decision::Idle {
        recheck_at_ms,
        blocked: Some(blocked),
    };
    if obs.paused {
        return idle(Blocked::Paused, None);
    }
    if obs.opted_out {
        return idle(Blocked::OptedOut { pod: None }, None);
    }
    // An opted-out pod is skipped; another stalled pod may still be remediated.
    let Some(pod) = std::iter::once(pod)
        .chain(episodes.iter().copied().skip(1))
        .find(|p| !p.opted_out)
    else {
        return idle(
            Blocked::OptedOut {
                pod: Some(pod.name.clone()),
            },
            None,
        );
    };
    let since = pod.stalled_since_ms.unwrap_or(now);
    let stream = pod
        .stalled
        .first()
        .map(|s| s.stream.clone())
        .unwrap_or_else(|| "pod".to_string());
    let reason = pod
        .reason
        .or_else(|| pod.stalled.first().map(|s| s.reason))
        .unwrap_or(StallReason::ReportsLost);
    let mut attempt = Attempt {
        id: format!("{}/{}@{}", pod.name, stream, now),
        pod: pod.name.clone(),
        pod_uid: pod.uid.clone(),
        stream: stream.clone(),
        reason,
        stalled_since_ms: since,
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
    };
    if policy.mode == Mode::Observe {
        // Observe is not limited by budget, cooldown or concurrency: it does nothing.
        attempt.observe_only = true;
        let text = plan_text(policy, &pod.name, &stream);
        attempt.finish(Outcome::Observed, now, text.clone());
        let mut next = ledger.clone();
        next.in_flight = Some(attempt);
        next.retire();
        return Decision::Record {
            ledger: next,
            note: Note::warning(
                "RemediationObserved",
                format!(
                    "pod {} stream {stream} stalled ({reason}); {text}",
                    pod.name
                ),
            ),
        };
    }
    let used = ledger.used_budget(now);
    if used >= policy.budget_per_hour {
        let frees_at_ms = ledger.budget_frees_at(now);
        return idle(
            Blocked::BudgetSpent {
                used,
                limit: policy.budget_per_hour,
                frees_at_ms,
            },
            frees_at_ms,
        );
    }
    if let Some(last) = ledger.last_finished_acting() {
        let until = last.saturating_add(policy.cooldown_ms);
        if now < until {
            return idle(Blocked::Cooldown { until_ms: until }, Some(until));
        }
    }
    if obs.in_flight_elsewhere >= obs.max_concurrent {
        return idle(
            Blocked::Concurrency {
                active: obs.in_flight_elsewhere,
                max: obs.max_concurrent,
            },
            // Another resource finishing triggers no event here: look again soon.
            Some(now + 5_000),
        );
    }
    let mut next = ledger.clone();
    let message = format!(
        "pod {} stream {stream} stalled ({reason}); remediation {} recorded",
        pod.name, attempt.id
    );
    attempt.message = Some(message.clone());
    next.in_flight = Some(attempt);
    Decision::Record {
        ledger: next,
        note: Note::warning("RemediationStarted", message),
    }
}

fn continue_attempt(
    policy: &Policy,
    ledger: &Ledger,
    attempt: &Attempt,
    obs: &Observation,
) -> Decision {
    let now = obs.now_ms;
    let pod = obs
        .pods
        .iter()
        .find(|p| p.name == attempt.pod && (attempt.pod_uid.is_none() || p.uid == attempt.pod_uid));
    let finish = |outcome: Outcome, message: String, note: Note| {
        let mut next = ledger.clone();
        if let Some(a) = next.in_flight.as_mut() {
            a.finish(outcome, now, message);
        }
        next.retire();
        Decision::Record { ledger: next, note }
    };

    if attempt.step == Step::Done {
        // Finished but not yet moved to history (a record written by hand or an old version).
        let mut next = ledger.clone();
        next.retire();
        return Decision::Record {
            ledger: next,
            note: Note::normal("RemediationRecorded", format!("{} closed", attempt.id)),
        };
    }
    let opted_out = obs.opted_out || pod.is_some_and(|p| p.opted_out);
    if obs.paused || opted_out {
        let why = if obs.paused { "paused" } else { "opted out" };
        let message = format!(
            "{}: remediation {why}; remaining steps not taken",
            attempt.id
        );
        return finish(
            Outcome::Cancelled,
            message.clone(),
            Note::normal("RemediationCancelled", message),
        );
    }

    let stalled = pod.is_some_and(|p| {
        // Condition times have one-second resolution in Kubernetes: compare at that grain.
        p.is_stalled()
            && p.stalled_since_ms.map(|s| s / 1000) == Some(attempt.stalled_since_ms / 1000)
    });
    match attempt.step {
        Step::Recorded => {
            if pod.is_none() {
                let message = format!("{}: pod {} is gone; nothing to do", attempt.id, attempt.pod);
                return finish(
                    Outcome::PodGone,
                    message.clone(),
                    Note::normal("RemediationPodGone", message),
                );
            }
            if !stalled {
                let message = format!("{}: stall cleared by itself", attempt.id);
                return finish(
                    Outcome::Recovered,
                    message.clone(),
                    Note::normal("RemediationRecovered", message),
                );
            }
            advance(policy, ledger, Step::Recorded, now)
        }
        Step::SoftRestart => {
            if pod.is_none() {
                let message = format!(
                    "{}: pod {} went away during the soft restart",
                    attempt.id, attempt.pod
                );
                return finish(
                    Outcome::PodGone,
                    message.clone(),
                    Note::normal("RemediationPodGone", message),
                );
            }
            if attempt.soft_restart.is_none() {
                if !stalled {
                    let mut next = ledger.clone();
                    if let Some(a) = next.in_flight.as_mut() {
                        a.soft_restart = Some(StepResult::Succeeded);
                    }
                    let message = format!(
                        "{}: stream {} recovered after a soft restart",
                        attempt.id, attempt.stream
                    );
                    if let Some(a) = next.in_flight.as_mut() {
                        a.finish(Outcome::Recovered, now, message.clone());
                    }
                    next.retire();
                    return Decision::Record {
                        ledger: next,
                        note: Note::normal("SoftRestartRecovered", message),
                    };
                }
                let deadline = attempt.step_started_at_ms + policy.soft_restart_timeout_ms;
                if now < deadline {
                    return Decision::Wait {
                        until_ms: deadline,
                        step: Step::SoftRestart,
                    };
                }
                let mut next = ledger.clone();
                if let Some(a) = next.in_flight.as_mut() {
                    a.soft_restart = Some(StepResult::TimedOut);
                    a.message = Some(format!(
                        "stall did not clear within {} ms of the soft restart",
                        policy.soft_restart_timeout_ms
                    ));
                }
                let note = Note::warning(
                    "SoftRestartTimedOut",
                    format!(
                        "{}: stream {} still stalled {} ms after the soft restart",
                        attempt.id, attempt.stream, policy.soft_restart_timeout_ms
                    ),
                );
                return Decision::Record { ledger: next, note };
            }
            // Soft restart resolved (failed or timed out): next rung.
            advance(policy, ledger, Step::SoftRestart, now)
        }
        Step::Dump => {
            if attempt.dump.is_none() {
                let deadline = attempt.step_started_at_ms + policy.dump_timeout_ms;
                if now < deadline && pod.is_some() {
                    // The capture is running (or was lost in a crash): never issue it twice.
                    return Decision::Wait {
                        until_ms: deadline,
                        step: Step::Dump,
                    };
                }
                let mut next = ledger.clone();
                if let Some(a) = next.in_flight.as_mut() {
                    a.dump = Some(StepResult::TimedOut);
                    a.message = Some("no dump result within the timeout".into());
                }
                return Decision::Record {
                    ledger: next,
                    note: Note::warning(
                        "DumpFailed",
                        format!(
                            "{}: no dump result within {} ms; continuing",
                            attempt.id, policy.dump_timeout_ms
                        ),
                    ),
                };
            }
            if pod.is_none() && next_step(policy, Step::Dump) == Step::Restart {
                let message = format!(
                    "{}: pod {} went away before the restart",
                    attempt.id, attempt.pod
                );
                return finish(
                    Outcome::PodGone,
                    message.clone(),
                    Note::normal("RemediationPodGone", message),
                );
            }
            advance(policy, ledger, Step::Dump, now)
        }
        Step::Restart => match attempt.restart {
            Some(StepResult::Succeeded) => {
                let message = restart_done_text(policy, attempt);
                finish(
                    Outcome::Restarted,
                    message.clone(),
                    Note::normal("RemediationCompleted", message),
                )
            }
            Some(_) | None => {
                let pod_gone = pod.is_none() && policy.restart_target == RestartTarget::Pod;
                if pod_gone {
                    // Deleted by us before a crash, or by someone else: either way restarted.
                    let mut next = ledger.clone();
                    let message = format!(
                        "{}: pod {} is gone; restart complete",
                        attempt.id, attempt.pod
                    );
                    if let Some(a) = next.in_flight.as_mut() {
                        a.restart = Some(StepResult::Succeeded);
                        a.finish(Outcome::Restarted, now, message.clone());
                    }
                    next.retire();
                    return Decision::Record {
                        ledger: next,
                        note: Note::normal("RemediationCompleted", message),
                    };
                }
                if now >= attempt.step_started_at_ms + policy.restart_timeout_ms {
                    let message = format!(
                        "{}: restart not issued within {} ms: {}",
                        attempt.id,
                        policy.restart_timeout_ms,
                        attempt.message.clone().unwrap_or_default()
                    );
                    let mut next = ledger.clone();
                    if let Some(a) = next.in_flight.as_mut() {
                        a.restart = Some(StepResult::Failed);
                        a.finish(Outcome::Failed, now, message.clone());
                    }
                    next.retire();
                    return Decision::Record {
                        ledger: next,
                        note: Note::warning("RemediationFailed", message),
                    };
                }
                // Idempotent: the effect names the pod uid / a fixed restartedAt.
                Decision::Act {
                    ledger: ledger.clone(),
                    effect: restart_effect(policy, attempt),
                    note: Note::warning(
                        "RestartRetried",
                        format!("{}: issuing the restart again", attempt.id),
                    ),
                }
            }
        },
        Step::Done => unreachable_done(ledger, attempt),
    }
}

// `Step::Done` is handled before the match; keep the match exhaustive without panicking.
fn unreachable_done(ledger: &Ledger, attempt: &Attempt) -> Decision {
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
        let (outcome, message) = match policy.mode {
            Mode::DumpOnly => (
                Outcome::Dumped,
                format!(
                    "{}: dump {}; DumpOnly mode restarts nothing",
                    a.id,
                    match &a.bundle_path {
                        Some(p) => format!("captured at {p}"),
                        None => "failed".into(),
                    }
                ),
            ),
            _ => (Outcome::Failed, format!("{}: no rung left", a.id)),
        };
        a.finish(outcome, now, message.clone());
        next.retire();
        return Decision::Record {
            ledger: next,
            note: Note::normal("RemediationCompleted", message),
        };
    }
    a.enter(step, now);
    let (effect, note) = match step {
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
        Step::Recorded | Step::Done => {
            return Decision::Idle {
                recheck_at_ms: None,
                blocked: None,
            };
        }
    };
    a.message = Some(note.message.clone());
    Decision::Act {
        ledger: next,
        effect,
        note,
    }
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
mod tests {
    use super::*;

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
}
