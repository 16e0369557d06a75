//! What the shared state hands out: `/v1/status` ([`Status`]), the verdict history and recent
//! reports for bundles ([`Snapshot`]) and the notices for the reactor.

use serde::{Deserialize, Serialize};
use stallwatch_core::condition::StallReason;
use stallwatch_core::report::{DispatcherState, Report};
use stallwatch_core::verdict::{Change, Transition, VerdictConfig};

use super::zero_code::{ScrapeRecord, ScrapeStatus};

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub instance: Option<String>,
    /// Wall clock of the last accepted report, ms since the epoch.
    pub last_report_ms: Option<u64>,
    pub streams: Vec<StreamStatus>,
    pub dump_storage: StorageStatus,
    /// Zero-code mode only: how scraping the app's metrics goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub name: String,
    /// `healthy` or `stalled`.
    pub verdict: String,
    pub reason: Option<StallReason>,
    /// Wall clock at which the current verdict began, ms since the epoch.
    pub since_ms: u64,
    pub message: String,
    pub depth: u64,
    pub capacity: u64,
    pub dispatcher: DispatcherState,
    pub secs_since_dequeue: Option<f64>,
}

/// Whether the dump volume took the last bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    pub ok: bool,
    pub error: Option<String>,
    /// When `error` happened, ms since the epoch.
    pub since_ms: Option<u64>,
}

/// One verdict change with wall-clock time, as kept in `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: u64,
    pub stream: String,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedReport {
    pub received_at_ms: u64,
    pub report: Report,
}

/// Something the reactor (Events, dump on stall) should act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Verdict {
        transition: Transition,
        /// The condition clause for a stall, e.g. `stream a: ChannelStuck, 5/5 waiting, ...`.
        detail: String,
    },
    DumpWritten {
        path: String,
        stream: Option<String>,
    },
    DumpFailed {
        error: String,
    },
    /// The dump volume turned unusable (`Some(why)`) or usable again (`None`).
    DumpStorage {
        error: Option<String>,
    },
}

/// What a capture needs to know about the moment it is taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: Status,
    pub recent_reports: Vec<ReceivedReport>,
    pub history: Vec<HistoryEntry>,
    pub pid: Option<u32>,
    pub broadcaster_version: Option<String>,
    pub config: VerdictConfig,
    /// Zero-code mode: the last scrapes, oldest first (empty in report mode).
    pub scrapes: Vec<ScrapeRecord>,
    pub zero_code: bool,
}
