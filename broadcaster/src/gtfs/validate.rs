//! The GTFS-realtime rules an entity must meet to be carried, and only those: each rule is one
//! the reference states ("Required", "must"), listed with the reference's wording in
//! `broadcaster/README.md` ("Validation"). What the reference merely recommends ("should"), or
//! does not say at all (duplicate entity ids, vehicle timestamps ahead of the header,
//! positions at 0,0, unknown fields, extensions, explicit default values), is not refused.
//!
//! Two kinds of rule: the schema's own (`required` fields, value formats such as YYYYMMDD and
//! WGS-84 ranges) hold for every feed; the reference's semantic requirements ("Required" and
//! "Conditionally required" beyond the schema) hold "in GTFS-realtime v2.0 and higher", and
//! the reference says feeds of version 1.0 may not meet them, so a 1.0 feed is not held to
//! them ([`Rules::for_version`]).
//!
//! Every error starts with the path of the offending field, e.g.
//! `vehicle.position.latitude: 95 is outside -90..=90`.

use crate::generated::transit_realtime::trip_update::{StopTimeEvent, StopTimeUpdate};
use crate::generated::transit_realtime::{
    Alert, EntitySelector, FeedEntity, Position, TranslatedString, TripDescriptor, TripUpdate,
    VehiclePosition,
};

#[cfg(test)]
mod tests;

/// Which rules apply to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The reference's semantic requirements (v2.0 and higher).
    pub semantic: bool,
}

impl Rules {
    /// The rules for a feed whose header says `gtfs_realtime_version`: semantic requirements
    /// unless the version is 1.x (a missing or unreadable version gets the current rules).
    pub fn for_version(gtfs_realtime_version: &str) -> Self {
        let major = gtfs_realtime_version.trim().split('.').next().unwrap_or("");
        Self {
            semantic: major.parse::<u32>().map_or(true, |m| m >= 2),
        }
    }

    pub const ALL: Rules = Rules { semantic: true };
}

/// Checks one entity. Deleted entities need only their id (the reference lets a deletion omit
/// the rest), and entities of kinds the broadcaster does not carry are not checked beyond it.
pub fn entity(e: &FeedEntity, rules: Rules) -> Result<(), String> {
    if e.id.is_empty() {
        return Err("id: missing (required)".into());
    }
    if e.is_deleted == Some(true) {
        return Ok(());
    }
    if let Some(vp) = &e.vehicle {
        vehicle(vp, rules)?;
    }
    if let Some(tu) = &e.trip_update {
        trip_update(tu, rules)?;
    }
    if let Some(a) = &e.alert {
        alert(a, rules)?;
    }
    Ok(())
}

pub fn vehicle(vp: &VehiclePosition, rules: Rules) -> Result<(), String> {
    if rules.semantic && vp.trip.is_none() && vp.vehicle.is_none() {
        return Err(
            "vehicle: has neither trip nor vehicle descriptor, so it describes no vehicle".into(),
        );
    }
    if let Some(trip) = &vp.trip {
        trip_descriptor("vehicle.trip", trip)?;
    }
    if let Some(p) = &vp.position {
        position("vehicle.position", p)?;
    }
    Ok(())
}

fn position(path: &str, p: &Position) -> Result<(), String> {
    let lat = p
        .latitude
        .ok_or_else(|| format!("{path}.latitude: missing (required)"))?;
    let lon = p
        .longitude
        .ok_or_else(|| format!("{path}.longitude: missing (required)"))?;
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(format!(
            "{path}.latitude: {lat} is not a WGS-84 latitude (-90..=90)"
        ));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(format!(
            "{path}.longitude: {lon} is not a WGS-84 longitude (-180..=180)"
        ));
    }
    Ok(())
}

pub fn trip_descriptor(path: &str, t: &TripDescriptor) -> Result<(), String> {
    if let Some(date) = &t.start_date {
        parse_start_date(date).map_err(|e| format!("{path}.start_date: {date:?}: {e}"))?;
    }
    if let Some(time) = &t.start_time {
        parse_start_time(time).map_err(|e| format!("{path}.start_time: {time:?}: {e}"))?;
    }
    Ok(())
}

pub fn trip_update(tu: &TripUpdate, rules: Rules) -> Result<(), String> {
    let trip = tu
        .trip
        .as_ref()
        .ok_or("trip_update.trip: missing (required)")?;
    trip_descriptor("trip_update.trip", trip)?;
    if !rules.semantic {
        return Ok(());
    }
    for (i, stu) in tu.stop_time_update.iter().enumerate() {
        stop_time_update(&format!("trip_update.stop_time_update[{i}]"), stu)?;
    }
    Ok(())
}

fn stop_time_update(path: &str, stu: &StopTimeUpdate) -> Result<(), String> {
    if stu.stop_sequence.is_none() && stu.stop_id.is_none() {
        return Err(format!(
            "{path}: neither stop_sequence nor stop_id (one is required)"
        ));
    }
    if let Some(ev) = &stu.arrival {
        stop_time_event(&format!("{path}.arrival"), ev)?;
    }
    if let Some(ev) = &stu.departure {
        stop_time_event(&format!("{path}.departure"), ev)?;
    }
    Ok(())
}

fn stop_time_event(path: &str, ev: &StopTimeEvent) -> Result<(), String> {
    if ev.delay.is_none() && ev.time.is_none() {
        return Err(format!(
            "{path}: neither delay nor time (one must be provided)"
        ));
    }
    Ok(())
}

pub fn alert(a: &Alert, rules: Rules) -> Result<(), String> {
    if rules.semantic && a.informed_entity.is_empty() {
        return Err("alert.informed_entity: missing (at least one is required)".into());
    }
    for (i, sel) in a.informed_entity.iter().enumerate() {
        entity_selector(&format!("alert.informed_entity[{i}]"), sel, rules)?;
    }
    for (name, text) in [
        ("url", &a.url),
        ("header_text", &a.header_text),
        ("description_text", &a.description_text),
        ("tts_header_text", &a.tts_header_text),
        ("tts_description_text", &a.tts_description_text),
    ] {
        if let Some(text) = text {
            translated_string(&format!("alert.{name}"), text, rules)?;
        }
    }
    Ok(())
}

fn entity_selector(path: &str, sel: &EntitySelector, rules: Rules) -> Result<(), String> {
    if let Some(trip) = &sel.trip {
        trip_descriptor(&format!("{path}.trip"), trip)?;
    }
    if !rules.semantic {
        return Ok(());
    }
    if sel.agency_id.is_none()
        && sel.route_id.is_none()
        && sel.route_type.is_none()
        && sel.trip.is_none()
        && sel.stop_id.is_none()
        && sel.direction_id.is_none()
    {
        return Err(format!("{path}: no specifier (at least one must be given)"));
    }
    if sel.direction_id.is_some() && sel.route_id.is_none() {
        return Err(format!(
            "{path}.direction_id: given without route_id (route_id must also be provided)"
        ));
    }
    Ok(())
}

fn translated_string(path: &str, s: &TranslatedString, rules: Rules) -> Result<(), String> {
    let mut unspecified = 0;
    for (i, t) in s.translation.iter().enumerate() {
        if t.text.is_none() {
            return Err(format!("{path}.translation[{i}].text: missing (required)"));
        }
        if t.language.as_deref().is_none_or(str::is_empty) {
            unspecified += 1;
        }
    }
    if rules.semantic && unspecified > 1 {
        return Err(format!(
            "{path}.translation: {unspecified} translations without a language (at most one may omit it)"
        ));
    }
    Ok(())
}

/// GTFS dates are `YYYYMMDD`, a real calendar date.
pub fn parse_start_date(s: &str) -> Result<(u32, u32, u32), String> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected YYYYMMDD".into());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|e| e.to_string());
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
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

/// GTFS times are `HH:MM:SS` (`H:MM:SS` accepted); hours past 24 are trips after midnight.
pub fn parse_start_time(s: &str) -> Result<u32, String> {
    // No `Vec` of parts: every trip of every message goes through here.
    let mut parts = s.split(':');
    let (Some(h), Some(m), Some(sec), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected HH:MM:SS".into());
    };
    let num = |p: &str, max_len: usize| -> Result<u32, String> {
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{p:?} is not a number of at most {max_len} digits"));
        }
        p.parse::<u32>().map_err(|e| e.to_string())
    };
    let (h, m, sec) = (num(h, 3)?, num(m, 2)?, num(sec, 2)?);
    if m > 59 || sec > 59 {
        return Err("minutes and seconds must be 00..=59".into());
    }
    Ok(h * 3600 + m * 60 + sec)
}
