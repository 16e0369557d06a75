//! The pipeline layer: feed messages from a source, through each stream's channel and
//! dispatcher, prepared for the stream and fanned out to its subscribers; and [`Engine`], the
//! running pipeline's shared state that every server reaches it through.
//!
//! - [`source`]: where raw messages come from; `Ingest` puts each into every stream's channel;
//! - [`channel`]: a stream's bounded drop-oldest channel and its counters;
//! - [`dispatcher`]: a stream's dispatcher task (prepare, quarantine, publish) and its
//!   supervisor;
//! - [`prepare`]: a stream's selection of a decoded message (its filters);
//! - [`quarantine`]: poison messages and entities set aside with error and hex excerpt;
//! - `fanout`: per-subscriber bounded queues; a slow subscriber affects only itself;
//! - [`stream_runtime`]: one stream's runtime (spec, channel, fan-out, quarantine, tasks);
//! - [`spec`]: a stream's name and filters as configured;
//! - `engine`, `reporter`, `tasks`: the running state, the heartbeat to the sidecar, the
//!   named tasks of the task dump.
//!
//! Imports `gtfs`, `generated` and `util`; never `serve` or `client`
//! (`scripts/check-structure.py` enforces it).
//!
//! [`Engine`]: crate::Engine

// `pub` modules are the ones the crate's tests, benches and binary reach into.
pub mod channel;
pub mod dispatcher;
pub(crate) mod engine;
pub(crate) mod fanout;
pub mod prepare;
pub mod quarantine;
pub(crate) mod reporter;
pub mod source;
pub mod spec;
pub mod stream_runtime;
pub(crate) mod tasks;
