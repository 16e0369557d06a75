//! The Deployment: the broadcaster and its sidecar in one pod, with pod-level settings (the
//! sidecar's ServiceAccount, the readiness gate, the restricted security context, a shared
//! process namespace for process dumps only).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    PodReadinessGate, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use stallwatch_core::condition::CONDITION_TYPE;
use stallwatch_crds::{TransitStream, labels, selector_labels};

use super::container::{broadcaster_container, sidecar_container};
use super::volume::volumes;
use super::{
    BuildContext, CONFIG_HASH_ANNOTATION, RUN_AS, meta, name_of, process_dumps,
    sidecar_account_name,
};

/// The broadcaster and its sidecar in one pod (see `pod_spec`), rolled when `config_hash`
/// changes.
pub fn deployment(ts: &TransitStream, ctx: &BuildContext, config_hash: &str) -> Deployment {
    let name = name_of(ts);
    let selector = selector_labels(&name);
    let mut pod_labels = selector.clone();
    pod_labels.insert(
        "app.kubernetes.io/managed-by".into(),
        labels::MANAGED_BY.into(),
    );
    Deployment {
        metadata: meta(ts, name),
        spec: Some(DeploymentSpec {
            replicas: Some(ts.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(ts, ctx)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Pod-level settings: the sidecar's ServiceAccount, the readiness gate, the restricted
/// security context and (for process dumps only) a shared process namespace.
fn pod_spec(ts: &TransitStream, ctx: &BuildContext) -> PodSpec {
    let image = ts
        .spec
        .image
        .clone()
        .unwrap_or_else(|| ctx.default_image.clone());
    PodSpec {
        service_account_name: Some(sidecar_account_name(&name_of(ts))),
        automount_service_account_token: Some(false),
        share_process_namespace: process_dumps(ts).then_some(true),
        readiness_gates: Some(vec![PodReadinessGate {
            condition_type: CONDITION_TYPE.into(),
        }]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(30),
        containers: vec![
            broadcaster_container(ts, &image),
            sidecar_container(ts, &image),
        ],
        volumes: Some(volumes(ts)),
        ..PodSpec::default()
    }
}
