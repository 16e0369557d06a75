//! Capturing a dump bundle: the sidecar's own state, the broadcaster's task dump and,
//! where allowed, a process dump, written atomically by [`crate::bundles::BundleStore`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stallwatch_core::bundle::{
    self, BUNDLE_V1, CaptureTimings, DumpRequest, Manifest, ProcessDumpOutcome, SCRAPES_FILE,
    STATE_FILE, TASKS_FILE, TaskDumpOutcome, Versions,
};
use stallwatch_core::clock::now_ms;
use stallwatch_core::condition::DUMP_STORAGE_WRITABLE_REASON;
use stallwatch_core::report::{PROTOCOL_V1, is_valid_stream_name};
use stallwatch_core::taskdump::TaskDump;
use stallwatch_core::verdict::VerdictConfig;

use crate::broadcaster::BroadcasterClient;
use crate::bundles::{BundleError, BundleStore, PendingBundle};
use crate::cli::ProcessDumpMode;
use crate::monitor::{
    DesiredCondition, HistoryEntry, Monitor, Notice, ReceivedReport, ScrapeRecord, Status,
};
use crate::procdump;
use crate::taskdump_render::render_task_dump;

/// The value of [`BundleState::format`].
pub const STATE_V1: &str = "stallwatch.bundle-state.v1";
pub const SIDECAR_VERSION: &str = concat!("transit-sidecar ", env!("CARGO_PKG_VERSION"));

/// `state.json`: what the sidecar knew at capture time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleState {
    pub format: String,
    pub captured_at_ms: u64,
    /// The same document as `GET /v1/status`.
    pub status: Status,
    pub config: ConfigSummary,
    /// The last reports accepted, oldest first.
    pub recent_reports: Vec<ReceivedReport>,
    /// Recent verdict changes, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The broadcaster's task dump, raw.
    pub task_dump: Option<TaskDump>,
    pub task_dump_error: Option<String>,
    /// Zero-code mode: the last scrapes of the app's metrics, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrapes: Vec<ScrapeRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSummary {
    pub stall_after_ms: u64,
    pub report_timeout_ms: u64,
    pub recover_after_ms: u64,
}

impl From<VerdictConfig> for ConfigSummary {
    fn from(c: VerdictConfig) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ConfigSummary {
            stall_after_ms: ms(c.stall_after),
            report_timeout_ms: ms(c.report_timeout),
            recover_after_ms: ms(c.recover_after),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub pod: String,
    pub node: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("capture task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("capture task failed: encoding state.json: {0}")]
    EncodeState(#[source] serde_json::Error),
}

impl CaptureError {
    pub fn http_status(&self) -> u16 {
        match self {
            CaptureError::BadRequest(_) => 400,
            CaptureError::Bundle(e) => e.http_status(),
            CaptureError::Task(_) | CaptureError::EncodeState(_) => 500,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            CaptureError::BadRequest(_) => "bad_request",
            CaptureError::Bundle(e) => e.label(),
            CaptureError::Task(_) | CaptureError::EncodeState(_) => "failed",
        }
    }
}

/// The task dump as a capture found it.
struct FetchedTaskDump {
    tasks_txt: String,
    dump: Option<TaskDump>,
    error: Option<String>,
    outcome: TaskDumpOutcome,
    ms: u64,
}

impl FetchedTaskDump {
    /// Zero-code mode: a metrics-only app has no task dump to ask for.
    fn not_applicable() -> Self {
        let why = format!(
            "zero-code mode: a metrics-only app has no task dump; the scraped series are in {SCRAPES_FILE}"
        );
        FetchedTaskDump {
            tasks_txt: String::new(),
            dump: None,
            error: None,
            outcome: TaskDumpOutcome::NotApplicable { why },
            ms: 0,
        }
    }
}

/// `scrapes.txt`: each scrape's time and outcome, then its mapped series.
pub(crate) fn render_scrapes(scrapes: &[ScrapeRecord]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "# the last {} scrapes of the app's metrics, oldest first\n",
        scrapes.len()
    );
    for s in scrapes {
        let at = jiff::Timestamp::from_millisecond(i64::try_from(s.at_ms).unwrap_or(i64::MAX))
            .map(|t| t.to_string())
            .unwrap_or_else(|_| s.at_ms.to_string());
        let _ = match &s.error {
            None => writeln!(out, "\n# scrape at {at}: ok"),
            Some(e) => writeln!(out, "\n# scrape at {at}: no verdict: {e}"),
        };
        for line in &s.series {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

pub struct Capturer {
    monitor: Arc<Monitor>,
    store: Arc<BundleStore>,
    broadcaster: BroadcasterClient,
    mode: ProcessDumpMode,
    task_dump_timeout: Duration,
    identity: PodIdentity,
    /// One capture at a time: they compete for the same disk and the same ptrace target.
    busy: tokio::sync::Mutex<()>,
    /// The `stallwatch.io/DumpStorageReady` pod condition after the last probe.
    storage_condition: tokio::sync::watch::Sender<Option<DesiredCondition>>,
}

impl Capturer {
    pub fn new(
        monitor: Arc<Monitor>,
        store: Arc<BundleStore>,
        broadcaster: BroadcasterClient,
        mode: ProcessDumpMode,
        task_dump_timeout: Duration,
        identity: PodIdentity,
    ) -> Self {
        Capturer {
            monitor,
            store,
            broadcaster,
            mode,
            task_dump_timeout,
            identity,
            busy: tokio::sync::Mutex::new(()),
            storage_condition: tokio::sync::watch::Sender::new(None),
        }
    }

    /// The dump volume's pod condition, set by each probe (`None` before the first).
    pub fn storage_condition(&self) -> tokio::sync::watch::Receiver<Option<DesiredCondition>> {
        self.storage_condition.subscribe()
    }

    /// Probes the dump volume (write, fsync, delete a file) and records the outcome in
    /// `/v1/status`, the metrics and, when it changes, an Event. Blocking file system work.
    pub fn probe_storage(&self) -> Result<(), BundleError> {
        let result = self.store.probe();
        if let Err(e) = &result {
            tracing::error!(error = %e, "the dump volume cannot take a bundle");
        }
        self.monitor
            .set_storage(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        // `send_if_modified`: an unchanged result wakes no publisher.
        let want = storage_condition(&result);
        self.storage_condition.send_if_modified(|c| {
            let changed = c.as_ref() != Some(&want);
            *c = Some(want);
            changed
        });
        result
    }

    /// Capture one bundle. Outcomes are counted, reflected in `/v1/status` and sent to the
    /// reactor (Events). The capture runs as its own task, so a client that gives up waiting
    /// does not cut a bundle (or its bookkeeping) short.
    pub async fn capture(self: &Arc<Self>, req: DumpRequest) -> Result<Manifest, CaptureError> {
        let me = self.clone();
        tokio::spawn(async move { me.capture_here(req).await })
            .await
            .map_err(CaptureError::Task)?
    }

    async fn capture_here(&self, req: DumpRequest) -> Result<Manifest, CaptureError> {
        let started = Instant::now();
        let created_at_ms = now_ms();
        if let Some(s) = &req.stream
            && !is_valid_stream_name(s)
        {
            return Err(CaptureError::BadRequest(format!(
                "stream {:?} is not a valid stream name",
                stallwatch_core::report::truncate(s, 80)
            )));
        }
        let requested_by = req
            .requested_by
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        if requested_by.is_empty()
            || requested_by.len() > 128
            || requested_by.chars().any(char::is_control)
        {
            return Err(CaptureError::BadRequest(
                "requested_by must be 1..=128 printable characters".to_owned(),
            ));
        }
        let _guard = self.busy.lock().await;
        let result = self
            .capture_locked(req, requested_by, started, created_at_ms)
            .await;
        let m = &self.monitor.metrics;
        match &result {
            Ok(manifest) => {
                m.dump("ok");
                m.process_dump(manifest.process_dump.label());
                m.last_bundle_seconds.set(started.elapsed().as_secs_f64());
                let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
                m.last_bundle_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                self.monitor.set_storage(Ok(()));
                tracing::info!(path = %manifest.path, ms = started.elapsed().as_millis() as u64, process_dump = manifest.process_dump.label(), "bundle captured");
                self.monitor.notify(Notice::DumpWritten {
                    path: manifest.path.clone(),
                    stream: manifest.stream.clone(),
                });
            }
            Err(e) => {
                m.dump(e.label());
                if let CaptureError::Bundle(b) = e {
                    self.monitor.set_storage(Err(b.to_string()));
                }
                tracing::error!(error = %e, "bundle capture failed");
                self.monitor.notify(Notice::DumpFailed {
                    error: e.to_string(),
                });
            }
        }
        result
    }

    async fn capture_locked(
        &self,
        req: DumpRequest,
        requested_by: String,
        started: Instant,
        created_at_ms: u64,
    ) -> Result<Manifest, CaptureError> {
        let verdict = req
            .stream
            .as_deref()
            .and_then(|s| self.monitor.verdict_of(s));
        let reason = req.reason.or(verdict.and_then(|v| v.reason()));
        let snap = self.monitor.snapshot();
        let fetched = if snap.zero_code {
            FetchedTaskDump::not_applicable()
        } else {
            self.fetch_task_dump().await
        };

        let pid = snap.pid;
        let manifest = Manifest {
            format: BUNDLE_V1.to_owned(),
            id: String::new(),
            path: String::new(),
            versions: Versions {
                sidecar: SIDECAR_VERSION.to_owned(),
                broadcaster: snap.broadcaster_version,
                broadcaster_instance: snap.status.instance.clone(),
                report_protocol: PROTOCOL_V1.to_owned(),
                bundle_format: BUNDLE_V1.to_owned(),
            },
            pod: self.identity.pod.clone(),
            namespace: self.identity.namespace.clone(),
            node: self.identity.node.clone(),
            stream: req.stream,
            reason,
            verdict,
            requested_by,
            created_at_ms,
            timings: CaptureTimings {
                task_dump_ms: fetched.ms,
                ..CaptureTimings::default()
            },
            files: Vec::new(),
            task_dump: fetched.outcome,
            process_dump: ProcessDumpOutcome::Skipped { why: String::new() },
        };
        let state = BundleState {
            format: STATE_V1.to_owned(),
            captured_at_ms: created_at_ms,
            status: snap.status,
            config: snap.config.into(),
            recent_reports: snap.recent_reports,
            history: snap.history,
            task_dump: fetched.dump,
            task_dump_error: fetched.error,
            scrapes: snap.scrapes,
        };
        let state_json = serde_json::to_vec_pretty(&state).map_err(CaptureError::EncodeState)?;
        // Zero-code mode: the scraped series stand where the task dump would.
        let second = if snap.zero_code {
            (
                SCRAPES_FILE.to_owned(),
                render_scrapes(&state.scrapes).into_bytes(),
            )
        } else {
            (TASKS_FILE.to_owned(), fetched.tasks_txt.into_bytes())
        };
        let pending = PendingBundle {
            manifest,
            files: vec![(STATE_FILE.to_owned(), state_json), second],
            started,
        };
        self.write(pending, pid).await
    }

    /// The broadcaster's task dump, or why there is none, for `state.json` and `tasks.txt`.
    async fn fetch_task_dump(&self) -> FetchedTaskDump {
        let t = Instant::now();
        let dump = self.broadcaster.task_dump(self.task_dump_timeout).await;
        let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        match dump {
            Ok(d) => FetchedTaskDump {
                tasks_txt: render_task_dump(&d),
                outcome: TaskDumpOutcome::Fetched {
                    tasks: d.tasks.len() as u64,
                },
                dump: Some(d),
                error: None,
                ms,
            },
            Err(e) => {
                tracing::warn!(error = %e, "task dump unavailable for the bundle");
                FetchedTaskDump {
                    tasks_txt: format!("task dump unavailable: {e}\n"),
                    dump: None,
                    error: Some(e.to_string()),
                    outcome: TaskDumpOutcome::Failed { why: e.to_string() },
                    ms,
                }
            }
        }
    }

    /// Write the bundle (and the process dump into it) off the runtime: fsyncs block.
    async fn write(
        &self,
        pending: PendingBundle,
        pid: Option<u32>,
    ) -> Result<Manifest, CaptureError> {
        let store = self.store.clone();
        let mode = self.mode;
        tokio::task::spawn_blocking(move || {
            store.write(pending, &move |dir: &std::path::Path| {
                procdump::dump(mode, pid, dir)
            })
        })
        .await
        .map_err(CaptureError::Task)?
        .map_err(CaptureError::from)
    }

    pub async fn list(&self) -> Result<bundle::BundleList, BundleError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(BundleError::Task)?
            .map(|bundles| bundle::BundleList { bundles })
    }
}

/// The `stallwatch.io/DumpStorageReady` condition for a probe's outcome: `True`/`Writable`, or
/// `False` with a reason for the kind of failure and the probe's message.
pub fn storage_condition(probe: &Result<(), BundleError>) -> DesiredCondition {
    match probe {
        Ok(()) => DesiredCondition {
            healthy: true,
            unknown: false,
            reason: DUMP_STORAGE_WRITABLE_REASON.to_owned(),
            message: "the dump volume takes a bundle (probe: write, fsync, delete)".to_owned(),
        },
        Err(e) => DesiredCondition {
            healthy: false,
            unknown: false,
            reason: storage_reason(e).to_owned(),
            message: stallwatch_core::report::truncate(&e.to_string(), 1000),
        },
    }
}

fn storage_reason(e: &BundleError) -> &'static str {
    match e {
        BundleError::NotWritable { .. } => "PermissionDenied",
        BundleError::ReadOnly(_) => "ReadOnly",
        BundleError::Unavailable(_) | BundleError::NotADirectory(_) => "Missing",
        BundleError::NoSpace(_) => "Full",
        BundleError::Io(_)
        | BundleError::NamesExhausted(_)
        | BundleError::EncodeManifest(_)
        | BundleError::Task(_) => "Failed",
    }
}

#[cfg(test)]
mod tests;
