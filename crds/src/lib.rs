//! The `TransitStream` custom resource (`stallwatch.io/v1alpha1`, short name `ts`).
//!
//! What lives here: the Rust types that generate `crds/transitstream.yaml` ([`crd_yaml`]), the
//! schema-level validation (ranges, enums, defaults, CEL rules) that lets the API server refuse a
//! bad resource with a message that says what to fix, and [`validate`], the pure checks the schema
//! cannot express (the operator runs them before building anything).
//!
//! May depend on `stallwatch-core`, kube (derive only), k8s-openapi, schemars and serde. No I/O.
//!
//! Modules, each importing only those before it: [`status`] (the status and remediation
//! record types) ← `spec` (the spec types, limits, defaults, [`crd_yaml`], [`labels`]) ←
//! `validate`; `detection` (`spec.detection`, zero-code mode's metrics mapping) is a leaf
//! that `spec` imports. Everything is re-exported at the crate root.
//!
//! `spec` is one file per part of the spec: `spec.rs` (the root `TransitStreamSpec`, the
//! annotations, [`crd_yaml`], [`labels`]), `spec/source.rs`, `spec/workload.rs`,
//! `spec/streams.rs`, `spec/remediation.rs`, `spec/dumps.rs`, and `spec/limits.rs` (every
//! limit and default).
//!
//! Where a change goes: a new spec field → the file of its part of the spec (`spec.rs` for a
//! top-level field); a limit or default → `spec/limits.rs` (constants/`default_*` functions
//! the schema attributes, `Default` impls and `validate` share); then
//! `scripts/check-generated.sh --write`. A doc comment on a spec type or field is its
//! description in the CRD schema. A check the schema cannot express → `validate.rs`; a status
//! field → `status.rs`.
#![forbid(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]
#![deny(missing_docs)]

mod detection;
mod spec;
pub mod status;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod validate;

pub use detection::*;
pub use spec::*;
pub use status::*;
pub use validate::{SpecError, validate};
