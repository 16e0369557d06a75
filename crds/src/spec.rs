//! The `TransitStream` spec: the CRD's root type, the annotations, the CRD YAML and the label
//! helpers. No dependency on `validate`: it depends on this.
//!
//! One module per part of the spec: `source` (`spec.source`), `workload` (`spec.workloadRef`),
//! `streams` (`spec.streams`), `remediation` (`spec.remediation`), `dumps` (`spec.dumps`), and
//! `limits`, every limit and default (one definition each). They import only `limits` (which
//! imports `streams` for the default stream); this root imports them and re-exports their
//! public items.

mod dumps;
mod limits;
mod remediation;
mod source;
mod streams;
mod workload;

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::core::Duration;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use dumps::{AccessMode, DumpVolume, DumpVolumeTemplate, DumpsSpec, ProcessDump};
pub use limits::{
    GO_DURATION_PATTERN, MAX_BUDGET_PER_HOUR, MAX_REPLICAS, MAX_STREAMS, MIN_DUMP_BYTES,
    WORKLOAD_API_VERSION,
};
use limits::{
    default_channel_capacity, default_replicas, default_report_interval, default_stall_after,
    default_streams, default_workload_api_version,
};
pub use remediation::{RemediationMode, RemediationSpec, RestartTarget};
pub use source::{FileSource, HttpSource, SecretKeyRef, Source, SyntheticSource, UrlSource};
pub use streams::{BoundingBox, RouteId, StreamSpec};
pub use workload::{WORKLOAD_SAME_NAMESPACE, WorkloadKind, WorkloadRef};

use crate::status::TransitStreamStatus;

/// API group of every Stallwatch resource.
pub const GROUP: &str = "stallwatch.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Annotation on a TransitStream (or one of its pods) that turns automatic remediation off
/// while keeping detection, status and Events: `stallwatch.io/remediation: disabled`.
pub const OPT_OUT_ANNOTATION: &str = "stallwatch.io/remediation";
/// Annotation on a TransitStream asking for one drill on the named stream (or, empty, on its
/// first stream); the operator removes it once handled. Needs `spec.allowDrills`.
pub const DRILL_ANNOTATION: &str = "stallwatch.io/drill";
/// The value of [`OPT_OUT_ANNOTATION`] that opts out.
pub const OPT_OUT_VALUE: &str = "disabled";

/// A real-time GTFS-realtime broadcaster that Stallwatch deploys, watches for silent stalls
/// and remediates (dump, then restart) within safety rails.
// clippy reads the repeated `printcolumn(type_ = ...)` keys as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "stallwatch.io",
    version = "v1alpha1",
    kind = "TransitStream",
    plural = "transitstreams",
    singular = "transitstream",
    shortname = "ts",
    category = "stallwatch",
    namespaced,
    doc = "A real-time GTFS-realtime broadcaster that Stallwatch deploys, watches for silent stalls and remediates (dump, then restart) within safety rails.",
    status = "TransitStreamStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Running, Stalled, Remediating, Degraded, Paused, InvalidSpec or Pending"
    ),
    printcolumn(
        name = "Streams",
        type_ = "integer",
        json_path = ".status.streams",
        description = "Number of configured streams"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready broadcaster replicas (readiness includes the DispatchHealthy gate)"
    ),
    printcolumn(
        name = "Stalls",
        type_ = "integer",
        json_path = ".status.stalls",
        description = "Stall episodes observed"
    ),
    printcolumn(
        name = "Last Remediation",
        type_ = "date",
        json_path = ".status.lastRemediationTime",
        description = "When the last remediation started"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.source) != has(self.workloadRef)").message(SOURCE_XOR_WORKLOAD))]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::status::no_null_in_enums)]
pub struct TransitStreamSpec {
    /// Where feed messages come from, for a broadcaster Stallwatch deploys. Set exactly one
    /// source kind. Exactly one of `source` and `workloadRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// An existing `apps/v1` Deployment or StatefulSet in the same namespace to protect instead
    /// of deploying a broadcaster: its pods labelled `stallwatch.io/inject: <this name>` get the
    /// sidecar from the operator's admission webhook. Exactly one of `source` and `workloadRef`
    /// is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// The streams to broadcast, each with its own channel and dispatcher. Default: one stream
    /// `all` with no filter.
    #[serde(default = "default_streams")]
    #[schemars(length(min = 1, max = MAX_STREAMS))]
    #[x_kube(
        validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("streams: names must be unique"),
        merge_strategy = ListMerge::Map(vec!["name".into()])
    )]
    pub streams: Vec<StreamSpec>,
    /// Capacity of each stream's channel between the source and the dispatcher.
    #[serde(default = "default_channel_capacity")]
    #[schemars(range(min = 1, max = 100000))]
    pub channel_capacity: u32,
    /// Broadcaster replicas (each pod runs the broadcaster and its sidecar).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = MAX_REPLICAS))]
    pub replicas: i32,
    /// The `stallwatch` image holding the broadcaster and sidecar binaries. Default: the
    /// operator's `--default-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Image pull policy for both containers. Default: Kubernetes' own default for the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Resources of the broadcaster container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Resources of the sidecar container. Default: 10m CPU, 32Mi memory requested, 128Mi limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_resources: Option<ResourceRequirements>,
    /// How often the broadcaster reports to its sidecar (Go duration, e.g. `250ms`).
    #[serde(default = "default_report_interval")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub report_interval: Duration,
    /// How long a stream may hold waiting items without dequeuing before it is judged stalled.
    #[serde(default = "default_stall_after")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub stall_after: Duration,
    /// What to do when a stream stalls.
    #[serde(default)]
    pub remediation: RemediationSpec,
    /// Where dump bundles go and what they contain.
    #[serde(default)]
    pub dumps: DumpsSpec,
    /// Stop remediating (detection, status and Events continue). The workload keeps running.
    #[serde(default)]
    pub paused: bool,
    /// Allow drills: with `true`, the annotation `stallwatch.io/drill: <stream>` on this
    /// TransitStream makes the operator ask one pod's broadcaster to kill that stream's
    /// dispatcher once (Stallwatch's broadcaster only), so the story (verdict, dump,
    /// restart, alerts) can be rehearsed. Off by default: a drill is a real outage of one
    /// stream until it is remediated.
    #[serde(default)]
    pub allow_drills: bool,
    /// How stalls are detected: from reports (default) or, with `metrics`, from the app's own
    /// metrics (zero-code mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<crate::detection::DetectionSpec>,
}

/// CEL message: neither or both of `source` and `workloadRef`.
pub const SOURCE_XOR_WORKLOAD: &str = "spec: set exactly one of source (a broadcaster Stallwatch deploys) or workloadRef (an existing Deployment or StatefulSet whose pods get the sidecar injected)";

/// Image pull policy.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The policy as Kubernetes spells it (`imagePullPolicy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

impl TransitStreamSpec {
    /// A spec with every default and the given source (what the API server would store for
    /// `spec: {source: ...}`).
    pub fn with_source(source: Source) -> Self {
        Self {
            source: Some(source),
            workload_ref: None,
            streams: default_streams(),
            channel_capacity: default_channel_capacity(),
            replicas: default_replicas(),
            image: None,
            image_pull_policy: None,
            resources: None,
            sidecar_resources: None,
            report_interval: default_report_interval(),
            stall_after: default_stall_after(),
            remediation: RemediationSpec::default(),
            dumps: DumpsSpec::default(),
            paused: false,
            allow_drills: false,
            detection: None,
        }
    }

    /// A spec with every default that protects an existing workload instead of deploying one.
    pub fn with_workload(kind: WorkloadKind, name: &str) -> Self {
        Self {
            source: None,
            workload_ref: Some(WorkloadRef {
                api_version: default_workload_api_version(),
                kind,
                name: name.to_string(),
                namespace: None,
            }),
            ..Self::with_source(Source::default())
        }
    }

    /// The workload this TransitStream protects instead of deploying one, if any.
    pub fn workload(&self) -> Option<&WorkloadRef> {
        self.workload_ref.as_ref()
    }

    /// The broadcaster's `--stream` values, e.g. `downtown=routes:R1,R2;bbox:1,2,3,4`.
    pub fn stream_args(&self) -> Vec<String> {
        self.streams.iter().map(StreamSpec::cli_value).collect()
    }
}

/// Labels and names shared by the operator and the chart.
pub mod labels {
    /// `app.kubernetes.io/name` of every object the operator creates.
    pub const APP_NAME: &str = "stallwatch-broadcaster";
    /// `app.kubernetes.io/instance`: the TransitStream's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/managed-by` value.
    pub const MANAGED_BY: &str = "transit-operator";
    /// Label on every pod naming its TransitStream (the operator's pod watch selects on it).
    pub const TRANSITSTREAM: &str = "stallwatch.io/transitstream";
}

/// Selector labels of a TransitStream's pods.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            labels::APP_NAME.to_string(),
        ),
        (labels::INSTANCE.to_string(), name.to_string()),
        (labels::TRANSITSTREAM.to_string(), name.to_string()),
    ])
}

/// The CRD as YAML, exactly as `transit-operator crd` prints it and `crds/transitstream.yaml`
/// holds it.
pub fn crd_yaml() -> String {
    let crd = TransitStream::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `transit-operator crd` from crds/src; do not edit.\n# Regenerate with scripts/check-generated.sh --write.\n{body}"
    )
}

/// Convert a Kubernetes duration to a std one (negative durations clamp to zero; the
/// validation refuses them anyway).
pub fn to_std(d: &Duration) -> StdDuration {
    if d.is_negative() {
        StdDuration::ZERO
    } else {
        StdDuration::from(*d)
    }
}
