//! The broadcaster's in-process diagnostic dump, `stallwatch.taskdump.v1`.
//!
//! Served by the broadcaster on its loopback admin address (`GET /debug/dump`) and stored by
//! the sidecar as `tasks.txt` (rendered) and inside `state.json` (raw) in a dump bundle. It
//! answers the question the story needed a memory dump for: which tasks exist, where each is
//! awaiting, and which stream has no reader.

use serde::{Deserialize, Serialize};

use crate::report::StreamReport;

/// The value of [`TaskDump::protocol`].
pub const TASKDUMP_V1: &str = "stallwatch.taskdump.v1";

/// The broadcaster's in-process task dump (`GET /debug/dump`): its tasks, its streams' state,
/// quarantined messages and recent errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDump {
    /// Always [`TASKDUMP_V1`].
    pub protocol: String,
    /// The broadcaster instance (as in its reports).
    pub instance: String,
    /// The broadcaster's process id.
    pub pid: u32,
    /// Wall clock of the capture, ms since the Unix epoch.
    pub captured_at_ms: u64,
    /// Every long-lived task the broadcaster registered that still exists.
    pub tasks: Vec<TaskInfo>,
    /// Free-form async backtrace of the whole runtime, if the broadcaster can produce one.
    #[serde(default)]
    pub backtrace: String,
    /// The same per-stream state a report carries, captured at dump time.
    pub streams: Vec<StreamReport>,
    /// The most recent quarantined messages, newest last, bounded per stream.
    pub quarantine: Vec<QuarantinedMessage>,
    /// Recent errors of any kind (dispatcher deaths, source failures), newest last.
    pub recent_errors: Vec<ErrorRecord>,
}

/// One long-lived task of the broadcaster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// e.g. `dispatcher/downtown`, `source/synthetic`, `reporter`.
    pub name: String,
    /// What the task is for.
    pub kind: TaskKind,
    /// The stream it serves, if it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Wall clock of its spawn, ms since the Unix epoch.
    pub spawned_at_ms: u64,
    /// Await points, outermost first (e.g. `dispatcher::run at src/dispatch.rs:80`).
    #[serde(default)]
    pub frames: Vec<String>,
}

/// What a task is for; the sidecar looks for a stream's `Dispatcher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Reads the feed source.
    Source,
    /// A stream's dispatcher.
    Dispatcher,
    /// Restarts a stream's dispatcher when it ends.
    Supervisor,
    /// Sends reports to the sidecar.
    Reporter,
    /// Serves one subscriber.
    Subscriber,
    /// A listener's server (gRPC, HTTP).
    Server,
    /// Anything else.
    Other,
}

/// A message (or entity) set aside instead of published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedMessage {
    /// The stream that set it aside.
    pub stream: String,
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// `decode` (the whole message), `entity` (one entity of it) or `panic`.
    pub kind: String,
    /// Why it was set aside.
    pub error: String,
    /// The first bytes of the offending input, hex-encoded, at most 256 bytes of input.
    pub excerpt_hex: String,
    /// Total size of the offending input in bytes.
    pub size: u64,
}

/// An error the broadcaster met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The stream it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// One line.
    pub message: String,
}

impl TaskDump {
    /// Streams that have no dispatcher task in this dump: the story's smoking gun.
    pub fn streams_without_dispatcher(&self) -> Vec<&str> {
        self.streams
            .iter()
            .map(|s| s.name.as_str())
            .filter(|name| {
                !self
                    .tasks
                    .iter()
                    .any(|t| t.kind == TaskKind::Dispatcher && t.stream.as_deref() == Some(name))
            })
            .collect()
    }
}
