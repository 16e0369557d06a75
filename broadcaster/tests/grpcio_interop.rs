//! The gRPC listener against a real client that shares no code with it: grpcio (gRPC C-core,
//! its own HTTP/2) runs the scenarios of `grpcio_client.py` against the real binary, one
//! broadcaster per test. The scenarios assert the wire contract (the protos, gRPC health and
//! reflection v1), so they hold whatever HTTP/2 server the broadcaster uses.
//!
//! grpcio comes from `.venv` (`scripts/setup.sh` installs `tests/requirements.txt` there).
//! Without it the tests print SKIPPED and pass, except where the suite promises it (`CI` or
//! `STALLWATCH_REQUIRE_TEST_TOOLS=1`, which `scripts/test.sh` sets): there they fail.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::binary::Broadcaster;
use serde_json::Value;

/// How long one client run may take: its own waits are bounded by 30 s each.
const CLIENT_WAIT: Duration = Duration::from_secs(180);

fn tests_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests"))
}

/// The `.venv` Python when it has grpcio; `None` (after saying so) when it has not and `CI`
/// is unset.
fn grpcio_python() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = workspace.join(".venv/bin/python");
    let has_grpcio = Command::new(&python)
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_grpcio {
        return Some(python);
    }
    let why = format!(
        "{} cannot import grpc (scripts/setup.sh installs broadcaster/tests/requirements.txt into .venv)",
        python.display()
    );
    common::skip_or_fail(&why);
    None
}

/// One run of `grpcio_client.py`: its stdout lines as they come, its stderr at the end.
struct Client {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
    scenario: String,
}

impl Client {
    fn start(python: &Path, scenario: &str, server: &Broadcaster, extra: &[&str]) -> Self {
        let mut child = Command::new(python)
            .arg(tests_dir().join("grpcio_client.py"))
            .arg(scenario)
            .args(["--addr", &server.grpc.to_string()])
            .args(["--http-addr", &server.http.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start grpcio_client.py");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
            scenario: scenario.into(),
        }
    }

    /// Waits for the client to print `want` on a line of its own.
    fn wait_line(&mut self, want: &str) {
        let deadline = Instant::now() + CLIENT_WAIT;
        while !self.stdout.iter().any(|l| l == want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => panic!("no {want:?} line; {}", self.kill()),
            }
        }
    }

    /// Ends the client, returning what it printed (for a panic message).
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdout.extend(self.lines.try_iter());
        format!(
            "grpcio_client.py {} stdout: {:?}",
            self.scenario, self.stdout
        )
    }

    /// Waits for the client to exit; it must succeed. Returns its JSON summary.
    fn finish(mut self) -> Value {
        let deadline = Instant::now() + CLIENT_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                panic!("still running after {CLIENT_WAIT:?}; {}", self.kill());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader threads end at EOF, which follows the exit.
        let stderr = self.stderr.join().unwrap();
        self.stdout.extend(self.lines.iter());
        assert!(
            status.success(),
            "grpcio_client.py {} failed ({status}):\n{stderr}\nstdout: {:?}",
            self.scenario,
            self.stdout
        );
        let summary = self.stdout.last().expect("a summary line");
        eprintln!("{}: {summary}", self.scenario);
        serde_json::from_str(summary).unwrap_or_else(|e| panic!("summary {summary:?}: {e}"))
    }
}

/// Starts a broadcaster with `serve_args`, runs `scenario` against it, returns its summary.
fn run(scenario: &str, serve_args: &[&str], client_args: &[&str]) -> Option<Value> {
    let python = grpcio_python()?;
    let server = Broadcaster::start(serve_args);
    let summary = Client::start(&python, scenario, &server, client_args).finish();
    assert_eq!(summary["grpcio"], pinned_grpcio(), "the grpcio .venv has");
    Some(summary)
}

/// The grpcio version `tests/requirements.txt` pins.
fn pinned_grpcio() -> String {
    let path = tests_dir().join("requirements.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("grpcio=="))
        .unwrap_or_else(|| panic!("no grpcio== pin in {}", path.display()))
        .trim()
        .to_string()
}

/// The synthetic feed every scenario reads: 8 vehicles over routes R1..R4, 2 alerts.
const FEED: [&str; 4] = [
    "--source",
    "synthetic://?rate=20&vehicles=8",
    "--report-url",
    "",
];

#[test]
fn the_clients_protobuf_codec_decodes_hand_made_encodings() {
    // Needs no grpcio: it checks the codec every scenario's assertions rest on.
    let out = Command::new("python3")
        .arg(tests_dir().join("grpcio_client.py"))
        .arg("codec-self-test")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn subscribe_decodes_every_update_with_strictly_increasing_seq() {
    let Some(s) = run("subscribe", &FEED, &["--vehicles", "8", "--count", "20"]) else {
        return;
    };
    assert_eq!(s["stream"], "all");
    assert_eq!(s["vehicles"], 8);
    assert!(s["updates"].as_u64().unwrap() >= 20, "{s}");
    assert_eq!(s["missed"], s["gaps"], "{s}");
    let v = &s["first_vehicle"];
    assert!(v["has_position"].as_bool().unwrap(), "{v}");
    assert!(v["vehicle_id"].as_str().unwrap().starts_with('V'), "{v}");
    // A quarter of the vehicles are on R1: the subscriber's own route filter over grpcio.
    assert_eq!(s["r1_vehicles"], 2, "{s}");
}

#[test]
fn concurrent_subscribes_list_streams_and_health_share_one_channel() {
    let Some(s) = run(
        "multiplex",
        &FEED,
        &["--vehicles", "8", "--subscribers", "4", "--count", "10"],
    ) else {
        return;
    };
    assert_eq!(s["listed_subscribers"], 4, "{s}");
    assert_eq!(s["connections"], 1, "{s}");
    let subscribers = s["subscribers"].as_array().unwrap();
    assert_eq!(subscribers.len(), 4);
    for sub in subscribers {
        assert!(sub["updates"].as_u64().unwrap() >= 10, "{sub}");
        assert_eq!(sub["missed"], sub["gaps"], "{sub}");
    }
}

#[test]
fn unknown_stream_bad_bbox_and_unknown_method_get_their_status_codes() {
    let Some(s) = run("errors", &FEED, &[]) else {
        return;
    };
    assert_eq!(s["unknown_stream"][0], "NOT_FOUND", "{s}");
    assert_eq!(
        s["unknown_stream"][1],
        "no stream \"nope\"; configured: all"
    );
    for case in [
        "bbox_min_above_max",
        "bbox_latitude_out_of_range",
        "bbox_nan",
    ] {
        assert_eq!(s[case][0], "INVALID_ARGUMENT", "{case}: {s}");
    }
    assert_eq!(s["unknown_method"][0], "UNIMPLEMENTED", "{s}");
    assert_eq!(s["unknown_service"][0], "UNIMPLEMENTED", "{s}");
    assert_eq!(s["health_unknown"][0], "NOT_FOUND", "{s}");
}

#[test]
fn health_watch_streams_serving() {
    let Some(s) = run("health-watch", &FEED, &[]) else {
        return;
    };
    for name in [
        "(server)",
        "stallwatch.transit.v1.TransitBroadcaster",
        "stallwatch.transit.v1.TransitBroadcaster/all",
    ] {
        assert_eq!(s[name], 1, "{name} is SERVING: {s}");
    }
    // grpc.health.v1: SERVICE_UNKNOWN on the open call, not an error status.
    assert_eq!(s["unknown_service"], "SERVICE_UNKNOWN", "{s}");
}

#[test]
fn reflection_lists_the_service_and_describes_its_methods() {
    let Some(s) = run("reflection", &FEED, &[]) else {
        return;
    };
    for version in ["v1", "v1alpha"] {
        let services = s[version]["services"].as_array().unwrap();
        assert!(
            services
                .iter()
                .any(|n| n == "stallwatch.transit.v1.TransitBroadcaster"),
            "{s}"
        );
        assert_eq!(s[version]["methods"]["Subscribe"], true, "server streaming");
    }
}

#[test]
fn a_cancelled_subscribe_leaves_and_the_other_keeps_receiving() {
    let Some(s) = run("cancel", &FEED, &["--count", "5"]) else {
        return;
    };
    let staying = &s["staying"];
    assert!(
        staying["last_seq"].as_u64().unwrap() >= s["seq_at_cancel"].as_u64().unwrap() + 5,
        "{s}"
    );
    assert_eq!(staying["missed"], staying["gaps"], "{s}");
}

#[test]
fn sigterm_ends_a_grpcio_subscribe_with_unavailable() {
    let Some(python) = grpcio_python() else {
        return;
    };
    let mut server = Broadcaster::start(&FEED);
    let mut client = Client::start(&python, "shutdown", &server, &[]);
    client.wait_line("subscribed");
    server.sigterm();
    let status = server.wait_exit();
    assert!(status.success(), "server exit status {status:?}");
    let s = client.finish();
    assert_eq!(s["code"], "UNAVAILABLE", "{s}");
    assert_eq!(s["details"], "server shutting down", "{s}");
    assert!(server.log_text().contains("SIGTERM received"));
}

/// Runs the slow-reader scenario (`extra`: client options) and checks what both readers got.
fn slow_reader(extra: &[&str]) {
    // A faster feed: the slow reader's queue (64) fills in a few seconds.
    let feed = "synthetic://?rate=50&vehicles=8";
    let Some(s) = run(
        "slow-reader",
        &["--source", feed, "--report-url", ""],
        &[&["--count", "20"], extra].concat(),
    ) else {
        return;
    };
    let (fast, slow) = (&s["fast"], &s["slow"]);
    assert!(
        s["fast_during_stall"]["updates"].as_u64().unwrap() >= 20,
        "{s}"
    );
    assert_eq!(fast["missed"], fast["gaps"], "{s}");
    assert!(slow["missed"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(slow["missed"], slow["gaps"], "{s}");
    assert_eq!(
        s["connections"], 2,
        "the scenario's channel and the slow one's: {s}"
    );
}

#[test]
fn a_slow_reader_does_not_hold_up_a_fast_one_on_another_connection() {
    slow_reader(&[]);
}

#[test]
fn a_slow_reader_does_not_hold_up_a_fast_one_on_the_same_connection() {
    slow_reader(&["--shared-connection"]);
}
