//! The per-stream stall verdict state machine the sidecar runs.
//!
//! Pure: no clocks, no I/O. The caller passes the time as a monotonic [`Duration`] since an
//! origin of its choosing, feeds accepted reports with [`Judge::observe`] and calls
//! [`Judge::tick`] periodically (a few times per report interval) so that silence is noticed.
//! Both return the [`Transition`]s they caused, so the I/O layer publishes only on change.
//!
//! The rules, per stream:
//! - **Healthy** is the default. An idle stream (empty channel) is never stalled, however long
//!   nothing arrives.
//! - **Stalled / `ChannelStuck`**: items have been waiting and `dequeued_total` has not moved
//!   for [`VerdictConfig::stall_after`]. The clock starts at the sender's reported last
//!   dequeue, but never before the previous report (which showed no wait), so the verdict
//!   comes with the first report after the threshold rather than up to an interval later.
//! - **Stalled / `DispatcherDead`**: the dispatcher is reported `dead` or `missing` while items
//!   wait in the channel or arrive. Decided at once: nothing will ever read that channel.
//! - **Stalled / `ReportsLost`**: no report for [`VerdictConfig::report_timeout`] (a hung
//!   process or a blocked runtime). Streams already stalled keep their more specific reason.
//! - **Back to Healthy** only after [`VerdictConfig::recover_after`] during which every report
//!   shows the stream making progress (or empty), so a verdict does not flap.
//! - A new broadcaster `instance` (the process restarted) resets the counters' baselines but
//!   keeps verdicts: a stalled stream must prove progress in the new process to recover.
//!
//! With reports every `interval`, a stuck channel is judged within `stall_after + 2 * interval`
//! of the first item getting stuck: at most one interval until a report shows it waiting, then
//! `stall_after`, then at most one interval until the report that crosses the threshold.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::condition::{StallReason, StalledStream};
use crate::report::{DispatcherState, OrderGuard, Report, ReportError, StreamReport};

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

#[derive(Debug, Clone)]
struct Track {
    verdict: Verdict,
    since: Duration,
    depth: u64,
    capacity: u64,
    enqueued_total: u64,
    dequeued_total: u64,
    dispatcher: DispatcherState,
    /// Counters from the previous report of the same instance are a valid baseline.
    has_baseline: bool,
    /// Since when items have been seen waiting with no dequeue.
    waiting_since: Option<Duration>,
    /// Since when a stalled stream has kept making progress.
    recovering_since: Option<Duration>,
    first_seen: Duration,
    /// When this judge last saw `dequeued_total` move.
    last_progress: Option<Duration>,
    /// The sender's `last_dequeue_ms` and `sent_at_ms`, to compute the age of the last
    /// dequeue on the sender's own clock.
    sender_last_dequeue_ms: Option<u64>,
    sender_sent_at_ms: u64,
    received_at: Duration,
}

impl Track {
    /// A stream first seen in a report sent at `sent_at_ms` and received at `now`.
    fn new(s: &StreamReport, sent_at_ms: u64, now: Duration) -> Self {
        Track {
            verdict: Verdict::Healthy,
            since: now,
            depth: 0,
            capacity: s.channel.capacity,
            enqueued_total: 0,
            dequeued_total: 0,
            dispatcher: s.dispatcher.state,
            has_baseline: false,
            waiting_since: None,
            recovering_since: None,
            first_seen: now,
            last_progress: None,
            sender_last_dequeue_ms: None,
            sender_sent_at_ms: sent_at_ms,
            received_at: now,
        }
    }

    /// Judge this stream's part of a report (sent at `sent_at_ms`, received at `now`) and
    /// keep it as the next report's baseline. Returns the verdict change, if any.
    fn judge(
        &mut self,
        s: &StreamReport,
        sent_at_ms: u64,
        now: Duration,
        after_gap: bool,
        cfg: &VerdictConfig,
    ) -> Option<Change> {
        let baseline = self.has_baseline;
        let progressed = baseline && s.dequeued_total > self.dequeued_total;
        let arrived = if baseline {
            s.enqueued_total > self.enqueued_total
        } else {
            s.channel.depth > 0
        };
        let depth = s.channel.depth;
        if progressed {
            self.last_progress = Some(now);
        }
        self.date_wait(s, sent_at_ms, now, progressed, after_gap);

        let raw = if s.dispatcher.state.is_gone() && (depth > 0 || arrived) {
            Some(StallReason::DispatcherDead)
        } else if self
            .waiting_since
            .is_some_and(|w| now.saturating_sub(w) >= cfg.stall_after)
        {
            Some(StallReason::ChannelStuck)
        } else {
            None
        };
        // Progress this interval: a clean report for recovery purposes.
        let clean = raw.is_none() && (depth == 0 || progressed);
        let change = self.next_verdict(raw, clean, now, cfg);

        self.depth = depth;
        self.capacity = s.channel.capacity;
        self.enqueued_total = s.enqueued_total;
        self.dequeued_total = s.dequeued_total;
        self.dispatcher = s.dispatcher.state;
        self.has_baseline = true;
        self.sender_last_dequeue_ms = s.last_dequeue_ms;
        self.sender_sent_at_ms = sent_at_ms;
        self.received_at = now;
        change
    }

    /// Update since when items have been waiting with no dequeue.
    fn date_wait(
        &mut self,
        s: &StreamReport,
        sent_at_ms: u64,
        now: Duration,
        progressed: bool,
        after_gap: bool,
    ) {
        // When items start waiting (or progress resets the clock), date the start back
        // as far as the evidence allows: no later than the last dequeue the sender reports
        // (on its own clock), and no earlier than the previous report, which showed an
        // empty or moving channel. Without this the clock would start at the first report
        // that shows the wait, up to one interval late.
        // A sender that does not report its last dequeue gets the plain clock.
        let baseline = self.has_baseline;
        let previous_report = self.received_at;
        let earliest_start = || match s.last_dequeue_ms {
            Some(last) if baseline && !after_gap => now
                .saturating_sub(Duration::from_millis(sent_at_ms.saturating_sub(last)))
                .max(previous_report)
                .min(now),
            _ => now,
        };
        self.waiting_since = if s.channel.depth == 0 {
            None
        } else if progressed {
            Some(earliest_start())
        } else {
            Some(self.waiting_since.unwrap_or_else(earliest_start))
        };
    }

    /// The verdict after this report, given its raw stall reason and whether it showed
    /// progress; a stalled stream recovers only after `recover_after` of clean reports.
    fn next_verdict(
        &mut self,
        raw: Option<StallReason>,
        clean: bool,
        now: Duration,
        cfg: &VerdictConfig,
    ) -> Option<Change> {
        match (self.verdict, raw) {
            (Verdict::Healthy, Some(reason)) => {
                self.verdict = Verdict::Stalled { reason };
                self.since = now;
                self.recovering_since = None;
                Some(Change::Stalled { reason })
            }
            (Verdict::Healthy, None) => None,
            (Verdict::Stalled { reason: current }, Some(reason)) => {
                self.recovering_since = None;
                if reason == current {
                    return None;
                }
                self.verdict = Verdict::Stalled { reason };
                Some(Change::ReasonChanged {
                    from: current,
                    to: reason,
                })
            }
            (Verdict::Stalled { reason: current }, None) => {
                if !clean {
                    self.recovering_since = None;
                    return None;
                }
                let start = *self.recovering_since.get_or_insert(now);
                if now.saturating_sub(start) < cfg.recover_after {
                    return None;
                }
                let stalled_for = now.saturating_sub(self.since);
                self.verdict = Verdict::Healthy;
                self.since = now;
                self.recovering_since = None;
                Some(Change::Recovered {
                    was: current,
                    stalled_for_ms: millis(stalled_for),
                })
            }
        }
    }
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
            .map(|(name, t)| StreamView {
                name,
                verdict: t.verdict,
                since: t.since,
                depth: t.depth,
                capacity: t.capacity,
                dispatcher: t.dispatcher,
                secs_since_dequeue: secs_since_dequeue(t, now),
            })
            .collect()
    }

    /// The view of the stream called `name`, if the judge knows it.
    pub fn stream(&self, name: &str, now: Duration) -> Option<StreamView<'_>> {
        self.streams
            .get_key_value(name)
            .map(|(name, t)| StreamView {
                name,
                verdict: t.verdict,
                since: t.since,
                depth: t.depth,
                capacity: t.capacity,
                dispatcher: t.dispatcher,
                secs_since_dequeue: secs_since_dequeue(t, now),
            })
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

/// The age of the last dequeue: on the sender's clock when it reports `last_dequeue_ms`
/// (both ends of the difference come from the same clock), else from this judge's own
/// observation of the counter, else, if the stream has dequeued before we saw it, at least
/// as long as we have known it.
fn secs_since_dequeue(t: &Track, now: Duration) -> Option<f64> {
    let since_report = now.saturating_sub(t.received_at);
    if let Some(last) = t.sender_last_dequeue_ms {
        let on_sender = t.sender_sent_at_ms.saturating_sub(last);
        return Some((Duration::from_millis(on_sender) + since_report).as_secs_f64());
    }
    if let Some(progress) = t.last_progress {
        return Some(now.saturating_sub(progress).as_secs_f64());
    }
    if t.dequeued_total > 0 {
        return Some(now.saturating_sub(t.first_seen).as_secs_f64());
    }
    None
}

fn millis(d: Duration) -> u64 {
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

#[cfg(test)]
mod tests;
