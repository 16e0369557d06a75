//! The remediation effects, one function each: soft restart and dump through the pod's
//! sidecar, pod delete (uid precondition), rollout restart (annotation fixed per attempt).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use stallwatch_core::remediation::{Effect, EffectResult, Ledger};
use stallwatch_crds::TransitStream;

use super::apply::ensure_token;
use super::status::pods_of;
use super::{Context, RESTART_FIELD_MANAGER};
use crate::builders::RESTARTED_AT_ANNOTATION;
use crate::error::Result;
use crate::observe;
use crate::sidecar::SidecarTarget;

/// Perform one effect. Sidecar and restart failures become results (recorded, retried by
/// the decision function's rules); only a missing token is an error.
pub(super) async fn execute(
    ctx: &Context,
    ts: &TransitStream,
    ns: &str,
    name: &str,
    ledger: &Ledger,
    effect: &Effect,
) -> Result<EffectResult> {
    Ok(match effect {
        Effect::SoftRestart { pod, stream, .. } => {
            soft_restart(ctx, &sidecar_of(ctx, ts, pod).await?, stream).await
        }
        Effect::CaptureDump {
            pod,
            stream,
            reason,
            timeout_ms,
            ..
        } => {
            let timeout = Duration::from_millis(*timeout_ms);
            capture_dump(
                ctx,
                &sidecar_of(ctx, ts, pod).await?,
                stream,
                *reason,
                timeout,
            )
            .await
        }
        Effect::RestartPod { pod, pod_uid, .. } => {
            delete_pod(ctx, ns, pod, pod_uid.as_deref(), ledger).await
        }
        Effect::RolloutRestart {
            restarted_at_ms, ..
        } => rollout_restart(ctx, ns, name, *restarted_at_ms, ledger).await,
    })
}

/// The sidecar of `pod` (no IP when the pod is gone from the cache: the call then fails).
pub(super) async fn sidecar_of(
    ctx: &Context,
    ts: &TransitStream,
    pod: &str,
) -> Result<SidecarTarget> {
    let ns = ts.metadata.namespace.as_deref().unwrap_or_default();
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let token = ensure_token(ctx, ts, ns, name, false).await?;
    let found = pods_of(ctx, ns, name)
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod));
    Ok(SidecarTarget {
        pod_ip: found
            .as_deref()
            .and_then(observe::pod_ip)
            .unwrap_or_default(),
        token,
    })
}

async fn soft_restart(ctx: &Context, target: &SidecarTarget, stream: &str) -> EffectResult {
    let timeout = Duration::from_secs(5);
    match ctx.sidecar.soft_restart(target, stream, timeout).await {
        Ok(()) => EffectResult::SoftRestartAccepted,
        Err(e) => EffectResult::SoftRestartFailed {
            error: e.to_string(),
        },
    }
}

async fn capture_dump(
    ctx: &Context,
    target: &SidecarTarget,
    stream: &str,
    reason: stallwatch_core::condition::StallReason,
    timeout: Duration,
) -> EffectResult {
    match ctx
        .sidecar
        .capture_dump(target, stream, reason, timeout)
        .await
    {
        Ok(manifest) => EffectResult::DumpCaptured {
            bundle_path: manifest.path,
        },
        Err(e) => EffectResult::DumpFailed {
            timed_out: e.is_timeout(),
            error: e.to_string(),
        },
    }
}

/// Deletes the stalled pod, only if it is still the same pod (uid precondition).
async fn delete_pod(
    ctx: &Context,
    ns: &str,
    pod: &str,
    pod_uid: Option<&str>,
    ledger: &Ledger,
) -> EffectResult {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let dp = DeleteParams {
        preconditions: pod_uid.map(|uid| Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(pod, &dp).await {
        // 404: already gone; 409: the name now belongs to a replacement pod.
        Ok(_) => restarted(ctx, ledger),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => restarted(ctx, ledger),
        Err(e) => EffectResult::RestartFailed {
            error: e.to_string(),
        },
    }
}

/// `kubectl rollout restart`: the annotation is fixed per attempt, so a re-issue is a no-op.
async fn rollout_restart(
    ctx: &Context,
    ns: &str,
    name: &str,
    restarted_at_ms: u64,
    ledger: &Ledger,
) -> EffectResult {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let at = observe::time(restarted_at_ms).0.to_string();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT_ANNOTATION: at
    }}}}});
    let params = PatchParams {
        field_manager: Some(RESTART_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match deployments
        .patch(name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => restarted(ctx, ledger),
        Err(e) => EffectResult::RestartFailed {
            error: e.to_string(),
        },
    }
}

fn restarted(ctx: &Context, ledger: &Ledger) -> EffectResult {
    if let Some(a) = &ledger.in_flight {
        let secs = ctx.now().saturating_sub(a.stalled_since_ms) as f64 / 1000.0;
        ctx.metrics.stall_to_restart.observe(secs);
    }
    EffectResult::RestartIssued
}
