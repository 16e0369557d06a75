//! `transit-operator run` reconciles TransitStreams; `transit-operator crd` prints the CRD;
//! `transit-operator rbac` prints the permissions it uses; `transit-operator metrics` prints the
//! metrics it exports. This file only parses the CLI: the start-up is `transit_operator::run`.
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use stallwatch_core::ports;
use transit_operator::run::{Config, DEFAULT_WORKER_THREADS, WebhookConfig, run, runtime};
use transit_operator::webhook::registration::CertSource;
use transit_operator::webhook::tls::serving_names;

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
    Run(Box<RunArgs>),
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
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value_t = ports::any(ports::OPERATOR_HTTP))]
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
    /// The operator's own Deployment, owner of the Lease and the webhook's certificate Secret
    /// so that uninstalling (deleting it) removes them; empty: no owner.
    #[arg(long, env = "OPERATOR_DEPLOYMENT", default_value = "")]
    operator_deployment: String,
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
    /// Runtime worker threads besides the main one (which polls the controller); each costs
    /// memory (a malloc arena), see `operator/README.md`.
    #[arg(long, env = "WORKER_THREADS", default_value_t = DEFAULT_WORKER_THREADS,
          value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: u16,
    /// `/healthz` fails once the controller loop (or the leader elector's, whose bound is at
    /// least the lease duration) has not gone round for this long.
    #[arg(long, env = "LIVENESS_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    liveness_timeout: Duration,
    /// After SIGTERM/SIGINT the process exits within this, whatever it was doing; keep it
    /// below the pod's terminationGracePeriodSeconds (the chart's: 30 s).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Test hook, hidden: loops to wedge (`controller`, `elector`), so tests can show that
    /// `/healthz` fails when a loop stops going round.
    #[arg(long, env = transit_operator::health::WEDGE_ENV, default_value = "", hide = true)]
    test_wedge: String,
    #[command(flatten)]
    webhook: WebhookArgs,
}

/// The sidecar-injection webhook (for TransitStreams with a `workloadRef`).
#[derive(clap::Args)]
struct WebhookArgs {
    /// HTTPS address of the webhook; empty serves none.
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "")]
    webhook_addr: String,
    /// The webhook's Service (its DNS names go in the serving certificate).
    #[arg(long, env = "WEBHOOK_SERVICE", default_value = "stallwatch-webhook")]
    webhook_service: String,
    /// One more name (DNS name or IP) for the serving certificate: the host of a
    /// `clientConfig.url` (out-of-cluster, tests).
    #[arg(long, env = "WEBHOOK_HOST")]
    webhook_host: Option<String>,
    /// The MutatingWebhookConfiguration whose caBundle the operator keeps current.
    #[arg(long, env = "WEBHOOK_CONFIGURATION", default_value = "stallwatch")]
    webhook_configuration: String,
    /// The Secret (in the operator's namespace) holding the webhook's certificates.
    #[arg(long, env = "WEBHOOK_SECRET", default_value = "stallwatch-webhook-tls")]
    webhook_secret: String,
    /// Serve tls.crt/tls.key from this directory (cert-manager) instead of the operator's own CA.
    #[arg(long, env = "WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// Lifetime of a generated certificate; rotated with a third of it left.
    #[arg(long, env = "WEBHOOK_CERT_VALIDITY", default_value = "90days", value_parser = humantime::parse_duration)]
    webhook_cert_validity: Duration,
    /// How often the certificate and the caBundle are checked (and files reloaded).
    #[arg(long, env = "WEBHOOK_CERT_CHECK", default_value = "1m", value_parser = humantime::parse_duration)]
    webhook_cert_check: Duration,
}

impl WebhookArgs {
    fn config(&self, namespace: &str) -> anyhow::Result<Option<WebhookConfig>> {
        if self.webhook_addr.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = self
            .webhook_addr
            .parse()
            .map_err(|e| anyhow::anyhow!("--webhook-addr {:?}: {e}", self.webhook_addr))?;
        let certs = match &self.webhook_cert_dir {
            Some(dir) => CertSource::Files { dir: dir.clone() },
            None => CertSource::SelfManaged {
                namespace: namespace.to_string(),
                secret: self.webhook_secret.clone(),
                configuration: self.webhook_configuration.clone(),
                names: serving_names(
                    &self.webhook_service,
                    namespace,
                    self.webhook_host.as_deref(),
                ),
                validity: self.webhook_cert_validity,
            },
        };
        Ok(Some(WebhookConfig {
            addr,
            certs,
            check_every: self.webhook_cert_check,
        }))
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(
        stallwatch_core::logging::ansi_colours(
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            std::env::var_os("NO_COLOR").as_deref(),
        ),
    );
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
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
            transit_operator::owner::set_deployment(&args.operator_deployment);
            let workers = args.worker_threads;
            let config = (*args).into_config()?;
            let runtime = runtime(workers)?;
            let result = runtime.block_on(run(config));
            // Never wait on a task that does not end (a blocked DNS lookup, a wedged loop).
            runtime.shutdown_timeout(Duration::from_secs(1));
            Ok(result?)
        }
    }
}

impl RunArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let a = self;
        let webhook = a.webhook.config(&a.lease_namespace)?;
        Ok(Config {
            namespace: a.namespace,
            default_image: a.default_image,
            http_addr: a.http_addr,
            leader_election: a.leader_election,
            lease_name: a.lease_name,
            lease_namespace: a.lease_namespace,
            identity: a.identity,
            lease_duration: a.lease_duration,
            max_concurrent_remediations: a.max_concurrent_remediations,
            reconcile_timeout: a.reconcile_timeout,
            webhook,
            liveness_timeout: a.liveness_timeout,
            shutdown_grace: a.shutdown_grace,
            test_wedge: a.test_wedge,
        })
    }
}
