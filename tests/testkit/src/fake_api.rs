//! A fake Kubernetes API server for reconcile tests (kube's tower-test pattern): it keeps
//! objects by path, applies server-side-apply and merge patches, serves gets, injects faults
//! (status codes, hangs) and records every write and every call on a shared timeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use stallwatch_core::sync::lock;

/// The namespace every fake object lives in.
pub const NS: &str = "transit";
/// The harness clock's start, milliseconds since the Unix epoch.
pub const T0: u64 = 1_790_000_000_000;
/// Where the harness keeps its TransitStream `demo`.
pub const TS_PATH: &str = "/apis/stallwatch.io/v1alpha1/namespaces/transit/transitstreams/demo";

/// API calls and sidecar calls in the order they happened, one line each.
pub type Timeline = Arc<Mutex<Vec<String>>>;

/// How a scripted fault answers a request.
#[derive(Clone, Copy)]
pub enum FaultKind {
    /// Answer with this status code.
    Status(u16),
    /// Never answer.
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
pub struct FakeApi {
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
    /// A fake API server with no objects, recording every call on `timeline`.
    pub fn new(timeline: Timeline) -> Self {
        FakeApi {
            state: Arc::default(),
            timeline,
        }
    }

    /// Store `obj` at `path` with a new resourceVersion.
    pub fn put(&self, path: &str, obj: Value) {
        let mut s = lock(&self.state);
        s.version += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
        s.objects.insert(path.into(), obj);
    }

    /// The object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        lock(&self.state).objects.get(path).cloned()
    }

    /// Fail the next `times` calls of `method` to a path containing `path_contains`.
    pub fn fault(&self, method: Method, path_contains: &str, kind: FaultKind, times: usize) {
        lock(&self.state).faults.push(Fault {
            method,
            path_contains: path_contains.into(),
            kind,
            times,
        });
    }

    /// The bodies of every write `key` ("METHOD path"), oldest first.
    pub fn writes(&self, key: &str) -> Vec<Value> {
        lock(&self.state)
            .writes
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A kube client served by this fake (spawns the serving task: call in a runtime).
    pub fn client(&self) -> Client {
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
                    let mut s = lock(&api.state);
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
        lock(&self.timeline).push(format!("{method} {short} {what}").trim().to_string());
    }

    fn handle(&self, method: &Method, path: &str, query: &str, body: Value) -> (u16, Value) {
        let is_status = path.ends_with("/status");
        let key = path.trim_end_matches("/status").to_string();
        if *method != Method::GET {
            lock(&self.state)
                .writes
                .push((format!("{method} {path}"), body.clone()));
        }
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
            Method::PATCH if is_status => self.patch_status(method, path, key, &body),
            Method::PATCH => self.patch(method, path, query, key, &body),
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

    /// A status subresource patch: 409 on a stale `resourceVersion`, as the API server does.
    fn patch_status(&self, method: &Method, path: &str, key: String, body: &Value) -> (u16, Value) {
        let mut s = lock(&self.state);
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

    /// A server-side apply by the operator's field manager (the object replaced, its uid,
    /// generation and status kept) or a merge patch; Deployments report themselves ready.
    fn patch(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        key: String,
        body: &Value,
    ) -> (u16, Value) {
        let mut s = lock(&self.state);
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
            merge(&mut obj, body);
        }
        obj["metadata"]["resourceVersion"] = json!(version.to_string());
        if key.contains("/deployments/") {
            let r = obj["spec"]["replicas"].clone();
            obj["status"] = json!({"observedGeneration": 1, "replicas": r, "readyReplicas": r, "updatedReplicas": r});
        }
        s.objects.insert(key, obj.clone());
        drop(s);
        self.log(method, path, if apply { "apply" } else { "merge" });
        (200, obj)
    }
}

fn respond(code: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}
