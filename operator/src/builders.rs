//! Desired objects for one TransitStream: pure functions from the resource (and the
//! operator's configuration) to Kubernetes objects, applied with server-side apply.
//!
//! Names (for a TransitStream `demo`): Deployment and Service `demo`, ConfigMap
//! `demo-config`, Secret `demo-sidecar-admin`, ServiceAccount/Role/RoleBinding `demo-sidecar`,
//! and the templated dump claim `demo-dumps`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapProjection, Container, ContainerPort,
    DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, GRPCAction, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodReadinessGate,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServiceAccountTokenProjection, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};
use stallwatch_core::condition::CONDITION_TYPE;
use stallwatch_crds::{ProcessDump, TransitStream, labels, selector_labels, to_std};

/// Ports, fixed by docs/architecture.md.
pub const GRPC_PORT: i32 = 50051;
pub const BROADCASTER_HTTP_PORT: i32 = 9090;
pub const SIDECAR_HTTP_PORT: i32 = 8080;
pub const SIDECAR_ADMIN_PORT: i32 = 8081;
/// gRPC health service that is SERVING while every stream makes progress.
pub const GRPC_HEALTH_SERVICE: &str = "stallwatch.transit.v1.TransitBroadcaster";
/// Key of the admin token in the Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the sidecar reads the token.
pub const TOKEN_DIR: &str = "/var/run/stallwatch/admin";
/// Where bundles go inside the sidecar.
pub const DUMP_DIR: &str = "/dumps";
/// Where a `file` source's claim is mounted in the broadcaster.
pub const RECORDINGS_DIR: &str = "/recordings";
/// Pod template annotation carrying a hash of the configuration, so a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "stallwatch.io/config-hash";
/// The annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The user both containers run as (the image's non-root user).
pub const RUN_AS: i64 = 65532;

pub fn config_map_name(ts: &str) -> String {
    format!("{ts}-config")
}
pub fn secret_name(ts: &str) -> String {
    format!("{ts}-sidecar-admin")
}
pub fn sidecar_account_name(ts: &str) -> String {
    format!("{ts}-sidecar")
}
pub fn dump_claim_name(ts: &str) -> String {
    format!("{ts}-dumps")
}

/// What the builders need besides the resource.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The image used when the TransitStream names none.
    pub default_image: String,
}

/// Everything applied for one TransitStream, in apply order.
#[derive(Debug, Clone)]
pub struct Desired {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    pub claim: Option<PersistentVolumeClaim>,
    pub service: Service,
    pub deployment: Deployment,
}

/// Build every object (the Secret is separate: its token is generated once and kept).
pub fn desired(ts: &TransitStream, ctx: &BuildContext) -> Desired {
    let config_map = config_map(ts);
    Desired {
        service_account: service_account(ts),
        role: role(ts),
        role_binding: role_binding(ts),
        claim: dump_claim(ts),
        service: service(ts),
        deployment: deployment(ts, ctx, &config_hash(&config_map)),
        config_map,
    }
}

fn name_of(ts: &TransitStream) -> String {
    ts.metadata.name.clone().unwrap_or_default()
}

/// Metadata for an owned object: namespace, labels and the controller owner reference.
fn meta(ts: &TransitStream, name: String) -> ObjectMeta {
    let mut labels = selector_labels(&name_of(ts));
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        labels::MANAGED_BY.into(),
    );
    ObjectMeta {
        name: Some(name),
        namespace: ts.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: owner_ref(ts).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_ref(ts: &TransitStream) -> Option<OwnerReference> {
    ts.controller_owner_ref(&())
}

pub fn service_account(ts: &TransitStream) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(ts, sidecar_account_name(&name_of(ts))),
        // The token is projected into the sidecar container only.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The sidecar may patch pod status (its condition) and publish Events; nothing else.
/// `patch` on events: kube's Recorder updates a repeated Event's series instead of creating
/// a new one.
pub fn role(ts: &TransitStream) -> Role {
    Role {
        metadata: meta(ts, sidecar_account_name(&name_of(ts))),
        rules: Some(
            crate::rbac::SIDECAR
                .iter()
                .map(|r| r.policy_rule())
                .collect(),
        ),
    }
}

pub fn role_binding(ts: &TransitStream) -> RoleBinding {
    let account = sidecar_account_name(&name_of(ts));
    RoleBinding {
        metadata: meta(ts, account.clone()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: account.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account,
            namespace: ts.metadata.namespace.clone(),
            ..Subject::default()
        }]),
    }
}

/// The Secret holding the sidecar's admin token. Created once with a fresh token; the
/// operator reads the token back from the cluster afterwards and never rotates it by itself.
pub fn admin_secret(ts: &TransitStream, token: &str) -> Secret {
    Secret {
        metadata: meta(ts, secret_name(&name_of(ts))),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A new random admin token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn go_duration(d: &kube::core::Duration) -> String {
    humantime::format_duration(to_std(d))
        .to_string()
        .replace(' ', "")
}

/// Environment of both containers (each binary reads its own prefix). Secrets are not here.
pub fn config_map(ts: &TransitStream) -> ConfigMap {
    let spec = &ts.spec;
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        data.insert(k.to_string(), v);
    };
    if let Some(source) = source_url(ts) {
        put("BROADCASTER_SOURCE", source);
    }
    put("BROADCASTER_STREAMS", spec.stream_args().join(" "));
    put(
        "BROADCASTER_CHANNEL_CAPACITY",
        spec.channel_capacity.to_string(),
    );
    put(
        "BROADCASTER_REPORT_INTERVAL",
        go_duration(&spec.report_interval),
    );
    put("BROADCASTER_STUCK_AFTER", go_duration(&spec.stall_after));
    if let Some(h) = &spec.source.http {
        put("BROADCASTER_POLL_INTERVAL", go_duration(&h.poll_interval));
    }
    if let Some(f) = &spec.source.file {
        put("BROADCASTER_REPLAY_RATE", f.replay_rate.to_string());
        put("BROADCASTER_REPLAY_LOOP", f.replay_loop.to_string());
    }
    put("SIDECAR_STALL_AFTER", go_duration(&spec.stall_after));
    // Reports are late only after several intervals; never sooner than stallAfter.
    put("SIDECAR_REPORT_TIMEOUT", go_duration(&spec.stall_after));
    put("SIDECAR_DUMP_DIR", DUMP_DIR.into());
    put("SIDECAR_MAX_BUNDLES", spec.dumps.max_bundles.to_string());
    put("SIDECAR_MAX_BYTES", spec.dumps.max_bytes.to_string());
    put(
        "SIDECAR_PROCESS_DUMP",
        spec.dumps.process_dump.cli_value().into(),
    );
    put(
        "SIDECAR_ADMIN_TOKEN_FILE",
        format!("{TOKEN_DIR}/{TOKEN_KEY}"),
    );
    put("LOG_FORMAT", "json".into());
    ConfigMap {
        metadata: meta(ts, config_map_name(&name_of(ts))),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The source URL when it is not a Secret (those go to the container env by reference).
fn source_url(ts: &TransitStream) -> Option<String> {
    let s = &ts.spec.source;
    if let Some(syn) = &s.synthetic {
        return Some(format!(
            "synthetic://?vehicles={}&routes={}&rate={}&seed={}",
            syn.vehicles, syn.routes, syn.rate, syn.seed
        ));
    }
    if let Some(n) = &s.nats {
        return n.url.clone();
    }
    if let Some(h) = &s.http {
        return h.url.clone();
    }
    if let Some(f) = &s.file {
        return Some(format!("file://{RECORDINGS_DIR}/{}", f.path));
    }
    None
}

/// The Secret key holding the source URL, if the source is configured that way.
fn source_secret(ts: &TransitStream) -> Option<&stallwatch_crds::SecretKeyRef> {
    let s = &ts.spec.source;
    s.nats
        .as_ref()
        .and_then(|n| n.url_secret_ref.as_ref())
        .or(s.http.as_ref().and_then(|h| h.url_secret_ref.as_ref()))
}

/// A stable hash of the ConfigMap's data (and the secret reference), put on the pod template
/// so a configuration change rolls the pods.
pub fn config_hash(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn dump_claim(ts: &TransitStream) -> Option<PersistentVolumeClaim> {
    let template = ts.spec.dumps.volume.as_ref()?.template.as_ref()?;
    Some(PersistentVolumeClaim {
        metadata: meta(ts, dump_claim_name(&name_of(ts))),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![template.access_mode.as_str().into()]),
            storage_class_name: template.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(template.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

pub fn service(ts: &TransitStream) -> Service {
    let port = |name: &str, port: i32, app: Option<&str>| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        app_protocol: app.map(Into::into),
        ..ServicePort::default()
    };
    Service {
        metadata: meta(ts, name_of(ts)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&name_of(ts))),
            ports: Some(vec![
                port("grpc", GRPC_PORT, Some("grpc")),
                port("metrics", BROADCASTER_HTTP_PORT, Some("http")),
                port("sidecar-http", SIDECAR_HTTP_PORT, Some("http")),
            ]),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn restricted(add_ptrace: bool) -> SecurityContext {
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

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
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

fn named_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
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

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str, limit: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(limit.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn default_sidecar_resources() -> ResourceRequirements {
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

/// The service account token, projected into the sidecar only (the broadcaster needs no API
/// access).
fn api_access_volume() -> Volume {
    Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o444),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3607),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..KeyToPath::default()
                        }]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..ObjectFieldSelector::default()
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

pub fn deployment(ts: &TransitStream, ctx: &BuildContext, config_hash: &str) -> Deployment {
    let name = name_of(ts);
    let spec = &ts.spec;
    let process_dumps = spec.dumps.process_dump != ProcessDump::None;
    let image = spec
        .image
        .clone()
        .unwrap_or_else(|| ctx.default_image.clone());
    let pull = spec.image_pull_policy.map(|p| p.as_str().to_string());
    let env_from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: config_map_name(&name),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }];

    let mut broadcaster_env = Vec::new();
    if let Some(secret) = source_secret(ts) {
        broadcaster_env.push(EnvVar {
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
        });
    }
    let mut broadcaster_mounts = vec![mount("tmp", "/tmp", false)];
    let mut volumes = vec![
        empty_dir("tmp", "64Mi"),
        Volume {
            name: "admin-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(&name)),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        api_access_volume(),
    ];
    if let Some(f) = &spec.source.file {
        broadcaster_mounts.push(mount("recordings", RECORDINGS_DIR, true));
        volumes.push(Volume {
            name: "recordings".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: f.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    let dump_claim = spec.dumps.volume.as_ref().map(|v| {
        v.existing_claim
            .clone()
            .unwrap_or_else(|| dump_claim_name(&name))
    });
    volumes.push(match dump_claim {
        Some(claim) => Volume {
            name: "dumps".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        None => empty_dir("dumps", "1Gi"),
    });

    let broadcaster = Container {
        name: "broadcaster".into(),
        image: Some(image.clone()),
        image_pull_policy: pull.clone(),
        command: Some(vec!["/usr/local/bin/transit-broadcaster".into()]),
        args: Some(vec!["serve".into()]),
        env_from: Some(env_from.clone()),
        env: (!broadcaster_env.is_empty()).then_some(broadcaster_env),
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
        resources: spec.resources.clone(),
        security_context: Some(restricted(false)),
        volume_mounts: Some(broadcaster_mounts),
        ..Container::default()
    };

    let sidecar = Container {
        name: "sidecar".into(),
        image: Some(image),
        image_pull_policy: pull,
        command: Some(vec!["/usr/local/bin/transit-sidecar".into()]),
        args: Some(vec!["run".into()]),
        env_from: Some(env_from),
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
            spec.sidecar_resources
                .clone()
                .unwrap_or_else(default_sidecar_resources),
        ),
        security_context: Some(restricted(process_dumps)),
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
    };

    let selector = selector_labels(&name);
    let mut pod_labels = selector.clone();
    pod_labels.insert(
        "app.kubernetes.io/managed-by".into(),
        labels::MANAGED_BY.into(),
    );
    Deployment {
        metadata: meta(ts, name.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
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
                spec: Some(PodSpec {
                    service_account_name: Some(sidecar_account_name(&name)),
                    automount_service_account_token: Some(false),
                    share_process_namespace: process_dumps.then_some(true),
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
                    containers: vec![broadcaster, sidecar],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stallwatch_crds::{
        DumpVolume, DumpVolumeTemplate, SecretKeyRef, Source, SyntheticSource, TransitStreamSpec,
        UrlSource,
    };

    fn ts() -> TransitStream {
        let mut ts = TransitStream::new(
            "demo",
            TransitStreamSpec::with_source(Source {
                synthetic: Some(SyntheticSource::default()),
                ..Source::default()
            }),
        );
        ts.metadata.namespace = Some("transit".into());
        ts.metadata.uid = Some("uid-1".into());
        ts
    }

    fn ctx() -> BuildContext {
        BuildContext {
            default_image: "ghcr.io/example/stallwatch:0.1.0".into(),
        }
    }

    fn pod_spec(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn container<'a>(d: &'a Deployment, name: &str) -> &'a Container {
        pod_spec(d)
            .containers
            .iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    #[test]
    fn every_object_is_owned_and_labelled() {
        let t = ts();
        let d = desired(&t, &ctx());
        let metas = [
            &d.service_account.metadata,
            &d.role.metadata,
            &d.role_binding.metadata,
            &d.config_map.metadata,
            &d.service.metadata,
            &d.deployment.metadata,
            &admin_secret(&t, "x").metadata,
        ];
        for m in metas {
            let owner = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!(owner.kind, "TransitStream");
            assert_eq!(owner.uid, "uid-1");
            assert_eq!(owner.controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("transit"));
            assert_eq!(m.labels.as_ref().unwrap()[labels::TRANSITSTREAM], "demo");
        }
        assert!(d.claim.is_none());
    }

    #[test]
    fn the_deployment_runs_both_binaries_from_one_image_with_the_gate() {
        let d = deployment(&ts(), &ctx(), "abc");
        let p = pod_spec(&d);
        assert_eq!(
            p.readiness_gates.as_ref().unwrap()[0].condition_type,
            "stallwatch.io/DispatchHealthy"
        );
        let b = container(&d, "broadcaster");
        let s = container(&d, "sidecar");
        assert_eq!(b.image, s.image);
        assert_eq!(b.image.as_deref(), Some("ghcr.io/example/stallwatch:0.1.0"));
        assert_eq!(b.args.as_ref().unwrap(), &["serve"]);
        assert_eq!(s.args.as_ref().unwrap(), &["run"]);
        let ports: Vec<i32> = b
            .ports
            .iter()
            .flatten()
            .chain(s.ports.iter().flatten())
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, [50051, 9090, 8080, 8081]);
        assert_eq!(
            b.readiness_probe
                .as_ref()
                .unwrap()
                .grpc
                .as_ref()
                .unwrap()
                .service
                .as_deref(),
            Some(GRPC_HEALTH_SERVICE)
        );
        let env: Vec<&str> = s.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME"]);
        assert_eq!(
            d.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[CONFIG_HASH_ANNOTATION],
            "abc"
        );
    }

    #[test]
    fn security_is_restricted_without_process_dumps() {
        let d = deployment(&ts(), &ctx(), "h");
        let p = pod_spec(&d);
        assert_eq!(p.share_process_namespace, None);
        assert_eq!(p.automount_service_account_token, Some(false));
        let psc = p.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        for c in &p.containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            let caps = sc.capabilities.as_ref().unwrap();
            assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
            assert_eq!(caps.add, None, "{}", c.name);
        }
        // The API token reaches the sidecar only.
        let b = container(&d, "broadcaster");
        assert!(
            b.volume_mounts
                .iter()
                .flatten()
                .all(|m| m.name != "kube-api-access" && m.name != "admin-token")
        );
    }

    #[test]
    fn process_dumps_share_the_pid_namespace_and_ptrace_the_sidecar_only() {
        let mut t = ts();
        t.spec.dumps.process_dump = ProcessDump::Minidump;
        let d = deployment(&t, &ctx(), "h");
        assert_eq!(pod_spec(&d).share_process_namespace, Some(true));
        let caps = |name| {
            container(&d, name)
                .security_context
                .as_ref()
                .unwrap()
                .capabilities
                .clone()
                .unwrap()
                .add
        };
        assert_eq!(caps("sidecar"), Some(vec!["SYS_PTRACE".to_string()]));
        assert_eq!(caps("broadcaster"), None);
        // An added capability is only effective for uid 0 (no ambient capabilities).
        let sc = |name| container(&d, name).security_context.clone().unwrap();
        assert_eq!(sc("sidecar").run_as_user, Some(0));
        assert_eq!(sc("sidecar").run_as_non_root, Some(false));
        assert_eq!(sc("sidecar").allow_privilege_escalation, Some(false));
        assert_eq!(sc("broadcaster").run_as_non_root, Some(true));
    }

    #[test]
    fn config_carries_the_spec_and_no_secrets() {
        let mut t = ts();
        t.spec.source = Source {
            nats: Some(UrlSource {
                url: None,
                url_secret_ref: Some(SecretKeyRef {
                    name: "feed".into(),
                    key: "url".into(),
                }),
            }),
            ..Source::default()
        };
        t.spec.streams[0].routes = vec!["R1".into()];
        let cm = config_map(&t);
        let data = cm.data.as_ref().unwrap();
        assert!(!data.contains_key("BROADCASTER_SOURCE"));
        assert_eq!(data["BROADCASTER_STREAMS"], "all=routes:R1");
        assert_eq!(data["BROADCASTER_CHANNEL_CAPACITY"], "5");
        assert_eq!(data["BROADCASTER_REPORT_INTERVAL"], "250ms");
        assert_eq!(data["SIDECAR_STALL_AFTER"], "2s");
        assert_eq!(data["SIDECAR_PROCESS_DUMP"], "none");
        assert_eq!(
            data["SIDECAR_ADMIN_TOKEN_FILE"],
            "/var/run/stallwatch/admin/token"
        );
        let d = deployment(&t, &ctx(), "h");
        let src = &container(&d, "broadcaster").env.as_ref().unwrap()[0];
        assert_eq!(src.name, "BROADCASTER_SOURCE");
        let sel = src
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("feed", "url"));
    }

    #[test]
    fn synthetic_source_url() {
        let data = config_map(&ts()).data.unwrap();
        assert_eq!(
            data["BROADCASTER_SOURCE"],
            "synthetic://?vehicles=40&routes=4&rate=10&seed=1"
        );
    }

    #[test]
    fn config_changes_change_the_hash() {
        let t = ts();
        let a = config_hash(&config_map(&t));
        let mut t2 = t.clone();
        t2.spec.channel_capacity = 6;
        assert_ne!(a, config_hash(&config_map(&t2)));
        assert_eq!(a, config_hash(&config_map(&t)));
    }

    #[test]
    fn templated_dump_claim_is_created_and_mounted() {
        let mut t = ts();
        t.spec.dumps.volume = Some(DumpVolume {
            existing_claim: None,
            template: Some(DumpVolumeTemplate {
                size: "5Gi".into(),
                storage_class_name: Some("fast".into()),
                ..DumpVolumeTemplate::default()
            }),
        });
        let claim = dump_claim(&t).unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some("demo-dumps"));
        let spec = claim.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        let d = deployment(&t, &ctx(), "h");
        let v = pod_spec(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "dumps")
            .unwrap();
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "demo-dumps"
        );
        // An existing claim is used as is and nothing is created.
        t.spec.dumps.volume = Some(DumpVolume {
            existing_claim: Some("shared".into()),
            template: None,
        });
        assert!(dump_claim(&t).is_none());
        let d = deployment(&t, &ctx(), "h");
        let v = pod_spec(&d)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "dumps")
            .unwrap();
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "shared"
        );
    }

    #[test]
    fn the_sidecar_role_is_minimal() {
        let r = role(&ts());
        let rules = r.rules.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["pods/status".to_string()][..])
        );
        assert_eq!(rules[0].verbs, ["patch"]);
        assert_eq!(
            rules[1].api_groups.as_deref(),
            Some(&["events.k8s.io".to_string()][..])
        );
        for rule in &rules {
            assert!(
                !rule
                    .verbs
                    .iter()
                    .any(|v| v == "*" || v == "get" || v == "delete")
            );
        }
        let b = role_binding(&ts());
        assert_eq!(b.subjects.unwrap()[0].name, "demo-sidecar");
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        let s = admin_secret(&ts(), &a);
        assert_eq!(s.data.unwrap()[TOKEN_KEY].0, a.as_bytes());
    }

    #[test]
    fn image_and_replicas_follow_the_spec() {
        let mut t = ts();
        t.spec.image = Some("registry.local/stallwatch:dev".into());
        t.spec.replicas = 3;
        t.spec.image_pull_policy = Some(stallwatch_crds::ImagePullPolicy::Never);
        let d = deployment(&t, &ctx(), "h");
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
        let b = container(&d, "broadcaster");
        assert_eq!(b.image.as_deref(), Some("registry.local/stallwatch:dev"));
        assert_eq!(b.image_pull_policy.as_deref(), Some("Never"));
    }
}
