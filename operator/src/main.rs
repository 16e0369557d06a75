//! `transit-operator run` reconciles TransitStreams; `transit-operator crd` prints the CRD;
//! `transit-operator rbac` prints the permissions it uses; `transit-operator metrics` prints the
//! metrics it exports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use transit_operator::http::{HttpState, router};
use transit_operator::leader::{Elector, KubeLeases};
use transit_operator::metrics::Metrics;
use transit_operator::reconcile::{Context, Settings, system_clock};
use transit_operator::run::{Scope, run_controller};
use transit_operator::sidecar::HttpSidecar;

#[derive(Parser)]
#[command(name = "transit-operator", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile TransitStreams.
    Run(RunArgs),
    /// Print the TransitStream CRD as YAML (crds/transitstream.yaml is this output).
    Crd,
    /// Print, as YAML, the RBAC rules this build of the operator uses (the chart grants them).
    Rbac,
    /// Print the metrics this build exports (OpenMetrics text, no series): what alert rules
    /// and dashboards may name, without a cluster.
    Metrics,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    namespace: String,
    /// Broadcaster+sidecar image for TransitStreams that name none.
    #[arg(long, env = "DEFAULT_IMAGE", default_value = concat!("stallwatch:", env!("CARGO_PKG_VERSION")))]
    default_image: String,
    /// Address of /metrics, /healthz, /readyz.
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Elect a leader with a Lease (run two replicas, one active).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "stallwatch-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration; renewed every third of it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// Operator-wide cap on remediations in flight.
    #[arg(long, env = "MAX_CONCURRENT_REMEDIATIONS", default_value_t = 2)]
    max_concurrent_remediations: usize,
    /// Bound on one reconcile (API and sidecar calls included).
    #[arg(long, env = "RECONCILE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    reconcile_timeout: Duration,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", stallwatch_crds::crd_yaml());
            Ok(())
        }
        Command::Rbac => {
            print!("{}", transit_operator::rbac::yaml());
            Ok(())
        }
        Command::Metrics => {
            print!("{}", transit_operator::metrics::catalog());
            Ok(())
        }
        Command::Run(args) => {
            init_tracing(cli.log_format);
            run(args).await
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let app = router(HttpState {
        registry: Arc::new(registry),
        ready: ready_rx,
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });

    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("transit-operator-{}", std::process::id()));
    let (lead_tx, mut lead_rx) = watch::channel(!args.leader_election);
    let elector_task = if args.leader_election {
        // A follower is ready: it is healthy and standing by.
        ready_tx.send_replace(true);
        let elector = Elector {
            store: KubeLeases::new(client.clone(), &args.lease_namespace, &args.lease_name),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: args.lease_duration,
        };
        let clock = system_clock();
        let stop = stop_rx.clone();
        Some(tokio::spawn(async move {
            elector.run(lead_tx, move || clock(), stop).await;
        }))
    } else {
        None
    };

    // Wait to lead (or to be told to stop).
    let mut stop_wait = stop_rx.clone();
    tokio::select! {
        r = lead_rx.wait_for(|l| *l) => { r.context("leader election ended")?; }
        _ = stop_wait.wait_for(|s| *s) => {
            if let Some(t) = elector_task { let _ = t.await; }
            return Ok(());
        }
    }
    metrics.leader.set(1);
    tracing::info!(identity = %identity, "leading; starting the controller");
    ready_tx.send_replace(false);

    let scope = if args.namespace.is_empty() {
        Scope::All
    } else {
        Scope::Namespace(args.namespace.clone())
    };
    let settings = Settings {
        default_image: args.default_image.clone(),
        max_concurrent_remediations: args.max_concurrent_remediations,
        reconcile_timeout: args.reconcile_timeout,
        instance: Some(identity.clone()),
    };
    let mut stop_ctl = stop_rx.clone();
    let mut lost = lead_rx.clone();
    let shutdown = async move {
        tokio::select! {
            _ = stop_ctl.wait_for(|s| *s) => {}
            _ = lost.wait_for(|l| !*l) => { tracing::warn!("leadership lost; stopping the controller"); }
        }
    };
    let ctl_client = client.clone();
    run_controller(
        client,
        scope,
        move |pods, streams| {
            Arc::new(Context::new(
                ctl_client,
                settings,
                pods,
                streams,
                Arc::new(HttpSidecar::new()),
                metrics.clone(),
                system_clock(),
            ))
        },
        ready_tx,
        shutdown,
    )
    .await;
    let stopping = *stop_rx.borrow();
    if let Some(t) = elector_task {
        if stopping {
            let _ = t.await;
        } else {
            t.abort();
        }
    }
    if !stopping {
        // Lost the lease while running: exit so the pod restarts as a clean follower.
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}
