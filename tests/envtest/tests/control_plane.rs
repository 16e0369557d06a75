//! The harness itself on the real control plane: it starts, the admin is admin, a
//! ServiceAccount token carries exactly that account's RBAC, the kubelet helper keeps other
//! conditions.

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stallwatch_envtest::{ControlPlane, Timer, kubelet};

#[tokio::test]
async fn admin_and_service_account_clients_have_their_own_rights() {
    let Some(plane) =
        ControlPlane::shared("admin_and_service_account_clients_have_their_own_rights")
    else {
        return;
    };
    let _t = Timer::new("admin_and_service_account_clients_have_their_own_rights");
    let ns = plane.namespace("envtest-rights").await;
    let admin = plane.admin().await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let nobody = plane.service_account_client(&ns, "nobody").await;
    let err = Api::<Pod>::namespaced(nobody, &ns)
        .list(&ListParams::default())
        .await
        .expect_err("a ServiceAccount without a Role may not list pods");
    assert!(err.to_string().contains("forbidden"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("system:serviceaccount:{ns}:nobody")),
        "{err}"
    );
    Api::<Pod>::namespaced(admin, &ns)
        .list(&ListParams::default())
        .await
        .expect("the admin may");
    plane.delete_namespace(&ns).await;
}

#[tokio::test]
async fn mark_running_keeps_other_conditions() {
    let Some(plane) = ControlPlane::shared("mark_running_keeps_other_conditions") else {
        return;
    };
    let _t = Timer::new("mark_running_keeps_other_conditions");
    let ns = plane.namespace("envtest-kubelet").await;
    let admin = plane.admin().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "none"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"conditions": [
            {"type": "stallwatch.io/DispatchHealthy", "status": "False", "reason": "ChannelStuck"}
        ]}})),
    )
    .await
    .unwrap();
    let pod = kubelet::mark_running(&admin, &ns, "p", "127.0.0.1").await;
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    let conditions = status.conditions.unwrap();
    let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert!(types.contains(&"Ready"), "{types:?}");
    assert!(
        types.contains(&"stallwatch.io/DispatchHealthy"),
        "{types:?}"
    );
    plane.delete_namespace(&ns).await;
}
