//! Reconcile against a mock API server (kube's tower-test pattern), one scenario per test.
//!
//! The mock serves a small in-memory API: server-side apply stores objects, status writes
//! honour the resourceVersion precondition, Events are accepted, and faults (409, 500, a hung
//! call) can be injected per method and path. A fake sidecar records its calls in the same
//! timeline as the API calls, so tests can assert ordering ("recorded before acting").

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::json;
use stallwatch_core::bundle::Manifest;
use stallwatch_core::condition::{CONDITION_TYPE, StallReason};
use stallwatch_crds::{RemediationMode, labels};
use stallwatch_testkit::fake_api::{FaultKind, T0, TS_PATH, Timeline};
use stallwatch_testkit::harness::{
    Harness, condition, count, fixture, harness_with, micro_time, pod_with_ip, position,
    spent_history,
};
use transit_operator::Error;
use transit_operator::reconcile::{Context, error_policy, reconcile};
use transit_operator::sidecar::{BoxFuture, SidecarApi, SidecarError, SidecarTarget};

/// A sidecar that records its calls on the timeline.
struct FakeSidecar {
    timeline: Timeline,
    dump: Mutex<Result<(), SidecarError>>,
}

fn manifest() -> Manifest {
    serde_json::from_value(json!({
        "format": "stallwatch.bundle.v1",
        "id": "20261128T021503.042Z-all-DispatcherDead",
        "path": "/dumps/transit/demo-abc/20261128T021503.042Z-all-DispatcherDead",
        "versions": {"sidecar": "0.1.0", "report_protocol": "stallwatch.report.v1", "bundle_format": "stallwatch.bundle.v1"},
        "pod": "demo-abc", "namespace": "transit",
        "requested_by": "operator", "created_at_ms": T0,
        "timings": {"task_dump_ms": 3, "process_dump_ms": 0, "write_ms": 1, "total_ms": 4}, "files": [],
        "task_dump": {"outcome": "fetched", "tasks": 7},
        "process_dump": {"outcome": "skipped", "why": "disabled"}
    }))
    .unwrap_or_else(|e| panic!("manifest fixture: {e}"))
}

impl SidecarApi for FakeSidecar {
    fn soft_restart<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), SidecarError>> {
        self.timeline
            .lock()
            .unwrap()
            .push(format!("sidecar {} soft-restart {stream}", target.pod_ip));
        Box::pin(async { Ok(()) })
    }

    fn capture_dump<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        _reason: StallReason,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Manifest, SidecarError>> {
        assert_eq!(target.token.len(), 64, "the admin token is passed");
        self.timeline
            .lock()
            .unwrap()
            .push(format!("sidecar {} dump {stream}", target.pod_ip));
        let r = self.dump.lock().unwrap().clone();
        Box::pin(async move { r.map(|()| manifest()) })
    }
}

fn harness(timeout: Duration) -> Harness {
    let timeline: Timeline = Arc::default();
    let sidecar = Arc::new(FakeSidecar {
        timeline: timeline.clone(),
        dump: Mutex::new(Ok(())),
    });
    harness_with(timeout, timeline, sidecar)
}

fn pod(name: &str, uid: &str, stalled_since: Option<u64>) -> Pod {
    pod_with_ip(name, uid, stalled_since, "10.1.2.3")
}

#[tokio::test]
async fn create_applies_every_object_with_owner_and_writes_status() {
    let mut h = harness(Duration::from_secs(30));
    h.stream(&fixture());
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let t = h.timeline();
    let order = [
        "GET v1/namespaces/transit/secrets/demo-sidecar-admin",
        "PATCH v1/namespaces/transit/secrets/demo-sidecar-admin apply",
        "serviceaccounts/demo-sidecar apply",
        "roles/demo-sidecar apply",
        "rolebindings/demo-sidecar apply",
        "configmaps/demo-config apply",
        "services/demo apply",
        "deployments/demo apply",
        "transitstreams/demo/status",
    ];
    let positions: Vec<usize> = order.iter().map(|n| position(&t, n)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{t:#?}");
    let dep = &h
        .api
        .writes("PATCH /apis/apps/v1/namespaces/transit/deployments/demo")[0];
    assert_eq!(
        dep["metadata"]["ownerReferences"][0]["kind"],
        "TransitStream"
    );
    assert_eq!(dep["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        dep["spec"]["template"]["spec"]["readinessGates"][0]["conditionType"],
        CONDITION_TYPE
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "stallwatch:test"
    );
    let ts = h.current();
    let st = ts.status.as_ref().unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.phase, Some(stallwatch_crds::Phase::Running));
    assert_eq!(
        condition(&ts, "Ready"),
        ("True".into(), "AllReplicasReady".into())
    );
    assert_eq!(condition(&ts, "Stalled").0, "False");
}

#[tokio::test]
async fn update_reapplies_on_a_new_generation_and_keeps_the_token() {
    let mut h = harness(Duration::from_secs(30));
    h.stream(&fixture());
    h.reconcile().await.unwrap();
    let token = h
        .api
        .writes("PATCH /api/v1/namespaces/transit/secrets/demo-sidecar-admin")[0]["data"]["token"]
        .clone();
    // Same generation: only the Deployment (for its status); status unchanged, not rewritten.
    let before = h.timeline().len();
    h.reconcile().await.unwrap();
    let t = h.timeline()[before..].to_vec();
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("deployments/demo apply"));
    // A spec change: everything is applied again; the existing token is read, not replaced.
    let mut ts = h.current();
    ts.spec.replicas = 3;
    ts.metadata.generation = Some(2);
    h.stream(&ts);
    h.reconcile().await.unwrap();
    let secret_writes = h
        .api
        .writes("PATCH /api/v1/namespaces/transit/secrets/demo-sidecar-admin");
    assert_eq!(secret_writes.len(), 1, "the token is generated once");
    assert_eq!(secret_writes[0]["data"]["token"], token);
    let deps = h
        .api
        .writes("PATCH /apis/apps/v1/namespaces/transit/deployments/demo");
    assert_eq!(deps.last().unwrap()["spec"]["replicas"], 3);
    assert_eq!(h.current().status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn invalid_spec_sets_the_condition_applies_nothing_and_waits() {
    let mut h = harness(Duration::from_secs(30));
    let mut ts = fixture();
    ts.spec.stall_after = Duration::from_millis(100).into();
    h.stream(&ts);
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::await_change());
    let t = h.timeline();
    assert_eq!(count(&t, "apply"), 0, "{t:#?}");
    assert!(count(&t, "POST events InvalidSpec") == 1, "{t:#?}");
    let ts = h.current();
    assert_eq!(
        condition(&ts, "InvalidSpec"),
        ("True".into(), "InvalidSpec".into())
    );
    assert_eq!(
        ts.status.as_ref().unwrap().phase,
        Some(stallwatch_crds::Phase::InvalidSpec)
    );
    let (_, msg) = {
        let c = ts
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec")
            .unwrap();
        (c.status.clone(), c.message.clone())
    };
    assert!(msg.contains("spec.stallAfter"), "{msg}");
    // Reconciling again does not repeat the Event.
    h.reconcile().await.unwrap();
    assert_eq!(count(&h.timeline(), "POST events InvalidSpec"), 1);
}

#[tokio::test]
async fn stall_is_recorded_then_dumped_then_the_pod_deleted() {
    let mut h = harness(Duration::from_secs(30));
    h.stream(&fixture());
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    h.reconcile().await.unwrap();
    let t = h.timeline();
    let recorded = position(&t, "status inFlight=Recorded");
    let dump_step = position(&t, "status inFlight=Dump");
    let dump = position(&t, "sidecar 10.1.2.3 dump all");
    let restart_step = position(&t, "status inFlight=Restart");
    let delete = position(&t, "DELETE v1/namespaces/transit/pods/demo-abc");
    assert!(
        recorded < dump_step && dump_step < dump && dump < restart_step && restart_step < delete,
        "{t:#?}"
    );
    assert_eq!(count(&t, "sidecar 10."), 1, "exactly one dump request");
    assert_eq!(count(&t, "DELETE"), 1, "exactly one pod deletion");
    let del = h
        .api
        .writes("DELETE /api/v1/namespaces/transit/pods/demo-abc");
    assert_eq!(del[0]["preconditions"]["uid"], "pod-uid-1");
    for reason in [
        "RemediationStarted",
        "DumpRequested",
        "DumpCaptured",
        "Restarting",
        "RestartIssued",
        "RemediationCompleted",
    ] {
        assert_eq!(
            count(&t, &format!("POST events {reason}")),
            1,
            "{reason}: {t:#?}"
        );
    }
    let ts = h.current();
    let st = ts.status.as_ref().unwrap();
    assert!(st.remediation.in_flight.is_none());
    let a = &st.remediation.history[0];
    assert_eq!(a.outcome, Some(stallwatch_crds::AttemptOutcome::Restarted));
    assert_eq!(
        a.bundle_path.as_deref(),
        Some("/dumps/transit/demo-abc/20261128T021503.042Z-all-DispatcherDead")
    );
    assert_eq!(st.stalls, 1);
    assert!(st.last_remediation_time.is_some());
    let m = h.metrics();
    assert!(
        m.contains("stallwatch_operator_remediations_total{outcome=\"Restarted\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("stallwatch_operator_stall_to_restart_seconds_count 1"),
        "{m}"
    );

    // The same episode, seen again (the pod still terminating in the cache): nothing more.
    let before = h.timeline().len();
    h.reconcile().await.unwrap();
    let t = h.timeline()[before..].to_vec();
    assert_eq!(count(&t, "sidecar 10.") + count(&t, "DELETE"), 0, "{t:#?}");
}

#[tokio::test]
async fn a_failed_status_write_means_no_action() {
    let mut h = harness(Duration::from_secs(30));
    // The cache's copy is stale: another operator (a new leader) recorded an attempt since.
    let cached = h.stream(&fixture());
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    let mut theirs = fixture();
    theirs.status = Some(serde_json::from_value(json!({"remediation": spent_history(1)})).unwrap());
    h.api.put(TS_PATH, serde_json::to_value(&theirs).unwrap());
    let err = reconcile(cached, h.ctx.clone()).await.unwrap_err();
    assert_eq!(err.label(), "conflict");
    let t = h.timeline();
    assert_eq!(count(&t, "sidecar 10.") + count(&t, "DELETE"), 0, "{t:#?}");
    let action = error_policy(Arc::new(h.current()), &err, h.ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_millis(200)));
    // The retry records and proceeds.
    h.reconcile().await.unwrap();
    assert_eq!(count(&h.timeline(), "DELETE"), 1);
}

/// Issue 20, finding 8: a reconcile whose cached copy has not seen the operator's own last
/// status write yet (owned objects trigger the second reconcile of a new TransitStream within
/// milliseconds) got a 409 and logged `reconcile failed`. The record is the same, so the write
/// goes through at the live resourceVersion.
#[tokio::test]
async fn a_cache_behind_our_own_status_write_is_no_conflict() {
    let mut h = harness(Duration::from_secs(30));
    let cached = h.stream(&fixture());
    let mut ours = fixture();
    ours.status = Some(serde_json::from_value(json!({"phase": "Pending", "streams": 1})).unwrap());
    h.api.put(TS_PATH, serde_json::to_value(&ours).unwrap());
    reconcile(cached, h.ctx.clone()).await.unwrap();
    assert!(h.current().status.unwrap().observed_generation.is_some());
}

#[tokio::test]
async fn a_failed_dump_does_not_block_the_restart() {
    let mut h = harness(Duration::from_secs(30));
    let sidecar = Arc::new(FakeSidecar {
        timeline: h.timeline.clone(),
        dump: Mutex::new(Err(SidecarError::Status {
            status: 507,
            body: "volume full".into(),
        })),
    });
    let ctx = Arc::new(Context::new(
        h.api.client(),
        h.ctx.settings.clone(),
        h.ctx.pods.clone(),
        h.ctx.streams.clone(),
        sidecar,
        h.ctx.metrics.clone(),
        Arc::new(|| T0),
    ));
    h.ctx = ctx;
    h.stream(&fixture());
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    h.reconcile().await.unwrap();
    let t = h.timeline();
    assert_eq!(count(&t, "POST events DumpFailed"), 1, "{t:#?}");
    assert_eq!(count(&t, "DELETE"), 1);
    let a = &h.current().status.unwrap().remediation.history[0];
    assert_eq!(a.dump, Some(stallwatch_crds::StepResult::Failed));
    assert!(a.message.is_some());
}

#[tokio::test]
async fn budget_spent_means_degraded_an_event_a_metric_and_no_restart() {
    let mut h = harness(Duration::from_secs(30));
    let mut ts = fixture();
    ts.status = Some(serde_json::from_value(json!({"remediation": spent_history(3)})).unwrap());
    h.stream(&ts);
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    let action = h.reconcile().await.unwrap();
    let t = h.timeline();
    assert_eq!(count(&t, "sidecar 10.") + count(&t, "DELETE"), 0, "{t:#?}");
    assert_eq!(count(&t, "POST events BudgetSpent"), 1, "{t:#?}");
    let ts = h.current();
    assert_eq!(
        condition(&ts, "Degraded"),
        ("True".into(), "BudgetSpent".into())
    );
    assert_eq!(
        ts.status.as_ref().unwrap().phase,
        Some(stallwatch_crds::Phase::Degraded)
    );
    // The oldest attempt leaves the hour in 600 s; the periodic resync (300 s) comes first.
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let m = h.metrics();
    assert!(
        m.contains("stallwatch_operator_budget_exhausted_total 1"),
        "{m}"
    );
    assert!(
        m.contains("stallwatch_operator_remediations_blocked_total{reason=\"BudgetSpent\"} 1"),
        "{m}"
    );
    // Seen again: no second Event.
    h.reconcile().await.unwrap();
    assert_eq!(count(&h.timeline(), "POST events BudgetSpent"), 1);
}

#[tokio::test]
async fn paused_detects_but_never_acts() {
    let mut h = harness(Duration::from_secs(30));
    let mut ts = fixture();
    ts.spec.paused = true;
    h.stream(&ts);
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    h.reconcile().await.unwrap();
    let t = h.timeline();
    assert_eq!(count(&t, "sidecar 10.") + count(&t, "DELETE"), 0, "{t:#?}");
    let ts = h.current();
    let st = ts.status.as_ref().unwrap();
    assert_eq!(st.phase, Some(stallwatch_crds::Phase::Paused));
    assert_eq!(condition(&ts, "Stalled").0, "True");
    assert!(st.remediation.history.is_empty());
    assert!(
        h.metrics()
            .contains("remediations_blocked_total{reason=\"Paused\"} 1")
    );
}

#[tokio::test]
async fn observe_records_what_it_would_do_and_does_nothing() {
    let mut h = harness(Duration::from_secs(30));
    let mut ts = fixture();
    ts.spec.remediation.mode = RemediationMode::Observe;
    h.stream(&ts);
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    h.reconcile().await.unwrap();
    h.reconcile().await.unwrap();
    let t = h.timeline();
    assert_eq!(count(&t, "sidecar 10.") + count(&t, "DELETE"), 0, "{t:#?}");
    assert_eq!(
        count(&t, "POST events RemediationObserved"),
        1,
        "once per episode"
    );
    let st = h.current().status.unwrap();
    assert_eq!(st.remediation.history.len(), 1);
    let a = &st.remediation.history[0];
    assert!(a.observe_only);
    assert!(
        a.message
            .as_deref()
            .unwrap()
            .contains("would capture a dump of pod demo-abc, then delete pod demo-abc")
    );
    assert!(
        h.metrics()
            .contains("remediations_total{outcome=\"Observed\"} 1")
    );
}

#[tokio::test]
async fn rollout_restart_patches_the_template_annotation() {
    let mut h = harness(Duration::from_secs(30));
    let mut ts = fixture();
    ts.spec.remediation.mode = RemediationMode::RestartOnly;
    ts.spec.remediation.restart_target = stallwatch_crds::RestartTarget::Deployment;
    h.stream(&ts);
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    h.reconcile().await.unwrap();
    let t = h.timeline();
    assert_eq!(count(&t, "deployments/demo merge"), 1, "{t:#?}");
    assert_eq!(count(&t, "DELETE"), 0);
    let patch = &h
        .api
        .writes("PATCH /apis/apps/v1/namespaces/transit/deployments/demo")
        .into_iter()
        .find(|b| b.get("kind").is_none())
        .unwrap();
    let at =
        &patch["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
    assert!(at.as_str().unwrap().starts_with("2026-"), "{at}");
}

#[tokio::test]
async fn server_errors_back_off_exponentially_then_reset() {
    let mut h = harness(Duration::from_secs(30));
    h.stream(&fixture());
    h.api
        .fault(Method::PATCH, "deployments/demo", FaultKind::Status(500), 2);
    let ts = Arc::new(h.current());
    let e1 = h.reconcile().await.unwrap_err();
    assert_eq!(e1.label(), "api_server_error");
    assert_eq!(
        error_policy(ts.clone(), &e1, h.ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    let e2 = h.reconcile().await.unwrap_err();
    assert_eq!(
        error_policy(ts.clone(), &e2, h.ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    h.reconcile().await.unwrap();
    let e3 = Error::Kube(kube::Error::Api(
        kube::core::Status::failure("x", "y").with_code(500).boxed(),
    ));
    assert_eq!(
        error_policy(ts, &e3, h.ctx.clone()),
        Action::requeue(Duration::from_secs(1)),
        "a success resets the backoff"
    );
    assert!(
        h.metrics()
            .contains("reconcile_errors_total{error=\"api_server_error\"} 3")
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_api_call_times_out() {
    let mut h = harness(Duration::from_secs(5));
    h.stream(&fixture());
    h.api
        .fault(Method::PATCH, "deployments/demo", FaultKind::Hang, 1);
    let err = h.reconcile().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_secs(5)),
        "{err}"
    );
    assert_eq!(err.label(), "timeout");
    let action = error_policy(Arc::new(h.current()), &err, h.ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    h.reconcile().await.unwrap();
}

#[tokio::test]
async fn a_new_leader_resumes_an_attempt_without_repeating_the_dump() {
    let mut h = harness(Duration::from_secs(30));
    // The previous leader recorded the Dump step and died before its result was recorded.
    let mut ts = fixture();
    let at = micro_time;
    ts.status = Some(
        serde_json::from_value(json!({"remediation": {"inFlight": {
            "id": "demo-abc/all@1", "pod": "demo-abc", "podUid": "pod-uid-1", "stream": "all",
            "reason": "DispatcherDead", "stalledSince": at(T0 - 700), "startedAt": at(T0 - 500),
            "step": "Dump", "stepStartedAt": at(T0 - 400)
        }}}))
        .unwrap(),
    );
    h.stream(&ts);
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_millis(10_000 - 400)));
    assert_eq!(
        count(&h.timeline(), "sidecar 10."),
        0,
        "the dump is not issued twice"
    );
    // After the dump timeout: recorded as timed out, then the restart.
    h.clock.store(T0 + 10_000, Ordering::SeqCst);
    h.reconcile().await.unwrap();
    let t = h.timeline();
    assert_eq!(count(&t, "sidecar 10."), 0);
    assert_eq!(count(&t, "DELETE"), 1, "{t:#?}");
    let a = &h.current().status.unwrap().remediation.history[0];
    assert_eq!(a.dump, Some(stallwatch_crds::StepResult::TimedOut));
    assert_eq!(a.outcome, Some(stallwatch_crds::AttemptOutcome::Restarted));
}

#[tokio::test]
async fn two_streams_at_the_cap_wait_for_a_slot() {
    let mut h = harness(Duration::from_secs(30));
    // Two other TransitStreams already have attempts in flight (cap 2).
    for other in ["a", "b"] {
        let mut o = fixture();
        o.metadata.name = Some(other.into());
        // Another object: its own uid (the reconciler's state is keyed by uid).
        o.metadata.uid = Some(format!("uid-{other}"));
        o.status = Some(
            serde_json::from_value(json!({"remediation": {"inFlight": {
                "id": "x", "pod": "x", "stream": "all", "reason": "ChannelStuck",
                "stalledSince": "2026-01-01T00:00:00Z", "startedAt": "2026-01-01T00:00:00Z",
                "step": "Dump", "stepStartedAt": "2026-01-01T00:00:00Z"
            }}}))
            .unwrap(),
        );
        h.streams.apply_watcher_event(&watcher::Event::Apply(o));
    }
    h.stream(&fixture());
    h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700)));
    let action = h.reconcile().await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let t = h.timeline();
    assert_eq!(count(&t, "sidecar 10.") + count(&t, "DELETE"), 0, "{t:#?}");
    assert!(
        h.metrics()
            .contains("remediations_blocked_total{reason=\"ConcurrencyLimit\"} 1")
    );
    let _ = labels::APP_NAME;
}
