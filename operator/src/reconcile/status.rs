//! The TransitStream's status: computed from what was observed (`observe::next_status`) and
//! written with the resourceVersion as precondition, at the end of a reconcile and with every
//! step of the remediation ledger; and the TransitStream's pods as the cache holds them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use stallwatch_core::remediation::{Blocked, Ledger, PodState};
use stallwatch_crds::{TransitStream, TransitStreamStatus, condition_types as ct, labels};

use super::{Context, FIELD_MANAGER, Target, publish};
use crate::error::Result;
use crate::metrics::OutcomeLabels;
use crate::observe::{self, Observed};

/// Writes the status computed from what was observed (when it changed), then the Events of
/// its transitions: the budget just spent, the spec valid again.
pub(super) async fn write_observed_status(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    ledger: &Ledger,
    blocked: Option<Blocked>,
    workload: Option<(stallwatch_crds::WorkloadCoverage, Vec<String>)>,
) -> Result<()> {
    let mut status = status_now(ctx, target, ts, deployment, ledger, blocked.as_ref());
    let mut conflict = None;
    if let Some((coverage, others)) = workload {
        let update = observe::conflict_condition(&others, coverage.message.as_deref());
        if update.status {
            conflict = Some(update.message.clone());
        }
        observe::apply_condition(&mut status, update, ts.metadata.generation, ctx.now());
        status.workload = Some(coverage);
    }
    let was_conflict = ts
        .status
        .as_ref()
        .is_some_and(|s| observe::condition_is(s, observe::CONFLICT, true));
    let was = |type_: &str| {
        ts.status
            .as_ref()
            .is_some_and(|s| observe::condition_is(s, type_, true))
    };
    // By the budget: `Degraded` can already hold for an unwritable dump volume.
    let budget_spent = |s: &TransitStreamStatus| {
        observe::condition_is(s, ct::DEGRADED, true)
            && s.conditions
                .iter()
                .any(|c| c.type_ == ct::DEGRADED && c.reason == "BudgetSpent")
    };
    let was_degraded = ts.status.as_ref().is_some_and(budget_spent);
    let was_invalid = was(ct::INVALID_SPEC);
    let degraded = budget_spent(&status);
    if ts.status.as_ref() != Some(&status) {
        write_status(&target.api, ts, status).await?;
    }
    if let Some(message) = conflict
        && !was_conflict
    {
        publish(ctx, ts, true, "Conflict", "Reconcile", message).await;
    }
    if degraded
        && !was_degraded
        && let Some(b @ Blocked::BudgetSpent { .. }) = &blocked
    {
        ctx.metrics.budget_exhausted.inc();
        let message = observe::blocked_message(b, ctx.now());
        publish(ctx, ts, true, "BudgetSpent", "Remediate", message).await;
    }
    if was_invalid {
        publish(
            ctx,
            ts,
            false,
            "SpecValid",
            "Validate",
            "spec is valid again".into(),
        )
        .await;
    }
    Ok(())
}

/// The status of a valid spec as observed now: from `ledger` and the pods in the cache.
fn status_now(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    deployment: &Deployment,
    ledger: &Ledger,
    blocked: Option<&Blocked>,
) -> TransitStreamStatus {
    let pods = pod_states(ctx, &target.ns, &target.name);
    let health = pod_health(ctx, &target.ns, &target.name);
    observe::next_status(&Observed {
        ts,
        deployment: Some(deployment),
        pods: &pods,
        ledger,
        blocked,
        invalid: &[],
        now_ms: ctx.now(),
        health: &health,
    })
}

/// Write the ledger with the rest of the status recomputed from it and from the pods as they
/// are now (so `Stalled`, `Remediating`, the phase and the stall count are current at every
/// step), and count finished attempts.
pub(super) async fn persist_ledger(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    deployment: &Deployment,
    before: &Ledger,
    next: &Ledger,
) -> Result<()> {
    if before == next {
        return Ok(());
    }
    let mut status = status_now(ctx, target, ts, deployment, next, None);
    // Coverage of a referenced workload is observed once per reconcile; keep it across steps.
    status.workload = ts.status.as_ref().and_then(|s| s.workload.clone());
    write_status(&target.api, ts, status).await?;
    ctx.track_in_flight(&target.uid, next.in_flight.is_some());
    // An attempt that just left the in-flight slot has finished.
    if let Some(done) = before
        .in_flight
        .as_ref()
        .and_then(|a| next.history.iter().rev().find(|h| h.id == a.id))
        .or_else(|| {
            // Observe records go straight to history.
            next.history
                .last()
                .filter(|h| !before.history.iter().any(|b| b.id == h.id))
                .filter(|_| next.in_flight.is_none())
        })
        && let Some(outcome) = done.outcome
    {
        ctx.metrics
            .remediations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str().into(),
            })
            .inc();
    }
    Ok(())
}

/// Server-side apply of the status with the resourceVersion as precondition: a stale
/// leader's write fails with 409 instead of overwriting the record.
///
/// A 409 is also what a reconcile gets whose cached object has not caught up with this
/// operator's own previous status write (the usual case on a new TransitStream, whose owned
/// objects trigger reconciles within milliseconds). The precondition protects the remediation
/// record, so the write is retried once at the live resourceVersion when the live record is
/// still the one this reconcile decided on; a record that changed keeps the conflict.
pub(super) async fn write_status(
    api: &Api<TransitStream>,
    ts: &mut TransitStream,
    status: TransitStreamStatus,
) -> Result<()> {
    let name = ts.name_any();
    let rv = ts.metadata.resource_version.clone();
    let updated = match apply_status(api, &name, rv, &status).await {
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let live = api.get_status(&name).await?;
            let record = |t: &TransitStream| {
                t.status
                    .as_ref()
                    .map(|s| s.remediation.clone())
                    .unwrap_or_default()
            };
            if live.metadata.uid != ts.metadata.uid || record(&live) != record(ts) {
                return Err(kube::Error::Api(e).into());
            }
            apply_status(api, &name, live.metadata.resource_version, &status).await?
        }
        other => other?,
    };
    ts.metadata.resource_version = updated.metadata.resource_version;
    ts.status = Some(updated.status.unwrap_or(status));
    Ok(())
}

async fn apply_status(
    api: &Api<TransitStream>,
    name: &str,
    resource_version: Option<String>,
    status: &TransitStreamStatus,
) -> kube::Result<TransitStream> {
    let patch = serde_json::json!({
        "apiVersion": "stallwatch.io/v1alpha1",
        "kind": "TransitStream",
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
}

/// The ledger persisted in status.
pub(super) fn ledger_of(ts: &TransitStream) -> Result<Ledger> {
    Ok(ts
        .status
        .as_ref()
        .map(|s| Ledger::try_from(&s.remediation))
        .transpose()?
        .unwrap_or_default())
}

pub(super) fn pods_of(ctx: &Context, ns: &str, name: &str) -> Vec<Arc<Pod>> {
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns)
                && p.labels().get(labels::TRANSITSTREAM).map(String::as_str) == Some(name)
        })
        .collect()
}

/// Whether each live pod's streams are judged, and why not (the status's reasons).
fn pod_health(ctx: &Context, ns: &str, name: &str) -> Vec<observe::PodHealth> {
    let mut health: Vec<observe::PodHealth> = pods_of(ctx, ns, name)
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| observe::pod_health(p))
        .collect();
    health.sort_by(|a, b| a.name.cmp(&b.name));
    health
}

pub(super) fn pod_states(ctx: &Context, ns: &str, name: &str) -> Vec<PodState> {
    let mut states: Vec<PodState> = pods_of(ctx, ns, name)
        .iter()
        .map(|p| observe::pod_state(p))
        .collect();
    states.sort_by(|a, b| a.name.cmp(&b.name));
    states
}
