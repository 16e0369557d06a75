//! The `TransitStream` spec types, their limits and defaults (one definition each), the CRD
//! YAML and the label helpers. No dependency on `validate`: it depends on this.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::core::Duration;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
/// Maximum number of streams per TransitStream (bounds CEL cost and condition messages).
pub const MAX_STREAMS: usize = 64;
/// Maximum remediations per hour a TransitStream may allow.
pub const MAX_BUDGET_PER_HOUR: u32 = 10;
/// What the schema accepts as a Go duration (`250ms`, `1m30s`).
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Maximum broadcaster replicas per TransitStream.
pub const MAX_REPLICAS: i32 = 50;
/// Smallest `dumps.maxBytes` (1 MiB): one bundle must fit.
pub const MIN_DUMP_BYTES: u64 = 1 << 20;

// Limits and defaults have one definition each: the constants above and the `default_*`
// functions at the end of this file. The schema (`#[schemars]` attributes, and the `default:`
// values schemars takes from `#[serde(default = ...)]`), the `Default` impls and
// `validate` all use them, so the API server and the operator cannot disagree.

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

/// CEL message: neither or both of `source` and `workloadRef`.
pub const SOURCE_XOR_WORKLOAD: &str = "spec: set exactly one of source (a broadcaster Stallwatch deploys) or workloadRef (an existing Deployment or StatefulSet whose pods get the sidecar injected)";
/// CEL message: a `workloadRef` with a namespace.
pub const WORKLOAD_SAME_NAMESPACE: &str = "workloadRef: references are same-namespace only; remove workloadRef.namespace and create the TransitStream in the workload's namespace";
/// `workloadRef.apiVersion`'s only value.
pub const WORKLOAD_API_VERSION: &str = "apps/v1";

/// The feed source. Exactly one kind is set; credentials are only ever read from Secrets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.synthetic), has(self.nats), has(self.http), has(self.file)].filter(x, x).size() == 1").message("source: set exactly one of synthetic, nats, http or file"))]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Generated vehicles (for trials and demos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticSource>,
    /// A NATS subject carrying encoded `FeedMessage`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<UrlSource>,
    /// A GTFS-realtime HTTP(S) endpoint polled with conditional GETs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
    /// A recording on a PersistentVolumeClaim, replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
}

/// The synthetic source's knobs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSource {
    /// Number of simulated vehicles.
    #[serde(default = "default_vehicles")]
    #[schemars(range(min = 1, max = 100000))]
    pub vehicles: u32,
    /// Number of routes (`R1`..`Rn`).
    #[serde(default = "default_routes")]
    #[schemars(range(min = 1, max = 1000))]
    pub routes: u32,
    /// Feed messages per second.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 10000))]
    pub rate: u32,
    /// Random seed, for reproducible runs.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

impl Default for SyntheticSource {
    fn default() -> Self {
        Self {
            vehicles: default_vehicles(),
            routes: default_routes(),
            rate: default_rate(),
            seed: default_seed(),
        }
    }
}

/// A source addressed by a URL: either inline without credentials, or the whole URL (with
/// credentials) taken from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of url or urlSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct UrlSource {
    /// The URL, e.g. `nats://nats.feeds:4222/gtfs.vehicles`. No credentials here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("!self.contains('@')").message("url must not carry credentials; put the whole URL in a Secret and use urlSecretRef"))]
    pub url: Option<String>,
    /// A Secret key holding the whole URL, credentials included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// The HTTP(S) polling source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of url or urlSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct HttpSource {
    /// The feed URL, `http://` or `https://`. No credentials here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("!self.contains('@')").message("url must not carry credentials; put the whole URL in a Secret and use urlSecretRef"))]
    pub url: Option<String>,
    /// A Secret key holding the whole URL (e.g. with an API key in its query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Polling interval.
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub poll_interval: Duration,
}

/// Replay a recording (length-delimited `FeedMessage`s) from a PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    /// The PersistentVolumeClaim holding the recording; mounted read-only.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Path of the recording inside the claim.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')").message("path must be relative to the claim and must not contain '..'"))]
    pub path: String,
    /// Messages per second; 0 replays as fast as possible.
    #[serde(default = "default_replay_rate")]
    #[schemars(range(min = 0, max = 100000))]
    pub replay_rate: u32,
    /// Start again at the end of the recording.
    #[serde(default)]
    pub replay_loop: bool,
}

/// A key in a Secret in the TransitStream's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// One broadcast stream: a name clients subscribe to and optional filters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// The stream name, a DNS label (lowercase letters, digits, '-', at most 63).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Only vehicles on these route ids (each 1-64 of `A-Z a-z 0-9 . _ -`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub routes: Vec<RouteId>,
    /// Only vehicles inside this box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoundingBox>,
}

/// A GTFS route id as a filter: 1-64 of `A-Z a-z 0-9 . _ -` (no `,` or `;`, which separate
/// filters on the broadcaster's command line).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct RouteId(pub String);

impl JsonSchema for RouteId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RouteId".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": "^[A-Za-z0-9._-]+$",
        })
    }
}

impl From<&str> for RouteId {
    fn from(s: &str) -> Self {
        RouteId(s.to_string())
    }
}

/// A latitude/longitude box.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("self.minLat < self.maxLat && self.minLon < self.maxLon").message("bbox: min must be below max"))]
#[serde(rename_all = "camelCase")]
pub struct BoundingBox {
    /// Southern edge, degrees (WGS-84).
    #[schemars(range(min = -90.0, max = 90.0))]
    pub min_lat: f64,
    /// Western edge, degrees (WGS-84).
    #[schemars(range(min = -180.0, max = 180.0))]
    pub min_lon: f64,
    /// Northern edge, degrees (WGS-84).
    #[schemars(range(min = -90.0, max = 90.0))]
    pub max_lat: f64,
    /// Eastern edge, degrees (WGS-84).
    #[schemars(range(min = -180.0, max = 180.0))]
    pub max_lon: f64,
}

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

/// What the operator does about a stall.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    /// `DumpAndRestart` (default), `RestartOnly`, `DumpOnly`, or `Observe` (record what would be
    /// done and do nothing).
    #[serde(default)]
    pub mode: RemediationMode,
    /// Before dumping and restarting, ask the sidecar to restart only the stalled stream's
    /// dispatcher; the pod survives when the stall clears within `softRestartTimeout`. Off by
    /// default: a soft restart that works also wipes the evidence a dump would have kept.
    #[serde(default)]
    pub soft_restart_first: bool,
    /// How long to wait for the stall to clear after a soft restart.
    #[serde(default = "default_soft_restart_timeout")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub soft_restart_timeout: Duration,
    /// Bound on capturing a dump bundle; a failed capture never blocks the restart.
    #[serde(default = "default_dump_timeout")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub dump_timeout: Duration,
    /// How long to wait for the restarted pod (or rollout) before the attempt is closed.
    #[serde(default = "default_restart_timeout")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub restart_timeout: Duration,
    /// Remediations allowed per rolling hour. With the budget spent the operator stops,
    /// sets `Degraded` and emits an Event: it never makes a crash loop of its own.
    #[serde(default = "default_budget_per_hour")]
    #[schemars(range(min = 0, max = MAX_BUDGET_PER_HOUR))]
    pub budget_per_hour: u32,
    /// Minimum time between the end of one remediation and the start of the next.
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub cooldown: Duration,
    /// Restart the stalled `Pod` only (default), or roll the whole `Deployment`.
    #[serde(default)]
    pub restart_target: RestartTarget,
}

impl Default for RemediationSpec {
    fn default() -> Self {
        Self {
            mode: RemediationMode::default(),
            soft_restart_first: false,
            soft_restart_timeout: default_soft_restart_timeout(),
            dump_timeout: default_dump_timeout(),
            restart_timeout: default_restart_timeout(),
            budget_per_hour: default_budget_per_hour(),
            cooldown: default_cooldown(),
            restart_target: RestartTarget::default(),
        }
    }
}

/// Remediation mode.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RemediationMode {
    #[default]
    DumpAndRestart,
    RestartOnly,
    DumpOnly,
    Observe,
}

/// What a restart restarts.
// The variants are the schema's values, each named as the API spells it: a doc comment on
// one would make schemars describe the enum as a `oneOf` of constants instead of an `enum`.
#[allow(missing_docs)]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RestartTarget {
    #[default]
    Pod,
    Deployment,
}

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

fn default_workload_api_version() -> String {
    WORKLOAD_API_VERSION.to_string()
}
fn default_streams() -> Vec<StreamSpec> {
    vec![StreamSpec {
        name: "all".into(),
        ..StreamSpec::default()
    }]
}
fn default_channel_capacity() -> u32 {
    5
}
fn default_replicas() -> i32 {
    1
}
fn default_report_interval() -> Duration {
    StdDuration::from_millis(250).into()
}
fn default_stall_after() -> Duration {
    StdDuration::from_secs(2).into()
}
fn default_poll_interval() -> Duration {
    StdDuration::from_secs(10).into()
}
fn default_vehicles() -> u32 {
    40
}
fn default_routes() -> u32 {
    4
}
fn default_rate() -> u32 {
    10
}
fn default_seed() -> u64 {
    1
}
fn default_replay_rate() -> u32 {
    10
}
fn default_soft_restart_timeout() -> Duration {
    StdDuration::from_secs(5).into()
}
fn default_dump_timeout() -> Duration {
    StdDuration::from_secs(10).into()
}
fn default_restart_timeout() -> Duration {
    StdDuration::from_secs(120).into()
}
fn default_budget_per_hour() -> u32 {
    3
}
fn default_cooldown() -> Duration {
    StdDuration::from_secs(300).into()
}
fn default_max_bundles() -> u32 {
    20
}
fn default_max_bytes() -> u64 {
    1 << 30
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

impl StreamSpec {
    /// This stream as the broadcaster's `--stream NAME[=FILTER[;FILTER]]` value.
    pub fn cli_value(&self) -> String {
        let mut filters = Vec::new();
        if !self.routes.is_empty() {
            let routes: Vec<&str> = self.routes.iter().map(|r| r.0.as_str()).collect();
            filters.push(format!("routes:{}", routes.join(",")));
        }
        if let Some(b) = &self.bbox {
            filters.push(format!(
                "bbox:{},{},{},{}",
                b.min_lat, b.min_lon, b.max_lat, b.max_lon
            ));
        }
        if filters.is_empty() {
            self.name.clone()
        } else {
            format!("{}={}", self.name, filters.join(";"))
        }
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
