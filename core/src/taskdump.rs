//! The broadcaster's in-process diagnostic dump, `stallwatch.taskdump.v1`.
//!
//! Served by the broadcaster on its loopback admin address (`GET /debug/dump`) and stored by
//! the sidecar as `tasks.txt` (rendered) and inside `state.json` (raw) in a dump bundle. It
//! answers the question the story needed a memory dump for: which tasks exist, where each is
//! awaiting, and which stream has no reader.

use serde::{Deserialize, Serialize};

use crate::report::StreamReport;

pub const TASKDUMP_V1: &str = "stallwatch.taskdump.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDump {
    /// Always [`TASKDUMP_V1`].
    pub protocol: String,
    pub instance: String,
    pub pid: u32,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// e.g. `dispatcher/downtown`, `source/synthetic`, `reporter`.
    pub name: String,
    pub kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub spawned_at_ms: u64,
    /// Await points, outermost first (e.g. `dispatcher::run at src/dispatch.rs:80`).
    #[serde(default)]
    pub frames: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Source,
    Dispatcher,
    Supervisor,
    Reporter,
    Subscriber,
    Server,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedMessage {
    pub stream: String,
    pub at_ms: u64,
    /// `decode` (the whole message), `entity` (one entity of it) or `panic`.
    pub kind: String,
    pub error: String,
    /// The first bytes of the offending input, hex-encoded, at most 256 bytes of input.
    pub excerpt_hex: String,
    /// Total size of the offending input in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub at_ms: u64,
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
