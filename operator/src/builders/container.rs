//! The two containers (broadcaster, sidecar) and their parts: env, ports, probes, the
//! restricted security context, default resources. The webhook builds an injected sidecar from
//! the same parts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, GRPCAction, HTTPGetAction, ObjectFieldSelector, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use stallwatch_crds::TransitStream;

use super::volume::mount;
use super::{
    BROADCASTER_HTTP_PORT, DUMP_DIR, GRPC_HEALTH_SERVICE, GRPC_PORT, RECORDINGS_DIR, RUN_AS,
    SIDECAR_ADMIN_PORT, SIDECAR_HTTP_PORT, TOKEN_DIR, config_map_name, file_source, name_of,
    process_dumps, source_secret,
};

pub(super) fn broadcaster_container(ts: &TransitStream, image: &str) -> Container {
    let mut mounts = vec![mount("tmp", "/tmp", false)];
    if file_source(ts).is_some() {
        mounts.push(mount("recordings", RECORDINGS_DIR, true));
    }
    Container {
        name: "broadcaster".into(),
        image: Some(image.to_string()),
        image_pull_policy: pull_policy(ts),
        command: Some(vec!["/usr/local/bin/transit-broadcaster".into()]),
        args: Some(vec!["serve".into()]),
        env_from: Some(config_env(ts)),
        env: broadcaster_env(ts),
        ports: Some(vec![
            named_port("grpc", GRPC_PORT),
            named_port("metrics", BROADCASTER_HTTP_PORT),
        ]),
        liveness_probe: Some(http_probe("/healthz", "metrics", 10, 3)),
        readiness_probe: Some(Probe {
            grpc: Some(GRPCAction {
                port: GRPC_PORT,
                service: Some(GRPC_HEALTH_SERVICE.into()),
            }),
            period_seconds: Some(5),
            failure_threshold: Some(2),
            timeout_seconds: Some(2),
            ..Probe::default()
        }),
        startup_probe: Some(http_probe("/healthz", "metrics", 1, 60)),
        resources: ts.spec.resources.clone(),
        security_context: Some(restricted(false)),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

pub(super) fn sidecar_container(ts: &TransitStream, image: &str) -> Container {
    Container {
        name: "sidecar".into(),
        image: Some(image.to_string()),
        image_pull_policy: pull_policy(ts),
        command: Some(vec!["/usr/local/bin/transit-sidecar".into()]),
        args: Some(vec!["run".into()]),
        env_from: Some(config_env(ts)),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_UID", "metadata.uid"),
            field_env("NODE_NAME", "spec.nodeName"),
        ]),
        ports: Some(vec![
            named_port("sidecar-http", SIDECAR_HTTP_PORT),
            named_port("sidecar-admin", SIDECAR_ADMIN_PORT),
        ]),
        liveness_probe: Some(http_probe("/healthz", "sidecar-http", 10, 3)),
        // Not /readyz: that one is 503 while a stream is stalled, which the readiness gate
        // already reports; the sidecar must stay reachable to be remediated.
        readiness_probe: Some(http_probe("/healthz", "sidecar-http", 5, 2)),
        resources: Some(
            ts.spec
                .sidecar_resources
                .clone()
                .unwrap_or_else(default_sidecar_resources),
        ),
        security_context: Some(restricted(process_dumps(ts))),
        volume_mounts: Some(vec![
            mount("tmp", "/tmp", false),
            mount("dumps", DUMP_DIR, false),
            mount("admin-token", TOKEN_DIR, true),
            mount(
                "kube-api-access",
                "/var/run/secrets/kubernetes.io/serviceaccount",
                true,
            ),
        ]),
        ..Container::default()
    }
}

/// Both containers read the ConfigMap as their environment.
fn config_env(ts: &TransitStream) -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: config_map_name(&name_of(ts)),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }]
}

/// The broadcaster's own variables: a source URL held in a Secret overrides the ConfigMap's.
fn broadcaster_env(ts: &TransitStream) -> Option<Vec<EnvVar>> {
    let secret = source_secret(ts)?;
    Some(vec![EnvVar {
        name: "BROADCASTER_SOURCE".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }])
}

pub(crate) fn pull_policy(ts: &TransitStream) -> Option<String> {
    ts.spec.image_pull_policy.map(|p| p.as_str().to_string())
}

pub(crate) fn restricted(add_ptrace: bool) -> SecurityContext {
    // Kubernetes sets no ambient capabilities, so a capability added to a non-root container
    // never becomes effective. A sidecar that must ptrace the broadcaster therefore runs as
    // uid 0, with every capability but SYS_PTRACE dropped and no privilege escalation: the
    // documented exception to the restricted profile that process dumps need.
    let run_as_user = if add_ptrace { 0 } else { RUN_AS };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(!add_ptrace),
        run_as_user: Some(run_as_user),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: add_ptrace.then(|| vec!["SYS_PTRACE".into()]),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

pub(crate) fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

pub(crate) fn named_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

pub(crate) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(crate) fn default_sidecar_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("10m".into())),
            ("memory".to_string(), Quantity("32Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("128Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}
