//! `spec.dumps`: where dump bundles are kept (volume, retention) and what they hold.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits::{MIN_DUMP_BYTES, default_max_bundles, default_max_bytes};

/// Dump bundles: where they are kept and what they hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.processDump != 'Full' || has(self.volume)").message("dumps: processDump Full needs a persistent volume (dumps.volume)"))]
#[serde(rename_all = "camelCase")]
pub struct DumpsSpec {
    /// The volume bundles are written to. Default: an `emptyDir` (bundles die with the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<DumpVolume>,
    /// Oldest bundles are deleted beyond this count.
    #[serde(default = "default_max_bundles")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_bundles: u32,
    /// Oldest bundles are deleted beyond this many bytes.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = MIN_DUMP_BYTES))]
    pub max_bytes: u64,
    /// Process dump in each bundle: `None`, `Minidump` or `Full`. Anything but `None` shares
    /// the pod's process namespace and gives the sidecar `SYS_PTRACE`; dumps hold memory
    /// contents, so treat the volume as sensitive.
    #[serde(default)]
    pub process_dump: ProcessDump,
}

impl Default for DumpsSpec {
    fn default() -> Self {
        Self {
            volume: None,
            max_bundles: default_max_bundles(),
            max_bytes: default_max_bytes(),
            process_dump: ProcessDump::default(),
        }
    }
}

/// The dump volume: an existing claim or a claim the operator creates and owns.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.existingClaim) != has(self.template)").message("dumps.volume: set exactly one of existingClaim or template"))]
#[serde(rename_all = "camelCase")]
pub struct DumpVolume {
    /// Name of an existing PersistentVolumeClaim in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub existing_claim: Option<String>,
    /// A claim the operator creates (`<name>-dumps`), owned by the TransitStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<DumpVolumeTemplate>,
}

/// The templated dump claim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DumpVolumeTemplate {
    /// Requested size, a Kubernetes quantity such as `5Gi`.
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    )]
    pub size: String,
    /// Storage class; default: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Access mode of the claim. A Deployment with several replicas needs `ReadWriteMany`.
    #[serde(default)]
    pub access_mode: AccessMode,
}

/// PersistentVolumeClaim access mode.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AccessMode {
    #[default]
    ReadWriteOnce,
    ReadWriteMany,
    ReadWriteOncePod,
}

impl AccessMode {
    /// The access mode as Kubernetes spells it (`accessModes`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadWriteMany => "ReadWriteMany",
            Self::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }
}

/// Process dump kind in a bundle.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProcessDump {
    #[default]
    None,
    Minidump,
    Full,
}

impl ProcessDump {
    /// The sidecar's `--process-dump` value.
    pub fn cli_value(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minidump => "minidump",
            Self::Full => "full",
        }
    }
}
