//! `spec.detection`: how the sidecar judges stalls. By default from the broadcaster's reports;
//! with `metrics` (zero-code mode), from an app's own Prometheus/OpenMetrics metrics, scraped
//! from a port in the same pod and mapped to streams by the names given here.

use std::time::Duration as StdDuration;

use kube::KubeSchema;
use kube::core::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec::GO_DURATION_PATTERN`, repeated so that this module imports nothing from `spec`
/// (which imports it); a test keeps the two equal.
const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// A Prometheus metric name.
pub const METRIC_NAME_PATTERN: &str = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$";
/// A Prometheus label name.
pub const LABEL_NAME_PATTERN: &str = r"^[a-zA-Z_][a-zA-Z0-9_]*$";

/// How stalls are detected.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DetectionSpec {
    /// Zero-code mode: judge stalls from the app's own queue metrics instead of reports. The
    /// sidecar refuses reports while this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsDetection>,
}

/// Where the app's metrics are and which series are its queues.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.capacity) != has(self.capacityValue)").message("detection.metrics: set exactly one of capacity (a gauge) or capacityValue (a fixed bound)"))]
// The ports are `stallwatch_core::ports`' SIDECAR_HTTP, SIDECAR_ADMIN and SIDECAR_INGEST (an
// attribute takes only literals; a test below ties them).
#[x_kube(validation = Rule::new("self.port != 8080 && self.port != 8081 && self.port != 9464").message("detection.metrics.port: 8080, 8081 and 9464 are the sidecar's own ports"))]
pub struct MetricsDetection {
    /// The container port serving the metrics, scraped on the pod's loopback.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The metrics path.
    #[serde(default = "default_path")]
    #[schemars(
        regex(pattern = r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%-]*$"),
        length(max = 256)
    )]
    pub path: String,
    /// How often to scrape; shorter than `stallAfter`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub interval: Duration,
    /// Gauge: items waiting, one series per stream.
    #[schemars(regex(pattern = METRIC_NAME_PATTERN), length(max = 200))]
    pub depth: String,
    /// Gauge: the queue's bound per stream. Set this or `capacityValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = METRIC_NAME_PATTERN), length(max = 200))]
    pub capacity: Option<String>,
    /// A fixed queue bound for every stream. Set this or `capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub capacity_value: Option<u64>,
    /// Counter: items taken out of the queue (with or without its `_total` suffix).
    #[schemars(regex(pattern = METRIC_NAME_PATTERN), length(max = 200))]
    pub dequeued: String,
    /// Counter (optional): items put into the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = METRIC_NAME_PATTERN), length(max = 200))]
    pub enqueued: Option<String>,
    /// Counter (optional): items dropped because the queue was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = METRIC_NAME_PATTERN), length(max = 200))]
    pub dropped: Option<String>,
    /// Gauge (optional): 0 while a stream's consumer is not running. With it a dead consumer
    /// is `DispatcherDead` at once; without it, `ChannelStuck` after `stallAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = METRIC_NAME_PATTERN), length(max = 200))]
    pub consumer_up: Option<String>,
    /// The label whose values name the streams (each a DNS label).
    #[serde(default = "default_stream_label")]
    #[schemars(regex(pattern = LABEL_NAME_PATTERN), length(max = 100))]
    pub stream_label: String,
}

fn default_path() -> String {
    "/metrics".to_owned()
}

fn default_interval() -> Duration {
    StdDuration::from_secs(1).into()
}

fn default_stream_label() -> String {
    "stream".to_owned()
}

#[cfg(test)]
mod tests;
