//! Shared test support for the Stallwatch workspace. Use it as a dev-dependency only (the
//! end-to-end crate `stallwatch-e2e`, itself test code, is the one exception).
//!
//! - [`report`]: `StreamReport` / `Report` builders for the report protocol.
//! - [`taskdump`]: a task dump shaped like the broadcaster's.
//! - [`transit_stream`]: `TransitStream::test("demo")...build()` for a TransitStream as the
//!   API server would store it.
//! - [`gtfs_rt`]: where the real GTFS-realtime captures are, and reading them.
//! - [`net`]: free loopback ports.
//! - [`wait`]: `eventually(what, check)`, polling with one generous timeout.
//! - `fake_api` and `harness` (feature `operator`): a fake Kubernetes API server (kube's
//!   tower-test pattern) and the reconcile harness around it. They link `transit-operator`,
//!   so crates that only need the builders do not compile the operator.
//!
//! A crate's own `src/` unit tests cannot use this crate when it depends on that crate (two
//! copies of it would be linked, with distinct types): `stallwatch-core` and
//! `stallwatch-crds` always, `transit-operator` with feature `operator`. Their integration
//! tests (`tests/*.rs`) and benches can.

#![deny(missing_docs)]

pub mod gtfs_rt;
pub mod net;
pub mod report;
pub mod taskdump;
pub mod transit_stream;
pub mod wait;

#[cfg(feature = "operator")]
pub mod fake_api;
#[cfg(feature = "operator")]
pub mod harness;

pub use transit_stream::{TransitStreamBuilder, TransitStreamExt};
