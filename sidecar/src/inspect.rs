//! `transit-sidecar inspect BUNDLE`: what a person needs first from a dump bundle, and the
//! rendering of the broadcaster's task dump into `tasks.txt`.
//!
//! First the per-stream verdicts, depth and dispatcher state; then the smoking gun of the
//! story ("no dispatcher task found for stream X"); then the last quarantined message with its
//! error; then the task stacks grouped like Visual Studio's Parallel Stacks (tasks with
//! identical await-point lists shown once, with a count).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stallwatch_core::bundle::{
    MANIFEST_FILE, Manifest, ProcessDumpOutcome, STATE_FILE, TaskDumpOutcome,
};
use stallwatch_core::condition::StallReason;
use stallwatch_core::report::{DispatcherState, ErrorReport};
use stallwatch_core::taskdump::{QuarantinedMessage, TaskDump, TaskInfo};

use crate::bundles;
use crate::capture::BundleState;
use crate::monitor::HistoryEntry;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} is not a bundle: {message}")]
    NotABundle { path: PathBuf, message: String },
}

/// Tasks with identical stacks, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackGroup {
    pub count: usize,
    /// Task names, sorted.
    pub tasks: Vec<String>,
    /// Await points, outermost first (as in the task dump).
    pub frames: Vec<String>,
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
        fs::read(&path).map_err(|e| InspectError::Read {
            message: e.to_string(),
            path,
        })
    };
    let manifest: Manifest =
        serde_json::from_slice(&read(MANIFEST_FILE)?).map_err(|e| InspectError::NotABundle {
            path: dir.to_owned(),
            message: format!("{MANIFEST_FILE}: {e}"),
        })?;
    let state: BundleState =
        serde_json::from_slice(&read(STATE_FILE)?).map_err(|e| InspectError::NotABundle {
            path: dir.to_owned(),
            message: format!("{STATE_FILE}: {e}"),
        })?;
    let integrity_problems = bundles::verify(dir, &manifest);
    Ok(build_report(dir, manifest, state, integrity_problems))
}

pub fn build_report(
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

/// Group tasks whose await-point lists are identical, largest group first. Frames are
/// compared without tree-drawing decoration, and a root frame naming the task itself
/// (`dispatcher/airport at src/tasks.rs:53`) is compared as `<task> at ...`, so the same code
/// path in different streams' tasks merges, as in Visual Studio's Parallel Stacks.
pub fn group_stacks(tasks: &[TaskInfo]) -> Vec<StackGroup> {
    let mut groups: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
    for t in tasks {
        let key = t
            .frames
            .iter()
            .map(|f| normalize_frame(f, &t.name))
            .collect();
        groups.entry(key).or_default().push(&t.name);
    }
    let mut out: Vec<StackGroup> = groups
        .into_iter()
        .map(|(frames, mut names)| {
            names.sort_unstable();
            StackGroup {
                count: names.len(),
                tasks: names.into_iter().map(str::to_owned).collect(),
                frames,
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.tasks.cmp(&b.tasks)));
    out
}

/// A frame without tree-drawing decoration, with a leading task name replaced by `<task>`.
pub fn normalize_frame(frame: &str, task: &str) -> String {
    let bare = frame.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, '└' | '├' | '╼' | '─' | '│' | '┬' | '╰' | '┼')
    });
    let bare = bare.trim_end();
    match bare.strip_prefix(task) {
        Some(rest) if !task.is_empty() && (rest.is_empty() || rest.starts_with(" at ")) => {
            format!("<task>{rest}")
        }
        _ => bare.to_owned(),
    }
}

fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn write_stacks(out: &mut String, groups: &[StackGroup]) {
    for g in groups {
        let shown: Vec<&str> = g.tasks.iter().take(6).map(String::as_str).collect();
        let more = g.tasks.len().saturating_sub(shown.len());
        let _ = write!(
            out,
            "  {} task{}: {}",
            g.count,
            if g.count == 1 { "" } else { "s" },
            shown.join(", ")
        );
        if more > 0 {
            let _ = write!(out, " and {more} more");
        }
        out.push('\n');
        if g.frames.is_empty() {
            out.push_str("      (no await points recorded)\n");
        }
        // Innermost first, as a debugger shows a stack.
        for (i, f) in g.frames.iter().rev().enumerate() {
            let marker = if i == 0 { "->" } else { "  " };
            let _ = writeln!(out, "    {marker} {f}");
        }
    }
}

/// The human-readable report.
pub fn render(r: &InspectReport) -> String {
    let m = &r.manifest;
    let mut out = String::new();
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

    out.push_str("\nSTREAM                VERDICT                  DEPTH      DISPATCHER  TASK  LAST DEQUEUE\n");
    if r.streams.is_empty() {
        out.push_str("(no streams: the sidecar had no report when the bundle was taken)\n");
    }
    for s in &r.streams {
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
    if !r.stack_groups.is_empty() {
        let tasks: usize = r.stack_groups.iter().map(|g| g.count).sum();
        let _ = writeln!(
            out,
            "\ntask stacks: {tasks} tasks in {} groups (identical stacks merged, innermost frame first)",
            r.stack_groups.len()
        );
        write_stacks(&mut out, &r.stack_groups);
    }
    if !r.history.is_empty() {
        out.push_str("\nrecent verdict changes:\n");
        for h in &r.history {
            let _ = writeln!(out, "  {}  {}  {:?}", utc(h.at_ms), h.stream, h.change);
        }
    }
    if let TaskDumpOutcome::Failed { why } = &m.task_dump
        && r.task_dump_error.is_none()
    {
        let _ = writeln!(out, "task dump failed: {why}");
    }
    out
}

/// `tasks.txt`: the broadcaster's task dump for people, grouped like Parallel Stacks.
pub fn render_task_dump(d: &TaskDump) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} of instance {}, pid {}, captured at {}: {} tasks",
        d.protocol,
        d.instance,
        d.pid,
        utc(d.captured_at_ms),
        d.tasks.len()
    );
    let without = d.streams_without_dispatcher();
    if !without.is_empty() {
        out.push('\n');
        for s in without {
            let _ = writeln!(out, "!! no dispatcher task found for stream {s}");
        }
    }
    out.push_str("\n== streams ==\n");
    for s in &d.streams {
        let _ = writeln!(
            out,
            "  {}: {}/{} waiting, enqueued {}, dequeued {}, dropped {}, quarantined {}, dispatcher {} (restarts {})",
            s.name,
            s.channel.depth,
            s.channel.capacity,
            s.enqueued_total,
            s.dequeued_total,
            s.dropped_oldest_total,
            s.quarantined_total,
            s.dispatcher.state.as_str(),
            s.dispatcher.restarts_total
        );
    }
    out.push_str("\n== task stacks (identical stacks merged, innermost frame first) ==\n");
    write_stacks(&mut out, &group_stacks(&d.tasks));
    if !d.quarantine.is_empty() {
        out.push_str("\n== quarantine (newest last) ==\n");
        for q in &d.quarantine {
            let _ = writeln!(
                out,
                "  {} {} {} ({} bytes): {}",
                utc(q.at_ms),
                q.stream,
                q.kind,
                q.size,
                q.error
            );
        }
    }
    if !d.recent_errors.is_empty() {
        out.push_str("\n== recent errors (newest last) ==\n");
        for e in &d.recent_errors {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                utc(e.at_ms),
                e.stream.as_deref().unwrap_or("-"),
                e.message
            );
        }
    }
    if !d.backtrace.trim().is_empty() {
        out.push_str("\n== runtime backtrace ==\n");
        out.push_str(&d.backtrace);
        if !d.backtrace.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use stallwatch_core::taskdump::TaskKind;

    fn task(name: &str, frames: &[&str]) -> TaskInfo {
        TaskInfo {
            name: name.into(),
            kind: TaskKind::Other,
            stream: None,
            spawned_at_ms: 0,
            frames: frames.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn identical_stacks_are_grouped_with_counts() {
        let tasks = vec![
            task(
                "supervisor/b",
                &[
                    "╼ supervisor/b at src/tasks.rs:53:58",
                    "   └╼ supervise at src/dispatcher.rs:190:1",
                ],
            ),
            task(
                "supervisor/a",
                &[
                    "╼ supervisor/a at src/tasks.rs:53:58",
                    "   └╼ supervise at src/dispatcher.rs:190:1",
                ],
            ),
            task(
                "dispatcher/a",
                &[
                    "╼ dispatcher/a at src/tasks.rs:53:58",
                    "   └╼ recv at src/channel.rs:126:5",
                ],
            ),
            task(
                "dispatcher/b",
                &[
                    "╼ dispatcher/b at src/tasks.rs:53:58",
                    "   └╼ hang_forever at src/dispatcher.rs:112:1",
                ],
            ),
            task("server/grpc", &[]),
            task("server/http", &[]),
            task(
                "reporter",
                &[
                    "╼ reporter at src/tasks.rs:53:58",
                    "  └╼ transit::reporter::run_reporter at src/reporter.rs:46",
                ],
            ),
        ];
        let groups = group_stacks(&tasks);
        let summary: Vec<(usize, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.count, g.tasks.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (2, vec!["server/grpc", "server/http"]),
                (2, vec!["supervisor/a", "supervisor/b"]),
                (1, vec!["dispatcher/a"]),
                (1, vec!["dispatcher/b"]),
                (1, vec!["reporter"]),
            ]
        );
        assert_eq!(
            groups[1].frames,
            vec![
                "<task> at src/tasks.rs:53:58",
                "supervise at src/dispatcher.rs:190:1"
            ]
        );
        // Only a leading task name is replaced, not the same word inside a path.
        assert_eq!(
            groups[4].frames[1],
            "transit::reporter::run_reporter at src/reporter.rs:46"
        );
        let mut out = String::new();
        write_stacks(&mut out, &groups);
        assert!(out.contains("2 tasks: supervisor/a, supervisor/b\n    -> supervise at src/dispatcher.rs:190:1\n       <task> at src/tasks.rs:53:58\n"), "{out}");
        assert!(out.contains("(no await points recorded)"), "{out}");
    }

    #[test]
    fn large_groups_are_abbreviated() {
        let tasks: Vec<_> = (0..10)
            .map(|i| task(&format!("subscriber/{i}"), &["recv"]))
            .collect();
        let mut out = String::new();
        write_stacks(&mut out, &group_stacks(&tasks));
        assert!(
            out.starts_with("  10 tasks: subscriber/0, subscriber/1"),
            "{out}"
        );
        assert!(out.contains(" and 4 more\n"), "{out}");
    }
}
