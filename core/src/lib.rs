//! Stallwatch's domain logic, free of Kubernetes and gRPC dependencies.
//!
//! - [`report`]: the broadcaster-to-sidecar report protocol (`stallwatch.report.v1`).
//! - [`taskdump`]: the broadcaster's in-process diagnostic dump (`stallwatch.taskdump.v1`).
//! - [`verdict`]: the per-stream stall verdict state machine the sidecar runs.
//! - [`condition`]: the pod condition's message format, written by the sidecar, read by the operator.
//! - [`bundle`]: dump bundle manifest types and retention planning.
//! - [`remediation`]: the remediation decision function the operator (and the local demo) run.
//! - `client` (feature `client`): the HTTP report client for Rust broadcasters.
//! - [`clock`], [`sync`]: the wall clock and the lock-poisoning policy every crate uses.
//! - `shutdown` (feature `signal`): the SIGTERM/SIGINT future all three binaries stop on.
//!
//! May depend on serde and thiserror; with `client`, on reqwest and tokio. Never on kube,
//! k8s-openapi, tonic or axum: the I/O crates wrap this one.
#![forbid(unsafe_code)]

pub mod bundle;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod condition;
pub mod remediation;
pub mod report;
#[cfg(feature = "signal")]
pub mod shutdown;
pub mod sync;
pub mod taskdump;
pub mod verdict;
