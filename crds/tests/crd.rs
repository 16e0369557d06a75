//! The checked-in CRD matches the types, and the schema is one a real API server accepts.

use kube::CustomResourceExt;
use serde_json::Value;
use stallwatch_crds::{TransitStream, crd_yaml};

const CHECKED_IN: &str = include_str!("../transitstream.yaml");

#[test]
fn checked_in_yaml_matches_the_types() {
    assert!(
        CHECKED_IN == crd_yaml(),
        "crds/transitstream.yaml is stale: run scripts/check-generated.sh --write"
    );
}

fn schema() -> Value {
    let crd = serde_json::to_value(TransitStream::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Walk every schema node with its path.
fn walk<'a>(path: String, node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), node));
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(format!("{path}.{k}"), v, out);
        }
    }
    if let Some(items) = node.get("items") {
        walk(format!("{path}[]"), items, out);
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(format!("{path}{{}}"), ap, out);
    }
}

fn nodes(root: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    walk(String::new(), root, &mut out);
    out
}

#[test]
fn schema_is_structural() {
    let root = schema();
    for (path, node) in nodes(&root) {
        let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        assert!(
            node.get("type").is_some() || int_or_string,
            "{path}: every node needs a type"
        );
        for banned in ["$ref", "oneOf", "anyOf", "allOf", "definitions", "$defs"] {
            assert!(
                node.get(banned).is_none(),
                "{path}: {banned} is not structural"
            );
        }
        assert!(
            node.get("x-kubernetes-preserve-unknown-fields").is_none(),
            "{path}: unknown fields must not be preserved"
        );
    }
}

#[test]
fn cel_rules_only_touch_bounded_values() {
    // The API server estimates each rule's cost from maxLength/maxItems; unbounded strings or
    // lists under a rule make it refuse the CRD.
    let root = schema();
    let mut rules = 0;
    for (path, node) in nodes(&root) {
        let Some(list) = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        else {
            continue;
        };
        for rule in list {
            rules += 1;
            assert!(
                rule["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{path}: a rule needs a message"
            );
        }
        match node["type"].as_str() {
            Some("string") => assert!(
                node.get("maxLength").is_some(),
                "{path}: unbounded string under a rule"
            ),
            Some("array") => assert!(
                node.get("maxItems").is_some(),
                "{path}: unbounded list under a rule"
            ),
            _ => {}
        }
    }
    assert!(
        rules >= 8,
        "expected the CEL rules in the schema, found {rules}"
    );
}

#[test]
fn api_surface() {
    let crd = serde_json::to_value(TransitStream::crd()).unwrap();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "transitstreams.stallwatch.io");
    assert_eq!(spec["group"], "stallwatch.io");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["shortNames"][0], "ts");
    assert_eq!(spec["names"]["categories"][0], "stallwatch");
    let v = &spec["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Streams",
            "Ready",
            "Stalls",
            "Last Remediation",
            "Age"
        ]
    );
}

#[test]
fn defaults_live_in_the_schema() {
    let root = schema();
    let spec = &root["properties"]["spec"]["properties"];
    assert_eq!(spec["channelCapacity"]["default"], 5);
    assert_eq!(spec["replicas"]["default"], 1);
    assert_eq!(spec["reportInterval"]["default"], "250ms");
    assert_eq!(spec["stallAfter"]["default"], "2s");
    assert_eq!(spec["paused"]["default"], false);
    assert_eq!(spec["streams"]["default"][0]["name"], "all");
    let rem = &spec["remediation"]["properties"];
    assert_eq!(rem["mode"]["default"], "DumpAndRestart");
    assert_eq!(rem["restartTarget"]["default"], "Pod");
    assert_eq!(rem["budgetPerHour"]["default"], 3);
    assert_eq!(
        rem["mode"]["enum"],
        serde_json::json!(["DumpAndRestart", "RestartOnly", "DumpOnly", "Observe"])
    );
    assert_eq!(
        spec["dumps"]["properties"]["processDump"]["enum"],
        serde_json::json!(["None", "Minidump", "Full"])
    );
}

#[test]
fn a_minimal_resource_deserializes_with_defaults() {
    let ts: TransitStream = serde_yaml::from_str(
        "apiVersion: stallwatch.io/v1alpha1\nkind: TransitStream\nmetadata: {name: demo, namespace: default}\nspec:\n  source: {synthetic: {}}\n",
    )
    .unwrap();
    assert_eq!(ts.spec.channel_capacity, 5);
    assert_eq!(ts.spec.streams[0].name, "all");
    assert_eq!(ts.spec.stream_args(), ["all"]);
    assert!(stallwatch_crds::validate(&ts.spec).is_empty());
}

#[test]
fn stream_filters_render_for_the_broadcaster() {
    let s = stallwatch_crds::StreamSpec {
        name: "downtown".into(),
        routes: vec!["R1".into(), "R2".into()],
        bbox: Some(stallwatch_crds::BoundingBox {
            min_lat: 56.9,
            min_lon: 24.0,
            max_lat: 57.0,
            max_lon: 24.2,
        }),
    };
    assert_eq!(s.cli_value(), "downtown=routes:R1,R2;bbox:56.9,24,57,24.2");
}

#[test]
fn a_workload_ref_is_the_alternative_to_a_source() {
    let root = schema();
    let spec = &root["properties"]["spec"];
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"has(self.source) != has(self.workloadRef)"),
        "{rules:?}"
    );
    let required = spec["required"].as_array().cloned().unwrap_or_default();
    assert!(
        !required.contains(&serde_json::json!("source")),
        "source must be optional"
    );
    let w = &spec["properties"]["workloadRef"];
    assert_eq!(w["required"], serde_json::json!(["kind", "name"]));
    assert_eq!(
        w["properties"]["kind"]["enum"],
        serde_json::json!(["Deployment", "StatefulSet"])
    );
    assert_eq!(w["properties"]["apiVersion"]["default"], "apps/v1");
    let ns_rules = &w["properties"]["namespace"]["x-kubernetes-validations"][0];
    assert_eq!(ns_rules["rule"], "false");
    assert!(
        ns_rules["message"]
            .as_str()
            .unwrap()
            .contains("same-namespace only")
    );
}
