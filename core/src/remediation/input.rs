//! What [`decide`](super::decide) reads besides the ledger: the policy (from the resource's
//! spec) and the observation (the pods, the rails' inputs, the clock).

use serde::{Deserialize, Serialize};

use crate::condition::{StallReason, StalledStream};

/// What to do about a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Mode {
    /// Soft restart (if enabled), dump, restart.
    #[default]
    DumpAndRestart,
    /// Soft restart (if enabled), restart.
    RestartOnly,
    /// Dump only; nothing is restarted.
    DumpOnly,
    /// Record what would be done; do nothing.
    Observe,
}

/// What the restart rung restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartTarget {
    /// Delete the stalled pod; its ReplicaSet replaces it.
    #[default]
    Pod,
    /// Roll the whole Deployment (`kubectl rollout restart`).
    Deployment,
}

/// The remediation policy, from the TransitStream spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// What a stall may lead to (observe, dump, restart, both).
    pub mode: Mode,
    /// Ask the sidecar to restart the stalled stream's dispatcher before anything else.
    pub soft_restart_first: bool,
    /// How long a soft restart may take to clear the stall before the next step.
    pub soft_restart_timeout_ms: u64,
    /// How long the sidecar may take to capture a dump bundle.
    pub dump_timeout_ms: u64,
    /// How long a restarted pod (or rollout) may take before the attempt counts as failed.
    pub restart_timeout_ms: u64,
    /// Attempts allowed per rolling hour (0: never act; stalls only set `Degraded`).
    pub budget_per_hour: u32,
    /// Minimum time from the end of one attempt to the start of the next.
    pub cooldown_ms: u64,
    /// What a restart restarts: the pod or the whole Deployment.
    pub restart_target: RestartTarget,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::DumpAndRestart,
            soft_restart_first: false,
            soft_restart_timeout_ms: 5_000,
            dump_timeout_ms: 10_000,
            restart_timeout_ms: 120_000,
            budget_per_hour: 3,
            cooldown_ms: 300_000,
            restart_target: RestartTarget::Pod,
        }
    }
}

/// One pod as observed now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// The pod's name.
    pub name: String,
    /// The pod's uid (`None` when unknown: any pod of that name matches).
    pub uid: Option<String>,
    /// `Some(t)` while the pod's stall condition is `False`, `t` being its transition time.
    pub stalled_since_ms: Option<u64>,
    /// The stalled streams the condition message names (longest-stalled first).
    pub stalled: Vec<StalledStream>,
    /// The condition's reason (the longest-stalled stream's reason).
    pub reason: Option<StallReason>,
    /// The pod carries the opt-out annotation.
    pub opted_out: bool,
    /// The pod is being deleted (it does not count as a new episode).
    pub terminating: bool,
}

impl PodState {
    /// A healthy pod.
    pub fn healthy(name: &str, uid: &str) -> Self {
        PodState {
            name: name.into(),
            uid: Some(uid.into()),
            stalled_since_ms: None,
            stalled: Vec::new(),
            reason: None,
            opted_out: false,
            terminating: false,
        }
    }

    /// A pod stalled since `since_ms` on `streams` (the first is the longest-stalled).
    pub fn stalled(name: &str, uid: &str, since_ms: u64, streams: Vec<StalledStream>) -> Self {
        let reason = streams.first().map(|s| s.reason);
        PodState {
            stalled_since_ms: Some(since_ms),
            stalled: streams,
            reason,
            ..PodState::healthy(name, uid)
        }
    }

    pub(super) fn is_stalled(&self) -> bool {
        self.stalled_since_ms.is_some() && !self.terminating
    }
}

/// Everything observed now besides the policy and the ledger.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// The wall clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// The resource's pods.
    pub pods: Vec<PodState>,
    /// The resource's `paused`.
    pub paused: bool,
    /// The resource carries the opt-out annotation.
    pub opted_out: bool,
    /// Attempts in flight for *other* resources, operator-wide.
    pub in_flight_elsewhere: usize,
    /// The operator-wide cap on attempts in flight (0 means no attempt may start).
    pub max_concurrent: usize,
}
