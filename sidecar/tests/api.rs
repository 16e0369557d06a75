//! The sidecar's HTTP surfaces end to end, in-process on loopback port 0: report ingest,
//! status and readiness, admin auth, dump capture and listing, stream restarts, and what a
//! full or read-only dump volume does.

mod common;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stallwatch_core::bundle::{BundleList, Manifest, ProcessDumpOutcome, TaskDumpOutcome};
use stallwatch_core::report::{DispatcherState, MAX_REPORT_BYTES};
use stallwatch_testkit::report::{report, stream};
use stallwatch_testkit::taskdump::task_dump;
use transit_sidecar::bundles::{LocalStorage, Storage};
use transit_sidecar::monitor::Status;
use transit_sidecar::run::{IngestBound, Running, start_with_storage};

const TOKEN: &str = "t0ken-for-tests";

struct Env {
    sidecar: Running,
    http: reqwest::Client,
    ingest_url: String,
    base: String,
    admin: String,
    dir: tempfile::TempDir,
    broadcaster: FakeBroadcaster,
}

async fn env_with(
    storage: Arc<dyn Storage>,
    tweak: impl FnOnce(&mut transit_sidecar::cli::RunArgs),
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let dumps = dir.path().join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    let broadcaster = fake_broadcaster(
        &task_dump(&["downtown", "airport"], 3, Some("downtown")),
        Duration::ZERO,
    )
    .await;
    let mut args = run_args(&dumps, Some(&token), &broadcaster.url);
    args.stall_after = Duration::from_millis(0);
    args.recover_after = Duration::from_millis(0);
    args.report_timeout = Duration::from_secs(3600);
    tweak(&mut args);
    let sidecar = start_with_storage(args, storage).await.unwrap();
    let IngestBound::Tcp(ingest) = sidecar.ingest.clone() else {
        panic!("tcp ingest")
    };
    Env {
        ingest_url: format!("http://{ingest}/v1/reports"),
        base: format!("http://{}", sidecar.http_addr),
        admin: format!("http://{}", sidecar.admin_addr),
        sidecar,
        http: reqwest::Client::new(),
        dir,
        broadcaster,
    }
}

async fn env() -> Env {
    env_with(Arc::new(LocalStorage), |_| {}).await
}

impl Env {
    async fn send(&self, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(&self.ingest_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn report(
        &self,
        seq: u64,
        streams: Vec<stallwatch_core::report::StreamReport>,
    ) -> (u16, Value) {
        self.send(serde_json::to_vec(&report("i-1", seq, streams)).unwrap())
            .await
    }

    async fn status(&self) -> Status {
        self.http
            .get(format!("{}/v1/status", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.admin))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    fn dumps(&self) -> std::path::PathBuf {
        self.dir.path().join("dumps")
    }
}

/// POST with `Transfer-Encoding: chunked` and no length, over a raw connection.
async fn chunked_post(url: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut conn = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST /v1/reports HTTP/1.1\r\nhost: {authority}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(8192) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and close before reading everything.
        if conn.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = conn.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp)
}

fn healthy(seq_deq: u64) -> Vec<stallwatch_core::report::StreamReport> {
    vec![
        stream("downtown", 0, seq_deq, seq_deq, DispatcherState::Running),
        stream("airport", 0, seq_deq, seq_deq, DispatcherState::Running),
    ]
}

#[tokio::test]
async fn accepted_reports_drive_status_and_readiness() {
    let e = env().await;
    assert_eq!(
        e.report(1, healthy(10)).await,
        (202, json!({"accepted": true}))
    );
    let s = e.status().await;
    assert_eq!(s.instance.as_deref(), Some("i-1"));
    assert!(s.last_report_ms.is_some());
    assert_eq!(s.streams.len(), 2);
    assert!(
        s.streams
            .iter()
            .all(|x| x.verdict == "healthy" && x.reason.is_none())
    );
    let ready = e
        .http
        .get(format!("{}/readyz", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        e.http
            .get(format!("{}/healthz", e.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // downtown's channel fills and nothing dequeues (stall_after is 0 in these tests).
    let (code, _) = e
        .report(
            2,
            vec![
                stream("downtown", 5, 15, 10, DispatcherState::Running),
                stream("airport", 0, 10, 10, DispatcherState::Running),
            ],
        )
        .await;
    assert_eq!(code, 202);
    let s = e.status().await;
    let dt = s.streams.iter().find(|x| x.name == "downtown").unwrap();
    assert_eq!(dt.verdict, "stalled");
    assert_eq!(dt.reason.map(|r| r.as_str()), Some("ChannelStuck"));
    assert_eq!((dt.depth, dt.capacity), (5, 5));
    assert!(
        dt.message
            .starts_with("stream downtown: ChannelStuck, 5/5 waiting"),
        "{}",
        dt.message
    );
    assert!(dt.since_ms > 0);
    let ready = e
        .http
        .get(format!("{}/readyz", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("downtown"));

    // The JSON shape the architecture doc promises.
    let raw: Value = e
        .http
        .get(format!("{}/v1/status", e.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "name",
        "verdict",
        "reason",
        "since_ms",
        "message",
        "depth",
        "capacity",
        "dispatcher",
    ] {
        assert!(
            raw["streams"][0].get(key).is_some(),
            "{key} missing in {raw}"
        );
    }
    // Sorted by name: airport (healthy) first.
    assert_eq!(raw["streams"][0]["name"], "airport");
    assert_eq!(raw["streams"][0]["reason"], Value::Null);
    assert_eq!(raw["streams"][1]["reason"], "ChannelStuck");
    assert_eq!(raw["streams"][1]["verdict"], "stalled");
    assert_eq!(raw["streams"][1]["dispatcher"], "running");

    let m = e.metrics().await;
    assert!(
        m.contains(r#"stallwatch_sidecar_detections_total{reason="ChannelStuck"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"stallwatch_sidecar_stream_stalled{stream="downtown",reason="ChannelStuck"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"stallwatch_sidecar_stream_stalled{stream="airport",reason="none"} 0"#),
        "{m}"
    );
    assert!(
        m.contains("stallwatch_sidecar_reports_received_total 2"),
        "{m}"
    );
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn bad_reports_get_clear_4xx_are_counted_and_change_nothing() {
    let e = env().await;
    assert_eq!(e.report(5, healthy(1)).await.0, 202);

    let (code, body) = e.send(b"{not json".to_vec()).await;
    assert_eq!(code, 400);
    assert_eq!(body["kind"], "malformed");
    assert!(body["error"].as_str().unwrap().contains("not valid JSON"));

    let mut v = serde_json::to_value(report("i-1", 6, healthy(1))).unwrap();
    v["streams"][0]["typo_field"] = json!(1);
    let (code, body) = e.send(v.to_string().into_bytes()).await;
    assert_eq!((code, body["kind"].as_str()), (400, Some("malformed")));
    assert!(body["error"].as_str().unwrap().contains("typo_field"));

    let mut v = serde_json::to_value(report("i-1", 6, healthy(1))).unwrap();
    v["protocol"] = json!("stallwatch.report.v9");
    let (code, body) = e.send(v.to_string().into_bytes()).await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (400, Some("unsupported_protocol"))
    );

    let mut bad = healthy(1);
    bad[0].channel.depth = 9;
    let (code, body) = e.report(6, bad).await;
    assert_eq!((code, body["kind"].as_str()), (400, Some("invalid")));
    assert!(body["error"].as_str().unwrap().contains("exceeds capacity"));

    // A replay of seq 5 (and an older one) with a stalled picture: refused, nothing changes.
    for seq in [5, 4] {
        let (code, body) = e
            .report(
                seq,
                vec![stream("downtown", 5, 9, 1, DispatcherState::Dead)],
            )
            .await;
        assert_eq!((code, body["kind"].as_str()), (409, Some("out_of_order")));
    }

    // Oversize: declared length, and the same body sent chunked without a length.
    let big = vec![b' '; MAX_REPORT_BYTES + 1];
    let (code, body) = e.send(big.clone()).await;
    assert_eq!((code, body["kind"].as_str()), (413, Some("too_large")));
    let (status, body) = chunked_post(&e.ingest_url, &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains(r#""kind":"too_large""#), "{body}");

    // Exactly the limit is fine as far as size goes (it is whitespace, so malformed).
    let (code, body) = e.send(vec![b' '; MAX_REPORT_BYTES]).await;
    assert_eq!((code, body["kind"].as_str()), (400, Some("malformed")));

    let s = e.status().await;
    assert!(s.streams.iter().all(|x| x.verdict == "healthy"), "{s:?}");
    let m = e.metrics().await;
    for (kind, n) in [
        ("malformed", 3),
        ("unsupported_protocol", 1),
        ("invalid", 1),
        ("out_of_order", 2),
        ("too_large", 2),
    ] {
        let line = format!(r#"stallwatch_sidecar_reports_rejected_total{{kind="{kind}"}} {n}"#);
        assert!(m.contains(&line), "{line} missing in {m}");
    }
    assert!(
        m.contains("stallwatch_sidecar_reports_received_total 1"),
        "{m}"
    );
    // Still accepting good reports afterwards.
    assert_eq!(e.report(6, healthy(2)).await.0, 202);
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn every_admin_route_needs_the_token() {
    let e = env().await;
    let routes = [
        ("POST", "/v1/dumps"),
        ("GET", "/v1/dumps"),
        ("POST", "/v1/streams/downtown/restart"),
        ("POST", "/v1/streams/downtown/drill"),
        ("GET", "/no/such/route"),
        ("DELETE", "/v1/dumps"),
    ];
    for (method, path) in routes {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic dDBrZW4="),
            Some(TOKEN),
        ] {
            let mut req = e
                .http
                .request(method.parse().unwrap(), format!("{}{path}", e.admin));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
    }
    assert_eq!(e.broadcaster.restarts.load(Ordering::SeqCst), 0);
    // The start probe made the pod's directory; it must hold nothing.
    let dumps = std::fs::read_dir(e.dumps().join("transit").join("bc-0"))
        .unwrap()
        .count();
    assert_eq!(dumps, 0, "no bundle may be written without the token");
    // With the token: unknown route 404, GET list 200.
    let r = e
        .http
        .get(format!("{}/no/such/route", e.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = e
        .http
        .get(format!("{}/v1/dumps", e.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn without_a_token_file_admin_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let b = fake_broadcaster(&task_dump(&["a"], 0, None), Duration::ZERO).await;
    let sidecar = transit_sidecar::run::start(run_args(dir.path(), None, &b.url))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for token in ["", "x", TOKEN] {
        let r = http
            .post(format!("http://{}/v1/dumps", sidecar.admin_addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    sidecar.shutdown().await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn dump_capture_writes_a_private_verified_bundle_and_lists_it() {
    let e = env().await;
    e.report(1, healthy(10)).await;
    e.report(
        2,
        vec![
            stream("downtown", 5, 15, 10, DispatcherState::Dead),
            stream("airport", 0, 15, 15, DispatcherState::Running),
        ],
    )
    .await;
    let (code, body) = e
        .admin_post(
            "/v1/dumps",
            json!({"stream": "downtown", "requested_by": "operator"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let m: Manifest = serde_json::from_value(body).unwrap();
    assert_eq!(m.stream.as_deref(), Some("downtown"));
    assert_eq!(
        m.reason.map(|r| r.as_str()),
        Some("DispatcherDead"),
        "defaults to the stream's stall reason"
    );
    assert!(m.verdict.unwrap().is_stalled());
    assert_eq!(
        (m.namespace.as_str(), m.pod.as_str(), m.node.as_deref()),
        ("transit", "bc-0", Some("node-1"))
    );
    assert_eq!(m.requested_by, "operator");
    assert!(matches!(m.task_dump, TaskDumpOutcome::Fetched { tasks } if tasks > 5));
    assert!(
        matches!(&m.process_dump, ProcessDumpOutcome::Skipped { why } if why.contains("--process-dump none"))
    );
    let dir = Path::new(&m.path);
    assert!(dir.starts_with(e.dumps().join("transit").join("bc-0")));
    assert!(m.id.ends_with("-downtown-DispatcherDead"), "{}", m.id);
    assert_eq!(mode(dir), 0o2770);
    assert_eq!(mode(dir.parent().unwrap()), 0o2770);
    let names: Vec<_> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["state.json", "tasks.txt"]);
    for f in ["manifest.json", "state.json", "tasks.txt"] {
        assert_eq!(mode(&dir.join(f)), 0o640, "{f}");
    }
    assert!(transit_sidecar::bundles::verify(dir, &m).is_empty());
    let on_disk: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk, m);
    let tasks = std::fs::read_to_string(dir.join("tasks.txt")).unwrap();
    assert!(
        tasks.contains("!! no dispatcher task found for stream downtown"),
        "{tasks}"
    );

    // inspect reads it back.
    let report = transit_sidecar::inspect::load(dir).unwrap();
    assert_eq!(report.streams_without_dispatcher, vec!["downtown"]);
    let text = transit_sidecar::inspect::render(&report);
    assert!(
        text.contains("no dispatcher task found for stream downtown"),
        "{text}"
    );
    assert!(text.contains("invalid digit found in string"), "{text}");

    // An empty body is a manual capture of the whole pod.
    let r = e
        .http
        .post(format!("{}/v1/dumps", e.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m2: Manifest = r.json().await.unwrap();
    assert!(m2.id.ends_with("-pod-manual"), "{}", m2.id);

    let list: BundleList = e
        .http
        .get(format!("{}/v1/dumps", e.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.bundles.len(), 2);
    assert_eq!(list.bundles[0].path, m.path);
    assert_eq!(list.bundles[0].stream.as_deref(), Some("downtown"));
    assert!(list.bundles[0].bytes > 0);
    let metrics = e.metrics().await;
    assert!(
        metrics.contains(r#"stallwatch_sidecar_dumps_total{outcome="ok"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"stallwatch_sidecar_process_dumps_total{outcome="skipped"} 2"#),
        "{metrics}"
    );

    // Bad requests.
    for body in [
        json!({"stream": "Bad_Name"}),
        json!({"reason": "Bored"}),
        json!({"surprise": 1}),
    ] {
        let (code, err) = e.admin_post("/v1/dumps", body.clone()).await;
        assert_eq!(code, 400, "{body} -> {err}");
        assert!(err["error"].is_string());
    }
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn unreachable_broadcaster_still_yields_a_bundle_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    // Nothing listens on this port.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let sidecar = transit_sidecar::run::start(run_args(dir.path(), Some(&token), &dead_url))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/dumps", sidecar.admin_addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m: Manifest = r.json().await.unwrap();
    assert!(
        matches!(&m.task_dump, TaskDumpOutcome::Failed { why } if why.contains("unreachable")),
        "{:?}",
        m.task_dump
    );
    let tasks = std::fs::read_to_string(Path::new(&m.path).join("tasks.txt")).unwrap();
    assert!(tasks.starts_with("task dump unavailable"), "{tasks}");
    sidecar.shutdown().await;
}

/// Drills go to the broadcaster's `/admin/streams/{name}/drill`; this fake broadcaster has no
/// such route, as a broadcaster of one's own may not: the answer says so.
#[tokio::test]
async fn drills_are_proxied_and_a_broadcaster_without_them_is_named() {
    let e = env().await;
    let (code, body) = e.admin_post("/v1/streams/downtown/drill", json!({})).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not support drills"),
        "{body}"
    );
    let (code, _) = e.admin_post("/v1/streams/Bad_Name/drill", json!({})).await;
    assert_eq!(code, 400);
    assert_eq!(e.broadcaster.restarts.load(Ordering::SeqCst), 0);
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn restarts_are_proxied_to_the_broadcaster() {
    let e = env().await;
    let (code, body) = e
        .admin_post("/v1/streams/downtown/restart", json!({}))
        .await;
    assert_eq!((code, body), (202, json!({"restarted": "downtown"})));
    assert_eq!(e.broadcaster.restarts.load(Ordering::SeqCst), 1);
    let (code, _) = e.admin_post("/v1/streams/nowhere/restart", json!({})).await;
    assert_eq!(code, 404);
    let (code, _) = e
        .admin_post("/v1/streams/Bad_Name/restart", json!({}))
        .await;
    assert_eq!(code, 400);
    e.sidecar.shutdown().await;

    // Broadcaster gone: 502.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let sidecar = transit_sidecar::run::start(run_args(dir.path(), Some(&token), &dead_url))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/streams/downtown/restart",
            sidecar.admin_addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    sidecar.shutdown().await;
}

/// Fails writes with ENOSPC while `full` is set.
struct FullDisk {
    full: AtomicBool,
}

impl Storage for FullDisk {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        LocalStorage.create_dir(path)
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        LocalStorage.write_file(path, data)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        LocalStorage.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        LocalStorage.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        LocalStorage.remove_dir_all(path)
    }
}

#[tokio::test]
async fn full_volume_answers_507_shows_in_status_and_metrics_and_judging_continues() {
    let disk = Arc::new(FullDisk {
        full: AtomicBool::new(true),
    });
    let e = env_with(disk.clone(), |_| {}).await;
    e.report(1, healthy(1)).await;
    let (code, body) = e
        .admin_post("/v1/dumps", json!({"stream": "airport"}))
        .await;
    assert_eq!(code, 507, "{body}");
    assert!(body["error"].as_str().unwrap().contains("full"), "{body}");
    let s = e.status().await;
    assert!(!s.dump_storage.ok);
    assert!(s.dump_storage.error.unwrap().contains("No space left"));
    let m = e.metrics().await;
    assert!(
        m.contains(r#"stallwatch_sidecar_dumps_total{outcome="no_space"} 1"#),
        "{m}"
    );
    assert!(m.contains("stallwatch_sidecar_dump_storage_ok 0"), "{m}");
    // Nothing half-written is left, not even the hidden temporary directory.
    let pod_dir = e.dumps().join("transit").join("bc-0");
    assert_eq!(std::fs::read_dir(&pod_dir).unwrap().count(), 0);
    // Judging goes on.
    e.report(
        2,
        vec![
            stream("downtown", 5, 9, 1, DispatcherState::Running),
            stream("airport", 0, 1, 1, DispatcherState::Running),
        ],
    )
    .await;
    assert_eq!(e.status().await.streams[1].verdict, "stalled");
    // Space comes back: the next capture works and the status clears.
    disk.full.store(false, Ordering::SeqCst);
    let (code, _) = e.admin_post("/v1/dumps", json!({})).await;
    assert_eq!(code, 201);
    assert!(e.status().await.dump_storage.ok);
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn missing_or_unwritable_volume_answers_503() {
    // The dump dir's parent is a regular file: ENOTDIR, which root cannot bypass.
    let e = env_with(Arc::new(LocalStorage), |a| {
        let file = a.dump_dir.parent().unwrap().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        a.dump_dir = file.join("dumps");
    })
    .await;
    let (code, body) = e.admin_post("/v1/dumps", json!({})).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    let m = e.metrics().await;
    assert!(
        m.contains(r#"stallwatch_sidecar_dumps_total{outcome="unavailable"} 1"#),
        "{m}"
    );
    let r = e
        .http
        .get(format!("{}/v1/dumps", e.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    e.sidecar.shutdown().await;

    // A dump dir that does not exist (volume not mounted).
    let e = env_with(Arc::new(LocalStorage), |a| {
        a.dump_dir = a.dump_dir.join("not-mounted");
    })
    .await;
    let (code, body) = e.admin_post("/v1/dumps", json!({})).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("mounted"),
        "{body}"
    );
    e.sidecar.shutdown().await;
}

/// Fails every directory creation with EACCES: a volume whose root this sidecar's uid and
/// gid may not write (root cannot provoke that for real: it bypasses modes).
struct NotOurs;

impl Storage for NotOurs {
    fn create_dir(&self, _: &Path) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(13)) // EACCES
    }
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        LocalStorage.write_file(path, data)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        LocalStorage.sync_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        LocalStorage.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        LocalStorage.remove_dir_all(path)
    }
}

/// Issue 20, finding 2: a volume the sidecar cannot write (a hostPath or local PV owned by
/// root: `fsGroup` does not apply to them) showed `dump_storage.ok: true` and a ready sidecar
/// until the first stall lost its bundle with "missing or read-only". Now the start probes it:
/// the status, `/readyz` and the metric say so at once, naming a permission error as such.
#[tokio::test]
async fn an_unwritable_volume_shows_at_start_as_a_permission_error() {
    let e = env_with(Arc::new(NotOurs), |_| {}).await;
    let s = e.status().await;
    assert!(!s.dump_storage.ok, "{s:?}");
    let error = s.dump_storage.error.unwrap();
    for needle in [
        "not writable by this sidecar",
        "uid ",
        "permission denied",
        "group 65532",
    ] {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    assert!(!error.contains("missing"), "{error}");
    let r = e
        .http
        .get(format!("{}/readyz", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("not writable"),
        "{body}"
    );
    let m = e.metrics().await;
    assert!(m.contains("stallwatch_sidecar_dump_storage_ok 0"), "{m}");
    // A writable volume is ready, and the probe left nothing behind.
    let ok = env().await;
    assert!(ok.status().await.dump_storage.ok);
    let r = ok
        .http
        .get(format!("{}/readyz", ok.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pod_dir = ok.dumps().join("transit").join("bc-0");
    assert_eq!(std::fs::read_dir(&pod_dir).unwrap().count(), 0);
    e.sidecar.shutdown().await;
    ok.sidecar.shutdown().await;
}

fn mount_tmpfs(target: &Path, options: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(target)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn umount(target: &Path) {
    let _ = std::process::Command::new("umount").arg(target).status();
}

#[tokio::test]
async fn real_tiny_tmpfs_fills_up_and_answers_507() {
    let e = env().await;
    let dumps = e.dumps();
    if !mount_tmpfs(&dumps, "size=16k,mode=0700") {
        eprintln!(
            "SKIPPED real_tiny_tmpfs_fills_up_and_answers_507: mounting a tmpfs is not permitted here (the injected-fault test covers the logic)"
        );
        e.sidecar.shutdown().await;
        return;
    }
    e.report(1, healthy(1)).await;
    // The fake task dump plus state are larger than 16 KiB.
    let (code, body) = e.admin_post("/v1/dumps", json!({})).await;
    let listing: Vec<_> = walk(&dumps);
    umount(&dumps);
    assert_eq!(code, 507, "{body}");
    assert!(
        listing
            .iter()
            .all(|p| !p.contains(".tmp-") && !p.ends_with("-pod-manual")),
        "left behind: {listing:?}"
    );
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn real_read_only_tmpfs_answers_503() {
    let e = env().await;
    let dumps = e.dumps();
    if !mount_tmpfs(&dumps, "size=1m,ro") {
        eprintln!(
            "SKIPPED real_read_only_tmpfs_answers_503: mounting a tmpfs is not permitted here (the ENOTDIR test covers the logic)"
        );
        e.sidecar.shutdown().await;
        return;
    }
    let (code, body) = e.admin_post("/v1/dumps", json!({})).await;
    umount(&dumps);
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Read-only"),
        "{body}"
    );
    e.sidecar.shutdown().await;
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[tokio::test]
async fn ingest_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ingest.sock");
    let b = fake_broadcaster(&task_dump(&["a"], 0, None), Duration::ZERO).await;
    let mut args = run_args(dir.path(), None, &b.url);
    args.ingest_addr = format!("unix:{}", sock.display());
    let sidecar = transit_sidecar::run::start(args).await.unwrap();
    assert_eq!(sidecar.ingest, IngestBound::Unix(sock.clone()));
    let body = serde_json::to_string(&report(
        "u-1",
        1,
        vec![stream("a", 0, 1, 1, DispatcherState::Running)],
    ))
    .unwrap();
    let mut conn = tokio::net::UnixStream::connect(&sock).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "POST /v1/reports HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert_eq!(sidecar.monitor.status().instance.as_deref(), Some("u-1"));
    sidecar.shutdown().await;
}

#[tokio::test]
async fn ingest_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(dir.path(), None, "http://127.0.0.1:1");
    args.ingest_addr = "0.0.0.0:0".into();
    let err = transit_sidecar::run::start(args)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not loopback"), "{err}");
}

#[tokio::test]
async fn outside_a_cluster_it_says_it_does_not_publish() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(dir.path(), None, "http://127.0.0.1:1");
    args.publish = transit_sidecar::cli::PublishMode::Auto;
    // KUBERNETES_SERVICE_HOST is not set for tests (checked, so the assertion means something).
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        eprintln!("SKIPPED: tests run inside a cluster");
        return;
    }
    let sidecar = transit_sidecar::run::start(args).await.unwrap();
    assert!(
        sidecar
            .not_publishing
            .as_deref()
            .unwrap()
            .contains("not running in a cluster")
    );
    sidecar.shutdown().await;
    let mut args = run_args(dir.path(), None, "http://127.0.0.1:1");
    args.publish = transit_sidecar::cli::PublishMode::Off;
    let sidecar = transit_sidecar::run::start(args).await.unwrap();
    assert!(
        sidecar
            .not_publishing
            .as_deref()
            .unwrap()
            .contains("--publish off")
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn dump_on_stall_captures_by_itself() {
    let e = env_with(Arc::new(LocalStorage), |a| a.dump_on_stall = true).await;
    e.report(1, healthy(1)).await;
    e.report(
        2,
        vec![
            stream("downtown", 5, 9, 1, DispatcherState::Running),
            stream("airport", 0, 1, 1, DispatcherState::Running),
        ],
    )
    .await;
    let pod_dir = e.dumps().join("transit").join("bc-0");
    let mut found = None;
    for _ in 0..100 {
        found = std::fs::read_dir(&pod_dir).ok().and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
            })
        });
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let name = found.expect("a bundle captured on stall");
    assert!(name.ends_with("-downtown-ChannelStuck"), "{name}");
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(pod_dir.join(&name).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m.requested_by, "sidecar");
    e.sidecar.shutdown().await;
}

/// Process dumps through the whole capture path, against a child process standing in for the
/// broadcaster (this test process may ptrace its own children when it runs as root or with
/// CAP_SYS_PTRACE; otherwise the manifest must say why not).
async fn capture_with_process_dump(mode: transit_sidecar::cli::ProcessDumpMode) -> (Manifest, Env) {
    let e = env_with(Arc::new(LocalStorage), move |a| a.process_dump = mode).await;
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut r = report("i-1", 1, healthy(1));
    r.pid = Some(child.id());
    assert_eq!(e.send(serde_json::to_vec(&r).unwrap()).await.0, 202);
    let (code, body) = e.admin_post("/v1/dumps", json!({})).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 201, "{body}");
    (serde_json::from_value(body).unwrap(), e)
}

#[tokio::test]
async fn minidump_in_a_bundle() {
    let (m, e) = capture_with_process_dump(transit_sidecar::cli::ProcessDumpMode::Minidump).await;
    let dir = Path::new(&m.path);
    match &m.process_dump {
        ProcessDumpOutcome::Written {
            file,
            bytes,
            threads,
            ..
        } => {
            assert_eq!(file, "broadcaster.dmp");
            assert!(*threads >= 1);
            assert_eq!(std::fs::metadata(dir.join(file)).unwrap().len(), *bytes);
            assert_eq!(mode(&dir.join(file)), 0o640);
            assert!(m.files.iter().any(|f| f.name == "broadcaster.dmp"));
            eprintln!(
                "minidump of `sleep`: {bytes} bytes, {threads} threads, {} ms",
                m.timings.process_dump_ms
            );
        }
        other => {
            eprintln!("no ptrace rights here: {other:?}");
            assert!(
                matches!(other, ProcessDumpOutcome::Skipped { why } | ProcessDumpOutcome::Failed { why } if !why.is_empty())
            );
        }
    }
    assert!(transit_sidecar::bundles::verify(dir, &m).is_empty());
    let metrics = e.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"stallwatch_sidecar_process_dumps_total{{outcome="{}"}} 1"#,
            m.process_dump.label()
        )),
        "{metrics}"
    );
    e.sidecar.shutdown().await;
}

#[tokio::test]
async fn full_core_with_gcore_in_a_bundle() {
    if std::process::Command::new("gcore")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED full_core_with_gcore_in_a_bundle: gcore (gdb) is not installed");
        return;
    }
    let (m, e) = capture_with_process_dump(transit_sidecar::cli::ProcessDumpMode::Full).await;
    let dir = Path::new(&m.path);
    match &m.process_dump {
        ProcessDumpOutcome::Written {
            kind, file, bytes, ..
        } => {
            assert_eq!(*kind, stallwatch_core::bundle::ProcessDumpKind::Core);
            assert_eq!(file, "broadcaster.core");
            assert!(*bytes > 0);
            assert_eq!(mode(&dir.join(file)), 0o640);
            // Only the named core is left, not gcore's `<prefix>.<pid>`.
            let names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(names.len(), 4, "{names:?}");
        }
        other => {
            eprintln!("gcore could not dump here: {other:?}");
            assert!(
                matches!(other, ProcessDumpOutcome::Skipped { why } | ProcessDumpOutcome::Failed { why } if !why.is_empty())
            );
        }
    }
    assert!(transit_sidecar::bundles::verify(dir, &m).is_empty());
    e.sidecar.shutdown().await;
}
