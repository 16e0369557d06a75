//! Feeding the verdict machine: reports (`ingest`) and silence (`tick`) in; per transition the
//! metrics, the history entry and a notice; then the pod condition to publish.

use std::time::Duration;

use stallwatch_core::clock::now_ms;
use stallwatch_core::condition::StalledStream;
use stallwatch_core::report::{Report, ReportError, parse_report};
use stallwatch_core::verdict::{Change, Transition};

use super::condition::{DesiredCondition, desired_condition};
use super::views::{HistoryEntry, Notice, ReceivedReport};
use super::zero_code::zero_code_condition;
use super::{HISTORY_LEN, Monitor, RECENT_REPORTS, State};
use crate::metrics::StreamLabels;

impl Monitor {
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

    pub(super) fn observe_locked(&self, st: &mut State, report: Report) -> Result<(), ReportError> {
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

    pub(super) fn set_condition(&self, desired: DesiredCondition) {
        self.condition.send_if_modified(|cur| {
            if cur.as_ref() == Some(&desired) {
                false
            } else {
                *cur = Some(desired);
                true
            }
        });
    }
}

fn clause(stalled: &[StalledStream], stream: &str) -> String {
    stalled
        .iter()
        .find(|s| s.stream == stream)
        .map(ToString::to_string)
        .unwrap_or_else(|| format!("stream {stream}: stalled"))
}
