use proptest::prelude::*;

use super::*;

#[test]
fn reads_the_0_0_4_text_format() {
    let body = "# HELP app_queue_depth Items waiting.\n\
                # TYPE app_queue_depth gauge\n\
                app_queue_depth{queue=\"orders\",zone=\"a\"} 3\n\
                app_queue_depth{queue=\"refunds\"} 0 1700000000000\n\
                \n\
                # TYPE app_dequeued_total counter\n\
                app_dequeued_total{queue=\"orders\"} 1.5e3\n\
                up 1\n";
    let s = parse(body).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].name, "app_queue_depth");
    assert_eq!(s[0].label("queue"), Some("orders"));
    assert_eq!(s[0].label("zone"), Some("a"));
    assert_eq!(s[0].value, 3.0);
    assert_eq!(s[1].value, 0.0);
    assert_eq!(s[2].value, 1500.0);
    assert!(s[3].labels.is_empty());
}

#[test]
fn reads_openmetrics_with_units_exemplars_and_eof() {
    let body = "# TYPE app_dequeued counter\n\
                # UNIT app_dequeued items\n\
                app_dequeued_total{stream=\"a\"} 17 1700000000.123 # {trace_id=\"x\"} 1 1700000000.1\n\
                app_dequeued_created{stream=\"a\"} 1700000000.0\n\
                app_depth{stream=\"a\"} +Inf\n\
                app_ratio NaN\n\
                # EOF\n\
                this is past the end\n";
    let s = parse(body).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].name, "app_dequeued_total");
    assert_eq!(s[0].value, 17.0);
    assert_eq!(s[2].value, f64::INFINITY);
    assert!(s[3].value.is_nan());
}

#[test]
fn label_values_keep_escapes_commas_and_braces() {
    let body = "m{a=\"x,y}\",b=\"q\\\"uote\\\\back\\nline\",} 1\n";
    let s = parse(body).unwrap();
    assert_eq!(s[0].label("a"), Some("x,y}"));
    assert_eq!(s[0].label("b"), Some("q\"uote\\back\nline"));
}

#[test]
fn html_and_garbage_fail_with_the_line() {
    let e = parse("<!DOCTYPE html>\n<html><body>404</body></html>\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("expected a metric name"), "{e}");

    let e = parse("ok 1\nhello world\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.to_string().contains("\"world\" is not a number"), "{e}");

    for bad in [
        "m{a=\"1\" 2",
        "m{a=1} 2",
        "m{a=\"1\",a=\"2\"} 3",
        "m",
        "m{} 1 2 3",
        "m infinity",
        "m 0x10",
        "m{=\"1\"} 1",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}"
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        name(),
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}", 0..4),
        prop_oneof![
            any::<f64>(),
            (0u64..1 << 50).prop_map(|v| v as f64),
            Just(f64::INFINITY),
        ],
    )
        .prop_map(|(name, labels, value)| Sample {
            name,
            labels: labels.into_iter().collect(),
            value,
        })
}

fn same(a: &Sample, b: &Sample) -> bool {
    a.name == b.name
        && a.labels == b.labels
        && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Whatever samples are rendered, with comments, blank lines and timestamps between
    /// them, parse back to the same samples.
    #[test]
    fn rendered_samples_parse_back(samples in prop::collection::vec((sample(), any::<bool>()), 0..12)) {
        let mut body = String::from("# HELP x some help\n\n");
        for (s, ts) in &samples {
            body.push_str(&s.to_string());
            if *ts {
                body.push_str(" 1700000000.5");
            }
            body.push('\n');
            body.push_str("# TYPE y gauge\n");
        }
        body.push_str("# EOF\n");
        let parsed = parse(&body).unwrap();
        prop_assert_eq!(parsed.len(), samples.len());
        for (p, (s, _)) in parsed.iter().zip(&samples) {
            prop_assert!(same(p, s), "{p:?} != {s:?}");
        }
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }
}
