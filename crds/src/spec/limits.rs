//! Limits and defaults, one definition each: the constants and the `default_*` functions. The
//! schema (`#[schemars]` attributes, and the `default:` values schemars takes from
//! `#[serde(default = ...)]`), the `Default` impls and `validate` all use them, so the API
//! server and the operator cannot disagree.

use std::time::Duration as StdDuration;

use kube::core::Duration;

use super::streams::StreamSpec;

/// Maximum number of streams per TransitStream (bounds CEL cost and condition messages).
pub const MAX_STREAMS: usize = 64;
/// Maximum remediations per hour a TransitStream may allow.
pub const MAX_BUDGET_PER_HOUR: u32 = 10;
/// What the schema accepts as a Go duration (`250ms`, `1m30s`).
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Maximum broadcaster replicas per TransitStream.
pub const MAX_REPLICAS: i32 = 50;
/// Smallest `dumps.maxBytes` (1 MiB): one bundle must fit.
pub const MIN_DUMP_BYTES: u64 = 1 << 20;

/// `workloadRef.apiVersion`'s only value.
pub const WORKLOAD_API_VERSION: &str = "apps/v1";

pub(super) fn default_workload_api_version() -> String {
    WORKLOAD_API_VERSION.to_string()
}
pub(super) fn default_streams() -> Vec<StreamSpec> {
    vec![StreamSpec {
        name: "all".into(),
        ..StreamSpec::default()
    }]
}
pub(super) fn default_channel_capacity() -> u32 {
    5
}
pub(super) fn default_replicas() -> i32 {
    1
}
pub(super) fn default_report_interval() -> Duration {
    StdDuration::from_millis(250).into()
}
pub(super) fn default_stall_after() -> Duration {
    StdDuration::from_secs(2).into()
}
pub(super) fn default_poll_interval() -> Duration {
    StdDuration::from_secs(10).into()
}
pub(super) fn default_vehicles() -> u32 {
    40
}
pub(super) fn default_routes() -> u32 {
    4
}
pub(super) fn default_rate() -> u32 {
    10
}
pub(super) fn default_seed() -> u64 {
    1
}
pub(super) fn default_replay_rate() -> u32 {
    10
}
pub(super) fn default_soft_restart_timeout() -> Duration {
    StdDuration::from_secs(5).into()
}
pub(super) fn default_dump_timeout() -> Duration {
    StdDuration::from_secs(10).into()
}
pub(super) fn default_restart_timeout() -> Duration {
    StdDuration::from_secs(120).into()
}
pub(super) fn default_budget_per_hour() -> u32 {
    3
}
pub(super) fn default_cooldown() -> Duration {
    StdDuration::from_secs(300).into()
}
pub(super) fn default_max_bundles() -> u32 {
    20
}
pub(super) fn default_max_bytes() -> u64 {
    1 << 30
}
