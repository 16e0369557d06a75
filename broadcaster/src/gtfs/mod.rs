//! The GTFS-realtime layer: one feed message's bytes decoded, validated and converted into
//! our API's types, with nothing of the pipeline or the servers in sight.
//!
//! - [`decoded`]: a message decoded, validated and converted once for all streams (the direct
//!   path in `decoded/transcode.rs` and `decoded/wire.rs`, the prost reference path beside it);
//! - [`validate`]: the rules an entity must meet (the README's rule table);
//! - [`convert`]: GTFS-realtime entities into `stallwatch.transit.v1` messages;
//! - `fields`: the protobuf field numbers written by hand (the direct path, the servers'
//!   `missed`), each checked against the generated code.
//!
//! Imports only `generated` (`scripts/check-structure.py` enforces it).

// `pub`: the `prepare` bench (benches/prepare.rs) times each stage on its own.
pub mod convert;
pub mod decoded;
pub(crate) mod fields;
pub mod validate;
