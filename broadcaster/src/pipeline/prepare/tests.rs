use super::*;
use crate::generated::transit_realtime::translated_string::Translation;
use crate::generated::transit_realtime::trip_update::{StopTimeEvent, StopTimeUpdate};
use crate::generated::transit_realtime::{
    Alert, EntitySelector, FeedEntity, FeedHeader, FeedMessage, Position, TranslatedString,
    TripDescriptor, TripUpdate, VehicleDescriptor, VehiclePosition,
};
use crate::generated::transit_v1::Incrementality;
use bytes::Bytes;

pub fn entity(id: &str, vehicle: &str, route: &str, lat: f32, lon: f32) -> FeedEntity {
    FeedEntity {
        id: id.into(),
        vehicle: Some(VehiclePosition {
            trip: Some(trip(route)),
            vehicle: Some(VehicleDescriptor {
                id: Some(vehicle.into()),
                label: Some(format!("bus {vehicle}")),
                ..Default::default()
            }),
            position: Some(Position {
                latitude: Some(lat),
                longitude: Some(lon),
                bearing: Some(90.0),
                speed: Some(8.5),
                odometer: None,
            }),
            timestamp: Some(1_795_837_200),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn trip(route: &str) -> TripDescriptor {
    TripDescriptor {
        trip_id: Some(format!("T-{route}")),
        route_id: Some(route.into()),
        start_date: Some("20261128".into()),
        start_time: Some("25:10:00".into()),
        ..Default::default()
    }
}

pub fn trip_update(id: &str, route: &str) -> FeedEntity {
    FeedEntity {
        id: id.into(),
        trip_update: Some(TripUpdate {
            trip: Some(trip(route)),
            stop_time_update: vec![StopTimeUpdate {
                stop_sequence: Some(3),
                arrival: Some(StopTimeEvent {
                    delay: Some(60),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn alert(id: &str, selector: EntitySelector) -> FeedEntity {
    FeedEntity {
        id: id.into(),
        alert: Some(Alert {
            informed_entity: vec![selector],
            header_text: Some(TranslatedString {
                translation: vec![Translation {
                    text: Some("Detour".into()),
                    language: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn message(version: &str, entities: Vec<FeedEntity>) -> FeedMessage {
    FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: version.into(),
            incrementality: None,
            timestamp: Some(1_795_837_200),
            feed_version: None,
        },
        entity: entities,
    }
}

pub fn feed(entities: Vec<FeedEntity>) -> Item {
    Item::new(Bytes::from(message("2.0", entities).encode_to_vec()))
}

fn stream_filter(spec: &str) -> Filter {
    format!("x={spec}")
        .parse::<crate::pipeline::spec::StreamSpec>()
        .unwrap()
        .filter
}

#[test]
fn prepares_and_filters_vehicles() {
    let item = feed(vec![
        entity("e1", "v1", "R1", 52.5, 13.4),
        entity("e2", "v2", "R2", 52.5, 13.4),
    ]);
    let all = prepare(&Filter::default(), &item).unwrap();
    let u = all.to_update();
    assert_eq!(u.vehicles.len(), 2);
    assert!(all.malformed.is_empty());
    assert_eq!(u.feed_timestamp, 1_795_837_200);
    assert_eq!(u.received_at_us, item.received_at_us);
    assert_eq!(u.gtfs_realtime_version, "2.0");
    let only = prepare(&stream_filter("routes:R1"), &item).unwrap();
    let u = only.to_update();
    assert_eq!(u.vehicles.len(), 1);
    assert_eq!(u.vehicles[0].vehicle_id, "v1");
    assert_eq!(u.vehicles[0].route_id, "R1");
    assert_eq!(u.vehicles[0].label, "bus v1");
    assert!(u.vehicles[0].has_position);
    assert_eq!(u.vehicles[0].trip.as_ref().unwrap().start_date, "20261128");
}

#[test]
fn every_stream_shares_one_decoding() {
    let item = feed(vec![entity("e1", "v1", "R1", 52.5, 13.4)]);
    let copy = item.clone();
    let a = prepare(&Filter::default(), &item).unwrap();
    let b = prepare(&stream_filter("routes:R1"), &copy).unwrap();
    assert!(Arc::ptr_eq(&a.view.feed, &b.view.feed));
    // An unfiltered stream's entities are the shared body itself, not a copy.
    assert_eq!(a.body.as_ptr(), a.view.feed.body.as_ptr());
}

#[test]
fn all_three_kinds_and_deletions_are_carried() {
    let mut deleted = entity("gone", "v9", "R1", 0.0, 0.0);
    deleted.is_deleted = Some(true);
    deleted.vehicle = None;
    let mut msg = message(
        "2.0",
        vec![
            entity("e1", "v1", "R1", 52.5, 13.4),
            trip_update("t1", "R1"),
            alert(
                "a1",
                EntitySelector {
                    route_id: Some("R1".into()),
                    ..Default::default()
                },
            ),
            deleted,
        ],
    );
    msg.header.incrementality = Some(1);
    let item = Item::new(Bytes::from(msg.encode_to_vec()));
    let p = prepare(&Filter::default(), &item).unwrap();
    let u = p.to_update();
    assert_eq!(
        (
            u.vehicles.len(),
            u.trip_updates.len(),
            u.alerts.len(),
            u.deleted_entity_ids.len()
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(u.incrementality, Incrementality::Differential as i32);
    assert_eq!(u.deleted_entity_ids, ["gone"]);
    let tu = &u.trip_updates[0];
    assert_eq!(tu.entity_id, "t1");
    assert_eq!(tu.trip.as_ref().unwrap().route_id, "R1");
    assert_eq!(tu.stop_time_updates[0].arrival.unwrap().delay, Some(60));
    assert_eq!(tu.stop_time_updates[0].stop_sequence, Some(3));
    let a = &u.alerts[0];
    assert_eq!(a.informed_entities[0].route_id, "R1");
    assert_eq!(a.header_text[0].text, "Detour");
    // The reference's defaults: UNKNOWN_CAUSE, UNKNOWN_EFFECT.
    assert_eq!((a.cause, a.effect), (1, 8));
    assert_eq!(
        p.counts,
        KindCounts {
            vehicles: 1,
            trip_updates: 1,
            alerts: 1,
            deleted: 1
        }
    );
}

#[test]
fn routes_select_trip_updates_by_trip_and_alerts_by_informed_entity() {
    let by_route = |r: &str| EntitySelector {
        route_id: Some(r.into()),
        ..Default::default()
    };
    let item = feed(vec![
        trip_update("t1", "R1"),
        trip_update("t2", "R2"),
        alert("a-r1", by_route("R1")),
        alert("a-r2", by_route("R2")),
        alert(
            "a-agency",
            EntitySelector {
                agency_id: Some("agency".into()),
                ..Default::default()
            },
        ),
        alert(
            "a-trip-r1",
            EntitySelector {
                trip: Some(trip("R1")),
                ..Default::default()
            },
        ),
        alert(
            "a-stop",
            EntitySelector {
                stop_id: Some("S1".into()),
                ..Default::default()
            },
        ),
    ]);
    let u = prepare(&stream_filter("routes:R1"), &item)
        .unwrap()
        .to_update();
    let tus: Vec<&str> = u
        .trip_updates
        .iter()
        .map(|t| t.entity_id.as_str())
        .collect();
    assert_eq!(tus, ["t1"]);
    let alerts: Vec<&str> = u.alerts.iter().map(|a| a.entity_id.as_str()).collect();
    assert_eq!(alerts, ["a-r1", "a-agency", "a-trip-r1", "a-stop"]);
}

#[test]
fn bbox_selects_positioned_vehicles_and_passes_other_kinds() {
    let mut no_position = entity("e-nopos", "v2", "R1", 0.0, 0.0);
    no_position.vehicle.as_mut().unwrap().position = None;
    let item = feed(vec![
        entity("e-in", "v1", "R1", 52.5, 13.4),
        entity("e-out", "v3", "R1", 10.0, 10.0),
        no_position,
        trip_update("t1", "R1"),
    ]);
    let u = prepare(&stream_filter("bbox:52,13,53,14"), &item)
        .unwrap()
        .to_update();
    let vs: Vec<&str> = u.vehicles.iter().map(|v| v.entity_id.as_str()).collect();
    assert_eq!(vs, ["e-in"]);
    assert_eq!(u.trip_updates.len(), 1);
    // Without a bbox, the vehicle without a position is carried, and says so.
    let u = prepare(&Filter::default(), &item).unwrap().to_update();
    let nopos = u
        .vehicles
        .iter()
        .find(|v| v.entity_id == "e-nopos")
        .unwrap();
    assert!(!nopos.has_position);
}

#[test]
fn a_subscribers_own_filter_and_raw_entities_narrow_the_streams_view() {
    let first = entity("e1", "v1", "R1", 52.5, 13.4);
    let item = feed(vec![
        first.clone(),
        entity("e2", "v2", "R2", 52.5, 13.4),
        trip_update("t2", "R2"),
    ]);
    let p = prepare(&Filter::default(), &item).unwrap();
    let mut bytes = p.head("all", 1).to_vec();
    bytes.extend_from_slice(&p.view.body(&stream_filter("routes:R1"), true));
    let u = StreamUpdate::decode(&bytes[..]).unwrap();
    assert_eq!(u.vehicles.len(), 1);
    assert!(u.trip_updates.is_empty());
    assert_eq!(u.raw_entities.len(), 1);
    assert_eq!(u.raw_entities[0].entity_id, "e1");
    // Byte for byte what the producer sent.
    assert_eq!(u.raw_entities[0].feed_entity, first.encode_to_vec());
}

#[test]
fn malformed_entities_are_set_aside_and_the_rest_still_go_out() {
    let mut no_descriptor = entity("e3", "v3", "R1", 52.5, 13.4);
    let vp = no_descriptor.vehicle.as_mut().unwrap();
    vp.vehicle = None;
    vp.trip = None;
    let mut bad_date = entity("e4", "v4", "R1", 52.5, 13.4);
    bad_date
        .vehicle
        .as_mut()
        .unwrap()
        .trip
        .as_mut()
        .unwrap()
        .start_date = Some("2026-11-x".into());
    let mut bad_time = entity("e7", "v7", "R1", 52.5, 13.4);
    bad_time
        .vehicle
        .as_mut()
        .unwrap()
        .trip
        .as_mut()
        .unwrap()
        .start_time = Some("7pm".into());
    let mut no_trip = trip_update("e8", "R1");
    no_trip.trip_update.as_mut().unwrap().trip = None;
    let item = feed(vec![
        entity("e0", "v0", "R1", 52.5, 13.4),
        entity("e1", "v1", "R1", f32::NAN, 13.4),
        entity("e2", "v2", "R1", 52.5, 200.0),
        no_descriptor,
        bad_date,
        entity("e5", "v5", "R1", 52.5, 13.4),
        entity("", "v6", "R1", 52.5, 13.4),
        bad_time,
        no_trip,
    ]);
    let p = prepare(&Filter::default(), &item).unwrap();
    let u = p.to_update();
    let ids: Vec<&str> = u.vehicles.iter().map(|v| v.vehicle_id.as_str()).collect();
    assert_eq!(ids, ["v0", "v5"]);
    let reasons: Vec<&str> = p.malformed.iter().map(|m| m.reason.as_str()).collect();
    assert_eq!(p.malformed.len(), 7, "{reasons:?}");
    assert_eq!(u.quarantined_entities, 7);
    assert!(reasons[0].starts_with("vehicle.position.latitude"));
    assert!(reasons[1].starts_with("vehicle.position.longitude"));
    assert!(reasons[2].contains("neither trip nor vehicle"));
    assert!(reasons[3].starts_with("vehicle.trip.start_date"));
    assert!(reasons[4].starts_with("id:"));
    assert!(reasons[5].starts_with("vehicle.trip.start_time"));
    assert!(reasons[6].starts_with("trip_update.trip"));
    assert!(p.malformed.iter().all(|m| !m.raw.is_empty()));
    // The strict path fails the whole message on the first bad entity.
    let err = prepare_strict(&Filter::default(), &item).unwrap_err();
    assert!(
        matches!(err, PrepareError::Entity { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn bad_entities_on_routes_a_stream_does_not_carry_are_not_its_problem() {
    let item = feed(vec![
        entity("e0", "v0", "R1", f32::NAN, 13.4),
        entity("e1", "v1", "R2", 52.5, 13.4),
    ]);
    let p = prepare_strict(&stream_filter("routes:R2"), &item).unwrap();
    assert_eq!(p.to_update().vehicles.len(), 1);
    assert!(prepare_strict(&Filter::default(), &item).is_err());
}

#[test]
fn valid_but_unusual_feeds_are_not_malformed() {
    // Duplicate ids, a vehicle with only a trip and a stop (MTA NYCT), a position at 0,0, a
    // vehicle timestamp an hour ahead of the header, explicit defaults.
    let mut nyct = entity("dup", "v1", "R1", 0.0, 0.0);
    let vp = nyct.vehicle.as_mut().unwrap();
    vp.vehicle = None;
    vp.position = None;
    vp.stop_id = Some("R16N".into());
    vp.current_status = Some(1);
    let mut ahead = entity("dup", "v2", "R1", 0.0, 0.0);
    ahead.vehicle.as_mut().unwrap().timestamp = Some(1_795_837_200 + 3600);
    ahead.is_deleted = Some(false);
    let p = prepare(&Filter::default(), &feed(vec![nyct, ahead])).unwrap();
    assert!(p.malformed.is_empty(), "{:?}", p.malformed);
    assert_eq!(p.view.feed.duplicate_ids, 1);
    let u = p.to_update();
    assert_eq!(u.vehicles.len(), 2);
    assert_eq!(u.vehicles[0].stop_id, "R16N");
    assert!(u.vehicles[1].has_position);
    // A header-only feed is an empty update, not an error.
    let empty = prepare(&Filter::default(), &feed(vec![])).unwrap();
    assert!(empty.body.is_empty() && empty.malformed.is_empty());
}

#[test]
fn version_1_feeds_are_not_held_to_the_semantic_requirements() {
    let mut no_informed = alert("a", EntitySelector::default());
    no_informed.alert.as_mut().unwrap().informed_entity.clear();
    let v1 = Item::new(Bytes::from(
        message("1.0", vec![no_informed.clone()]).encode_to_vec(),
    ));
    let p = prepare(&Filter::default(), &v1).unwrap();
    assert!(p.malformed.is_empty());
    assert_eq!(p.to_update().alerts.len(), 1);
    let p = prepare(&Filter::default(), &feed(vec![no_informed])).unwrap();
    assert_eq!(p.malformed.len(), 1);
    assert!(p.malformed[0].reason.starts_with("alert.informed_entity"));
}

#[test]
fn garbage_text_truncated_headerless_and_oversize_input_are_clear_errors() {
    let garbage = Item::new(Bytes::from_static(b"\xff\xff\xff\xff not protobuf"));
    let err = prepare(&Filter::default(), &garbage).unwrap_err();
    assert_eq!(err.label(), "decode");
    let text = Item::new(Bytes::from_static(b"not valid pb data"));
    let err = prepare(&Filter::default(), &text).unwrap_err().to_string();
    assert!(
        err.contains("text, not protobuf") && err.contains("not valid pb data"),
        "{err}"
    );
    let truncated = {
        let full = feed(vec![entity("e0", "v0", "R1", 1.0, 1.0)]);
        Item::new(full.payload.slice(..full.payload.len() - 3))
    };
    assert_eq!(
        prepare(&Filter::default(), &truncated).unwrap_err().label(),
        "decode"
    );
    let empty = Item::new(Bytes::new());
    let err = prepare(&Filter::default(), &empty).unwrap_err().to_string();
    assert!(err.contains("header"), "{err}");
    let huge = Item::new(Bytes::from(vec![0u8; MAX_FEED_BYTES + 1]));
    assert!(matches!(
        prepare(&Filter::default(), &huge),
        Err(PrepareError::TooLarge { .. })
    ));
}

#[test]
fn entities_of_other_kinds_are_counted_not_quarantined() {
    let other = FeedEntity {
        id: "shape-1".into(),
        ..Default::default()
    };
    let p = prepare(&Filter::default(), &feed(vec![other])).unwrap();
    assert!(p.body.is_empty());
    assert!(p.malformed.is_empty());
    assert_eq!(p.view.feed.not_carried, 1);
}

proptest::proptest! {
    #[test]
    fn prepare_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = prepare(&Filter::default(), &Item::new(Bytes::from(body)));
    }
}
