//! The pod cache's slimming: what the operator reads survives it, nothing else does.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::{pod_to_stream, slim_pod};
use crate::observe::{pod_ip, pod_state};

/// A pod as a real API server serves it: defaulted spec, managed fields, owner references,
/// every kubelet condition, container statuses, and a stall on the sidecar's condition.
fn served_pod(opted_out: bool) -> Pod {
    let mut annotations = json!({"stallwatch.io/config-hash": "0123456789abcdef",
        "kubectl.kubernetes.io/restartedAt": "2026-11-28T01:00:00Z"});
    if opted_out {
        annotations["stallwatch.io/remediation"] = json!("disabled");
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "buses-7d9c8b6f5-x2x4z", "generateName": "buses-7d9c8b6f5-",
            "namespace": "city", "uid": "9b3c0e1e-0000-4000-8000-000000000001",
            "resourceVersion": "4711", "creationTimestamp": "2026-11-28T00:59:00Z",
            "deletionTimestamp": "2026-11-28T01:05:00Z", "deletionGracePeriodSeconds": 30,
            "labels": {"stallwatch.io/transitstream": "buses", "app.kubernetes.io/name": "broadcaster",
                "app.kubernetes.io/managed-by": "transit-operator", "pod-template-hash": "7d9c8b6f5"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "buses-7d9c8b6f5", "uid": "x", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}],
        },
        "spec": {"containers": [{"name": "broadcaster", "image": "stallwatch:0.1.0"},
            {"name": "sidecar", "image": "stallwatch:0.1.0"}], "nodeName": "node-1"},
        "status": {
            "phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}],
            "hostIP": "192.168.0.10", "startTime": "2026-11-28T01:00:00Z", "qosClass": "Burstable",
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-28T01:02:00Z"},
                {"type": "stallwatch.io/DispatchHealthy", "status": "False", "reason": "ChannelStuck",
                 "message": "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 12.3s",
                 "lastTransitionTime": "2026-11-28T01:02:00Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T01:00:00Z"},
            ],
            "containerStatuses": [{"name": "broadcaster", "ready": false, "restartCount": 0,
                "image": "stallwatch:0.1.0", "imageID": "sha256:0"}],
        },
    }))
    .unwrap()
}

#[test]
fn a_slimmed_pod_reads_as_the_served_one() {
    for opted_out in [false, true] {
        let served = served_pod(opted_out);
        let mut slim = served.clone();
        slim_pod(&mut slim);
        let state = pod_state(&slim);
        assert_eq!(state, pod_state(&served));
        assert_eq!(state.opted_out, opted_out);
        assert!(state.terminating);
        assert_eq!(state.stalled.len(), 1, "{state:?}");
        assert_eq!(pod_ip(&slim), Some("10.0.0.7".into()));
        assert_eq!(pod_to_stream(&slim), pod_to_stream(&served));
        assert!(pod_to_stream(&slim).is_some());
    }
}

#[test]
fn a_slimmed_pod_holds_nothing_else() {
    let mut slim = served_pod(true);
    slim_pod(&mut slim);
    assert_eq!(
        serde_json::to_value(&slim).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "buses-7d9c8b6f5-x2x4z", "namespace": "city",
                "uid": "9b3c0e1e-0000-4000-8000-000000000001",
                "deletionTimestamp": "2026-11-28T01:05:00Z",
                "labels": {"stallwatch.io/transitstream": "buses"},
                "annotations": {"stallwatch.io/remediation": "disabled"},
            },
            "status": {
                "podIP": "10.0.0.7",
                "conditions": [{"type": "stallwatch.io/DispatchHealthy", "status": "False",
                    "reason": "ChannelStuck",
                    "message": "stream downtown: ChannelStuck, 5/5 waiting, no dequeue for 12.3s",
                    "lastTransitionTime": "2026-11-28T01:02:00Z"}],
            },
        })
    );
}

#[test]
fn a_pod_without_status_or_annotations_slims_to_its_identity() {
    let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "n",
        "labels": {"other": "x"}, "annotations": {"a": "b"}}}))
    .unwrap();
    slim_pod(&mut pod);
    assert_eq!(pod.metadata.labels, None);
    assert_eq!(pod.metadata.annotations, None);
    assert!(pod.status.is_none() && pod.spec.is_none());
    assert_eq!(pod.metadata.name.as_deref(), Some("p"));
}
