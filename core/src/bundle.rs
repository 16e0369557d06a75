//! Dump bundles: the manifest every bundle carries, where bundles live, and which to delete.
//!
//! A bundle is one directory on the dump volume,
//! `<root>/<namespace>/<pod>/<UTC timestamp>-<stream>-<reason>/`, holding `manifest.json`
//! ([`Manifest`]), `state.json`, `tasks.txt` and, where allowed, a process dump. The sidecar
//! writes it (atomically: a hidden temporary directory renamed into place), the operator
//! records the paths it is told about, and `transit-sidecar inspect` reads it back. The types
//! here are the on-disk and on-the-wire contract, so fields are only ever added, with serde
//! defaults.
//!
//! Pure: naming and the retention plan are computed here, the file system work is the
//! sidecar's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::condition::StallReason;
use crate::verdict::Verdict;

/// The value of [`Manifest::format`].
pub const BUNDLE_V1: &str = "stallwatch.bundle.v1";
/// File names inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The sidecar's state at capture time: reports, verdicts, the raw task dump (JSON).
pub const STATE_FILE: &str = "state.json";
/// The broadcaster's task dump, rendered for reading.
pub const TASKS_FILE: &str = "tasks.txt";
/// Zero-code mode's stand-in for `tasks.txt`: the mapped series of the last scrapes.
pub const SCRAPES_FILE: &str = "scrapes.txt";
/// A minidump of the broadcaster process.
pub const MINIDUMP_FILE: &str = "broadcaster.dmp";
/// A full core dump of the broadcaster process.
pub const CORE_FILE: &str = "broadcaster.core";
/// Directories being written start with this prefix; they never count as bundles.
pub const TEMP_PREFIX: &str = ".tmp-";
/// The stream part of the name of a bundle not about one stream.
pub const NO_STREAM: &str = "pod";
/// The reason part of the name of a bundle requested without a stall reason.
pub const NO_REASON: &str = "manual";

/// `manifest.json`: what a bundle is about and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`BUNDLE_V1`].
    pub format: String,
    /// The bundle directory's name, e.g. `20261128T021503.042Z-downtown-ChannelStuck`.
    pub id: String,
    /// Absolute path of the bundle directory as the sidecar sees it.
    pub path: String,
    /// Versions of the programs and formats involved.
    pub versions: Versions,
    /// The pod the bundle is from.
    pub pod: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The node the pod ran on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The stream the capture is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Why it was captured: the stall reason, if any (absent for a manual capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StallReason>,
    /// The stream's verdict at capture time (absent when no stream was named or known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Who asked: `operator`, `sidecar` (dump on stall), a person's name.
    pub requested_by: String,
    /// Wall clock of the request, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// How long each step of the capture took.
    pub timings: CaptureTimings,
    /// Every file of the bundle except `manifest.json` itself.
    pub files: Vec<BundleFile>,
    /// Whether the task dump made it into the bundle.
    pub task_dump: TaskDumpOutcome,
    /// Whether a process dump made it into the bundle, and if not, why not.
    pub process_dump: ProcessDumpOutcome,
}

/// The versions a bundle was written with, so that a reader knows what it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// e.g. `transit-sidecar 0.1.0`.
    pub sidecar: String,
    /// The broadcaster's self-reported `version`, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcaster: Option<String>,
    /// The broadcaster's `instance` of the last accepted report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcaster_instance: Option<String>,
    /// The report protocol, [`crate::report::PROTOCOL_V1`].
    pub report_protocol: String,
    /// The bundle format, [`BUNDLE_V1`].
    pub bundle_format: String,
}

/// How long each step of the capture took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureTimings {
    /// Fetching the broadcaster's task dump.
    pub task_dump_ms: u64,
    /// Writing the process dump (0 when none was taken).
    pub process_dump_ms: u64,
    /// Writing and fsyncing the other files.
    pub write_ms: u64,
    /// From the request until the manifest was written (the rename follows).
    pub total_ms: u64,
}

/// One file of a bundle, with what checks its integrity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// A plain file name inside the bundle directory.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file's contents.
    pub sha256: String,
}

/// Whether the broadcaster's in-process task dump made it into `tasks.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TaskDumpOutcome {
    /// Fetched and stored (rendered in `tasks.txt`, raw in `state.json`).
    Fetched {
        /// Tasks in the dump.
        tasks: u64,
    },
    /// Could not be fetched (timeout, refused, unparsable); `tasks.txt` says so too.
    Failed {
        /// What went wrong.
        why: String,
    },
    /// Not asked for: a metrics-only app (zero-code mode) has no task dump; `scrapes.txt`
    /// holds what it gives instead.
    NotApplicable {
        /// Why there is none.
        why: String,
    },
}

/// Which kind of process dump a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessDumpKind {
    /// A minidump ([`MINIDUMP_FILE`]).
    Minidump,
    /// A full core dump ([`CORE_FILE`]).
    Core,
}

/// Whether a process dump of the broadcaster is in the bundle, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProcessDumpOutcome {
    /// Written into the bundle.
    Written {
        /// Which kind.
        kind: ProcessDumpKind,
        /// Its file name inside the bundle.
        file: String,
        /// Its size.
        bytes: u64,
        /// Threads captured; never 0 (a zero-thread minidump is reported as `failed`).
        threads: u64,
    },
    /// Not attempted: disabled by configuration or not permitted here (`why` says which).
    Skipped {
        /// Why it was not attempted.
        why: String,
    },
    /// Attempted and failed.
    Failed {
        /// What went wrong.
        why: String,
    },
}

impl ProcessDumpOutcome {
    /// A stable label for metrics: `written`, `skipped`, `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            ProcessDumpOutcome::Written { .. } => "written",
            ProcessDumpOutcome::Skipped { .. } => "skipped",
            ProcessDumpOutcome::Failed { .. } => "failed",
        }
    }
}

/// One entry of the sidecar's `GET /v1/dumps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSummary {
    /// Absolute path of the bundle directory as the sidecar sees it.
    pub path: String,
    /// Wall clock of the request, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Sum of the sizes of the bundle's files, the manifest included.
    pub bytes: u64,
    /// The stream the capture is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The stall reason, if any (absent for a manual capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StallReason>,
}

/// The body of `GET /v1/dumps`, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleList {
    /// Every complete bundle of the pod, newest last.
    pub bundles: Vec<BundleSummary>,
}

/// The body of `POST /v1/dumps` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpRequest {
    /// The stream to capture (default: none, a capture about the whole pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The stall reason the capture is about (default: none, a manual capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StallReason>,
    /// Who asks (default: the sidecar's name for the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// A path component that cannot escape its parent: no separators, not `.`/`..`, not hidden.
/// Kubernetes names (DNS subdomains) always pass.
pub fn is_safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The directory holding one pod's bundles: `<root>/<namespace>/<pod>`.
/// `None` if either name is not a safe path component.
pub fn pod_dir(root: &Path, namespace: &str, pod: &str) -> Option<PathBuf> {
    (is_safe_component(namespace) && is_safe_component(pod)).then(|| root.join(namespace).join(pod))
}

/// A bundle directory's name: `<UTC timestamp>-<stream>-<reason>`, e.g.
/// `20261128T021503.042Z-downtown-ChannelStuck`. Names sort by time. The stream must be a
/// valid stream name (callers validate it), else [`NO_STREAM`] is used.
pub fn bundle_name(
    created_at_ms: u64,
    stream: Option<&str>,
    reason: Option<StallReason>,
) -> String {
    let stream = stream
        .filter(|s| crate::report::is_valid_stream_name(s))
        .unwrap_or(NO_STREAM);
    let reason = reason.map(StallReason::as_str).unwrap_or(NO_REASON);
    format!("{}-{stream}-{reason}", utc_timestamp(created_at_ms))
}

/// What a bundle's name says, for listing a directory without reading every manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    /// The capture's wall clock, ms since the Unix epoch (to the millisecond of the name).
    pub created_at_ms: u64,
    /// The stream part, unless it is [`NO_STREAM`].
    pub stream: Option<String>,
    /// The reason part, unless it is [`NO_REASON`] or unknown.
    pub reason: Option<StallReason>,
}

/// Parse a name made by [`bundle_name`] (possibly with a `-N` collision suffix).
pub fn parse_bundle_name(name: &str) -> Option<ParsedName> {
    let (ts, rest) = name.split_once('-')?;
    let created_at_ms = parse_utc_timestamp(ts)?;
    // The stream may contain '-', the reason cannot, a collision suffix is digits.
    let mut parts: Vec<&str> = rest.rsplitn(3, '-').collect();
    parts.reverse();
    let (stream, reason) = match parts.as_slice() {
        [stream, reason, n] if n.bytes().all(|b| b.is_ascii_digit()) && is_reason_token(reason) => {
            (*stream, *reason)
        }
        _ => rest.rsplit_once('-')?,
    };
    if !is_reason_token(reason) || !crate::report::is_valid_stream_name(stream) {
        return None;
    }
    Some(ParsedName {
        created_at_ms,
        stream: (stream != NO_STREAM).then(|| stream.to_string()),
        reason: reason.parse().ok(),
    })
}

fn is_reason_token(s: &str) -> bool {
    s == NO_REASON || s.parse::<StallReason>().is_ok()
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC.
pub fn utc_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

fn parse_utc_timestamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss, millis) = (num(9..11)?, num(11..13)?, num(13..15)?, num(16..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    let days = u64::try_from(days).ok()?;
    let ms = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + millis;
    // Reject dates like Feb 31 that do not round-trip.
    (utc_timestamp(ms) == s).then_some(ms)
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian, days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Limits on what one pod's bundles may occupy (`--max-bundles`, `--max-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// At most this many bundles are kept.
    pub max_bundles: usize,
    /// At most this many bytes of bundles are kept.
    pub max_bytes: u64,
}

/// A complete bundle as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedBundle {
    /// The bundle directory's name.
    pub name: String,
    /// Its capture's wall clock, ms since the Unix epoch (oldest go first).
    pub created_at_ms: u64,
    /// Its size on disk.
    pub bytes: u64,
}

/// Which bundles to delete, oldest first, so that at most `max_bundles` remain and they
/// occupy at most `max_bytes`. The newest bundle is always kept, even when it alone exceeds
/// `max_bytes` (deleting the evidence just captured helps nobody); with `max_bundles == 0`
/// nothing is kept.
pub fn plan_retention(bundles: &[RetainedBundle], policy: RetentionPolicy) -> Vec<String> {
    let mut sorted: Vec<&RetainedBundle> = bundles.iter().collect();
    sorted.sort_by(|a, b| {
        (a.created_at_ms, a.name.as_str()).cmp(&(b.created_at_ms, b.name.as_str()))
    });
    if policy.max_bundles == 0 {
        return sorted.into_iter().map(|b| b.name.clone()).collect();
    }
    let mut count = sorted.len();
    let mut bytes: u64 = sorted.iter().map(|b| b.bytes).fold(0, u64::saturating_add);
    let mut delete = Vec::new();
    for b in &sorted {
        if count <= 1 || (count <= policy.max_bundles && bytes <= policy.max_bytes) {
            break;
        }
        delete.push(b.name.clone());
        count -= 1;
        bytes = bytes.saturating_sub(b.bytes);
    }
    delete
}

#[cfg(test)]
mod tests;
