//! Volumes and mounts: scratch space, the admin token, the sidecar's projected API credentials,
//! a `file` source's recordings, and the dump volume (a claim, templated or existing, else a
//! bounded emptyDir).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, ProjectedVolumeSource, SecretVolumeSource,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use stallwatch_crds::TransitStream;

use super::{TOKEN_FILE_MODE, dump_claim_name, file_source, meta, name_of, secret_name};

/// Scratch space, the admin token, the sidecar's API credentials, a `file` source's
/// recordings and the dump volume (a claim when configured, else a bounded emptyDir).
pub(super) fn volumes(ts: &TransitStream) -> Vec<Volume> {
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

/// The dump claim templated from `spec.dumps.volume.template` (none for an existing claim or an
/// emptyDir).
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
