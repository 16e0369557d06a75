//! The broadcaster's task dump for people: `tasks.txt` in every bundle, and the stack groups
//! `inspect` prints. Tasks with identical await-point lists are shown once, with a count, like
//! Visual Studio's Parallel Stacks.
//!
//! Its own module because both `capture` (writing `tasks.txt`) and `inspect`
//! (reading a bundle back) need it; it imports neither.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use stallwatch_core::taskdump::{TaskDump, TaskInfo};

/// Tasks with identical stacks, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackGroup {
    pub count: usize,
    /// Task names, sorted.
    pub tasks: Vec<String>,
    /// Await points, outermost first (as in the task dump).
    pub frames: Vec<String>,
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

pub(crate) fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

pub(crate) fn write_stacks(out: &mut String, groups: &[StackGroup]) {
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

#[cfg(test)]
mod tests;
