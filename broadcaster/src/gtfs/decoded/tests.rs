//! The direct path against the reference path (prost, `validate`, `convert`, prost encode):
//! the same entities carried and quarantined, the same bytes, over arbitrary feeds, and never
//! a message prost refuses.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::{DecodedFeed, decode, decode_direct, decode_with_prost};
use crate::generated::transit_realtime::translated_string::Translation;
use crate::generated::transit_realtime::trip_update::{StopTimeEvent, StopTimeUpdate};
use crate::generated::transit_realtime::{
    Alert, EntitySelector, FeedEntity, FeedHeader, FeedMessage, Position, TimeRange,
    TranslatedString, TripDescriptor, TripUpdate, VehicleDescriptor, VehiclePosition,
};
use crate::generated::transit_v1::StreamUpdate;

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("R1".to_string()),
        Just("R2".to_string()),
        "[a-zA-Zé0-9 :-]{0,12}",
        // Long enough that a message needs a two-byte length.
        "[a-z]{100,140}",
    ]
    .boxed()
}

fn opt_text() -> BoxedStrategy<Option<String>> {
    proptest::option::of(text()).boxed()
}

fn date() -> BoxedStrategy<Option<String>> {
    proptest::option::of(prop_oneof![
        Just("20240312".to_string()),
        Just("20240230".to_string()),
        Just("2024031".to_string()),
        Just("abcdefgh".to_string()),
    ])
    .boxed()
}

fn time() -> BoxedStrategy<Option<String>> {
    proptest::option::of(prop_oneof![
        Just("10:00:00".to_string()),
        Just("25:15:35".to_string()),
        Just("1:02:03".to_string()),
        Just("10:60:00".to_string()),
        Just("10:00".to_string()),
    ])
    .boxed()
}

fn small_i32() -> BoxedStrategy<Option<i32>> {
    proptest::option::of(prop_oneof![Just(0), Just(1), Just(-1), any::<i32>()]).boxed()
}

fn trip() -> BoxedStrategy<TripDescriptor> {
    (
        opt_text(),
        opt_text(),
        proptest::option::of(any::<u32>()),
        time(),
        date(),
        small_i32(),
    )
        .prop_map(
            |(trip_id, route_id, direction_id, start_time, start_date, schedule_relationship)| {
                TripDescriptor {
                    trip_id,
                    route_id,
                    direction_id,
                    start_time,
                    start_date,
                    schedule_relationship,
                }
            },
        )
        .boxed()
}

fn vehicle_descriptor() -> BoxedStrategy<VehicleDescriptor> {
    (opt_text(), opt_text(), opt_text(), small_i32())
        .prop_map(
            |(id, label, license_plate, wheelchair_accessible)| VehicleDescriptor {
                id,
                label,
                license_plate,
                wheelchair_accessible,
            },
        )
        .boxed()
}

fn coordinate() -> BoxedStrategy<Option<f32>> {
    proptest::option::of(prop_oneof![
        Just(52.5f32),
        Just(0.0),
        Just(-0.0),
        Just(95.0),
        Just(-179.5),
        Just(f32::NAN),
        any::<f32>(),
    ])
    .boxed()
}

fn position() -> BoxedStrategy<Position> {
    (
        coordinate(),
        coordinate(),
        proptest::option::of(any::<f32>()),
        proptest::option::of(any::<f64>()),
        proptest::option::of(any::<f32>()),
    )
        .prop_map(|(latitude, longitude, bearing, odometer, speed)| Position {
            latitude,
            longitude,
            bearing,
            odometer,
            speed,
        })
        .boxed()
}

fn vehicle() -> BoxedStrategy<VehiclePosition> {
    (
        proptest::option::of(trip()),
        proptest::option::of(vehicle_descriptor()),
        proptest::option::of(position()),
        proptest::option::of(any::<u32>()),
        opt_text(),
        small_i32(),
        proptest::option::of(any::<u64>()),
        small_i32(),
        small_i32(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(trip, vehicle, position, seq, stop_id, status, timestamp, congestion, occ, pct)| {
                VehiclePosition {
                    trip,
                    vehicle,
                    position,
                    current_stop_sequence: seq,
                    stop_id,
                    current_status: status,
                    timestamp,
                    congestion_level: congestion,
                    occupancy_status: occ,
                    occupancy_percentage: pct,
                }
            },
        )
        .boxed()
}

fn stop_time_event() -> BoxedStrategy<StopTimeEvent> {
    (
        small_i32(),
        proptest::option::of(any::<i64>()),
        small_i32(),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(delay, time, uncertainty, scheduled_time)| StopTimeEvent {
            delay,
            time,
            uncertainty,
            scheduled_time,
        })
        .boxed()
}

fn trip_update() -> BoxedStrategy<TripUpdate> {
    let stop = (
        proptest::option::of(any::<u32>()),
        opt_text(),
        proptest::option::of(stop_time_event()),
        proptest::option::of(stop_time_event()),
        small_i32(),
    )
        .prop_map(
            |(stop_sequence, stop_id, arrival, departure, schedule_relationship)| StopTimeUpdate {
                stop_sequence,
                stop_id,
                arrival,
                departure,
                schedule_relationship,
            },
        );
    (
        proptest::option::of(trip()),
        proptest::option::of(vehicle_descriptor()),
        proptest::collection::vec(stop, 0..6),
        proptest::option::of(any::<u64>()),
        small_i32(),
    )
        .prop_map(
            |(trip, vehicle, stop_time_update, timestamp, delay)| TripUpdate {
                trip,
                vehicle,
                stop_time_update,
                timestamp,
                delay,
            },
        )
        .boxed()
}

fn translated() -> BoxedStrategy<Option<TranslatedString>> {
    let translation = (
        opt_text(),
        proptest::option::of(prop_oneof![
            Just(String::new()),
            Just("en".to_string()),
            Just("fr".to_string()),
        ]),
    )
        .prop_map(|(text, language)| Translation { text, language });
    proptest::option::of(
        proptest::collection::vec(translation, 0..3)
            .prop_map(|translation| TranslatedString { translation }),
    )
    .boxed()
}

fn alert() -> BoxedStrategy<Alert> {
    let selector = (
        opt_text(),
        opt_text(),
        small_i32(),
        proptest::option::of(trip()),
        opt_text(),
        proptest::option::of(0u32..2),
    )
        .prop_map(
            |(agency_id, route_id, route_type, trip, stop_id, direction_id)| EntitySelector {
                agency_id,
                route_id,
                route_type,
                trip,
                stop_id,
                direction_id,
            },
        );
    let period = (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(start, end)| TimeRange { start, end });
    (
        proptest::collection::vec(period, 0..3),
        proptest::collection::vec(selector, 0..4),
        small_i32(),
        small_i32(),
        (
            translated(),
            translated(),
            translated(),
            translated(),
            translated(),
        ),
        small_i32(),
    )
        .prop_map(
            |(active_period, informed_entity, cause, effect, texts, severity_level)| Alert {
                active_period,
                informed_entity,
                cause,
                effect,
                url: texts.0,
                header_text: texts.1,
                description_text: texts.2,
                tts_header_text: texts.3,
                tts_description_text: texts.4,
                severity_level,
            },
        )
        .boxed()
}

fn entity() -> BoxedStrategy<FeedEntity> {
    (
        prop_oneof![Just(""), Just("a"), Just("b"), Just("veh-1")],
        proptest::option::of(any::<bool>()),
        proptest::option::of(trip_update()),
        proptest::option::of(vehicle()),
        proptest::option::of(alert()),
    )
        .prop_map(|(id, is_deleted, trip_update, vehicle, alert)| FeedEntity {
            id: id.to_string(),
            is_deleted,
            trip_update,
            vehicle,
            alert,
        })
        .boxed()
}

fn feed() -> BoxedStrategy<Bytes> {
    (
        prop_oneof![Just("2.0"), Just("1.0"), Just(""), Just("x")],
        small_i32(),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(entity(), 0..6),
    )
        .prop_map(|(version, incrementality, timestamp, entity)| {
            FeedMessage {
                header: FeedHeader {
                    gtfs_realtime_version: version.to_string(),
                    incrementality,
                    timestamp,
                    feed_version: None,
                },
                entity,
            }
            .encode_to_vec()
            .into()
        })
        .boxed()
}

/// What producers add to an entity that prost's own encoding never has: unknown fields and
/// extensions (skipped), a scalar field repeated (the last one counts), a message field repeated
/// (prost merges the two: the direct path leaves those to prost).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Extra {
    UnknownVarint,
    UnknownBytes,
    Fixed32Extension,
    SecondId,
    SecondIsDeleted,
    SecondVehicle,
}

impl Extra {
    fn append(self, out: &mut Vec<u8>) {
        use prost::encoding::{bool, bytes, fixed32, string, uint64};
        match self {
            Extra::UnknownVarint => uint64::encode(1001, &7, out),
            Extra::UnknownBytes => bytes::encode(1002, &vec![1, 2, 3], out),
            Extra::Fixed32Extension => fixed32::encode(1003, &9, out),
            Extra::SecondId => string::encode(1, &"b".to_string(), out),
            Extra::SecondIsDeleted => bool::encode(2, &false, out),
            Extra::SecondVehicle => {
                let v = VehiclePosition {
                    vehicle: Some(VehicleDescriptor {
                        label: Some("merged".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                prost::encoding::message::encode(4, &v, out)
            }
        }
    }
}

/// A feed whose entities carry [`Extra`]s, written field by field; and whether any of them is
/// one prost merges.
fn feed_with_extras() -> BoxedStrategy<(Bytes, bool)> {
    let extra = prop_oneof![
        Just(Extra::UnknownVarint),
        Just(Extra::UnknownBytes),
        Just(Extra::Fixed32Extension),
        Just(Extra::SecondId),
        Just(Extra::SecondIsDeleted),
        Just(Extra::SecondVehicle),
    ];
    (
        prop_oneof![Just("2.0"), Just("1.0")],
        proptest::collection::vec((entity(), proptest::collection::vec(extra, 0..3)), 0..5),
    )
        .prop_map(|(version, entities)| {
            let mut out = FeedMessage {
                header: FeedHeader {
                    gtfs_realtime_version: version.to_string(),
                    ..Default::default()
                },
                entity: vec![],
            }
            .encode_to_vec();
            let mut merges = false;
            for (entity, extras) in entities {
                let mut bytes = entity.encode_to_vec();
                let mut vehicles = usize::from(entity.vehicle.is_some());
                for extra in extras {
                    extra.append(&mut bytes);
                    vehicles += usize::from(extra == Extra::SecondVehicle);
                }
                merges |= vehicles > 1;
                prost::encoding::bytes::encode(2, &bytes, &mut out);
            }
            (Bytes::from(out), merges)
        })
        .boxed()
}

fn assert_same(direct: &DecodedFeed, reference: &DecodedFeed) -> Result<(), TestCaseError> {
    prop_assert_eq!(&direct.carried, &reference.carried);
    prop_assert_eq!(&direct.malformed, &reference.malformed);
    prop_assert_eq!(&direct.body[..], &reference.body[..]);
    prop_assert_eq!(direct.feed_timestamp, reference.feed_timestamp);
    prop_assert_eq!(direct.incrementality, reference.incrementality);
    prop_assert_eq!(
        &direct.gtfs_realtime_version,
        &reference.gtfs_realtime_version
    );
    prop_assert_eq!(direct.duplicate_ids, reference.duplicate_ids);
    prop_assert_eq!(direct.not_carried, reference.not_carried);
    let all = 0..direct.carried.len();
    prop_assert_eq!(
        direct.raw_fields_of(all.clone()),
        reference.raw_fields_of(all)
    );
    // And the bytes are a `StreamUpdate` (the reference's is, by construction).
    StreamUpdate::decode(&direct.body[..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn the_direct_path_equals_the_reference_path_on_arbitrary_feeds(payload in feed()) {
        let reference = decode_with_prost(&payload).expect("prost's own encoding decodes");
        // A message prost encoded itself has nothing prost would merge: the direct path takes it.
        let direct = decode_direct(&payload).expect("the direct path takes canonical messages");
        assert_same(&direct, &reference)?;
    }

    #[test]
    fn unknown_and_repeated_fields_are_read_as_prost_reads_them(
        (payload, merges) in feed_with_extras(),
    ) {
        let reference = decode_with_prost(&payload).expect("valid protobuf");
        match decode_direct(&payload) {
            Some(direct) => assert_same(&direct, &reference)?,
            None => prop_assert!(merges, "fell back without a field prost merges"),
        }
        prop_assert_eq!(decode(&payload).unwrap().body, reference.body);
    }

    #[test]
    fn the_direct_path_never_takes_what_prost_refuses(
        payload in feed(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = payload.to_vec();
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if cut.index(4) == 0 {
            bytes.truncate(cut.index(bytes.len()));
        }
        let bytes = Bytes::from(bytes);
        match (decode_direct(&bytes), decode_with_prost(&bytes)) {
            (Some(direct), Ok(reference)) => assert_same(&direct, &reference)?,
            (Some(_), Err(e)) => prop_assert!(false, "the direct path took a message prost refuses: {e}"),
            (None, _) => {}
        }
        // `decode` always answers as the reference does.
        prop_assert_eq!(decode(&bytes).map(|f| f.body), decode_with_prost(&bytes).map(|f| f.body));
    }
}

/// A singular message field sent twice is merged by prost: the direct path leaves it to prost.
#[test]
fn fields_prost_would_merge_go_to_prost() {
    let part = |trip_id: &str, label: Option<&str>| FeedEntity {
        id: "v".into(),
        vehicle: Some(VehiclePosition {
            trip: Some(TripDescriptor {
                trip_id: Some(trip_id.into()),
                ..Default::default()
            }),
            vehicle: label.map(|label| VehicleDescriptor {
                label: Some(label.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Two encodings of one entity, concatenated: one entity whose `vehicle` appears twice.
    let mut entity = part("T1", Some("first")).encode_to_vec();
    entity.extend(part("T2", None).encode_to_vec());
    let mut payload = FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            ..Default::default()
        },
        entity: vec![],
    }
    .encode_to_vec();
    prost::encoding::bytes::encode(2, &entity, &mut payload);
    let payload = Bytes::from(payload);
    assert!(decode_direct(&payload).is_none());
    let feed = decode(&payload).unwrap();
    let update = StreamUpdate::decode(&feed.body[..]).unwrap();
    // Merged: the second trip id, the first label.
    assert_eq!(update.vehicles[0].trip_id, "T2");
    assert_eq!(update.vehicles[0].label, "first");
}

/// Strings that are not UTF-8 anywhere prost decodes (even fields we drop) refuse the message.
#[test]
fn text_that_is_not_utf8_refuses_the_message_on_both_paths() {
    let payload = FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            feed_version: Some("FV".into()),
            ..Default::default()
        },
        entity: vec![],
    }
    .encode_to_vec();
    let at = payload.windows(2).position(|w| w == b"FV").unwrap();
    let mut bad = payload.clone();
    bad[at] = 0xff;
    let bad = Bytes::from(bad);
    assert!(decode_direct(&bad).is_none());
    assert!(decode(&bad).is_err());
    assert!(decode_direct(&Bytes::from(payload)).is_some());
}

/// The real captures (`stallwatch_testkit::gtfs_rt`).
fn gtfs_rt_dir() -> Option<std::path::PathBuf> {
    let found = stallwatch_testkit::gtfs_rt::dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    if found.is_none() {
        println!("SKIPPED: shared/gtfs-rt/ not found; set STALLWATCH_GTFS_RT_DIR");
    }
    found
}

fn files(dir: &std::path::Path) -> Vec<(String, Bytes)> {
    stallwatch_testkit::gtfs_rt::files(dir)
        .into_iter()
        .map(|(p, data)| (p.display().to_string(), data.into()))
        .collect()
}

/// Every real capture takes the direct path (none falls back to prost) with the reference's
/// result; the bad captures are refused by both.
#[test]
fn real_captures_take_the_direct_path_with_the_reference_result() {
    let Some(dir) = gtfs_rt_dir() else {
        return;
    };
    let feeds = files(&dir.join("feeds"));
    assert_eq!(feeds.len(), 20);
    for (name, payload) in &feeds {
        let reference = decode_with_prost(payload).unwrap();
        let direct = decode_direct(payload).unwrap_or_else(|| panic!("{name}: fell back"));
        assert_same(&direct, &reference).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(direct.malformed.is_empty(), "{name}");
    }
    for (name, payload) in files(&dir.join("bad")) {
        assert!(decode_direct(&payload).is_none(), "{name}");
        assert_eq!(decode(&payload).err(), decode_with_prost(&payload).err());
        assert!(decode(&payload).is_err(), "{name}");
    }
}

/// The update header is written as prost writes the same `StreamUpdate`.
#[test]
fn the_head_is_prosts_encoding() {
    let mut feed = decode(&Bytes::from(
        FeedMessage {
            header: FeedHeader {
                gtfs_realtime_version: "2.0".into(),
                ..Default::default()
            },
            entity: vec![],
        }
        .encode_to_vec(),
    ))
    .unwrap();
    for (stream, seq, received, quarantined, incrementality, timestamp) in [
        ("all", 1, 1_700_000_000_000_000, 0, 0, 0),
        ("", 0, 0, 3, 1, 1_700_000_000),
        (
            "a-much-longer-stream-name",
            u64::MAX,
            5,
            u32::MAX,
            -1,
            u64::MAX,
        ),
    ] {
        feed.incrementality = incrementality;
        feed.feed_timestamp = timestamp;
        let expected = StreamUpdate {
            stream: stream.into(),
            seq,
            feed_timestamp: timestamp,
            received_at_us: received,
            quarantined_entities: quarantined,
            incrementality,
            gtfs_realtime_version: "2.0".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            feed.head(stream, seq, received, quarantined)[..],
            expected[..]
        );
    }
}
