//! `transit-broadcaster serve` as a process, with typed clients for its HTTP and admin ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::free_port;
use crate::metrics::Metrics;
use crate::process::{Env, Proc, bin};
use crate::sidecar::Sidecar;

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
        Self::spawn_with_admin(env, name, free_port(), opts)
    }

    /// Like [`Broadcaster::spawn`], on an admin port chosen beforehand (the sidecar is told it
    /// before the broadcaster starts).
    pub fn spawn_with_admin(
        env: &Env,
        name: &str,
        admin: u16,
        opts: BroadcasterOpts,
    ) -> Result<Self> {
        let (grpc, http_port) = (free_port(), free_port());
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
