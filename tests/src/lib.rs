//! Harness for running the real Stallwatch binaries as processes: the end-to-end tests, the
//! local demo (`stallwatch-demo`) and the whole-loop benchmark (`stallwatch-loop-bench`).
//!
//! - Binaries are found in the workspace target dir (next to the running executable,
//!   `CARGO_TARGET_DIR/debug` or `<workspace>/target/debug`); a missing one is a clear error
//!   ("run `cargo build --workspace --bins` first"), never a silent skip.
//! - Every process gets free loopback ports, a log file under the [`Env`]'s temp dir, and is
//!   killed on drop; when a test panics, the tail of each process's log is printed.
//! - Typed clients for the sidecar's `/v1/status` and admin API, the broadcaster's metrics,
//!   health and admin endpoints, and a subscriber (`transit-broadcaster subscribe --json`).
//!
//! Depends on `stallwatch-core` and `stallwatch-testkit` (free ports) only; the other crates
//! are run, never linked.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use stallwatch_core::bundle::Manifest;
use stallwatch_core::condition::StallReason;

/// The admin token every harness sidecar uses.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

pub use stallwatch_core::clock::now_ms;
pub use stallwatch_testkit::net::free_port;

/// The directory holding the workspace's debug binaries.
pub fn bin_dir() -> PathBuf {
    // Next to the running executable (target/debug for bins, target/debug/deps for tests).
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            if dir.join("transit-broadcaster").exists() || dir.join("transit-sidecar").exists() {
                return dir.to_path_buf();
            }
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("debug");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("target")
        .join("debug")
}

/// The path of a workspace binary, or an error telling how to build it.
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first",
            p.display()
        )
    }
}

/// Poll `f` every `every` until it yields `Some`, or fail after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// The last `lines` lines of a file (lossy UTF-8), at most the last 64 KiB of it.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process with its log file; killed on drop. When the current thread is panicking
/// (a failing test), the log's tail is printed to stderr.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Spawn `cmd` with stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("NO_COLOR", "1");
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.into(),
            log,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kill (SIGKILL) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send SIGTERM and wait up to `grace` for exit; SIGKILL after. Returns the exit code.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok().and_then(|s| s.code())
    }

    pub fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- last lines of {} ({}) -----\n{}\n-----",
                self.name,
                self.log.display(),
                self.tail(40)
            );
        }
    }
}

/// A scratch directory for one scenario: logs, the admin token, dump dirs.
pub struct Env {
    dir: tempfile::TempDir,
    logs: PathBuf,
    pub http: reqwest::Client,
}

impl Env {
    /// A fresh scratch dir with its logs inside it.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("stallwatch-e2e-")
            .tempdir()?;
        let logs = dir.path().join("logs");
        Self::with_logs(dir, logs)
    }

    fn with_logs(dir: tempfile::TempDir, logs: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&logs)?;
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Env { dir, logs, http })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("admin-token")
    }

    /// Keep the directory after the scenario (the demo prints paths into it).
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// Run one end-to-end scenario on its own runtime. On error, the tail of every process log it
/// wrote is printed, then the test fails with the error.
pub fn scenario<F, Fut>(f: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let logs = tempfile::Builder::new()
        .prefix("stallwatch-e2e-logs-")
        .tempdir()
        .expect("temp dir");
    let dir = tempfile::Builder::new()
        .prefix("stallwatch-e2e-")
        .tempdir()
        .expect("temp dir");
    let env = Env::with_logs(dir, logs.path().to_path_buf()).expect("scenario env");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(f(env));
    drop(rt);
    if let Err(e) = result {
        let mut names: Vec<PathBuf> = std::fs::read_dir(logs.path())
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for p in names {
            eprintln!(
                "----- last lines of {} -----\n{}\n-----",
                p.display(),
                tail(&p, 40)
            );
        }
        panic!("{e:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// Broadcaster

/// How to run `transit-broadcaster serve`.
#[derive(Debug, Clone)]
pub struct BroadcasterOpts {
    pub source: String,
    pub streams: Vec<String>,
    pub fault: Option<String>,
    pub fault_stream: Option<String>,
    pub fault_after: Option<String>,
    pub channel_capacity: Option<u32>,
    pub subscriber_queue: Option<u32>,
    pub report_interval: String,
    /// `None`: no reports.
    pub report_url: Option<String>,
    pub extra: Vec<String>,
}

impl BroadcasterOpts {
    pub fn new(source: &str) -> Self {
        BroadcasterOpts {
            source: source.into(),
            streams: Vec::new(),
            fault: None,
            fault_stream: None,
            fault_after: None,
            channel_capacity: None,
            subscriber_queue: None,
            report_interval: "250ms".into(),
            report_url: None,
            extra: Vec::new(),
        }
    }

    pub fn report_to(mut self, sidecar: &Sidecar) -> Self {
        self.report_url = Some(sidecar.ingest_url());
        self
    }

    pub fn fault(mut self, mode: &str) -> Self {
        self.fault = Some(mode.into());
        self
    }
}

/// A running broadcaster with its ports; `restart` keeps the ports.
pub struct Broadcaster {
    pub proc: Proc,
    pub grpc: u16,
    pub http_port: u16,
    pub admin: u16,
    opts: BroadcasterOpts,
    log: PathBuf,
    http: reqwest::Client,
    pub starts: u32,
}

impl Broadcaster {
    pub fn spawn(env: &Env, name: &str, opts: BroadcasterOpts) -> Result<Self> {
        let (grpc, http_port, admin) = (free_port(), free_port(), free_port());
        let log = env.log_path(name);
        let proc = Self::start(&log, grpc, http_port, admin, &opts)?;
        Ok(Broadcaster {
            proc,
            grpc,
            http_port,
            admin,
            opts,
            log,
            http: env.http.clone(),
            starts: 1,
        })
    }

    fn start(log: &Path, grpc: u16, http: u16, admin: u16, o: &BroadcasterOpts) -> Result<Proc> {
        let mut cmd = Command::new(bin("transit-broadcaster")?);
        cmd.arg("serve")
            .arg(format!("--grpc-addr=127.0.0.1:{grpc}"))
            .arg(format!("--http-addr=127.0.0.1:{http}"))
            .arg(format!("--admin-addr=127.0.0.1:{admin}"))
            .arg(format!("--source={}", o.source))
            .arg(format!("--report-interval={}", o.report_interval))
            .arg(format!(
                "--report-url={}",
                o.report_url.clone().unwrap_or_default()
            ));
        for s in &o.streams {
            cmd.arg(format!("--stream={s}"));
        }
        if let Some(f) = &o.fault {
            cmd.arg(format!("--fault={f}"));
        }
        if let Some(f) = &o.fault_stream {
            cmd.arg(format!("--fault-stream={f}"));
        }
        if let Some(f) = &o.fault_after {
            cmd.arg(format!("--fault-after={f}"));
        }
        if let Some(n) = o.channel_capacity {
            cmd.arg(format!("--channel-capacity={n}"));
        }
        if let Some(n) = o.subscriber_queue {
            cmd.arg(format!("--subscriber-queue={n}"));
        }
        cmd.args(&o.extra).env("RUST_LOG", "info");
        let name = log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "broadcaster".into());
        Proc::spawn(&name, cmd, log.to_path_buf())
    }

    /// Kill the process and start it again with the same options and ports (the local stand-in
    /// for deleting the pod). `opts` may be changed first with [`Broadcaster::opts_mut`].
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        self.proc = Self::start(&self.log, self.grpc, self.http_port, self.admin, &self.opts)?;
        self.starts += 1;
        Ok(())
    }

    pub fn opts_mut(&mut self) -> &mut BroadcasterOpts {
        &mut self.opts
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// Wait until `/healthz` answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/healthz", self.http_port);
        let start = Instant::now();
        loop {
            if self.http.get(&url).send().await.is_ok() {
                return Ok(());
            }
            if !self.proc.alive() {
                bail!(
                    "transit-broadcaster exited at start:\n{}",
                    self.proc.tail(20)
                );
            }
            if start.elapsed() > timeout {
                bail!("transit-broadcaster /healthz did not answer within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/healthz`: HTTP status and body.
    pub async fn healthz(&self) -> Result<(u16, String)> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}/healthz", self.http_port))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        let code = r.status().as_u16();
        Ok((code, r.text().await?))
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }

    /// `GET /debug/dump` on the loopback admin port: the in-process task dump.
    pub async fn task_dump(&self) -> Result<stallwatch_core::taskdump::TaskDump> {
        Ok(self
            .http
            .get(format!("{}/debug/dump?timeout_ms=2000", self.admin_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// Prometheus text, parsed into `(name, labels) -> value`.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub BTreeMap<(String, String), f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, l)) => (n.to_string(), l.trim_end_matches('}').to_string()),
                None => (key.to_string(), String::new()),
            };
            m.insert((name, labels), v);
        }
        Metrics(m)
    }

    /// The sum of `name` over the series whose labels contain every `label="value"` given.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// A broadcaster per-stream series, e.g. `stream("dequeued_total", "all")`.
    pub fn stream(&self, short: &str, stream: &str) -> u64 {
        self.sum(
            &format!("stallwatch_broadcaster_{short}"),
            &[("stream", stream)],
        ) as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Sidecar

/// How to run `transit-sidecar run`.
#[derive(Debug, Clone)]
pub struct SidecarOpts {
    pub stall_after: String,
    pub report_timeout: String,
    pub recover_after: String,
    pub dump_dir: PathBuf,
    /// The admin API's listen address (default 127.0.0.1, a free port).
    pub admin_host: String,
    pub admin_port: Option<u16>,
    pub extra: Vec<String>,
}

impl SidecarOpts {
    pub fn new(dump_dir: PathBuf) -> Self {
        SidecarOpts {
            stall_after: "1s".into(),
            report_timeout: "1s".into(),
            recover_after: "500ms".into(),
            dump_dir,
            admin_host: "127.0.0.1".into(),
            admin_port: None,
            extra: Vec::new(),
        }
    }
}

/// `GET /v1/status` (`transit_sidecar::monitor::Status`).
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub last_report_ms: Option<u64>,
    #[serde(default)]
    pub streams: Vec<StreamStatus>,
    #[serde(default)]
    pub dump_storage: Option<DumpStorage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamStatus {
    pub name: String,
    pub verdict: String,
    #[serde(default)]
    pub reason: Option<StallReason>,
    #[serde(default)]
    pub since_ms: Option<u64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub depth: Option<u64>,
    #[serde(default)]
    pub capacity: Option<u64>,
    #[serde(default)]
    pub dispatcher: Option<String>,
    #[serde(default)]
    pub secs_since_dequeue: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DumpStorage {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub since_ms: Option<u64>,
}

impl Status {
    pub fn stream(&self, name: &str) -> Option<&StreamStatus> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The stall reason of `name`, if it is stalled.
    pub fn stalled(&self, name: &str) -> Option<StallReason> {
        self.stream(name)
            .filter(|s| s.verdict == "stalled")
            .and_then(|s| s.reason)
    }
}

/// `GET /v1/dumps` entries.
#[derive(Debug, Clone, Deserialize)]
pub struct BundleEntry {
    pub path: String,
    #[serde(default)]
    pub created_at_ms: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct BundleList {
    bundles: Vec<BundleEntry>,
}

/// The answer to `POST /v1/dumps`.
#[derive(Debug)]
pub enum DumpAnswer {
    Captured(Box<Manifest>),
    Refused { status: u16, error: String },
}

/// A running sidecar; `restart` keeps its ports and dump dir.
pub struct Sidecar {
    pub proc: Proc,
    pub ingest: u16,
    pub http_port: u16,
    pub admin: u16,
    pub opts: SidecarOpts,
    broadcaster_admin_url: String,
    token_file: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Sidecar {
    /// `broadcaster_admin` is the broadcaster's admin port (its task dump and restart).
    pub fn spawn(env: &Env, name: &str, broadcaster_admin: u16, opts: SidecarOpts) -> Result<Self> {
        std::fs::create_dir_all(&opts.dump_dir)?;
        let (ingest, http_port) = (free_port(), free_port());
        let admin = opts.admin_port.unwrap_or_else(free_port);
        let log = env.log_path(name);
        let url = format!("http://127.0.0.1:{broadcaster_admin}");
        let token_file = env.token_file();
        let proc = Self::start(&log, ingest, http_port, admin, &url, &token_file, &opts)?;
        Ok(Sidecar {
            proc,
            ingest,
            http_port,
            admin,
            opts,
            broadcaster_admin_url: url,
            token_file,
            log,
            http: env.http.clone(),
        })
    }

    fn start(
        log: &Path,
        ingest: u16,
        http: u16,
        admin: u16,
        broadcaster_url: &str,
        token_file: &Path,
        o: &SidecarOpts,
    ) -> Result<Proc> {
        let mut cmd = Command::new(bin("transit-sidecar")?);
        cmd.arg("run")
            .arg(format!("--ingest-addr=127.0.0.1:{ingest}"))
            .arg(format!("--http-addr=127.0.0.1:{http}"))
            .arg(format!("--admin-addr={}:{admin}", o.admin_host))
            .arg(format!("--admin-token-file={}", token_file.display()))
            .arg(format!("--broadcaster-admin-url={broadcaster_url}"))
            .arg(format!("--stall-after={}", o.stall_after))
            .arg(format!("--report-timeout={}", o.report_timeout))
            .arg(format!("--recover-after={}", o.recover_after))
            .arg(format!("--dump-dir={}", o.dump_dir.display()))
            .args([
                "--pod-name=broadcaster-0",
                "--pod-namespace=local",
                "--node-name=laptop",
                "--publish=off",
            ])
            .args(&o.extra)
            .env("RUST_LOG", "info");
        Proc::spawn("transit-sidecar", cmd, log.to_path_buf())
    }

    /// Kill and start again with the same ports, dump dir and options.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        self.proc = Self::start(
            &self.log,
            self.ingest,
            self.http_port,
            self.admin,
            &self.broadcaster_admin_url,
            &self.token_file,
            &self.opts,
        )?;
        Ok(())
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}:{}", self.opts.admin_host, self.admin)
    }

    pub fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/reports", self.ingest)
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/healthz", self.http_port);
        let start = Instant::now();
        loop {
            if self.http.get(&url).send().await.is_ok() {
                return Ok(());
            }
            if !self.proc.alive() {
                bail!("transit-sidecar exited at start:\n{}", self.proc.tail(20));
            }
            if start.elapsed() > timeout {
                bail!("transit-sidecar /healthz did not answer within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn status(&self) -> Result<Status> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}/v1/status", self.http_port))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .error_for_status()?;
        let text = r.text().await?;
        serde_json::from_str(&text).with_context(|| format!("unexpected /v1/status: {text}"))
    }

    pub async fn readyz(&self) -> Result<u16> {
        Ok(self
            .http
            .get(format!("http://127.0.0.1:{}/readyz", self.http_port))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .status()
            .as_u16())
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }

    /// Total stall detections so far (`stallwatch_sidecar_detections_total`, all reasons).
    pub async fn detections(&self) -> Result<u64> {
        Ok(self
            .metrics()
            .await?
            .sum("stallwatch_sidecar_detections_total", &[]) as u64)
    }

    fn token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.token_file)?
            .trim()
            .to_string())
    }

    /// `POST /v1/dumps` with the bearer token from the token file.
    pub async fn capture(
        &self,
        stream: Option<&str>,
        reason: Option<StallReason>,
        requested_by: &str,
    ) -> Result<DumpAnswer> {
        let mut body = serde_json::json!({ "requested_by": requested_by });
        if let Some(s) = stream {
            body["stream"] = s.into();
        }
        if let Some(r) = reason {
            body["reason"] = r.as_str().into();
        }
        let r = self
            .http
            .post(format!("{}/v1/dumps", self.admin_url()))
            .bearer_auth(self.token()?)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        if status == 201 {
            let m: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("unexpected manifest: {text}"))?;
            return Ok(DumpAnswer::Captured(Box::new(m)));
        }
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Ok(DumpAnswer::Refused { status, error })
    }

    /// `GET /v1/dumps`.
    pub async fn bundles(&self) -> Result<Vec<BundleEntry>> {
        let r = self
            .http
            .get(format!("{}/v1/dumps", self.admin_url()))
            .bearer_auth(self.token()?)
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json::<BundleList>().await?.bundles)
    }

    /// `POST /v1/streams/{name}/restart` through the sidecar: the HTTP status.
    pub async fn soft_restart(&self, stream: &str) -> Result<u16> {
        Ok(self
            .http
            .post(format!("{}/v1/streams/{stream}/restart", self.admin_url()))
            .bearer_auth(self.token()?)
            .send()
            .await?
            .status()
            .as_u16())
    }
}

/// `transit-sidecar inspect BUNDLE` (text, or JSON with `json`).
pub fn inspect(bundle: &Path, json: bool) -> Result<String> {
    let mut cmd = Command::new(bin("transit-sidecar")?);
    cmd.arg("inspect").arg(bundle);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().context("cannot run transit-sidecar inspect")?;
    if !out.status.success() {
        bail!(
            "transit-sidecar inspect failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Total size of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Subscriber

/// One update as `transit-broadcaster subscribe --json` prints it (the vehicles counted).
#[derive(Debug, Clone)]
pub struct Update {
    pub seq: u64,
    pub missed: u64,
    pub quarantined_entities: u64,
    pub vehicles: u64,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct SubscriberState {
    pub updates: u64,
    pub vehicles: u64,
    pub missed: u64,
    pub quarantined_entities: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Updates whose seq is not the previous one plus one.
    pub seq_gaps: u64,
    pub last_at: Option<Instant>,
    pub unparsable_lines: u64,
}

/// A `transit-broadcaster subscribe --json` child; a thread parses its stdout.
pub struct Subscriber {
    pub proc: Proc,
    pub state: Arc<Mutex<SubscriberState>>,
}

impl Subscriber {
    /// `extra`: e.g. `["--route=R1"]`. `delay_per_line` slows the reader down (a slow
    /// subscriber: the pipe fills, the gRPC stream backs up).
    pub fn spawn(
        env: &Env,
        name: &str,
        grpc_url: &str,
        stream: &str,
        delay_per_line: Option<Duration>,
    ) -> Result<Self> {
        let mut cmd = Command::new(bin("transit-broadcaster")?);
        cmd.arg("subscribe")
            .arg(format!("--addr={grpc_url}"))
            .arg(format!("--stream={stream}"))
            .arg("--json")
            .env("RUST_LOG", "warn")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let log = env.log_path(name);
        cmd.stderr(Stdio::from(
            File::options().create(true).append(true).open(&log)?,
        ));
        let mut child = cmd.spawn().context("cannot start the subscriber")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let state = Arc::new(Mutex::new(SubscriberState::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for line in BufReader::with_capacity(1 << 16, stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(d) = delay_per_line {
                    std::thread::sleep(d);
                }
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                match parse_update(&line) {
                    Some(u) => {
                        if let Some(prev) = s.last_seq
                            && u.seq != prev + 1
                        {
                            s.seq_gaps += 1;
                        }
                        s.first_seq.get_or_insert(u.seq);
                        s.last_seq = Some(u.seq);
                        s.updates += 1;
                        s.vehicles += u.vehicles;
                        s.missed += u.missed;
                        s.quarantined_entities += u.quarantined_entities;
                        s.last_at = Some(u.at);
                    }
                    None => s.unparsable_lines += 1,
                }
            }
        });
        Ok(Subscriber {
            proc: Proc {
                name: name.into(),
                log,
                child: Some(child),
            },
            state,
        })
    }

    pub fn updates(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).updates
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> SubscriberState {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        SubscriberState {
            updates: s.updates,
            vehicles: s.vehicles,
            missed: s.missed,
            quarantined_entities: s.quarantined_entities,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
            seq_gaps: s.seq_gaps,
            last_at: s.last_at,
            unparsable_lines: s.unparsable_lines,
        }
    }

    /// Wait until at least `n` more updates than `from` arrived.
    pub async fn wait_for(&mut self, from: u64, n: u64, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        loop {
            let now = self.updates();
            if now >= from + n {
                return Ok(now);
            }
            if start.elapsed() > timeout {
                bail!(
                    "subscriber got {} of {n} updates within {timeout:?}{}",
                    now - from,
                    if self.proc.alive() {
                        String::new()
                    } else {
                        format!(" (it exited: {})", self.proc.tail(5))
                    }
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn parse_update(line: &str) -> Option<Update> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Update {
        seq: v["seq"].as_u64()?,
        missed: v["missed"].as_u64().unwrap_or(0),
        quarantined_entities: v["quarantined_entities"].as_u64().unwrap_or(0),
        vehicles: v["vehicles"]
            .as_array()
            .map(|a| a.len() as u64)
            .unwrap_or(0),
        at: Instant::now(),
    })
}

// ---------------------------------------------------------------------------------------------
// A whole local pod: broadcaster + sidecar.

/// A broadcaster reporting to a sidecar, both ready: the local stand-in for one pod.
pub struct Pod {
    pub env: Env,
    pub sidecar: Sidecar,
    pub broadcaster: Broadcaster,
}

impl Pod {
    /// Start the sidecar first (so no report is refused), then the broadcaster. The sidecar's
    /// dump dir is `<env>/dumps`.
    pub async fn start(
        env: Env,
        broadcaster: BroadcasterOpts,
        tune: impl FnOnce(&mut SidecarOpts),
    ) -> Result<Self> {
        let admin = free_port();
        let mut so = SidecarOpts::new(env.path().join("dumps"));
        tune(&mut so);
        let mut sidecar = Sidecar::spawn(&env, "transit-sidecar", admin, so)?;
        sidecar.wait_ready(Duration::from_secs(20)).await?;
        let mut bo = broadcaster;
        bo.report_url = Some(sidecar.ingest_url());
        let log = env.log_path("transit-broadcaster");
        let (grpc, http_port) = (free_port(), free_port());
        let proc = Broadcaster::start(&log, grpc, http_port, admin, &bo)?;
        let mut broadcaster = Broadcaster {
            proc,
            grpc,
            http_port,
            admin,
            opts: bo,
            log,
            http: env.http.clone(),
            starts: 1,
        };
        broadcaster.wait_ready(Duration::from_secs(20)).await?;
        Ok(Pod {
            env,
            sidecar,
            broadcaster,
        })
    }

    /// Wait until the sidecar has a report for `stream`.
    pub async fn wait_reporting(&self, stream: &str, timeout: Duration) -> Result<Status> {
        self.wait_status(
            &format!("the sidecar to see stream {stream}"),
            timeout,
            50,
            |s| s.stream(stream).is_some(),
        )
        .await
    }

    /// Wait until `stream` is stalled; returns the status then.
    pub async fn wait_stalled(&self, stream: &str, timeout: Duration) -> Result<Status> {
        self.wait_status(
            &format!("a stall verdict on stream {stream}"),
            timeout,
            20,
            |s| s.stalled(stream).is_some(),
        )
        .await
    }

    /// Wait until `stream` is healthy again (the sidecar has seen the new instance's reports).
    pub async fn wait_healthy(&self, stream: &str, timeout: Duration) -> Result<Status> {
        self.wait_status(
            &format!("stream {stream} to be healthy"),
            timeout,
            50,
            |s| s.stream(stream).is_some_and(|st| st.verdict == "healthy"),
        )
        .await
    }

    /// Poll the sidecar's status every `every_ms` until `done` holds for it.
    async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        every_ms: u64,
        done: impl Fn(&Status) -> bool,
    ) -> Result<Status> {
        let sc = &self.sidecar;
        let done = &done;
        wait_until(
            what,
            timeout,
            Duration::from_millis(every_ms),
            || async move { sc.status().await.ok().filter(|s| done(s)) },
        )
        .await
    }
}

/// Fail with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { Err(anyhow!(msg())) }
}

pub mod remediate;

/// The first line of a JSON log (`--log-format json`) whose message contains `needle`: its
/// timestamp (ms since the epoch) and message.
pub fn find_log(path: &Path, needle: &str) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let msg = v["fields"]["message"].as_str()?;
        if !msg.contains(needle) {
            return None;
        }
        let ts: jiff::Timestamp = v["timestamp"].as_str()?.parse().ok()?;
        Some((ts.as_millisecond() as u64, line.to_string()))
    })
}

/// Like [`find_log`], the first matching line logged at or after `after_ms`.
pub fn find_log_after(path: &Path, needle: &str, after_ms: u64) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let msg = v["fields"]["message"].as_str()?;
        if !msg.contains(needle) {
            return None;
        }
        let ts: jiff::Timestamp = v["timestamp"].as_str()?.parse().ok()?;
        let ms = ts.as_millisecond() as u64;
        (ms >= after_ms).then(|| (ms, line.to_string()))
    })
}
