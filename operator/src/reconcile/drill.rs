//! Drills: the `stallwatch.io/drill: <stream>` annotation on a TransitStream that allows
//! drills (`spec.allowDrills`) becomes one admin call through one pod's sidecar, which makes
//! Stallwatch's broadcaster kill that stream's dispatcher once. What follows is the story
//! itself: the `DispatcherDead` verdict, the pod condition, a dump and a restart, each with its
//! Events and alerts. Handled once: the operator removes the annotation and records the drill
//! in `status.lastDrill` and an Event (`DrillStarted`, `DrillRefused` or `DrillFailed`).

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use stallwatch_crds::{DRILL_ANNOTATION, DrillRecord, TransitStream};

use super::effects::sidecar_of;
use super::status::{pods_of, write_status};
use super::{Context, Target, publish};
use crate::error::Result;
use crate::observe;

const DRILL_TIMEOUT: Duration = Duration::from_secs(5);

/// What to do about a drill annotation (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No annotation: nothing.
    None,
    /// Refused, with why (recorded, annotation removed).
    Refuse { stream: String, why: String },
    /// Drill `stream` through pod `pod`.
    Drill { stream: String, pod: String },
    /// Allowed, but no running pod to drill yet (recorded as failed, annotation removed).
    NoPod { stream: String },
}

/// The plan for `ts`, given its live pods (name, has an IP, terminating).
pub(crate) fn plan(ts: &TransitStream, pods: &[(String, bool, bool)]) -> Plan {
    let Some(asked) = ts
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRILL_ANNOTATION))
    else {
        return Plan::None;
    };
    let asked = asked.trim();
    let stream = if asked.is_empty() {
        ts.spec
            .streams
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "all".into())
    } else {
        asked.to_string()
    };
    if !ts.spec.allow_drills {
        return Plan::Refuse {
            stream,
            why: "spec.allowDrills is false: set it to true to allow drills on this TransitStream"
                .into(),
        };
    }
    if ts.spec.source.is_some() && !ts.spec.streams.iter().any(|s| s.name == stream) {
        return Plan::Refuse {
            why: format!("no stream {stream:?} in spec.streams"),
            stream,
        };
    }
    match pods
        .iter()
        .find(|(_, has_ip, terminating)| *has_ip && !terminating)
    {
        Some((pod, _, _)) => Plan::Drill {
            stream,
            pod: pod.clone(),
        },
        None => Plan::NoPod { stream },
    }
}

/// Acts on the drill annotation, if any: one admin call, a status record, an Event, the
/// annotation removed.
pub(super) async fn handle(ctx: &Context, target: &Target, ts: &mut TransitStream) -> Result<()> {
    let asked = ts
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DRILL_ANNOTATION));
    if !asked {
        // The usual case: no scan of the pod cache.
        return Ok(());
    }
    let pods: Vec<(String, bool, bool)> = pods_of(ctx, &target.ns, &target.name)
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                observe::pod_ip(p).is_some(),
                p.metadata.deletion_timestamp.is_some(),
            )
        })
        .collect();
    let (stream, pod, outcome, reason, message) = match plan(ts, &pods) {
        Plan::None => return Ok(()),
        Plan::Refuse { stream, why } => (stream, String::new(), "Refused", "DrillRefused", why),
        Plan::NoPod { stream } => (
            stream,
            String::new(),
            "Failed",
            "DrillFailed",
            "no running pod with an IP to drill yet; annotate again once one runs".into(),
        ),
        Plan::Drill { stream, pod } => {
            let sidecar = sidecar_of(ctx, ts, &pod).await?;
            match ctx.sidecar.drill(&sidecar, &stream, DRILL_TIMEOUT).await {
                Ok(()) => {
                    let msg = format!(
                        "drill: the dispatcher of stream {stream} in pod {pod} was killed; expect DispatcherDead, then the remediation ({:?})",
                        ts.spec.remediation.mode
                    );
                    (stream, pod, "Started", "DrillStarted", msg)
                }
                Err(e) => {
                    let msg = format!("drill of stream {stream} in pod {pod} failed: {e}");
                    (stream, pod, "Failed", "DrillFailed", msg)
                }
            }
        }
    };
    let mut status = ts.status.clone().unwrap_or_default();
    status.last_drill = Some(DrillRecord {
        stream,
        pod,
        at: observe::time(ctx.now()),
        outcome: outcome.into(),
        message: message.clone(),
    });
    write_status(&target.api, ts, status).await?;
    publish(ctx, ts, outcome != "Started", reason, "Drill", message).await;
    // Handled: the annotation goes (a merge patch that only removes it).
    let remove = serde_json::json!({"metadata": {"annotations": {DRILL_ANNOTATION: null}}});
    let updated = target
        .api
        .patch(
            &target.name,
            &PatchParams::default(),
            &Patch::Merge(&remove),
        )
        .await?;
    ts.metadata.annotations = updated.metadata.annotations;
    ts.metadata.resource_version = updated.metadata.resource_version;
    Ok(())
}

#[cfg(test)]
mod tests;
