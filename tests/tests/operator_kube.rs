//! Scenario 5, the operator's kube side against a real sidecar: a stall condition on a pod
//! (served by the testkit's fake API server, kube's tower-test pattern, with the reconcile
//! harness the operator's own reconcile tests use) leads to exactly one dump request to a real `transit-sidecar` process
//! (reached by the operator's own HTTP client at the pod IP, port 8081: the sidecar listens on
//! a random 127.x.y.z loopback address) and exactly one pod deletion, in that order; with the
//! budget spent, neither.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stallwatch_core::bundle::Manifest;
use stallwatch_core::condition::StallReason;
use stallwatch_core::sync::lock;
use stallwatch_e2e::{BroadcasterOpts, Pod as LocalPod, ensure};
use stallwatch_testkit::fake_api::{NS, T0, Timeline};
use stallwatch_testkit::harness::{
    Harness, count, fixture, harness_with, pod_with_ip, position, spent_history,
};
use transit_operator::sidecar::{BoxFuture, HttpSidecar, SidecarApi, SidecarError, SidecarTarget};

/// The operator's real HTTP sidecar client, recording each call on the timeline.
struct RecordingSidecar {
    timeline: Timeline,
    real: HttpSidecar,
}

impl SidecarApi for RecordingSidecar {
    fn soft_restart<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        lock(&self.timeline).push(format!("sidecar {} soft-restart {stream}", target.pod_ip));
        self.real.soft_restart(target, stream, timeout)
    }

    fn capture_dump<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        reason: StallReason,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Manifest, SidecarError>> {
        lock(&self.timeline).push(format!("sidecar {} dump {stream}", target.pod_ip));
        let timeline = self.timeline.clone();
        Box::pin(async move {
            let r = self
                .real
                .capture_dump(target, stream, reason, timeout)
                .await;
            lock(&timeline).push(match &r {
                Ok(m) => format!("sidecar answered: bundle {}", m.path),
                Err(e) => format!("sidecar answered: error {e}"),
            });
            r
        })
    }
}

/// A random 127.x.y.z address (not 127.0.0.1) so port 8081 is ours.
fn random_loopback_ip() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id().rotate_left(7))
        .unwrap_or(7);
    format!(
        "127.{}.{}.{}",
        1 + (n >> 16) % 250,
        (n >> 8) % 256,
        1 + n % 250
    )
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A real local pod (broadcaster with a dead dispatcher, sidecar whose admin API listens on
/// `<ip>:8081` with the token the Secret in the mock API holds).
async fn real_pod(ip: &str) -> anyhow::Result<LocalPod> {
    let env = stallwatch_e2e::Env::new()?;
    std::fs::write(env.token_file(), TOKEN)?;
    let opts = BroadcasterOpts::new("synthetic://?rate=20&poison_after=500ms")
        .fault("legacy-unsupervised");
    let ip = ip.to_string();
    let pod = LocalPod::start(env, opts, move |o| {
        o.admin_host = ip.clone();
        o.admin_port = Some(8081);
    })
    .await?;
    pod.wait_stalled("all", Duration::from_secs(30)).await?;
    Ok(pod)
}

fn put_secret(h: &Harness) {
    use base64_token as b64;
    h.api.put(
        &format!(
            "/api/v1/namespaces/{NS}/secrets/{}",
            transit_operator::builders::secret_name("demo")
        ),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": transit_operator::builders::secret_name("demo"), "namespace": NS},
            "data": {"token": b64::encode(TOKEN)}
        }),
    );
}

mod base64_token {
    /// Standard base64 (the Secret's `data` encoding).
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn a_stall_condition_means_one_dump_from_the_real_sidecar_then_one_deletion() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ip = random_loopback_ip();
        let local = real_pod(&ip).await.unwrap();
        let mut h = harness(Duration::from_secs(30));
        put_secret(&h);
        h.stream(&fixture());
        h.pod(pod_with_ip("demo-abc", "pod-uid-1", Some(T0 - 700), &ip));
        h.reconcile().await.unwrap();
        let t = h.timeline();
        let dump = position(&t, &format!("sidecar {ip} dump all"));
        let answered = position(&t, "sidecar answered: bundle");
        let delete = position(&t, "DELETE v1/namespaces/transit/pods/demo-abc");
        assert!(dump < answered && answered < delete, "{t:#?}");
        assert_eq!(
            count(&t, "sidecar 127."),
            1,
            "exactly one dump request: {t:#?}"
        );
        assert_eq!(count(&t, "DELETE"), 1, "exactly one pod deletion: {t:#?}");
        // The real sidecar wrote exactly that one bundle, and it is the one on record.
        let bundles = local.sidecar.bundles().await.unwrap();
        assert_eq!(bundles.len(), 1, "{bundles:?}");
        let ts = h.current();
        let st = ts.status.as_ref().unwrap();
        let a = &st.remediation.history[0];
        assert_eq!(a.outcome, Some(stallwatch_crds::AttemptOutcome::Restarted));
        let recorded = a.bundle_path.clone().unwrap_or_default();
        assert!(
            std::path::Path::new(&recorded).file_name()
                == std::path::Path::new(&bundles[0].path).file_name(),
            "{recorded} vs {:?}",
            bundles[0]
        );
        let json = stallwatch_e2e::inspect(std::path::Path::new(&bundles[0].path), true).unwrap();
        assert!(
            json.contains("\"streams_without_dispatcher\": [\n    \"all\""),
            "{json}"
        );
        // Seen again: nothing more.
        let before = h.timeline().len();
        h.reconcile().await.unwrap();
        let t = h.timeline()[before..].to_vec();
        assert_eq!(count(&t, "sidecar 127.") + count(&t, "DELETE"), 0, "{t:#?}");
        ensure(local.sidecar.bundles().await.unwrap().len() == 1, || {
            "second bundle".into()
        })
        .unwrap();
    });
}

#[test]
fn with_the_budget_spent_the_real_sidecar_gets_no_request_and_no_pod_is_deleted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ip = random_loopback_ip();
        let local = real_pod(&ip).await.unwrap();
        let mut h = harness(Duration::from_secs(30));
        put_secret(&h);
        let mut ts = fixture();
        ts.status = Some(serde_json::from_value(json!({"remediation": spent_history(3)})).unwrap());
        h.stream(&ts);
        h.pod(pod_with_ip("demo-abc", "pod-uid-1", Some(T0 - 700), &ip));
        h.reconcile().await.unwrap();
        let t = h.timeline();
        assert_eq!(count(&t, "sidecar 127.") + count(&t, "DELETE"), 0, "{t:#?}");
        assert_eq!(count(&t, "POST events BudgetSpent"), 1, "{t:#?}");
        assert!(local.sidecar.bundles().await.unwrap().is_empty());
    });
}

fn harness(timeout: Duration) -> Harness {
    let timeline: Timeline = Arc::default();
    let sidecar = Arc::new(RecordingSidecar {
        timeline: timeline.clone(),
        real: HttpSidecar::new(),
    });
    harness_with(timeout, timeline, sidecar)
}
