//! The pod condition the sidecar publishes and the operator reads.
//!
//! One condition per pod, [`CONDITION_TYPE`]: `True` while every stream is healthy, `False`
//! while any is stalled. The message names each stalled stream in a fixed format that people
//! can read and the operator can parse back ([`format_message`] / [`parse_message`] round-trip),
//! so the Role the sidecar needs stays limited to `pods/status` and no annotation is required.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The pod condition type, usable as a readiness gate.
pub const CONDITION_TYPE: &str = "stallwatch.io/DispatchHealthy";
/// The reason of the condition while every stream is healthy.
pub const HEALTHY_REASON: &str = "Healthy";
/// The second pod condition: whether the dump volume takes a bundle (the sidecar's probe:
/// write, fsync, delete). `False` names why (`PermissionDenied`, `ReadOnly`, `Missing`,
/// `Full`, `Failed`) with the probe's message. Never a readiness gate: a broadcaster that
/// cannot write dumps still serves.
pub const DUMP_STORAGE_CONDITION_TYPE: &str = "stallwatch.io/DumpStorageReady";
/// The reason of [`DUMP_STORAGE_CONDITION_TYPE`] while the dump volume is writable.
pub const DUMP_STORAGE_WRITABLE_REASON: &str = "Writable";
/// Messages longer than this are cut at a clause boundary with a `... and N more` tail.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Why a stream is judged stalled. The names are the condition reasons, Event reasons and
/// metric label values, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StallReason {
    /// Items are waiting and the dequeued counter has not moved for `stallAfter`.
    ChannelStuck,
    /// The dispatcher is reported dead or missing while items arrive.
    DispatcherDead,
    /// No report for `reportTimeout`: the process or its runtime is hung.
    ReportsLost,
}

impl StallReason {
    /// Every reason, in the order of the enum.
    pub const ALL: [StallReason; 3] = [
        StallReason::ChannelStuck,
        StallReason::DispatcherDead,
        StallReason::ReportsLost,
    ];

    /// The reason as written in the condition (its `reason` field).
    pub fn as_str(self) -> &'static str {
        match self {
            StallReason::ChannelStuck => "ChannelStuck",
            StallReason::DispatcherDead => "DispatcherDead",
            StallReason::ReportsLost => "ReportsLost",
        }
    }
}

impl fmt::Display for StallReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StallReason {
    type Err = ConditionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StallReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ConditionParseError(format!("unknown stall reason {s:?}")))
    }
}

/// One stalled stream as the condition message describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalledStream {
    /// The stream's name.
    pub stream: String,
    /// Why it is stalled.
    pub reason: StallReason,
    /// Items waiting in its channel.
    pub depth: u64,
    /// Its channel's capacity.
    pub capacity: u64,
    /// Seconds since the last dequeue, `None` if the stream never dequeued.
    pub secs_since_dequeue: Option<f64>,
}

/// A condition message or reason that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable stall condition message: {0}")]
pub struct ConditionParseError(String);

impl fmt::Display for StalledStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {}: {}, {}/{} waiting, ",
            self.stream, self.reason, self.depth, self.capacity
        )?;
        match self.secs_since_dequeue {
            Some(secs) => write!(f, "no dequeue for {secs:.1}s"),
            None => f.write_str("never dequeued"),
        }
    }
}

/// The condition message for these stalled streams, e.g.
/// `stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 12.3s`.
/// Clauses are joined with `; ` and the whole is bounded by [`MAX_MESSAGE_LEN`].
pub fn format_message(stalled: &[StalledStream]) -> String {
    let mut out = String::new();
    for (i, s) in stalled.iter().enumerate() {
        let clause = s.to_string();
        let rest = stalled.len() - i;
        // Leave room for the tail in case this clause is not the last one that fits.
        let tail = format!("; ... and {rest} more");
        let sep = if out.is_empty() { "" } else { "; " };
        if out.len() + sep.len() + clause.len() + tail.len() > MAX_MESSAGE_LEN && rest > 1 {
            out.push_str(if out.is_empty() {
                "... and "
            } else {
                "; ... and "
            });
            out.push_str(&format!("{rest} more"));
            return out;
        }
        out.push_str(sep);
        out.push_str(&clause);
    }
    out
}

/// Parse a message written by [`format_message`]. Returns the clauses it names; a
/// `... and N more` tail is ignored (those streams are still stalled, just not named).
pub fn parse_message(message: &str) -> Result<Vec<StalledStream>, ConditionParseError> {
    let mut out = Vec::new();
    for clause in message.split("; ") {
        let clause = clause.trim();
        if clause.is_empty() || clause.starts_with("... and ") {
            continue;
        }
        out.push(parse_clause(clause)?);
    }
    Ok(out)
}

fn parse_clause(clause: &str) -> Result<StalledStream, ConditionParseError> {
    let err = || ConditionParseError(format!("clause {clause:?}"));
    let rest = clause.strip_prefix("stream ").ok_or_else(err)?;
    let (stream, rest) = rest.split_once(": ").ok_or_else(err)?;
    let mut parts = rest.split(", ");
    let reason: StallReason = parts.next().ok_or_else(err)?.parse()?;
    let waiting = parts.next().ok_or_else(err)?;
    let (depth, capacity) = waiting
        .strip_suffix(" waiting")
        .and_then(|w| w.split_once('/'))
        .ok_or_else(err)?;
    let dequeue = parts.next().ok_or_else(err)?;
    let secs_since_dequeue = if dequeue == "never dequeued" {
        None
    } else {
        let secs = dequeue
            .strip_prefix("no dequeue for ")
            .and_then(|s| s.strip_suffix('s'))
            .ok_or_else(err)?;
        Some(secs.parse::<f64>().map_err(|_| err())?)
    };
    if parts.next().is_some() || !crate::report::is_valid_stream_name(stream) {
        return Err(err());
    }
    Ok(StalledStream {
        stream: stream.to_string(),
        reason,
        depth: depth.parse().map_err(|_| err())?,
        capacity: capacity.parse().map_err(|_| err())?,
        secs_since_dequeue,
    })
}

#[cfg(test)]
mod tests;
