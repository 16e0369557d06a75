//! Each rule both ways: a valid entity passes, the same entity broken in one field is refused
//! with a message naming that field. The rules are listed in the README ("Validation").

use super::*;
use crate::generated::transit_realtime::translated_string::Translation;
use crate::generated::transit_realtime::{TripDescriptor, VehicleDescriptor};

fn vehicle_entity() -> FeedEntity {
    FeedEntity {
        id: "v".into(),
        vehicle: Some(VehiclePosition {
            trip: Some(TripDescriptor {
                trip_id: Some("T1".into()),
                route_id: Some("R1".into()),
                start_date: Some("20240229".into()),
                start_time: Some("25:10:00".into()),
                ..Default::default()
            }),
            vehicle: Some(VehicleDescriptor {
                id: Some("V1".into()),
                ..Default::default()
            }),
            position: Some(Position {
                latitude: Some(-90.0),
                longitude: Some(180.0),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn trip_update_entity() -> FeedEntity {
    FeedEntity {
        id: "t".into(),
        trip_update: Some(TripUpdate {
            trip: Some(TripDescriptor {
                trip_id: Some("T1".into()),
                ..Default::default()
            }),
            stop_time_update: vec![StopTimeUpdate {
                stop_id: Some("S1".into()),
                arrival: Some(StopTimeEvent {
                    time: Some(1_700_000_000),
                    ..Default::default()
                }),
                departure: Some(StopTimeEvent {
                    delay: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn alert_entity() -> FeedEntity {
    let text = |s: &str, lang: Option<&str>| Translation {
        text: Some(s.into()),
        language: lang.map(String::from),
    };
    FeedEntity {
        id: "a".into(),
        alert: Some(Alert {
            informed_entity: vec![EntitySelector {
                route_id: Some("R1".into()),
                direction_id: Some(1),
                ..Default::default()
            }],
            header_text: Some(TranslatedString {
                translation: vec![text("Detour", None), text("Umleitung", Some("de"))],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

type Break = fn(&mut FeedEntity);

fn vp(e: &mut FeedEntity) -> &mut VehiclePosition {
    e.vehicle.as_mut().unwrap()
}
fn tu(e: &mut FeedEntity) -> &mut TripUpdate {
    e.trip_update.as_mut().unwrap()
}
fn al(e: &mut FeedEntity) -> &mut Alert {
    e.alert.as_mut().unwrap()
}

/// (rule, valid entity, how to break it, the field path the error must start with, whether the
/// rule is a v2.0 semantic requirement).
fn cases() -> Vec<(&'static str, FeedEntity, Break, &'static str, bool)> {
    vec![
        (
            "entity id required",
            vehicle_entity(),
            |e| e.id.clear(),
            "id:",
            false,
        ),
        (
            "a vehicle position needs a trip or a vehicle descriptor",
            vehicle_entity(),
            |e| {
                vp(e).trip = None;
                vp(e).vehicle = None;
            },
            "vehicle:",
            true,
        ),
        (
            "latitude required",
            vehicle_entity(),
            |e| vp(e).position.as_mut().unwrap().latitude = None,
            "vehicle.position.latitude:",
            false,
        ),
        (
            "longitude required",
            vehicle_entity(),
            |e| vp(e).position.as_mut().unwrap().longitude = None,
            "vehicle.position.longitude:",
            false,
        ),
        (
            "latitude within -90..=90",
            vehicle_entity(),
            |e| vp(e).position.as_mut().unwrap().latitude = Some(-90.5),
            "vehicle.position.latitude:",
            false,
        ),
        (
            "latitude finite",
            vehicle_entity(),
            |e| vp(e).position.as_mut().unwrap().latitude = Some(f32::NAN),
            "vehicle.position.latitude:",
            false,
        ),
        (
            "longitude within -180..=180",
            vehicle_entity(),
            |e| vp(e).position.as_mut().unwrap().longitude = Some(180.5),
            "vehicle.position.longitude:",
            false,
        ),
        (
            "longitude finite",
            vehicle_entity(),
            |e| vp(e).position.as_mut().unwrap().longitude = Some(f32::INFINITY),
            "vehicle.position.longitude:",
            false,
        ),
        (
            "start_date is YYYYMMDD",
            vehicle_entity(),
            |e| vp(e).trip.as_mut().unwrap().start_date = Some("2024-02-29".into()),
            "vehicle.trip.start_date:",
            false,
        ),
        (
            "start_date is a real date",
            vehicle_entity(),
            |e| vp(e).trip.as_mut().unwrap().start_date = Some("20230229".into()),
            "vehicle.trip.start_date:",
            false,
        ),
        (
            "start_time is HH:MM:SS",
            vehicle_entity(),
            |e| vp(e).trip.as_mut().unwrap().start_time = Some("25:61:00".into()),
            "vehicle.trip.start_time:",
            false,
        ),
        (
            "a trip update needs its trip",
            trip_update_entity(),
            |e| tu(e).trip = None,
            "trip_update.trip:",
            false,
        ),
        (
            "a trip update's trip is checked too",
            trip_update_entity(),
            |e| tu(e).trip.as_mut().unwrap().start_date = Some("tomorrow".into()),
            "trip_update.trip.start_date:",
            false,
        ),
        (
            "a stop time update needs stop_sequence or stop_id",
            trip_update_entity(),
            |e| tu(e).stop_time_update[0].stop_id = None,
            "trip_update.stop_time_update[0]:",
            true,
        ),
        (
            "a stop time event needs delay or time",
            trip_update_entity(),
            |e| tu(e).stop_time_update[0].arrival.as_mut().unwrap().time = None,
            "trip_update.stop_time_update[0].arrival:",
            true,
        ),
        (
            "an alert needs an informed entity",
            alert_entity(),
            |e| al(e).informed_entity.clear(),
            "alert.informed_entity:",
            true,
        ),
        (
            "an informed entity needs a specifier",
            alert_entity(),
            |e| al(e).informed_entity[0] = EntitySelector::default(),
            "alert.informed_entity[0]:",
            true,
        ),
        (
            "direction_id needs route_id",
            alert_entity(),
            |e| al(e).informed_entity[0].route_id = None,
            "alert.informed_entity[0].direction_id:",
            true,
        ),
        (
            "a translation needs its text",
            alert_entity(),
            |e| al(e).header_text.as_mut().unwrap().translation[0].text = None,
            "alert.header_text.translation[0].text:",
            false,
        ),
        (
            "at most one translation without a language",
            alert_entity(),
            |e| al(e).header_text.as_mut().unwrap().translation[1].language = None,
            "alert.header_text.translation:",
            true,
        ),
    ]
}

#[test]
fn every_rule_accepts_the_valid_entity_and_refuses_the_broken_one_naming_the_field() {
    for (rule, valid, break_it, field, _) in cases() {
        assert_eq!(entity(&valid, Rules::ALL), Ok(()), "{rule}: valid refused");
        let mut broken = valid.clone();
        break_it(&mut broken);
        let err = entity(&broken, Rules::ALL).expect_err(rule);
        assert!(
            err.starts_with(field),
            "{rule}: {err:?} should name {field}"
        );
    }
}

#[test]
fn semantic_requirements_hold_from_version_2_0_only() {
    let v1 = Rules::for_version("1.0");
    assert!(!v1.semantic);
    assert!(Rules::for_version("2.0").semantic);
    assert!(Rules::for_version("").semantic);
    for (rule, valid, break_it, _, semantic) in cases() {
        let mut broken = valid.clone();
        break_it(&mut broken);
        assert_eq!(
            entity(&broken, v1).is_ok(),
            semantic,
            "{rule}: semantic={semantic}"
        );
    }
}

#[test]
fn deletions_need_only_their_id() {
    let mut e = vehicle_entity();
    e.is_deleted = Some(true);
    vp(&mut e).position.as_mut().unwrap().latitude = Some(f32::NAN);
    assert_eq!(entity(&e, Rules::ALL), Ok(()));
    e.id.clear();
    assert!(entity(&e, Rules::ALL).is_err());
}

#[test]
fn dates_and_times() {
    assert!(parse_start_date("20240229").is_ok());
    assert!(parse_start_date("20230229").is_err());
    assert!(parse_start_date("20231301").is_err());
    assert_eq!(parse_start_time("25:10:00").unwrap(), 25 * 3600 + 600);
    assert_eq!(parse_start_time("7:05:00").unwrap(), 7 * 3600 + 300);
    assert!(parse_start_time("10:60:00").is_err());
    assert!(parse_start_time("10:00").is_err());
}
