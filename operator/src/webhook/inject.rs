//! What the webhook adds to a pod of a referenced workload, as a pure function: pod +
//! TransitStream in, a decision (skip, with why, or a JSON patch) out.
//!
//! Which pods: those whose labels carry `stallwatch.io/inject: <TransitStream name>` (the
//! webhook's `objectSelector` sees only those, so other pods never wait on the operator), and
//! whose TransitStream in the same namespace has a `workloadRef`. The label is the user's
//! opt-in on the pod template; nothing else in the workload changes.
//!
//! What is added: the sidecar container (`stallwatch-sidecar`, env from the TransitStream, the
//! downward-API pod identity), the `stallwatch.io/DispatchHealthy` readiness gate, the dump
//! volume (the TransitStream's claim or an emptyDir), the admin token Secret, a projected
//! ServiceAccount token for the sidecar only (the API server mounted the pod's token before
//! webhooks ran, into the containers that existed then), `shareProcessNamespace` for process
//! dumps, the label `stallwatch.io/transitstream` (the operator's pod watch) and the
//! annotation `stallwatch.io/injected`. A pod that already has the sidecar or the annotation is
//! left alone: injection is idempotent (a reinvoked webhook, a recreated pod spec).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, Pod, PodReadinessGate,
    SecretVolumeSource, Volume,
};
use serde_json::{Value, json};
use stallwatch_core::condition::CONDITION_TYPE;
use stallwatch_crds::{TransitStream, labels};

use crate::builders::{
    self, DUMP_DIR, SIDECAR_ADMIN_PORT, SIDECAR_HTTP_PORT, TOKEN_DIR, dump_claim_name, secret_name,
};

/// The label users put on a workload's pod template: its value names the TransitStream.
pub const INJECT_LABEL: &str = "stallwatch.io/inject";
/// Set on every injected pod; its value names the TransitStream.
pub const INJECTED_ANNOTATION: &str = "stallwatch.io/injected";
/// The injected container's name.
pub const SIDECAR_CONTAINER: &str = "stallwatch-sidecar";
/// Volumes the webhook adds, prefixed so they never collide with the workload's own.
pub const DUMPS_VOLUME: &str = "stallwatch-dumps";
pub const TOKEN_VOLUME: &str = "stallwatch-admin-token";
pub const API_VOLUME: &str = "stallwatch-kube-api-access";
pub const TMP_VOLUME: &str = "stallwatch-tmp";
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the injection needs besides the pod and its TransitStream.
#[derive(Debug, Clone)]
pub struct InjectContext {
    /// The sidecar image when the TransitStream names none.
    pub default_image: String,
}

/// The webhook's answer for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// Admit the pod unchanged; the reason is logged.
    Skip(String),
    /// Admit the pod with this patch.
    Patch(Patch),
}

/// The TransitStream a pod asks for (its inject label), if any.
pub fn requested_stream(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(INJECT_LABEL)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Whether the pod already carries the sidecar (or says it does).
pub fn is_injected(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED_ANNOTATION));
    let has_sidecar = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == SIDECAR_CONTAINER));
    annotated || has_sidecar
}

/// Decide and compute the patch for `pod`, given the TransitStream its label names (`None`
/// when there is no such TransitStream in the pod's namespace).
pub fn inject(pod: &Pod, ts: Option<&TransitStream>, ctx: &InjectContext) -> Injection {
    let Some(wanted) = requested_stream(pod) else {
        return Injection::Skip(format!("no {INJECT_LABEL} label"));
    };
    if is_injected(pod) {
        return Injection::Skip("already injected".into());
    }
    let Some(ts) = ts else {
        return Injection::Skip(format!(
            "no TransitStream {wanted:?} in the pod's namespace"
        ));
    };
    if ts.spec.workload_ref.is_none() {
        return Injection::Skip(format!(
            "TransitStream {wanted:?} deploys its own broadcaster (no workloadRef)"
        ));
    }
    if ts.metadata.deletion_timestamp.is_some() {
        return Injection::Skip(format!("TransitStream {wanted:?} is being deleted"));
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Injection::Skip("pod has no spec".into());
    };
    Injection::Patch(Patch(patch_ops(pod, spec, ts, ctx)))
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("Kubernetes types serialize")
}

/// Appends `items` to the list at `path`, creating the list when the pod has none.
fn append(ops: &mut Vec<PatchOperation>, path: &[&str], exists: bool, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if exists {
        let mut end = path.to_vec();
        end.push("-");
        ops.extend(items.into_iter().map(|item| add(&end, item)));
    } else {
        ops.push(add(path, Value::Array(items)));
    }
}

fn patch_ops(
    pod: &Pod,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    ts: &TransitStream,
    ctx: &InjectContext,
) -> Vec<PatchOperation> {
    let name = ts.metadata.name.clone().unwrap_or_default();
    let mut ops = Vec::new();

    // Labels exist: the inject label is one of them.
    ops.push(add(
        &["metadata", "labels", labels::TRANSITSTREAM],
        json!(name),
    ));
    match &pod.metadata.annotations {
        Some(_) => ops.push(add(
            &["metadata", "annotations", INJECTED_ANNOTATION],
            json!(name),
        )),
        None => ops.push(add(
            &["metadata", "annotations"],
            json!({ INJECTED_ANNOTATION: name }),
        )),
    }

    ops.push(add(
        &["spec", "containers", "-"],
        to_value(&sidecar_container(ts, ctx)),
    ));

    let existing: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let volumes: Vec<Value> = volumes(ts)
        .iter()
        .filter(|v| !existing.contains(&v.name.as_str()))
        .map(to_value)
        .collect();
    append(
        &mut ops,
        &["spec", "volumes"],
        spec.volumes.is_some(),
        volumes,
    );

    let gated = spec
        .readiness_gates
        .iter()
        .flatten()
        .any(|g| g.condition_type == CONDITION_TYPE);
    if !gated {
        let gate = to_value(&PodReadinessGate {
            condition_type: CONDITION_TYPE.into(),
        });
        append(
            &mut ops,
            &["spec", "readinessGates"],
            spec.readiness_gates.is_some(),
            vec![gate],
        );
    }

    if builders::process_dumps(ts) && spec.share_process_namespace != Some(true) {
        ops.push(add(&["spec", "shareProcessNamespace"], json!(true)));
    }
    ops
}

/// The sidecar as in a deployed TransitStream, but with its settings as plain env (no
/// ConfigMap to keep in step) and volumes under the webhook's own names.
pub fn sidecar_container(ts: &TransitStream, ctx: &InjectContext) -> Container {
    let image = ts
        .spec
        .image
        .clone()
        .unwrap_or_else(|| ctx.default_image.clone());
    let mut env: Vec<EnvVar> = builders::sidecar_settings(ts)
        .into_iter()
        .map(|(k, v)| EnvVar {
            name: k.into(),
            value: Some(v),
            ..EnvVar::default()
        })
        .collect();
    env.extend([
        builders::field_env("POD_NAME", "metadata.name"),
        builders::field_env("POD_NAMESPACE", "metadata.namespace"),
        builders::field_env("POD_UID", "metadata.uid"),
        builders::field_env("NODE_NAME", "spec.nodeName"),
    ]);
    Container {
        name: SIDECAR_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: builders::pull_policy(ts),
        command: Some(vec!["/usr/local/bin/transit-sidecar".into()]),
        args: Some(vec!["run".into()]),
        env: Some(env),
        ports: Some(vec![
            builders::named_port("sidecar-http", SIDECAR_HTTP_PORT),
            builders::named_port("sidecar-admin", SIDECAR_ADMIN_PORT),
        ]),
        liveness_probe: Some(builders::http_probe("/healthz", "sidecar-http", 10, 3)),
        // Not /readyz: the readiness gate reports stalls; the sidecar must stay reachable.
        readiness_probe: Some(builders::http_probe("/healthz", "sidecar-http", 5, 2)),
        resources: Some(
            ts.spec
                .sidecar_resources
                .clone()
                .unwrap_or_else(builders::default_sidecar_resources),
        ),
        security_context: Some(builders::restricted(builders::process_dumps(ts))),
        volume_mounts: Some(vec![
            builders::mount(TMP_VOLUME, "/tmp", false),
            builders::mount(DUMPS_VOLUME, DUMP_DIR, false),
            builders::mount(TOKEN_VOLUME, TOKEN_DIR, true),
            builders::mount(API_VOLUME, SERVICE_ACCOUNT_DIR, true),
        ]),
        ..Container::default()
    }
}

/// Scratch space, the admin token, the sidecar's API credentials and the dump volume (the
/// TransitStream's claim when it names or templates one, else a bounded emptyDir).
pub fn volumes(ts: &TransitStream) -> Vec<Volume> {
    let name = ts.metadata.name.clone().unwrap_or_default();
    let dump_claim = ts.spec.dumps.volume.as_ref().map(|v| {
        v.existing_claim
            .clone()
            .unwrap_or_else(|| dump_claim_name(&name))
    });
    vec![
        builders::empty_dir(TMP_VOLUME, "64Mi"),
        Volume {
            name: TOKEN_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(&name)),
                default_mode: Some(builders::TOKEN_FILE_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        builders::api_access_volume(API_VOLUME),
        match dump_claim {
            Some(claim) => Volume {
                name: DUMPS_VOLUME.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: Some(false),
                }),
                ..Volume::default()
            },
            None => builders::empty_dir(DUMPS_VOLUME, "1Gi"),
        },
    ]
}

/// The patch applied to a JSON pod, for tests and the idempotency check.
pub fn apply_to(pod: &Pod, patch: &Patch) -> Result<Pod, json_patch::PatchError> {
    let mut value = to_value(pod);
    json_patch::patch(&mut value, patch)?;
    Ok(serde_json::from_value(value).expect("a patched pod is still a pod"))
}

#[cfg(test)]
mod tests;
