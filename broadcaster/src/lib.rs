//! `transit-broadcaster`: a gRPC service that streams GTFS-realtime feeds (vehicle positions,
//! trip updates, alerts) to subscribers and cannot silently stall.
//!
//! What lives here (docs/architecture.md is the contract for flags, ports and endpoints),
//! one folder per layer, each importing only the layers below it:
//!
//! | folder | what |
//! | --- | --- |
//! | [`gtfs`] | a feed message decoded, validated ([`gtfs::validate`]: the GTFS-realtime rules) and converted ([`gtfs::convert`]) once for all streams ([`gtfs::decoded`]) |
//! | [`pipeline`] | sources, each stream's channel, dispatcher and supervisor, `prepare` (a stream's selection), quarantine, fan-out to subscribers, the stream runtime, [`Engine`] (the running state and its operations), the reporter and the named tasks |
//! | [`serve`] | `config` ([`Config`]), `server` ([`start`], [`Running`]), the gRPC service on tonic (`grpc`, `grpc_health`) and on `lean-h2` (`lean`), `/metrics` and `/healthz` and the admin API (`http_endpoints`, `metrics`), [`serve::fault`] |
//! | [`client`] | the `subscribe` command's client |
//! | [`generated`] | checked-in prost/tonic code for `proto/` |
//! | [`util`] | hex excerpts, rate-limited logs |
//!
//! The binary (`bin/transit-broadcaster/`: `main.rs`) parses the command line (`cli.rs`) and
//! calls `run.rs`: logging, runtime, [`start`], the shutdown signal, draining.
//!
//! The layers, and the main edges inside them (no cycles; `scripts/check-structure.py` checks
//! both the cycles and the layer rules):
//!
//! ```text
//! client ──> generated, util                       (never pipeline or serve)
//! serve ──> pipeline ──> gtfs ──> generated         (util beside them all)
//!
//! serve:    server ──> grpc, http_endpoints, lean, fault (and the pipeline it wires together)
//!           lean ──> grpc       http_endpoints ──> metrics       grpc ──> grpc_health
//! pipeline: engine ──> dispatcher, source, stream_runtime, reporter, tasks, quarantine
//!           dispatcher, source ──> stream_runtime, prepare
//!           stream_runtime ──> channel, fanout, quarantine, spec, prepare
//!           fanout ──> prepare ──> channel, spec, gtfs::decoded
//! gtfs:     decoded ──> validate, convert, fields
//! ```
//!
//! Where a change goes:
//! - a new flag: `bin/transit-broadcaster/cli.rs` (and [`Config`], `serve/config.rs`, if the library needs it), then
//!   docs/architecture.md;
//! - a start-up or shutdown step: one function in `serve/server.rs`, called from [`start`];
//! - something every handler can ask of the running broadcaster: a method on [`Engine`];
//! - a new endpoint: `serve/grpc.rs` or `serve/http_endpoints.rs` (they reach the state
//!   through [`Engine`]);
//! - a new metric: `serve/metrics.rs`, read live from the counters at scrape time;
//! - a new feed source: [`pipeline::source`]; a new rule on feed content:
//!   [`gtfs::validate`] (and the README's rule table); a new stream filter:
//!   [`pipeline::spec`] and [`pipeline::prepare`]; a new carried field: the proto,
//!   [`gtfs::convert`] and the direct path in `gtfs/decoded/transcode.rs`;
//! - a new report field: `stallwatch-core` first, then
//!   [`pipeline::stream_runtime::StreamRuntime::report`].
//!
//! Unit tests of `x.rs` (or `x/mod.rs`) live in `x/tests.rs` (CONTRIBUTING.md).
//!
//! May depend on `stallwatch-core` (with `client` and `signal`), tonic, prost, axum,
//! async-nats, reqwest and the tokio ecosystem; never on kube or the other Stallwatch
//! programs. The generated protobuf code is checked in under `src/generated/` (no build
//! script, no protoc needed).
#![forbid(unsafe_code)]
// Production code handles every error; `unwrap` is for tests (clippy.toml exempts them).
#![deny(clippy::unwrap_used)]

// A module is `pub` when another crate uses it: the binary (`main.rs`), the tests in `tests/`
// or the benches; each layer's `mod.rs` says which of its modules are and why.
pub mod client;
pub mod generated;
pub mod gtfs;
pub mod pipeline;
pub mod serve;
pub mod util;

pub use pipeline::engine::Engine;
pub use serve::config::{Config, GrpcServer};
pub use serve::server::{Running, StartError, start};
