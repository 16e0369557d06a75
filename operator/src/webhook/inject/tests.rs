use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stallwatch_crds::{ProcessDump, TransitStreamSpec, WorkloadKind};

use super::*;

fn ctx() -> InjectContext {
    InjectContext {
        default_image: "stallwatch:test".into(),
    }
}

fn ts() -> TransitStream {
    let mut ts = TransitStream::new(
        "orders",
        TransitStreamSpec::with_workload(WorkloadKind::Deployment, "orders-feed"),
    );
    ts.metadata.namespace = Some("transit".into());
    ts
}

fn pod(label: Option<&str>) -> Pod {
    let mut labels = BTreeMap::from([("app".to_string(), "orders-feed".to_string())]);
    if let Some(l) = label {
        labels.insert(INJECT_LABEL.into(), l.into());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("orders-feed-7d9c-".into()),
            namespace: Some("transit".into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "feed".into(),
                image: Some("orders:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn injected(pod: &Pod, ts: &TransitStream) -> Pod {
    match inject(pod, Some(ts), &ctx()) {
        Injection::Patch(p) => apply_to(pod, &p).expect("the patch applies"),
        Injection::Skip(why) => panic!("skipped: {why}"),
    }
}

fn volume<'a>(pod: &'a Pod, name: &str) -> &'a Volume {
    pod.spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn a_labelled_pod_gets_sidecar_gate_volumes_and_labels() {
    let out = injected(&pod(Some("orders")), &ts());
    let spec = out.spec.as_ref().unwrap();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["feed", SIDECAR_CONTAINER],
        "the app container stays first"
    );
    assert_eq!(spec.containers[0].image.as_deref(), Some("orders:1"));
    let gates: Vec<&str> = spec
        .readiness_gates
        .iter()
        .flatten()
        .map(|g| g.condition_type.as_str())
        .collect();
    assert_eq!(gates, [CONDITION_TYPE]);
    assert!(volume(&out, DUMPS_VOLUME).empty_dir.is_some());
    assert_eq!(
        volume(&out, TOKEN_VOLUME)
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("orders-sidecar-admin")
    );
    assert!(volume(&out, API_VOLUME).projected.is_some());
    assert_eq!(spec.share_process_namespace, None);
    let labels = out.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[labels::TRANSITSTREAM], "orders");
    assert_eq!(labels["app"], "orders-feed", "the workload's labels stay");
    assert_eq!(
        out.metadata.annotations.as_ref().unwrap()[INJECTED_ANNOTATION],
        "orders"
    );
}

#[test]
fn the_sidecar_gets_the_downward_api_env_and_the_streams_settings() {
    let mut t = ts();
    t.spec.stall_after = std::time::Duration::from_secs(5).into();
    let out = injected(&pod(Some("orders")), &t);
    let sidecar = &out.spec.as_ref().unwrap().containers[1];
    let env: BTreeMap<&str, &EnvVar> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e))
        .collect();
    assert_eq!(env["SIDECAR_STALL_AFTER"].value.as_deref(), Some("5s"));
    assert_eq!(
        env["SIDECAR_ADMIN_TOKEN_FILE"].value.as_deref(),
        Some("/var/run/stallwatch/admin/token")
    );
    for (var, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_UID", "metadata.uid"),
        ("NODE_NAME", "spec.nodeName"),
    ] {
        let field = env[var].value_from.as_ref().unwrap().field_ref.as_ref();
        assert_eq!(field.unwrap().field_path, path, "{var}");
    }
    assert_eq!(sidecar.image.as_deref(), Some("stallwatch:test"));
    let mounts: Vec<(&str, &str)> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert!(mounts.contains(&(DUMPS_VOLUME, "/dumps")), "{mounts:?}");
    assert!(
        mounts.contains(&(API_VOLUME, "/var/run/secrets/kubernetes.io/serviceaccount")),
        "{mounts:?}"
    );
}

#[test]
fn process_dumps_share_the_process_namespace_and_use_the_claim() {
    let mut t = ts();
    t.spec.dumps.process_dump = ProcessDump::Minidump;
    t.spec.dumps.volume = Some(stallwatch_crds::DumpVolume {
        existing_claim: Some("evidence".into()),
        template: None,
    });
    let out = injected(&pod(Some("orders")), &t);
    let spec = out.spec.as_ref().unwrap();
    assert_eq!(spec.share_process_namespace, Some(true));
    let claim = volume(&out, DUMPS_VOLUME).persistent_volume_claim.as_ref();
    assert_eq!(claim.unwrap().claim_name, "evidence");
    let caps = spec.containers[1]
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone());
    assert_eq!(caps, Some(vec!["SYS_PTRACE".to_string()]));
}

#[test]
fn injection_is_idempotent() {
    let once = injected(&pod(Some("orders")), &ts());
    match inject(&once, Some(&ts()), &ctx()) {
        Injection::Skip(why) => assert_eq!(why, "already injected"),
        Injection::Patch(p) => panic!("injected twice: {p:?}"),
    }
    // A pod that somehow lost the annotation but has the sidecar is not injected either.
    let mut stripped = once.clone();
    stripped.metadata.annotations = None;
    assert!(matches!(
        inject(&stripped, Some(&ts()), &ctx()),
        Injection::Skip(_)
    ));
}

#[test]
fn existing_lists_are_appended_to_not_replaced() {
    let mut p = pod(Some("orders"));
    let spec = p.spec.as_mut().unwrap();
    spec.volumes = Some(vec![builders::empty_dir("cache", "1Gi")]);
    spec.readiness_gates = Some(vec![PodReadinessGate {
        condition_type: "example.com/Warm".into(),
    }]);
    p.metadata.annotations = Some(BTreeMap::from([("team".into(), "orders".into())]));
    let out = injected(&p, &ts());
    let spec = out.spec.as_ref().unwrap();
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        volumes,
        ["cache", TMP_VOLUME, TOKEN_VOLUME, API_VOLUME, DUMPS_VOLUME]
    );
    assert_eq!(spec.readiness_gates.as_ref().unwrap().len(), 2);
    let annotations = out.metadata.annotations.unwrap();
    assert_eq!(annotations["team"], "orders");
    assert_eq!(annotations[INJECTED_ANNOTATION], "orders");
}

#[test]
fn pods_without_a_matching_workload_ref_stream_are_left_alone() {
    assert!(matches!(
        inject(&pod(None), Some(&ts()), &ctx()),
        Injection::Skip(_)
    ));
    let Injection::Skip(why) = inject(&pod(Some("orders")), None, &ctx()) else {
        panic!("injected without a TransitStream");
    };
    assert!(why.contains("no TransitStream"), "{why}");
    let deployed = TransitStream::new(
        "orders",
        TransitStreamSpec::with_source(stallwatch_crds::Source {
            synthetic: Some(Default::default()),
            ..Default::default()
        }),
    );
    let Injection::Skip(why) = inject(&pod(Some("orders")), Some(&deployed), &ctx()) else {
        panic!("injected for a TransitStream without workloadRef");
    };
    assert!(why.contains("no workloadRef"), "{why}");
}

/// Whether a process (uid, gid, supplementary groups) may read a Secret file the way the
/// kubelet writes it: owner root, group the pod's `fsGroup` (else root), `mode`.
fn kubelet_secret_file_readable(
    mode: i32,
    fs_group: Option<i64>,
    uid: i64,
    gid: i64,
    groups: &[i64],
) -> bool {
    let file_gid = fs_group.unwrap_or(0);
    if uid == 0 {
        // Owner: root, even with every capability dropped (no DAC_OVERRIDE needed).
        return mode & 0o400 != 0;
    }
    if gid == file_gid || groups.contains(&file_gid) {
        return mode & 0o040 != 0;
    }
    mode & 0o004 != 0
}

/// Finding 1 of issue 20: a workload without `fsGroup` (like `examples/workload-ref.yaml`) got
/// a 0440 root:root token file its injected sidecar (uid 65532) could not read, and every
/// dump answered 401.
#[test]
fn the_injected_sidecar_can_read_its_admin_token_whatever_the_pods_security_context() {
    for (what, fs_group) in [
        ("no fsGroup", None),
        ("another fsGroup", Some(1000)),
        ("fsGroup 0", Some(0)),
    ] {
        let mut p = pod(Some("orders"));
        if let Some(g) = fs_group {
            p.spec.as_mut().unwrap().security_context =
                Some(k8s_openapi::api::core::v1::PodSecurityContext {
                    fs_group: Some(g),
                    ..Default::default()
                });
        }
        for process_dump in [ProcessDump::None, ProcessDump::Minidump] {
            let mut stream = ts();
            stream.spec.dumps.process_dump = process_dump;
            let out = injected(&p, &stream);
            let mode = volume(&out, TOKEN_VOLUME)
                .secret
                .as_ref()
                .and_then(|s| s.default_mode)
                .expect("a defaultMode");
            let sidecar = out
                .spec
                .as_ref()
                .unwrap()
                .containers
                .iter()
                .find(|c| c.name == SIDECAR_CONTAINER)
                .unwrap();
            let sc = sidecar.security_context.as_ref().unwrap();
            let (uid, gid) = (sc.run_as_user.unwrap(), sc.run_as_group.unwrap());
            let groups: Vec<i64> = fs_group.into_iter().collect();
            assert!(
                kubelet_secret_file_readable(mode, fs_group, uid, gid, &groups),
                "{what}, {process_dump:?}: mode {mode:o} unreadable by uid {uid} gid {gid}"
            );
        }
    }
}
