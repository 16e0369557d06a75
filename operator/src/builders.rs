//! Desired objects for one TransitStream: pure functions from the resource (and the
//! operator's configuration) to Kubernetes objects, applied with server-side apply.
//!
//! Names (for a TransitStream `demo`): Deployment and Service `demo`, ConfigMap
//! `demo-config`, Secret `demo-sidecar-admin`, ServiceAccount/Role/RoleBinding `demo-sidecar`,
//! and the templated dump claim `demo-dumps`.
//!
//! One module per object or part, as stackable's operator-rs groups its builders: `pod` (the
//! Deployment and its pod spec), `container` (the two containers: env, ports, probes, security
//! context, resources), `volume` (volumes, mounts, the dump claim), `config` (the ConfigMap,
//! the sidecar's settings, the config hash), `access` (the sidecar's ServiceAccount, Role,
//! RoleBinding and admin-token Secret). This file: names, ports and paths, the owned objects'
//! metadata, the Service, and [`desired`], which builds them all.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use stallwatch_core::ports;
use stallwatch_crds::{ProcessDump, TransitStream, labels, selector_labels};

pub use self::access::{admin_secret, new_token, role, role_binding, service_account};
pub use self::config::{config_hash, config_map, sidecar_settings};
pub(crate) use self::container::{
    default_sidecar_resources, field_env, http_probe, named_port, pull_policy, restricted,
};
pub use self::pod::deployment;
pub use self::volume::dump_claim;
pub(crate) use self::volume::{api_access_volume, empty_dir, mount};

// The pods' ports, as k8s-openapi types them; the numbers live in `stallwatch_core::ports`,
// where the binaries take their defaults from.
/// The broadcaster's gRPC port.
pub const GRPC_PORT: i32 = ports::BROADCASTER_GRPC as i32;
/// The broadcaster's HTTP port (metrics, health).
pub const BROADCASTER_HTTP_PORT: i32 = ports::BROADCASTER_HTTP as i32;
/// The sidecar's HTTP port (metrics, health).
pub const SIDECAR_HTTP_PORT: i32 = ports::SIDECAR_HTTP as i32;
/// The sidecar's admin API port (dumps, soft restarts; bearer token).
pub const SIDECAR_ADMIN_PORT: i32 = ports::SIDECAR_ADMIN as i32;
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

/// The ConfigMap of TransitStream `ts`.
pub fn config_map_name(ts: &str) -> String {
    format!("{ts}-config")
}
/// The admin-token Secret of TransitStream `ts`.
pub fn secret_name(ts: &str) -> String {
    format!("{ts}-sidecar-admin")
}
/// The sidecar's ServiceAccount, Role and RoleBinding of TransitStream `ts`.
pub fn sidecar_account_name(ts: &str) -> String {
    format!("{ts}-sidecar")
}
/// The templated dump claim of TransitStream `ts`.
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
    /// The sidecar's ServiceAccount.
    pub service_account: ServiceAccount,
    /// The sidecar's Role.
    pub role: Role,
    /// Binds the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// Both containers' environment.
    pub config_map: ConfigMap,
    /// The templated dump claim, when the spec asks for one.
    pub claim: Option<PersistentVolumeClaim>,
    /// The broadcaster's Service.
    pub service: Service,
    /// The broadcaster and its sidecar.
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

/// The Service in front of the pods: gRPC, the broadcaster's metrics and the sidecar's HTTP port.
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

/// Whether the spec asks for process dumps (the sidecar then gets `SYS_PTRACE` and the pod a
/// shared process namespace).
pub(crate) fn process_dumps(ts: &TransitStream) -> bool {
    ts.spec.dumps.process_dump != ProcessDump::None
}

pub(crate) fn file_source(ts: &TransitStream) -> Option<&stallwatch_crds::FileSource> {
    ts.spec.source.as_ref()?.file.as_ref()
}

/// The Secret key holding the source URL, if the source is configured that way.
pub(crate) fn source_secret(ts: &TransitStream) -> Option<&stallwatch_crds::SecretKeyRef> {
    let s = ts.spec.source.as_ref()?;
    s.nats
        .as_ref()
        .and_then(|n| n.url_secret_ref.as_ref())
        .or(s.http.as_ref().and_then(|h| h.url_secret_ref.as_ref()))
}

mod access;
mod config;
mod container;
mod pod;
mod volume;

#[cfg(test)]
mod tests;
