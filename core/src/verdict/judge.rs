//! The [`Judge`]: one broadcaster's streams, report order and instance changes, silence
//! (`tick`), and the views the sidecar shows.

use std::collections::BTreeMap;
use std::time::Duration;

use super::track::{Track, secs_since_dequeue};
use super::types::{Change, Transition, Verdict, VerdictConfig};
use crate::condition::{StallReason, StalledStream};
use crate::report::{DispatcherState, OrderGuard, Report, ReportError};

/// The judge's view of one stream, for status pages and bundles.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamView<'a> {
    /// The stream's name.
    pub name: &'a str,
    /// Its verdict now.
    pub verdict: Verdict,
    /// When the current verdict began (monotonic). For a healthy stream that never stalled,
    /// when the judge first saw it.
    pub since: Duration,
    /// Items waiting in its channel (last report).
    pub depth: u64,
    /// Its channel's capacity (last report).
    pub capacity: u64,
    /// Its dispatcher's state (last report).
    pub dispatcher: DispatcherState,
    /// Seconds since the stream's last dequeue, `None` if it never dequeued.
    pub secs_since_dequeue: Option<f64>,
}

/// The verdict machine for one broadcaster (one pod).
#[derive(Debug, Clone)]
pub struct Judge {
    config: VerdictConfig,
    guard: OrderGuard,
    last_report_at: Option<Duration>,
    /// Sorted by name, so output order is deterministic.
    streams: BTreeMap<String, Track>,
}

impl Judge {
    /// A judge with no streams, judging by `config`.
    pub fn new(config: VerdictConfig) -> Self {
        Judge {
            config,
            guard: OrderGuard::default(),
            last_report_at: None,
            streams: BTreeMap::new(),
        }
    }

    /// The thresholds it judges by.
    pub fn config(&self) -> &VerdictConfig {
        &self.config
    }

    /// The broadcaster instance of the last accepted report.
    pub fn instance(&self) -> Option<&str> {
        self.guard.current_instance()
    }

    /// When the last report was accepted.
    pub fn last_report_at(&self) -> Option<Duration> {
        self.last_report_at
    }

    /// Feed one parsed and validated report received at `now`. A report that does not
    /// advance `seq` for the current instance is refused and changes nothing.
    pub fn observe(
        &mut self,
        report: &Report,
        now: Duration,
    ) -> Result<Vec<Transition>, ReportError> {
        let previous_instance = self.guard.current_instance().map(str::to_owned);
        self.guard.check(report)?;
        let new_instance = previous_instance.as_deref() != Some(report.instance.as_str());
        // After silence longer than report_timeout we do not know what happened in between,
        // so "no progress" is measured afresh rather than across the gap.
        let after_gap = self
            .last_report_at
            .is_some_and(|last| now.saturating_sub(last) >= self.config.report_timeout);
        self.last_report_at = Some(now);

        let mut out = self.remove_unreported(report, now);
        let cfg = self.config;
        for s in &report.streams {
            let track = self
                .streams
                .entry(s.name.clone())
                .or_insert_with(|| Track::new(s, report.sent_at_ms, now));
            if new_instance {
                track.has_baseline = false;
                track.waiting_since = None;
            }
            if after_gap {
                track.waiting_since = None;
            }
            if let Some(change) = track.judge(s, report.sent_at_ms, now, after_gap, &cfg) {
                out.push(Transition {
                    stream: s.name.clone(),
                    at: now,
                    change,
                });
            }
        }
        Ok(out)
    }

    /// Forget the streams `report` no longer has, one `Removed` transition each.
    fn remove_unreported(&mut self, report: &Report, now: Duration) -> Vec<Transition> {
        let removed: Vec<String> = self
            .streams
            .keys()
            .filter(|name| report.stream(name).is_none())
            .cloned()
            .collect();
        removed
            .into_iter()
            .filter_map(|name| {
                let track = self.streams.remove(&name)?;
                Some(Transition {
                    stream: name,
                    at: now,
                    change: Change::Removed { was: track.verdict },
                })
            })
            .collect()
    }

    /// Notice silence: with no report for `report_timeout`, every healthy stream becomes
    /// stalled with `ReportsLost`. Call it a few times per report interval.
    pub fn tick(&mut self, now: Duration) -> Vec<Transition> {
        let Some(last) = self.last_report_at else {
            return Vec::new();
        };
        if now.saturating_sub(last) < self.config.report_timeout {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (name, track) in &mut self.streams {
            track.recovering_since = None;
            if track.verdict == Verdict::Healthy {
                let reason = StallReason::ReportsLost;
                track.verdict = Verdict::Stalled { reason };
                track.since = now;
                out.push(Transition {
                    stream: name.clone(),
                    at: now,
                    change: Change::Stalled { reason },
                });
            }
        }
        out
    }

    /// Every known stream, sorted by name.
    pub fn streams(&self, now: Duration) -> Vec<StreamView<'_>> {
        self.streams
            .iter()
            .map(|(name, t)| view(name, t, now))
            .collect()
    }

    /// The view of the stream called `name`, if the judge knows it.
    pub fn stream(&self, name: &str, now: Duration) -> Option<StreamView<'_>> {
        self.streams
            .get_key_value(name)
            .map(|(name, t)| view(name, t, now))
    }

    /// Whether any stream is stalled now.
    pub fn any_stalled(&self) -> bool {
        self.streams.values().any(|t| t.verdict.is_stalled())
    }

    /// The stalled streams for the pod condition message, longest-stalled first (ties by
    /// name), so the condition's reason is `stalled_streams(now)[0].reason`.
    pub fn stalled_streams(&self, now: Duration) -> Vec<StalledStream> {
        let mut stalled: Vec<(Duration, StalledStream)> = self
            .streams
            .iter()
            .filter_map(|(name, t)| {
                t.verdict.reason().map(|reason| {
                    (
                        t.since,
                        StalledStream {
                            stream: name.clone(),
                            reason,
                            depth: t.depth,
                            capacity: t.capacity,
                            secs_since_dequeue: secs_since_dequeue(t, now),
                        },
                    )
                })
            })
            .collect();
        // Stable sort: equal `since` keeps name order from the BTreeMap.
        stalled.sort_by_key(|(since, _)| *since);
        stalled.into_iter().map(|(_, s)| s).collect()
    }
}

/// The view of one stream (`streams` and `stream` share it).
fn view<'a>(name: &'a str, t: &Track, now: Duration) -> StreamView<'a> {
    StreamView {
        name,
        verdict: t.verdict,
        since: t.since,
        depth: t.depth,
        capacity: t.capacity,
        dispatcher: t.dispatcher,
        secs_since_dequeue: secs_since_dequeue(t, now),
    }
}
