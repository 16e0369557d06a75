//! `TransitStream` test objects. They live in `stallwatch_crds::testing` (feature `test-util`)
//! so that the crds' and the operator's own unit tests use the same builder; re-exported here.

pub use stallwatch_crds::testing::*;
