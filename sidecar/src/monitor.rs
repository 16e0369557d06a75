//! The sidecar's shared state: the verdict machine fed by ingest and the ticker, the recent
//! history kept for bundles, and the notices the I/O tasks act on.
//!
//! Everything here is synchronous and quick; the lock is never held across an await.
//!
//! Where a change goes: a field of `/v1/status`, the snapshot or a notice → `views`; the pod
//! condition's status, reason and message → `condition`; what a report, a tick or a verdict
//! change does (metrics, history, notices, the condition) → `verdicts`; zero-code mode's part
//! → `zero_code`; reading the state (status, snapshot, dump storage) → here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stallwatch_core::clock::now_ms;
use stallwatch_core::condition::StalledStream;
use stallwatch_core::verdict::{Judge, StreamView, Verdict, VerdictConfig};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;

mod condition;
mod verdicts;
mod views;
mod zero_code;
pub use condition::DesiredCondition;
pub use views::{
    HistoryEntry, Notice, ReceivedReport, Snapshot, Status, StorageStatus, StreamStatus,
};
use zero_code::ZeroCode;
pub use zero_code::{METRICS_UNAVAILABLE_REASON, ScrapeOutcome, ScrapeRecord, ScrapeStatus};

/// Reports kept for `state.json`.
pub(crate) const RECENT_REPORTS: usize = 16;
/// Verdict changes kept for `state.json`.
pub(crate) const HISTORY_LEN: usize = 256;
/// Notices queued for the reactor before new ones are dropped (and counted).
pub(crate) const NOTICE_QUEUE: usize = 256;

struct State {
    judge: Judge,
    recent: VecDeque<ReceivedReport>,
    history: VecDeque<HistoryEntry>,
    last_report_wall_ms: Option<u64>,
    storage: StorageStatus,
    /// `Some` in zero-code mode.
    zero_code: Option<ZeroCode>,
}

pub struct Monitor {
    state: Mutex<State>,
    origin: Instant,
    origin_wall_ms: u64,
    pub metrics: Arc<Metrics>,
    condition: watch::Sender<Option<DesiredCondition>>,
    notices: mpsc::Sender<Notice>,
}

/// The receiving ends of a [`Monitor`]'s outputs.
pub struct MonitorOutputs {
    pub condition: watch::Receiver<Option<DesiredCondition>>,
    pub notices: mpsc::Receiver<Notice>,
}

impl Monitor {
    pub fn new(config: VerdictConfig, metrics: Arc<Metrics>) -> (Arc<Monitor>, MonitorOutputs) {
        let (condition_tx, condition_rx) = watch::channel(None);
        let (notice_tx, notice_rx) = mpsc::channel(NOTICE_QUEUE);
        let monitor = Monitor {
            state: Mutex::new(State {
                judge: Judge::new(config),
                recent: VecDeque::with_capacity(RECENT_REPORTS),
                history: VecDeque::new(),
                last_report_wall_ms: None,
                storage: StorageStatus {
                    ok: true,
                    error: None,
                    since_ms: None,
                },
                zero_code: None,
            }),
            origin: Instant::now(),
            origin_wall_ms: now_ms(),
            metrics,
            condition: condition_tx,
            notices: notice_tx,
        };
        (
            Arc::new(monitor),
            MonitorOutputs {
                condition: condition_rx,
                notices: notice_rx,
            },
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a plain assignment: keep judging after a panic (the shared policy).
        stallwatch_core::sync::lock(&self.state)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Monotonic time as wall-clock ms (stable: derived from the origin, not re-read).
    fn to_wall(&self, at: Duration) -> u64 {
        self.origin_wall_ms
            .saturating_add(u64::try_from(at.as_millis()).unwrap_or(u64::MAX))
    }

    /// Queue a notice for the reactor; never blocks. A full queue drops and counts.
    pub(crate) fn notify(&self, notice: Notice) {
        if self.notices.try_send(notice).is_err() {
            self.metrics.published("dropped_notice", false);
            tracing::warn!("notice queue full or closed; dropped a notice");
        }
    }

    pub fn any_stalled(&self) -> bool {
        self.lock().judge.any_stalled()
    }

    pub(crate) fn stalled_streams(&self) -> Vec<StalledStream> {
        let st = self.lock();
        st.judge.stalled_streams(self.now())
    }

    /// Whether the dump volume took the last write (a probe or a bundle), and why not.
    pub fn storage(&self) -> StorageStatus {
        self.lock().storage.clone()
    }

    pub fn status(&self) -> Status {
        let st = self.lock();
        self.status_locked(&st)
    }

    fn status_locked(&self, st: &State) -> Status {
        let now = self.now();
        Status {
            instance: st.judge.instance().map(str::to_owned),
            last_report_ms: st.last_report_wall_ms,
            streams: st
                .judge
                .streams(now)
                .iter()
                .map(|v| self.stream_status(v))
                .collect(),
            dump_storage: st.storage.clone(),
            scrape: st.zero_code.as_ref().map(|z| z.status.clone()),
        }
    }

    fn stream_status(&self, v: &StreamView<'_>) -> StreamStatus {
        let message = match v.verdict {
            Verdict::Stalled { reason } => StalledStream {
                stream: v.name.to_owned(),
                reason,
                depth: v.depth,
                capacity: v.capacity,
                secs_since_dequeue: v.secs_since_dequeue,
            }
            .to_string(),
            Verdict::Healthy => format!(
                "stream {}: healthy, {}/{} waiting, dispatcher {}",
                v.name,
                v.depth,
                v.capacity,
                v.dispatcher.as_str()
            ),
        };
        StreamStatus {
            name: v.name.to_owned(),
            verdict: v.verdict.as_str().to_owned(),
            reason: v.verdict.reason(),
            since_ms: self.to_wall(v.since),
            message,
            depth: v.depth,
            capacity: v.capacity,
            dispatcher: v.dispatcher,
            secs_since_dequeue: v.secs_since_dequeue,
        }
    }

    /// The stream's verdict now, if the stream is known.
    pub(crate) fn verdict_of(&self, stream: &str) -> Option<Verdict> {
        let st = self.lock();
        st.judge.stream(stream, self.now()).map(|v| v.verdict)
    }

    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        let last = st.recent.back().map(|r| &r.report);
        Snapshot {
            status: self.status_locked(&st),
            recent_reports: st.recent.iter().cloned().collect(),
            history: st.history.iter().cloned().collect(),
            pid: last.and_then(|r| r.pid),
            broadcaster_version: last.and_then(|r| r.version.clone()),
            config: *st.judge.config(),
            scrapes: st
                .zero_code
                .as_ref()
                .map(|z| z.ring.iter().cloned().collect())
                .unwrap_or_default(),
            zero_code: st.zero_code.is_some(),
        }
    }

    /// The dump volume's state, with a notice (an Event) when it turns usable or unusable.
    pub(crate) fn set_storage(&self, result: Result<(), String>) {
        let mut st = self.lock();
        if st.storage.ok != result.is_ok() {
            self.notify(Notice::DumpStorage {
                error: result.clone().err(),
            });
        }
        match result {
            Ok(()) => {
                st.storage = StorageStatus {
                    ok: true,
                    error: None,
                    since_ms: None,
                };
                self.metrics.dump_storage_ok.set(1);
            }
            Err(error) => {
                st.storage = StorageStatus {
                    ok: false,
                    error: Some(error),
                    since_ms: Some(now_ms()),
                };
                self.metrics.dump_storage_ok.set(0);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
