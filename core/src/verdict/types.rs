//! The verdict machine's vocabulary: its thresholds, a stream's [`Verdict`], and the
//! [`Transition`]s it reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::condition::StallReason;

/// Thresholds of the verdict machine (sidecar flags `--stall-after`, `--report-timeout`,
/// `--recover-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictConfig {
    /// How long items may wait with no dequeue before the channel is judged stuck.
    pub stall_after: Duration,
    /// How long without any report before every stream is judged `ReportsLost`.
    pub report_timeout: Duration,
    /// How long a stalled stream must keep making progress before it is healthy again.
    pub recover_after: Duration,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            stall_after: Duration::from_secs(2),
            report_timeout: Duration::from_secs(2),
            recover_after: Duration::from_secs(1),
        }
    }
}

/// A stream's verdict. Serialized as `{"verdict":"healthy"}` or
/// `{"verdict":"stalled","reason":"ChannelStuck"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Making progress, or nothing to do.
    Healthy,
    /// Stalled, for `reason`.
    Stalled {
        /// Why.
        reason: StallReason,
    },
}

impl Verdict {
    /// Stalled, for any reason.
    pub fn is_stalled(self) -> bool {
        matches!(self, Verdict::Stalled { .. })
    }

    /// The stall reason, if stalled.
    pub fn reason(self) -> Option<StallReason> {
        match self {
            Verdict::Healthy => None,
            Verdict::Stalled { reason } => Some(reason),
        }
    }

    /// `healthy` or `stalled`, as in the sidecar's `/v1/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Stalled { .. } => "stalled",
        }
    }
}

/// What changed for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Healthy → stalled.
    Stalled {
        /// Why.
        reason: StallReason,
    },
    /// Still stalled, for a different reason (e.g. a stuck channel whose dispatcher is now
    /// reported dead).
    ReasonChanged {
        /// The previous reason.
        from: StallReason,
        /// The reason now.
        to: StallReason,
    },
    /// Stalled → healthy, after `recover_after` of sustained progress.
    Recovered {
        /// The reason it was stalled for.
        was: StallReason,
        /// How long it was stalled.
        stalled_for_ms: u64,
    },
    /// The stream no longer appears in reports (the broadcaster's configuration changed).
    Removed {
        /// Its last verdict.
        was: Verdict,
    },
}

/// One verdict change, at monotonic time `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The stream.
    pub stream: String,
    /// When, on the judge's monotonic clock.
    #[serde(with = "duration_ms")]
    pub at: Duration,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

impl Transition {
    /// The verdict after this transition (`None` for a removed stream).
    pub fn verdict_after(&self) -> Option<Verdict> {
        match self.change {
            Change::Stalled { reason } => Some(Verdict::Stalled { reason }),
            Change::ReasonChanged { to, .. } => Some(Verdict::Stalled { reason: to }),
            Change::Recovered { .. } => Some(Verdict::Healthy),
            Change::Removed { .. } => None,
        }
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::millis(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
