//! The pod condition the publisher should make true, from the stalled streams (zero-code
//! mode's `Unknown` comes from `zero_code`).

use stallwatch_core::condition::{self, StalledStream};

/// The pod condition the publisher should make true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCondition {
    pub healthy: bool,
    /// No verdict can be given (zero-code mode with a failing scrape): status `Unknown`.
    pub unknown: bool,
    /// `Healthy` or a `StallReason`.
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    /// The condition's `status`: `True`, `False` or `Unknown`.
    pub fn status(&self) -> &'static str {
        if self.unknown {
            "Unknown"
        } else if self.healthy {
            "True"
        } else {
            "False"
        }
    }
}

/// The pod condition for these stalled streams (longest-stalled first).
pub(super) fn desired_condition(stalled: &[StalledStream], streams: usize) -> DesiredCondition {
    match stalled.first() {
        None => DesiredCondition {
            healthy: true,
            unknown: false,
            reason: condition::HEALTHY_REASON.to_owned(),
            message: format!("all {streams} streams are dispatching"),
        },
        Some(first) => DesiredCondition {
            healthy: false,
            unknown: false,
            reason: first.reason.as_str().to_owned(),
            message: condition::format_message(stalled),
        },
    }
}
