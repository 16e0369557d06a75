//! The protobuf field numbers our code writes or reads by hand, next to the generated code
//! rather than instead of it: the direct decode path writes `StreamUpdate`s without prost
//! structs, and both servers append each subscriber's `missed` to the shared update bytes.
//! `fields/tests.rs` checks every number here against the generated prost code, so a changed
//! proto fails a test instead of corrupting the wire.
//!
//! The direct path's per-message tables (`decoded/transcode.rs`: the fields of each
//! GTFS-realtime message it reads, of each of our messages it writes) stay with the code that
//! reads and writes them, each number written once there; `decoded/tests.rs` holds that path
//! equal to prost's over arbitrary and corrupted feeds, which checks each of them.

/// `stallwatch.transit.v1.StreamUpdate`.
pub(crate) mod stream_update {
    /// `missed`: appended per subscriber by the servers after the shared bytes.
    pub(crate) const MISSED: u32 = 5;
    /// `vehicles`.
    pub(crate) const VEHICLES: u32 = 7;
    /// `trip_updates`.
    pub(crate) const TRIP_UPDATES: u32 = 8;
    /// `alerts`.
    pub(crate) const ALERTS: u32 = 9;
    /// `deleted_entity_ids`.
    pub(crate) const DELETED_ENTITY_IDS: u32 = 10;
    /// `raw_entities`.
    pub(crate) const RAW_ENTITIES: u32 = 13;
}

/// `transit_realtime.FeedMessage`.
pub(crate) mod feed_message {
    /// `header`.
    pub(crate) const HEADER: u32 = 1;
    /// `entity`.
    pub(crate) const ENTITY: u32 = 2;
}

#[cfg(test)]
mod tests;
