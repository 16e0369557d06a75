//! A metrics-only app for zero-code mode (`tests/apps/queue_app.py`, python3 stdlib): bounded
//! queues per stream with a producer and a consumer, exporting only OpenMetrics (depth gauge,
//! dequeued and enqueued counters). It stands where a broadcaster would in report mode; the
//! remediation loop restarts it through [`RestartablePod`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::remediate::RestartablePod;
use crate::{Env, Proc, free_port};

/// The metric names the app exports (the zero-code mapping of the tests).
pub const DEPTH: &str = "queue_app_depth";
pub const DEQUEUED: &str = "queue_app_dequeued_total";
pub const ENQUEUED: &str = "queue_app_enqueued_total";

/// How to run the app.
#[derive(Debug, Clone)]
pub struct MetricsAppOpts {
    pub streams: Vec<String>,
    pub capacity: u32,
    /// Items per second per stream.
    pub rate: f64,
    /// Stop the first stream's consumer this long after start.
    pub stop_consumer_after: Option<Duration>,
}

impl Default for MetricsAppOpts {
    fn default() -> Self {
        MetricsAppOpts {
            streams: vec!["all".into()],
            capacity: 8,
            rate: 20.0,
            stop_consumer_after: None,
        }
    }
}

/// The running app; `restart` keeps its port.
pub struct MetricsApp {
    pub proc: Proc,
    pub port: u16,
    pub opts: MetricsAppOpts,
    pub starts: u32,
    log: PathBuf,
    http: reqwest::Client,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps/queue_app.py")
}

impl MetricsApp {
    pub fn spawn(env: &Env, opts: MetricsAppOpts) -> Result<Self> {
        let port = free_port();
        let log = env.log_path("queue-app");
        let proc = Self::start(&log, port, &opts)?;
        Ok(MetricsApp {
            proc,
            port,
            opts,
            starts: 1,
            log,
            http: env.http.clone(),
        })
    }

    fn start(log: &Path, port: u16, o: &MetricsAppOpts) -> Result<Proc> {
        let mut cmd = Command::new("python3");
        cmd.arg(script())
            .arg(format!("--port={port}"))
            .arg(format!("--capacity={}", o.capacity))
            .arg(format!("--rate={}", o.rate));
        for s in &o.streams {
            cmd.arg(format!("--stream={s}"));
        }
        if let Some(d) = o.stop_consumer_after {
            cmd.arg(format!("--stop-consumer-after={}", d.as_secs_f64()));
        }
        cmd.env("PYTHONUNBUFFERED", "1");
        Proc::spawn("queue-app", cmd, log.to_path_buf())
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }

    /// The sidecar flags of zero-code mode for this app.
    pub fn sidecar_flags(&self, interval: &str) -> Vec<String> {
        vec![
            format!("--metrics-url={}", self.metrics_url()),
            format!("--metrics-interval={interval}"),
            format!("--metrics-depth={DEPTH}"),
            format!("--metrics-capacity-value={}", self.opts.capacity),
            format!("--metrics-dequeued={DEQUEUED}"),
            format!("--metrics-enqueued={ENQUEUED}"),
            "--metrics-stream-label=stream".into(),
        ]
    }

    /// When the app logged that its consumer stopped (ms since the epoch), in any start.
    pub fn consumer_stopped_ms(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines()
            .find(|l| l.contains("consumer stopped"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
    }

    /// Wait until the metrics endpoint answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.http.get(self.metrics_url()).send().await.is_ok() {
                return Ok(());
            }
            if !self.proc.alive() {
                bail!("queue_app.py exited at start:\n{}", self.proc.tail(20));
            }
            if start.elapsed() > timeout {
                bail!("queue_app.py did not serve metrics within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl RestartablePod for MetricsApp {
    fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        self.proc = Self::start(&self.log, self.port, &self.opts)?;
        self.starts += 1;
        Ok(())
    }

    fn describe_start(&self) -> String {
        format!(
            "metrics app restarted (start #{}, pid {})",
            self.starts,
            self.proc.pid().unwrap_or_default()
        )
    }
}
