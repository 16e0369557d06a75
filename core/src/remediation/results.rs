//! The adapter's way back in: an effect's result folded into the ledger, and its Event.

use super::decision::{EffectResult, Note};
use super::ledger::{Ledger, StepResult};

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
