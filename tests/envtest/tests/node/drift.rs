//! Finding 6 of issue 20 on the node, as `operator/README.md` documents drift repair: a hand
//! edit of a field the operator sets on its Deployment is put back, a field another manager
//! added stays, and what stays reaches the real container.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use stallwatch_envtest::node::Node;
use stallwatch_envtest::{Timer, eventually};

use crate::support::{
    MINIMAL_SELECTOR, all_containers_ready, container_pid, ensure_installed, minimal_stream, serial,
};

const ADDED: &str = "ADDED_BY_HAND";

fn broadcaster(containers: &[Container]) -> &Container {
    containers
        .iter()
        .find(|c| c.name == "broadcaster")
        .expect("a broadcaster container")
}

fn added(c: &Container) -> bool {
    c.env
        .as_ref()
        .is_some_and(|env| env.iter().any(|e| e.name == ADDED))
}

/// `ADDED` in a host process's environment (`/proc/PID/environ`, as root).
fn process_has_added(pid: u32) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("/proc/PID/environ");
    environ
        .split(|b| *b == 0)
        .any(|kv| kv == format!("{ADDED}=1").as_bytes())
}

/// `kubectl set env deploy/demo -c broadcaster ADDED_BY_HAND=1` (manager `kubectl-set`), then
/// `kubectl edit` of the broadcaster's image (manager `kubectl-edit`) on the owned Deployment
/// of `examples/minimal-synthetic.yaml`: the image is put back, the added variable stays, and
/// the pod the rollout ends with is Ready with the operator's image and the variable in its
/// real broadcaster process; no pod of the edited image is left.
#[tokio::test]
async fn drift_repair_on_the_node_puts_back_an_edited_image_and_keeps_an_added_env() {
    let test = "drift_repair_on_the_node_puts_back_an_edited_image_and_keeps_an_added_env";
    let Some(node) = Node::shared(test) else {
        return;
    };
    let _serial = serial().await;
    let _t = Timer::new(test);
    ensure_installed(node).await;
    let (ns, admin, _) = minimal_stream(node, "journey-drift").await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let original = deployments.get("demo").await.expect("the owned Deployment");
    let template = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("a pod template")
    };
    let image = broadcaster(&template(&original).containers)
        .image
        .clone()
        .expect("an image");
    let by = |manager: &str| PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    let set_env = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "broadcaster", "env": [{"name": ADDED, "value": "1"}]}]}}}});
    deployments
        .patch("demo", &by("kubectl-set"), &Patch::Strategic(&set_env))
        .await
        .expect("kubectl set env");
    let edited = "example.invalid/hand-edited:1";
    let edit_image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "broadcaster", "image": edited}]}}}});
    deployments
        .patch("demo", &by("kubectl-edit"), &Patch::Strategic(&edit_image))
        .await
        .expect("kubectl edit");
    let repaired = eventually(
        "the operator's image put back on the Deployment",
        Duration::from_secs(60),
        || async {
            let d = deployments.get("demo").await.ok()?;
            let b = broadcaster(&template(&d).containers).clone();
            (b.image.as_deref() == Some(image.as_str())).then_some(b)
        },
    )
    .await;
    assert!(
        added(&repaired),
        "{ADDED} added by another manager stays (operator/README.md): {:?}",
        repaired.env
    );
    // What runs in the end: the operator's image with the added variable, nothing edited.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let pod = eventually(
        "one Ready pod with the image and the added variable, and no other pod",
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&ListParams::default().labels(MINIMAL_SELECTOR))
                .await
                .ok()?;
            let [pod] = list.items.as_slice() else {
                return None;
            };
            let b = broadcaster(&pod.spec.as_ref()?.containers);
            (b.image.as_deref() == Some(image.as_str())
                && added(b)
                && pod.metadata.deletion_timestamp.is_none()
                && all_containers_ready(pod))
            .then(|| pod.clone())
        },
    )
    .await;
    let pid = container_pid(node, &pod, "broadcaster");
    assert!(
        process_has_added(pid),
        "{ADDED}=1 is not in the running broadcaster's environment"
    );
    node.plane().delete_namespace(&ns).await;
}
