//! Making verdicts visible on the Pod: the `stallwatch.io/DispatchHealthy` and
//! `stallwatch.io/DumpStorageReady` pod conditions (each patched on `pods/status` only when it
//! changes, retried until it lands) and Kubernetes Events for stalls, recoveries and captures.
//!
//! Thin on purpose: what to publish is decided in [`crate::monitor`]; this module turns it into
//! API requests. Tested against a mock API server (`tower-test`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Patch, PatchParams};
use kube::core::Request;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use stallwatch_core::verdict::Change;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::monitor::{DesiredCondition, Notice};

pub const FIELD_MANAGER: &str = "transit-sidecar";
pub const REPORTING_CONTROLLER: &str = "stallwatch.io/transit-sidecar";
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const EVENT_ATTEMPTS: u32 = 3;

/// The Pod this sidecar runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

/// One Event about the Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub warning: bool,
    /// PascalCase: a `StallReason`, `Recovered`, `DumpCaptured`, `DumpFailed`,
    /// `DumpVolumeUnavailable`, `DumpVolumeAvailable`.
    pub reason: String,
    pub note: String,
    /// Groups repeats into one Event series; per stream for verdict Events.
    pub action: String,
}

/// The Event for a notice, if it deserves one.
pub fn event_for(notice: &Notice) -> Option<PodEvent> {
    match notice {
        Notice::Verdict { transition, detail } => match transition.change {
            Change::Stalled { reason } | Change::ReasonChanged { to: reason, .. } => {
                Some(PodEvent {
                    warning: true,
                    reason: reason.as_str().to_owned(),
                    note: detail.clone(),
                    action: format!("Judge/{}", transition.stream),
                })
            }
            Change::Recovered {
                was,
                stalled_for_ms,
            } => Some(PodEvent {
                warning: false,
                reason: "Recovered".to_owned(),
                note: format!(
                    "stream {}: dispatching again after {:.1}s stalled ({was})",
                    transition.stream,
                    stalled_for_ms as f64 / 1000.0
                ),
                action: format!("Judge/{}", transition.stream),
            }),
            Change::Removed { .. } => None,
        },
        Notice::DumpWritten { path, .. } => Some(PodEvent {
            warning: false,
            reason: "DumpCaptured".to_owned(),
            note: format!("diagnostic bundle written to {path}"),
            action: "CaptureBundle".to_owned(),
        }),
        Notice::DumpStorage { error: Some(error) } => Some(PodEvent {
            warning: true,
            reason: "DumpVolumeUnavailable".to_owned(),
            note: stallwatch_core::report::truncate(
                &format!("no bundle can be written until this is fixed: {error}"),
                1000,
            ),
            action: "CheckDumpVolume".to_owned(),
        }),
        Notice::DumpStorage { error: None } => Some(PodEvent {
            warning: false,
            reason: "DumpVolumeAvailable".to_owned(),
            note: "the dump volume is writable again".to_owned(),
            action: "CheckDumpVolume".to_owned(),
        }),
        Notice::DumpFailed { error } => Some(PodEvent {
            warning: true,
            reason: "DumpFailed".to_owned(),
            note: stallwatch_core::report::truncate(error, 1000),
            action: "CaptureBundle".to_owned(),
        }),
    }
}

pub struct KubePublisher {
    client: Client,
    pod: PodTarget,
    recorder: Recorder,
}

impl KubePublisher {
    pub fn new(client: Client, pod: PodTarget) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTING_CONTROLLER.to_owned(),
                instance: Some(pod.name.clone()),
            },
        );
        KubePublisher {
            client,
            pod,
            recorder,
        }
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(self.pod.name.clone()),
            namespace: Some(self.pod.namespace.clone()),
            uid: self.pod.uid.clone(),
            ..ObjectReference::default()
        }
    }

    /// Strategic-merge the condition of type `condition_type` into `status.conditions` (merge
    /// key `type`), leaving the kubelet's own conditions and the other one alone.
    pub async fn patch_condition(
        &self,
        condition_type: &str,
        c: &DesiredCondition,
        last_transition_time: &str,
    ) -> Result<(), kube::Error> {
        let patch = condition_patch(condition_type, c, last_transition_time);
        let request = Request::new(format!("/api/v1/namespaces/{}/pods", self.pod.namespace))
            .patch_subresource(
                "status",
                &self.pod.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Strategic(patch),
            )
            .map_err(kube::Error::BuildRequest)?;
        // The answer (the whole Pod) is not decoded: the Pod's decoding code would stay
        // resident for nothing (see README "Steady RSS"). Error statuses still fail here.
        self.client.request_text(request).await?;
        Ok(())
    }

    pub async fn event(&self, e: &PodEvent) -> Result<(), kube::Error> {
        let ev = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.clone(),
            note: Some(e.note.clone()),
            action: e.action.clone(),
            secondary: None,
        };
        self.recorder.publish(&ev, &self.reference()).await
    }
}

pub fn condition_patch(
    condition_type: &str,
    c: &DesiredCondition,
    last_transition_time: &str,
) -> serde_json::Value {
    json!({
        "status": {
            "conditions": [{
                "type": condition_type,
                "status": c.status(),
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": last_transition_time,
            }]
        }
    })
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Keep the Pod's condition of type `condition_type` equal to the latest desired one: publish
/// on each change, retry with backoff until it lands (a newer desired state replaces the one
/// being retried). `lastTransitionTime` moves only when the status changes (True, False,
/// Unknown). One loop per condition type.
pub async fn run_condition_loop(
    publisher: Arc<KubePublisher>,
    condition_type: &'static str,
    mut desired: watch::Receiver<Option<DesiredCondition>>,
    metrics: Arc<Metrics>,
) {
    let mut published: Option<(DesiredCondition, String)> = None;
    loop {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(want) = desired.borrow_and_update().clone() else {
                break;
            };
            if published.as_ref().is_some_and(|(p, _)| *p == want) {
                break;
            }
            let ltt = match &published {
                Some((p, t)) if p.status() == want.status() => t.clone(),
                _ => now_rfc3339(),
            };
            match publisher.patch_condition(condition_type, &want, &ltt).await {
                Ok(()) => {
                    metrics.published("condition", true);
                    tracing::info!(condition = condition_type, status = want.status(), reason = %want.reason, "pod condition published");
                    published = Some((want, ltt));
                    break;
                }
                Err(e) => {
                    metrics.published("condition", false);
                    tracing::warn!(condition = condition_type, error = %e, retry_in = ?backoff, "publishing the pod condition failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        changed = desired.changed() => if changed.is_err() { return },
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if desired.changed().await.is_err() {
            return;
        }
    }
}

/// Publish one Event, a few attempts; Events are best effort.
pub async fn publish_event(publisher: &KubePublisher, event: &PodEvent, metrics: &Metrics) {
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=EVENT_ATTEMPTS {
        match publisher.event(event).await {
            Ok(()) => {
                metrics.published("event", true);
                return;
            }
            Err(e) => {
                metrics.published("event", false);
                tracing::warn!(error = %e, attempt, reason = %event.reason, "publishing an Event failed");
                if attempt < EVENT_ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

/// Publish Events for notices, in order.
pub async fn run_event_loop(
    publisher: Arc<KubePublisher>,
    mut events: mpsc::Receiver<PodEvent>,
    metrics: Arc<Metrics>,
) {
    while let Some(e) = events.recv().await {
        publish_event(&publisher, &e, &metrics).await;
    }
}

#[cfg(test)]
mod tests;
