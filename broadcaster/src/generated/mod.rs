//! Code generated from `broadcaster/proto/` by `tonic-prost-build`: the messages and the
//! client, no server (`serve/grpc.rs` is written by hand; see
//! `tests/generated_code.rs`, which regenerates it and fails on drift). Do not edit by hand.

/// GTFS-realtime (`transit_realtime`), the subset the broadcaster ingests.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod transit_realtime {
    include!("transit_realtime.rs");
}

/// The broadcaster's public API, `stallwatch.transit.v1`.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod transit_v1 {
    include!("stallwatch.transit.v1.rs");
}

/// The encoded `FileDescriptorSet` of both protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("transit_descriptor.bin");
