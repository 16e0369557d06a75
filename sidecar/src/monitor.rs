//! The sidecar's shared state: the verdict machine fed by ingest and the ticker, the recent
//! history kept for bundles, and the notices the I/O tasks act on.
//!
//! Everything here is synchronous and quick; the lock is never held across an await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stallwatch_core::clock::now_ms;
use stallwatch_core::condition::{self, StallReason, StalledStream};
use stallwatch_core::report::{DispatcherState, Report, ReportError, parse_report};
use stallwatch_core::verdict::{Change, Judge, StreamView, Transition, Verdict, VerdictConfig};
use tokio::sync::{mpsc, watch};

use crate::metrics::{Metrics, StreamLabels};

mod zero_code;
pub use zero_code::{METRICS_UNAVAILABLE_REASON, ScrapeOutcome, ScrapeRecord, ScrapeStatus};
use zero_code::{ZeroCode, zero_code_condition};

/// Reports kept for `state.json`.
pub(crate) const RECENT_REPORTS: usize = 16;
/// Verdict changes kept for `state.json`.
pub(crate) const HISTORY_LEN: usize = 256;
/// Notices queued for the reactor before new ones are dropped (and counted).
pub(crate) const NOTICE_QUEUE: usize = 256;

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

    /// Parse, order-check and judge one report body. Refusals are counted and change nothing.
    pub fn ingest(&self, body: &[u8]) -> Result<(), ReportError> {
        let result = if self.lock().zero_code.is_some() {
            // Two sources would take turns as "the instance" and reset each other's baselines.
            Err(ReportError::Invalid(
                "this sidecar is in zero-code mode (--metrics-url): it judges the app's metrics and refuses reports".to_owned(),
            ))
        } else {
            parse_report(body).and_then(|report| self.observe(report))
        };
        match &result {
            Ok(()) => {
                self.metrics.reports_received.inc();
            }
            Err(e) => self.metrics.reject(e.label()),
        }
        result
    }

    fn observe(&self, report: Report) -> Result<(), ReportError> {
        let mut st = self.lock();
        self.observe_locked(&mut st, report)
    }

    fn observe_locked(&self, st: &mut State, report: Report) -> Result<(), ReportError> {
        let now = self.now();
        let first = st.judge.last_report_at().is_none();
        let transitions = st.judge.observe(&report, now)?;
        let received_at_ms = now_ms();
        st.last_report_wall_ms = Some(received_at_ms);
        for s in &report.streams {
            let labels = StreamLabels {
                stream: s.name.clone(),
            };
            self.metrics
                .stream_depth
                .get_or_create(&labels)
                .set(i64::try_from(s.channel.depth).unwrap_or(i64::MAX));
            self.metrics
                .stream_capacity
                .get_or_create(&labels)
                .set(i64::try_from(s.channel.capacity).unwrap_or(i64::MAX));
            // A stream seen for the first time gets its healthy series; changes after that
            // come with transitions.
            let healthy = st
                .judge
                .stream(&s.name, now)
                .is_some_and(|v| !v.verdict.is_stalled());
            if healthy && !self.metrics.has_stream_verdict(&s.name) {
                self.metrics.set_stream_verdict(&s.name, None);
            }
        }
        self.metrics.last_report_age_seconds.set(0.0);
        if st.recent.len() == RECENT_REPORTS {
            st.recent.pop_front();
        }
        st.recent.push_back(ReceivedReport {
            received_at_ms,
            report,
        });
        self.apply(st, now, transitions, first);
        Ok(())
    }

    /// Notice silence. Called by the ticker a few times per report interval.
    pub fn tick(&self) {
        let mut st = self.lock();
        let now = self.now();
        if let Some(last) = st.judge.last_report_at() {
            self.metrics
                .last_report_age_seconds
                .set(now.saturating_sub(last).as_secs_f64());
        }
        // Zero-code mode has no ReportsLost: a failing scrape is a status message, not a stall.
        if st.zero_code.is_some() {
            return;
        }
        let transitions = st.judge.tick(now);
        self.apply(&mut st, now, transitions, false);
    }

    fn apply(&self, st: &mut State, now: Duration, transitions: Vec<Transition>, first: bool) {
        if transitions.is_empty() && !first {
            return;
        }
        let stalled = st.judge.stalled_streams(now);
        for t in transitions {
            let detail = match t.change {
                Change::Stalled { reason } => {
                    self.metrics
                        .detections
                        .get_or_create(&crate::metrics::ReasonLabels {
                            reason: reason.as_str().into(),
                        })
                        .inc();
                    self.metrics
                        .set_stream_verdict(&t.stream, Some(reason.as_str()));
                    clause(&stalled, &t.stream)
                }
                Change::ReasonChanged { to, .. } => {
                    self.metrics
                        .set_stream_verdict(&t.stream, Some(to.as_str()));
                    clause(&stalled, &t.stream)
                }
                Change::Recovered { was, .. } => {
                    self.metrics
                        .recoveries
                        .get_or_create(&crate::metrics::ReasonLabels {
                            reason: was.as_str().into(),
                        })
                        .inc();
                    self.metrics.set_stream_verdict(&t.stream, None);
                    format!("stream {}: healthy again", t.stream)
                }
                Change::Removed { .. } => {
                    self.metrics.remove_stream(&t.stream);
                    format!("stream {}: no longer reported", t.stream)
                }
            };
            match t.change {
                Change::Stalled { .. } | Change::ReasonChanged { .. } => {
                    tracing::warn!(stream = %t.stream, change = ?t.change, "{detail}")
                }
                _ => tracing::info!(stream = %t.stream, change = ?t.change, "{detail}"),
            }
            if st.history.len() == HISTORY_LEN {
                st.history.pop_front();
            }
            st.history.push_back(HistoryEntry {
                at_ms: self.to_wall(t.at),
                stream: t.stream.clone(),
                change: t.change,
            });
            self.notify(Notice::Verdict {
                transition: t,
                detail,
            });
        }
        let desired = match zero_code_condition(st, &stalled) {
            Some(unknown) => unknown,
            None => desired_condition(&stalled, st.judge.streams(now).len()),
        };
        self.set_condition(desired);
    }

    fn set_condition(&self, desired: DesiredCondition) {
        self.condition.send_if_modified(|cur| {
            if cur.as_ref() == Some(&desired) {
                false
            } else {
                *cur = Some(desired);
                true
            }
        });
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

fn clause(stalled: &[StalledStream], stream: &str) -> String {
    stalled
        .iter()
        .find(|s| s.stream == stream)
        .map(ToString::to_string)
        .unwrap_or_else(|| format!("stream {stream}: stalled"))
}

/// The pod condition for these stalled streams (longest-stalled first).
pub(crate) fn desired_condition(stalled: &[StalledStream], streams: usize) -> DesiredCondition {
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

#[cfg(test)]
pub(crate) mod tests;
