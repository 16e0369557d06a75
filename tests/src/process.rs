//! Processes: finding the workspace binaries, a child process killed on drop, a scenario's
//! scratch directory and its runtime.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ADMIN_TOKEN;
use crate::logs::tail;

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

    /// Wrap a child spawned elsewhere (with its own stdio set up).
    pub(crate) fn from_child(name: &str, log: PathBuf, child: Child) -> Self {
        Proc {
            name: name.into(),
            log,
            child: Some(child),
        }
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
