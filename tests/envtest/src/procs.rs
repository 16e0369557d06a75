//! Child processes that cannot outlive the test binary.
//!
//! Every process of a control plane (and every pod process run for it) joins one process
//! group. A watchdog (`sh`, in its own group) blocks reading a pipe whose write end only the
//! test process holds: when the test process ends, however it ends (normal exit, panic, or
//! SIGKILL), the pipe closes, and the watchdog kills the group and removes the temp dir.
//! That covers the shared control plane, which lives in a `static` and is never dropped. Each
//! [`Proc`] is also killed in `Drop`, so a test's own processes end with the test, even on panic.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;

/// A process group plus its watchdog.
#[derive(Debug)]
pub(crate) struct Group {
    pgid: Mutex<Option<u32>>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
    dir: PathBuf,
    /// Whether the first spawn starts the watchdog (false: someone else cleans up, e.g. the
    /// node's guard, which also has mounts, iptables and the bridge to undo).
    watched: bool,
}

impl Group {
    pub(crate) fn new(dir: &Path) -> Self {
        Group {
            pgid: Mutex::new(None),
            watchdog: Mutex::new(None),
            dir: dir.to_path_buf(),
            watched: true,
        }
    }

    /// A group without a watchdog: its owner kills it (`kill -- -<pgid>`) and cleans up.
    pub(crate) fn unwatched(dir: &Path) -> Self {
        let mut group = Group::new(dir);
        group.watched = false;
        group
    }

    /// The group's id, once its first process runs.
    pub(crate) fn pgid(&self) -> Option<u32> {
        *self.pgid.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_watchdog(&self, pgid: u32) -> Result<(), Error> {
        let script = "read _ignored; kill -TERM -\"$1\" 2>/dev/null; sleep 1; \
                      kill -KILL -\"$1\" 2>/dev/null; rm -rf \"$2\"";
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .arg(pgid.to_string())
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io("starting the watchdog (sh)", e))?;
        let stdin = child.stdin.take().expect("piped stdin");
        *self.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some((child, stdin));
        Ok(())
    }

    /// Starts `cmd` in the group, its output appended to `log`.
    pub(crate) fn spawn(&self, name: &str, mut cmd: Command, log: &Path) -> Result<Proc, Error> {
        let out =
            File::create(log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("cloning a log file handle", e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut pgid = self.pgid.lock().unwrap_or_else(|p| p.into_inner());
        cmd.process_group(pgid.map(|p| p as i32).unwrap_or(0));
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {name}"), e))?;
        if pgid.is_none() {
            *pgid = Some(child.id());
            if self.watched {
                self.start_watchdog(child.id())?;
            }
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Closing the pipe lets the watchdog clean up, as it would at process exit.
        if let Some((mut child, stdin)) = self
            .watchdog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// One child process; killed on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...) through `kill(1)` (no `unsafe` here).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit code if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        self.signal("TERM");
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tail(30));
        }
        self.kill();
    }
}

/// A free loopback port: the testkit's (below the ephemeral range, never the same twice in a
/// process), so the control plane's children cannot lose their port to an outgoing connection.
pub use stallwatch_testkit::net::free_port;
