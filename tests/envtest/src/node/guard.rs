//! One node per machine at a time, and nothing left behind.
//!
//! A watchdog (`sh`, in its own process group) takes an exclusive `flock` on a machine-wide
//! lock file, says so on its stdout, then blocks reading a pipe whose write end only the test
//! process holds. When the test process ends in any way (exit, panic, SIGKILL) the pipe
//! closes and the watchdog runs `teardown.sh` (processes, mounts, iptables chains, the bridge,
//! sysctls, cgroups, the directory) and only then exits, releasing the lock: a second test
//! binary that wants a node waits until the first one's node is gone, so the fixed bridge and
//! chain names are never shared. If even the watchdog was killed, the next node runs the
//! previous node's teardown first (its directory is recorded beside the lock).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use std::os::unix::process::CommandExt;

use crate::Error;

const LOCK: &str = "/run/lock/stallwatch-node.lock";
const LAST: &str = "/run/lock/stallwatch-node.last";
const TEARDOWN: &str = include_str!("teardown.sh");

/// The held lock and the watchdog that tears the node down.
#[derive(Debug)]
pub(crate) struct Guard {
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// What the teardown script needs to know: `teardown.sh DIR BRIDGE CGROUP KUBE_PROXY`.
#[derive(Debug, Clone)]
pub(crate) struct Teardown {
    pub dir: PathBuf,
    pub bridge: String,
    pub cgroup: String,
    pub kube_proxy: PathBuf,
}

impl Teardown {
    fn args(&self) -> Vec<String> {
        vec![
            self.dir.join("teardown.sh").display().to_string(),
            self.dir.display().to_string(),
            self.bridge.clone(),
            self.cgroup.clone(),
            self.kube_proxy.display().to_string(),
        ]
    }
}

impl Guard {
    /// Waits for the machine-wide node lock (up to 15 minutes), tears down a previous node
    /// whose teardown never ran, and arms the teardown of this one.
    pub(crate) fn acquire(teardown: &Teardown) -> Result<Guard, Error> {
        let dir = &teardown.dir;
        std::fs::create_dir_all(Path::new(LOCK).parent().unwrap_or(Path::new("/")))
            .map_err(|e| Error::io("creating /run/lock", e))?;
        write(&dir.join("teardown.sh"), TEARDOWN)?;
        let script = "exec 9>>\"$1\"; flock -w 900 9 || { echo timeout; exit 1; }; echo locked; \
                      read _ignored; shift; sh \"$@\" >/tmp/stallwatch-node-teardown.log 2>&1";
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("node-watchdog")
            .arg(LOCK)
            .args(teardown.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io("starting the node watchdog (sh)", e))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "locked" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Start(format!(
                "the node lock {LOCK} is held by another test run (waited 15 minutes)"
            )));
        }
        let guard = Guard {
            watchdog: Mutex::new(Some((child, stdin))),
        };
        // Holding the lock: a node recorded as the last one still has its leftovers if its
        // teardown never ran (its directory still holds the script).
        if let Ok(previous) = std::fs::read_to_string(LAST) {
            let mut args: Vec<String> = previous.lines().map(str::to_string).collect();
            if args.first().is_some_and(|s| Path::new(s).exists()) {
                crate::say(&format!(
                    "envtest node: tearing down a previous node left in {}",
                    args.get(1).map(String::as_str).unwrap_or("?")
                ));
                let script = args.remove(0);
                let _ = Command::new("sh").arg(script).args(args).status();
            }
        }
        write(Path::new(LAST), &teardown.args().join("\n"))?;
        Ok(guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog tear down, as it does at process exit.
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

pub(crate) fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
