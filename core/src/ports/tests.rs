use super::*;

// What docs/architecture.md and the chart README tell people; a change here is a breaking
// change for every pod already running.
#[test]
fn the_documented_addresses() {
    assert_eq!(any(BROADCASTER_GRPC).to_string(), "0.0.0.0:50051");
    assert_eq!(loopback(BROADCASTER_ADMIN).to_string(), "127.0.0.1:9091");
    assert_eq!(sidecar_report_url(), "http://127.0.0.1:9464/v1/reports");
    assert_eq!(broadcaster_admin_url(), "http://127.0.0.1:9091");
}

// Containers of one pod share its network namespace: the sidecar's and the broadcaster's
// ports must all differ (the operator's runs in a pod of its own).
#[test]
fn the_ports_of_one_pod_differ() {
    let pod = [
        BROADCASTER_GRPC,
        BROADCASTER_HTTP,
        BROADCASTER_ADMIN,
        SIDECAR_INGEST,
        SIDECAR_HTTP,
        SIDECAR_ADMIN,
    ];
    let mut sorted = pod.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), pod.len(), "{pod:?}");
}
