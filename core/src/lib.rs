//! Stallwatch's domain logic, free of Kubernetes and gRPC dependencies.
//!
//! - [`report`]: the broadcaster-to-sidecar report protocol (`stallwatch.report.v1`).
//! - [`taskdump`]: the broadcaster's in-process diagnostic dump (`stallwatch.taskdump.v1`).
//! - `client` (feature `client`): the HTTP report client for Rust broadcasters.
//!
//! May depend on serde and thiserror; with `client`, on reqwest and tokio. Never on kube,
//! k8s-openapi, tonic or axum: the I/O crates wrap this one.
#![forbid(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
pub mod report;
pub mod taskdump;
