//! GTFS-realtime entities (`transit_realtime`) into the typed messages of our API
//! (`stallwatch.transit.v1`). Each conversion takes the decoded entity by value and moves its
//! strings, so converting a large feed costs no copies of its text. Enum values are the
//! GTFS-realtime numbers in both schemas; the GTFS defaults the reference declares are filled
//! in where our field has no presence.

use crate::generated::transit_realtime as gtfs;
use crate::generated::transit_v1 as v1;

/// `UNKNOWN_CAUSE`, the reference's default for `Alert.cause`.
const UNKNOWN_CAUSE: i32 = 1;
/// `UNKNOWN_EFFECT`, the reference's default for `Alert.effect`.
const UNKNOWN_EFFECT: i32 = 8;
/// `UNKNOWN_SEVERITY`, the reference's default for `Alert.severity_level`.
const UNKNOWN_SEVERITY: i32 = 1;

pub fn trip(t: gtfs::TripDescriptor) -> v1::Trip {
    v1::Trip {
        trip_id: t.trip_id.unwrap_or_default(),
        route_id: t.route_id.unwrap_or_default(),
        direction_id: t.direction_id,
        start_time: t.start_time.unwrap_or_default(),
        start_date: t.start_date.unwrap_or_default(),
        schedule_relationship: t.schedule_relationship,
    }
}

fn vehicle_ref(d: gtfs::VehicleDescriptor) -> v1::VehicleRef {
    v1::VehicleRef {
        id: d.id.unwrap_or_default(),
        label: d.label.unwrap_or_default(),
        license_plate: d.license_plate.unwrap_or_default(),
    }
}

pub fn vehicle(entity_id: String, vp: gtfs::VehiclePosition) -> v1::Vehicle {
    let descriptor = vp.vehicle.map(vehicle_ref).unwrap_or_default();
    let trip = vp.trip.map(trip);
    let (has_position, latitude, longitude, bearing, speed, odometer) = match vp.position {
        Some(p) => (
            true,
            f64::from(p.latitude.unwrap_or_default()),
            f64::from(p.longitude.unwrap_or_default()),
            p.bearing,
            p.speed,
            p.odometer,
        ),
        None => (false, 0.0, 0.0, None, None, None),
    };
    v1::Vehicle {
        entity_id,
        vehicle_id: descriptor.id,
        label: descriptor.label,
        license_plate: descriptor.license_plate,
        trip_id: trip.as_ref().map(|t| t.trip_id.clone()).unwrap_or_default(),
        route_id: trip
            .as_ref()
            .map(|t| t.route_id.clone())
            .unwrap_or_default(),
        trip,
        latitude,
        longitude,
        bearing,
        speed,
        odometer,
        has_position,
        timestamp: vp.timestamp.unwrap_or(0),
        current_stop_sequence: vp.current_stop_sequence,
        stop_id: vp.stop_id.unwrap_or_default(),
        current_status: vp.current_status,
        congestion_level: vp.congestion_level,
        occupancy_status: vp.occupancy_status,
        occupancy_percentage: vp.occupancy_percentage,
    }
}

fn stop_time_event(e: gtfs::trip_update::StopTimeEvent) -> v1::StopTimeEvent {
    v1::StopTimeEvent {
        delay: e.delay,
        time: e.time,
        uncertainty: e.uncertainty,
        scheduled_time: e.scheduled_time,
    }
}

pub fn trip_update(entity_id: String, tu: gtfs::TripUpdate) -> v1::TripUpdate {
    v1::TripUpdate {
        entity_id,
        trip: tu.trip.map(trip),
        vehicle: tu.vehicle.map(vehicle_ref),
        stop_time_updates: tu
            .stop_time_update
            .into_iter()
            .map(|s| v1::StopTimeUpdate {
                stop_sequence: s.stop_sequence,
                stop_id: s.stop_id.unwrap_or_default(),
                arrival: s.arrival.map(stop_time_event),
                departure: s.departure.map(stop_time_event),
                // SCHEDULED (0) is the reference's default.
                schedule_relationship: s.schedule_relationship.unwrap_or(0),
            })
            .collect(),
        timestamp: tu.timestamp.unwrap_or(0),
        delay: tu.delay,
    }
}

fn translations(s: Option<gtfs::TranslatedString>) -> Vec<v1::Translation> {
    s.map(|s| {
        s.translation
            .into_iter()
            .map(|t| v1::Translation {
                text: t.text.unwrap_or_default(),
                language: t.language.unwrap_or_default(),
            })
            .collect()
    })
    .unwrap_or_default()
}

pub fn alert(entity_id: String, a: gtfs::Alert) -> v1::Alert {
    v1::Alert {
        entity_id,
        active_periods: a
            .active_period
            .into_iter()
            .map(|p| v1::TimeRange {
                start: p.start,
                end: p.end,
            })
            .collect(),
        informed_entities: a
            .informed_entity
            .into_iter()
            .map(|s| v1::EntitySelector {
                agency_id: s.agency_id.unwrap_or_default(),
                route_id: s.route_id.unwrap_or_default(),
                route_type: s.route_type,
                trip: s.trip.map(trip),
                stop_id: s.stop_id.unwrap_or_default(),
                direction_id: s.direction_id,
            })
            .collect(),
        cause: a.cause.unwrap_or(UNKNOWN_CAUSE),
        effect: a.effect.unwrap_or(UNKNOWN_EFFECT),
        url: translations(a.url),
        header_text: translations(a.header_text),
        description_text: translations(a.description_text),
        tts_header_text: translations(a.tts_header_text),
        tts_description_text: translations(a.tts_description_text),
        severity_level: a.severity_level.unwrap_or(UNKNOWN_SEVERITY),
    }
}
