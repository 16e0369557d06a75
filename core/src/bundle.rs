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
pub const STATE_FILE: &str = "state.json";
pub const TASKS_FILE: &str = "tasks.txt";
pub const MINIDUMP_FILE: &str = "broadcaster.dmp";
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
    pub versions: Versions,
    pub pod: String,
    pub namespace: String,
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
    pub timings: CaptureTimings,
    /// Every file of the bundle except `manifest.json` itself.
    pub files: Vec<BundleFile>,
    pub task_dump: TaskDumpOutcome,
    pub process_dump: ProcessDumpOutcome,
}

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
    pub task_dump_ms: u64,
    pub process_dump_ms: u64,
    /// Writing and fsyncing the other files.
    pub write_ms: u64,
    /// From the request until the manifest was written (the rename follows).
    pub total_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// A plain file name inside the bundle directory.
    pub name: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file's contents.
    pub sha256: String,
}

/// Whether the broadcaster's in-process task dump made it into `tasks.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TaskDumpOutcome {
    /// Fetched and stored (rendered in `tasks.txt`, raw in `state.json`).
    Fetched { tasks: u64 },
    /// Could not be fetched (timeout, refused, unparsable); `tasks.txt` says so too.
    Failed { why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessDumpKind {
    Minidump,
    Core,
}

/// Whether a process dump of the broadcaster is in the bundle, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProcessDumpOutcome {
    Written {
        kind: ProcessDumpKind,
        file: String,
        bytes: u64,
        /// Threads captured; never 0 (a zero-thread minidump is reported as `failed`).
        threads: u64,
    },
    /// Not attempted: disabled by configuration or not permitted here (`why` says which).
    Skipped { why: String },
    /// Attempted and failed.
    Failed { why: String },
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
    pub path: String,
    pub created_at_ms: u64,
    /// Sum of the sizes of the bundle's files, the manifest included.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StallReason>,
}

/// The body of `GET /v1/dumps`, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleList {
    pub bundles: Vec<BundleSummary>,
}

/// The body of `POST /v1/dumps` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StallReason>,
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
    pub created_at_ms: u64,
    pub stream: Option<String>,
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
    pub max_bundles: usize,
    pub max_bytes: u64,
}

/// A complete bundle as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedBundle {
    pub name: String,
    pub created_at_ms: u64,
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
mod tests {
    use super::*;

    fn sample_manifest() -> Manifest {
        Manifest {
            format: BUNDLE_V1.into(),
            id: "20261128T021503.042Z-downtown-ChannelStuck".into(),
            path: "/dumps/transit/bc-0/20261128T021503.042Z-downtown-ChannelStuck".into(),
            versions: Versions {
                sidecar: "transit-sidecar 0.1.0".into(),
                broadcaster: Some("transit-broadcaster 0.1.0".into()),
                broadcaster_instance: Some("7f3c".into()),
                report_protocol: crate::report::PROTOCOL_V1.into(),
                bundle_format: BUNDLE_V1.into(),
            },
            pod: "bc-0".into(),
            namespace: "transit".into(),
            node: Some("node-1".into()),
            stream: Some("downtown".into()),
            reason: Some(StallReason::ChannelStuck),
            verdict: Some(Verdict::Stalled {
                reason: StallReason::ChannelStuck,
            }),
            requested_by: "operator".into(),
            created_at_ms: 1_795_837_200_250,
            timings: CaptureTimings {
                task_dump_ms: 12,
                process_dump_ms: 0,
                write_ms: 3,
                total_ms: 16,
            },
            files: vec![BundleFile {
                name: STATE_FILE.into(),
                bytes: 10,
                sha256: "00".repeat(32),
            }],
            task_dump: TaskDumpOutcome::Fetched { tasks: 9 },
            process_dump: ProcessDumpOutcome::Skipped {
                why: "--process-dump none".into(),
            },
        }
    }

    #[test]
    fn manifest_json_shape_is_stable() {
        let v = serde_json::to_value(sample_manifest()).unwrap();
        assert_eq!(v["format"], "stallwatch.bundle.v1");
        assert_eq!(v["reason"], "ChannelStuck");
        assert_eq!(v["verdict"]["verdict"], "stalled");
        assert_eq!(v["task_dump"]["outcome"], "fetched");
        assert_eq!(v["process_dump"]["outcome"], "skipped");
        assert_eq!(v["process_dump"]["why"], "--process-dump none");
        assert_eq!(v["files"][0]["sha256"].as_str().unwrap().len(), 64);
        let back: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample_manifest());
    }

    #[test]
    fn manifest_tolerates_absent_optionals() {
        let mut m = sample_manifest();
        m.node = None;
        m.stream = None;
        m.reason = None;
        m.verdict = None;
        m.process_dump = ProcessDumpOutcome::Written {
            kind: ProcessDumpKind::Minidump,
            file: MINIDUMP_FILE.into(),
            bytes: 70_000,
            threads: 12,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains("\"node\""), "{json}");
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        assert_eq!(m.process_dump.label(), "written");
    }

    #[test]
    fn dump_request_is_all_optional_and_strict() {
        assert_eq!(
            serde_json::from_str::<DumpRequest>("{}").unwrap(),
            DumpRequest::default()
        );
        let r: DumpRequest = serde_json::from_str(
            r#"{"stream":"downtown","reason":"ChannelStuck","requested_by":"operator"}"#,
        )
        .unwrap();
        assert_eq!(r.reason, Some(StallReason::ChannelStuck));
        assert!(serde_json::from_str::<DumpRequest>(r#"{"reason":"Bored"}"#).is_err());
        assert!(serde_json::from_str::<DumpRequest>(r#"{"strem":"x"}"#).is_err());
    }

    #[test]
    fn timestamps_are_utc_and_round_trip() {
        assert_eq!(utc_timestamp(0), "19700101T000000.000Z");
        // 2026-11-28T02:15:03.042Z
        let ms = 1_795_832_103_042;
        assert_eq!(utc_timestamp(ms), "20261128T021503.042Z");
        assert_eq!(parse_utc_timestamp("20261128T021503.042Z"), Some(ms));
        assert_eq!(utc_timestamp(951_782_400_000), "20000229T000000.000Z");
        for bad in [
            "20260231T000000.000Z",
            "20261128T251503.042Z",
            "20261128 021503.042Z",
            "2026112T021503.042Z",
            "2026+128T021503.042Z",
        ] {
            assert_eq!(parse_utc_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_say_when_what_and_why() {
        let ms = 1_795_832_103_042;
        let n = bundle_name(ms, Some("north-7"), Some(StallReason::DispatcherDead));
        assert_eq!(n, "20261128T021503.042Z-north-7-DispatcherDead");
        assert_eq!(
            parse_bundle_name(&n),
            Some(ParsedName {
                created_at_ms: ms,
                stream: Some("north-7".into()),
                reason: Some(StallReason::DispatcherDead)
            })
        );
        let n = bundle_name(ms, None, None);
        assert_eq!(n, "20261128T021503.042Z-pod-manual");
        assert_eq!(
            parse_bundle_name(&n),
            Some(ParsedName {
                created_at_ms: ms,
                stream: None,
                reason: None
            })
        );
        // Invalid stream names never reach the file system.
        assert_eq!(
            bundle_name(ms, Some("../etc"), None),
            "20261128T021503.042Z-pod-manual"
        );
        // Collision suffix.
        let parsed = parse_bundle_name("20261128T021503.042Z-a-b-ChannelStuck-2").unwrap();
        assert_eq!(parsed.stream.as_deref(), Some("a-b"));
        assert_eq!(parsed.reason, Some(StallReason::ChannelStuck));
        for bad in [
            ".tmp-20261128T021503.042Z-a-manual",
            "20261128T021503.042Z-a-Exploded",
            "20261128T021503.042Z-manual",
            "lost+found",
        ] {
            assert_eq!(parse_bundle_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn pod_dir_refuses_escapes() {
        let root = Path::new("/dumps");
        assert_eq!(
            pod_dir(root, "transit", "bc-7d9f-x2"),
            Some(PathBuf::from("/dumps/transit/bc-7d9f-x2"))
        );
        for (ns, pod) in [("..", "x"), ("a/b", "x"), ("ns", ""), ("ns", ".hidden")] {
            assert_eq!(pod_dir(root, ns, pod), None, "{ns}/{pod}");
        }
    }

    fn b(name: &str, at: u64, bytes: u64) -> RetainedBundle {
        RetainedBundle {
            name: name.into(),
            created_at_ms: at,
            bytes,
        }
    }

    #[test]
    fn retention_by_count_oldest_first() {
        let list = vec![b("c", 3, 1), b("a", 1, 1), b("b", 2, 1), b("d", 4, 1)];
        let p = RetentionPolicy {
            max_bundles: 2,
            max_bytes: u64::MAX,
        };
        assert_eq!(plan_retention(&list, p), vec!["a", "b"]);
    }

    #[test]
    fn retention_by_bytes_oldest_first() {
        let list = vec![b("a", 1, 500), b("b", 2, 300), b("c", 3, 300)];
        let p = RetentionPolicy {
            max_bundles: 10,
            max_bytes: 700,
        };
        assert_eq!(plan_retention(&list, p), vec!["a"]);
        let p = RetentionPolicy {
            max_bundles: 10,
            max_bytes: 1100,
        };
        assert!(plan_retention(&list, p).is_empty());
    }

    #[test]
    fn retention_keeps_the_newest_even_if_too_big() {
        let list = vec![b("a", 1, 10), b("b", 2, 5000)];
        let p = RetentionPolicy {
            max_bundles: 10,
            max_bytes: 100,
        };
        assert_eq!(plan_retention(&list, p), vec!["a"]);
        let p = RetentionPolicy {
            max_bundles: 0,
            max_bytes: 100,
        };
        assert_eq!(plan_retention(&list, p), vec!["a", "b"]);
    }

    proptest::proptest! {
        #[test]
        fn retention_plan_meets_the_policy(
            sizes in proptest::collection::vec((0u64..1000, 0u64..5000), 0..40),
            max_bundles in 1usize..20,
            max_bytes in 0u64..50_000,
        ) {
            let list: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(i, (at, bytes))| b(&format!("b{i:03}"), *at, *bytes))
                .collect();
            let policy = RetentionPolicy { max_bundles, max_bytes };
            let delete = plan_retention(&list, policy);
            let kept: Vec<_> = list.iter().filter(|x| !delete.contains(&x.name)).collect();
            if !list.is_empty() {
                proptest::prop_assert!(!kept.is_empty());
            }
            proptest::prop_assert!(kept.len() <= max_bundles);
            let kept_bytes: u64 = kept.iter().map(|x| x.bytes).sum();
            proptest::prop_assert!(kept.len() <= 1 || kept_bytes <= max_bytes);
            // Everything deleted is older than everything kept.
            for d in list.iter().filter(|x| delete.contains(&x.name)) {
                for k in &kept {
                    proptest::prop_assert!((d.created_at_ms, &d.name) < (k.created_at_ms, &k.name));
                }
            }
        }

        #[test]
        fn timestamps_round_trip(ms in 0u64..253_402_300_799_999) {
            proptest::prop_assert_eq!(parse_utc_timestamp(&utc_timestamp(ms)), Some(ms));
        }
    }
}
