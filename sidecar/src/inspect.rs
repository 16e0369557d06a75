//! `transit-sidecar inspect BUNDLE`: what a person needs first from a dump bundle.
//!
//! First the per-stream verdicts, depth and dispatcher state; then the smoking gun of the
//! story ("no dispatcher task found for stream X"); then the last quarantined message with its
//! error; then the task stacks grouped like Visual Studio's Parallel Stacks (grouping and
//! stack rendering live in `taskdump_render`, shared with `tasks.txt`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stallwatch_core::bundle::{
    MANIFEST_FILE, Manifest, ProcessDumpOutcome, STATE_FILE, TaskDumpOutcome,
};
use stallwatch_core::condition::StallReason;
use stallwatch_core::report::{DispatcherState, ErrorReport};
use stallwatch_core::taskdump::{QuarantinedMessage, TaskDump};

use crate::bundles;
use crate::capture::BundleState;
use crate::monitor::HistoryEntry;
pub use crate::taskdump_render::StackGroup;
use crate::taskdump_render::{group_stacks, utc, write_stacks};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a bundle: {file}: {source}")]
    NotABundle {
        path: PathBuf,
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub name: String,
    pub verdict: String,
    pub reason: Option<StallReason>,
    pub depth: u64,
    pub capacity: u64,
    pub dispatcher: DispatcherState,
    /// Whether the task dump holds a dispatcher task for this stream (`None`: no task dump).
    pub dispatcher_task_found: Option<bool>,
    pub secs_since_dequeue: Option<f64>,
    pub last_error: Option<ErrorReport>,
    pub quarantined_total: Option<u64>,
}

/// Everything `inspect` prints, for `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectReport {
    pub bundle: String,
    pub manifest: Manifest,
    /// Files that are missing or do not match the manifest.
    pub integrity_problems: Vec<String>,
    pub streams: Vec<StreamSummary>,
    pub streams_without_dispatcher: Vec<String>,
    pub last_quarantined: Option<QuarantinedMessage>,
    pub stack_groups: Vec<StackGroup>,
    pub task_dump_error: Option<String>,
    /// The most recent verdict changes, oldest first.
    pub history: Vec<HistoryEntry>,
}

pub fn load(dir: &Path) -> Result<InspectReport, InspectError> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read(&path).map_err(|source| InspectError::Read { path, source })
    };
    let manifest: Manifest = serde_json::from_slice(&read(MANIFEST_FILE)?).map_err(|source| {
        InspectError::NotABundle {
            path: dir.to_owned(),
            file: MANIFEST_FILE,
            source,
        }
    })?;
    let state: BundleState =
        serde_json::from_slice(&read(STATE_FILE)?).map_err(|source| InspectError::NotABundle {
            path: dir.to_owned(),
            file: STATE_FILE,
            source,
        })?;
    let integrity_problems = bundles::verify(dir, &manifest);
    Ok(build_report(dir, manifest, state, integrity_problems))
}

pub(crate) fn build_report(
    dir: &Path,
    manifest: Manifest,
    state: BundleState,
    integrity_problems: Vec<String>,
) -> InspectReport {
    let dump = state.task_dump.as_ref();
    let last_report = state.recent_reports.last().map(|r| &r.report);
    let without: Vec<String> = match dump {
        Some(d) => {
            let mut names: Vec<String> = d
                .streams_without_dispatcher()
                .into_iter()
                .map(str::to_owned)
                .collect();
            // Streams the sidecar knows that the dump does not even list.
            for s in &state.status.streams {
                if !d.streams.iter().any(|x| x.name == s.name) && !has_dispatcher(d, &s.name) {
                    names.push(s.name.clone());
                }
            }
            names.sort();
            names.dedup();
            names
        }
        None => Vec::new(),
    };
    let streams = state
        .status
        .streams
        .iter()
        .map(|s| {
            let reported = last_report.and_then(|r| r.stream(&s.name));
            let dumped = dump.and_then(|d| d.streams.iter().find(|x| x.name == s.name));
            StreamSummary {
                name: s.name.clone(),
                verdict: s.verdict.clone(),
                reason: s.reason,
                depth: s.depth,
                capacity: s.capacity,
                dispatcher: s.dispatcher,
                dispatcher_task_found: dump.map(|d| has_dispatcher(d, &s.name)),
                secs_since_dequeue: s.secs_since_dequeue,
                last_error: dumped
                    .and_then(|d| d.last_error.clone())
                    .or_else(|| reported.and_then(|r| r.last_error.clone()))
                    // An error nothing reported (the story's swallowed exception) may still
                    // sit in the dump's error log.
                    .or_else(|| dump.and_then(|d| last_recorded_error(d, &s.name))),
                quarantined_total: dumped.or(reported).map(|r| r.quarantined_total),
            }
        })
        .collect();
    let last_quarantined = dump.and_then(|d| d.quarantine.iter().max_by_key(|q| q.at_ms).cloned());
    let stack_groups = dump.map(|d| group_stacks(&d.tasks)).unwrap_or_default();
    let history_tail = state.history.len().saturating_sub(10);
    InspectReport {
        bundle: dir.display().to_string(),
        manifest,
        integrity_problems,
        streams,
        streams_without_dispatcher: without,
        last_quarantined,
        stack_groups,
        task_dump_error: state.task_dump_error,
        history: state.history[history_tail..].to_vec(),
    }
}

fn last_recorded_error(d: &TaskDump, stream: &str) -> Option<ErrorReport> {
    d.recent_errors
        .iter()
        .filter(|e| e.stream.as_deref() == Some(stream))
        .max_by_key(|e| e.at_ms)
        .map(|e| ErrorReport {
            at_ms: e.at_ms,
            message: e.message.clone(),
        })
}

fn has_dispatcher(d: &TaskDump, stream: &str) -> bool {
    d.tasks.iter().any(|t| {
        t.kind == stallwatch_core::taskdump::TaskKind::Dispatcher
            && t.stream.as_deref() == Some(stream)
    })
}

/// The human-readable report: what the bundle is, the stream table, what is wrong, the stacks.
pub fn render(r: &InspectReport) -> String {
    let mut out = String::new();
    write_header(&mut out, r);
    write_stream_table(&mut out, &r.streams);
    write_findings(&mut out, r);
    write_stacks_and_history(&mut out, r);
    out
}

/// Which bundle, pod, capture, versions, process dump and file integrity.
fn write_header(out: &mut String, r: &InspectReport) {
    let m = &r.manifest;
    let _ = writeln!(out, "bundle   {}", r.bundle);
    let _ = writeln!(
        out,
        "pod      {}/{}{}",
        m.namespace,
        m.pod,
        m.node
            .as_deref()
            .map(|n| format!(" on node {n}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "captured {} by {}{}{}",
        utc(m.created_at_ms),
        m.requested_by,
        m.stream
            .as_deref()
            .map(|s| format!(", stream {s}"))
            .unwrap_or_default(),
        m.reason
            .map(|s| format!(", reason {s}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "versions {}; broadcaster {}",
        m.versions.sidecar,
        m.versions.broadcaster.as_deref().unwrap_or("unknown")
    );
    match &m.process_dump {
        ProcessDumpOutcome::Written {
            kind,
            file,
            bytes,
            threads,
        } => {
            let _ = writeln!(
                out,
                "process  {kind:?} {file}: {bytes} bytes, {threads} threads"
            );
        }
        ProcessDumpOutcome::Skipped { why } => {
            let _ = writeln!(out, "process  dump not taken: {why}");
        }
        ProcessDumpOutcome::Failed { why } => {
            let _ = writeln!(out, "process  dump FAILED: {why}");
        }
    }
    if r.integrity_problems.is_empty() {
        let _ = writeln!(
            out,
            "files    {} verified against the manifest",
            m.files.len()
        );
    } else {
        for p in &r.integrity_problems {
            let _ = writeln!(out, "files    PROBLEM: {p}");
        }
    }
}

/// One line per stream: verdict, depth, dispatcher, whether its task was found.
fn write_stream_table(out: &mut String, streams: &[StreamSummary]) {
    out.push_str("\nSTREAM                VERDICT                  DEPTH      DISPATCHER  TASK  LAST DEQUEUE\n");
    if streams.is_empty() {
        out.push_str("(no streams: the sidecar had no report when the bundle was taken)\n");
    }
    for s in streams {
        let verdict = match s.reason {
            Some(reason) => format!("{} ({reason})", s.verdict),
            None => s.verdict.clone(),
        };
        let task = match s.dispatcher_task_found {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "?",
        };
        let dequeue = s
            .secs_since_dequeue
            .map(|x| format!("{x:.1}s ago"))
            .unwrap_or_else(|| "never".to_owned());
        let _ = writeln!(
            out,
            "{:<21} {:<24} {:<10} {:<11} {:<5} {}",
            s.name,
            verdict,
            format!("{}/{}", s.depth, s.capacity),
            s.dispatcher.as_str(),
            task,
            dequeue
        );
    }
    out.push('\n');
}

/// The smoking guns: streams without a dispatcher, last errors, the last quarantined message.
fn write_findings(out: &mut String, r: &InspectReport) {
    for name in &r.streams_without_dispatcher {
        let _ = writeln!(out, "!! no dispatcher task found for stream {name}");
    }
    if let Some(e) = &r.task_dump_error {
        let _ = writeln!(out, "!! task dump unavailable: {e}");
    }
    for s in &r.streams {
        if let Some(e) = &s.last_error {
            let _ = writeln!(
                out,
                "last error on {} at {}: {}",
                s.name,
                utc(e.at_ms),
                e.message
            );
        }
    }
    match &r.last_quarantined {
        Some(q) => {
            let _ = writeln!(
                out,
                "\nlast quarantined message: stream {} at {} ({}, {} bytes)\n  error:   {}\n  excerpt: {}",
                q.stream,
                utc(q.at_ms),
                q.kind,
                q.size,
                q.error,
                stallwatch_core::report::truncate(&q.excerpt_hex, 128)
            );
        }
        None => out.push_str("\nno quarantined messages in the task dump\n"),
    }
}

/// The grouped task stacks, recent verdict changes and a failed task dump's reason.
fn write_stacks_and_history(out: &mut String, r: &InspectReport) {
    if !r.stack_groups.is_empty() {
        let tasks: usize = r.stack_groups.iter().map(|g| g.count).sum();
        let _ = writeln!(
            out,
            "\ntask stacks: {tasks} tasks in {} groups (identical stacks merged, innermost frame first)",
            r.stack_groups.len()
        );
        write_stacks(out, &r.stack_groups);
    }
    if !r.history.is_empty() {
        out.push_str("\nrecent verdict changes:\n");
        for h in &r.history {
            let _ = writeln!(out, "  {}  {}  {:?}", utc(h.at_ms), h.stream, h.change);
        }
    }
    if let TaskDumpOutcome::Failed { why } = &r.manifest.task_dump
        && r.task_dump_error.is_none()
    {
        let _ = writeln!(out, "task dump failed: {why}");
    }
}
