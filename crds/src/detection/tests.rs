#[test]
fn the_duration_pattern_is_specs() {
    assert_eq!(super::GO_DURATION_PATTERN, crate::spec::GO_DURATION_PATTERN);
}

// The app shares the pod's network namespace with the sidecar: its metrics port must be
// none of the sidecar's listeners.
#[test]
fn the_refused_metrics_ports_are_the_sidecars() {
    use stallwatch_core::ports::{SIDECAR_ADMIN, SIDECAR_HTTP, SIDECAR_INGEST};
    let schema = serde_json::to_string(&schemars::schema_for!(super::MetricsDetection))
        .expect("the schema serializes");
    let rule = format!(
        "self.port != {SIDECAR_HTTP} && self.port != {SIDECAR_ADMIN} && self.port != {SIDECAR_INGEST}"
    );
    assert!(schema.contains(&rule), "no {rule:?} in {schema}");
}
