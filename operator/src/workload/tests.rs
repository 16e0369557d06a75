use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DeploymentSpec, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use stallwatch_crds::TransitStreamSpec;

use super::*;

fn reference(kind: WorkloadKind) -> WorkloadRef {
    TransitStreamSpec::with_workload(kind, "orders-feed")
        .workload_ref
        .unwrap()
}

fn template(sa: Option<&str>) -> PodTemplateSpec {
    PodTemplateSpec {
        spec: Some(PodSpec {
            service_account_name: sa.map(Into::into),
            containers: vec![Container::default()],
            ..PodSpec::default()
        }),
        ..PodTemplateSpec::default()
    }
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "orders-feed".into())])),
        ..LabelSelector::default()
    }
}

fn pod(name: &str, injected: bool, ready: bool) -> Pod {
    let mut p = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    if injected {
        p.metadata.annotations = Some(BTreeMap::from([(
            inject::INJECTED_ANNOTATION.into(),
            "orders".into(),
        )]));
    }
    p
}

#[test]
fn a_deployment_is_read_for_its_account_selector_and_counters() {
    let d = Deployment {
        metadata: ObjectMeta {
            generation: Some(3),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: selector(),
            template: template(Some("orders")),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            replicas: Some(2),
            ready_replicas: Some(1),
            observed_generation: Some(3),
            ..DeploymentStatus::default()
        }),
    };
    let v = view_deployment(&d).unwrap();
    assert_eq!(v.service_account, "orders");
    assert_eq!(v.match_labels["app"], "orders-feed");
    assert_eq!(v.replicas, 2);
    assert_eq!(v.as_deployment.status, d.status);
    assert_eq!(v.as_deployment.metadata.generation, Some(3));
}

#[test]
fn a_stateful_set_runs_as_the_default_account_unless_it_names_one() {
    let s = StatefulSet {
        spec: Some(StatefulSetSpec {
            selector: selector(),
            template: template(None),
            ..StatefulSetSpec::default()
        }),
        status: Some(StatefulSetStatus {
            replicas: 3,
            ready_replicas: Some(2),
            ..StatefulSetStatus::default()
        }),
        ..StatefulSet::default()
    };
    let v = view_stateful_set(&s).unwrap();
    assert_eq!(v.service_account, "default");
    let st = v.as_deployment.status.unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (Some(3), Some(2)));
}

#[test]
fn the_sidecar_role_is_bound_to_the_workloads_account() {
    let mut ts = TransitStream::new(
        "orders",
        TransitStreamSpec::with_workload(WorkloadKind::Deployment, "orders-feed"),
    );
    ts.metadata.namespace = Some("transit".into());
    let rb = role_binding(&ts, "orders");
    assert_eq!(rb.metadata.name.as_deref(), Some("orders-sidecar"));
    assert_eq!(rb.role_ref.name, "orders-sidecar");
    let subject = &rb.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "orders", Some("transit"))
    );
}

#[test]
fn coverage_lists_injected_and_uninjected_pods_and_says_what_to_do() {
    let w = reference(WorkloadKind::Deployment);
    let view = view_deployment(&Deployment {
        spec: Some(DeploymentSpec {
            selector: selector(),
            template: template(None),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    });
    let mut gone = pod("orders-feed-d", false, false);
    gone.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let pods = [
        pod("orders-feed-b", true, false),
        pod("orders-feed-a", true, true),
        pod("orders-feed-c", false, true),
        gone,
    ];
    let c = coverage("orders", &w, view.as_ref(), &pods);
    assert!(c.found);
    assert_eq!(c.pods, 3, "a terminating pod is not counted");
    assert_eq!(
        c.covered_pods,
        [
            CoveredPod {
                name: "orders-feed-a".into(),
                ready: true
            },
            CoveredPod {
                name: "orders-feed-b".into(),
                ready: false
            }
        ]
    );
    assert_eq!(c.uncovered_pods, ["orders-feed-c"]);
    let msg = c.message.unwrap();
    assert!(msg.starts_with("1 of 3 pods have no sidecar"), "{msg}");
    assert!(
        msg.contains("kubectl rollout restart deployment/orders-feed"),
        "{msg}"
    );
    assert!(msg.contains("stallwatch.io/inject: orders"), "{msg}");

    let all = coverage("orders", &w, view.as_ref(), &pods[..2]);
    assert_eq!(all.message, None);
    let missing = coverage("orders", &w, None, &[]);
    assert!(!missing.found);
    assert!(missing.message.unwrap().contains("not found"));
}

#[test]
fn pods_of_another_transitstream_are_not_covered_and_are_reported_as_a_conflict() {
    let w = reference(WorkloadKind::Deployment);
    let view = view_deployment(&Deployment {
        spec: Some(DeploymentSpec {
            selector: selector(),
            template: template(None),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    });
    let labelled = |name: &str, key: &str, owner: &str| {
        let mut p = pod(name, true, true);
        p.metadata.labels = Some(BTreeMap::from([(key.into(), owner.into())]));
        p
    };
    let pods = [
        labelled(
            "orders-feed-a",
            stallwatch_crds::labels::TRANSITSTREAM,
            "orders",
        ),
        labelled("orders-feed-b", inject::INJECT_LABEL, "orders"),
    ];
    let second = coverage("orders-2", &w, view.as_ref(), &pods);
    assert_eq!(second.pods, 2, "the workload's pods are still counted");
    assert!(second.covered_pods.is_empty(), "{second:?}");
    assert!(second.uncovered_pods.is_empty(), "{second:?}");
    let msg = second.message.unwrap();
    assert!(
        msg.contains("also named by TransitStream \"orders\""),
        "{msg}"
    );
    assert!(msg.contains("delete TransitStream \"orders-2\""), "{msg}");
    assert_eq!(claimed_by_others("orders-2", &pods), ["orders"]);

    let first = coverage("orders", &w, view.as_ref(), &pods);
    assert_eq!(first.covered_pods.len(), 2);
    assert_eq!(first.message, None);
    assert!(claimed_by_others("orders", &pods).is_empty());
}
