//! `transit-sidecar run` as a process, its status and admin API, and `transit-sidecar inspect`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use stallwatch_core::bundle::Manifest;
use stallwatch_core::condition::StallReason;

use crate::free_port;
use crate::metrics::Metrics;
use crate::process::{Env, Proc, bin, wait_until};

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
        let done = &done;
        wait_until(
            what,
            timeout,
            Duration::from_millis(every_ms),
            || async move { self.status().await.ok().filter(|s| done(s)) },
        )
        .await
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
