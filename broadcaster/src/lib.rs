//! `transit-broadcaster`: a gRPC service that streams GTFS-realtime feeds (vehicle positions,
//! trip updates, alerts) to subscribers and cannot silently stall.
//!
//! What lives here (docs/architecture.md is the contract for flags, ports and endpoints):
//! - [`source`]: where raw feed messages come from (synthetic, NATS, HTTP polling, file replay).
//! - [`channel`]: the per-stream bounded drop-oldest channel with its counters.
//! - [`dispatcher`]: the per-stream dispatcher task (prepare, quarantine, publish) and its
//!   supervisor; [`feed`] is the prepare step, [`quarantine`] keeps poison messages.
//! - [`decoded`]: each message decoded, validated and converted once for all streams;
//!   [`validate`] holds the GTFS-realtime rules an entity must meet, [`convert`] turns
//!   entities into our API's types.
//! - [`stream`]: one stream's runtime (spec, channel, hub, quarantine, task handles).
//! - `hub`: per-subscriber bounded queues; a slow or broken subscriber affects only itself.
//! - `engine` ([`Engine`]): the running broadcaster's shared state and its operations
//!   (report, task dump, restart a stream). Imports no server.
//! - [`server`]: [`Config`], binding the listeners, spawning every task, serving, [`Running`]
//!   and its shutdown; [`start`] reads as its steps.
//! - [`grpc`]: `stallwatch.transit.v1.TransitBroadcaster`, gRPC health and reflection;
//!   `grpc_health`: the `grpc.health.v1` service as its spec has it (Watch of an unknown name).
//! - `http2`: the gRPC listener on our own HTTP/2 server, the `lean-h2` crate
//!   (`--grpc-server lean`, the default): Subscribe is its local stream, served inside each
//!   connection's task; the rest is bridged to tonic.
//! - `http`: `/metrics` (from `metrics`), `/healthz`, and the loopback admin API on its own
//!   thread.
//! - `reporter`: the heartbeat to the sidecar (`stallwatch.report.v1`), independent of the
//!   dispatchers; `tasks` and [`Engine::dump`]: the in-process task dump.
//! - [`fault`]: fault injection for tests and demos (never for production).
//! - [`subscribe`]: the `subscribe` command's client. [`util`]: hex excerpts, rate-limited logs.
//! - The binary (`main.rs`) parses the command line (`cli.rs`) and calls `run.rs`: logging,
//!   runtime, [`server::start`], the shutdown signal, draining.
//!
//! The module graph has no cycles; each module imports only modules below it:
//!
//! ```text
//! server ──> grpc, http, http2, engine (and the pipeline modules it wires together)
//! http2 ──> grpc, generated       http ──> metrics ──> engine        grpc ──> engine, grpc_health
//! engine ──> dispatcher, source, stream, reporter, tasks, quarantine
//! dispatcher, source ──> stream, feed
//! stream ──> channel, hub, quarantine, spec, feed
//! hub ──> feed ──> channel, decoded, generated, spec
//! channel ──> decoded ──> validate, convert, generated
//! subscribe ──> generated       quarantine ──> util
//! leaves: convert, validate, fault, generated, reporter, spec, tasks, util
//! ```
//!
//! Where a change goes:
//! - a new flag: `cli.rs` (and [`server::Config`] if the library needs it), then
//!   docs/architecture.md;
//! - a start-up or shutdown step: one function in [`server`], called from [`start`];
//! - something every handler can ask of the running broadcaster: a method on [`Engine`];
//! - a new endpoint: `grpc` or `http` (they reach the state through [`Engine`]);
//! - a new metric: `metrics`, read live from the counters at scrape time;
//! - a new feed source: [`source`]; a new rule on feed content: [`validate`] (and the
//!   README's rule table); a new carried field: the proto, [`convert`];
//! - a new report field: `stallwatch-core` first, then [`stream::StreamRuntime::report`].
//!
//! May depend on `stallwatch-core` (with `client` and `signal`), tonic, prost, axum,
//! async-nats, reqwest and the tokio ecosystem; never on kube or the other Stallwatch
//! programs. The generated protobuf code is checked in under `src/generated/` (no build
//! script, no protoc needed).
#![forbid(unsafe_code)]

pub mod channel;
pub mod convert;
pub mod decoded;
pub mod dispatcher;
pub(crate) mod engine;
pub mod fault;
pub mod feed;
pub mod generated;
pub mod grpc;
pub(crate) mod grpc_health;
pub(crate) mod http;
mod http2;
pub(crate) mod hub;
pub(crate) mod metrics;
pub mod quarantine;
pub(crate) mod reporter;
pub mod server;
pub mod source;
pub mod spec;
pub mod stream;
pub mod subscribe;
pub(crate) mod tasks;
pub mod util;
pub mod validate;

pub use engine::Engine;
pub use server::{Config, GrpcServer, Running, StartError, start};
