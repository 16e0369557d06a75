//! The images `scripts/build-images.py` builds (the node tests run them) against the
//! repository's Dockerfile, which stays the truth for users with a container engine: every
//! `COPY`, `USER`, `ENTRYPOINT`, `CMD`, `LABEL` and `EXPOSE` of each runtime stage is
//! reflected in the built image, and the distroless-equivalent base has what distroless has
//! (CA certificates, `nonroot` 65532, `/tmp` 1777) and no shell.
//!
//! Without built images it prints one `skipped` line (fails with
//! `STALLWATCH_REQUIRE_TEST_TOOLS=1`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use stallwatch_envtest::assets::workspace_root;
use stallwatch_envtest::oci::ImageArchive;

/// One runtime stage as the Dockerfile says it.
#[derive(Debug, Default, PartialEq)]
struct Stage {
    name: String,
    base: String,
    labels: BTreeMap<String, String>,
    copies: Vec<String>,
    apt: Vec<String>,
    user: Option<String>,
    exposed: Vec<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
}

/// Instructions with `\` continuations joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (current.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        out.push(std::mem::take(&mut current));
    }
    out
}

/// `k="v" k2="v 2"` pairs of a LABEL.
fn labels(rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], &quoted[(end + 1).min(quoted.len())..])
            }
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        out.push((key.trim().to_string(), value.to_string()));
        rest = next.trim();
    }
    out
}

/// The stages with an ENTRYPOINT (what users run), in order.
fn runtime_stages(dockerfile: &str) -> Vec<Stage> {
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in instructions(dockerfile) {
        let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let mut rest = rest.trim().to_string();
        for (k, v) in &args {
            rest = rest.replace(&format!("${{{k}}}"), v);
        }
        let stage = stages.last_mut();
        match (word.to_ascii_uppercase().as_str(), stage) {
            ("ARG", None) => {
                if let Some((k, v)) = rest.split_once('=') {
                    args.insert(k.to_string(), v.to_string());
                }
            }
            ("FROM", _) => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                stages.push(Stage {
                    name: parts.get(2).unwrap_or(&parts[0]).to_string(),
                    base: parts[0].to_string(),
                    ..Stage::default()
                });
            }
            ("LABEL", Some(s)) => s.labels.extend(labels(&rest)),
            ("COPY", Some(s)) => {
                let paths: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|t| !t.starts_with("--"))
                    .collect();
                s.copies.extend(paths.last().map(|d| d.to_string()));
            }
            ("RUN", Some(s)) if rest.contains("apt-get install") => {
                let install = rest.split("apt-get install").nth(1).unwrap_or("");
                let install = install.split("&&").next().unwrap_or("");
                s.apt.extend(
                    install
                        .split_whitespace()
                        .filter(|t| !t.starts_with('-'))
                        .map(str::to_string),
                );
            }
            ("USER", Some(s)) => s.user = Some(rest),
            ("EXPOSE", Some(s)) => s.exposed.extend(rest.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })),
            ("ENTRYPOINT", Some(s)) => s.entrypoint = serde_json::from_str(&rest).ok(),
            ("CMD", Some(s)) => s.cmd = serde_json::from_str(&rest).ok(),
            _ => {}
        }
    }
    stages.retain(|s| s.entrypoint.is_some());
    stages
}

#[test]
fn the_dockerfile_parser_reads_a_runtime_stage() {
    let text = r#"
ARG SUITE=bookworm
FROM rust:1 AS builder
RUN cargo build
FROM debian:${SUITE}-slim AS app
RUN apt-get update \
 && apt-get install -y --no-install-recommends gdb ca-certificates \
 && rm -rf /var/lib/apt/lists/*
LABEL a="one two" \
      b="three"
COPY --from=builder /out/x /usr/local/bin/x
USER 65532:65532
EXPOSE 80 53/udp
ENTRYPOINT ["/usr/local/bin/x"]
CMD ["serve"]
"#;
    let stages = runtime_stages(text);
    assert_eq!(stages.len(), 1, "{stages:?}");
    let s = &stages[0];
    assert_eq!(s.name, "app");
    assert_eq!(s.base, "debian:bookworm-slim");
    assert_eq!(s.labels["a"], "one two");
    assert_eq!(s.labels["b"], "three");
    assert_eq!(s.copies, ["/usr/local/bin/x"]);
    assert_eq!(s.apt, ["gdb", "ca-certificates"]);
    assert_eq!(s.user.as_deref(), Some("65532:65532"));
    assert_eq!(s.exposed, ["80/tcp", "53/udp"]);
    assert_eq!(s.entrypoint, Some(vec!["/usr/local/bin/x".to_string()]));
    assert_eq!(s.cmd, Some(vec!["serve".to_string()]));
}

fn images_index() -> Option<serde_json::Value> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = std::env::var_os("STALLWATCH_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("images/images.json"));
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("images.json")),
        Err(_) => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("STALLWATCH_REQUIRE_TEST_TOOLS").is_some_and(|v| v == "1");
            assert!(
                !required,
                "{} is missing: run scripts/build-images.py",
                path.display()
            );
            stallwatch_envtest::say(&format!(
                "skipped every_runtime_stage_of_the_dockerfile_is_in_its_image: {} is missing \
                 (run scripts/build-images.py)",
                path.display()
            ));
            None
        }
    }
}

#[test]
fn every_runtime_stage_of_the_dockerfile_is_in_its_image() {
    let Some(index) = images_index() else {
        return;
    };
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
    let stages = runtime_stages(&dockerfile);
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["operator", "stallwatch", "stallwatch-debug"]);
    for stage in &stages {
        let archive = index[&stage.name]["archive"]
            .as_str()
            .unwrap_or_else(|| panic!("no image built for stage {}", stage.name));
        let image = ImageArchive::read(std::path::Path::new(archive)).unwrap();
        let c = &image.config["config"];
        let what = format!("image {} ({archive})", stage.name);
        assert_eq!(c["User"].as_str(), stage.user.as_deref(), "{what}: USER");
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(stage.entrypoint),
            "{what}: ENTRYPOINT"
        );
        assert_eq!(c["Cmd"], serde_json::json!(stage.cmd), "{what}: CMD");
        for (k, v) in &stage.labels {
            assert_eq!(
                c["Labels"][k].as_str(),
                Some(v.as_str()),
                "{what}: LABEL {k}"
            );
        }
        let mut exposed: Vec<&String> = c["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        exposed.sort();
        let mut want: Vec<&String> = stage.exposed.iter().collect();
        want.sort();
        assert_eq!(exposed, want, "{what}: EXPOSE");
        for dest in &stage.copies {
            let entry = image
                .file(dest)
                .unwrap_or_else(|| panic!("{what}: COPY ... {dest} is not in the image"));
            assert_eq!(entry.kind, b'0', "{what}: {dest} is not a file");
            assert_ne!(entry.mode & 0o111, 0, "{what}: {dest} is not executable");
            assert_eq!((entry.uid, entry.gid), (0, 0), "{what}: {dest} owner");
        }
        for package in &stage.apt {
            let marker = format!("var/lib/dpkg/info/{package}.list");
            let amd64 = format!("var/lib/dpkg/info/{package}:amd64.list");
            assert!(
                image.file(&marker).is_some() || image.file(&amd64).is_some(),
                "{what}: apt-get install {package} is not in the image"
            );
        }
        if stage.base.starts_with("gcr.io/distroless/") {
            distroless_base(&image, &what);
        }
    }
}

/// What `gcr.io/distroless/cc-debian12:nonroot` gives: CA certificates, `nonroot` 65532,
/// `/tmp` 1777, its home, glibc, and no shell.
fn distroless_base(image: &ImageArchive, what: &str) {
    let passwd = image.file("etc/passwd").expect("/etc/passwd");
    assert!(
        String::from_utf8_lossy(&passwd.data).contains("nonroot:x:65532:65532:"),
        "{what}: /etc/passwd has no nonroot 65532"
    );
    let group = image.file("etc/group").expect("/etc/group");
    assert!(
        String::from_utf8_lossy(&group.data).contains("nonroot:x:65532:"),
        "{what}: /etc/group"
    );
    let certs = image
        .file("etc/ssl/certs/ca-certificates.crt")
        .unwrap_or_else(|| panic!("{what}: no CA certificates"));
    assert!(
        String::from_utf8_lossy(&certs.data).contains("BEGIN CERTIFICATE"),
        "{what}: CA certificates"
    );
    let tmp = image
        .file("tmp")
        .unwrap_or_else(|| panic!("{what}: no /tmp"));
    assert_eq!(tmp.mode & 0o7777, 0o1777, "{what}: /tmp mode");
    let home = image
        .file("home/nonroot")
        .unwrap_or_else(|| panic!("{what}: no /home/nonroot"));
    assert_eq!((home.uid, home.gid), (65532, 65532), "{what}: home owner");
    assert!(
        image.file("bin/sh").is_none() && image.file("usr/bin/sh").is_none(),
        "{what}: a shell in a distroless image"
    );
    assert!(
        image
            .layers
            .iter()
            .flatten()
            .any(|e| e.path.contains("libc.so.6")),
        "{what}: no glibc"
    );
    assert_eq!(
        image.config["config"]["WorkingDir"].as_str(),
        Some("/home/nonroot"),
        "{what}: WorkingDir"
    );
}
