//! `transit-broadcaster`: a gRPC service that streams GTFS-realtime feeds (vehicle positions,
//! trip updates, alerts) to subscribers and cannot silently stall.
//!
//! What lives here (docs/architecture.md is the contract for flags, ports and endpoints):
//! - [`source`]: where raw feed messages come from (synthetic, NATS, HTTP polling, file replay).
//! - [`channel`]: the per-stream bounded drop-oldest channel with its counters.
//! - [`dispatcher`]: the per-stream dispatcher task (prepare, quarantine, publish) and its
//!   supervisor; [`feed`] is the prepare step, [`quarantine`] keeps poison messages.
//! - [`decoded`]: each message decoded once for all streams; [`validate`] holds the
//!   GTFS-realtime rules an entity must meet, [`convert`] turns entities into our API's types.
//! - [`hub`]: per-subscriber bounded queues; a slow or broken subscriber affects only itself.
//! - [`grpc`]: `stallwatch.transit.v1.TransitBroadcaster`, gRPC health and reflection.
//! - [`reporter`]: the heartbeat to the sidecar (`stallwatch.report.v1`), independent of the
//!   dispatchers; [`tasks`] and [`engine::Engine::dump`]: the in-process task dump.
//! - [`http`]: `/metrics`, `/healthz`, and the loopback admin API on its own thread.
//! - [`fault`]: fault injection for tests and demos (never for production).
//! - [`subscribe`]: the `subscribe` command's client.
//!
//! May depend on `stallwatch-core` (with `client`), tonic, prost, axum, async-nats, reqwest
//! and the tokio ecosystem; never on kube or the other Stallwatch programs. The generated
//! protobuf code is checked in under `src/generated/` (no build script, no protoc needed).
#![forbid(unsafe_code)]

pub mod channel;
pub mod convert;
pub mod decoded;
pub mod dispatcher;
pub mod engine;
pub mod fault;
pub mod feed;
pub mod generated;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod quarantine;
pub mod reporter;
pub mod source;
pub mod spec;
pub mod stream;
pub mod subscribe;
pub mod tasks;
pub mod util;
pub mod validate;

pub use engine::{Config, Engine, Running, StartError, start};
