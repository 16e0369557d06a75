//! The real `transit-sidecar` binary's own health (issue 21): `/healthz` fails once its judge
//! loop is wedged (the hidden test hook `STALLWATCH_TEST_WEDGE=judge`) and stays 200 while
//! the loop runs; SIGTERM ends the process within its grace even while a dump hangs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stallwatch_testkit::net::free_port;

/// The default `--shutdown-grace`, and how long a test waits before calling the process
/// stuck (the machine may be loaded).
const GRACE: Duration = Duration::from_secs(10);
const STUCK_AFTER: Duration = Duration::from_secs(15);
const TOKEN: &str = "liveness-test-token";

struct Sidecar {
    child: Child,
    http: u16,
    admin: u16,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    /// SIGTERM; how long until the process exited, `None` if it still ran after
    /// [`STUCK_AFTER`].
    fn sigterm_exit_time(&mut self) -> Option<Duration> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < STUCK_AFTER {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn spawn(dir: &Path, broadcaster_url: &str, env: &[(&str, &str)], args: &[&str]) -> Sidecar {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let dumps: PathBuf = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let (ingest, http, admin) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_transit-sidecar"))
        .arg("run")
        .arg(format!("--ingest-addr=127.0.0.1:{ingest}"))
        .arg(format!("--http-addr=127.0.0.1:{http}"))
        .arg(format!("--admin-addr=127.0.0.1:{admin}"))
        .arg(format!("--admin-token-file={}", token.display()))
        .arg(format!("--broadcaster-admin-url={broadcaster_url}"))
        .arg(format!("--dump-dir={}", dumps.display()))
        .args([
            "--pod-name=bc-0",
            "--pod-namespace=transit",
            "--publish=off",
        ])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Sidecar { child, http, admin }
}

/// The status of `GET /healthz` (0: no answer yet).
async fn healthz(http: &reqwest::Client, port: u16) -> u16 {
    match http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `/healthz` until it answers `want`; how long that took from the first answer.
async fn until_healthz(http: &reqwest::Client, port: u16, want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    let mut first_answer = None;
    loop {
        let code = healthz(http, port).await;
        if code != 0 {
            first_answer.get_or_insert_with(Instant::now);
        }
        if code == want {
            return first_answer.map(|t| t.elapsed()).unwrap_or_default();
        }
        assert!(
            start.elapsed() < within,
            "/healthz never answered {want} (last: {code})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_wedged_judge_loop_fails_healthz_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = spawn(
        dir.path(),
        "http://127.0.0.1:9",
        &[("STALLWATCH_TEST_WEDGE", "judge")],
        &["--liveness-timeout=1s"],
    );
    let http = reqwest::Client::new();
    let took = until_healthz(&http, sidecar.http, 503, Duration::from_secs(30)).await;
    println!("judge loop wedged: /healthz 503 {took:.1?} after its first answer (bound 1 s)");
    let body = http
        .get(format!("http://127.0.0.1:{}/healthz", sidecar.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("judge loop: no progress"), "{body}");
    let exit = sidecar.sigterm_exit_time();
    assert!(exit.is_some(), "wedged: still running after SIGTERM");
    println!(
        "judge loop wedged: exited {:.1?} after SIGTERM",
        exit.unwrap()
    );
}

#[tokio::test]
async fn a_running_judge_loop_keeps_healthz_ok() {
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = spawn(
        dir.path(),
        "http://127.0.0.1:9",
        &[],
        &["--liveness-timeout=1s"],
    );
    let http = reqwest::Client::new();
    until_healthz(&http, sidecar.http, 200, Duration::from_secs(30)).await;
    // Several bounds long: the loop keeps beating.
    for _ in 0..12 {
        assert_eq!(healthz(&http, sidecar.http).await, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let exit = sidecar.sigterm_exit_time();
    assert!(exit.is_some(), "idle: still running after SIGTERM");
    println!("idle: exited {:.1?} after SIGTERM", exit.unwrap());
}

#[tokio::test]
async fn sigterm_ends_the_sidecar_within_its_grace_while_a_dump_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let broadcaster = format!(
        "http://127.0.0.1:{}",
        stallwatch_testkit::net::hung_http_port()
    );
    let mut sidecar = spawn(dir.path(), &broadcaster, &[], &["--task-dump-timeout=60s"]);
    let http = reqwest::Client::new();
    until_healthz(&http, sidecar.http, 200, Duration::from_secs(30)).await;
    // A dump request that waits on the hung broadcaster for a minute.
    let admin = sidecar.admin;
    let dump = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{admin}/v1/dumps"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"requested_by": "test"}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exit = sidecar.sigterm_exit_time();
    dump.abort();
    let exit = exit.unwrap_or_else(|| panic!("still running {STUCK_AFTER:?} after SIGTERM"));
    println!("dump in progress: exited {exit:.1?} after SIGTERM (grace {GRACE:?})");
}
