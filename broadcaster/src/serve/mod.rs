//! The serving layer: the listeners and what answers on them, over the pipeline's
//! [`Engine`](crate::Engine).
//!
//! - `config`: [`Config`](crate::Config) and [`GrpcServer`](crate::GrpcServer);
//! - `server`: checking the config, binding the listeners, spawning every task,
//!   serving, [`Running`](crate::Running) and its shutdown; [`start`](crate::start) reads as
//!   its steps;
//! - `grpc`: `stallwatch.transit.v1.TransitBroadcaster`, gRPC health and reflection on
//!   tonic; `grpc_health`: the `grpc.health.v1` service as its spec has it;
//! - `lean`: the same gRPC listener on the `lean-h2` crate (`--grpc-server lean`, the
//!   default): Subscribe is its local stream (`lean/subscribe.rs`), the rest is bridged to
//!   tonic;
//! - `http_endpoints`: `/metrics` (from `metrics`), `/healthz`, and the loopback admin API on
//!   its own thread;
//! - [`fault`]: fault injection for tests and demos (never for production).
//!
//! Imports `pipeline`, `gtfs`, `generated` and `util`; never `client`
//! (`scripts/check-structure.py` enforces it).

// `pub`: the binary's `cli.rs` and tests/pipeline.rs configure faults.
pub(crate) mod config;
pub mod fault;
pub(crate) mod grpc;
pub(crate) mod grpc_health;
pub(crate) mod http_endpoints;
pub(crate) mod lean;
pub(crate) mod metrics;
pub(crate) mod server;
