//! `transit-operator`: reconciles `TransitStream` resources into a broadcaster workload and
//! remediates stalls (dump, then restart) within safety rails.
//!
//! Modules:
//! - [`builders`]: pure desired-object builders (Deployment = pod spec + containers + volumes,
//!   Service, PVC, RBAC, Secret, ConfigMap), unit-tested.
//! - `observe`: pure translations (pods to the decision function's `PodState`, spec to
//!   `Policy`, the next status: one function per condition, `ConditionUpdate`).
//! - [`reconcile`]: the pipeline (fetch → validate → build desired → apply → remediate → write
//!   status, one function each) and the remediation executor around
//!   `stallwatch_core::remediation::decide`.
//! - [`sidecar`]: the sidecar admin API behind a trait (faked in tests).
//! - [`leader`]: Lease-based leader election (pure decision, thin I/O).
//! - [`workload`]: `spec.workloadRef`: the referenced workload read (never written), the
//!   sidecar Role bound to its pod ServiceAccount, which pods carry the sidecar.
//! - [`webhook`]: the sidecar-injection admission webhook (pure patch, own CA and rotation,
//!   `caBundle` registration, the HTTPS server), served by every replica.
//! - [`rbac`]: the permissions the operator uses, one `const` table per role; `builders` and
//!   the tests use them, `transit-operator rbac` prints them, the chart is checked against them.
//! - `controller`: caches (reflectors) and the kube-runtime controller; `drift`: which owned
//!   objects someone else deleted or changed (metadata-only watches), so the next reconcile
//!   re-applies them.
//! - [`run`]: start-up (HTTP endpoints, shutdown signal, leader election, then the controller);
//!   `main.rs` only parses the CLI and calls [`run::run`].
//! - `http`: `/metrics`, `/healthz`, `/readyz`; [`health`]: the heartbeats of the operator's
//!   own loops behind `/healthz`; [`metrics`]; [`error`] (`label()` = metric label, generated
//!   with `LABELS` from one table).
//!
//! Module graph (an arrow points to what a module imports; no cycles):
//! ```text
//! run ─→ controller ─→ reconcile ─→ builders ─→ rbac
//!  │                      ├──→ observe
//!  │                      ├──→ sidecar ─→ builders
//!  │                      ├──→ workload ─→ builders, webhook::inject
//!  │                      └──→ metrics ─→ error
//!  ├──→ http ─→ metrics, health
//!  ├──→ webhook ─→ builders, sidecar (BoxFuture)
//!  └──→ leader ─→ health        (controller ─→ health too)
//! ```
//!
//! Where a change goes:
//! - a new field on a managed object → `builders` (a new object kind: also `rbac::OPERATOR`
//!   and the chart's `templates/rbac.yaml`);
//! - a new API call → `rbac` first (its test ties the table to the code), then the caller;
//! - a new status condition → one function in `observe`, called from `next_status`;
//! - a new pipeline or remediation step → `reconcile` (the decision itself lives in
//!   `stallwatch_core::remediation`);
//! - a new CLI option → `main.rs` (clap, with an env fallback) and `run::Config`;
//! - a new error → `error` (variant and its label in the one `labels!` table).
//!
//! May depend on `stallwatch-core`, `stallwatch-crds`, kube, k8s-openapi, axum, reqwest,
//! prometheus-client. The binary (`main.rs`) adds anyhow and clap.
#![forbid(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

pub mod builders;
pub(crate) mod controller;
pub(crate) mod drift;
pub mod error;
pub mod health;
pub(crate) mod http;
pub mod leader;
pub mod metrics;
pub(crate) mod observe;
pub mod owner;
pub mod rbac;
pub mod reconcile;
pub mod run;
pub mod sidecar;
pub mod webhook;
pub mod workload;

pub use error::{Error, Result};
