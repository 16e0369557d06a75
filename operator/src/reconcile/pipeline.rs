//! The pipeline, one function per step: fetch (the resource's key) → validate → build
//! desired → apply → remediate → write status; and its variant for a TransitStream that
//! protects an existing workload (`spec.workloadRef`).

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::controller::Action;
use stallwatch_core::sync::lock;
use stallwatch_crds::{TransitStream, condition_types as ct};

use super::apply::{apply, ensure_token, tracked_apply};
use super::remediate::remediate;
use super::status::{ledger_of, write_observed_status, write_status};
use super::{Context, Target, drill, publish};
use crate::builders::{self, BuildContext};
use crate::error::Result;
use crate::observe::{self, Observed};
use crate::workload;

/// The pipeline: fetch (the resource's key) → validate → build desired → apply → remediate →
/// write status. Each step is one function below.
pub(super) async fn reconcile_inner(ts: &TransitStream, ctx: &Context) -> Result<Action> {
    let target = Target::of(ts, ctx)?;
    if ts.metadata.deletion_timestamp.is_some() {
        // Owned objects go with it (owner references); nothing to clean up by hand.
        ctx.forget(ts);
        return Ok(Action::await_change());
    }
    if ctx.drift.is_dirty(&target.key) && !still_exists(&target, ts).await? {
        ctx.forget(ts);
        return Ok(Action::await_change());
    }
    let mut ts = ts.clone();

    // Validate (pure). An invalid spec is reported and waits for a change.
    let invalid = stallwatch_crds::validate(&ts.spec);
    if !invalid.is_empty() {
        report_invalid(ctx, &target, &mut ts, &invalid).await?;
        return Ok(Action::await_change());
    }

    drill::handle(ctx, &target, &mut ts).await?;

    if let Some(reference) = ts.spec.workload_ref.clone() {
        return reconcile_workload_ref(ctx, &target, &mut ts, &reference).await;
    }
    let desired = build_desired(ctx, &ts);
    let deployment = apply_desired(ctx, &target, &ts, &desired).await?;
    let (ledger, blocked, requeue) = remediate(ctx, &target, &mut ts, &deployment).await?;
    write_observed_status(ctx, &target, &mut ts, &deployment, &ledger, blocked, None).await?;
    Ok(requeue)
}

/// The pipeline for a TransitStream that protects an existing workload: no broadcaster is
/// deployed and the workload is never written; the sidecar's Role (bound to the workload's
/// pod ServiceAccount), the admin token and a templated dump claim are applied, then the
/// same remediation (dump through the injected sidecar, restart = delete the pod) and a
/// status that says which pods are covered.
async fn reconcile_workload_ref(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    reference: &stallwatch_crds::WorkloadRef,
) -> Result<Action> {
    let ns = &target.ns;
    let view = workload::fetch(&ctx.client, ns, reference).await?;
    ensure_token(ctx, ts, ns, &target.name, true).await?;
    apply(ctx, ns, &builders::role(ts)).await?;
    if let Some(v) = &view {
        apply(ctx, ns, &workload::role_binding(ts, &v.service_account)).await?;
    }
    if let Some(claim) = builders::dump_claim(ts) {
        apply(ctx, ns, &claim).await?;
    }
    let pods = match &view {
        Some(v) => workload::list_pods(&ctx.client, ns, v).await?,
        None => Vec::new(),
    };
    let coverage = workload::coverage(&target.name, reference, view.as_ref(), &pods);
    let others = workload::claimed_by_others(&target.name, &pods);
    // The status's replica counters are the workload's (never written back to the spec).
    let deployment = view
        .as_ref()
        .map(|v| {
            ts.spec.replicas = v.replicas;
            v.as_deployment.clone()
        })
        .unwrap_or_default();
    let (ledger, blocked, requeue) = remediate(ctx, target, ts, &deployment).await?;
    write_observed_status(
        ctx,
        target,
        ts,
        &deployment,
        &ledger,
        blocked,
        Some((coverage, others)),
    )
    .await?;
    Ok(requeue)
}

/// Writes the InvalidSpec status, and an Event when the spec just turned invalid.
async fn report_invalid(
    ctx: &Context,
    target: &Target,
    ts: &mut TransitStream,
    invalid: &[stallwatch_crds::SpecError],
) -> Result<()> {
    let was_invalid = ts
        .status
        .as_ref()
        .is_some_and(|s| observe::condition_is(s, ct::INVALID_SPEC, true));
    let ledger = ledger_of(ts)?;
    let status = observe::next_status(&Observed {
        ts,
        deployment: None,
        pods: &[],
        ledger: &ledger,
        blocked: None,
        invalid,
        now_ms: ctx.now(),
        health: &[],
    });
    write_status(&target.api, ts, status).await?;
    if !was_invalid {
        let msg = invalid
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        publish(ctx, ts, true, "InvalidSpec", "Validate", msg).await;
    }
    Ok(())
}

/// Whether this TransitStream (same uid) is still on the API server and not being deleted.
/// Asked before a drift re-apply only: the cache lags the API server, and the drift may be the
/// garbage collector deleting the objects of a TransitStream that is already gone; re-applying
/// them would recreate, under a dead owner, what the collector just deleted.
async fn still_exists(target: &Target, ts: &TransitStream) -> Result<bool> {
    let live = target.api.get_opt(&target.name).await?;
    Ok(live.is_some_and(|l| {
        l.metadata.uid == ts.metadata.uid && l.metadata.deletion_timestamp.is_none()
    }))
}

fn build_desired(ctx: &Context, ts: &TransitStream) -> builders::Desired {
    let build = BuildContext {
        default_image: ctx.settings.default_image.clone(),
    };
    builders::desired(ts, &build)
}

/// Applies every desired object. All but the Deployment only when the generation changed or
/// one of them drifted (deleted or changed by someone else, as the owned-object watches report):
/// an unchanged TransitStream costs one request here. The Deployment every time: its status
/// feeds the TransitStream's.
async fn apply_desired(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    desired: &builders::Desired,
) -> Result<Deployment> {
    let ns = &target.ns;
    let generation = ts.metadata.generation.unwrap_or_default();
    let fresh = lock(&ctx.applied).get(&target.uid) != Some(&generation);
    let drifted = ctx.drift.take(&target.key);
    if fresh || drifted {
        if let Err(e) = apply_owned(ctx, target, ts, desired).await {
            // Try again at the retry of this reconcile.
            ctx.drift.mark(&target.key);
            return Err(e);
        }
        if drifted && !fresh {
            tracing::info!(resource = %target.key, "owned objects drifted; re-applied");
        }
    }
    let deployment = apply(ctx, ns, &desired.deployment).await?;
    if fresh {
        lock(&ctx.applied).insert(target.uid.clone(), generation);
    }
    Ok(deployment)
}

/// Applies every owned object but the Deployment, recording what each looks like after.
async fn apply_owned(
    ctx: &Context,
    target: &Target,
    ts: &TransitStream,
    desired: &builders::Desired,
) -> Result<()> {
    let ns = &target.ns;
    ensure_token(ctx, ts, ns, &target.name, true).await?;
    tracked_apply(ctx, ns, &desired.service_account).await?;
    tracked_apply(ctx, ns, &desired.role).await?;
    tracked_apply(ctx, ns, &desired.role_binding).await?;
    tracked_apply(ctx, ns, &desired.config_map).await?;
    if let Some(claim) = &desired.claim {
        tracked_apply(ctx, ns, claim).await?;
    }
    tracked_apply(ctx, ns, &desired.service).await?;
    Ok(())
}
