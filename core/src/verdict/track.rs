//! One stream's judgement: the report-by-report rules (waiting clock, stall reason, recovery)
//! on the stream's last counters.

use std::time::Duration;

use super::types::{Change, Verdict, VerdictConfig, millis};
use crate::condition::StallReason;
use crate::report::{DispatcherState, StreamReport};

#[derive(Debug, Clone)]
pub(super) struct Track {
    pub(super) verdict: Verdict,
    pub(super) since: Duration,
    pub(super) depth: u64,
    pub(super) capacity: u64,
    enqueued_total: u64,
    dequeued_total: u64,
    pub(super) dispatcher: DispatcherState,
    /// Counters from the previous report of the same instance are a valid baseline.
    pub(super) has_baseline: bool,
    /// Since when items have been seen waiting with no dequeue.
    pub(super) waiting_since: Option<Duration>,
    /// Since when a stalled stream has kept making progress.
    pub(super) recovering_since: Option<Duration>,
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
    pub(super) fn new(s: &StreamReport, sent_at_ms: u64, now: Duration) -> Self {
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
    pub(super) fn judge(
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

/// The age of the last dequeue: on the sender's clock when it reports `last_dequeue_ms`
/// (both ends of the difference come from the same clock), else from this judge's own
/// observation of the counter, else, if the stream has dequeued before we saw it, at least
/// as long as we have known it.
pub(super) fn secs_since_dequeue(t: &Track, now: Duration) -> Option<f64> {
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
