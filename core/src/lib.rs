//! Stallwatch's domain logic, free of Kubernetes and gRPC dependencies.
//!
//! - [`report`]: the broadcaster-to-sidecar report protocol (`stallwatch.report.v1`).
//! - [`taskdump`]: the broadcaster's in-process diagnostic dump (`stallwatch.taskdump.v1`).
//! - [`verdict`]: the per-stream stall verdict state machine the sidecar runs.
//! - [`exposition`], [`scrape`]: zero-code mode: an app's own metrics parsed and turned into reports.
//! - [`condition`]: the pod condition's message format, written by the sidecar, read by the operator.
//! - [`bundle`]: dump bundle manifest types and retention planning.
//! - [`remediation`]: the remediation decision function the operator (and the local demo) run.
//! - `client` (feature `client`): the HTTP report client for Rust broadcasters.
//! - [`clock`], [`sync`]: the wall clock and the lock-poisoning policy every crate uses.
//! - [`logging`]: whether a binary's text logs carry colours (only on a terminal).
//! - [`ports`]: the ports the programs listen on by default, one definition each.
//! - `shutdown` (feature `signal`): the SIGTERM/SIGINT future all three binaries stop on.
//!
//! May depend on serde and thiserror; with `client`, on reqwest and tokio. Never on kube,
//! k8s-openapi, tonic or axum: the I/O crates wrap this one.
//!
//! ## Where a change goes
//! - A report field: [`report`] and `docs/report-protocol.md` together (a test compares them);
//!   the crates that send and read it follow (broadcaster's reporter, sidecar's ingest).
//! - A stall rule or threshold: [`verdict`]. One stream's report is judged in `Track::judge`
//!   (`verdict/track.rs`: waiting clock in `date_wait`, verdict changes in `next_verdict`);
//!   silence in `Judge::tick` (`verdict/judge.rs`); thresholds in `verdict/types.rs`.
//! - The pod condition's wording: [`condition`] only; the sidecar writes it and the operator
//!   parses it back with the same functions.
//! - A remediation rung or rail: [`remediation`]. In `remediation/rungs.rs`: rung order is
//!   `next_step`; what the attempt in flight does at each step is one `InFlight` method
//!   (`after_recorded`, `during_soft_restart`, `during_dump`, `during_restart`); the effect a
//!   rung issues is `rung_effect`. In `remediation/rails.rs`: the rails before a start,
//!   `remediable_pod` and `acting_rail`. A field of the persisted record: `remediation/ledger.rs`
//!   (and its mirror in `crds/src/status.rs`). The adapters that execute
//!   [`remediation::Effect`]s (the operator's reconciler, the demo's local remediator in
//!   `tests/`) change only for a new effect.
//! - Zero-code mode: reading the exposition format in [`exposition`]; what a metric means for
//!   the verdict machine (which series is depth, capacity, dequeued, a restart) in [`scrape`]
//!   (`ScrapeAdapter::adapt`; the mapped names in `scrape/mapping.rs`, what a value must be in
//!   `scrape/read.rs`). The sidecar only fetches and hands over.
//! - Bundle layout, names or retention: [`bundle`]; the sidecar does the file system work.
//! - The wall clock, the lock-poisoning policy, the shutdown signal: [`clock`], [`sync`],
//!   `shutdown`; other crates use these rather than their own copies.
//! - Anything that needs kube, tonic, axum or a clock of its own belongs in the crate that
//!   does the I/O, not here.
//!
//! Unit tests of a module longer than a screen live in its sibling `<module>/tests.rs`.
#![forbid(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]
#![deny(missing_docs)]

pub mod bundle;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod condition;
pub mod exposition;
pub mod logging;
pub mod ports;
pub mod remediation;
pub mod report;
pub mod scrape;
#[cfg(feature = "signal")]
pub mod shutdown;
pub mod sync;
pub mod taskdump;
pub mod verdict;
