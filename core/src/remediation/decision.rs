//! What [`decide`](super::decide) hands the adapter: the [`Decision`], why a stall is
//! [`Blocked`], the [`Effect`] to perform and its [`EffectResult`], the [`Note`] (Event) to emit.

use std::fmt;

use super::ledger::{Ledger, Step};
use crate::condition::StallReason;

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
    /// and persist [`record_result`](super::record_result)`(&ledger, effect.attempt_id(),
    /// result)`. After a failed effect, requeue with backoff rather than deciding again at once.
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

/// What an effect did, reported with [`record_result`](super::record_result).
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
    pub(super) fn normal(reason: &'static str, message: String) -> Self {
        Note {
            reason,
            message,
            warning: false,
        }
    }
    pub(super) fn warning(reason: &'static str, message: String) -> Self {
        Note {
            reason,
            message,
            warning: true,
        }
    }
}
