//! `transit-operator`: reconciles `TransitStream` resources into a broadcaster workload and
//! remediates stalls (dump, then restart) within safety rails.
//!
//! Modules:
//! - [`builders`]: pure desired-object builders, unit-tested, one module per object or part:
//!   `pod` (Deployment, pod spec), `container` (env, ports, probes, security context),
//!   `volume` (volumes, mounts, dump claim), `config` (ConfigMap, sidecar settings, config
//!   hash), `access` (sidecar ServiceAccount/Role/RoleBinding, admin Secret); names, ports,
//!   metadata and the Service in `builders` itself.
//! - `observe`: pure translations: `observe::pod` (a pod to the decision function's
//!   `PodState` and to its `PodHealth`), spec to `Policy`, the next status (`next_status`),
//!   `observe::conditions` (one function per condition, `ConditionUpdate`).
//! - [`reconcile`]: the shared `Context` (per-resource state, keyed by uid) and the controller's
//!   entry points; the steps in `reconcile::pipeline` (fetch → validate → build desired → apply
//!   → remediate → write status, one function each), `apply` (server-side apply, admin token),
//!   `status` (status writes), `remediate` (the executor around
//!   `stallwatch_core::remediation::decide`), `effects` (one function per effect), `drill`.
//! - [`sidecar`]: the sidecar admin API behind a trait (faked in tests).
//! - `leader`: Lease-based leader election (pure decision, thin I/O).
//! - `workload`: `spec.workloadRef`: the referenced workload read (never written), the
//!   sidecar Role bound to its pod ServiceAccount, which pods carry the sidecar.
//! - [`webhook`]: the sidecar-injection admission webhook (pure patch, own CA and rotation,
//!   `caBundle` registration, the HTTPS server), served by every replica.
//! - [`rbac`]: the permissions the operator uses, one `const` table per role; `builders` and
//!   the tests use them, `transit-operator rbac` prints them, the chart is checked against them.
//! - `controller`: the kube-runtime controller and the owned objects' metadata-only watches;
//!   `controller::cache`: the caches (reflectors) and what they keep of a pod or TransitStream
//!   (`slim_pod`, `slim_stream`); `drift`: which owned objects someone else deleted or changed,
//!   so the next reconcile re-applies them.
//! - [`run`]: start-up (HTTP endpoints, shutdown signal, leader election, then the controller);
//!   `main.rs` only parses the CLI and calls [`run::run`].
//! - `http`: `/metrics`, `/healthz`, `/readyz`; [`health`]: the heartbeats of the operator's
//!   own loops behind `/healthz`; [`metrics`]; `error` (`label()` = metric label, generated
//!   with `LABELS` from one table).
//!
//! Module graph (an arrow points to what a module imports; no cycles):
//! ```text
//! run ─→ controller ─→ reconcile ─→ builders ─→ rbac
//!  │        └──→ drift ←──┤
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
//! - a new field on a managed object → the `builders` module of that object (a container's
//!   env, port or probe: `builders::container`; a volume: `builders::volume`; a ConfigMap
//!   entry: `builders::config`); a new object kind: a builder, `Desired`, also
//!   `rbac::OPERATOR` and the chart's `templates/rbac.yaml`;
//! - a new API call → `rbac` first (its test ties the table to the code), then the caller;
//! - a new status condition → one function in `observe::conditions`, called from
//!   `observe::next_status`;
//! - a new pipeline step → `reconcile::pipeline`; a new remediation effect →
//!   `reconcile::effects` (called from `execute`); the decision itself lives in
//!   `stallwatch_core::remediation`;
//! - something more the operator reads from a cached pod → `controller::cache::slim_pod` (its
//!   tests say what survives);
//! - a new CLI option → `main.rs` (clap, with an env fallback) and `run::Config`;
//! - a new error → `error` (variant and its label in the one `labels!` table).
//!
//! May depend on `stallwatch-core`, `stallwatch-crds`, kube, k8s-openapi, axum, reqwest,
//! prometheus-client. The binary (`main.rs`) adds anyhow and clap.
#![forbid(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

// A module is `pub` when another crate uses it; the comment says which. The rest is
// `pub(crate)`.
// The objects the operator builds: the env contract test, the probes test, the benches.
pub mod builders;
pub(crate) mod controller;
pub(crate) mod drift;
pub(crate) mod error;
// The hidden wedge hook's env name: the binary.
pub mod health;
pub(crate) mod http;
pub(crate) mod leader;
// The metric catalog (`transit-operator metrics`), and the registry the harness reads.
pub mod metrics;
pub(crate) mod observe;
// The operator's own Deployment name, set by the binary.
pub mod owner;
// The ClusterRole the operator needs (`transit-operator rbac`), checked against the README.
pub mod rbac;
// `reconcile` and its `Context`: the harness and the tests that drive one reconcile.
pub mod reconcile;
// Start-up (`run`, `Config`): the binary, the benches and the cluster tests.
pub mod run;
// The sidecar admin client seam: the harness and tests answer it with fakes.
pub mod sidecar;
// The admission webhook: the binary (certificates) and the env contract test.
pub mod webhook;
pub(crate) mod workload;

pub use error::{Error, Result};
