//! The story on a real API server (the envtest control plane): the operator from the chart,
//! as its ServiceAccount; the TransitStream's pod played locally (broadcaster in
//! `legacy-unsupervised` mode with a poison message, sidecar publishing as its per-stream
//! ServiceAccount). What happens is watched, not polled: the pod condition, Events, one dump,
//! exactly one pod deletion, a replacement pod from the ReplicaSet, the status and its
//! conditions. Then two operators on a real Lease. Skipped where the binaries are missing.

mod envtest_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envtest_support::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use stallwatch_crds::TransitStream;
use stallwatch_envtest::kubelet;
use stallwatch_envtest::{ControlPlane, Timer, eventually};

/// What the watches saw, each with the time since the pod's processes started.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// `DispatchHealthy=False` on a pod: (pod, when).
    unhealthy: Vec<(String, Duration)>,
    /// Pod deletions (a deletionTimestamp appearing, or the object going): pod names.
    deleted: Vec<(String, Duration)>,
    /// The TransitStream's `Stalled` condition True.
    stalled_true: Option<Duration>,
    /// The `Remediating` condition True.
    remediating_true: Option<Duration>,
    /// `status.remediation.inFlight` set.
    in_flight: Option<Duration>,
    /// Phases in the order seen.
    phases: Vec<String>,
}

fn condition_true(status: &serde_json::Value, kind: &str) -> bool {
    status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

fn watch_all(
    client: &Client,
    ns: &str,
    seen: Arc<Mutex<Seen>>,
    t0: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let s = seen.clone();
    let pod_watch = tokio::spawn(async move {
        let cfg = watcher::Config::default().labels("stallwatch.io/transitstream=demo");
        let mut stream = watcher(pods, cfg).boxed();
        while let Some(Ok(event)) = stream.next().await {
            let (pod, gone) = match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                watcher::Event::Delete(p) => (p, true),
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut s = s.lock().unwrap();
            if (gone || pod.metadata.deletion_timestamp.is_some())
                && !s.deleted.iter().any(|(n, _)| *n == name)
            {
                s.deleted.push((name.clone(), t0.elapsed()));
            }
            let unhealthy = pod
                .status
                .as_ref()
                .and_then(|st| st.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "stallwatch.io/DispatchHealthy" && c.status == "False")
                });
            if unhealthy && !s.unhealthy.iter().any(|(n, _)| *n == name) {
                s.unhealthy.push((name, t0.elapsed()));
            }
        }
    });
    let streams: Api<TransitStream> = Api::namespaced(client.clone(), ns);
    let ts_watch = tokio::spawn(async move {
        let mut stream = watcher(streams, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = stream.next().await {
            let (watcher::Event::Apply(ts) | watcher::Event::InitApply(ts)) = event else {
                continue;
            };
            let status = serde_json::to_value(&ts.status).unwrap_or_default();
            let mut s = seen.lock().unwrap();
            let now = t0.elapsed();
            if condition_true(&status, "Stalled") {
                s.stalled_true.get_or_insert(now);
            }
            if condition_true(&status, "Remediating") {
                s.remediating_true.get_or_insert(now);
            }
            if !status["remediation"]["inFlight"].is_null() {
                s.in_flight.get_or_insert(now);
            }
            if let Some(phase) = status["phase"].as_str()
                && s.phases.last().map(String::as_str) != Some(phase)
            {
                s.phases.push(phase.to_string());
            }
        }
    });
    vec![pod_watch, ts_watch]
}

fn bundles(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.join("manifest.json").exists() {
            found.push(p.display().to_string());
        } else if p.is_dir() {
            found.extend(bundles(&p));
        }
    }
    found
}

/// The story's outcome.
struct Story {
    seen: Arc<Mutex<Seen>>,
    status: serde_json::Value,
    events: Vec<(String, String)>,
    bundles: Vec<String>,
    first_pod: String,
    replacement: Pod,
    ops: Vec<Operator>,
    ns: String,
    client: Client,
}

async fn ts_events(client: &Client, ns: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<(String, String)> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("TransitStream"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// Plays the story once in namespace `ns` (cooldown 120 s); `None` when skipped.
async fn play(plane: &'static ControlPlane, ns: &str, test: &str) -> Option<Story> {
    play_with(plane, ns, test, json!({"cooldown": "120s"})).await
}

/// Plays the story once with `remediation` as the TransitStream's `spec.remediation`.
async fn play_with(
    plane: &'static ControlPlane,
    ns: &str,
    test: &str,
    remediation: serde_json::Value,
) -> Option<Story> {
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let ops = operator_stack(plane, &client, &ns, 1, test).await?;
    create_stream(
        &client,
        &ns,
        "demo",
        json!({"source": {"synthetic": {}}, "remediation": remediation}),
    )
    .await;
    let pod = stream_pods(&client, &ns, "demo", 1).await.remove(0);
    let first_pod = pod.metadata.name.clone().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let t0 = Instant::now();
    let _watches = watch_all(&client, &ns, seen.clone(), t0);
    let local = kubelet::run_pod(plane, &client, &pod, &poisoned()).await;
    let dumps_dir = local.root.join("volumes/dumps");
    let deleted = {
        let seen = seen.clone();
        let first = first_pod.clone();
        eventually(
            "the stalled pod deleted",
            Duration::from_secs(40),
            move || {
                let seen = seen.clone();
                let first = first.clone();
                async move {
                    let s = seen.lock().unwrap();
                    s.deleted.iter().find(|(n, _)| *n == first).map(|(_, t)| *t)
                }
            },
        )
        .await
    };
    if std::thread::panicking() {
        eprintln!("{}", local.tails(30));
    }
    // The kubelet would stop the deleted pod's containers now.
    let found = bundles(&dumps_dir);
    drop(local);
    println!("story: stalled pod deleted {deleted:.1?} after its processes started");
    let replacement = {
        let client = client.clone();
        let ns = ns.clone();
        let first = first_pod.clone();
        eventually("a replacement pod", Duration::from_secs(30), move || {
            let client = client.clone();
            let ns = ns.clone();
            let first = first.clone();
            async move {
                stream_pods(&client, &ns, "demo", 1)
                    .await
                    .into_iter()
                    .find(|p| p.metadata.name.as_deref() != Some(first.as_str()))
            }
        })
        .await
    };
    let api: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let status = eventually("the attempt finished", Duration::from_secs(20), || async {
        let ts = api.get("demo").await.ok()?;
        let status = serde_json::to_value(ts.status?).ok()?;
        (!status["remediation"]["history"][0]["outcome"].is_null()).then_some(status)
    })
    .await;
    // Let anything that would be a second deletion happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = ts_events(&client, &ns).await;
    Some(Story {
        seen,
        status,
        events,
        bundles: found,
        first_pod,
        replacement,
        ops,
        ns,
        client,
    })
}

#[tokio::test]
async fn the_story_one_dump_one_pod_deletion_a_replacement_and_every_step_recorded() {
    let test = "the_story_one_dump_one_pod_deletion_a_replacement_and_every_step_recorded";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some(story) = play(plane, "story", test).await else {
        return;
    };
    let seen = story.seen.lock().unwrap().clone();
    println!("story: {seen:?}");
    println!("story: TransitStream Events {:?}", story.events);
    dump_on_panic(&story.ops);
    // The sidecar, as its own ServiceAccount, marked the pod.
    let (_, unhealthy_at) = seen
        .unhealthy
        .iter()
        .find(|(n, _)| *n == story.first_pod)
        .expect("DispatchHealthy=False on the stalled pod");
    let (_, deleted_at) = seen
        .deleted
        .iter()
        .find(|(n, _)| *n == story.first_pod)
        .unwrap();
    println!(
        "story: condition -> deletion {:.1?}",
        deleted_at.saturating_sub(*unhealthy_at)
    );
    // Exactly one pod deletion.
    assert_eq!(seen.deleted.len(), 1, "pods deleted: {:?}", seen.deleted);
    // One dump, on the pod's dump volume, recorded in the history.
    assert_eq!(story.bundles.len(), 1, "bundles: {:?}", story.bundles);
    let history = story.status["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["pod"], story.first_pod.as_str());
    assert_eq!(history[0]["dump"], "Succeeded", "{:#?}", history[0]);
    assert_eq!(history[0]["restart"], "Succeeded", "{:#?}", history[0]);
    assert!(
        history[0]["bundlePath"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    // The replacement comes from the ReplicaSet.
    let owner = story
        .replacement
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert!(owner.iter().any(|o| o.kind == "ReplicaSet"), "{owner:?}");
    // Events for the steps (stall seen, dump, restart), on the TransitStream.
    assert!(
        story.events.len() >= 3,
        "TransitStream Events: {:?}",
        story.events
    );
    let refused = forbidden(&story.ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
    plane.delete_namespace(&story.ns).await;
}

#[tokio::test]
async fn the_story_counts_the_stall_in_the_status() {
    let test = "the_story_counts_the_stall_in_the_status";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some(story) = play(plane, "story-count", test).await else {
        return;
    };
    let seen = story.seen.lock().unwrap().clone();
    println!("story: {seen:?}");
    let stalls = story.status["stalls"].as_i64().unwrap_or(0);
    let last = story.status["lastStallTime"].clone();
    assert!(
        stalls >= 1 && !last.is_null() && seen.stalled_true.is_some(),
        "status.stalls={stalls}, lastStallTime={last}, Stalled=True seen: {:?}",
        seen.stalled_true
    );
}

#[tokio::test]
async fn the_story_shows_remediating_while_in_flight() {
    let test = "the_story_shows_remediating_while_in_flight";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some(story) = play(plane, "story-remediating", test).await else {
        return;
    };
    let seen = story.seen.lock().unwrap().clone();
    println!("story: {seen:?}");
    assert!(seen.in_flight.is_some(), "inFlight never seen");
    assert!(
        seen.remediating_true.is_some() && seen.phases.iter().any(|p| p == "Remediating"),
        "inFlight seen at {:?}, but Remediating=True at {:?}, phases {:?}",
        seen.in_flight,
        seen.remediating_true,
        seen.phases
    );
}

#[tokio::test]
async fn a_second_stall_within_the_cooldown_is_held_back_with_an_event() {
    let test = "a_second_stall_within_the_cooldown_is_held_back_with_an_event";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some(story) = play(plane, "story-held", test).await else {
        return;
    };
    let (events, _) = second_stall_held_back(plane, &story).await;
    // The Event is about the held-back stall: it names the replacement pod and the rail, and
    // says until when in RFC 3339 (not epoch milliseconds).
    let second = story.replacement.metadata.name.clone().unwrap();
    let held = events
        .iter()
        .find(|(_, note)| note.contains(&second))
        .unwrap_or_else(|| panic!("no Event for the stall of {second} held back: {events:?}"));
    assert_eq!(held.0, "Cooldown", "{held:?}");
    let year = k8s_openapi::jiff::Timestamp::now().to_string()[..4].to_string();
    assert!(
        held.1.contains("cooling down until") && held.1.contains(&format!("{year}-")),
        "{held:?}"
    );
    let log = story.ops[0].log();
    assert!(
        log.lines().any(|l| l.contains(&second)
            && l.contains("cooling down until")
            && l.contains(&format!("{year}-"))),
        "the log does not show the held-back stall with a readable time: {log}"
    );
    plane.delete_namespace(&story.ns).await;
}

#[tokio::test]
async fn a_second_stall_over_the_budget_is_held_back_with_budget_spent() {
    let test = "a_second_stall_over_the_budget_is_held_back_with_budget_spent";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    // kube's Duration serializes 0 s as "0ns", which the schema's pattern refuses: 1 s.
    let remediation = json!({"cooldown": "1s", "budgetPerHour": 1});
    let Some(story) = play_with(plane, "story-budget", test, remediation).await else {
        return;
    };
    let (events, status) = second_stall_held_back(plane, &story).await;
    let held = events
        .iter()
        .find(|(reason, _)| reason == "BudgetSpent")
        .unwrap_or_else(|| panic!("no BudgetSpent Event: {events:?}"));
    let year = k8s_openapi::jiff::Timestamp::now().to_string()[..4].to_string();
    assert!(
        held.1.contains("frees at") && held.1.contains(&format!("{year}-")),
        "{held:?}"
    );
    assert!(
        condition_true(&status, "Degraded"),
        "Degraded is not True: {status:#}"
    );
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    plane.delete_namespace(&story.ns).await;
}

/// Plays the replacement pod stalling the same way and checks no second pod is deleted;
/// returns the TransitStream's Events and its status after.
async fn second_stall_held_back(
    plane: &'static ControlPlane,
    story: &Story,
) -> (Vec<(String, String)>, serde_json::Value) {
    let replacement = story.replacement.clone();
    let name = replacement.metadata.name.clone().unwrap();
    let local = kubelet::run_pod(plane, &story.client, &replacement, &poisoned()).await;
    {
        let seen = story.seen.clone();
        eventually(
            "the replacement marked unhealthy",
            Duration::from_secs(30),
            move || {
                let seen = seen.clone();
                let name = name.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .unhealthy
                        .iter()
                        .any(|(n, _)| *n == name)
                        .then_some(())
                }
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = story.seen.lock().unwrap().clone();
    let events = ts_events(&story.client, &story.ns).await;
    println!("held back: TransitStream Events {events:?}");
    println!("held back: {seen:?}");
    let api: Api<TransitStream> = Api::namespaced(story.client.clone(), &story.ns);
    let status = serde_json::to_value(api.get("demo").await.unwrap().status).unwrap();
    if std::thread::panicking() {
        eprintln!("{}", local.tails(30));
    }
    drop(local);
    dump_on_panic(&story.ops);
    assert_eq!(
        seen.deleted.len(),
        1,
        "the rail did not hold back: {:?}",
        seen.deleted
    );
    (events, status)
}

async fn lease_holder(client: &Client, ns: &str) -> Option<(String, i32)> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let spec = leases.get("stallwatch-operator").await.ok()?.spec?;
    Some((spec.holder_identity?, spec.lease_transitions.unwrap_or(0)))
}

/// Two operators from the chart (replicaCount 2, lease 6 s); returns them with the leader first.
async fn two_operators(
    plane: &'static ControlPlane,
    ns: &str,
    test: &str,
) -> Option<(String, Client, Vec<Operator>)> {
    let ns = plane.namespace(ns).await;
    let client = plane.admin().await;
    let mut ops = operator_stack(plane, &client, &ns, 2, test).await?;
    let (holder, _) = eventually("a Lease holder", Duration::from_secs(20), || {
        lease_holder(&client, &ns)
    })
    .await;
    ops.sort_by_key(|o| o.pod.name != holder);
    assert_eq!(ops[0].pod.name, holder);
    // Only the leader acts: one TransitStream, one Deployment, applied by one of them.
    create_stream(&client, &ns, "demo", json!({"source": {"synthetic": {}}})).await;
    stream_pods(&client, &ns, "demo", 1).await;
    Some((ns, client, ops))
}

async fn takeover_time(client: &Client, ns: &str, old: &str, within: Duration) -> Duration {
    let start = Instant::now();
    eventually("a new Lease holder", within, || async {
        let (h, _) = lease_holder(client, ns).await?;
        (h != old).then_some(())
    })
    .await;
    start.elapsed()
}

#[tokio::test]
async fn two_operators_on_a_real_lease_sigterm_hands_over_and_sigkill_is_taken_over() {
    let test = "two_operators_on_a_real_lease_sigterm_hands_over_and_sigkill_is_taken_over";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, client, mut ops)) = two_operators(plane, "leader", test).await else {
        return;
    };
    let standby_log = ops[1].log();
    assert!(
        !standby_log.contains("reconcil") || !standby_log.contains("demo"),
        "the standby reconciled: {standby_log}"
    );
    // SIGTERM: the leader releases the Lease and the standby takes it.
    let leader = ops[0].pod.name.clone();
    ops[0].pod.proc_mut("operator").signal("TERM");
    let handover = takeover_time(&client, &ns, &leader, Duration::from_secs(10)).await;
    println!("leader: SIGTERM -> standby holds the Lease after {handover:.1?}");
    // Bring the first one back as the standby, then SIGKILL the new leader.
    let first = ops.remove(0);
    let pod: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let first_pod = pod.get(&first.pod.name).await.unwrap();
    drop(first);
    ops.push(run_operator(plane, &client, &first_pod).await);
    let leader = ops[0].pod.name.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    ops[0].pod.proc_mut("operator").signal("KILL");
    let takeover = takeover_time(&client, &ns, &leader, Duration::from_secs(6 + 4)).await;
    println!("leader: SIGKILL -> taken over after {takeover:.1?} (lease 6 s)");
    let refused = forbidden(&ops);
    dump_on_panic(&ops);
    assert!(refused.is_empty(), "403s: {refused:#?}");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_standby_operator_is_ready_and_logs_that_it_waits() {
    // Ready on purpose (see `run.rs`): the chart's rollout (maxSurge 1, maxUnavailable 0)
    // needs the new pod, a standby until the old leader goes, to become Ready.
    let test = "a_standby_operator_is_ready_and_logs_that_it_waits";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let Some((ns, _client, ops)) = two_operators(plane, "standby-ready", test).await else {
        return;
    };
    let code = reqwest::get(format!("{}/readyz", ops[1].http))
        .await
        .unwrap()
        .status();
    assert_eq!(code.as_u16(), 200, "the standby's /readyz");
    let leader = ops[0].pod.name.clone();
    let log = ops[1].log();
    dump_on_panic(&ops);
    assert!(
        log.lines()
            .any(|l| l.contains("standing by: waiting for the leader lease") && l.contains(&leader)),
        "the standby does not say it waits for {leader}: {log}"
    );
    let metrics = reqwest::get(format!("{}/metrics", ops[1].http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stallwatch_operator_leader 0"),
        "the standby's leader gauge: {metrics}"
    );
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn an_operator_killed_mid_remediation_finishes_it_exactly_once_after_restart() {
    let test = "an_operator_killed_mid_remediation_finishes_it_exactly_once_after_restart";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("killed-mid-remediation").await;
    let client = plane.admin().await;
    let Some(mut ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let pod = demo_stream_pod(&client, &ns).await;
    let first = pod.metadata.name.clone().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _watches = watch_all(&client, &ns, seen.clone(), Instant::now());
    // The dump hangs for 6 s on the broadcaster's task dump: time to kill the operator in it.
    let overrides = poisoned_dump_hanging("6s");
    let local = kubelet::run_pod(plane, &client, &pod, &overrides).await;
    attempt_in_dump_step(&client, &ns, Duration::from_secs(30)).await;
    ops[0].pod.proc_mut("operator").signal("KILL");
    let killed = Instant::now();
    let op_pod: Pod = Api::namespaced(client.clone(), &ns)
        .get(&ops[0].pod.name)
        .await
        .unwrap();
    ops.clear();
    ops.push(run_operator(plane, &client, &op_pod).await);
    let streams: Api<TransitStream> = Api::namespaced(client.clone(), &ns);
    let status = eventually("the attempt finished", Duration::from_secs(40), || async {
        let st = serde_json::to_value(streams.get("demo").await.ok()?.status?).ok()?;
        (!st["remediation"]["history"][0]["outcome"].is_null()).then_some(st)
    })
    .await;
    println!(
        "killed mid-remediation: finished {:.1?} after the SIGKILL",
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bundles = bundles(&local.root.join("volumes/dumps"));
    drop(local);
    let seen = seen.lock().unwrap().clone();
    dump_on_panic(&ops);
    let history = status["remediation"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["pod"], first.as_str());
    assert_eq!(
        seen.deleted
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [first.as_str()],
        "exactly one pod deletion"
    );
    // The dump was requested once: never again after the restart.
    assert!(bundles.len() <= 1, "bundles: {bundles:?}");
    plane.delete_namespace(&ns).await;
}

// Issue 10 reported leaseTransitions growing when the same identity re-acquires; after a
// SIGKILL and a restart past the lease's expiry it does not (here), and this keeps it so.
#[tokio::test]
async fn the_same_identity_reacquiring_its_lease_is_not_a_transition() {
    let test = "the_same_identity_reacquiring_its_lease_is_not_a_transition";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("lease-same-identity").await;
    let client = plane.admin().await;
    let Some(mut ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let (holder, before) = eventually("a Lease holder", Duration::from_secs(20), || {
        lease_holder(&client, &ns)
    })
    .await;
    ops[0].pod.proc_mut("operator").signal("KILL");
    let op_pod: Pod = Api::namespaced(client.clone(), &ns)
        .get(&ops[0].pod.name)
        .await
        .unwrap();
    ops.clear();
    // Back after the lease (6 s) expired: the same identity takes its own expired Lease.
    tokio::time::sleep(Duration::from_secs(7)).await;
    ops.push(run_operator(plane, &client, &op_pod).await);
    // Held again by the same identity (renewed after the restart).
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let restarted = Instant::now();
    eventually(
        "the Lease renewed by the restarted operator",
        Duration::from_secs(20),
        || async {
            let spec = leases.get("stallwatch-operator").await.ok()?.spec?;
            let renewed = spec.renew_time?.0;
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed);
            (age.as_secs_f64() < restarted.elapsed().as_secs_f64()).then_some(())
        },
    )
    .await;
    let (after_holder, after) = lease_holder(&client, &ns).await.unwrap();
    assert_eq!(after_holder, holder);
    assert_eq!(
        after, before,
        "leaseTransitions changed for the same holder"
    );
    plane.delete_namespace(&ns).await;
}

// Issue 10: leaseTransitions grew when the same identity took its Lease back after a graceful
// shutdown (the released Lease had no holder, so taking it counted as a transition).
#[tokio::test]
async fn the_same_identity_taking_back_its_released_lease_is_not_a_transition() {
    let test = "the_same_identity_taking_back_its_released_lease_is_not_a_transition";
    let Some(plane) = ControlPlane::shared(test) else {
        return;
    };
    let _t = Timer::new(test);
    let ns = plane.namespace("lease-released-same-identity").await;
    let client = plane.admin().await;
    let Some(mut ops) = operator_stack(plane, &client, &ns, 1, test).await else {
        return;
    };
    let (holder, before) = eventually("a Lease holder", Duration::from_secs(20), || {
        lease_holder(&client, &ns)
    })
    .await;
    // SIGTERM: the operator releases the Lease and exits.
    ops[0].pod.proc_mut("operator").signal("TERM");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let op_pod: Pod = Api::namespaced(client.clone(), &ns)
        .get(&ops[0].pod.name)
        .await
        .unwrap();
    ops.clear();
    // The container restarts in the same pod: the same identity.
    ops.push(run_operator(plane, &client, &op_pod).await);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let restarted = Instant::now();
    eventually(
        "the Lease renewed by the restarted operator",
        Duration::from_secs(20),
        || async {
            let spec = leases.get("stallwatch-operator").await.ok()?.spec?;
            let renewed = spec.renew_time?.0;
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed);
            (age.as_secs_f64() < restarted.elapsed().as_secs_f64()
                && spec.holder_identity.as_deref() == Some(holder.as_str()))
            .then_some(())
        },
    )
    .await;
    let (_, after) = lease_holder(&client, &ns).await.unwrap();
    dump_on_panic(&ops);
    assert_eq!(
        after, before,
        "leaseTransitions changed when {holder} took back its released Lease"
    );
    plane.delete_namespace(&ns).await;
}
