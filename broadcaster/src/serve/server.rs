//! Start-up and shutdown: checking the [`Config`] (`config.rs`), binding the listeners,
//! building the [`Engine`], spawning the source, dispatchers, supervisors, reporter and health
//! updater, serving gRPC, HTTP and admin, and [`Running::shutdown`].
//!
//! [`start`] reads as its steps, in order; each step is one function below (which is why the
//! file is near 600 lines: split, the start-up would no longer read top to bottom). This
//! module is the top of the module graph: it imports `engine`, `grpc`, `lean` and
//! `http_endpoints`, and nothing imports it (except the binary and the crate root's
//! re-exports).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stallwatch_core::client::ReportClient;
use stallwatch_core::taskdump::TaskKind;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::pipeline::dispatcher::{
    Backoff, DispatcherEnv, HangFault, Spawner, run_dispatcher, supervise,
};
use crate::pipeline::engine::Engine;
use crate::pipeline::quarantine::ErrorLog;
use crate::pipeline::reporter::{run_reporter, send_timeout};
use crate::pipeline::source::{Ingest, run_source};
use crate::pipeline::spec::{SpecError, StreamSpec, validate_streams};
use crate::pipeline::stream_runtime::StreamRuntime;
use crate::pipeline::tasks::TaskRegistry;
use crate::serve::config::{Config, GrpcServer};
use crate::serve::fault::{FaultConfig, FaultMode};
use crate::serve::http_endpoints::AdminServer;

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
    ReportClient(#[source] reqwest::Error),
    #[error("reflection: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error("cannot start the admin server: {0}")]
    Admin(#[source] std::io::Error),
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
    admin: Option<AdminServer>,
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

/// Binds every listener and starts every task on the current runtime.
pub async fn start(mut config: Config) -> Result<Running, StartError> {
    validate(&mut config)?;
    let listeners = Listeners::bind(&config)?;
    let report_client = report_client(&config)?;
    warn_if_faulty(&config.fault);
    let engine = build_engine(&config);
    start_streams(&engine, config.backoff);
    start_source(&engine, &config);
    if let Some(client) = report_client {
        start_reporter(&engine, client, config.report_interval);
    }
    if config.fault.mode == FaultMode::BlockRuntime {
        start_block_runtime_fault(&engine, config.fault.after);
    }
    let shutdown = CancellationToken::new();
    let (health, health_service) = start_health(&engine, &shutdown);
    let grpc = serve_grpc(&engine, listeners.grpc, health_service, &shutdown, &config)?;
    let http = serve_http(&engine, listeners.http, &shutdown);
    let admin = listeners
        .admin
        .map(|l| AdminServer::start(l, engine.clone(), shutdown.clone()))
        .transpose()
        .map_err(StartError::Admin)?;
    let running = Running {
        engine,
        grpc_addr: listeners.grpc_addr,
        http_addr: listeners.http_addr,
        admin_addr: admin.as_ref().map(|a| a.addr),
        shutdown,
        grpc,
        http,
        health,
        admin,
        grace: config.shutdown_grace,
    };
    log_serving(&running, &config);
    Ok(running)
}

/// Fills in the default stream and refuses what the servers cannot run with.
fn validate(config: &mut Config) -> Result<(), StartError> {
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
    Ok(())
}

/// Every listener, bound before any task starts so that a taken port fails `start` at once.
struct Listeners {
    grpc: tokio::net::TcpListener,
    grpc_addr: SocketAddr,
    http: tokio::net::TcpListener,
    http_addr: SocketAddr,
    /// Stays a std listener: the admin server runs on its own thread and runtime.
    admin: Option<std::net::TcpListener>,
}

impl Listeners {
    fn bind(config: &Config) -> Result<Self, StartError> {
        let grpc = bind("gRPC", config.grpc_addr)?;
        let http = bind("HTTP", config.http_addr)?;
        let admin = config.admin_addr.map(|a| bind("admin", a)).transpose()?;
        let (grpc, grpc_addr) = into_tokio("gRPC", config.grpc_addr, grpc)?;
        let (http, http_addr) = into_tokio("HTTP", config.http_addr, http)?;
        Ok(Self {
            grpc,
            grpc_addr,
            http,
            http_addr,
            admin,
        })
    }
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { what, addr, source })
}

/// The tokio listener and the address it actually listens on (the configured port may be 0).
///
/// `configured` names the listener in an error from `local_addr()`. That call cannot be made
/// to fail on a socket that was just bound (it is a `getsockname` on a valid descriptor), so
/// no test provokes it; the error used to name the gRPC address for every listener.
fn into_tokio(
    what: &'static str,
    configured: SocketAddr,
    listener: std::net::TcpListener,
) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        what,
        addr: configured,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map(|l| (l, addr))
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// `None` when reporting is disabled.
fn report_client(config: &Config) -> Result<Option<ReportClient>, StartError> {
    config
        .report_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| ReportClient::new(u, send_timeout(config.report_interval)))
        .transpose()
        .map_err(StartError::ReportClient)
}

fn warn_if_faulty(fault: &FaultConfig) {
    if fault.mode != FaultMode::None {
        tracing::warn!(
            fault = %fault.mode,
            stream = ?fault.stream,
            after = ?fault.after,
            "FAULT INJECTION ENABLED: this process is deliberately broken; never use in production"
        );
    }
}

/// The streams, their dispatcher spawners and the shared state; nothing runs yet.
fn build_engine(config: &Config) -> Arc<Engine> {
    let streams = build_streams(config);
    let registry = TaskRegistry::new();
    let spawners = dispatcher_spawners(config, &streams, &registry);
    Arc::new(Engine::new(
        streams,
        spawners,
        registry,
        Arc::new(ErrorLog::new(64)),
        config.report_interval,
        config.stuck_after,
    ))
}

/// One runtime per configured stream; a stream the `legacy-unsupervised` fault applies to is
/// built unsupervised.
fn build_streams(config: &Config) -> Arc<[Arc<StreamRuntime>]> {
    let fault = &config.fault;
    config
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
        .collect::<Vec<_>>()
        .into()
}

/// For each stream, a function that starts a fresh dispatcher task (the supervisor and the
/// admin restart call it again later).
fn dispatcher_spawners(
    config: &Config,
    streams: &[Arc<StreamRuntime>],
    registry: &Arc<TaskRegistry>,
) -> Vec<Spawner> {
    let handle = Handle::current();
    let fault = &config.fault;
    let hang = HangFault::new(Instant::now() + fault.after);
    streams
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
        .collect()
}

/// Starts every stream's dispatcher: under a supervisor, or (legacy) on its own.
fn start_streams(engine: &Arc<Engine>, backoff: Backoff) {
    let handle = Handle::current();
    for (index, stream) in engine.streams().iter().enumerate() {
        let spawn = engine.spawner(index);
        if stream.supervised {
            let task = engine.registry().spawn(
                &handle,
                format!("supervisor/{}", stream.name()),
                TaskKind::Supervisor,
                Some(stream.name()),
                supervise(stream.clone(), spawn, engine.errors().clone(), backoff),
            );
            stream.set_supervisor(task.abort_handle());
            engine.keep(task.abort_handle());
        } else {
            start_unsupervised(&handle, stream, spawn, engine.errors().clone());
        }
    }
}

/// The story's setup: one fire-and-forget task. Nothing restarts it and nothing logs or
/// reports its end. But like the story's faulted Task object, which still held its exception
/// on the heap, the error stays in memory where only a dump finds it: the dump's error log,
/// nowhere else.
fn start_unsupervised(
    handle: &Handle,
    stream: &StreamRuntime,
    spawn: Spawner,
    errors: Arc<ErrorLog>,
) {
    let task = spawn();
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

fn start_source(engine: &Arc<Engine>, config: &Config) {
    let task = engine.registry().spawn(
        &Handle::current(),
        format!("source/{}", config.source.kind()),
        TaskKind::Source,
        None,
        run_source(
            config.source.clone(),
            config.source_options,
            engine.ingest(),
        ),
    );
    engine.keep(task.abort_handle());
}

fn start_reporter(engine: &Arc<Engine>, client: ReportClient, interval: Duration) {
    tracing::info!(url = client.url(), ?interval, "reporting to the sidecar");
    let build_engine = engine.clone();
    let task = engine.registry().spawn(
        &Handle::current(),
        "reporter",
        TaskKind::Reporter,
        None,
        run_reporter(
            client,
            interval,
            engine.reporter_stats_handle(),
            move |seq| build_engine.report(seq),
        ),
    );
    engine.keep(task.abort_handle());
}

/// The `block-runtime` fault: after `after`, one task per worker thread that blocks it.
fn start_block_runtime_fault(engine: &Arc<Engine>, after: Duration) {
    let handle = Handle::current();
    let registry = engine.registry().clone();
    let worker_handle = handle.clone();
    let task = engine.registry().spawn(
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
                registry.spawn(
                    &worker_handle,
                    format!("fault/block-runtime/worker-{i}"),
                    TaskKind::Other,
                    None,
                    crate::serve::fault::block_this_worker(),
                );
            }
        },
    );
    engine.keep(task.abort_handle());
}

/// The gRPC health service and the task that keeps its statuses current.
fn start_health(
    engine: &Arc<Engine>,
    shutdown: &CancellationToken,
) -> (JoinHandle<()>, HealthServer<impl Health>) {
    let (health_reporter, health_service) = crate::serve::grpc::health();
    let task = engine.registry().spawn(
        &Handle::current(),
        "health",
        TaskKind::Other,
        None,
        crate::serve::grpc::run_health_updater(
            engine.clone(),
            health_reporter,
            Duration::from_millis(250),
            shutdown.clone(),
        ),
    );
    (task, health_service)
}

/// TransitBroadcaster, health and reflection (v1 and v1alpha) on the gRPC listener, served
/// by the configured HTTP/2 server.
fn serve_grpc(
    engine: &Arc<Engine>,
    listener: tokio::net::TcpListener,
    health_service: HealthServer<impl Health>,
    shutdown: &CancellationToken,
    config: &Config,
) -> Result<JoinHandle<()>, StartError> {
    let (reflection, reflection_alpha) = reflection()?;
    let service = crate::serve::grpc::TransitService::new(engine.clone(), shutdown.clone());
    let serve: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        match config.grpc_server {
            GrpcServer::Lean => {
                let routes = tonic::service::Routes::new(health_service)
                    .add_service(reflection)
                    .add_service(reflection_alpha)
                    .add_service(crate::serve::grpc::transit_server(service.clone()));
                Box::pin(crate::serve::lean::serve(
                    listener,
                    crate::serve::lean::Services {
                        transit: service,
                        routes,
                        shutdown: shutdown.clone(),
                        grace: config.shutdown_grace,
                        limits_exceeded: engine.h2_limits_exceeded().clone(),
                    },
                ))
            }
            GrpcServer::Tonic => Box::pin(serve_tonic(
                listener,
                health_service,
                reflection,
                reflection_alpha,
                service,
                shutdown.clone(),
            )),
        };
    Ok(engine.registry().spawn(
        &Handle::current(),
        "server/grpc",
        TaskKind::Server,
        None,
        serve,
    ))
}

type Reflection<T> = tonic_reflection::server::v1::ServerReflectionServer<T>;
type ReflectionAlpha<T> = tonic_reflection::server::v1alpha::ServerReflectionServer<T>;

/// Server reflection v1 and v1alpha over our protos and gRPC health's.
fn reflection() -> Result<
    (
        Reflection<impl tonic_reflection::server::v1::ServerReflection>,
        ReflectionAlpha<impl tonic_reflection::server::v1alpha::ServerReflection>,
    ),
    StartError,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::generated::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(StartError::Reflection)?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::generated::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(StartError::Reflection)?;
    Ok((v1, v1alpha))
}

/// tonic's server (hyper, h2): `--grpc-server tonic`.
async fn serve_tonic(
    listener: tokio::net::TcpListener,
    health_service: HealthServer<impl Health>,
    reflection: Reflection<impl tonic_reflection::server::v1::ServerReflection>,
    reflection_alpha: ReflectionAlpha<impl tonic_reflection::server::v1alpha::ServerReflection>,
    service: crate::serve::grpc::TransitService,
    shutdown: CancellationToken,
) {
    // TcpIncoming sets TCP_NODELAY on every accepted socket (`Server::tcp_nodelay` only
    // applies to listeners tonic binds itself): without it Nagle's algorithm holds back
    // small updates for milliseconds at moderate rates.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(crate::serve::grpc::transit_server(service))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::error!("gRPC server: {e}");
    }
}

/// `/metrics` and `/healthz` on the public HTTP listener.
fn serve_http(
    engine: &Arc<Engine>,
    listener: tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let router = crate::serve::http_endpoints::public_router(engine.clone());
    let shutdown = shutdown.clone();
    engine.registry().spawn(
        &Handle::current(),
        "server/http",
        TaskKind::Server,
        None,
        async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!("HTTP server: {e}");
            }
        },
    )
}

fn log_serving(running: &Running, config: &Config) {
    tracing::info!(
        grpc_addr = %running.grpc_addr,
        http_addr = %running.http_addr,
        admin_addr = %running.admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        source = config.source.kind(),
        streams = %config.streams.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" "),
        instance = running.engine.instance(),
        grpc_server = %config.grpc_server,
        "transit-broadcaster serving"
    );
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
        self.engine.abort_tasks();
        if let Some(admin) = self.admin {
            let _ = tokio::task::spawn_blocking(move || admin.join()).await;
        }
        tracing::info!("shut down");
    }
}
