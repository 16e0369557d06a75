use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stallwatch_crds::TransitStream;

use super::*;
use crate::leader::{KubeLeases, LeaseStore};
use stallwatch_crds::testing::TransitStreamExt as _;

type Triple = (&'static str, &'static str, &'static str);

fn triples(rules: &[Rule]) -> BTreeSet<Triple> {
    rules.iter().flat_map(Rule::triples).collect()
}

fn grants<K: kube::Resource<DynamicType = ()>>(rules: &[Rule], verbs: &[&str]) -> bool {
    let (group, plural) = (K::group(&()), K::plural(&()));
    let held = triples(rules);
    verbs.iter().all(|v| {
        held.iter()
            .any(|t| t.0 == group && t.1 == plural && t.2 == *v)
    })
}

#[test]
fn every_list_is_sorted_without_wildcards_or_duplicates() {
    for rule in OPERATOR
        .iter()
        .chain(LEADER_ELECTION)
        .chain(WEBHOOK)
        .chain(WEBHOOK_CERTS)
        .chain(SIDECAR)
    {
        for list in [rule.api_groups, rule.resources, rule.verbs] {
            assert!(!list.is_empty(), "{rule:?}");
            assert!(list.windows(2).all(|w| w[0] < w[1]), "unsorted: {list:?}");
            assert!(!list.iter().any(|s| s.contains('*')), "wildcard: {list:?}");
        }
    }
}

#[test]
fn the_sidecar_role_is_the_sidecar_table() {
    let ts = TransitStream::test("demo").build();
    let want: Vec<PolicyRule> = SIDECAR.iter().map(Rule::policy_rule).collect();
    assert_eq!(crate::builders::role(&ts).rules, Some(want));
}

#[test]
fn the_operator_holds_what_it_grants_the_sidecar() {
    // RBAC escalation prevention: a Role can only grant what its creator holds.
    let missing: Vec<_> = triples(SIDECAR)
        .difference(&triples(OPERATOR))
        .copied()
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
}

#[test]
fn the_operator_may_apply_every_object_it_builds() {
    // Server-side apply is a patch (create on first apply); reads go through get.
    let apply = ["create", "get", "patch"];
    assert!(grants::<Deployment>(OPERATOR, &apply));
    assert!(grants::<Service>(OPERATOR, &apply));
    assert!(grants::<ConfigMap>(OPERATOR, &apply));
    assert!(grants::<Secret>(OPERATOR, &apply));
    assert!(grants::<ServiceAccount>(OPERATOR, &apply));
    assert!(grants::<PersistentVolumeClaim>(OPERATOR, &apply));
    assert!(grants::<Role>(OPERATOR, &apply));
    assert!(grants::<RoleBinding>(OPERATOR, &apply));
    // The caches and the controller's owned-object watch.
    assert!(grants::<TransitStream>(OPERATOR, &["get", "list", "watch"]));
    assert!(grants::<Pod>(OPERATOR, &["delete", "list", "watch"]));
    assert!(grants::<Deployment>(OPERATOR, &["list", "watch"]));
    // A workloadRef is read, never written.
    assert!(grants::<k8s_openapi::api::apps::v1::StatefulSet>(
        OPERATOR,
        &["get"]
    ));
    assert!(triples(OPERATOR).contains(&("stallwatch.io", "transitstreams/status", "patch")));
    assert!(
        !grants::<Lease>(OPERATOR, &["get"]),
        "leases belong to LEADER_ELECTION only"
    );
}

/// The verb the API server checks for each HTTP method on a named object.
fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

#[tokio::test]
async fn the_elector_calls_exactly_the_leader_election_verbs() {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let record = Arc::clone(&seen);
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let record = Arc::clone(&record);
        async move {
            assert!(req.uri().path().contains("/leases"), "{}", req.uri());
            record.lock().unwrap().insert(verb(req.method()));
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some("l".into()),
                    namespace: Some("ns".into()),
                    ..ObjectMeta::default()
                },
                ..Lease::default()
            };
            let body = serde_json::to_vec(&lease).unwrap();
            Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(body)))
        }
    });
    let store = KubeLeases::new(kube::Client::new(service, "ns"), "ns", "l");
    store.get().await.unwrap();
    store.create(Lease::default()).await.unwrap();
    store.replace(Lease::default()).await.unwrap();
    let used: BTreeSet<&str> = seen.lock().unwrap().clone();
    let declared: BTreeSet<&str> = triples(LEADER_ELECTION).iter().map(|t| t.2).collect();
    assert_eq!(used, declared);
}

#[test]
fn the_yaml_is_the_tables() {
    let parsed: BTreeMap<String, Vec<PolicyRule>> = serde_yaml::from_str(&yaml()).unwrap();
    let rules = |t: &[Rule]| t.iter().map(Rule::policy_rule).collect::<Vec<_>>();
    assert_eq!(parsed["operator"], rules(OPERATOR));
    assert_eq!(parsed["leaderElection"], rules(LEADER_ELECTION));
    assert_eq!(parsed["webhook"], rules(WEBHOOK));
    assert_eq!(parsed["webhookCerts"], rules(WEBHOOK_CERTS));
    assert_eq!(parsed["sidecar"], rules(SIDECAR));
    assert_eq!(parsed.len(), 5);
    assert!(yaml().contains("- apiGroups: [\"\"]\n  resources: [pods]\n"));
}
