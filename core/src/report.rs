//! The report protocol, `stallwatch.report.v1`: what a broadcaster tells its sidecar.
//!
//! Language-neutral on purpose: a JSON document POSTed over HTTP to the sidecar's ingest
//! address (loopback only) every report interval. A broadcaster in any language can speak it
//! with an HTTP client and a JSON encoder; `docs/report-protocol.md` is the normative text and
//! this module is its Rust mirror. The sidecar validates every field it relies on, so a buggy or
//! hostile peer gets a clear 4xx answer rather than a confused verdict.

use serde::{Deserialize, Serialize};

/// The value of [`Report::protocol`] for this version of the protocol.
pub const PROTOCOL_V1: &str = "stallwatch.report.v1";
/// Reports larger than this are refused before parsing (HTTP 413).
pub const MAX_REPORT_BYTES: usize = 256 * 1024;
/// A report may describe at most this many streams.
pub const MAX_STREAMS_PER_REPORT: usize = 1024;
/// Stream names: 1..=63 characters of `[a-z0-9-]`, starting and ending alphanumeric
/// (a DNS label, so names can appear in Kubernetes object names and metric labels).
pub const MAX_STREAM_NAME_LEN: usize = 63;
/// Free-text fields (errors, versions) are truncated to this many bytes by senders and
/// refused above it by the sidecar.
pub const MAX_TEXT_LEN: usize = 4096;

/// One heartbeat from a broadcaster process, with the state of every stream it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`PROTOCOL_V1`].
    pub protocol: String,
    /// Identifies one process lifetime; a new value means the broadcaster restarted.
    pub instance: String,
    /// Strictly increasing within one `instance`, starting at 1.
    pub seq: u64,
    /// Sender's wall clock, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The interval the sender promises to report at, in milliseconds.
    pub interval_ms: u64,
    /// The broadcaster's process id as seen from inside its pod (for process dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Free text, e.g. `transit-broadcaster 0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Every stream the broadcaster is configured to serve, healthy or not.
    pub streams: Vec<StreamReport>,
}

/// The state of one stream's pipeline: its channel, its dispatcher and its subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamReport {
    /// The stream's name (unique in the report, [`is_valid_stream_name`]).
    pub name: String,
    /// The channel's depth and capacity now.
    pub channel: ChannelReport,
    /// Items ever written to the channel (including ones later dropped).
    pub enqueued_total: u64,
    /// Items ever taken out of the channel by the dispatcher.
    pub dequeued_total: u64,
    /// Items evicted because the channel was full (drop-oldest).
    pub dropped_oldest_total: u64,
    /// Messages (or entities) that failed to parse or prepare and were set aside.
    pub quarantined_total: u64,
    /// Wall clock of the last dequeue, ms since the epoch; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_dequeue_ms: Option<u64>,
    /// What the reporting task saw of the stream's dispatcher.
    pub dispatcher: DispatcherReport,
    /// The dispatcher's last error, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorReport>,
    /// Subscribers currently connected to this stream.
    pub subscribers: u64,
    /// Updates handed to subscriber queues, summed over subscribers.
    pub delivered_total: u64,
}

/// A stream's bounded channel, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelReport {
    /// Items waiting in the channel now.
    pub depth: u64,
    /// The channel's bound; `depth <= capacity` always.
    pub capacity: u64,
}

/// A stream's dispatcher task as the reporting task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherReport {
    /// Whether it runs.
    pub state: DispatcherState,
    /// Times a supervisor restarted this stream's dispatcher since the process started.
    pub restarts_total: u64,
}

/// What the reporting task observed of the dispatcher task, independently of the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatcherState {
    /// The task exists and is processing or waiting for items.
    Running,
    /// The task ended and a supervisor will start it again after a backoff.
    Restarting,
    /// The task ended and nothing will restart it.
    Dead,
    /// No dispatcher task was ever found for this stream.
    Missing,
}

impl DispatcherState {
    /// Dead or missing: no task will ever read this stream's channel.
    pub fn is_gone(self) -> bool {
        matches!(self, DispatcherState::Dead | DispatcherState::Missing)
    }

    /// The state as written in a report (`running`, `restarting`, `dead`, `missing`).
    pub fn as_str(self) -> &'static str {
        match self {
            DispatcherState::Running => "running",
            DispatcherState::Restarting => "restarting",
            DispatcherState::Dead => "dead",
            DispatcherState::Missing => "missing",
        }
    }
}

/// The last error a dispatcher met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReport {
    /// When it happened, ms since the epoch.
    pub at_ms: u64,
    /// One line, at most [`MAX_TEXT_LEN`] bytes.
    pub message: String,
}

/// Why a report was refused. Each variant maps to one HTTP status and one metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The body is over the size limit.
    #[error("report is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a report (prost's or serde's error).
    #[error("report is not valid JSON for {PROTOCOL_V1}: {0}")]
    Malformed(String),
    /// The report's `protocol` is not [`PROTOCOL_V1`].
    #[error("unsupported protocol {0:?}, expected {PROTOCOL_V1:?}")]
    UnsupportedProtocol(String),
    /// The report breaks a rule of the protocol (the text says which).
    #[error("invalid report: {0}")]
    Invalid(String),
    /// Not after the last accepted report of the same instance.
    #[error("out-of-order report: seq {seq} is not after {last_seq} for instance {instance}")]
    OutOfOrder {
        /// The reporting instance.
        instance: String,
        /// The refused report's `seq`.
        seq: u64,
        /// The last accepted `seq`.
        last_seq: u64,
    },
    /// From an instance a newer one already replaced.
    #[error("late report from instance {instance}, which instance {current} already replaced")]
    Superseded {
        /// The replaced instance.
        instance: String,
        /// The instance that replaced it.
        current: String,
    },
}

impl ReportError {
    /// A stable, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReportError::TooLarge { .. } => "too_large",
            ReportError::Malformed(_) => "malformed",
            ReportError::UnsupportedProtocol(_) => "unsupported_protocol",
            ReportError::Invalid(_) => "invalid",
            ReportError::OutOfOrder { .. } | ReportError::Superseded { .. } => "out_of_order",
        }
    }

    /// The HTTP status the ingest endpoint answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ReportError::TooLarge { .. } => 413,
            ReportError::OutOfOrder { .. } | ReportError::Superseded { .. } => 409,
            _ => 400,
        }
    }
}

/// Is `name` a valid stream name (a DNS label)?
pub fn is_valid_stream_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_STREAM_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Parse and validate a report body. Does not check ordering; see `OrderGuard`.
pub fn parse_report(body: &[u8]) -> Result<Report, ReportError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge {
            size: body.len(),
            max: MAX_REPORT_BYTES,
        });
    }
    // Look at the protocol field first so a future version gets a precise error,
    // not a complaint about an unknown field.
    #[derive(Deserialize)]
    struct ProtocolOnly {
        protocol: Option<String>,
    }
    if let Ok(ProtocolOnly {
        protocol: Some(protocol),
    }) = serde_json::from_slice::<ProtocolOnly>(body)
        && protocol != PROTOCOL_V1
    {
        return Err(ReportError::UnsupportedProtocol(truncate(&protocol, 64)));
    }
    let report: Report =
        serde_json::from_slice(body).map_err(|e| ReportError::Malformed(e.to_string()))?;
    report.validate()?;
    Ok(report)
}

impl Report {
    /// Checks every invariant the sidecar relies on.
    pub fn validate(&self) -> Result<(), ReportError> {
        let invalid = |msg: String| Err(ReportError::Invalid(msg));
        if self.protocol != PROTOCOL_V1 {
            return Err(ReportError::UnsupportedProtocol(truncate(
                &self.protocol,
                64,
            )));
        }
        if self.instance.is_empty() || self.instance.len() > 128 {
            return invalid("instance must be 1..=128 bytes".into());
        }
        if self.seq == 0 {
            return invalid("seq starts at 1".into());
        }
        if self.interval_ms == 0 || self.interval_ms > 60_000 {
            return invalid(format!(
                "interval_ms {} outside 1..=60000",
                self.interval_ms
            ));
        }
        if self
            .version
            .as_ref()
            .is_some_and(|v| v.len() > MAX_TEXT_LEN)
        {
            return invalid("version too long".into());
        }
        if self.streams.len() > MAX_STREAMS_PER_REPORT {
            return invalid(format!(
                "{} streams, at most {MAX_STREAMS_PER_REPORT} allowed",
                self.streams.len()
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.streams.len());
        for s in &self.streams {
            if !is_valid_stream_name(&s.name) {
                return invalid(format!(
                    "stream name {:?} is not a DNS label ([a-z0-9-], 1..=63)",
                    truncate(&s.name, 80)
                ));
            }
            if !seen.insert(s.name.as_str()) {
                return invalid(format!("stream {:?} appears twice", s.name));
            }
            if s.channel.capacity == 0 {
                return invalid(format!("stream {:?}: channel capacity is 0", s.name));
            }
            if s.channel.depth > s.channel.capacity {
                return invalid(format!(
                    "stream {:?}: depth {} exceeds capacity {}",
                    s.name, s.channel.depth, s.channel.capacity
                ));
            }
            if s.dequeued_total > s.enqueued_total {
                return invalid(format!(
                    "stream {:?}: dequeued_total {} exceeds enqueued_total {}",
                    s.name, s.dequeued_total, s.enqueued_total
                ));
            }
            if s.last_error
                .as_ref()
                .is_some_and(|e| e.message.len() > MAX_TEXT_LEN)
            {
                return invalid(format!("stream {:?}: last_error too long", s.name));
            }
        }
        Ok(())
    }

    /// The report of the stream called `name`, if any.
    pub fn stream(&self, name: &str) -> Option<&StreamReport> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// Rejects reports that do not advance: a replayed or reordered request must not roll a
/// verdict back. A new `instance` (the broadcaster restarted) starts a fresh sequence; a late
/// report from an instance that was already replaced is refused, so it cannot pass for yet
/// another restart.
#[derive(Debug, Default, Clone)]
pub struct OrderGuard {
    last: Option<(String, u64)>,
    /// Instances seen before the current one, newest last, bounded.
    retired: std::collections::VecDeque<String>,
}

/// How many replaced instances the guard remembers.
const RETIRED_INSTANCES: usize = 16;

impl OrderGuard {
    /// Accepts `report` if it advances (and remembers it), refuses it otherwise.
    pub fn check(&mut self, report: &Report) -> Result<(), ReportError> {
        if let Some((instance, last_seq)) = &self.last {
            if *instance == report.instance {
                if report.seq <= *last_seq {
                    return Err(ReportError::OutOfOrder {
                        instance: instance.clone(),
                        seq: report.seq,
                        last_seq: *last_seq,
                    });
                }
            } else if self.retired.iter().any(|r| *r == report.instance) {
                return Err(ReportError::Superseded {
                    instance: report.instance.clone(),
                    current: instance.clone(),
                });
            } else {
                if self.retired.len() == RETIRED_INSTANCES {
                    self.retired.pop_front();
                }
                self.retired.push_back(instance.clone());
            }
        }
        self.last = Some((report.instance.clone(), report.seq));
        Ok(())
    }

    /// The instance whose reports are accepted now, if any report was.
    pub fn current_instance(&self) -> Option<&str> {
        self.last.as_ref().map(|(i, _)| i.as_str())
    }
}

/// Cut `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
