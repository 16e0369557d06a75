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
/// Mode of the admin token file. World-readable on purpose: the kubelet writes Secret files
/// as root, group root unless the pod sets `fsGroup`, and a workload the webhook injects into
/// need not set one, so 0440 left the sidecar (uid 65532, or uid 0 without DAC_OVERRIDE for
/// process dumps) unable to read it. The volume is mounted in the sidecar container only, so
/// "others" are the processes that see the sidecar's mount namespace: the sidecar itself (the
/// same reasoning as the kubelet's 0644 ServiceAccount token).
pub const TOKEN_FILE_MODE: i32 = 0o444;
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

pub(crate) fn name_of(ts: &TransitStream) -> String {
    ts.metadata.name.clone().unwrap_or_default()
}

/// Metadata for an owned object: namespace, labels and the controller owner reference.
pub(crate) fn meta(ts: &TransitStream, name: String) -> ObjectMeta {
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

/// Zero-code mode (`spec.detection.metrics`): the sidecar's `SIDECAR_METRICS_*` environment.
/// The app serves its metrics in the same pod, so the sidecar scrapes loopback.
fn zero_code_env(m: &stallwatch_crds::MetricsDetection) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (
            "SIDECAR_METRICS_URL",
            format!("http://127.0.0.1:{}{}", m.port, m.path),
        ),
        ("SIDECAR_METRICS_INTERVAL", go_duration(&m.interval)),
        ("SIDECAR_METRICS_DEPTH", m.depth.clone()),
        ("SIDECAR_METRICS_DEQUEUED", m.dequeued.clone()),
        ("SIDECAR_METRICS_STREAM_LABEL", m.stream_label.clone()),
    ];
    let optional = [
        ("SIDECAR_METRICS_CAPACITY", m.capacity.clone()),
        (
            "SIDECAR_METRICS_CAPACITY_VALUE",
            m.capacity_value.map(|v| v.to_string()),
        ),
        ("SIDECAR_METRICS_ENQUEUED", m.enqueued.clone()),
        ("SIDECAR_METRICS_DROPPED", m.dropped.clone()),
        ("SIDECAR_METRICS_CONSUMER_UP", m.consumer_up.clone()),
    ];
    env.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    env
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
    let source = spec.source.clone().unwrap_or_default();
    if let Some(h) = &source.http {
        put("BROADCASTER_POLL_INTERVAL", go_duration(&h.poll_interval));
    }
    if let Some(f) = &source.file {
        put("BROADCASTER_REPLAY_RATE", f.replay_rate.to_string());
        put("BROADCASTER_REPLAY_LOOP", f.replay_loop.to_string());
    }
    for (k, v) in sidecar_settings(ts) {
        put(k, v);
    }
    if spec
        .detection
        .as_ref()
        .and_then(|d| d.metrics.as_ref())
        .is_some()
    {
        // The sidecar refuses reports in zero-code mode: do not send any.
        put("BROADCASTER_REPORT_URL", String::new());
    }
    ConfigMap {
        metadata: meta(ts, config_map_name(&name_of(ts))),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The sidecar's own settings (`SIDECAR_*`, `LOG_FORMAT`): in the ConfigMap for a deployed
/// broadcaster, as plain env on an injected sidecar.
pub fn sidecar_settings(ts: &TransitStream) -> Vec<(&'static str, String)> {
    let spec = &ts.spec;
    let mut settings = vec![
        ("SIDECAR_STALL_AFTER", go_duration(&spec.stall_after)),
        // Reports are late only after several intervals; never sooner than stallAfter.
        ("SIDECAR_REPORT_TIMEOUT", go_duration(&spec.stall_after)),
        ("SIDECAR_DUMP_DIR", DUMP_DIR.into()),
        ("SIDECAR_MAX_BUNDLES", spec.dumps.max_bundles.to_string()),
        ("SIDECAR_MAX_BYTES", spec.dumps.max_bytes.to_string()),
        (
            "SIDECAR_PROCESS_DUMP",
            spec.dumps.process_dump.cli_value().into(),
        ),
        (
            "SIDECAR_ADMIN_TOKEN_FILE",
            format!("{TOKEN_DIR}/{TOKEN_KEY}"),
        ),
        ("LOG_FORMAT", "json".into()),
    ];
    if let Some(m) = spec.detection.as_ref().and_then(|d| d.metrics.as_ref()) {
        settings.extend(zero_code_env(m));
    }
    settings
}

/// The source URL when it is not a Secret (those go to the container env by reference).
fn source_url(ts: &TransitStream) -> Option<String> {
    let s = ts.spec.source.as_ref()?;
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

fn file_source(ts: &TransitStream) -> Option<&stallwatch_crds::FileSource> {
    ts.spec.source.as_ref()?.file.as_ref()
}

/// The Secret key holding the source URL, if the source is configured that way.
fn source_secret(ts: &TransitStream) -> Option<&stallwatch_crds::SecretKeyRef> {
    let s = ts.spec.source.as_ref()?;
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

pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn empty_dir(name: &str, limit: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(limit.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
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

/// The service account token, projected into the sidecar only (the broadcaster needs no API
/// access).
pub(crate) fn api_access_volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
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

pub(crate) fn process_dumps(ts: &TransitStream) -> bool {
    ts.spec.dumps.process_dump != ProcessDump::None
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

pub(crate) fn pull_policy(ts: &TransitStream) -> Option<String> {
    ts.spec.image_pull_policy.map(|p| p.as_str().to_string())
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

fn broadcaster_container(ts: &TransitStream, image: &str) -> Container {
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

fn sidecar_container(ts: &TransitStream, image: &str) -> Container {
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

/// Scratch space, the admin token, the sidecar's API credentials, a `file` source's
/// recordings and the dump volume (a claim when configured, else a bounded emptyDir).
fn volumes(ts: &TransitStream) -> Vec<Volume> {
    let name = name_of(ts);
    let mut volumes = vec![
        empty_dir("tmp", "64Mi"),
        Volume {
            name: "admin-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(&name)),
                default_mode: Some(TOKEN_FILE_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        api_access_volume("kube-api-access"),
    ];
    if let Some(f) = file_source(ts) {
        volumes.push(Volume {
            name: "recordings".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: f.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    let dump_claim = ts.spec.dumps.volume.as_ref().map(|v| {
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
    volumes
}

#[cfg(test)]
mod tests;
