//! Scenario 5, the operator's kube side against a real sidecar: a stall condition on a pod
//! (served by a mock API server, kube's tower-test pattern, adapted from the operator's own
//! reconcile tests) leads to exactly one dump request to a real `transit-sidecar` process
//! (reached by the operator's own HTTP client at the pod IP, port 8081: the sidecar listens on
//! a random 127.x.y.z loopback address) and exactly one pod deletion, in that order; with the
//! budget spent, neither.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use stallwatch_core::bundle::Manifest;
use stallwatch_core::condition::{CONDITION_TYPE, StallReason, StalledStream, format_message};
use stallwatch_crds::{Source, SyntheticSource, TransitStream, TransitStreamSpec};
use transit_operator::Error;
use transit_operator::metrics::Metrics;
use transit_operator::reconcile::{Context, Settings, reconcile};
use transit_operator::sidecar::{BoxFuture, SidecarApi, SidecarError, SidecarTarget};

const NS: &str = "transit";
const T0: u64 = 1_790_000_000_000;
const TS_PATH: &str = "/apis/stallwatch.io/v1alpha1/namespaces/transit/transitstreams/demo";

type Timeline = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Copy)]
enum FaultKind {
    Status(u16),
    Hang,
}

struct Fault {
    method: Method,
    path_contains: String,
    kind: FaultKind,
    times: usize,
}

#[derive(Default)]
struct ApiState {
    objects: BTreeMap<String, Value>,
    version: u64,
    faults: Vec<Fault>,
    /// Bodies of every write, by "METHOD path".
    writes: Vec<(String, Value)>,
}

/// The mock API server.
#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    timeline: Timeline,
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":format!("injected {code}"),"reason":reason,"code":code})
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeApi {
    fn new(timeline: Timeline) -> Self {
        FakeApi {
            state: Arc::default(),
            timeline,
        }
    }

    fn put(&self, path: &str, obj: Value) {
        let mut s = self.state.lock().unwrap();
        s.version += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
        s.objects.insert(path.into(), obj);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    fn fault(&self, method: Method, path_contains: &str, kind: FaultKind, times: usize) {
        self.state.lock().unwrap().faults.push(Fault {
            method,
            path_contains: path_contains.into(),
            kind,
            times,
        });
    }

    fn writes(&self, key: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .writes
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let fault = {
                    let mut s = api.state.lock().unwrap();
                    s.faults
                        .iter_mut()
                        .find(|f| {
                            f.times > 0 && f.method == method && path.contains(&f.path_contains)
                        })
                        .map(|f| {
                            f.times -= 1;
                            f.kind
                        })
                };
                match fault {
                    Some(FaultKind::Hang) => {
                        api.log(&method, &path, "hang");
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            drop(send);
                        });
                        continue;
                    }
                    Some(FaultKind::Status(code)) => {
                        api.log(&method, &path, &code.to_string());
                        send.send_response(respond(code, status_body(code, "Injected")));
                        continue;
                    }
                    None => {}
                }
                let (code, out) = api.handle(&method, &path, &query, body);
                send.send_response(respond(code, out));
            }
        });
        Client::new(service, NS)
    }

    fn log(&self, method: &Method, path: &str, what: &str) {
        let short = path
            .trim_start_matches("/apis/")
            .trim_start_matches("/api/")
            .to_string();
        self.timeline
            .lock()
            .unwrap()
            .push(format!("{method} {short} {what}").trim().to_string());
    }

    fn handle(&self, method: &Method, path: &str, query: &str, body: Value) -> (u16, Value) {
        let is_status = path.ends_with("/status");
        let key = path.trim_end_matches("/status").to_string();
        let mut s = self.state.lock().unwrap();
        if *method != Method::GET {
            s.writes.push((format!("{method} {path}"), body.clone()));
        }
        drop(s);
        if path.contains("/events") {
            self.log(method, "events", body["reason"].as_str().unwrap_or(""));
            return (201, body);
        }
        match *method {
            Method::GET => {
                self.log(method, path, "");
                match self.get(&key) {
                    Some(o) => (200, o),
                    None => (404, status_body(404, "NotFound")),
                }
            }
            Method::PATCH if is_status => {
                let mut s = self.state.lock().unwrap();
                let Some(current) = s.objects.get(&key).cloned() else {
                    return (404, status_body(404, "NotFound"));
                };
                let want = &body["metadata"]["resourceVersion"];
                if !want.is_null() && *want != current["metadata"]["resourceVersion"] {
                    drop(s);
                    self.log(method, path, "409");
                    return (409, status_body(409, "Conflict"));
                }
                s.version += 1;
                let mut obj = current;
                obj["status"] = body["status"].clone();
                obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.objects.insert(key, obj.clone());
                drop(s);
                let step = obj["status"]["remediation"]["inFlight"]["step"]
                    .as_str()
                    .map(|st| format!("inFlight={st}"))
                    .unwrap_or_else(|| {
                        format!(
                            "history={}",
                            obj["status"]["remediation"]["history"]
                                .as_array()
                                .map_or(0, Vec::len)
                        )
                    });
                self.log(method, path, &step);
                (200, obj)
            }
            Method::PATCH => {
                let mut s = self.state.lock().unwrap();
                s.version += 1;
                let version = s.version;
                let apply = query.contains("fieldManager=transit-operator&")
                    || query.ends_with("fieldManager=transit-operator")
                    || query.contains("force=true");
                let mut obj = s.objects.get(&key).cloned().unwrap_or_else(
                    || json!({"metadata": {"uid": format!("uid-{version}"), "generation": 1}}),
                );
                if apply {
                    let status = obj.get("status").cloned();
                    let meta = obj["metadata"].clone();
                    obj = body.clone();
                    obj["metadata"]["uid"] = meta["uid"].clone();
                    obj["metadata"]["generation"] = meta["generation"].clone();
                    if let Some(st) = status {
                        obj["status"] = st;
                    }
                } else {
                    merge(&mut obj, &body);
                }
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                if key.contains("/deployments/") {
                    let r = obj["spec"]["replicas"].clone();
                    obj["status"] = json!({"observedGeneration": 1, "replicas": r, "readyReplicas": r, "updatedReplicas": r});
                }
                s.objects.insert(key.clone(), obj.clone());
                drop(s);
                self.log(method, path, if apply { "apply" } else { "merge" });
                (200, obj)
            }
            Method::DELETE => {
                self.log(method, path, "");
                (
                    200,
                    json!({"kind":"Status","apiVersion":"v1","status":"Success","code":200}),
                )
            }
            _ => {
                self.log(method, path, "");
                (201, body)
            }
        }
    }
}

fn respond(code: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

use stallwatch_e2e::{BroadcasterOpts, Pod as LocalPod, ensure};
use transit_operator::sidecar::HttpSidecar;

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
        self.timeline
            .lock()
            .unwrap()
            .push(format!("sidecar {} soft-restart {stream}", target.pod_ip));
        self.real.soft_restart(target, stream, timeout)
    }

    fn capture_dump<'a>(
        &'a self,
        target: &'a SidecarTarget,
        stream: &'a str,
        reason: StallReason,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Manifest, SidecarError>> {
        self.timeline
            .lock()
            .unwrap()
            .push(format!("sidecar {} dump {stream}", target.pod_ip));
        let timeline = self.timeline.clone();
        Box::pin(async move {
            let r = self
                .real
                .capture_dump(target, stream, reason, timeout)
                .await;
            timeline.lock().unwrap().push(match &r {
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
        h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700), &ip));
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
        h.pod(pod("demo-abc", "pod-uid-1", Some(T0 - 700), &ip));
        h.reconcile().await.unwrap();
        let t = h.timeline();
        assert_eq!(count(&t, "sidecar 127.") + count(&t, "DELETE"), 0, "{t:#?}");
        assert_eq!(count(&t, "POST events BudgetSpent"), 1, "{t:#?}");
        assert!(local.sidecar.bundles().await.unwrap().is_empty());
    });
}

fn spent_history(n: usize) -> Value {
    let at = |ms: u64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            Timestamp::from_millisecond(ms as i64).unwrap(),
        )
    };
    let entries: Vec<Value> = (0..n as u64)
        .map(|i| {
            json!({
                "id": format!("demo-old/all@{i}"), "pod": "demo-old", "stream": "all",
                "reason": "ChannelStuck",
                "stalledSince": at(T0 - 3_000_000 + i), "startedAt": at(T0 - 3_000_000 + i),
                "step": "Done", "stepStartedAt": at(T0 - 2_000_000),
                "restart": "Succeeded", "outcome": "Restarted", "finishedAt": at(T0 - 2_000_000)
            })
        })
        .collect();
    json!({"history": entries})
}

struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
    timeline: Timeline,
    pods: Writer<Pod>,
    streams: Writer<TransitStream>,
    clock: Arc<AtomicU64>,
    registry: Registry,
}

fn fixture() -> TransitStream {
    let mut ts = TransitStream::new(
        "demo",
        TransitStreamSpec::with_source(Source {
            synthetic: Some(SyntheticSource::default()),
            ..Source::default()
        }),
    );
    ts.metadata.namespace = Some(NS.into());
    ts.metadata.uid = Some("ts-uid".into());
    ts.metadata.generation = Some(1);
    ts
}

fn harness(timeout: Duration) -> Harness {
    let timeline: Timeline = Arc::default();
    let api = FakeApi::new(timeline.clone());
    let (pod_store, pods) = reflector::store::<Pod>();
    let (ts_store, streams) = reflector::store::<TransitStream>();
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let sidecar = Arc::new(RecordingSidecar {
        timeline: timeline.clone(),
        real: HttpSidecar::new(),
    });
    let ctx = Arc::new(Context::new(
        api.client(),
        Settings {
            default_image: "stallwatch:test".into(),
            max_concurrent_remediations: 2,
            reconcile_timeout: timeout,
            instance: Some("op-0".into()),
        },
        pod_store,
        ts_store,
        sidecar,
        metrics,
        Arc::new(move || c.load(Ordering::SeqCst)),
    ));
    Harness {
        api,
        ctx,
        timeline,
        pods,
        streams,
        clock,
        registry,
    }
}

impl Harness {
    /// Store the TransitStream in the API and the cache; returns what the controller would pass.
    fn stream(&mut self, ts: &TransitStream) -> Arc<TransitStream> {
        self.api.put(TS_PATH, serde_json::to_value(ts).unwrap());
        let stored: TransitStream = serde_json::from_value(self.api.get(TS_PATH).unwrap()).unwrap();
        self.streams
            .apply_watcher_event(&watcher::Event::Apply(stored.clone()));
        Arc::new(stored)
    }

    /// The TransitStream as the API now has it.
    fn current(&self) -> TransitStream {
        serde_json::from_value(self.api.get(TS_PATH).unwrap()).unwrap()
    }

    fn pod(&mut self, pod: Pod) {
        self.pods.apply_watcher_event(&watcher::Event::Apply(pod));
    }

    fn timeline(&self) -> Vec<String> {
        self.timeline.lock().unwrap().clone()
    }

    fn metrics(&self) -> String {
        transit_operator::metrics::render(&self.registry)
    }

    async fn reconcile(&mut self) -> Result<Action, Error> {
        let ts = Arc::new(self.current());
        self.streams
            .apply_watcher_event(&watcher::Event::Apply((*ts).clone()));
        reconcile(ts, self.ctx.clone()).await
    }
}

fn pod(name: &str, uid: &str, stalled_since: Option<u64>, pod_ip: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some(NS.into());
    p.metadata.uid = Some(uid.into());
    p.metadata.labels = Some(stallwatch_crds::selector_labels("demo"));
    let condition = match stalled_since {
        Some(since) => PodCondition {
            type_: CONDITION_TYPE.into(),
            status: "False".into(),
            reason: Some("DispatcherDead".into()),
            message: Some(format_message(&[StalledStream {
                stream: "all".into(),
                reason: StallReason::DispatcherDead,
                depth: 5,
                capacity: 5,
                secs_since_dequeue: None,
            }])),
            last_transition_time: Some(Time(Timestamp::from_millisecond(since as i64).unwrap())),
            ..PodCondition::default()
        },
        None => PodCondition {
            type_: CONDITION_TYPE.into(),
            status: "True".into(),
            reason: Some("Healthy".into()),
            ..PodCondition::default()
        },
    };
    p.status = Some(PodStatus {
        pod_ip: Some(pod_ip.into()),
        conditions: Some(vec![condition]),
        ..PodStatus::default()
    });
    p
}

fn position(timeline: &[String], needle: &str) -> usize {
    timeline
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in timeline:\n{}", timeline.join("\n")))
}

fn count(timeline: &[String], needle: &str) -> usize {
    timeline.iter().filter(|l| l.contains(needle)).count()
}

fn condition(ts: &TransitStream, type_: &str) -> (String, String) {
    let c = ts
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}
