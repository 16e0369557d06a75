//! The real `transit-broadcaster serve` as a child process on ephemeral loopback ports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use stallwatch_testkit::wait::WAIT;

const BIN: &str = env!("CARGO_BIN_EXE_transit-broadcaster");

/// A running `serve` process; killed on drop. `log` collects its JSON log lines.
pub struct Broadcaster {
    pub child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Broadcaster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `transit-broadcaster serve` with every listener on an ephemeral loopback port.
pub fn serve_command() -> Command {
    let mut command = Command::new(BIN);
    command.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    command
}

fn addr_field(line: &serde_json::Value, name: &str) -> SocketAddr {
    line["fields"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .parse()
        .unwrap()
}

impl Broadcaster {
    /// Starts `serve` with `extra` options and waits for its "serving" log line.
    pub fn start(extra: &[&str]) -> Self {
        let mut child = serve_command()
            .args(["--log-format", "json"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start transit-broadcaster");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v["fields"]["message"] == "transit-broadcaster serving"
                    {
                        let _ = tx.send(v);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let serving = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no serving line; log: {:?}", log.lock().unwrap()));
        Self {
            child,
            grpc: addr_field(&serving, "grpc_addr"),
            http: addr_field(&serving, "http_addr"),
            admin: addr_field(&serving, "admin_addr"),
            log,
        }
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit (at most [`WAIT`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Waits for `child` to exit (at most [`WAIT`]).
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
