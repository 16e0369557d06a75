use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::*;

fn meta(name: &str, rv: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("ns".into()),
        resource_version: Some(rv.into()),
        owner_references: Some(vec![OwnerReference {
            api_version: "stallwatch.io/v1alpha1".into(),
            kind: "TransitStream".into(),
            name: "demo".into(),
            uid: "u".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]),
        ..ObjectMeta::default()
    }
}

#[test]
fn the_operators_own_apply_is_not_drift() {
    let d = Drift::default();
    d.applied("ConfigMap", &meta("demo-config", "7"));
    d.seen("ConfigMap", &meta("demo-config", "7"));
    assert!(!d.take("ns/demo"));
}

#[test]
fn a_change_by_someone_else_is_drift_once() {
    let d = Drift::default();
    d.applied("ConfigMap", &meta("demo-config", "7"));
    d.seen("ConfigMap", &meta("demo-config", "8"));
    assert!(d.take("ns/demo"));
    assert!(!d.take("ns/demo"), "taken");
    d.mark("ns/demo");
    assert!(d.take("ns/demo"), "marked again after a failed re-apply");
}

#[test]
fn a_deletion_is_drift() {
    let d = Drift::default();
    d.applied("Service", &meta("demo", "3"));
    d.deleted("Service", &meta("demo", "3"), |_, _| true);
    assert!(d.take("ns/demo"));
}

#[test]
fn objects_of_a_deleted_transitstream_going_are_not_drift() {
    let d = Drift::default();
    d.applied("Service", &meta("demo", "3"));
    d.deleted("Service", &meta("demo", "3"), |ns, name| {
        assert_eq!((ns, name), ("ns", "demo"));
        false
    });
    assert!(!d.take("ns/demo"));
}

#[test]
fn an_object_seen_before_any_apply_is_drift() {
    // After a restart nothing is known: the first reconcile applies everything anyway.
    let d = Drift::default();
    d.seen("Role", &meta("demo-sidecar", "1"));
    assert!(d.take("ns/demo"));
}

#[test]
fn objects_missing_from_a_relist_are_drift_and_listed_ones_are_not() {
    let d = Drift::default();
    d.applied("Secret", &meta("demo-sidecar-admin", "5"));
    d.applied("ConfigMap", &meta("demo-config", "6"));
    d.relist_started("ConfigMap");
    d.seen("ConfigMap", &meta("demo-config", "6"));
    d.relisted("ConfigMap");
    assert!(!d.take("ns/demo"), "the ConfigMap is listed unchanged");
    d.relist_started("Secret");
    d.relisted("Secret");
    assert!(
        d.take("ns/demo"),
        "the Secret went while the watch was down"
    );
}

#[test]
fn objects_without_a_transitstream_owner_are_ignored() {
    let d = Drift::default();
    let mut m = meta("other", "1");
    m.owner_references = None;
    d.seen("ConfigMap", &m);
    d.deleted("ConfigMap", &m, |_, _| true);
    assert!(!d.take("ns/other"));
}

#[test]
fn forgetting_an_owner_drops_its_marks_and_objects() {
    let d = Drift::default();
    d.applied("Service", &meta("demo", "3"));
    d.seen("Service", &meta("demo", "4"));
    d.forget("ns/demo");
    assert!(!d.take("ns/demo"));
    d.relist_started("Service");
    d.relisted("Service");
    assert!(!d.take("ns/demo"), "nothing of it is tracked any more");
}
