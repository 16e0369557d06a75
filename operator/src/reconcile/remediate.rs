//! Remediation: decide/act rounds around `stallwatch_core::remediation::decide`, each
//! decision's ledger persisted before its effect runs; the stalls a rail holds back (one Event
//! per change); the step metrics; the crash test hook.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::controller::Action;
use stallwatch_core::remediation::{
    self as rem, Blocked, Decision, Effect, EffectResult, Ledger, Observation, PodState,
};
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;

use super::effects::execute;
use super::status::{ledger_of, persist_ledger, pod_states};
use super::{CRASH_AFTER_ENV, Context, Target, publish};
use crate::error::{Error, Result};
use crate::metrics::{ReasonLabels, StepLabels};
use crate::observe;

/// Most decide/act rounds in one reconcile (an attempt has at most 8 transitions).
const MAX_ROUNDS: usize = 12;

/// Periodic resync when nothing else is due.
const RESYNC: Duration = Duration::from_secs(300);

/// Run decide/act rounds until the decision function waits or idles.
pub(super) async fn remediate(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
) -> Result<(Ledger, Option<Blocked>, Action)> {
    let policy = observe::policy(ts);
    let mut ledger = ledger_of(ts)?;
    for _ in 0..MAX_ROUNDS {
        let now = ctx.now();
        let obs = Observation {
            now_ms: now,
            pods: pod_states(ctx, &target.ns, &target.name),
            paused: ts.spec.paused,
            opted_out: observe::opted_out(ts.metadata.annotations.as_ref()),
            in_flight_elsewhere: ctx.in_flight_elsewhere(&target.uid),
            max_concurrent: ctx.settings.max_concurrent_remediations,
        };
        match rem::decide(&policy, &ledger, &obs) {
            Decision::Record { ledger: next, note } => {
                ledger = record(ctx, target, ts, deployment, &ledger, next, note).await?;
            }
            Decision::Act {
                ledger: next,
                effect,
                note,
            } => {
                // Recorded before acting: if this write fails, nothing is done.
                ledger = record(ctx, target, ts, deployment, &ledger, next, note).await?;
                ledger = act(ctx, target, ts, deployment, ledger, &effect).await?;
            }
            Decision::Wait { until_ms, .. } => {
                lock(&ctx.blocked).remove(&target.uid);
                let delay = Duration::from_millis(until_ms.saturating_sub(now).max(100));
                return Ok((ledger, None, Action::requeue(delay)));
            }
            Decision::Idle {
                recheck_at_ms,
                blocked,
            } => {
                note_blocked(ctx, target, ts, blocked.as_ref(), &obs.pods).await;
                let delay = recheck_at_ms
                    .map(|t| Duration::from_millis(t.saturating_sub(now).max(100)))
                    .unwrap_or(RESYNC)
                    .min(RESYNC);
                return Ok((ledger, blocked, Action::requeue(delay)));
            }
        }
    }
    Ok((ledger, None, Action::requeue(Duration::from_secs(1))))
}

/// Persists `next` (over `ledger`) and publishes its Event; returns the new ledger.
async fn record(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    ledger: &Ledger,
    next: Ledger,
    note: rem::Note,
) -> Result<Ledger> {
    persist_ledger(ctx, target, ts, deployment, ledger, &next).await?;
    crash_hook(&next);
    publish(
        ctx,
        ts,
        note.warning,
        note.reason,
        "Remediate",
        note.message,
    )
    .await;
    Ok(next)
}

/// The [`CRASH_AFTER_ENV`] test hook; nothing when the env var is unset.
fn crash_hook(ledger: &Ledger) {
    static STEP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(step) = STEP.get_or_init(|| std::env::var(CRASH_AFTER_ENV).ok()) else {
        return;
    };
    if let Some(a) = &ledger.in_flight
        && format!("{:?}", a.step) == *step
    {
        tracing::warn!(attempt = %a.id, "{CRASH_AFTER_ENV}: exiting after step {step} (tests only)");
        std::process::exit(137);
    }
}

/// Runs the effect the ledger just recorded and records its result. A failed restart is an
/// error, so the (idempotent) restart is retried with backoff, not in a tight loop.
async fn act(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    ledger: Ledger,
    effect: &Effect,
) -> Result<Ledger> {
    let result = execute(ctx, ts, &target.ns, &target.name, &ledger, effect).await?;
    let failed = matches!(
        result,
        EffectResult::RestartFailed { .. } | EffectResult::SoftRestartFailed { .. }
    );
    let note = rem::result_note(effect.attempt_id(), &result);
    let message = note.message.clone();
    count_step(ctx, effect, &result);
    let next = rem::record_result(&ledger, effect.attempt_id(), result);
    let ledger = record(ctx, target, ts, deployment, &ledger, next, note).await?;
    if failed
        && matches!(
            effect,
            Effect::RestartPod { .. } | Effect::RolloutRestart { .. }
        )
    {
        return Err(Error::Remediation(message));
    }
    Ok(ledger)
}

/// A stall held back by a rail: counted, logged and published as an Event (Warning, reason =
/// the rail) once per change of rail or of the stalled pods it holds back. The budget's Event
/// is `BudgetSpent`, published with the `Degraded` condition (`write_observed_status`).
async fn note_blocked(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    blocked: Option<&Blocked>,
    pods: &[PodState],
) {
    let Some(b) = blocked else {
        lock(&ctx.blocked).remove(&target.uid);
        return;
    };
    let stalled: Vec<String> = pods
        .iter()
        .filter(|p| p.stalled_since_ms.is_some() && !p.terminating)
        .map(|p| match p.stalled.first() {
            Some(s) => format!("pod {} (stream {}: {})", p.name, s.stream, s.reason),
            None => format!("pod {}", p.name),
        })
        .collect();
    let identity = format!("{}: {}", b.label(), stalled.join(", "));
    let changed = lock(&ctx.blocked).insert(target.uid.clone(), identity.clone()) != Some(identity);
    if !changed {
        return;
    }
    ctx.metrics
        .remediations_blocked
        .get_or_create(&ReasonLabels {
            reason: b.label().into(),
        })
        .inc();
    let why = observe::blocked_message(b, ctx.now());
    let message = if stalled.is_empty() {
        format!("stall not acted on: {why}")
    } else {
        format!("stall of {} not acted on: {why}", stalled.join(", "))
    };
    if matches!(b, Blocked::BudgetSpent { .. }) {
        tracing::info!(resource = %target.key, rail = b.label(), "{message}");
    } else {
        publish(ctx, ts, true, b.label(), "Remediate", message).await;
    }
}

fn count_step(ctx: &Context, effect: &Effect, result: &EffectResult) {
    let step = match effect {
        Effect::SoftRestart { .. } => "soft_restart",
        Effect::CaptureDump { .. } => "dump",
        Effect::RestartPod { .. } => "restart_pod",
        Effect::RolloutRestart { .. } => "rollout_restart",
    };
    let result = match result {
        EffectResult::SoftRestartAccepted
        | EffectResult::DumpCaptured { .. }
        | EffectResult::RestartIssued => "ok",
        EffectResult::DumpFailed {
            timed_out: true, ..
        } => "timeout",
        _ => "failed",
    };
    ctx.metrics
        .remediation_steps
        .get_or_create(&StepLabels {
            step: step.into(),
            result: result.into(),
        })
        .inc();
}
