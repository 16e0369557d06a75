//! `transit-broadcaster subscribe --json` as a process, its updates counted by a reader thread.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use stallwatch_core::sync::lock;

use crate::process::{Env, Proc, bin};

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
                let mut s = lock(&st);
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
            proc: Proc::from_child(name, log, child),
            state,
        })
    }

    pub fn updates(&self) -> u64 {
        lock(&self.state).updates
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> SubscriberState {
        let s = lock(&self.state);
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
