//! GTFS-realtime entities straight into our `StreamUpdate` fields, in one pass over the
//! producer's bytes: no prost structs on either side and no `String` per field.
//!
//! It reproduces, byte for byte, what decoding with prost, [`crate::gtfs::validate`],
//! [`crate::gtfs::convert`] and encoding with prost produce (`decoded/tests.rs` compares them over
//! arbitrary feeds). It only decides *whether* an entity is valid: an invalid one
//! ([`Stop::Invalid`]) is decoded again with prost and `validate` names the rule it breaks. Every
//! known field is checked as prost checks it (wire type, UTF-8), including fields we do not
//! carry, so a message prost refuses is never taken here.

use super::wire::{Step, Stop, Writer, fields, once};
use crate::gtfs::validate::{self, Rules};

/// One `FeedEntity`, its parts still encoded.
#[derive(Debug, Default)]
pub(super) struct Entity<'a> {
    pub id: &'a [u8],
    pub is_deleted: Option<bool>,
    pub trip_update: Option<&'a [u8]>,
    pub vehicle: Option<&'a [u8]>,
    pub alert: Option<&'a [u8]>,
}

pub(super) fn entity(buf: &[u8]) -> Step<Entity<'_>> {
    let mut e = Entity::default();
    for field in fields(buf) {
        match field? {
            (1, v) => e.id = v.text()?,
            (2, v) => e.is_deleted = Some(v.bool()?),
            (3, v) => once(&mut e.trip_update, v)?,
            (4, v) => once(&mut e.vehicle, v)?,
            (5, v) => once(&mut e.alert, v)?,
            _ => {}
        }
    }
    Ok(e)
}

/// `FeedHeader`: (gtfs_realtime_version, incrementality, timestamp).
pub(super) fn header(buf: &[u8]) -> Step<(&[u8], Option<i32>, Option<u64>)> {
    let (mut version, mut incrementality, mut timestamp) = (&[][..], None, None);
    for field in fields(buf) {
        match field? {
            (1, v) => version = v.text()?,
            (2, v) => incrementality = Some(v.i32()?),
            (3, v) => timestamp = Some(v.u64()?),
            (4, v) => {
                v.text()?;
            }
            _ => {}
        }
    }
    Ok((version, incrementality, timestamp))
}

/// Text already checked as UTF-8 (by `Value::text`), as a `str` for the parsers.
fn str_of(text: &[u8]) -> Option<&str> {
    std::str::from_utf8(text).ok()
}

fn invalid_unless(ok: bool) -> Step {
    if ok { Ok(()) } else { Err(Stop::Invalid) }
}

#[derive(Debug, Default)]
struct Trip<'a> {
    trip_id: Option<&'a [u8]>,
    route_id: Option<&'a [u8]>,
    direction_id: Option<u32>,
    start_time: Option<&'a [u8]>,
    start_date: Option<&'a [u8]>,
    schedule_relationship: Option<i32>,
}

/// A `TripDescriptor`, checked (`validate::trip_descriptor`).
fn trip(buf: &[u8]) -> Step<Trip<'_>> {
    let mut t = Trip::default();
    for field in fields(buf) {
        match field? {
            (1, v) => t.trip_id = Some(v.text()?),
            (5, v) => t.route_id = Some(v.text()?),
            (6, v) => t.direction_id = Some(v.u32()?),
            (2, v) => t.start_time = Some(v.text()?),
            (3, v) => t.start_date = Some(v.text()?),
            (4, v) => t.schedule_relationship = Some(v.i32()?),
            _ => {}
        }
    }
    if let Some(date) = t.start_date {
        invalid_unless(str_of(date).is_some_and(|d| validate::parse_start_date(d).is_ok()))?;
    }
    if let Some(time) = t.start_time {
        invalid_unless(str_of(time).is_some_and(|t| validate::parse_start_time(t).is_ok()))?;
    }
    Ok(t)
}

/// `stallwatch.transit.v1.Trip`.
fn write_trip(w: &mut Writer<'_>, t: &Trip<'_>) {
    w.text(1, t.trip_id.unwrap_or(b""));
    w.text(2, t.route_id.unwrap_or(b""));
    w.opt_u32(3, t.direction_id);
    w.text(4, t.start_time.unwrap_or(b""));
    w.text(5, t.start_date.unwrap_or(b""));
    w.opt_i32(6, t.schedule_relationship);
}

/// A `VehicleDescriptor`: (id, label, license_plate).
fn vehicle_descriptor(buf: &[u8]) -> Step<[&[u8]; 3]> {
    let mut d = [&[][..]; 3];
    for field in fields(buf) {
        match field? {
            (tag @ 1..=3, v) => d[tag as usize - 1] = v.text()?,
            (4, v) => {
                v.i32()?;
            }
            _ => {}
        }
    }
    Ok(d)
}

/// What a `routes:` or `bbox:` filter needs of a vehicle.
pub(super) struct VehicleScope<'a> {
    /// `Some` when the vehicle has a trip (its route, or "" when the trip names none).
    pub route: Option<&'a [u8]>,
    pub position: Option<(f64, f64)>,
}

#[derive(Debug, Default)]
struct Position {
    latitude: Option<f32>,
    longitude: Option<f32>,
    bearing: Option<f32>,
    odometer: Option<f64>,
    speed: Option<f32>,
}

/// A `Position`, checked (`validate::position`).
fn position(buf: &[u8]) -> Step<Position> {
    let mut p = Position::default();
    for field in fields(buf) {
        match field? {
            (1, v) => p.latitude = Some(v.f32()?),
            (2, v) => p.longitude = Some(v.f32()?),
            (3, v) => p.bearing = Some(v.f32()?),
            (4, v) => p.odometer = Some(v.f64()?),
            (5, v) => p.speed = Some(v.f32()?),
            _ => {}
        }
    }
    let (Some(lat), Some(lon)) = (p.latitude, p.longitude) else {
        return Err(Stop::Invalid);
    };
    invalid_unless(lat.is_finite() && (-90.0..=90.0).contains(&lat))?;
    invalid_unless(lon.is_finite() && (-180.0..=180.0).contains(&lon))?;
    Ok(p)
}

/// A `VehiclePosition` as the `StreamUpdate.vehicles` message (`convert::vehicle`).
pub(super) fn vehicle<'a>(
    w: &mut Writer<'_>,
    entity_id: &[u8],
    buf: &'a [u8],
    rules: Rules,
) -> Step<VehicleScope<'a>> {
    let (mut trip_buf, mut descriptor_buf, mut position_buf) = (None, None, None);
    let mut current_stop_sequence = None;
    let mut stop_id: &[u8] = b"";
    let (mut current_status, mut congestion_level, mut occupancy_status) = (None, None, None);
    let (mut timestamp, mut occupancy_percentage) = (None, None);
    for field in fields(buf) {
        match field? {
            (1, v) => once(&mut trip_buf, v)?,
            (8, v) => once(&mut descriptor_buf, v)?,
            (2, v) => once(&mut position_buf, v)?,
            (3, v) => current_stop_sequence = Some(v.u32()?),
            (7, v) => stop_id = v.text()?,
            (4, v) => current_status = Some(v.i32()?),
            (5, v) => timestamp = Some(v.u64()?),
            (6, v) => congestion_level = Some(v.i32()?),
            (9, v) => occupancy_status = Some(v.i32()?),
            (10, v) => occupancy_percentage = Some(v.u32()?),
            _ => {}
        }
    }
    invalid_unless(!rules.semantic || trip_buf.is_some() || descriptor_buf.is_some())?;
    let trip = trip_buf.map(trip).transpose()?;
    let [vehicle_id, label, license_plate] =
        descriptor_buf.map_or(Ok([&[][..]; 3]), vehicle_descriptor)?;
    let position = position_buf.map(position).transpose()?;
    let at = position.as_ref().map(|p| {
        (
            f64::from(p.latitude.unwrap_or_default()),
            f64::from(p.longitude.unwrap_or_default()),
        )
    });
    let (latitude, longitude) = at.unwrap_or((0.0, 0.0));
    w.text(1, entity_id);
    w.text(2, vehicle_id);
    w.text(3, label);
    w.text(4, trip.as_ref().and_then(|t| t.trip_id).unwrap_or(b""));
    w.text(5, trip.as_ref().and_then(|t| t.route_id).unwrap_or(b""));
    w.f64(6, latitude);
    w.f64(7, longitude);
    w.opt_f32(8, position.as_ref().and_then(|p| p.bearing));
    w.opt_f32(9, position.as_ref().and_then(|p| p.speed));
    w.u64(10, timestamp.unwrap_or(0));
    w.bool(11, position.is_some());
    if let Some(t) = &trip {
        w.message(12, |w| write_trip(w, t));
    }
    w.opt_u32(13, current_stop_sequence);
    w.text(14, stop_id);
    w.opt_i32(15, current_status);
    w.opt_i32(16, congestion_level);
    w.opt_i32(17, occupancy_status);
    w.opt_u32(18, occupancy_percentage);
    w.opt_f64(19, position.as_ref().and_then(|p| p.odometer));
    w.text(20, license_plate);
    Ok(VehicleScope {
        route: trip.map(|t| t.route_id.unwrap_or(b"")),
        position: at,
    })
}

/// A `TripUpdate` as the `StreamUpdate.trip_updates` message (`convert::trip_update`);
/// returns the route scope (as [`VehicleScope::route`]).
pub(super) fn trip_update<'a>(
    w: &mut Writer<'_>,
    entity_id: &[u8],
    buf: &'a [u8],
    rules: Rules,
) -> Step<Option<&'a [u8]>> {
    let (mut trip_buf, mut descriptor_buf) = (None, None);
    let (mut timestamp, mut delay) = (None, None);
    for field in fields(buf) {
        match field? {
            (1, v) => once(&mut trip_buf, v)?,
            (3, v) => once(&mut descriptor_buf, v)?,
            (2, v) => {
                v.message()?;
            }
            (4, v) => timestamp = Some(v.u64()?),
            (5, v) => delay = Some(v.i32()?),
            _ => {}
        }
    }
    let trip = trip(trip_buf.ok_or(Stop::Invalid)?)?;
    let descriptor = descriptor_buf.map(vehicle_descriptor).transpose()?;
    w.text(1, entity_id);
    w.message(2, |w| write_trip(w, &trip));
    if let Some([id, label, license_plate]) = descriptor {
        w.message(3, |w| {
            w.text(1, id);
            w.text(2, label);
            w.text(3, license_plate);
        });
    }
    for field in fields(buf) {
        if let (2, v) = field? {
            w.message(4, |w| stop_time_update(w, v.message()?, rules))?;
        }
    }
    w.u64(5, timestamp.unwrap_or(0));
    w.opt_i32(6, delay);
    Ok(Some(trip.route_id.unwrap_or(b"")))
}

fn stop_time_update(w: &mut Writer<'_>, buf: &[u8], rules: Rules) -> Step {
    let (mut stop_sequence, mut stop_id, mut schedule_relationship) = (None, None, None);
    let (mut arrival, mut departure) = (None, None);
    for field in fields(buf) {
        match field? {
            (1, v) => stop_sequence = Some(v.u32()?),
            (4, v) => stop_id = Some(v.text()?),
            (2, v) => once(&mut arrival, v)?,
            (3, v) => once(&mut departure, v)?,
            (5, v) => schedule_relationship = Some(v.i32()?),
            _ => {}
        }
    }
    invalid_unless(!rules.semantic || stop_sequence.is_some() || stop_id.is_some())?;
    let arrival = arrival.map(|b| stop_time_event(b, rules)).transpose()?;
    let departure = departure.map(|b| stop_time_event(b, rules)).transpose()?;
    w.opt_u32(1, stop_sequence);
    w.text(2, stop_id.unwrap_or(b""));
    for (tag, event) in [(3, arrival), (4, departure)] {
        if let Some([delay, time, uncertainty, scheduled_time]) = event {
            w.message(tag, |w| {
                w.opt_i32(1, delay.map(|v| v as i32));
                w.opt_i64(2, time);
                w.opt_i32(3, uncertainty.map(|v| v as i32));
                w.opt_i64(4, scheduled_time);
            });
        }
    }
    // SCHEDULED (0) is the reference's default.
    w.i32(5, schedule_relationship.unwrap_or(0));
    Ok(())
}

/// A `StopTimeEvent`: delay, time, uncertainty, scheduled_time (the int32s widened).
fn stop_time_event(buf: &[u8], rules: Rules) -> Step<[Option<i64>; 4]> {
    let mut e = [None; 4];
    for field in fields(buf) {
        match field? {
            (tag @ (1 | 3), v) => e[tag as usize - 1] = Some(i64::from(v.i32()?)),
            (tag @ (2 | 4), v) => e[tag as usize - 1] = Some(v.i64()?),
            _ => {}
        }
    }
    invalid_unless(!rules.semantic || e[0].is_some() || e[1].is_some())?;
    Ok(e)
}

/// What a `routes:` filter needs of an alert (see [`crate::gtfs::decoded::RouteScope::Alert`]).
#[derive(Debug, Default)]
pub(super) struct AlertScope<'a> {
    pub routes: Vec<&'a [u8]>,
    pub everywhere: bool,
}

/// `UNKNOWN_CAUSE`, `UNKNOWN_EFFECT`, `UNKNOWN_SEVERITY`: the reference's defaults.
const DEFAULT_CAUSE: i32 = 1;
const DEFAULT_EFFECT: i32 = 8;
const DEFAULT_SEVERITY: i32 = 1;

/// An `Alert` as the `StreamUpdate.alerts` message (`convert::alert`).
pub(super) fn alert<'a>(
    w: &mut Writer<'_>,
    entity_id: &[u8],
    buf: &'a [u8],
    rules: Rules,
) -> Step<AlertScope<'a>> {
    let (mut cause, mut effect, mut severity) = (None, None, None);
    // url, header_text, description_text, tts_header_text, tts_description_text.
    let mut texts: [Option<&[u8]>; 5] = [None; 5];
    let mut informed = 0usize;
    for field in fields(buf) {
        match field? {
            (1, v) => {
                v.message()?;
            }
            (5, v) => {
                v.message()?;
                informed += 1;
            }
            (6, v) => cause = Some(v.i32()?),
            (7, v) => effect = Some(v.i32()?),
            (8, v) => once(&mut texts[0], v)?,
            (tag @ 10..=13, v) => once(&mut texts[tag as usize - 9], v)?,
            (14, v) => severity = Some(v.i32()?),
            _ => {}
        }
    }
    invalid_unless(!rules.semantic || informed > 0)?;
    w.text(1, entity_id);
    for field in fields(buf) {
        if let (1, v) = field? {
            w.message(2, |w| time_range(w, v.message()?))?;
        }
    }
    let mut scope = AlertScope::default();
    for field in fields(buf) {
        if let (5, v) = field? {
            w.message(3, |w| entity_selector(w, v.message()?, rules, &mut scope))?;
        }
    }
    w.i32(4, cause.unwrap_or(DEFAULT_CAUSE));
    w.i32(5, effect.unwrap_or(DEFAULT_EFFECT));
    for (tag, text) in (6..).zip(texts) {
        if let Some(text) = text {
            translated_string(w, tag, text, rules)?;
        }
    }
    w.i32(11, severity.unwrap_or(DEFAULT_SEVERITY));
    Ok(scope)
}

fn time_range(w: &mut Writer<'_>, buf: &[u8]) -> Step {
    let (mut start, mut end) = (None, None);
    for field in fields(buf) {
        match field? {
            (1, v) => start = Some(v.u64()?),
            (2, v) => end = Some(v.u64()?),
            _ => {}
        }
    }
    w.opt_u64(1, start);
    w.opt_u64(2, end);
    Ok(())
}

fn entity_selector<'a>(
    w: &mut Writer<'_>,
    buf: &'a [u8],
    rules: Rules,
    scope: &mut AlertScope<'a>,
) -> Step {
    let (mut agency_id, mut route_id, mut stop_id) = (None, None, None);
    let (mut route_type, mut direction_id, mut trip_buf) = (None, None, None);
    for field in fields(buf) {
        match field? {
            (1, v) => agency_id = Some(v.text()?),
            (2, v) => route_id = Some(v.text()?),
            (3, v) => route_type = Some(v.i32()?),
            (4, v) => once(&mut trip_buf, v)?,
            (5, v) => stop_id = Some(v.text()?),
            (6, v) => direction_id = Some(v.u32()?),
            _ => {}
        }
    }
    let trip = trip_buf.map(trip).transpose()?;
    if rules.semantic {
        invalid_unless(
            agency_id.is_some()
                || route_id.is_some()
                || route_type.is_some()
                || trip.is_some()
                || stop_id.is_some()
                || direction_id.is_some(),
        )?;
        invalid_unless(direction_id.is_none() || route_id.is_some())?;
    }
    w.text(1, agency_id.unwrap_or(b""));
    w.text(2, route_id.unwrap_or(b""));
    w.opt_i32(3, route_type);
    if let Some(t) = &trip {
        w.message(4, |w| write_trip(w, t));
    }
    w.text(5, stop_id.unwrap_or(b""));
    w.opt_u32(6, direction_id);
    let route = route_id.filter(|r| !r.is_empty()).or_else(|| {
        trip.as_ref()
            .and_then(|t| t.route_id)
            .filter(|r| !r.is_empty())
    });
    match route {
        Some(r) => scope.routes.push(r),
        None if trip.is_none() => scope.everywhere = true,
        // A trip named by its id alone: its route is not known here.
        None => {}
    }
    Ok(())
}

/// A `TranslatedString` as repeated `Translation` fields `tag`.
fn translated_string(w: &mut Writer<'_>, tag: u32, buf: &[u8], rules: Rules) -> Step {
    let mut unspecified = 0;
    for field in fields(buf) {
        if let (1, v) = field? {
            let (mut text, mut language) = (None, None);
            for field in fields(v.message()?) {
                match field? {
                    (1, v) => text = Some(v.text()?),
                    (2, v) => language = Some(v.text()?),
                    _ => {}
                }
            }
            let text = text.ok_or(Stop::Invalid)?;
            let language = language.unwrap_or(b"");
            if language.is_empty() {
                unspecified += 1;
            }
            w.message(tag, |w| {
                w.text(1, text);
                w.text(2, language);
            });
        }
    }
    invalid_unless(!rules.semantic || unspecified <= 1)
}
