//! The Python example service (`examples/report-clients/python/transit_service.py`) as a
//! process: a broadcaster in another language reporting to a real sidecar, with its progress
//! table (`GET /v1/streams`) and fault controls (`POST /control/...`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::free_port;
use crate::process::{Env, Proc};

/// The interpreter the service runs on.
const PYTHON: &str = "python3";

/// Whether `python3` can be run here (scenarios skip, saying so, when it cannot).
pub fn python3_available() -> bool {
    Command::new(PYTHON)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The example service's script in this workspace.
pub fn transit_service_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("examples/report-clients/python/transit_service.py")
}

/// How to run `transit_service.py`.
#[derive(Debug, Clone)]
pub struct PythonServiceOpts {
    /// The sidecar's ingest URL (`--report-url`).
    pub report_url: String,
    /// `--supervised`: bad snapshots are quarantined, the dispatcher goes on.
    pub supervised: bool,
    pub extra: Vec<String>,
}

impl PythonServiceOpts {
    pub fn new(report_url: String) -> Self {
        PythonServiceOpts {
            report_url,
            supervised: false,
            extra: Vec::new(),
        }
    }
}

/// One stream's row in `GET /v1/streams`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct StreamProgress {
    pub last_seq: u64,
    pub updates_total: u64,
}

/// `GET /v1/streams`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceProgress {
    pub instance: String,
    pub streams: BTreeMap<String, StreamProgress>,
}

/// A running Python service; `restart` keeps its ports (the sidecar keeps calling the same
/// admin address, as it would in a pod).
pub struct PythonService {
    pub proc: Proc,
    pub admin: u16,
    pub http_port: u16,
    pub starts: u32,
    opts: PythonServiceOpts,
    http: reqwest::Client,
}

impl PythonService {
    /// Start the service with its admin endpoints on `admin` (the port the sidecar was given
    /// as the broadcaster's admin port).
    pub fn spawn(env: &Env, name: &str, admin: u16, opts: PythonServiceOpts) -> Result<Self> {
        let http_port = free_port();
        let proc = Self::start(&env.log_path(name), name, admin, http_port, &opts)?;
        Ok(PythonService {
            proc,
            admin,
            http_port,
            starts: 1,
            opts,
            http: env.http.clone(),
        })
    }

    fn start(log: &Path, name: &str, admin: u16, http: u16, o: &PythonServiceOpts) -> Result<Proc> {
        let mut cmd = Command::new(PYTHON);
        // Unbuffered, so the log shows the service's lines even when it is killed.
        cmd.arg("-u")
            .arg(transit_service_script())
            .arg(format!("--report-url={}", o.report_url))
            .arg(format!("--admin-addr=127.0.0.1:{admin}"))
            .arg(format!("--http-addr=127.0.0.1:{http}"));
        if o.supervised {
            cmd.arg("--supervised");
        }
        cmd.args(&o.extra);
        Proc::spawn(name, cmd, log.to_path_buf())
    }

    /// Kill the process and start it again with the same options and ports.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        let log = self.proc.log.clone();
        let name = self.proc.name.clone();
        self.proc = Self::start(&log, &name, self.admin, self.http_port, &self.opts)?;
        self.starts += 1;
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Wait until `GET /v1/streams` answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<ServiceProgress> {
        let start = Instant::now();
        loop {
            if let Ok(p) = self.progress().await {
                return Ok(p);
            }
            if !self.proc.alive() {
                bail!(
                    "transit_service.py exited at start:\n{}",
                    self.proc.tail(20)
                );
            }
            if start.elapsed() > timeout {
                bail!("transit_service.py /v1/streams did not answer within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /v1/streams`: the instance and every stream's progress.
    pub async fn progress(&self) -> Result<ServiceProgress> {
        let text = self
            .http
            .get(self.url("/v1/streams"))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        serde_json::from_str(&text).with_context(|| format!("unexpected /v1/streams: {text}"))
    }

    /// `stream`'s progress, or an error naming what the service answered.
    pub async fn stream(&self, stream: &str) -> Result<StreamProgress> {
        let p = self.progress().await?;
        p.streams
            .get(stream)
            .copied()
            .with_context(|| format!("no stream {stream} in /v1/streams: {p:?}"))
    }

    /// `GET /debug/dump` on the admin port: the task dump the sidecar's bundles carry.
    pub async fn task_dump(&self) -> Result<stallwatch_core::taskdump::TaskDump> {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/debug/dump", self.admin))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        serde_json::from_str(&text).with_context(|| format!("unexpected task dump: {text}"))
    }

    /// `POST /control/kill-consumer?stream=NAME`: the dispatcher raises at its next item.
    pub async fn kill_consumer(&self, stream: &str) -> Result<()> {
        self.control("kill-consumer", stream).await
    }

    /// `POST /control/poison?stream=NAME`: one malformed snapshot.
    pub async fn poison(&self, stream: &str) -> Result<()> {
        self.control("poison", stream).await
    }

    async fn control(&self, what: &str, stream: &str) -> Result<()> {
        let r = self
            .http
            .post(self.url(&format!("/control/{what}?stream={stream}")))
            .send()
            .await?;
        let code = r.status().as_u16();
        if code != 202 {
            bail!("POST /control/{what}: HTTP {code}: {}", r.text().await?);
        }
        Ok(())
    }
}
