//! `transit-operator`: reconciles `TransitStream` resources into a broadcaster workload and
//! remediates stalls (dump, then restart) within safety rails.
//!
//! What lives here:
//! - [`builders`]: pure desired-object builders (Deployment, Service, PVC, RBAC, Secret,
//!   ConfigMap), unit-tested.
//! - [`observe`]: pure translations (pods to the decision function's `PodState`, spec to
//!   `Policy`, the next status with its conditions).
//! - [`reconcile`]: the pipeline and the remediation executor around
//!   `stallwatch_core::remediation::decide`.
//! - [`sidecar`]: the sidecar admin API behind a trait (faked in tests).
//! - [`leader`]: Lease-based leader election (pure decision, thin I/O).
//! - [`rbac`]: the permissions the operator uses, one table each (`transit-operator rbac`).
//! - [`run`]: caches, controller wiring, graceful shutdown; [`http`]: `/metrics`, `/healthz`,
//!   `/readyz`; [`metrics`]; [`error`].
//!
//! May depend on `stallwatch-core`, `stallwatch-crds`, kube, k8s-openapi, axum, reqwest,
//! prometheus-client. The binary (`main.rs`) adds anyhow and clap.
#![forbid(unsafe_code)]

pub mod builders;
pub mod controller;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod rbac;
pub mod reconcile;
pub mod run;
pub mod sidecar;

pub use error::{Error, Result};
