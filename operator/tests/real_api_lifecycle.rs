//! The operator process's own life on a real API server (issue 21): leader election off,
//! liveness that fails when one of its loops is wedged (a hidden test hook), and SIGTERM
//! ending it within its grace in every state. The operator runs from the chart's Deployment
//! (namespaced mode), its pod played locally by the envtest kubelet, with extra env where a
//! test needs a hook or a short bound.

mod envtest_support;
mod journey_support;

use std::time::Duration;

use envtest_support::*;
use journey_support::*;
use kube::Client;
use serde_json::json;
use stallwatch_envtest::kubelet;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

/// The documented default grace (`--shutdown-grace`, 10 s); a test waits a little longer
/// before calling a process stuck, as the machine may be loaded.
const GRACE: Duration = Duration::from_secs(10);
const STUCK_AFTER: Duration = Duration::from_secs(15);

fn values(ns: &str, replicas: u32, leader_election: bool) -> serde_json::Value {
    let mut v = namespaced_values(ns, replicas);
    v["leaderElection"]["enabled"] = json!(leader_election);
    v
}

async fn stack_env(
    plane: &'static ControlPlane,
    ns: &str,
    values_of: impl FnOnce(&str) -> serde_json::Value,
    env: &[(&str, &str)],
    test: &str,
) -> Option<(String, Client, Vec<Operator>)> {
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let ops = stack_with(plane, &client, &ns, &values_of(&ns), env, test).await?;
    Some((ns, client, ops))
}

/// Asserts that SIGTERM ends `op` within [`STUCK_AFTER`], and prints how long it took.
fn assert_stops_on_sigterm(op: &mut Operator, state: &str) {
    let took = sigterm_exit_time(op, STUCK_AFTER);
    if took.is_none() {
        eprintln!("{}", op.pod.tails(40));
    }
    let took =
        took.unwrap_or_else(|| panic!("{state}: still running {STUCK_AFTER:?} after SIGTERM"));
    println!("{state}: exited {took:.1?} after SIGTERM (grace {GRACE:?})");
}

// Issue 21, bug 2: with leader election off the watch sender was dropped at once, so the
// operator logged "leadership lost", reconciled nothing, answered `ok` on /healthz and
// ignored SIGTERM.
#[tokio::test]
async fn with_leader_election_off_the_operator_reconciles_and_stops_on_sigterm() {
    let test = "with_leader_election_off_the_operator_reconciles_and_stops_on_sigterm";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, mut ops)) = stack_env(
        plane,
        "life-no-election",
        |ns| values(ns, 1, false),
        &[],
        test,
    )
    .await
    else {
        return;
    };
    create_stream(&client, &ns, "demo", json!({"source": {"synthetic": {}}})).await;
    let owned = owned_back(
        &client,
        &ns,
        "demo",
        &Default::default(),
        Duration::from_secs(30),
    )
    .await;
    let log = ops[0].log();
    if owned.is_err() {
        eprintln!("{}", ops[0].pod.tails(40));
    }
    assert!(
        owned.is_ok(),
        "nothing reconciled with leader election off: {owned:?}"
    );
    assert!(!log.contains("leadership lost"), "{log}");
    assert_eq!(probe(&ops[0], "/healthz").await, 200);
    assert_eq!(probe(&ops[0], "/readyz").await, 200);
    assert_stops_on_sigterm(&mut ops[0], "leader election off");
    plane.delete_namespace(&ns).await;
}

/// Waits until `/healthz` of `op` answers 503; returns the body.
async fn unhealthy(op: &Operator, within: Duration) -> String {
    let url = format!("{}/healthz", op.http);
    eventually("/healthz fails", within, || async {
        let r = reqwest::get(&url).await.ok()?;
        (r.status().as_u16() == 503).then_some(())?;
        r.text().await.ok()
    })
    .await
}

/// The operator with its `wedge` loop (`controller`, `elector`) wedged by the test hook: its
/// `/healthz` fails within 40 s naming that loop, and it still stops on SIGTERM.
async fn a_wedged_loop_fails_healthz(test: &str, ns: &str, wedge: &str) {
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let env = [("STALLWATCH_TEST_WEDGE", wedge), ("LIVENESS_TIMEOUT", "3s")];
    let Some((ns, _client, mut ops)) =
        stack_env(plane, ns, |ns| values(ns, 1, true), &env, test).await
    else {
        return;
    };
    let body = unhealthy(&ops[0], Duration::from_secs(40)).await;
    dump_on_panic(&ops);
    assert!(body.contains(&format!("{wedge} loop")), "{body}");
    // Wedged is no reason to ignore SIGTERM.
    assert_stops_on_sigterm(&mut ops[0], &format!("{wedge} loop wedged"));
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_wedged_controller_loop_fails_healthz_within_its_bound() {
    a_wedged_loop_fails_healthz(
        "a_wedged_controller_loop_fails_healthz_within_its_bound",
        "life-wedge-controller",
        "controller",
    )
    .await;
}

#[tokio::test]
async fn a_wedged_elector_loop_fails_healthz_within_its_bound() {
    // The elector's bound is the lease duration (6 s in these values) at least.
    a_wedged_loop_fails_healthz(
        "a_wedged_elector_loop_fails_healthz_within_its_bound",
        "life-wedge-elector",
        "elector",
    )
    .await;
}

#[tokio::test]
async fn a_healthy_operator_stays_healthy() {
    let test = "a_healthy_operator_stays_healthy";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let env = [("LIVENESS_TIMEOUT", "3s")];
    let Some((ns, client, ops)) =
        stack_env(plane, "life-healthy", |ns| values(ns, 1, true), &env, test).await
    else {
        return;
    };
    create_stream(&client, &ns, "demo", json!({"source": {"synthetic": {}}})).await;
    all_owned(&client, &ns, "demo").await;
    // Several liveness bounds of a quiet operator: its loops keep beating.
    for _ in 0..8 {
        assert_eq!(probe(&ops[0], "/healthz").await, 200, "{}", ops[0].log());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn sigterm_ends_a_leading_operator_within_its_grace() {
    let test = "sigterm_ends_a_leading_operator_within_its_grace";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, mut ops)) = stack_env(
        plane,
        "life-stop-leading",
        |ns| values(ns, 1, true),
        &[],
        test,
    )
    .await
    else {
        return;
    };
    create_stream(&client, &ns, "demo", json!({"source": {"synthetic": {}}})).await;
    all_owned(&client, &ns, "demo").await;
    assert_stops_on_sigterm(&mut ops[0], "leading");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn sigterm_ends_a_standby_operator_within_its_grace() {
    let test = "sigterm_ends_a_standby_operator_within_its_grace";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, _client, mut ops)) = stack_env(
        plane,
        "life-stop-standby",
        |ns| values(ns, 2, true),
        &[],
        test,
    )
    .await
    else {
        return;
    };
    let standby = eventually("a standby", Duration::from_secs(30), || {
        let found = ops.iter().position(|o| {
            o.log()
                .contains("standing by: waiting for the leader lease")
        });
        async move { found }
    })
    .await;
    assert_stops_on_sigterm(&mut ops[standby], "standby");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn sigterm_ends_an_operator_whose_caches_never_sync() {
    let test = "sigterm_ends_an_operator_whose_caches_never_sync";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    // Watching a namespace its Role does not cover: every list is refused, the caches never
    // sync.
    let elsewhere = plane.namespace("life-unsynced-elsewhere").await;
    let env = [("WATCH_NAMESPACE", elsewhere.as_str())];
    let Some((ns, _client, mut ops)) = stack_env(
        plane,
        "life-stop-unsynced",
        |ns| values(ns, 1, true),
        &env,
        test,
    )
    .await
    else {
        return;
    };
    eventually("leading", Duration::from_secs(30), || {
        let leading = ops[0].log().contains("leading; starting the controller");
        async move { leading.then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(probe(&ops[0], "/readyz").await, 503, "caches synced?");
    assert_stops_on_sigterm(&mut ops[0], "caches not synced");
    plane.delete_namespace(&elsewhere).await;
    plane.delete_namespace(&ns).await;
}

/// A kubeconfig for a server that is not there (nothing listens on the port).
fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let port = stallwatch_envtest::free_port();
    let path = dir.join("unreachable.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: nobody\ncurrent-context: gone\nusers:\n- name: nobody\n  user:\n    token: none\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn sigterm_ends_an_operator_whose_api_server_is_unreachable() {
    let test = "sigterm_ends_an_operator_whose_api_server_is_unreachable";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(dir.path());
    for (label, election) in [("standby", true), ("leader election off", false)] {
        let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
        let name = if election {
            "life-unreachable-elect"
        } else {
            "life-unreachable-no-elect"
        };
        let Some((ns, _client, mut ops)) =
            stack_env(plane, name, |ns| values(ns, 1, election), &env, test).await
        else {
            return;
        };
        // Let it try (and fail) for a while: lease rounds or watches retrying.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_stops_on_sigterm(&mut ops[0], &format!("API server unreachable ({label})"));
        plane.delete_namespace(&ns).await;
    }
}

/// A self-signed serving certificate in `dir` as cert-manager would mount it.
fn webhook_cert_dir(dir: &std::path::Path) -> std::path::PathBuf {
    let certs = dir.join("webhook-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(certs.join("tls.crt"), key.cert.pem()).unwrap();
    std::fs::write(certs.join("tls.key"), key.signing_key.serialize_pem()).unwrap();
    certs
}

#[tokio::test]
async fn sigterm_ends_an_operator_serving_its_webhook() {
    let test = "sigterm_ends_an_operator_serving_its_webhook";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let dir = tempfile::tempdir().unwrap();
    let certs = webhook_cert_dir(dir.path());
    let addr = format!("127.0.0.1:{}", stallwatch_envtest::free_port());
    let env = [
        ("WEBHOOK_ADDR", addr.as_str()),
        ("WEBHOOK_CERT_DIR", certs.to_str().unwrap()),
    ];
    let Some((ns, _client, mut ops)) = stack_env(
        plane,
        "life-stop-webhook",
        |ns| values(ns, 1, true),
        &env,
        test,
    )
    .await
    else {
        return;
    };
    eventually("serving the webhook", Duration::from_secs(30), || {
        let serving = ops[0]
            .log()
            .contains("serving the sidecar-injection webhook");
        async move { serving.then_some(()) }
    })
    .await;
    // A client holding a connection open to the webhook does not hold up the exit.
    let _held = std::net::TcpStream::connect(&addr).unwrap();
    assert_stops_on_sigterm(&mut ops[0], "webhook serving");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn sigterm_ends_an_operator_in_the_middle_of_a_remediation() {
    let test = "sigterm_ends_an_operator_in_the_middle_of_a_remediation";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, mut ops)) = stack_env(
        plane,
        "life-stop-remediating",
        |ns| values(ns, 1, true),
        &[],
        test,
    )
    .await
    else {
        return;
    };
    let pod = demo_stream_pod(&client, &ns).await;
    // The story's poison message, and a dump that hangs for 30 s on the broadcaster's task
    // dump: the operator is inside its call to the sidecar when SIGTERM comes.
    let overrides = poisoned_dump_hanging("30s");
    let local = kubelet::run_pod(plane, &client, &pod, &overrides).await;
    attempt_in_dump_step(&client, &ns, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_stops_on_sigterm(&mut ops[0], "mid-remediation (dump in progress)");
    drop(local);
    plane.delete_namespace(&ns).await;
}
