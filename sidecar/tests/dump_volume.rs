//! Issue 20, finding 3: the process-dump sidecar (uid 0 with every capability but SYS_PTRACE
//! dropped, so no DAC_OVERRIDE) and the normal one (uid 65532) could not write what the other
//! had created on a shared dump volume (owner-only 0700 directories): `DumpFailed … Permission
//! denied` either way. Both run with gid 65532, as the operator's pod specs set them; the
//! volume's root is prepared as the chart README asks of a hostPath/local PV (owner
//! 65532:65532, mode 2770). Each real `transit-sidecar` binary runs under `setpriv` with
//! exactly those credentials, takes a bundle, and the other one then takes one too.
//!
//! Needs root and `setpriv` (util-linux); skipped with one line otherwise, or failed under
//! `STALLWATCH_REQUIRE_TEST_TOOLS=1` (CI).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use stallwatch_testkit::net::free_port;

const TOKEN: &str = "dump-volume-test-token";
const GID: u32 = 65532;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Who a sidecar runs as.
#[derive(Clone, Copy, Debug)]
enum Sidecar {
    /// `runAsUser: 65532`, `runAsGroup: 65532`, `drop: ALL`.
    Normal,
    /// `processDump`: `runAsUser: 0`, `runAsGroup: 65532`, `drop: ALL`, `add: SYS_PTRACE`.
    ProcessDump,
}

fn skip_reason() -> Option<String> {
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        return Some("not running as root (setpriv must switch uids)".into());
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return Some("no setpriv (util-linux) on PATH".into());
    }
    None
}

fn skipped(test: &str) -> bool {
    let Some(why) = skip_reason() else {
        return false;
    };
    if std::env::var("STALLWATCH_REQUIRE_TEST_TOOLS").as_deref() == Ok("1") {
        panic!("{test}: {why} (STALLWATCH_REQUIRE_TEST_TOOLS=1)");
    }
    eprintln!("skipped {test}: {why}");
    true
}

struct Running {
    _proc: Proc,
    http: u16,
    admin: u16,
    log: PathBuf,
}

fn spawn(who: Sidecar, dir: &Path, dumps: &Path, pod: &str) -> Running {
    let (http, admin, ingest) = (free_port(), free_port(), free_port());
    let log = dir.join(format!("{pod}.log"));
    let mut cmd = Command::new("setpriv");
    match who {
        Sidecar::Normal => cmd.args([
            "--reuid=65532",
            "--regid=65532",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]),
        Sidecar::ProcessDump => cmd.args([
            "--reuid=0",
            "--regid=65532",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all,+sys_ptrace",
        ]),
    };
    let out = std::fs::File::create(&log).unwrap();
    let child = cmd
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_transit-sidecar"))
        .arg("run")
        .arg(format!("--ingest-addr=127.0.0.1:{ingest}"))
        .arg(format!("--http-addr=127.0.0.1:{http}"))
        .arg(format!("--admin-addr=127.0.0.1:{admin}"))
        .arg(format!(
            "--admin-token-file={}",
            dir.join("token").display()
        ))
        // Nothing listens there: the bundle records the failed task dump.
        .arg(format!(
            "--broadcaster-admin-url=http://127.0.0.1:{}",
            free_port()
        ))
        .arg(format!("--dump-dir={}", dumps.display()))
        .arg(format!("--pod-name={pod}"))
        .args(["--pod-namespace=transit", "--publish=off"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    Running {
        _proc: Proc(child),
        http,
        admin,
        log,
    }
}

async fn status(http: &reqwest::Client, r: &Running) -> Value {
    for _ in 0..400 {
        if let Ok(resp) = http
            .get(format!("http://127.0.0.1:{}/v1/status", r.http))
            .send()
            .await
        {
            return resp.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the sidecar never answered: {}",
        std::fs::read_to_string(&r.log).unwrap_or_default()
    );
}

/// The sidecar's start probe and one bundle, both on the shared volume.
async fn writes_a_bundle(http: &reqwest::Client, who: Sidecar, r: &Running) -> String {
    let s = status(http, r).await;
    assert_eq!(
        s["dump_storage"]["ok"], true,
        "{who:?}: the start probe failed: {s}"
    );
    let resp = http
        .post(format!("http://127.0.0.1:{}/v1/dumps", r.admin))
        .bearer_auth(TOKEN)
        .json(&json!({"requested_by": "test"}))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code, 201, "{who:?}: {body}");
    body["path"].as_str().unwrap().to_owned()
}

async fn both_write(first: Sidecar, second: Sidecar) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o444)).unwrap();
    // The volume root as the chart README asks of a PV that fsGroup does not reach.
    let dumps = dir.path().join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    std::os::unix::fs::chown(&dumps, Some(65532), Some(GID)).unwrap();
    std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let http = reqwest::Client::new();

    let a = spawn(first, dir.path(), &dumps, "pod-a");
    let bundle_a = writes_a_bundle(&http, first, &a).await;
    drop(a);
    let b = spawn(second, dir.path(), &dumps, "pod-b");
    let bundle_b = writes_a_bundle(&http, second, &b).await;
    drop(b);
    // Everything is the shared group's, and nothing is open to others.
    for path in [&bundle_a, &bundle_b] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.gid(), GID, "{path}");
        assert_eq!(meta.mode() & 0o7007, 0o2000, "{path}: {:o}", meta.mode());
        let manifest = std::fs::metadata(Path::new(path).join("manifest.json")).unwrap();
        assert_eq!(manifest.mode() & 0o777, 0o640, "{path}");
    }
}

#[tokio::test]
async fn the_process_dump_sidecar_writes_where_the_normal_one_wrote_first() {
    if skipped("the_process_dump_sidecar_writes_where_the_normal_one_wrote_first") {
        return;
    }
    both_write(Sidecar::Normal, Sidecar::ProcessDump).await;
}

#[tokio::test]
async fn the_normal_sidecar_writes_where_the_process_dump_one_wrote_first() {
    if skipped("the_normal_sidecar_writes_where_the_process_dump_one_wrote_first") {
        return;
    }
    both_write(Sidecar::ProcessDump, Sidecar::Normal).await;
}
