//! Preparing a raw GTFS-realtime feed message for one stream: decode, validate each vehicle
//! entity, filter by the stream's view, and build the update subscribers receive.
//!
//! Bad input never ends the dispatcher here: a message that does not decode is an error for
//! the whole message, an invalid entity is set aside (and reported) while the valid entities of
//! the same message still go out.

use prost::Message;

use crate::channel::Item;
use crate::generated::transit_realtime::{FeedEntity, FeedMessage, VehiclePosition};
use crate::generated::transit_v1::{StreamUpdate, Vehicle};
use crate::spec::Filter;

/// Feed messages larger than this are refused before decoding.
pub const MAX_FEED_BYTES: usize = 16 * 1024 * 1024;

/// Why a whole feed message was set aside.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error("feed message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("not a GTFS-realtime FeedMessage: {0}")]
    Decode(String),
    /// Strict (legacy) preparation only: one bad entity fails the whole message.
    #[error("entity {index} ({id:?}): {reason}")]
    Entity {
        index: usize,
        id: String,
        reason: String,
    },
}

impl PrepareError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            PrepareError::TooLarge { .. } => "too_large",
            PrepareError::Decode(_) => "decode",
            PrepareError::Entity { .. } => "entity",
        }
    }
}

/// One entity of a message that could not be prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedEntity {
    pub index: usize,
    pub id: String,
    pub reason: String,
    /// The entity re-encoded, for the quarantine excerpt.
    pub encoded: Vec<u8>,
}

/// The outcome of preparing one feed message for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// `stream`, `seq` and `missed` are filled in by the dispatcher and the subscriber.
    pub update: StreamUpdate,
    pub malformed: Vec<MalformedEntity>,
}

/// Decodes `item` and builds the update for a stream with `filter`.
pub fn prepare(filter: &Filter, item: &Item) -> Result<Prepared, PrepareError> {
    let feed = decode(&item.payload)?;
    let mut update = StreamUpdate {
        feed_timestamp: feed.header.timestamp.unwrap_or(0),
        received_at_us: item.received_at_us,
        ..Default::default()
    };
    let mut malformed = Vec::new();
    for (index, entity) in feed.entity.iter().enumerate() {
        // An entity on a route this stream does not carry is none of its business, valid or
        // not: skip it before validating, so one route's bad data stays that route's problem.
        if let Some(route) = route_of(entity)
            && !filter.wants_route(route)
        {
            continue;
        }
        match vehicle_of(entity) {
            Ok(None) => {}
            Ok(Some(v)) => {
                if filter.matches(&v.route_id, v.latitude, v.longitude) {
                    update.vehicles.push(v);
                }
            }
            Err(reason) => malformed.push(MalformedEntity {
                index,
                id: entity.id.clone(),
                reason,
                encoded: entity.encode_to_vec(),
            }),
        }
    }
    update.quarantined_entities = malformed.len() as u32;
    Ok(Prepared { update, malformed })
}

/// The legacy preparation the story's service had: the first bad entity fails the whole
/// message (and, in `legacy-unsupervised` mode, ends the dispatcher).
pub fn prepare_strict(filter: &Filter, item: &Item) -> Result<Prepared, PrepareError> {
    let prepared = prepare(filter, item)?;
    if let Some(bad) = prepared.malformed.into_iter().next() {
        return Err(PrepareError::Entity {
            index: bad.index,
            id: bad.id,
            reason: bad.reason,
        });
    }
    Ok(Prepared {
        update: prepared.update,
        malformed: Vec::new(),
    })
}

pub fn decode(payload: &[u8]) -> Result<FeedMessage, PrepareError> {
    if payload.len() > MAX_FEED_BYTES {
        return Err(PrepareError::TooLarge {
            size: payload.len(),
            max: MAX_FEED_BYTES,
        });
    }
    FeedMessage::decode(payload).map_err(|e| PrepareError::Decode(e.to_string()))
}

fn route_of(entity: &FeedEntity) -> Option<&str> {
    entity.vehicle.as_ref()?.trip.as_ref()?.route_id.as_deref()
}

/// `Ok(None)` for entities that carry no vehicle position (deleted, or another entity kind).
fn vehicle_of(entity: &FeedEntity) -> Result<Option<Vehicle>, String> {
    if entity.is_deleted == Some(true) {
        return Ok(None);
    }
    let Some(vp) = &entity.vehicle else {
        return Ok(None);
    };
    if entity.id.is_empty() {
        return Err("entity id is missing".into());
    }
    let mut vehicle = validate_vehicle(vp)?;
    vehicle.entity_id = entity.id.clone();
    Ok(Some(vehicle))
}

fn validate_vehicle(vp: &VehiclePosition) -> Result<Vehicle, String> {
    let vehicle_id = vp
        .vehicle
        .as_ref()
        .and_then(|d| d.id.as_deref())
        .filter(|id| !id.is_empty())
        .ok_or("vehicle id is missing")?;
    let pos = vp.position.as_ref().ok_or("vehicle position is missing")?;
    let (lat, lon) = (pos.latitude as f64, pos.longitude as f64);
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(format!(
            "latitude {} is not a valid WGS-84 latitude",
            pos.latitude
        ));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(format!(
            "longitude {} is not a valid WGS-84 longitude",
            pos.longitude
        ));
    }
    if let Some(b) = pos.bearing
        && (!b.is_finite() || !(0.0..=360.0).contains(&b))
    {
        return Err(format!("bearing {b} is outside 0..=360"));
    }
    if let Some(s) = pos.speed
        && (!s.is_finite() || s < 0.0)
    {
        return Err(format!("speed {s} is not a non-negative number"));
    }
    let trip = vp.trip.as_ref();
    if let Some(date) = trip.and_then(|t| t.start_date.as_deref()) {
        parse_start_date(date).map_err(|e| format!("trip start_date {date:?}: {e}"))?;
    }
    if let Some(time) = trip.and_then(|t| t.start_time.as_deref()) {
        parse_start_time(time).map_err(|e| format!("trip start_time {time:?}: {e}"))?;
    }
    Ok(Vehicle {
        entity_id: String::new(),
        vehicle_id: vehicle_id.to_string(),
        label: vp
            .vehicle
            .as_ref()
            .and_then(|d| d.label.clone())
            .unwrap_or_default(),
        trip_id: trip.and_then(|t| t.trip_id.clone()).unwrap_or_default(),
        route_id: trip.and_then(|t| t.route_id.clone()).unwrap_or_default(),
        latitude: lat,
        longitude: lon,
        bearing: pos.bearing,
        speed: pos.speed,
        timestamp: vp.timestamp.unwrap_or(0),
    })
}

/// GTFS dates are `YYYYMMDD`.
fn parse_start_date(s: &str) -> Result<(u32, u32, u32), String> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected YYYYMMDD".into());
    }
    let (y, m, d) = (
        s[0..4].parse::<u32>().map_err(|e| e.to_string())?,
        s[4..6].parse::<u32>().map_err(|e| e.to_string())?,
        s[6..8].parse::<u32>().map_err(|e| e.to_string())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("month {m} does not exist")),
    };
    if d == 0 || d > days {
        return Err(format!("day {d} does not exist in month {m}"));
    }
    Ok((y, m, d))
}

/// GTFS times are `HH:MM:SS`; hours may exceed 23 for trips past midnight.
fn parse_start_time(s: &str) -> Result<u32, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Err("expected HH:MM:SS".into());
    }
    let num = |p: &str| -> Result<u32, String> {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{p:?} is not a 1-2 digit number"));
        }
        p.parse::<u32>().map_err(|e| e.to_string())
    };
    let (h, m, sec) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
    if h > 47 || m > 59 || sec > 59 {
        return Err("out of range".into());
    }
    Ok(h * 3600 + m * 60 + sec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::generated::transit_realtime::{
        FeedHeader, Position, TripDescriptor, VehicleDescriptor,
    };
    use bytes::Bytes;

    pub fn entity(id: &str, vehicle: &str, route: &str, lat: f32, lon: f32) -> FeedEntity {
        FeedEntity {
            id: id.into(),
            is_deleted: None,
            vehicle: Some(VehiclePosition {
                trip: Some(TripDescriptor {
                    trip_id: Some(format!("T-{vehicle}")),
                    route_id: Some(route.into()),
                    start_date: Some("20261128".into()),
                    start_time: Some("25:10:00".into()),
                    ..Default::default()
                }),
                vehicle: Some(VehicleDescriptor {
                    id: Some(vehicle.into()),
                    label: Some(format!("bus {vehicle}")),
                    ..Default::default()
                }),
                position: Some(Position {
                    latitude: lat,
                    longitude: lon,
                    bearing: Some(90.0),
                    speed: Some(8.5),
                    odometer: None,
                }),
                timestamp: Some(1_795_837_200),
                ..Default::default()
            }),
        }
    }

    pub fn feed(entities: Vec<FeedEntity>) -> Item {
        let msg = FeedMessage {
            header: FeedHeader {
                gtfs_realtime_version: "2.0".into(),
                incrementality: None,
                timestamp: Some(1_795_837_200),
                feed_version: None,
            },
            entity: entities,
        };
        Item::new(Bytes::from(msg.encode_to_vec()))
    }

    #[test]
    fn prepares_and_filters_vehicles() {
        let item = feed(vec![
            entity("e1", "v1", "R1", 52.5, 13.4),
            entity("e2", "v2", "R2", 52.5, 13.4),
        ]);
        let all = prepare(&Filter::default(), &item).unwrap();
        assert_eq!(all.update.vehicles.len(), 2);
        assert!(all.malformed.is_empty());
        assert_eq!(all.update.feed_timestamp, 1_795_837_200);
        assert_eq!(all.update.received_at_us, item.received_at_us);
        let r1: Filter = "x=routes:R1"
            .parse::<crate::spec::StreamSpec>()
            .unwrap()
            .filter;
        let only = prepare(&r1, &item).unwrap();
        assert_eq!(only.update.vehicles.len(), 1);
        assert_eq!(only.update.vehicles[0].vehicle_id, "v1");
        assert_eq!(only.update.vehicles[0].route_id, "R1");
    }

    #[test]
    fn malformed_entities_are_set_aside_and_the_rest_still_go_out() {
        let mut missing_id = entity("e3", "v3", "R1", 52.5, 13.4);
        missing_id.vehicle.as_mut().unwrap().vehicle = None;
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
        let mut no_pos = entity("e8", "v8", "R1", 52.5, 13.4);
        no_pos.vehicle.as_mut().unwrap().position = None;
        let item = feed(vec![
            entity("e0", "v0", "R1", 52.5, 13.4),
            entity("e1", "v1", "R1", f32::NAN, 13.4),
            entity("e2", "v2", "R1", 52.5, 200.0),
            missing_id,
            bad_date,
            entity("e5", "v5", "R1", 52.5, 13.4),
            entity("", "v6", "R1", 52.5, 13.4),
            bad_time,
            no_pos,
        ]);
        let p = prepare(&Filter::default(), &item).unwrap();
        let ids: Vec<&str> = p
            .update
            .vehicles
            .iter()
            .map(|v| v.vehicle_id.as_str())
            .collect();
        assert_eq!(ids, ["v0", "v5"]);
        let reasons: Vec<&str> = p.malformed.iter().map(|m| m.reason.as_str()).collect();
        assert_eq!(p.malformed.len(), 7, "{reasons:?}");
        assert_eq!(p.update.quarantined_entities, 7);
        assert!(reasons[0].contains("latitude"));
        assert!(reasons[1].contains("longitude"));
        assert!(reasons[2].contains("vehicle id"));
        assert!(reasons[3].contains("start_date"));
        assert!(reasons[4].contains("entity id"));
        assert!(reasons[5].contains("start_time"));
        assert!(reasons[6].contains("position"));
        assert!(p.malformed.iter().all(|m| !m.encoded.is_empty()));
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
        let r2: Filter = "x=routes:R2"
            .parse::<crate::spec::StreamSpec>()
            .unwrap()
            .filter;
        let p = prepare_strict(&r2, &item).unwrap();
        assert_eq!(p.update.vehicles.len(), 1);
        assert!(prepare_strict(&Filter::default(), &item).is_err());
    }

    #[test]
    fn garbage_and_oversize_input_are_clear_errors() {
        let garbage = Item::new(Bytes::from_static(b"\xff\xff\xff\xff not protobuf"));
        let err = prepare(&Filter::default(), &garbage).unwrap_err();
        assert_eq!(err.label(), "decode");
        let truncated = {
            let full = feed(vec![entity("e0", "v0", "R1", 1.0, 1.0)]);
            Item::new(full.payload.slice(..full.payload.len() - 3))
        };
        assert_eq!(
            prepare(&Filter::default(), &truncated).unwrap_err().label(),
            "decode"
        );
        let huge = Item::new(Bytes::from(vec![0u8; MAX_FEED_BYTES + 1]));
        assert!(matches!(
            prepare(&Filter::default(), &huge),
            Err(PrepareError::TooLarge { .. })
        ));
    }

    #[test]
    fn deleted_and_non_vehicle_entities_are_skipped_not_quarantined() {
        let mut deleted = entity("e1", "v1", "R1", f32::NAN, 0.0);
        deleted.is_deleted = Some(true);
        let other = FeedEntity {
            id: "alert-1".into(),
            ..Default::default()
        };
        let p = prepare(&Filter::default(), &feed(vec![deleted, other])).unwrap();
        assert!(p.update.vehicles.is_empty());
        assert!(p.malformed.is_empty());
    }

    #[test]
    fn dates_and_times() {
        assert!(parse_start_date("20240229").is_ok());
        assert!(parse_start_date("20230229").is_err());
        assert!(parse_start_date("20231301").is_err());
        assert_eq!(parse_start_time("25:10:00").unwrap(), 25 * 3600 + 600);
        assert!(parse_start_time("10:60:00").is_err());
    }

    proptest::proptest! {
        #[test]
        fn prepare_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = prepare(&Filter::default(), &Item::new(Bytes::from(body)));
        }
    }
}
