//! The operator writes env var names and arguments (`transit_operator::builders`, the
//! webhook's injected sidecar) that another binary reads through its clap CLI: nothing but
//! this test ties the two lists together. For sample TransitStreams covering every branch of
//! the builders (each source kind, a source URL from a Secret, zero-code mode with every
//! optional series, process dumps), every container's subcommand must exist, every argument
//! must be one its `--help` lists, and every env var it receives must be one its `--help`
//! names (`[env: NAME=`): a renamed flag fails here instead of being silently ignored in a
//! pod. Runs the debug binaries (`cargo build --workspace --bins` first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Container};
use serde_json::{Value, json};
use stallwatch_crds::TransitStream;
use stallwatch_testkit::TransitStreamBuilder;
use transit_operator::builders::{self, BuildContext};
use transit_operator::webhook::inject::{self, InjectContext};

/// TransitStream specs that together take every branch of the builders' env and arguments.
fn samples() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "synthetic with streams and dumps",
            json!({
                "source": {"synthetic": {"vehicles": 20, "routes": 3, "rate": 5, "seed": 7}},
                "streams": [{"name": "downtown", "routes": ["R1"]}, {"name": "all"}],
                "channelCapacity": 16,
                "dumps": {
                    "volume": {"template": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
                    "maxBundles": 3,
                    "maxBytes": 1000000,
                    "processDump": "Minidump",
                },
            }),
        ),
        (
            "nats from a secret",
            json!({"source": {"nats": {"urlSecretRef": {"name": "nats", "key": "url"}}}}),
        ),
        (
            "http",
            json!({"source": {"http": {"url": "https://feeds.example/vp.pb", "pollInterval": "15s"}}}),
        ),
        (
            "http from a secret",
            json!({"source": {"http": {"urlSecretRef": {"name": "feed", "key": "url"}}}}),
        ),
        (
            "file replay",
            json!({"source": {"file": {
                "claimName": "recordings", "path": "day.rec", "replayRate": 2, "replayLoop": true,
            }}}),
        ),
        (
            "zero-code with every series",
            json!({
                "stallAfter": "5s",
                "detection": {"metrics": {
                    "port": 9100,
                    "path": "/metrics",
                    "interval": "1s",
                    "depth": "q_depth",
                    "capacity": "q_capacity",
                    "capacityValue": 1000,
                    "dequeued": "q_dequeued_total",
                    "enqueued": "q_enqueued_total",
                    "dropped": "q_dropped_total",
                    "consumerUp": "q_consumer_up",
                    "streamLabel": "queue",
                }},
            }),
        ),
    ]
}

fn transit_stream(name: &str, spec: &Value) -> TransitStream {
    // The defaults of a real apply: the spec goes through serde as the API server's JSON does.
    let spec = serde_json::from_value(spec.clone())
        .unwrap_or_else(|e| panic!("sample {name:?} is not a TransitStream spec: {e}"));
    TransitStreamBuilder::new("contract")
        .namespace("default")
        .spec(|s| *s = spec)
        .build()
}

/// What one binary's subcommand accepts, from its `--help`.
#[derive(Debug)]
struct Accepted {
    env: BTreeSet<String>,
    help: String,
}

/// `<binary> <subcommand> --help`, cached per pair.
fn accepted<'a>(
    cache: &'a mut BTreeMap<(String, String), Accepted>,
    binary: &str,
    subcommand: &str,
) -> &'a Accepted {
    cache
        .entry((binary.to_string(), subcommand.to_string()))
        .or_insert_with(|| {
            let path = stallwatch_e2e::bin(binary).unwrap_or_else(|e| panic!("{e:#}"));
            let out = Command::new(&path)
                .args([subcommand, "--help"])
                // The operator's env must not leak into the help (`[env: NAME=value]` is
                // fine, but an invalid value would make clap fail before printing).
                .env_clear()
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
            let help = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "`{binary} {subcommand} --help` failed (no such subcommand?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Accepted {
                env: env_names(&help),
                help,
            }
        })
}

/// The names of every `[env: NAME=...]` in clap's help.
fn env_names(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split_once('=').map(|(name, _)| name.to_string()))
        .collect()
}

/// The binary a container runs (its command's file name) and its arguments.
fn command(c: &Container) -> (String, Vec<String>) {
    let cmd = c
        .command
        .as_ref()
        .and_then(|c| c.first())
        .unwrap_or_else(|| {
            panic!("container {} has no command", c.name);
        });
    let binary = Path::new(cmd)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (binary, c.args.clone().unwrap_or_default())
}

/// Every env var name the container gets: its own `env` and the ConfigMap it takes whole
/// (`envFrom`), which the operator shares between containers (each binary reads its own
/// prefix), so those are returned apart.
fn env_of(c: &Container, config_map: Option<&ConfigMap>) -> (Vec<String>, Vec<String>) {
    let own = c.env.iter().flatten().map(|e| e.name.clone()).collect();
    let mut shared = Vec::new();
    for from in c.env_from.iter().flatten() {
        let name = from.config_map_ref.as_ref().map(|r| r.name.as_str());
        let cm = config_map.expect("envFrom names the TransitStream's ConfigMap");
        assert_eq!(
            name,
            cm.metadata.name.as_deref(),
            "envFrom names another ConfigMap"
        );
        shared.extend(cm.data.iter().flatten().map(|(k, _)| k.clone()));
    }
    (own, shared)
}

/// Checks one container; returns the shared names its binary accepts.
fn check_container(
    cache: &mut BTreeMap<(String, String), Accepted>,
    sample: &str,
    c: &Container,
    config_map: Option<&ConfigMap>,
    problems: &mut Vec<String>,
) -> (String, BTreeSet<String>) {
    let (binary, args) = command(c);
    let Some(subcommand) = args.first() else {
        problems.push(format!(
            "{sample}: container {} runs {binary} without a subcommand",
            c.name
        ));
        return (binary, BTreeSet::new());
    };
    let accepted = accepted(cache, &binary, subcommand);
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap_or(arg);
        if flag.starts_with("--") && !accepted.help.contains(flag) {
            problems.push(format!(
                "{sample}: container {} passes {arg}, which `{binary} {subcommand}` does not accept",
                c.name
            ));
        }
    }
    let (own, shared) = env_of(c, config_map);
    for name in own {
        if !accepted.env.contains(&name) {
            problems.push(format!(
                "{sample}: container {} sets {name}, which `{binary} {subcommand}` does not read",
                c.name
            ));
        }
    }
    let read = shared
        .into_iter()
        .filter(|n| accepted.env.contains(n))
        .collect();
    (binary, read)
}

#[test]
fn every_env_name_and_argument_the_operator_writes_is_read_by_its_binary() {
    let ctx = BuildContext {
        default_image: "stallwatch:test".into(),
    };
    let inject_ctx = InjectContext {
        default_image: "stallwatch:test".into(),
    };
    let mut cache = BTreeMap::new();
    let mut problems = Vec::new();
    let mut containers_checked = 0;
    for (sample, spec) in samples() {
        let ts = transit_stream(sample, &spec);
        let desired = builders::desired(&ts, &ctx);
        let pod = desired
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref());
        let containers = pod.map(|p| p.containers.clone()).unwrap_or_default();
        assert!(
            !containers.is_empty(),
            "{sample}: the Deployment has no containers"
        );
        let mut read_by_some = BTreeSet::new();
        for c in &containers {
            let (binary, read) = check_container(
                &mut cache,
                sample,
                c,
                Some(&desired.config_map),
                &mut problems,
            );
            // A prefixed ConfigMap key is for the binary of that prefix: that one must read it.
            let prefix = format!("{}_", binary.trim_start_matches("transit-").to_uppercase());
            let (_, shared) = env_of(c, Some(&desired.config_map));
            for name in shared.iter().filter(|n| n.starts_with(&prefix)) {
                if !read.contains(name) {
                    problems.push(format!(
                        "{sample}: the ConfigMap sets {name}, which `{binary}` does not read"
                    ));
                }
            }
            read_by_some.extend(read);
            containers_checked += 1;
        }
        // Every ConfigMap key is read by at least one of the containers that take it.
        for name in desired.config_map.data.iter().flatten().map(|(k, _)| k) {
            if !read_by_some.contains(name) {
                problems.push(format!(
                    "{sample}: the ConfigMap sets {name}, which no container reads"
                ));
            }
        }
        // The webhook's sidecar, injected into a workload: its settings as plain env.
        let injected = inject::sidecar_container(&ts, &inject_ctx);
        check_container(&mut cache, sample, &injected, None, &mut problems);
        containers_checked += 1;
    }
    assert!(
        problems.is_empty(),
        "drift between the operator and the CLIs:\n{}",
        problems.join("\n")
    );
    // Both binaries and the injected sidecar were checked for every sample.
    assert_eq!(containers_checked, samples().len() * 3);
    assert_eq!(
        cache
            .keys()
            .map(|(b, s)| format!("{b} {s}"))
            .collect::<Vec<_>>(),
        ["transit-broadcaster serve", "transit-sidecar run"]
    );
}

#[test]
fn env_names_are_read_from_clap_help() {
    let help = "  --a <A>  x [env: BROADCASTER_A=] [default: 1]\n  --b  y [env: LOG_FORMAT=json]\n";
    assert_eq!(
        env_names(help),
        BTreeSet::from(["BROADCASTER_A".to_string(), "LOG_FORMAT".to_string()])
    );
}
