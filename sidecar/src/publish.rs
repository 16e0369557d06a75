//! Making verdicts visible on the Pod: the `stallwatch.io/DispatchHealthy` pod condition
//! (patched on `pods/status` only when the verdict changes, retried until it lands) and
//! Kubernetes Events for stalls, recoveries and captures.
//!
//! Thin on purpose: what to publish is decided in [`crate::monitor`]; this module turns it into
//! API requests. Tested against a mock API server (`tower-test`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use stallwatch_core::condition::CONDITION_TYPE;
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
    /// PascalCase: a `StallReason`, `Recovered`, `DumpCaptured`, `DumpFailed`.
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

    /// Strategic-merge the condition into `status.conditions` (merge key `type`), leaving the
    /// kubelet's own conditions alone.
    pub async fn patch_condition(
        &self,
        c: &DesiredCondition,
        last_transition_time: &str,
    ) -> Result<(), kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.pod.namespace);
        let patch = condition_patch(c, last_transition_time);
        pods.patch_status(
            &self.pod.name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Strategic(patch),
        )
        .await?;
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

pub fn condition_patch(c: &DesiredCondition, last_transition_time: &str) -> serde_json::Value {
    json!({
        "status": {
            "conditions": [{
                "type": CONDITION_TYPE,
                "status": if c.healthy { "True" } else { "False" },
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

/// Keep the Pod's condition equal to the latest desired one: publish on each change, retry
/// with backoff until it lands (a newer desired state replaces the one being retried).
/// `lastTransitionTime` moves only when the status flips between True and False.
pub async fn run_condition_loop(
    publisher: Arc<KubePublisher>,
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
                Some((p, t)) if p.healthy == want.healthy => t.clone(),
                _ => now_rfc3339(),
            };
            match publisher.patch_condition(&want, &ltt).await {
                Ok(()) => {
                    metrics.published("condition", true);
                    tracing::info!(status = want.healthy, reason = %want.reason, "pod condition published");
                    published = Some((want, ltt));
                    break;
                }
                Err(e) => {
                    metrics.published("condition", false);
                    tracing::warn!(error = %e, retry_in = ?backoff, "publishing the pod condition failed");
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
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use stallwatch_core::condition::StallReason;
    use stallwatch_core::verdict::Transition;
    use tower_test::mock::{self, Handle};

    type MockHandle = Handle<Request<Body>, Response<Body>>;

    fn publisher() -> (Arc<KubePublisher>, MockHandle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "transit");
        let pod = PodTarget {
            namespace: "transit".into(),
            name: "bc-0".into(),
            uid: Some("uid-1".into()),
        };
        (Arc::new(KubePublisher::new(client, pod)), handle)
    }

    async fn body_json(req: Request<Body>) -> serde_json::Value {
        let bytes = req.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn ok_json(v: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&v).unwrap()))
            .unwrap()
    }

    fn pod_json() -> serde_json::Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"bc-0","namespace":"transit"}})
    }

    fn stalled() -> DesiredCondition {
        DesiredCondition {
            healthy: false,
            reason: "ChannelStuck".into(),
            message: "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 2.3s".into(),
        }
    }

    #[tokio::test]
    async fn condition_patch_targets_pod_status_with_strategic_merge() {
        let (p, mut handle) = publisher();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), Method::PATCH);
            assert_eq!(
                req.uri().path(),
                "/api/v1/namespaces/transit/pods/bc-0/status"
            );
            assert!(
                req.uri()
                    .query()
                    .unwrap_or("")
                    .contains("fieldManager=transit-sidecar")
            );
            assert_eq!(
                req.headers()["content-type"],
                "application/strategic-merge-patch+json"
            );
            let body = body_json(req).await;
            assert_eq!(
                body,
                json!({"status":{"conditions":[{
                    "type":"stallwatch.io/DispatchHealthy",
                    "status":"False",
                    "reason":"ChannelStuck",
                    "message":"stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 2.3s",
                    "lastTransitionTime":"2026-11-28T02:15:03Z"
                }]}})
            );
            send.send_response(ok_json(pod_json()));
        });
        p.patch_condition(&stalled(), "2026-11-28T02:15:03Z")
            .await
            .unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn condition_loop_retries_until_it_lands_and_publishes_only_changes() {
        let (p, mut handle) = publisher();
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run_condition_loop(p, rx, metrics.clone()));
        tx.send(Some(stalled())).unwrap();
        // First attempt fails with a 500, the retry succeeds.
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), Method::PATCH);
        send.send_response(
            Response::builder()
                .status(500)
                .body(Body::from(
                    serde_json::to_vec(&json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd unhappy","reason":"InternalError","code":500})).unwrap(),
                ))
                .unwrap(),
        );
        let (req, send) = handle.next_request().await.unwrap();
        let first = body_json(req).await;
        assert_eq!(first["status"]["conditions"][0]["status"], "False");
        let ltt = first["status"]["conditions"][0]["lastTransitionTime"].clone();
        send.send_response(ok_json(pod_json()));
        // Same desired state again: nothing is sent.
        tx.send(Some(stalled())).unwrap();
        // A different reason while still False keeps lastTransitionTime.
        let mut dead = stalled();
        dead.reason = "DispatcherDead".into();
        tx.send(Some(dead)).unwrap();
        let (req, send) = handle.next_request().await.unwrap();
        let second = body_json(req).await;
        assert_eq!(
            second["status"]["conditions"][0]["reason"],
            "DispatcherDead"
        );
        assert_eq!(second["status"]["conditions"][0]["lastTransitionTime"], ltt);
        send.send_response(ok_json(pod_json()));
        drop(tx);
        task.await.unwrap();
        let text = metrics.encode();
        assert!(
            text.contains(r#"publishes_total{what="condition"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"publish_errors_total{what="condition"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stall_event_is_a_warning_about_the_pod() {
        let (p, mut handle) = publisher();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), Method::POST);
            assert_eq!(
                req.uri().path(),
                "/apis/events.k8s.io/v1/namespaces/transit/events"
            );
            let body = body_json(req).await;
            assert_eq!(body["type"], "Warning");
            assert_eq!(body["reason"], "ChannelStuck");
            assert_eq!(body["action"], "Judge/downtown");
            assert_eq!(body["reportingController"], REPORTING_CONTROLLER);
            assert_eq!(body["reportingInstance"], "bc-0");
            assert_eq!(
                body["regarding"],
                json!({"apiVersion":"v1","kind":"Pod","name":"bc-0","namespace":"transit","uid":"uid-1"})
            );
            assert!(
                body["note"]
                    .as_str()
                    .unwrap()
                    .starts_with("stream downtown: ChannelStuck")
            );
            send.send_response(ok_json(body));
        });
        let notice = Notice::Verdict {
            transition: Transition {
                stream: "downtown".into(),
                at: Duration::from_secs(3),
                change: Change::Stalled {
                    reason: StallReason::ChannelStuck,
                },
            },
            detail: "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 2.3s".into(),
        };
        let event = event_for(&notice).unwrap();
        let metrics = Metrics::new();
        publish_event(&p, &event, &metrics).await;
        server.await.unwrap();
        assert!(
            metrics
                .encode()
                .contains(r#"publishes_total{what="event"} 1"#)
        );
    }

    #[tokio::test]
    async fn failed_events_are_retried_then_given_up() {
        let (p, mut handle) = publisher();
        let server = tokio::spawn(async move {
            for _ in 0..EVENT_ATTEMPTS {
                let (req, send) = handle.next_request().await.expect("a request");
                assert_eq!(req.method(), Method::POST);
                send.send_response(
                    Response::builder()
                        .status(403)
                        .body(Body::from(serde_json::to_vec(&json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","reason":"Forbidden","code":403})).unwrap()))
                        .unwrap(),
                );
            }
        });
        let event = event_for(&Notice::DumpFailed {
            error: "the dump volume is full".into(),
        })
        .unwrap();
        assert!(event.warning);
        assert_eq!(event.reason, "DumpFailed");
        let metrics = Metrics::new();
        tokio::time::pause();
        publish_event(&p, &event, &metrics).await;
        server.await.unwrap();
        assert!(
            metrics
                .encode()
                .contains(r#"publish_errors_total{what="event"} 3"#)
        );
    }

    #[test]
    fn events_for_each_notice() {
        let rec = event_for(&Notice::Verdict {
            transition: Transition {
                stream: "a".into(),
                at: Duration::ZERO,
                change: Change::Recovered {
                    was: StallReason::DispatcherDead,
                    stalled_for_ms: 12_300,
                },
            },
            detail: String::new(),
        })
        .unwrap();
        assert!(!rec.warning);
        assert_eq!(rec.reason, "Recovered");
        assert_eq!(
            rec.note,
            "stream a: dispatching again after 12.3s stalled (DispatcherDead)"
        );
        assert!(
            event_for(&Notice::Verdict {
                transition: Transition {
                    stream: "a".into(),
                    at: Duration::ZERO,
                    change: Change::Removed {
                        was: stallwatch_core::verdict::Verdict::Healthy
                    },
                },
                detail: String::new(),
            })
            .is_none()
        );
        let ok = event_for(&Notice::DumpWritten {
            path: "/dumps/x".into(),
            stream: None,
        })
        .unwrap();
        assert_eq!(ok.reason, "DumpCaptured");
    }
}
