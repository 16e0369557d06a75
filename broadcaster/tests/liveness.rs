//! The real binary's own health (issue 21): `/healthz` fails once a stream's hub is wedged
//! (the hidden test hook `STALLWATCH_TEST_WEDGE=hub` holds its subscriber table forever) and
//! SIGTERM still ends the process within its grace (10 s).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::binary::serve_command;

/// The documented grace, and how long the test waits before calling the process stuck.
const STUCK_AFTER: Duration = Duration::from_secs(15);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` with `env` added; returns the process and its HTTP address.
fn start(env: &[(&str, &str)]) -> (Killed, String) {
    let mut child = serve_command()
        .args([
            "--log-format",
            "json",
            "--source",
            "synthetic://?rate=20&vehicles=8",
        ])
        .args(["--report-url", ""])
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start transit-broadcaster");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == "transit-broadcaster serving"
            {
                let _ = tx.send(v["fields"]["http_addr"].as_str().unwrap_or("").to_string());
            }
        }
    });
    let http = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a serving line");
    (Killed(child), http)
}

async fn healthz(http: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{http}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    match r {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

fn sigterm_exit_time(child: &mut Child) -> Option<Duration> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < STUCK_AFTER {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn a_wedged_hub_fails_healthz_within_its_bound_and_sigterm_still_ends_the_process() {
    let (mut proc, http) = start(&[("STALLWATCH_TEST_WEDGE", "hub")]);
    // What the kubelet's probe sees: 503, or no answer within its timeout once the wedged
    // hub has blocked every worker of the runtime (the dispatcher and the reporter wait on
    // it); either fails the probe.
    let start = Instant::now();
    let (code, body) = loop {
        let (code, body) = healthz(&http).await;
        if code != 200 && start.elapsed() > Duration::from_millis(500) {
            break (code, body);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "/healthz never failed (last {code}: {body})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "hub wedged: /healthz {} after {:.1?} (bound 5 s)",
        if code == 0 {
            "no answer in 2 s".to_string()
        } else {
            code.to_string()
        },
        start.elapsed()
    );
    assert!(
        code == 0 || body.contains("\"wedged\":[\"all\"]"),
        "{code}: {body}"
    );
    let exit = sigterm_exit_time(&mut proc.0);
    let exit = exit.expect("a wedged hub: still running after SIGTERM");
    println!("hub wedged: exited {exit:.1?} after SIGTERM (grace 10 s)");
}

#[tokio::test]
async fn a_working_hub_keeps_healthz_ok() {
    let (_proc, http) = start(&[]);
    // Longer than the bound, with the hub publishing 20 updates a second.
    for _ in 0..30 {
        let (code, body) = healthz(&http).await;
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
