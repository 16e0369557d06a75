//! The persisted record: one [`Attempt`] per stall episode, the steps and results it went
//! through, and the [`Ledger`] (in flight + bounded history) the budget and cooldown count.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::input::PodState;
use crate::condition::StallReason;

/// Attempts kept in [`Ledger::history`].
pub const MAX_HISTORY: usize = 20;
/// The rolling window of the budget.
pub const BUDGET_WINDOW_MS: u64 = 3_600_000;

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
    pub(super) fn is_episode(&self, pod: &PodState, since_ms: u64) -> bool {
        // Condition times have one-second resolution in Kubernetes: compare at that grain.
        self.stalled_since_ms / 1000 == since_ms / 1000
            && self.pod == pod.name
            && (self.pod_uid.is_none() || pod.uid.is_none() || self.pod_uid == pod.uid)
    }

    pub(super) fn finish(&mut self, outcome: Outcome, now_ms: u64, message: impl Into<String>) {
        self.step = Step::Done;
        self.step_started_at_ms = now_ms;
        self.outcome = Some(outcome);
        self.finished_at_ms = Some(now_ms);
        self.message = Some(message.into());
    }

    pub(super) fn enter(&mut self, step: Step, now_ms: u64) {
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

    pub(super) fn all(&self) -> impl Iterator<Item = &Attempt> {
        self.history.iter().chain(self.in_flight.as_ref())
    }

    pub(super) fn last_finished_acting(&self) -> Option<u64> {
        self.history
            .iter()
            .filter(|a| !a.observe_only)
            .filter_map(|a| a.finished_at_ms)
            .max()
    }

    /// Move the in-flight attempt (finished) to the history, keeping it bounded.
    pub(super) fn retire(&mut self) {
        if let Some(a) = self.in_flight.take() {
            self.history.push(a);
            let excess = self.history.len().saturating_sub(MAX_HISTORY);
            self.history.drain(..excess);
        }
    }

    /// A copy with `change` applied to the attempt in flight: the ledger a step's decision
    /// persists.
    pub(super) fn with_in_flight(&self, change: impl FnOnce(&mut Attempt)) -> Ledger {
        let mut next = self.clone();
        if let Some(a) = next.in_flight.as_mut() {
            change(a);
        }
        next
    }

    /// A copy with the attempt in flight changed by `change`, finished with `outcome` and
    /// moved to the history.
    pub(super) fn with_finished(
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
