//! The client layer: the `subscribe` command, a gRPC client of our own API.
//!
//! Imports only `generated` and `util`; never `pipeline` or `serve`
//! (`scripts/check-structure.py` enforces it).

// `pub`: the binary (`run.rs`) calls it.
pub mod subscribe;
