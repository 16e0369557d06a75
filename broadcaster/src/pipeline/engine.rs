//! The running broadcaster's shared state ([`Engine`]) and what can be done with it: the
//! streams, the task registry, the error log, source and reporter counters; build a report,
//! take the in-process dump, restart a stream's dispatcher.
//!
//! Start-up and shutdown live in `serve/server.rs`, which builds an `Engine` and hands it to
//! the servers. Like all of `pipeline`, this module imports nothing of `serve` (`grpc`,
//! `http_endpoints`, `metrics`, `server`): they import it.

use std::sync::Arc;
use std::time::Duration;

use stallwatch_core::clock::now_ms;
use stallwatch_core::report::{PROTOCOL_V1, Report};
use stallwatch_core::sync::lock;
use stallwatch_core::taskdump::{TASKDUMP_V1, TaskDump};
use tokio::task::AbortHandle;

use crate::pipeline::dispatcher::Spawner;
use crate::pipeline::quarantine::ErrorLog;
use crate::pipeline::reporter::ReporterStats;
use crate::pipeline::source::{Ingest, SourceStats};
use crate::pipeline::stream_runtime::StreamRuntime;
use crate::pipeline::tasks::TaskRegistry;

/// The running broadcaster's shared state.
pub struct Engine {
    instance: String,
    streams: Arc<[Arc<StreamRuntime>]>,
    spawners: Vec<Spawner>,
    registry: Arc<TaskRegistry>,
    errors: Arc<ErrorLog>,
    source_stats: Arc<SourceStats>,
    reporter_stats: Arc<ReporterStats>,
    /// The gRPC listener's HTTP/2 connections closed for going past a limit (lean server).
    h2_limits_exceeded: lean_h2::Metrics,
    report_interval: Duration,
    stuck_after: Duration,
    background: std::sync::Mutex<Vec<AbortHandle>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("instance", &self.instance)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A fresh engine with a random instance id and zeroed counters. `spawners[i]` starts
    /// `streams[i]`'s dispatcher.
    pub(crate) fn new(
        streams: Arc<[Arc<StreamRuntime>]>,
        spawners: Vec<Spawner>,
        registry: Arc<TaskRegistry>,
        errors: Arc<ErrorLog>,
        report_interval: Duration,
        stuck_after: Duration,
    ) -> Self {
        Self {
            instance: random_instance(),
            streams,
            spawners,
            registry,
            errors,
            source_stats: Arc::new(SourceStats::default()),
            reporter_stats: Arc::new(ReporterStats::default()),
            h2_limits_exceeded: lean_h2::Metrics::default(),
            report_interval,
            stuck_after,
            background: Default::default(),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn streams(&self) -> &Arc<[Arc<StreamRuntime>]> {
        &self.streams
    }

    pub fn stream(&self, name: &str) -> Option<&Arc<StreamRuntime>> {
        self.streams.iter().find(|s| s.name() == name)
    }

    pub fn registry(&self) -> &Arc<TaskRegistry> {
        &self.registry
    }

    pub fn errors(&self) -> &Arc<ErrorLog> {
        &self.errors
    }

    pub fn h2_limits_exceeded(&self) -> &lean_h2::Metrics {
        &self.h2_limits_exceeded
    }

    pub fn source_stats(&self) -> &SourceStats {
        &self.source_stats
    }

    pub fn reporter_stats(&self) -> &ReporterStats {
        &self.reporter_stats
    }

    pub(crate) fn reporter_stats_handle(&self) -> Arc<ReporterStats> {
        self.reporter_stats.clone()
    }

    pub fn stuck_after(&self) -> Duration {
        self.stuck_after
    }

    /// A handle to push raw feed messages into every stream, as a source does.
    pub fn ingest(&self) -> Ingest {
        Ingest::new(
            self.streams.clone(),
            self.source_stats.clone(),
            self.errors.clone(),
        )
    }

    /// Report number `seq`, built from outside the dispatchers.
    pub fn report(&self, seq: u64) -> Report {
        Report {
            protocol: PROTOCOL_V1.into(),
            instance: self.instance.clone(),
            seq,
            sent_at_ms: now_ms(),
            interval_ms: self.report_interval.as_millis().clamp(1, 60_000) as u64,
            pid: Some(std::process::id()),
            version: Some(concat!("transit-broadcaster ", env!("CARGO_PKG_VERSION")).into()),
            streams: self.streams.iter().map(|s| s.report()).collect(),
        }
    }

    /// The in-process diagnostic dump. Synchronous and non-waiting: it never blocks on a task
    /// that is being polled, so it completes even when the runtime is wedged.
    pub fn dump(&self) -> TaskDump {
        let (tasks, backtrace) = self.registry.snapshot();
        TaskDump {
            protocol: TASKDUMP_V1.into(),
            instance: self.instance.clone(),
            pid: std::process::id(),
            captured_at_ms: now_ms(),
            tasks,
            backtrace,
            streams: self.streams.iter().map(|s| s.report()).collect(),
            quarantine: self
                .streams
                .iter()
                .flat_map(|s| s.quarantine.recent())
                .collect(),
            recent_errors: self.errors.recent(),
        }
    }

    /// Aborts the stream's dispatcher and starts a fresh one, supervised or not. `false` for
    /// an unknown stream.
    pub fn restart_stream(&self, name: &str) -> bool {
        let Some(index) = self.streams.iter().position(|s| s.name() == name) else {
            return false;
        };
        let stream = &self.streams[index];
        tracing::info!(stream = name, "restart requested");
        if stream.supervised {
            stream.restart_requested.notify_one();
        } else {
            stream.abort_dispatcher();
            // Detached on purpose: in unsupervised mode nothing watches the dispatcher.
            drop((self.spawners[index])());
            stream.count_restart();
            self.errors
                .push(Some(name), "dispatcher restarted on request (unsupervised)");
        }
        true
    }

    /// A drill: kills the stream's dispatcher once and leaves it dead (`DispatcherDead`, as in
    /// the story) until a restart request (the admin restart, or a new pod). `false` for an
    /// unknown stream.
    pub fn drill_stream(&self, name: &str) -> bool {
        let Some(stream) = self.streams.iter().find(|s| s.name() == name) else {
            return false;
        };
        tracing::warn!(
            stream = name,
            "drill: killing the dispatcher; it stays dead until a restart"
        );
        stream
            .drilled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        stream.abort_dispatcher();
        stream.set_last_error("drill: dispatcher killed on request");
        self.errors
            .push(Some(name), "drill: dispatcher killed on request");
        true
    }

    /// The function that starts a fresh dispatcher for stream number `index`.
    pub(crate) fn spawner(&self, index: usize) -> Spawner {
        self.spawners[index].clone()
    }

    /// Keeps a background task (source, reporter, supervisors) to abort at shutdown.
    pub(crate) fn keep(&self, handle: AbortHandle) {
        lock(&self.background).push(handle);
    }

    /// Aborts every kept background task and every dispatcher.
    pub(crate) fn abort_tasks(&self) {
        for h in lock(&self.background).drain(..) {
            h.abort();
        }
        for s in self.streams.iter() {
            s.abort_dispatcher();
        }
    }
}

fn random_instance() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!("{:016x}", rng.random::<u64>())
}
