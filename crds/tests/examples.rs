//! Every TransitStream in `examples/` passes the operator's own spec validation too (what the
//! schema cannot express, such as `stallAfter` longer than `reportInterval`), not only the
//! schema checks in `charts/validate.py`.

use std::path::Path;

use serde::Deserialize;
use stallwatch_crds::TransitStream;

#[test]
fn examples_pass_the_operators_validation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.get("kind").and_then(|k| k.as_str()) != Some("TransitStream") {
                continue;
            }
            let ts: TransitStream = serde_yaml::from_value(value)
                .unwrap_or_else(|e| panic!("{}: not a TransitStream: {e}", path.display()));
            let errors = stallwatch_crds::validate(&ts.spec);
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} TransitStream examples found");
}
