//! Wiring: builds every stream's pipeline, starts the source, dispatchers, supervisors,
//! reporter, health updater and servers, and shuts them down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stallwatch_core::client::ReportClient;
use stallwatch_core::report::{PROTOCOL_V1, Report};
use stallwatch_core::taskdump::{TASKDUMP_V1, TaskDump, TaskKind};
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::dispatcher::{
    Backoff, DispatcherEnv, HangFault, PrepareFn, Spawner, default_prepare, run_dispatcher,
    supervise,
};
use crate::fault::{FaultConfig, FaultMode};
use crate::quarantine::ErrorLog;
use crate::reporter::{ReporterStats, run_reporter, send_timeout};
use crate::source::{Ingest, SourceOptions, SourceSpec, SourceStats, run_source};
use crate::spec::{SpecError, StreamSpec, validate_streams};
use crate::stream::StreamRuntime;
use crate::tasks::TaskRegistry;
use crate::util::{lock, now_ms};

/// Everything `serve` is configured with. Defaults are the documented ones
/// (docs/architecture.md).
#[derive(Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// `None`: no admin server.
    pub admin_addr: Option<SocketAddr>,
    pub source: SourceSpec,
    pub source_options: SourceOptions,
    /// Empty: one stream `all`.
    pub streams: Vec<StreamSpec>,
    pub channel_capacity: usize,
    pub subscriber_queue: usize,
    /// `None`: reporting disabled.
    pub report_url: Option<String>,
    pub report_interval: Duration,
    pub fault: FaultConfig,
    /// A stream whose channel has had items waiting this long with no dequeue is "stuck"
    /// (NOT_SERVING in gRPC health).
    pub stuck_after: Duration,
    pub backoff: Backoff,
    pub prepare: PrepareFn,
    /// How long SIGTERM waits for subscribers to be told and connections to close.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("admin_addr", &self.admin_addr)
            .field("source", &self.source)
            .field("streams", &self.streams)
            .field("channel_capacity", &self.channel_capacity)
            .field("subscriber_queue", &self.subscriber_queue)
            .field("report_url", &self.report_url)
            .field("report_interval", &self.report_interval)
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 50051).into(),
            http_addr: ([0, 0, 0, 0], 9090).into(),
            admin_addr: Some(([127, 0, 0, 1], 9091).into()),
            source: SourceSpec::Synthetic(Default::default()),
            source_options: SourceOptions::default(),
            streams: Vec::new(),
            channel_capacity: 5,
            subscriber_queue: 64,
            report_url: Some("http://127.0.0.1:9464/v1/reports".into()),
            report_interval: Duration::from_millis(250),
            fault: FaultConfig::default(),
            stuck_after: Duration::from_secs(2),
            backoff: Backoff::default(),
            prepare: default_prepare(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Every listener on an ephemeral loopback port, no reporting: for tests and benchmarks.
    pub fn loopback(source: SourceSpec) -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            admin_addr: Some(([127, 0, 0, 1], 0).into()),
            source,
            report_url: None,
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the report client: {0}")]
    ReportClient(String),
    #[error("cannot start the admin server: {0}")]
    Admin(std::io::Error),
}

/// The running broadcaster's shared state.
pub struct Engine {
    instance: String,
    streams: Arc<[Arc<StreamRuntime>]>,
    spawners: Vec<Spawner>,
    registry: Arc<TaskRegistry>,
    errors: Arc<ErrorLog>,
    source_stats: Arc<SourceStats>,
    reporter_stats: Arc<ReporterStats>,
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

    pub fn source_stats(&self) -> &SourceStats {
        &self.source_stats
    }

    pub fn reporter_stats(&self) -> &ReporterStats {
        &self.reporter_stats
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

    fn keep(&self, handle: AbortHandle) {
        lock(&self.background).push(handle);
    }
}

/// A started broadcaster.
pub struct Running {
    pub engine: Arc<Engine>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    grpc: JoinHandle<()>,
    http: JoinHandle<()>,
    health: JoinHandle<()>,
    admin: Option<crate::http::AdminServer>,
    grace: Duration,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

fn random_instance() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!("{:016x}", rng.random::<u64>())
}

/// Binds every listener and starts every task on the current runtime.
pub async fn start(mut config: Config) -> Result<Running, StartError> {
    if config.streams.is_empty() {
        config.streams.push(StreamSpec::all());
    }
    validate_streams(&config.streams)?;
    if config.channel_capacity == 0 {
        return Err(StartError::Invalid(
            "channel capacity must be at least 1".into(),
        ));
    }
    if config.subscriber_queue == 0 {
        return Err(StartError::Invalid(
            "subscriber queue must be at least 1".into(),
        ));
    }
    if config.report_interval.is_zero() || config.report_interval > Duration::from_secs(60) {
        return Err(StartError::Invalid(
            "report interval must be within 1ms..=60s".into(),
        ));
    }
    if let Some(name) = &config.fault.stream
        && !config.streams.iter().any(|s| &s.name == name)
    {
        return Err(StartError::Invalid(format!(
            "fault stream {name:?} is not a configured stream"
        )));
    }
    let bind = |what: &'static str, addr: SocketAddr| {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { what, addr, source })
    };
    let grpc_std = bind("gRPC", config.grpc_addr)?;
    let http_std = bind("HTTP", config.http_addr)?;
    let admin_std = config.admin_addr.map(|a| bind("admin", a)).transpose()?;
    let to_tokio = |what: &'static str, l: std::net::TcpListener| {
        let addr = l.local_addr().map_err(|source| StartError::Bind {
            what,
            addr: config.grpc_addr,
            source,
        })?;
        l.set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(l))
            .map(|l| (l, addr))
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let (grpc_listener, grpc_addr) = to_tokio("gRPC", grpc_std)?;
    let (http_listener, http_addr) = to_tokio("HTTP", http_std)?;

    let report_client = config
        .report_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| ReportClient::new(u, send_timeout(config.report_interval)))
        .transpose()
        .map_err(|e| StartError::ReportClient(e.to_string()))?;

    let handle = Handle::current();
    let started = Instant::now();
    let registry = TaskRegistry::new();
    let errors = Arc::new(ErrorLog::new(64));
    let fault = config.fault.clone();
    if fault.mode != FaultMode::None {
        tracing::warn!(
            fault = %fault.mode,
            stream = ?fault.stream,
            after = ?fault.after,
            "FAULT INJECTION ENABLED: this process is deliberately broken; never use in production"
        );
    }
    let hang = HangFault::new(started + fault.after);
    let streams: Vec<Arc<StreamRuntime>> = config
        .streams
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let legacy =
                fault.mode == FaultMode::LegacyUnsupervised && fault.applies_to(&spec.name, i);
            StreamRuntime::new(
                spec.clone(),
                config.channel_capacity,
                config.subscriber_queue,
                !legacy,
            )
        })
        .collect();
    let streams: Arc<[Arc<StreamRuntime>]> = streams.into();

    let spawners: Vec<Spawner> = streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            let env = DispatcherEnv {
                stream: stream.clone(),
                prepare: config.prepare.clone(),
                strict: !stream.supervised,
                hang: (fault.mode == FaultMode::HangDispatcher
                    && fault.applies_to(stream.name(), i))
                .then(|| hang.clone()),
            };
            let registry = registry.clone();
            let handle = handle.clone();
            let spawner: Spawner = Arc::new(move || {
                let stream = env.stream.clone();
                let task = registry.spawn(
                    &handle,
                    format!("dispatcher/{}", stream.name()),
                    TaskKind::Dispatcher,
                    Some(stream.name()),
                    run_dispatcher(env.clone()),
                );
                stream.set_dispatcher(task.abort_handle());
                task
            });
            spawner
        })
        .collect();

    let engine = Arc::new(Engine {
        instance: random_instance(),
        streams: streams.clone(),
        spawners: spawners.clone(),
        registry: registry.clone(),
        errors: errors.clone(),
        source_stats: Arc::new(SourceStats::default()),
        reporter_stats: Arc::new(ReporterStats::default()),
        report_interval: config.report_interval,
        stuck_after: config.stuck_after,
        background: Default::default(),
    });

    for (stream, spawn) in streams.iter().zip(&spawners) {
        if stream.supervised {
            let task = registry.spawn(
                &handle,
                format!("supervisor/{}", stream.name()),
                TaskKind::Supervisor,
                Some(stream.name()),
                supervise(
                    stream.clone(),
                    spawn.clone(),
                    errors.clone(),
                    config.backoff,
                ),
            );
            stream.set_supervisor(task.abort_handle());
            engine.keep(task.abort_handle());
        } else {
            // The story's setup: one fire-and-forget task. Nothing restarts it and nothing
            // logs or reports its end. But like the story's faulted Task object, which still
            // held its exception on the heap, the error stays in memory where only a dump
            // finds it: the dump's error log, nowhere else.
            let task = spawn();
            let errors = errors.clone();
            let name = stream.name().to_string();
            handle.spawn(async move {
                let why = match task.await {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => format!("unobserved dispatcher failure: {e}"),
                    Err(e) if e.is_panic() => "unobserved dispatcher panic".to_string(),
                    Err(_) => return,
                };
                errors.push(Some(&name), why);
            });
        }
    }

    let source_task = registry.spawn(
        &handle,
        format!("source/{}", config.source.kind()),
        TaskKind::Source,
        None,
        run_source(
            config.source.clone(),
            config.source_options,
            engine.ingest(),
        ),
    );
    engine.keep(source_task.abort_handle());

    if let Some(client) = report_client {
        tracing::info!(url = client.url(), interval = ?config.report_interval, "reporting to the sidecar");
        let build_engine = engine.clone();
        let task = registry.spawn(
            &handle,
            "reporter",
            TaskKind::Reporter,
            None,
            run_reporter(
                client,
                config.report_interval,
                engine.reporter_stats.clone(),
                move |seq| build_engine.report(seq),
            ),
        );
        engine.keep(task.abort_handle());
    }

    if fault.mode == FaultMode::BlockRuntime {
        let after = fault.after;
        let registry2 = registry.clone();
        let handle2 = handle.clone();
        let task = registry.spawn(
            &handle,
            "fault/block-runtime",
            TaskKind::Other,
            None,
            async move {
                tokio::time::sleep(after).await;
                let workers = Handle::current().metrics().num_workers();
                tracing::warn!(
                    workers,
                    "fault block-runtime: blocking every executor thread now"
                );
                for i in 0..workers {
                    registry2.spawn(
                        &handle2,
                        format!("fault/block-runtime/worker-{i}"),
                        TaskKind::Other,
                        None,
                        crate::fault::block_this_worker(),
                    );
                }
            },
        );
        engine.keep(task.abort_handle());
    }

    let shutdown = CancellationToken::new();
    let (health_reporter, health_service) = crate::grpc::health();
    let health = registry.spawn(
        &handle,
        "health",
        TaskKind::Other,
        None,
        crate::grpc::run_health_updater(
            engine.clone(),
            health_reporter,
            Duration::from_millis(250),
            shutdown.clone(),
        ),
    );

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::generated::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Invalid(format!("reflection: {e}")))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::generated::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| StartError::Invalid(format!("reflection: {e}")))?;
    let service = crate::grpc::TransitService::new(engine.clone(), shutdown.clone());
    let grpc_shutdown = shutdown.clone();
    let grpc = registry.spawn(&handle, "server/grpc", TaskKind::Server, None, async move {
        // TcpIncoming sets TCP_NODELAY on every accepted socket (`Server::tcp_nodelay` only
        // applies to listeners tonic binds itself): without it Nagle's algorithm holds back
        // small updates for milliseconds at moderate rates.
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(crate::grpc::transit_server(service))
            .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!("gRPC server: {e}");
        }
    });

    let http_shutdown = shutdown.clone();
    let router = crate::http::public_router(engine.clone());
    let http = registry.spawn(&handle, "server/http", TaskKind::Server, None, async move {
        let serve = axum::serve(http_listener, router)
            .with_graceful_shutdown(http_shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!("HTTP server: {e}");
        }
    });

    let admin = admin_std
        .map(|l| crate::http::AdminServer::start(l, engine.clone(), shutdown.clone()))
        .transpose()
        .map_err(StartError::Admin)?;
    let admin_addr = admin.as_ref().map(|a| a.addr);
    tracing::info!(
        %grpc_addr,
        %http_addr,
        admin_addr = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        source = config.source.kind(),
        streams = %config.streams.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" "),
        instance = engine.instance(),
        "transit-broadcaster serving"
    );
    Ok(Running {
        engine,
        grpc_addr,
        http_addr,
        admin_addr,
        shutdown,
        grpc,
        http,
        health,
        admin,
        grace: config.shutdown_grace,
    })
}

impl Running {
    pub fn ingest(&self) -> Ingest {
        self.engine.ingest()
    }

    pub fn stream(&self, name: &str) -> Option<Arc<StreamRuntime>> {
        self.engine.stream(name).cloned()
    }

    /// Stops accepting, ends every subscriber stream with UNAVAILABLE "server shutting
    /// down", waits (bounded by the grace period) for connections to close, then stops every
    /// task.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: telling subscribers, closing listeners");
        self.shutdown.cancel();
        let _ = tokio::time::timeout(self.grace, self.health).await;
        let grpc_abort = self.grpc.abort_handle();
        if tokio::time::timeout(self.grace, self.grpc).await.is_err() {
            tracing::warn!("gRPC connections did not close within {:?}", self.grace);
            grpc_abort.abort();
        }
        let http_abort = self.http.abort_handle();
        if tokio::time::timeout(self.grace, self.http).await.is_err() {
            http_abort.abort();
        }
        for h in lock(&self.engine.background).drain(..) {
            h.abort();
        }
        for s in self.engine.streams.iter() {
            s.abort_dispatcher();
        }
        if let Some(admin) = self.admin {
            let _ = tokio::task::spawn_blocking(move || admin.join()).await;
        }
        tracing::info!("shut down");
    }
}
