//! Builders for report-protocol test objects: what a broadcaster sends its sidecar. Compiled for
//! core's own tests and, with feature `test-util`, for other crates' tests (through
//! `stallwatch-testkit`, which re-exports this module as `stallwatch_testkit::report`).
//!
//! ```
//! use stallwatch_core::report::DispatcherState;
//! use stallwatch_core::report::testing::{StreamReportBuilder, report, stream};
//!
//! let stuck = StreamReportBuilder::new("downtown")
//!     .channel(5, 5)
//!     .totals(15, 10)
//!     .build();
//! assert_eq!(stuck, stream("downtown", 5, 15, 10, DispatcherState::Running));
//! assert_eq!(report("i-1", 1, vec![stuck]).streams.len(), 1);
//! ```

use crate::clock::now_ms;
use crate::report::{
    ChannelReport, DispatcherReport, DispatcherState, ErrorReport, PROTOCOL_V1, Report,
    StreamReport,
};

/// The channel capacity of a built stream unless set.
pub const CAPACITY: u64 = 5;
/// The subscriber count of a built stream unless set.
pub const SUBSCRIBERS: u64 = 3;
/// The report interval of a built report.
pub const INTERVAL_MS: u64 = 250;

/// One stream's report. The derived counters stay consistent with the ones set: items
/// enqueued but neither dequeued nor still queued were dropped as oldest, and every
/// subscriber got every dequeued item.
#[derive(Debug, Clone)]
#[must_use]
pub struct StreamReportBuilder {
    name: String,
    depth: u64,
    capacity: u64,
    enqueued: u64,
    dequeued: u64,
    state: DispatcherState,
    quarantined: u64,
    last_error: Option<ErrorReport>,
    subscribers: u64,
    last_dequeue_ms: Option<u64>,
}

impl StreamReportBuilder {
    /// An empty, running stream: depth 0 of [`CAPACITY`], nothing enqueued, [`SUBSCRIBERS`]
    /// subscribers.
    pub fn new(name: &str) -> Self {
        StreamReportBuilder {
            name: name.into(),
            depth: 0,
            capacity: CAPACITY,
            enqueued: 0,
            dequeued: 0,
            state: DispatcherState::Running,
            quarantined: 0,
            last_error: None,
            subscribers: SUBSCRIBERS,
            last_dequeue_ms: None,
        }
    }

    /// Sets the channel's depth and capacity.
    pub fn channel(mut self, depth: u64, capacity: u64) -> Self {
        self.depth = depth;
        self.capacity = capacity;
        self
    }

    /// Sets the enqueued and dequeued totals.
    pub fn totals(mut self, enqueued: u64, dequeued: u64) -> Self {
        self.enqueued = enqueued;
        self.dequeued = dequeued;
        self
    }

    /// Sets the dispatcher's state.
    pub fn state(mut self, state: DispatcherState) -> Self {
        self.state = state;
        self
    }

    /// Sets the quarantined total.
    pub fn quarantined(mut self, total: u64) -> Self {
        self.quarantined = total;
        self
    }

    /// Sets the last error.
    pub fn last_error(mut self, at_ms: u64, message: &str) -> Self {
        self.last_error = Some(ErrorReport {
            at_ms,
            message: message.into(),
        });
        self
    }

    /// Sets the last dequeue's wall clock.
    pub fn last_dequeue(mut self, at_ms: u64) -> Self {
        self.last_dequeue_ms = Some(at_ms);
        self
    }

    /// Sets the number of subscribers.
    pub fn subscribers(mut self, n: u64) -> Self {
        self.subscribers = n;
        self
    }

    /// The stream report.
    pub fn build(self) -> StreamReport {
        StreamReport {
            name: self.name,
            channel: ChannelReport {
                depth: self.depth,
                capacity: self.capacity,
            },
            enqueued_total: self.enqueued,
            dequeued_total: self.dequeued,
            dropped_oldest_total: self
                .enqueued
                .saturating_sub(self.dequeued)
                .saturating_sub(self.depth),
            quarantined_total: self.quarantined,
            last_dequeue_ms: self.last_dequeue_ms,
            dispatcher: DispatcherReport {
                state: self.state,
                restarts_total: 0,
            },
            last_error: self.last_error,
            subscribers: self.subscribers,
            delivered_total: self.dequeued * self.subscribers,
        }
    }
}

/// The common shape in one call: `depth` of [`CAPACITY`] queued, `enq` enqueued and `deq`
/// dequeued in total, the dispatcher in `state`.
pub fn stream(name: &str, depth: u64, enq: u64, deq: u64, state: DispatcherState) -> StreamReport {
    StreamReportBuilder::new(name)
        .channel(depth, CAPACITY)
        .totals(enq, deq)
        .state(state)
        .build()
}

/// A v1 report sent now by this process, every [`INTERVAL_MS`].
pub fn report(instance: &str, seq: u64, streams: Vec<StreamReport>) -> Report {
    Report {
        protocol: PROTOCOL_V1.into(),
        instance: instance.into(),
        seq,
        sent_at_ms: now_ms(),
        interval_ms: INTERVAL_MS,
        pid: Some(std::process::id()),
        version: Some("fake-broadcaster 1.0".into()),
        streams,
    }
}

#[cfg(test)]
mod tests;
