//! Builders for the report protocol (`stallwatch_core::report`): what a broadcaster sends its
//! sidecar. They live in `stallwatch_core::report::testing` (feature `test-util`) so that core's
//! own unit tests use the same builders; this module re-exports them.

pub use stallwatch_core::report::testing::*;
