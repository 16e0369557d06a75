//! The configuration both containers read: the ConfigMap (each binary reads its own env
//! prefix), the sidecar's settings as env pairs (also used by the webhook for an injected
//! sidecar), and the hash on the pod template that rolls the pods when it changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};
use stallwatch_crds::{TransitStream, to_std};

use super::{DUMP_DIR, RECORDINGS_DIR, TOKEN_DIR, TOKEN_KEY, config_map_name, meta, name_of};

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
