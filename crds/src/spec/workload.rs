//! `spec.workloadRef`: an existing Deployment or StatefulSet to protect instead of deploying a
//! broadcaster.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits::default_workload_api_version;

/// An existing workload a TransitStream protects (bring your own broadcaster). Same namespace
/// only: a TransitStream never reaches into another namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `apps/v1`.
    #[serde(default = "default_workload_api_version")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == 'apps/v1'").message("workloadRef.apiVersion: only apps/v1 (a Deployment or StatefulSet) can be referenced"))]
    pub api_version: String,
    /// `Deployment` or `StatefulSet`.
    pub kind: WorkloadKind,
    /// The workload's name, in the TransitStream's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Refused when set: references are same-namespace only. (Present in the schema so the
    /// API server says so instead of dropping the field silently.)
    // A rule on the field itself runs only when the field is present, so `false` refuses any
    // value; a rule on the struct would have to spell the CEL keyword `self.__namespace__`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("false").message(WORKLOAD_SAME_NAMESPACE))]
    pub namespace: Option<String>,
}

/// The kinds a `workloadRef` may name.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    /// The kind as written in `workloadRef.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
        }
    }
}

/// CEL message: a `workloadRef` with a namespace.
pub const WORKLOAD_SAME_NAMESPACE: &str = "workloadRef: references are same-namespace only; remove workloadRef.namespace and create the TransitStream in the workload's namespace";
