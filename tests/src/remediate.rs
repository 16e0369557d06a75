//! The local remediation adapter: the operator's decision function
//! ([`stallwatch_core::remediation::decide`]) driven against a local "pod" (a broadcaster
//! process and its sidecar). Where the operator deletes the pod, this restarts the process; the
//! pod uid is the broadcaster's instance id as the sidecar reports it. Any process that can be
//! restarted in place ([`RestartablePod`]: the Rust broadcaster, the Python example service)
//! stands in for the pod.

use std::time::{Duration, Instant};

use anyhow::Result;
use stallwatch_core::condition::{StallReason, StalledStream};
use stallwatch_core::remediation::{
    Decision, Effect, EffectResult, Ledger, Observation, PodState, Policy, decide, record_result,
};

use crate::{Broadcaster, DumpAnswer, PythonService, Sidecar, Status, now_ms};

/// The pod name the local adapter uses (also the sidecar's `--pod-name`).
pub const POD: &str = "broadcaster-0";

/// A local process that stands in for the pod: where the operator deletes the pod, the
/// adapter restarts it in place (same ports, so the sidecar keeps reaching it).
pub trait RestartablePod {
    /// Kill the process and start it again.
    fn restart(&mut self) -> Result<()>;
    /// The latest start, for the loop's `RestartIssued` event.
    fn describe_start(&self) -> String;
}

impl RestartablePod for Broadcaster {
    fn restart(&mut self) -> Result<()> {
        Broadcaster::restart(self)
    }

    fn describe_start(&self) -> String {
        format!(
            "broadcaster process restarted (start #{}, pid {})",
            self.starts,
            self.proc.pid().unwrap_or_default()
        )
    }
}

impl RestartablePod for PythonService {
    fn restart(&mut self) -> Result<()> {
        PythonService::restart(self)
    }

    fn describe_start(&self) -> String {
        format!(
            "python service process restarted (start #{}, pid {})",
            self.starts,
            self.proc.pid().unwrap_or_default()
        )
    }
}

/// Something the loop did, with the wall-clock time it happened.
#[derive(Debug, Clone)]
pub struct LoopEvent {
    pub at_ms: u64,
    pub at: Instant,
    pub kind: LoopEventKind,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoopEventKind {
    /// A decision note (RemediationStarted, RemediationCompleted, ...).
    Note(&'static str),
    SoftRestart,
    DumpCaptured {
        path: String,
        bytes: u64,
    },
    DumpFailed,
    RestartIssued,
    /// A stall not acted on (budget, cooldown, ...), reported once per reason.
    Blocked(&'static str),
}

/// The adapter: the policy, the persisted ledger (here, in memory) and what happened.
pub struct LocalRemediator {
    pub policy: Policy,
    pub ledger: Ledger,
    pub events: Vec<LoopEvent>,
    /// The instance a restart was issued for: until the sidecar sees another one, the old
    /// "pod" counts as terminating (as a deleted pod does).
    restarted_instance: Option<String>,
    last_blocked: Option<&'static str>,
}

impl LocalRemediator {
    pub fn new(policy: Policy) -> Self {
        LocalRemediator {
            policy,
            ledger: Ledger::default(),
            events: Vec::new(),
            restarted_instance: None,
            last_blocked: None,
        }
    }

    /// The pod as the operator would see it from the sidecar's condition.
    pub fn observe(&self, status: &Status, now_ms: u64) -> Observation {
        let mut stalled: Vec<(u64, StalledStream)> = status
            .streams
            .iter()
            .filter(|s| s.verdict == "stalled")
            .filter_map(|s| {
                Some((
                    s.since_ms.unwrap_or(now_ms),
                    StalledStream {
                        stream: s.name.clone(),
                        reason: s.reason?,
                        depth: s.depth.unwrap_or(0),
                        capacity: s.capacity.unwrap_or(0),
                        secs_since_dequeue: s.secs_since_dequeue,
                    },
                ))
            })
            .collect();
        stalled.sort_by_key(|(since, s)| (*since, s.stream.clone()));
        let uid = status.instance.clone().unwrap_or_else(|| "unknown".into());
        let mut pod = match stalled.first() {
            Some((since, _)) => PodState::stalled(
                POD,
                &uid,
                *since,
                stalled.iter().map(|(_, s)| s.clone()).collect(),
            ),
            None => PodState::healthy(POD, &uid),
        };
        if self.restarted_instance.as_deref() == Some(uid.as_str()) {
            pod.terminating = true;
        }
        // The local sidecar outlives the restart and keeps the episode's verdict until the new
        // process proves progress: the episode, not the instance, identifies the stall here.
        pod.uid = None;
        Observation {
            now_ms,
            pods: vec![pod],
            paused: false,
            opted_out: false,
            in_flight_elsewhere: 0,
            max_concurrent: 2,
        }
    }

    fn push(&mut self, kind: LoopEventKind, text: String) {
        self.events.push(LoopEvent {
            at_ms: now_ms(),
            at: Instant::now(),
            kind,
            text,
        });
    }

    /// One pass of the operator's loop: decide and act until the decision is to wait or idle
    /// (bounded). Returns the events this pass added.
    pub async fn pass<P: RestartablePod + ?Sized>(
        &mut self,
        sidecar: &Sidecar,
        pod: &mut P,
    ) -> Result<usize> {
        let before = self.events.len();
        for _ in 0..16 {
            let status = sidecar.status().await?;
            let obs = self.observe(&status, now_ms());
            match decide(&self.policy, &self.ledger, &obs) {
                Decision::Record { ledger, note } => {
                    self.ledger = ledger;
                    self.push(LoopEventKind::Note(note.reason), note.message);
                }
                Decision::Act {
                    ledger,
                    effect,
                    note,
                } => {
                    // Recorded before acted on.
                    self.ledger = ledger;
                    self.push(LoopEventKind::Note(note.reason), note.message);
                    let result = self.execute(&effect, sidecar, pod, &status).await;
                    self.ledger = record_result(&self.ledger, effect.attempt_id(), result);
                }
                Decision::Wait { .. } => break,
                Decision::Idle { blocked, .. } => {
                    let label = blocked.as_ref().map(|b| b.label());
                    if let (Some(b), true) = (&blocked, label != self.last_blocked) {
                        self.push(LoopEventKind::Blocked(b.label()), b.to_string());
                    }
                    self.last_blocked = label;
                    break;
                }
            }
        }
        Ok(self.events.len() - before)
    }

    async fn execute<P: RestartablePod + ?Sized>(
        &mut self,
        effect: &Effect,
        sidecar: &Sidecar,
        pod: &mut P,
        status: &Status,
    ) -> EffectResult {
        match effect {
            Effect::SoftRestart { stream, .. } => self.soft_restart(sidecar, stream).await,
            Effect::CaptureDump {
                stream,
                reason,
                timeout_ms,
                ..
            } => {
                self.capture(sidecar, stream, *reason, Duration::from_millis(*timeout_ms))
                    .await
            }
            Effect::RestartPod { .. } => {
                // The uid precondition: a restart already issued for this instance is not
                // issued twice.
                if self.restarted_instance.is_some() && self.restarted_instance == status.instance {
                    return EffectResult::RestartIssued;
                }
                self.restart(pod, status)
            }
            Effect::RolloutRestart { .. } => self.restart(pod, status),
        }
    }

    async fn soft_restart(&mut self, sidecar: &Sidecar, stream: &str) -> EffectResult {
        match sidecar.soft_restart(stream).await {
            Ok(202) => {
                self.push(
                    LoopEventKind::SoftRestart,
                    format!("soft restart of stream {stream} accepted"),
                );
                EffectResult::SoftRestartAccepted
            }
            Ok(code) => EffectResult::SoftRestartFailed {
                error: format!("HTTP {code}"),
            },
            Err(e) => EffectResult::SoftRestartFailed {
                error: e.to_string(),
            },
        }
    }

    /// Ask the sidecar for a bundle, bounded by the policy's dump timeout.
    async fn capture(
        &mut self,
        sidecar: &Sidecar,
        stream: &str,
        reason: StallReason,
        timeout: Duration,
    ) -> EffectResult {
        let capture = sidecar.capture(Some(stream), Some(reason), "stallwatch-loop");
        let (kind, text, result) = match tokio::time::timeout(timeout, capture).await {
            Ok(Ok(DumpAnswer::Captured(m))) => {
                let bytes = m.files.iter().map(|f| f.bytes).sum();
                (
                    LoopEventKind::DumpCaptured {
                        path: m.path.clone(),
                        bytes,
                    },
                    format!("bundle {} ({bytes} bytes)", m.path),
                    EffectResult::DumpCaptured {
                        bundle_path: m.path.clone(),
                    },
                )
            }
            Ok(Ok(DumpAnswer::Refused { status, error })) => (
                LoopEventKind::DumpFailed,
                format!("capture refused: HTTP {status}: {error}"),
                EffectResult::DumpFailed {
                    error,
                    timed_out: false,
                },
            ),
            Ok(Err(e)) => (
                LoopEventKind::DumpFailed,
                format!("capture failed: {e:#}"),
                EffectResult::DumpFailed {
                    error: e.to_string(),
                    timed_out: false,
                },
            ),
            Err(_) => (
                LoopEventKind::DumpFailed,
                "capture timed out".into(),
                EffectResult::DumpFailed {
                    error: "timed out".into(),
                    timed_out: true,
                },
            ),
        };
        self.push(kind, text);
        result
    }

    fn restart<P: RestartablePod + ?Sized>(
        &mut self,
        pod: &mut P,
        status: &Status,
    ) -> EffectResult {
        match pod.restart() {
            Ok(()) => {
                self.restarted_instance = status.instance.clone();
                self.push(LoopEventKind::RestartIssued, pod.describe_start());
                EffectResult::RestartIssued
            }
            Err(e) => EffectResult::RestartFailed {
                error: format!("{e:#}"),
            },
        }
    }

    /// The first event of `kind`'s variant after index `from`.
    pub fn find(&self, from: usize, pred: impl Fn(&LoopEventKind) -> bool) -> Option<&LoopEvent> {
        self.events.iter().skip(from).find(|e| pred(&e.kind))
    }
}
