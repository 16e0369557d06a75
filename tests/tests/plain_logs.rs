//! Issue 20, finding 10: `logFormat: text` wrote ANSI colour escapes (`\x1b[2m`, `\x1b[32m`)
//! into container logs, which the runtime captures through a pipe or file. Each binary runs
//! here with its output going to a file (not a terminal) and `NO_COLOR` unset, until it has
//! logged a line; the log must hold no escape.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stallwatch_e2e::{bin, free_port};

/// Runs `cmd` with stdout and stderr going to a file until its log has a line with a level
/// (`INFO`, `WARN`, `ERROR`), and returns the log.
fn log_of(mut cmd: Command, dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.log"));
    let out = File::create(&path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .env_remove("NO_COLOR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("LOG_FORMAT", "text")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let started = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let logged = ["INFO", "WARN", "ERROR"].iter().any(|l| log.contains(l));
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if logged || exited || started.elapsed() > Duration::from_secs(60) {
            break std::fs::read_to_string(&path).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ["INFO", "WARN", "ERROR"].iter().any(|l| log.contains(l)),
        "{name} logged no line with a level: {log:?}"
    );
    log
}

fn assert_plain(name: &str, log: &str) {
    assert!(
        !log.contains('\u{1b}'),
        "{name} wrote ANSI escapes into a log that is not a terminal: {log:?}"
    );
}

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn the_broadcaster_logs_plain_text_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("transit-broadcaster").unwrap());
    cmd.arg("serve")
        .arg(format!("--grpc-addr={}", addr()))
        .arg(format!("--http-addr={}", addr()))
        .arg(format!("--admin-addr={}", addr()))
        .arg("--report-url=")
        .arg("--source=synthetic://?rate=1");
    assert_plain(
        "transit-broadcaster",
        &log_of(cmd, dir.path(), "broadcaster"),
    );
}

#[test]
fn the_sidecar_logs_plain_text_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("transit-sidecar").unwrap());
    cmd.arg("run")
        .arg(format!("--ingest-addr={}", addr()))
        .arg(format!("--http-addr={}", addr()))
        .arg(format!("--admin-addr={}", addr()))
        .arg(format!("--dump-dir={}", dir.path().display()))
        .args(["--publish=off", "--pod-name=p", "--pod-namespace=ns"]);
    assert_plain("transit-sidecar", &log_of(cmd, dir.path(), "sidecar"));
}

#[test]
fn the_operator_logs_plain_text_when_stdout_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // An API server that is not there: the operator starts, logs, and keeps retrying.
    let kubeconfig = dir.path().join("kubeconfig");
    let port = free_port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin("transit-operator").unwrap());
    cmd.arg("run")
        .arg(format!("--http-addr={}", addr()))
        .arg("--leader-election=false")
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info");
    assert_plain("transit-operator", &log_of(cmd, dir.path(), "operator"));
}
