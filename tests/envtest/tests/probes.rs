//! Probes and `terminationGracePeriodSeconds` against the binaries' own bounds, as pure
//! checks over what we ship: the chart's operator Deployment (rendered with Helm's library,
//! default values) and the stream pod the operator's builders write (issue 20).
//!
//! For each container: its liveness probe must ask `/healthz`, the endpoint that follows the
//! binary's main loops (a TCP or process check passes on a process that is alive while doing
//! nothing: the story's stall), and the time from a wedge to the kubelet's restart (the
//! binary's own liveness timeout, then the probe's failure window `periodSeconds ×
//! failureThreshold + timeoutSeconds`) is printed. The binary's documented SIGTERM bound must
//! be below its pod's grace (else the kubelet's SIGKILL cuts its shutdown short).
//! `tests/node/shutdown.rs` measures the real exits.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, PodSpec, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use stallwatch_crds::TransitStream;
use stallwatch_crds::testing::TransitStreamExt as _;
use stallwatch_envtest::{assets, chart, kubelet, say};
use transit_operator::builders;

/// A binary's own bounds, and where each comes from (for the failure message).
#[derive(Debug, Clone)]
struct Bounds {
    liveness: (Duration, String),
    sigterm: (Duration, String),
}

/// The kubelet's defaults for a probe's unset fields.
fn failure_window(p: &Probe) -> Duration {
    let period = p.period_seconds.unwrap_or(10);
    let failures = p.failure_threshold.unwrap_or(3);
    let timeout = p.timeout_seconds.unwrap_or(1);
    Duration::from_secs((period * failures + timeout) as u64)
}

/// What is wrong with one container of a pod whose grace is `grace_seconds`.
fn problems(pod: &str, grace_seconds: i64, c: &Container, b: &Bounds) -> Vec<String> {
    let mut out = Vec::new();
    match &c.liveness_probe {
        None => out.push(format!("{pod}/{}: no liveness probe", c.name)),
        Some(p) => {
            let window = failure_window(p);
            say(&format!(
                "probes: {pod}/{}: a wedge restarted after at most {:?} ({:?} {}, then a \
                 failure window of {window:?}); SIGTERM bound {:?} ({}) vs grace \
                 {grace_seconds} s",
                c.name,
                b.liveness.0 + window,
                b.liveness.0,
                b.liveness.1,
                b.sigterm.0,
                b.sigterm.1
            ));
            let path = p.http_get.as_ref().and_then(|g| g.path.as_deref());
            if path != Some("/healthz") {
                out.push(format!(
                    "{pod}/{}: the liveness probe is not an HTTP GET of /healthz ({p:?}): it \
                     would not see a wedged main loop",
                    c.name
                ));
            }
        }
    }
    if b.sigterm.0 >= Duration::from_secs(grace_seconds.max(0) as u64) {
        out.push(format!(
            "{pod}/{}: exits at the latest {:?} after SIGTERM ({}), not below the pod's \
             terminationGracePeriodSeconds {grace_seconds}",
            c.name, b.sigterm.0, b.sigterm.1
        ));
    }
    out
}

/// `10s`, `500ms`, `1m`, `1h` (what the chart and the binaries' flags use).
fn duration(text: &str) -> Duration {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration: {text:?}"));
    match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("a duration: {text:?}"),
    }
}

/// A flag's `[default: X]` in `BIN ARGS --help` (the workspace's built binary).
fn help_default(bin: &str, args: &[&str], flag: &str) -> Duration {
    let path = kubelet::bin_dir().join(bin);
    let out = Command::new(&path)
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo build --workspace --bins` first)",
                path.display()
            )
        });
    let help = String::from_utf8_lossy(&out.stdout);
    let after = help
        .split_once(&format!("--{flag} "))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("{bin} {args:?} --help has no --{flag}"));
    let default = after
        .split_once("[default: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(d, _)| d)
        .unwrap_or_else(|| panic!("{bin} --{flag} has no default"));
    duration(default)
}

/// `Duration::from_secs(N)` of `const NAME` in a source file: the broadcaster's two bounds
/// are constants of its code, not flags.
fn source_const(file: &str, name: &str) -> Duration {
    let path = assets::workspace_root().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let line = text
        .lines()
        .find(|l| l.contains(&format!("const {name}: Duration")))
        .unwrap_or_else(|| panic!("no `const {name}: Duration` in {file}"));
    let secs = line
        .split_once("Duration::from_secs(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{file}: {name} is not `Duration::from_secs(N)`: {line}"));
    Duration::from_secs(secs)
}

fn env_value(c: &Container, name: &str) -> Option<String> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn required() -> bool {
    std::env::var_os("CI").is_some()
        || std::env::var_os("STALLWATCH_REQUIRE_TEST_TOOLS").is_some_and(|v| v == "1")
}

fn grace(spec: &PodSpec) -> i64 {
    // The API server's default when unset.
    spec.termination_grace_period_seconds.unwrap_or(30)
}

#[test]
fn the_charts_operator_probe_and_grace_fit_its_own_bounds() {
    let test = "the_charts_operator_probe_and_grace_fit_its_own_bounds";
    let rendered = match chart::render(&serde_json::json!({}), "stallwatch", "stallwatch-system") {
        Ok(r) => r,
        Err(why) if !required() => return say(&format!("skipped {test}: {why}")),
        Err(why) => panic!("{test}: {why}"),
    };
    let deployment: Deployment = serde_yaml::Deserializer::from_str(&rendered)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .map(|d| serde_yaml::from_value(d).expect("a Deployment"))
        .expect("the chart's Deployment");
    let spec = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod template");
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "operator")
        .expect("the operator container");
    let set = |name: &str| {
        env_value(c, name).unwrap_or_else(|| panic!("the chart sets no {name} on the operator"))
    };
    // /healthz fails when the controller loop is late by LIVENESS_TIMEOUT, or the elector by
    // max(LIVENESS_TIMEOUT, LEASE_DURATION) (operator/src/run.rs).
    let liveness = duration(&set("LIVENESS_TIMEOUT")).max(duration(&set("LEASE_DURATION")));
    let bounds = Bounds {
        liveness: (
            liveness,
            "chart: max(LIVENESS_TIMEOUT, LEASE_DURATION)".into(),
        ),
        sigterm: (
            duration(&set("SHUTDOWN_GRACE")),
            "chart: SHUTDOWN_GRACE".into(),
        ),
    };
    let found = problems("chart operator", grace(&spec), c, &bounds);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_stream_pods_probes_and_grace_fit_the_binaries_bounds() {
    let ts = TransitStream::test("demo").namespace("transit").build();
    let ctx = builders::BuildContext {
        default_image: "example.invalid/stallwatch:1".into(),
    };
    let desired = builders::desired(&ts, &ctx);
    let config: BTreeMap<String, String> = desired.config_map.data.clone().unwrap_or_default();
    let spec = desired
        .deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod template");
    // A value the ConfigMap sets wins over the binary's default (`--help`).
    let sidecar = |env: &str, flag: &str| match config.get(env) {
        Some(v) => (duration(v), format!("ConfigMap {env}")),
        None => (
            help_default("transit-sidecar", &["run"], flag),
            format!("transit-sidecar --{flag} default"),
        ),
    };
    let mut bounds = BTreeMap::from([
        (
            "broadcaster",
            Bounds {
                liveness: (
                    source_const("broadcaster/src/serve/http_endpoints.rs", "HUB_STUCK_AFTER"),
                    "broadcaster HUB_STUCK_AFTER".into(),
                ),
                sigterm: (
                    source_const(
                        "broadcaster/src/bin/transit-broadcaster/run.rs",
                        "SHUTDOWN_GRACE",
                    ),
                    "broadcaster run::SHUTDOWN_GRACE".into(),
                ),
            },
        ),
        (
            "sidecar",
            Bounds {
                liveness: sidecar("SIDECAR_LIVENESS_TIMEOUT", "liveness-timeout"),
                sigterm: sidecar("SIDECAR_SHUTDOWN_GRACE", "shutdown-grace"),
            },
        ),
    ]);
    let mut found = Vec::new();
    for c in &spec.containers {
        let b = bounds
            .remove(c.name.as_str())
            .unwrap_or_else(|| panic!("no bounds known for container {}", c.name));
        found.extend(problems("stream pod", grace(&spec), c, &b));
    }
    assert!(bounds.is_empty(), "containers not in the pod: {bounds:?}");
    assert!(found.is_empty(), "{found:#?}");
}

/// The check itself fails where it must: a probe that is not `/healthz`, a bound at the grace,
/// no probe.
#[test]
fn a_probe_off_healthz_or_a_bound_at_the_grace_is_a_problem() {
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..TCPSocketAction::default()
        }),
        ..Probe::default()
    };
    let c = |p: Option<Probe>| Container {
        name: "x".into(),
        liveness_probe: p,
        ..Container::default()
    };
    let b = |sigterm| Bounds {
        liveness: (Duration::from_secs(30), "test".into()),
        sigterm: (Duration::from_secs(sigterm), "test".into()),
    };
    assert!(problems("p", 30, &c(Some(probe("/healthz"))), &b(10)).is_empty());
    assert_eq!(
        problems("p", 30, &c(Some(probe("/readyz"))), &b(10)).len(),
        1
    );
    assert_eq!(problems("p", 30, &c(Some(tcp)), &b(10)).len(), 1);
    assert_eq!(
        problems("p", 30, &c(Some(probe("/healthz"))), &b(30)).len(),
        1
    );
    assert_eq!(problems("p", 30, &c(None), &b(10)).len(), 1);
    // The kubelet's defaults: 10 s × 3 + 1 s.
    assert_eq!(failure_window(&Probe::default()), Duration::from_secs(31));
    assert_eq!(duration("500ms"), Duration::from_millis(500));
    assert_eq!(duration("1m"), Duration::from_secs(60));
}
