//! The generated protobuf/gRPC code is checked in (`src/generated/`), so building the crate
//! needs no `protoc`. This test regenerates it with `tonic-prost-build` and the vendored
//! `protoc` into a temporary directory and fails if the checked-in files differ.
//!
//! After editing a `.proto`: `STALLWATCH_REGENERATE=1 cargo test -p transit-broadcaster --test generated_code`.

use std::path::{Path, PathBuf};

const FILES: &[&str] = &[
    "transit_realtime.rs",
    "stallwatch.transit.v1.rs",
    "transit_descriptor.bin",
];

fn generate(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = root.join("proto");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc for this platform");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        // No server: `serve/grpc.rs` implements the service by hand (each update encoded once for
        // all subscribers, not per subscriber), so a generated one would be unused.
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .file_descriptor_set_path(out.join("transit_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                proto.join("gtfs-realtime.proto"),
                proto.join("stallwatch/transit/v1/transit.proto"),
            ],
            std::slice::from_ref(&proto),
        )
        .expect("protoc and code generation succeed");
}

#[test]
fn checked_in_generated_code_matches_the_protos() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path());
    let checked_in: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    let regenerate = std::env::var_os("STALLWATCH_REGENERATE").is_some();
    let mut stale = Vec::new();
    for file in FILES {
        let fresh = std::fs::read(tmp.path().join(file))
            .unwrap_or_else(|e| panic!("generator did not produce {file}: {e}"));
        let path = checked_in.join(file);
        let current = std::fs::read(&path).unwrap_or_default();
        if current != fresh {
            if regenerate {
                std::fs::create_dir_all(&checked_in).unwrap();
                std::fs::write(&path, &fresh).unwrap();
            } else {
                stale.push(*file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "src/generated/{stale:?} differ from what the protos generate; run \
         STALLWATCH_REGENERATE=1 cargo test -p transit-broadcaster --test generated_code"
    );
}
