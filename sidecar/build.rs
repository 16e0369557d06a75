//! Link flags for the `transit-sidecar` binary's footprint (see README "Tests and benchmarks").

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // A PIE's relative relocations as RELR, a bitmap of a few KiB instead of ~0.7 MiB of
        // RELA entries that the loader reads, and so keeps resident, at every start. Needs
        // binutils >= 2.38 or lld to link and glibc >= 2.36 to run (Debian 12, distroless
        // cc-debian12); an older glibc refuses to start the binary rather than misbehaving.
        println!("cargo:rustc-link-arg-bin=transit-sidecar=-Wl,-z,pack-relative-relocs");
    }
}
