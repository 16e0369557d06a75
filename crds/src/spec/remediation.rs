//! `spec.remediation`: what the operator does about a stall, and within which rails.

use kube::KubeSchema;
use kube::core::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits::{
    GO_DURATION_PATTERN, MAX_BUDGET_PER_HOUR, default_budget_per_hour, default_cooldown,
    default_dump_timeout, default_restart_timeout, default_soft_restart_timeout,
};

/// What the operator does about a stall.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    /// `DumpAndRestart` (default), `RestartOnly`, `DumpOnly`, or `Observe` (record what would be
    /// done and do nothing).
    #[serde(default)]
    pub mode: RemediationMode,
    /// Before dumping and restarting, ask the sidecar to restart only the stalled stream's
    /// dispatcher; the pod survives when the stall clears within `softRestartTimeout`. Off by
    /// default: a soft restart that works also wipes the evidence a dump would have kept.
    #[serde(default)]
    pub soft_restart_first: bool,
    /// How long to wait for the stall to clear after a soft restart.
    #[serde(default = "default_soft_restart_timeout")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub soft_restart_timeout: Duration,
    /// Bound on capturing a dump bundle; a failed capture never blocks the restart.
    #[serde(default = "default_dump_timeout")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub dump_timeout: Duration,
    /// How long to wait for the restarted pod (or rollout) before the attempt is closed.
    #[serde(default = "default_restart_timeout")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub restart_timeout: Duration,
    /// Remediations allowed per rolling hour. With the budget spent the operator stops,
    /// sets `Degraded` and emits an Event: it never makes a crash loop of its own.
    #[serde(default = "default_budget_per_hour")]
    #[schemars(range(min = 0, max = MAX_BUDGET_PER_HOUR))]
    pub budget_per_hour: u32,
    /// Minimum time between the end of one remediation and the start of the next.
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub cooldown: Duration,
    /// Restart the stalled `Pod` only (default), or roll the whole `Deployment`.
    #[serde(default)]
    pub restart_target: RestartTarget,
}

impl Default for RemediationSpec {
    fn default() -> Self {
        Self {
            mode: RemediationMode::default(),
            soft_restart_first: false,
            soft_restart_timeout: default_soft_restart_timeout(),
            dump_timeout: default_dump_timeout(),
            restart_timeout: default_restart_timeout(),
            budget_per_hour: default_budget_per_hour(),
            cooldown: default_cooldown(),
            restart_target: RestartTarget::default(),
        }
    }
}

/// Remediation mode.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RemediationMode {
    #[default]
    DumpAndRestart,
    RestartOnly,
    DumpOnly,
    Observe,
}

/// What a restart restarts.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RestartTarget {
    #[default]
    Pod,
    Deployment,
}
