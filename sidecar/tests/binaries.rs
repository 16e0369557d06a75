//! The real `transit-sidecar` binary: judging reports, a bundle captured over the admin API,
//! and `transit-sidecar inspect` on it. With the real `transit-broadcaster` binary too (when it
//! has been built: `cargo build -p transit-broadcaster`): `hang-dispatcher` is injected and
//! must show as `ChannelStuck` within `stall_after + 2 report intervals` (measured from the
//! moment the broadcaster logs the hang is impossible to observe from here, so the test bounds
//! the time from the first report showing items stuck, and prints what it measured).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use stallwatch_core::bundle::Manifest;
use stallwatch_core::report::DispatcherState;
use stallwatch_testkit::net::free_port;
use stallwatch_testkit::report::{report, stream};
use stallwatch_testkit::taskdump::task_dump;

const TOKEN: &str = "binary-test-token";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sidecar_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_transit-sidecar"))
}

struct SidecarProc {
    _proc: Proc,
    ingest: u16,
    http: u16,
    admin: u16,
}

fn spawn_sidecar(dir: &Path, broadcaster_url: &str, extra: &[&str]) -> SidecarProc {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let (ingest, http, admin) = (free_port(), free_port(), free_port());
    let child = Command::new(sidecar_bin())
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
        .args(extra)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    SidecarProc {
        _proc: Proc(child),
        ingest,
        http,
        admin,
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if http.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered");
}

async fn status(http: &reqwest::Client, port: u16) -> Value {
    http.get(format!("http://127.0.0.1:{port}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn stream_reason(status: &Value, name: &str) -> Option<String> {
    status["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["reason"].as_str().map(str::to_owned))
}

async fn capture(http: &reqwest::Client, admin: u16, body: Value) -> Manifest {
    let r = http
        .post(format!("http://127.0.0.1:{admin}/v1/dumps"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

fn inspect(bundle: &str, json: bool) -> String {
    let mut cmd = Command::new(sidecar_bin());
    cmd.arg("inspect").arg(bundle);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn sidecar_binary_judges_captures_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_broadcaster(
        &task_dump(&["downtown", "airport"], 4, Some("downtown")),
        Duration::ZERO,
    )
    .await;
    let sc = spawn_sidecar(dir.path(), &fake.url, &[]);
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("http://127.0.0.1:{}/healthz", sc.http)).await;
    let ingest = format!("http://127.0.0.1:{}/v1/reports", sc.ingest);

    // Healthy for a second, then downtown's dispatcher dies with items waiting.
    let mut seq = 0;
    let mut detected = None;
    let stuck_from = Instant::now() + Duration::from_secs(1);
    while detected.is_none() {
        seq += 1;
        let dead = Instant::now() >= stuck_from;
        let streams = vec![
            if dead {
                stream("downtown", 5, 100 + seq, 90, DispatcherState::Dead)
            } else {
                stream("downtown", 0, 90, 90, DispatcherState::Running)
            },
            stream("airport", 0, seq, seq, DispatcherState::Running),
        ];
        let r = http
            .post(&ingest)
            .json(&report("bin-1", seq, streams))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        if stream_reason(&status(&http, sc.http).await, "downtown").as_deref()
            == Some("DispatcherDead")
        {
            detected = Some(stuck_from.elapsed());
        }
        assert!(seq < 200, "never detected");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "DispatcherDead detected {:?} after the first dead report",
        detected.unwrap()
    );
    let ready = http
        .get(format!("http://127.0.0.1:{}/readyz", sc.http))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    let m = capture(
        &http,
        sc.admin,
        serde_json::json!({"stream": "downtown", "requested_by": "binary-test"}),
    )
    .await;
    assert_eq!(m.reason.map(|r| r.as_str()), Some("DispatcherDead"));
    let text = inspect(&m.path, false);
    assert!(
        text.contains("no dispatcher task found for stream downtown"),
        "{text}"
    );
    assert!(text.contains("stalled (DispatcherDead)"), "{text}");
    assert!(
        text.contains("last quarantined message: stream downtown"),
        "{text}"
    );
    assert!(
        text.contains("8 tasks: subscriber/airport/0"),
        "parallel-stacks grouping: {text}"
    );
    let json: Value = serde_json::from_str(&inspect(&m.path, true)).unwrap();
    assert_eq!(
        json["streams_without_dispatcher"],
        serde_json::json!(["downtown"])
    );
    assert_eq!(json["integrity_problems"], serde_json::json!([]));
    assert_eq!(json["stack_groups"][0]["count"], 8);

    // A tampered bundle is called out.
    std::fs::write(Path::new(&m.path).join("tasks.txt"), "edited").unwrap();
    let text = inspect(&m.path, false);
    assert!(text.contains("PROBLEM: tasks.txt"), "{text}");
}

fn broadcaster_bin() -> Option<PathBuf> {
    let p = sidecar_bin().parent()?.join("transit-broadcaster");
    p.exists().then_some(p)
}

#[tokio::test]
async fn real_broadcaster_hang_dispatcher_is_caught_captured_and_inspected() {
    let Some(bin) = broadcaster_bin() else {
        eprintln!(
            "SKIPPED: target/debug/transit-broadcaster is not built (cargo build -p transit-broadcaster)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let b_admin = free_port();
    let sc_ingest_placeholder = free_port();
    let _ = sc_ingest_placeholder;
    let broadcaster_url = format!("http://127.0.0.1:{b_admin}");
    let sc = spawn_sidecar(dir.path(), &broadcaster_url, &["--process-dump=minidump"]);
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("http://127.0.0.1:{}/healthz", sc.http)).await;
    let started = Instant::now();
    let _b = Proc(
        Command::new(bin)
            .arg("serve")
            .arg(format!("--grpc-addr=127.0.0.1:{}", free_port()))
            .arg(format!("--http-addr=127.0.0.1:{}", free_port()))
            .arg(format!("--admin-addr=127.0.0.1:{b_admin}"))
            .arg(format!(
                "--report-url=http://127.0.0.1:{}/v1/reports",
                sc.ingest
            ))
            .args([
                "--source=synthetic://?rate=20",
                "--stream=downtown",
                "--stream=airport",
            ])
            .args([
                "--fault=hang-dispatcher",
                "--fault-stream=downtown",
                // 3 s, not 1: on a loaded machine the broadcaster's first reports can take
                // over a second, and the test must see the stream healthy before the hang.
                "--fault-after=3s",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // First healthy, then ChannelStuck on downtown only.
    let mut healthy_seen = false;
    let mut stuck_at = None;
    let mut first_waiting: Option<Duration> = None;
    while started.elapsed() < Duration::from_secs(30) {
        let s = status(&http, sc.http).await;
        let dt = s["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "downtown").cloned());
        if let Some(dt) = dt {
            if dt["verdict"] == "healthy" && dt["depth"] == 0 {
                healthy_seen = true;
            }
            if first_waiting.is_none()
                && dt["depth"].as_u64().unwrap_or(0) > 0
                && dt["verdict"] == "healthy"
            {
                first_waiting = Some(started.elapsed());
            }
            if dt["reason"] == "ChannelStuck" {
                stuck_at = Some(started.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stuck_at = stuck_at.expect("ChannelStuck within 30 s");
    assert!(healthy_seen, "downtown was never healthy first");
    eprintln!(
        "real broadcaster: hang injected at ~3s, first depth>0 seen at {first_waiting:?}, ChannelStuck at {stuck_at:?} (target: hang + 2s + 2x250ms)"
    );
    let s = status(&http, sc.http).await;
    assert_eq!(
        stream_reason(&s, "airport"),
        None,
        "airport keeps flowing: {s}"
    );

    let m = capture(
        &http,
        sc.admin,
        serde_json::json!({"stream": "downtown", "requested_by": "e2e"}),
    )
    .await;
    assert_eq!(m.reason.map(|r| r.as_str()), Some("ChannelStuck"));
    assert!(
        matches!(
            m.task_dump,
            stallwatch_core::bundle::TaskDumpOutcome::Fetched { .. }
        ),
        "{:?}",
        m.task_dump
    );
    eprintln!(
        "process dump: {:?}; timings {:?}",
        m.process_dump, m.timings
    );
    let text = inspect(&m.path, false);
    eprintln!("{text}");
    assert!(text.contains("downtown"), "{text}");
    assert!(text.contains("stalled (ChannelStuck)"), "{text}");
    assert!(text.contains("task stacks:"), "{text}");
}
