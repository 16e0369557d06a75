use kube::runtime::reflector;
use kube::runtime::watcher;
use stallwatch_crds::{Phase, TransitStream, TransitStreamStatus};

use super::*;

fn stream(ns: &str, name: &str, phase: Option<Phase>) -> TransitStream {
    let mut ts: TransitStream = serde_json::from_value(serde_json::json!({
        "apiVersion": "stallwatch.io/v1alpha1",
        "kind": "TransitStream",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"source": {"synthetic": {}}},
    }))
    .expect("a minimal TransitStream");
    ts.status = phase.map(|phase| TransitStreamStatus {
        phase: Some(phase),
        ..TransitStreamStatus::default()
    });
    ts
}

fn phase_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("stallwatch_operator_transitstream_phase{"))
        .collect()
}

#[test]
fn phase_series_follow_the_cache() {
    let mut registry = Registry::default();
    let m = Metrics::new(&mut registry);
    // Before the controller has a cache (a follower): the family, no series.
    let text = render(&registry);
    assert!(
        text.contains("# TYPE stallwatch_operator_transitstream_phase gauge"),
        "{text}"
    );
    assert!(phase_lines(&text).is_empty(), "{text}");

    let (store, mut writer) = reflector::store::<TransitStream>();
    m.observe_streams(store);
    let degraded = stream("transit", "downtown", Some(Phase::Degraded));
    writer.apply_watcher_event(&watcher::Event::Apply(degraded.clone()));
    writer.apply_watcher_event(&watcher::Event::Apply(stream(
        "transit",
        "all",
        Some(Phase::Running),
    )));
    // No status yet: no series (nothing to alert on, nothing to guess).
    writer.apply_watcher_event(&watcher::Event::Apply(stream("transit", "new", None)));
    let text = render(&registry);
    assert_eq!(
        phase_lines(&text),
        [
            r#"stallwatch_operator_transitstream_phase{namespace="transit",name="all",phase="Running"} 1"#,
            r#"stallwatch_operator_transitstream_phase{namespace="transit",name="downtown",phase="Degraded"} 1"#,
        ],
        "{text}"
    );

    // A phase change replaces the series; a deleted TransitStream leaves none behind.
    writer.apply_watcher_event(&watcher::Event::Apply(stream(
        "transit",
        "all",
        Some(Phase::Stalled),
    )));
    writer.apply_watcher_event(&watcher::Event::Delete(degraded));
    let text = render(&registry);
    assert_eq!(
        phase_lines(&text),
        [
            r#"stallwatch_operator_transitstream_phase{namespace="transit",name="all",phase="Stalled"} 1"#
        ],
        "{text}"
    );
}

#[test]
fn catalog_lists_every_metric_without_a_cluster() {
    let text = catalog();
    for family in [
        "stallwatch_operator_reconciles counter",
        "stallwatch_operator_reconcile_errors counter",
        "stallwatch_operator_remediations counter",
        "stallwatch_operator_remediations_blocked counter",
        "stallwatch_operator_budget_exhausted counter",
        "stallwatch_operator_stall_to_restart_seconds histogram",
        "stallwatch_operator_remediations_in_flight gauge",
        "stallwatch_operator_leader gauge",
        "stallwatch_operator_transitstream_phase gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "{family}: {text}"
        );
    }
    // Pre-created at 0, so the first failure or budget exhaustion is an increase.
    for series in [
        r#"stallwatch_operator_remediations_total{outcome="Failed"} 0"#,
        r#"stallwatch_operator_remediations_blocked_total{reason="BudgetSpent"} 0"#,
    ] {
        assert!(text.contains(series), "{series}: {text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}
