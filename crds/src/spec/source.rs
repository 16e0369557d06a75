//! `spec.source`: where a deployed broadcaster's feed messages come from (synthetic, NATS,
//! HTTP polling, a recording), credentials only from Secrets.

use kube::KubeSchema;
use kube::core::Duration;
use serde::{Deserialize, Serialize};

use super::limits::{
    GO_DURATION_PATTERN, default_poll_interval, default_rate, default_replay_rate, default_routes,
    default_seed, default_vehicles,
};

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
