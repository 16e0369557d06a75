use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const NOW: u64 = 1_780_000_000_000;

fn config(bundles: &[Option<&str>]) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("stallwatch".into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(
            bundles
                .iter()
                .enumerate()
                .map(|(i, b)| MutatingWebhook {
                    name: format!("w{i}.stallwatch.io"),
                    client_config: WebhookClientConfig {
                        ca_bundle: b.map(|b| ByteString(b.as_bytes().to_vec())),
                        ..WebhookClientConfig::default()
                    },
                    ..MutatingWebhook::default()
                })
                .collect(),
        ),
    }
}

#[test]
fn the_ca_bundle_is_written_to_every_webhook_only_when_it_differs() {
    let next = with_ca_bundle(&config(&[None, Some("old")]), "new").expect("a change");
    for w in next.webhooks.as_ref().unwrap() {
        assert_eq!(w.client_config.ca_bundle, Some(ByteString(b"new".to_vec())));
    }
    assert_eq!(with_ca_bundle(&next, "new"), None, "nothing to write");
    assert_eq!(with_ca_bundle(&config(&[]), "new"), None);
}

#[test]
fn a_first_bundle_is_generated_then_kept_then_rotated_when_due() {
    let names = vec!["stallwatch-webhook.ns.svc".to_string()];
    let (first, write) = next_bundle(None, &names, NOW, 90 * DAY).unwrap();
    assert!(write);
    let (kept, write) = next_bundle(
        Some(first.clone()),
        &names,
        NOW + DAY.as_millis() as u64,
        90 * DAY,
    )
    .unwrap();
    assert!(!write);
    assert_eq!(kept, first);
    let due = NOW + 61 * DAY.as_millis() as u64;
    let (rotated, write) = next_bundle(Some(first.clone()), &names, due, 90 * DAY).unwrap();
    assert!(write);
    assert_ne!(rotated.cert_pem, first.cert_pem);
    assert!(
        rotated.ca_bundle().contains(&first.ca_pem),
        "the old CA stays trusted"
    );
}

/// An in-memory API server for the Secret and the configuration, recording each call's
/// (resource, verb).
mod fake {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    use kube::client::Body;
    use serde_json::{Value, json};

    pub type Calls = Arc<Mutex<BTreeSet<(&'static str, &'static str)>>>;

    #[derive(Default)]
    pub struct State {
        pub objects: BTreeMap<&'static str, Value>,
    }

    fn resource(path: &str) -> &'static str {
        if path.contains("/secrets") {
            "secrets"
        } else if path.contains("/mutatingwebhookconfigurations") {
            "mutatingwebhookconfigurations"
        } else {
            panic!("unexpected call to {path}")
        }
    }

    pub fn client(state: Arc<Mutex<State>>, calls: Calls) -> kube::Client {
        let service = tower::service_fn(move |req: http::Request<Body>| {
            let (state, calls) = (Arc::clone(&state), Arc::clone(&calls));
            async move {
                let res = resource(req.uri().path());
                let verb = match *req.method() {
                    http::Method::GET => "get",
                    http::Method::POST => "create",
                    http::Method::PUT => "update",
                    http::Method::PATCH => "patch",
                    _ => "other",
                };
                calls.lock().unwrap().insert((res, verb));
                let body = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let mut state = state.lock().unwrap();
                let (code, out) = match verb {
                    "get" => match state.objects.get(res) {
                        Some(v) => (200, v.clone()),
                        None => (
                            404,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "NotFound", "code": 404, "message": "not found"}),
                        ),
                    },
                    _ => {
                        let mut v: Value = serde_json::from_slice(&body).unwrap();
                        v["metadata"]["resourceVersion"] = json!("2");
                        state.objects.insert(res, v.clone());
                        (if verb == "create" { 201 } else { 200 }, v)
                    }
                };
                let resp = http::Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        kube::Client::new(service, "stallwatch-system")
    }
}

fn served_bundle(state: &std::sync::Mutex<fake::State>) -> CertBundle {
    let secret: Secret =
        serde_json::from_value(state.lock().unwrap().objects["secrets"].clone()).unwrap();
    CertBundle::from_secret_data(secret.data.as_ref().unwrap()).unwrap()
}

fn ca_bundle_of(state: &std::sync::Mutex<fake::State>) -> String {
    let config: MutatingWebhookConfiguration = serde_json::from_value(
        state.lock().unwrap().objects["mutatingwebhookconfigurations"].clone(),
    )
    .unwrap();
    let bytes = config.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    String::from_utf8(bytes.0).unwrap()
}

#[tokio::test]
async fn a_rotated_ca_bundle_is_applied_before_the_new_certificate_is_served() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let state = Arc::new(Mutex::new(fake::State::default()));
    state.lock().unwrap().objects.insert(
        "mutatingwebhookconfigurations",
        serde_json::to_value(config(&[None])).unwrap(),
    );
    let calls: fake::Calls = Arc::default();
    let client = fake::client(Arc::clone(&state), Arc::clone(&calls));
    let now = Arc::new(AtomicU64::new(NOW));
    let clock: Clock = {
        let now = Arc::clone(&now);
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let source = CertSource::SelfManaged {
        namespace: "stallwatch-system".into(),
        secret: "stallwatch-webhook-tls".into(),
        configuration: "stallwatch".into(),
        names: vec!["stallwatch-webhook.stallwatch-system.svc".into()],
        validity: 90 * DAY,
    };
    let mut serving = None;

    // First round: a bundle is created, registered and served.
    let key = sync_once(&client, &source, &mut serving, &clock)
        .await
        .unwrap();
    assert!(key.is_some());
    let first = served_bundle(&state);
    assert_eq!(ca_bundle_of(&state), first.ca_pem);
    assert_eq!(serving.as_deref(), Some(first.cert_pem.as_str()));

    // Nothing due: nothing written, nothing reloaded.
    now.store(NOW + DAY.as_millis() as u64, Ordering::SeqCst);
    assert!(
        sync_once(&client, &source, &mut serving, &clock)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(served_bundle(&state), first);

    // Due: a new bundle; the caBundle trusts both CAs, and the new certificate is served.
    now.store(NOW + 61 * DAY.as_millis() as u64, Ordering::SeqCst);
    assert!(
        sync_once(&client, &source, &mut serving, &clock)
            .await
            .unwrap()
            .is_some()
    );
    let second = served_bundle(&state);
    assert_ne!(second.cert_pem, first.cert_pem);
    assert_eq!(
        ca_bundle_of(&state),
        format!("{}{}", second.ca_pem, first.ca_pem)
    );
    assert_eq!(serving.as_deref(), Some(second.cert_pem.as_str()));

    // Exactly the verbs `rbac::WEBHOOK` and `rbac::WEBHOOK_CERTS` declare.
    let used: std::collections::BTreeSet<(&str, &str)> = calls.lock().unwrap().clone();
    let declared: std::collections::BTreeSet<(&str, &str)> = crate::rbac::WEBHOOK
        .iter()
        .chain(crate::rbac::WEBHOOK_CERTS)
        .flat_map(crate::rbac::Rule::triples)
        .map(|(_, r, v)| (r, v))
        .collect();
    assert_eq!(used, declared);
}
