//! Each hand-written field number against the generated code: a message encoded by prost with
//! only that field set (beside an otherwise default message) adds exactly that tag.

use prost::Message;
use prost::encoding::{DecodeContext, decode_key, skip_field};

use super::{feed_message, stream_update};
use crate::generated::transit_realtime::{FeedEntity, FeedMessage};
use crate::generated::transit_v1::{Alert, RawEntity, StreamUpdate, TripUpdate, Vehicle};

/// The field numbers present in an encoded message, in order.
fn tags(bytes: &[u8]) -> Vec<u32> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).unwrap();
        skip_field(wire_type, tag, &mut buf, DecodeContext::default()).unwrap();
        out.push(tag);
    }
    out
}

/// The tags `set` has beyond `unset`'s.
fn added_tags(set: &impl Message, unset: &impl Message) -> Vec<u32> {
    let base = tags(&unset.encode_to_vec());
    let mut added = tags(&set.encode_to_vec());
    added.retain(|t| !base.contains(t));
    added
}

#[test]
fn stream_update_field_numbers_are_the_generated_ones() {
    let unset = StreamUpdate::default();
    let cases = [
        (
            stream_update::MISSED,
            StreamUpdate {
                missed: 1,
                ..Default::default()
            },
        ),
        (
            stream_update::VEHICLES,
            StreamUpdate {
                vehicles: vec![Vehicle::default()],
                ..Default::default()
            },
        ),
        (
            stream_update::TRIP_UPDATES,
            StreamUpdate {
                trip_updates: vec![TripUpdate::default()],
                ..Default::default()
            },
        ),
        (
            stream_update::ALERTS,
            StreamUpdate {
                alerts: vec![Alert::default()],
                ..Default::default()
            },
        ),
        (
            stream_update::DELETED_ENTITY_IDS,
            StreamUpdate {
                deleted_entity_ids: vec!["gone".into()],
                ..Default::default()
            },
        ),
        (
            stream_update::RAW_ENTITIES,
            StreamUpdate {
                raw_entities: vec![RawEntity::default()],
                ..Default::default()
            },
        ),
    ];
    for (number, set) in cases {
        assert_eq!(added_tags(&set, &unset), vec![number], "{set:?}");
    }
}

#[test]
fn feed_message_field_numbers_are_the_generated_ones() {
    // `header` is required: prost writes it even when default, so it is the one tag of an
    // otherwise empty message.
    assert_eq!(
        tags(&FeedMessage::default().encode_to_vec()),
        vec![feed_message::HEADER]
    );
    let set = FeedMessage {
        entity: vec![FeedEntity::default()],
        ..Default::default()
    };
    assert_eq!(
        added_tags(&set, &FeedMessage::default()),
        vec![feed_message::ENTITY]
    );
}
