//! Checks the schema cannot express (or that a resource written before a schema change may
//! still violate). Pure; the operator runs [`validate`] before building anything and reports
//! the errors in the `InvalidSpec` condition.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration as StdDuration;

use stallwatch_core::report::is_valid_stream_name;

use crate::spec::{
    DumpsSpec, MAX_BUDGET_PER_HOUR, MAX_REPLICAS, MAX_STREAMS, MIN_DUMP_BYTES, ProcessDump,
    RemediationMode, RestartTarget, SOURCE_XOR_WORKLOAD, Source, TransitStreamSpec,
    WORKLOAD_API_VERSION, WORKLOAD_SAME_NAMESPACE, WorkloadRef, to_std,
};

/// One problem with a spec: the field path and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field path, e.g. `spec.streams[1].bbox`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spec.{}: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Every problem with `spec`, in field order. Empty when the spec is valid.
pub fn validate(spec: &TransitStreamSpec) -> Vec<SpecError> {
    let mut out = Vec::new();
    match (&spec.source, &spec.workload_ref) {
        (Some(source), None) => validate_source(source, &mut out),
        (None, Some(workload)) => validate_workload_ref(spec, workload, &mut out),
        _ => out.push(err(
            "source",
            SOURCE_XOR_WORKLOAD.trim_start_matches("spec: "),
        )),
    }
    validate_streams(spec, &mut out);
    validate_workload(spec, &mut out);
    validate_timing(spec, &mut out);
    validate_remediation(spec, &mut out);
    validate_dumps(&spec.dumps, &mut out);
    out
}

/// A referenced workload: `apps/v1`, a DNS-subdomain name, the same namespace, and restarts
/// pod by pod (a rollout restart would rewrite the user's workload).
fn validate_workload_ref(spec: &TransitStreamSpec, w: &WorkloadRef, out: &mut Vec<SpecError>) {
    if w.api_version != WORKLOAD_API_VERSION {
        out.push(err(
            "workloadRef.apiVersion",
            format!("must be {WORKLOAD_API_VERSION}, got {:?}", w.api_version),
        ));
    }
    if !is_dns_subdomain(&w.name) {
        out.push(err(
            "workloadRef.name",
            format!("{:?} is not a valid object name", w.name),
        ));
    }
    if w.namespace.is_some() {
        out.push(err(
            "workloadRef.namespace",
            WORKLOAD_SAME_NAMESPACE.trim_start_matches("workloadRef: "),
        ));
    }
    if spec.remediation.restart_target == RestartTarget::Deployment {
        out.push(err(
            "remediation.restartTarget",
            "a referenced workload is restarted pod by pod (Stallwatch never rewrites it); set Pod",
        ));
    }
}

/// A Kubernetes object name: at most 253 of lowercase letters, digits, '-' and '.', starting
/// and ending alphanumeric.
fn is_dns_subdomain(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=253).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(s.chars().next())
        && edge(s.chars().last())
}

fn validate_streams(spec: &TransitStreamSpec, out: &mut Vec<SpecError>) {
    if spec.streams.is_empty() {
        out.push(err("streams", "at least one stream is required"));
    }
    if spec.streams.len() > MAX_STREAMS {
        out.push(err(
            "streams",
            format!("at most {MAX_STREAMS} streams, got {}", spec.streams.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, s) in spec.streams.iter().enumerate() {
        if !is_valid_stream_name(&s.name) {
            out.push(err(
                format!("streams[{i}].name"),
                format!(
                    "{:?} is not a DNS label (lowercase letters, digits, '-', 1-63 characters)",
                    s.name
                ),
            ));
        }
        if !seen.insert(s.name.as_str()) {
            out.push(err(
                format!("streams[{i}].name"),
                format!("duplicate stream name {:?}", s.name),
            ));
        }
        for r in s.routes.iter().map(|r| &r.0) {
            let ok = !r.is_empty()
                && r.len() <= 64
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                out.push(err(
                    format!("streams[{i}].routes"),
                    format!("route id {r:?} must be 1-64 of A-Z a-z 0-9 . _ -"),
                ));
            }
        }
        if let Some(b) = &s.bbox {
            let finite = [b.min_lat, b.min_lon, b.max_lat, b.max_lon]
                .iter()
                .all(|v| v.is_finite());
            if !finite
                || b.min_lat >= b.max_lat
                || b.min_lon >= b.max_lon
                || b.min_lat < -90.0
                || b.max_lat > 90.0
                || b.min_lon < -180.0
                || b.max_lon > 180.0
            {
                out.push(err(
                    format!("streams[{i}].bbox"),
                    "needs -90 <= minLat < maxLat <= 90 and -180 <= minLon < maxLon <= 180",
                ));
            }
        }
    }
}

fn validate_workload(spec: &TransitStreamSpec, out: &mut Vec<SpecError>) {
    if spec.channel_capacity == 0 {
        out.push(err("channelCapacity", "must be at least 1"));
    }
    if !(0..=MAX_REPLICAS).contains(&spec.replicas) {
        out.push(err(
            "replicas",
            format!("must be between 0 and {MAX_REPLICAS}"),
        ));
    }
    if let Some(image) = &spec.image
        && (image.trim().is_empty() || image.chars().any(char::is_whitespace))
    {
        out.push(err("image", "must be an image reference without spaces"));
    }
}

fn validate_timing(spec: &TransitStreamSpec, out: &mut Vec<SpecError>) {
    let report = duration(out, "reportInterval", &spec.report_interval);
    let stall = duration(out, "stallAfter", &spec.stall_after);
    if let Some(r) = report
        && !(StdDuration::from_millis(50)..=StdDuration::from_secs(60)).contains(&r)
    {
        out.push(err("reportInterval", "must be between 50ms and 60s"));
    }
    if let (Some(r), Some(s)) = (report, stall)
        && s <= r
    {
        out.push(err(
            "stallAfter",
            format!(
                "must be longer than reportInterval ({}), or every late report would be a stall",
                spec.report_interval
            ),
        ));
    }
    if let Some(s) = stall
        && s > StdDuration::from_secs(3600)
    {
        out.push(err("stallAfter", "must be at most 1h"));
    }
    if let Some(m) = spec.detection.as_ref().and_then(|d| d.metrics.as_ref()) {
        let scrape = duration(out, "detection.metrics.interval", &m.interval);
        if let Some(i) = scrape
            && !(StdDuration::from_millis(100)..=StdDuration::from_secs(60)).contains(&i)
        {
            out.push(err(
                "detection.metrics.interval",
                "must be between 100ms and 60s",
            ));
        }
        if let (Some(i), Some(s)) = (scrape, stall)
            && s <= i
        {
            out.push(err(
                "detection.metrics.interval",
                format!(
                    "must be shorter than stallAfter ({}): a stall is seen across scrapes",
                    spec.stall_after
                ),
            ));
        }
    }
}

fn validate_remediation(spec: &TransitStreamSpec, out: &mut Vec<SpecError>) {
    let rem = &spec.remediation;
    for (field, d, max) in [
        (
            "remediation.softRestartTimeout",
            &rem.soft_restart_timeout,
            600,
        ),
        ("remediation.dumpTimeout", &rem.dump_timeout, 600),
        ("remediation.restartTimeout", &rem.restart_timeout, 3600),
        ("remediation.cooldown", &rem.cooldown, 86_400),
    ] {
        if let Some(v) = duration(out, field, d)
            && v > StdDuration::from_secs(max)
        {
            out.push(err(field, format!("must be at most {max}s")));
        }
    }
    if rem.budget_per_hour > MAX_BUDGET_PER_HOUR {
        out.push(err(
            "remediation.budgetPerHour",
            format!("must be at most {MAX_BUDGET_PER_HOUR}"),
        ));
    }
    if rem.mode == RemediationMode::DumpOnly && rem.soft_restart_first {
        // Not an error: DumpOnly never restarts anything. Keep the spec honest anyway.
        out.push(err(
            "remediation.softRestartFirst",
            "DumpOnly never restarts anything; set softRestartFirst to false",
        ));
    }
}

fn duration(
    out: &mut Vec<SpecError>,
    field: &str,
    d: &kube::core::Duration,
) -> Option<StdDuration> {
    if d.is_negative() {
        out.push(err(field, "must not be negative"));
        return None;
    }
    let v = to_std(d);
    if v.is_zero() {
        out.push(err(field, "must be greater than zero"));
        return None;
    }
    Some(v)
}

fn validate_source(source: &Source, out: &mut Vec<SpecError>) {
    let kinds = [
        source.synthetic.is_some(),
        source.nats.is_some(),
        source.http.is_some(),
        source.file.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        out.push(err(
            "source",
            format!("set exactly one of synthetic, nats, http or file (found {kinds})"),
        ));
    }
    if let Some(n) = &source.nats {
        url_rules(
            "nats",
            &n.url,
            n.url_secret_ref.is_some(),
            &["nats://"],
            out,
        );
        if let Some(u) = &n.url
            && u.strip_prefix("nats://")
                .and_then(|r| r.split_once('/'))
                .is_none_or(|(_, subject)| subject.is_empty())
        {
            out.push(err(
                "source.nats.url",
                "must name a subject: nats://host:port/subject",
            ));
        }
    }
    if let Some(h) = &source.http {
        url_rules(
            "http",
            &h.url,
            h.url_secret_ref.is_some(),
            &["http://", "https://"],
            out,
        );
        if let Some(d) = duration(out, "source.http.pollInterval", &h.poll_interval)
            && d < StdDuration::from_secs(1)
        {
            out.push(err("source.http.pollInterval", "must be at least 1s"));
        }
    }
    if let Some(f) = &source.file
        && (f.path.starts_with('/') || f.path.split('/').any(|p| p == "..") || f.path.is_empty())
    {
        out.push(err(
            "source.file.path",
            "must be a relative path inside the claim without '..'",
        ));
    }
}

/// A URL source: inline URL xor Secret, the scheme, no credentials, no spaces.
fn url_rules(
    field: &str,
    url: &Option<String>,
    secret: bool,
    schemes: &[&str],
    out: &mut Vec<SpecError>,
) {
    match (url, secret) {
        (Some(_), true) | (None, false) => out.push(err(
            format!("source.{field}"),
            "set exactly one of url or urlSecretRef",
        )),
        (Some(u), false) => {
            if !schemes.iter().any(|s| u.starts_with(s)) {
                out.push(err(
                    format!("source.{field}.url"),
                    format!("must start with {}", schemes.join(" or ")),
                ));
            }
            if u.contains('@') {
                out.push(err(
                    format!("source.{field}.url"),
                    "must not carry credentials; put the URL in a Secret and use urlSecretRef",
                ));
            }
            if u.chars().any(char::is_whitespace) {
                out.push(err(
                    format!("source.{field}.url"),
                    "must not contain spaces",
                ));
            }
        }
        (None, true) => {}
    }
}

fn validate_dumps(dumps: &DumpsSpec, out: &mut Vec<SpecError>) {
    if dumps.max_bundles == 0 {
        out.push(err("dumps.maxBundles", "must be at least 1"));
    }
    if dumps.max_bytes < MIN_DUMP_BYTES {
        out.push(err(
            "dumps.maxBytes",
            format!("must be at least {MIN_DUMP_BYTES} (1 MiB)"),
        ));
    }
    if let Some(v) = &dumps.volume {
        if v.existing_claim.is_some() == v.template.is_some() {
            out.push(err(
                "dumps.volume",
                "set exactly one of existingClaim or template",
            ));
        }
        if let Some(t) = &v.template
            && !is_quantity(&t.size)
        {
            out.push(err(
                "dumps.volume.template.size",
                format!("{:?} is not a quantity like 5Gi", t.size),
            ));
        }
    } else if dumps.process_dump == ProcessDump::Full {
        out.push(err(
            "dumps.processDump",
            "Full needs a persistent volume (dumps.volume); core files do not fit an emptyDir",
        ));
    }
}

fn is_quantity(s: &str) -> bool {
    let suffixes = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    suffixes.iter().any(|suf| {
        s.strip_suffix(suf).is_some_and(|num| {
            let mut parts = num.splitn(2, '.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

#[cfg(test)]
mod tests;
