//! The server end to end on loopback: TLS with the generated certificates, an
//! AdmissionReview in, a JSONPatch out; a rotated certificate is served to new connections.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use stallwatch_crds::{TransitStreamSpec, WorkloadKind};

use super::*;
use crate::webhook::tls::CertBundle;

struct Fixed(Option<TransitStream>);

impl StreamLookup for Fixed {
    fn get<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<TransitStream>, kube::Error>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn stream() -> TransitStream {
    let mut ts = TransitStream::new(
        "orders",
        TransitStreamSpec::with_workload(WorkloadKind::Deployment, "orders-feed"),
    );
    ts.metadata.namespace = Some("transit".into());
    ts
}

fn review(labels: BTreeMap<&str, &str>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "transit",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "orders-feed-", "labels": labels},
                "spec": {"containers": [{"name": "feed", "image": "orders:1"}]}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

async fn start(bundle: &CertBundle, ts: Option<TransitStream>) -> (String, CertSlot) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slot = CertSlot::new(bundle.certified_key().unwrap());
    let app = router(
        Arc::new(Fixed(ts)),
        InjectContext {
            default_image: "stallwatch:test".into(),
        },
    );
    tokio::spawn(serve(listener, app, slot.clone(), std::future::pending()));
    (format!("https://127.0.0.1:{}", addr.port()), slot)
}

fn client(ca_pem: &str) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false);
    for ca in reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap() {
        builder = builder.add_root_certificate(ca);
    }
    builder.timeout(Duration::from_secs(5)).build().unwrap()
}

fn bundle() -> CertBundle {
    let names = crate::webhook::tls::serving_names("stallwatch-webhook", "ns", Some("127.0.0.1"));
    CertBundle::generate(
        &names,
        stallwatch_core::clock::now_ms(),
        Duration::from_secs(3600),
    )
    .unwrap()
}

#[tokio::test]
async fn a_labelled_pod_is_answered_with_a_json_patch_over_tls() {
    let b = bundle();
    let (url, _) = start(&b, Some(stream())).await;
    let resp: Value = client(&b.ca_pem)
        .post(format!("{url}{MUTATE_PATH}"))
        .json(&review(BTreeMap::from([(
            "stallwatch.io/inject",
            "orders",
        )])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = &resp["response"];
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    // kube serializes the bytes as a JSON array (Go's decoder takes it like base64).
    let patch: Vec<u8> = match &r["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        other => panic!("no patch: {other}"),
    };
    let ops: Value = serde_json::from_slice(&patch).unwrap();
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/spec/containers/-"), "{paths:?}");
    assert!(paths.contains(&"/spec/readinessGates"), "{paths:?}");
    assert!(
        paths.contains(&"/metadata/labels/stallwatch.io~1transitstream"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn an_unknown_stream_admits_the_pod_unchanged() {
    let b = bundle();
    let (url, _) = start(&b, None).await;
    let resp: Value = client(&b.ca_pem)
        .post(format!("{url}{MUTATE_PATH}"))
        .json(&review(BTreeMap::from([(
            "stallwatch.io/inject",
            "orders",
        )])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["response"]["allowed"], true);
    assert!(
        resp["response"].get("patch").is_none_or(Value::is_null),
        "{resp}"
    );
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections() {
    let first = bundle();
    let (url, slot) = start(&first, Some(stream())).await;
    let healthz = format!("{url}/healthz");
    assert!(client(&first.ca_pem).get(&healthz).send().await.is_ok());
    let names = crate::webhook::tls::serving_names("stallwatch-webhook", "ns", Some("127.0.0.1"));
    let second = first
        .rotated(
            &names,
            stallwatch_core::clock::now_ms(),
            Duration::from_secs(3600),
        )
        .unwrap();
    // Before the swap, a client that trusts only the new CA is refused...
    assert!(client(&second.ca_pem).get(&healthz).send().await.is_err());
    slot.replace(second.certified_key().unwrap());
    // ...after it, the new CA verifies, and the old one alone no longer does.
    assert!(client(&second.ca_pem).get(&healthz).send().await.is_ok());
    assert!(client(&first.ca_pem).get(&healthz).send().await.is_err());
    // The rotated caBundle (new + previous CA) verifies the server before and after a swap.
    assert!(
        client(&second.ca_bundle())
            .get(&healthz)
            .send()
            .await
            .is_ok()
    );
}
