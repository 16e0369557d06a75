use super::*;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use stallwatch_crds::testing::TransitStreamExt as _;
use stallwatch_crds::{DumpVolume, DumpVolumeTemplate, SecretKeyRef, Source, UrlSource};

fn ts() -> TransitStream {
    TransitStream::test("demo")
        .namespace("transit")
        .uid("uid-1")
        .generation(None::<i64>)
        .build()
}

fn ctx() -> BuildContext {
    BuildContext {
        default_image: "ghcr.io/example/stallwatch:0.1.0".into(),
    }
}

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container<'a>(d: &'a Deployment, name: &str) -> &'a Container {
    pod_spec(d)
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap()
}

#[test]
fn every_object_is_owned_and_labelled() {
    let t = ts();
    let d = desired(&t, &ctx());
    let metas = [
        &d.service_account.metadata,
        &d.role.metadata,
        &d.role_binding.metadata,
        &d.config_map.metadata,
        &d.service.metadata,
        &d.deployment.metadata,
        &admin_secret(&t, "x").metadata,
    ];
    for m in metas {
        let owner = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "TransitStream");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(m.namespace.as_deref(), Some("transit"));
        assert_eq!(m.labels.as_ref().unwrap()[labels::TRANSITSTREAM], "demo");
    }
    assert!(d.claim.is_none());
}

#[test]
fn the_deployment_runs_both_binaries_from_one_image_with_the_gate() {
    let d = deployment(&ts(), &ctx(), "abc");
    let p = pod_spec(&d);
    assert_eq!(
        p.readiness_gates.as_ref().unwrap()[0].condition_type,
        "stallwatch.io/DispatchHealthy"
    );
    let b = container(&d, "broadcaster");
    let s = container(&d, "sidecar");
    assert_eq!(b.image, s.image);
    assert_eq!(b.image.as_deref(), Some("ghcr.io/example/stallwatch:0.1.0"));
    assert_eq!(b.args.as_ref().unwrap(), &["serve"]);
    assert_eq!(s.args.as_ref().unwrap(), &["run"]);
    let ports: Vec<i32> = b
        .ports
        .iter()
        .flatten()
        .chain(s.ports.iter().flatten())
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [50051, 9090, 8080, 8081]);
    assert_eq!(
        b.readiness_probe
            .as_ref()
            .unwrap()
            .grpc
            .as_ref()
            .unwrap()
            .service
            .as_deref(),
        Some(GRPC_HEALTH_SERVICE)
    );
    let env: Vec<&str> = s.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME"]);
    assert_eq!(
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION],
        "abc"
    );
}

#[test]
fn security_is_restricted_without_process_dumps() {
    let d = deployment(&ts(), &ctx(), "h");
    let p = pod_spec(&d);
    assert_eq!(p.share_process_namespace, None);
    assert_eq!(p.automount_service_account_token, Some(false));
    let psc = p.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    for c in &p.containers {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(caps.add, None, "{}", c.name);
    }
    // The API token reaches the sidecar only.
    let b = container(&d, "broadcaster");
    assert!(
        b.volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "kube-api-access" && m.name != "admin-token")
    );
}

#[test]
fn process_dumps_share_the_pid_namespace_and_ptrace_the_sidecar_only() {
    let mut t = ts();
    t.spec.dumps.process_dump = ProcessDump::Minidump;
    let d = deployment(&t, &ctx(), "h");
    assert_eq!(pod_spec(&d).share_process_namespace, Some(true));
    let caps = |name| {
        container(&d, name)
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .clone()
            .unwrap()
            .add
    };
    assert_eq!(caps("sidecar"), Some(vec!["SYS_PTRACE".to_string()]));
    assert_eq!(caps("broadcaster"), None);
    // An added capability is only effective for uid 0 (no ambient capabilities).
    let sc = |name| container(&d, name).security_context.clone().unwrap();
    assert_eq!(sc("sidecar").run_as_user, Some(0));
    assert_eq!(sc("sidecar").run_as_non_root, Some(false));
    assert_eq!(sc("sidecar").allow_privilege_escalation, Some(false));
    assert_eq!(sc("broadcaster").run_as_non_root, Some(true));
}

#[test]
fn config_carries_the_spec_and_no_secrets() {
    let mut t = ts();
    t.spec.source = Some(Source {
        nats: Some(UrlSource {
            url: None,
            url_secret_ref: Some(SecretKeyRef {
                name: "feed".into(),
                key: "url".into(),
            }),
        }),
        ..Source::default()
    });
    t.spec.streams[0].routes = vec!["R1".into()];
    let cm = config_map(&t);
    let data = cm.data.as_ref().unwrap();
    assert!(!data.contains_key("BROADCASTER_SOURCE"));
    assert_eq!(data["BROADCASTER_STREAMS"], "all=routes:R1");
    assert_eq!(data["BROADCASTER_CHANNEL_CAPACITY"], "5");
    assert_eq!(data["BROADCASTER_REPORT_INTERVAL"], "250ms");
    assert_eq!(data["SIDECAR_STALL_AFTER"], "2s");
    assert_eq!(data["SIDECAR_PROCESS_DUMP"], "none");
    assert_eq!(
        data["SIDECAR_ADMIN_TOKEN_FILE"],
        "/var/run/stallwatch/admin/token"
    );
    let d = deployment(&t, &ctx(), "h");
    let src = &container(&d, "broadcaster").env.as_ref().unwrap()[0];
    assert_eq!(src.name, "BROADCASTER_SOURCE");
    let sel = src
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("feed", "url"));
}

#[test]
fn synthetic_source_url() {
    let data = config_map(&ts()).data.unwrap();
    assert_eq!(
        data["BROADCASTER_SOURCE"],
        "synthetic://?vehicles=40&routes=4&rate=10&seed=1"
    );
}

#[test]
fn config_changes_change_the_hash() {
    let t = ts();
    let a = config_hash(&config_map(&t));
    let mut t2 = t.clone();
    t2.spec.channel_capacity = 6;
    assert_ne!(a, config_hash(&config_map(&t2)));
    assert_eq!(a, config_hash(&config_map(&t)));
}

#[test]
fn templated_dump_claim_is_created_and_mounted() {
    let mut t = ts();
    t.spec.dumps.volume = Some(DumpVolume {
        existing_claim: None,
        template: Some(DumpVolumeTemplate {
            size: "5Gi".into(),
            storage_class_name: Some("fast".into()),
            ..DumpVolumeTemplate::default()
        }),
    });
    let claim = dump_claim(&t).unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some("demo-dumps"));
    let spec = claim.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "5Gi"
    );
    let d = deployment(&t, &ctx(), "h");
    let v = pod_spec(&d)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dumps")
        .unwrap();
    assert_eq!(
        v.persistent_volume_claim.as_ref().unwrap().claim_name,
        "demo-dumps"
    );
    // An existing claim is used as is and nothing is created.
    t.spec.dumps.volume = Some(DumpVolume {
        existing_claim: Some("shared".into()),
        template: None,
    });
    assert!(dump_claim(&t).is_none());
    let d = deployment(&t, &ctx(), "h");
    let v = pod_spec(&d)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dumps")
        .unwrap();
    assert_eq!(
        v.persistent_volume_claim.as_ref().unwrap().claim_name,
        "shared"
    );
}

#[test]
fn the_sidecar_role_is_minimal() {
    let r = role(&ts());
    let rules = r.rules.unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["pods/status".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["patch"]);
    assert_eq!(
        rules[1].api_groups.as_deref(),
        Some(&["events.k8s.io".to_string()][..])
    );
    for rule in &rules {
        assert!(
            !rule
                .verbs
                .iter()
                .any(|v| v == "*" || v == "get" || v == "delete")
        );
    }
    let b = role_binding(&ts());
    assert_eq!(b.subjects.unwrap()[0].name, "demo-sidecar");
}

#[test]
fn tokens_are_random_hex() {
    let (a, b) = (new_token(), new_token());
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    let s = admin_secret(&ts(), &a);
    assert_eq!(s.data.unwrap()[TOKEN_KEY].0, a.as_bytes());
}

#[test]
fn image_and_replicas_follow_the_spec() {
    let mut t = ts();
    t.spec.image = Some("registry.local/stallwatch:dev".into());
    t.spec.replicas = 3;
    t.spec.image_pull_policy = Some(stallwatch_crds::ImagePullPolicy::Never);
    let d = deployment(&t, &ctx(), "h");
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
    let b = container(&d, "broadcaster");
    assert_eq!(b.image.as_deref(), Some("registry.local/stallwatch:dev"));
    assert_eq!(b.image_pull_policy.as_deref(), Some("Never"));
}

#[test]
fn zero_code_mode_passes_the_mapping_to_the_sidecar() {
    let mut t = ts();
    let cm = config_map(&t);
    let data = cm.data.as_ref().unwrap();
    assert!(!data.keys().any(|k| k.starts_with("SIDECAR_METRICS_")));
    assert!(!data.contains_key("BROADCASTER_REPORT_URL"));

    t.spec.detection = Some(stallwatch_crds::DetectionSpec {
        metrics: Some(
            serde_json::from_value(serde_json::json!({
                "port": 9100, "depth": "q_depth", "capacityValue": 64,
                "dequeued": "q_out_total", "consumerUp": "q_consumer_up",
                "streamLabel": "queue", "interval": "500ms"
            }))
            .unwrap(),
        ),
    });
    let cm = config_map(&t);
    let data = cm.data.as_ref().unwrap();
    let env = |k: &str| data.get(k).map(String::as_str);
    assert_eq!(
        env("SIDECAR_METRICS_URL"),
        Some("http://127.0.0.1:9100/metrics")
    );
    assert_eq!(env("SIDECAR_METRICS_INTERVAL"), Some("500ms"));
    assert_eq!(env("SIDECAR_METRICS_DEPTH"), Some("q_depth"));
    assert_eq!(env("SIDECAR_METRICS_CAPACITY_VALUE"), Some("64"));
    assert_eq!(env("SIDECAR_METRICS_CAPACITY"), None);
    assert_eq!(env("SIDECAR_METRICS_DEQUEUED"), Some("q_out_total"));
    assert_eq!(env("SIDECAR_METRICS_CONSUMER_UP"), Some("q_consumer_up"));
    assert_eq!(env("SIDECAR_METRICS_ENQUEUED"), None);
    assert_eq!(env("SIDECAR_METRICS_STREAM_LABEL"), Some("queue"));
    assert_eq!(env("BROADCASTER_REPORT_URL"), Some(""));
}
