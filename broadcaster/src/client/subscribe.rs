//! `transit-broadcaster subscribe`: prints a stream's updates, one line each (text or JSON),
//! so a user can watch a stream without grpcurl.

use std::io::Write;

use crate::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;
use crate::generated::transit_v1::{
    Alert, Incrementality, StopTimeEvent, StreamUpdate, SubscribeRequest, Translation, Trip,
    TripUpdate, Vehicle, alert, stop_time_update, trip, vehicle,
};

#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// e.g. `http://127.0.0.1:50051`.
    pub addr: String,
    pub stream: String,
    /// Stop after this many updates; 0 = until the server ends the stream.
    pub count: u64,
    pub json: bool,
    pub routes: Vec<String>,
    /// Ask for each carried entity's original `FeedEntity` bytes.
    pub raw_entities: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("stream ended: {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<tonic::Status> for SubscribeError {
    fn from(s: tonic::Status) -> Self {
        SubscribeError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// One update as a JSON object (the `--json` output, one per line): the header, `counts`, and
/// the `vehicles`, `trip_updates`, `alerts` and `deleted_entity_ids` arrays (empty when none).
pub fn update_json(u: &StreamUpdate) -> serde_json::Value {
    serde_json::json!({
        "stream": u.stream,
        "seq": u.seq,
        "feed_timestamp": u.feed_timestamp,
        "received_at_us": u.received_at_us,
        "gtfs_realtime_version": u.gtfs_realtime_version,
        "incrementality": Incrementality::try_from(u.incrementality)
            .map(|i| i.as_str_name())
            .unwrap_or("UNKNOWN"),
        "missed": u.missed,
        "quarantined_entities": u.quarantined_entities,
        "counts": {
            "vehicles": u.vehicles.len(),
            "trip_updates": u.trip_updates.len(),
            "alerts": u.alerts.len(),
            "deleted": u.deleted_entity_ids.len(),
            "stop_time_updates": u.trip_updates.iter().map(|t| t.stop_time_updates.len()).sum::<usize>(),
        },
        "vehicles": u.vehicles.iter().map(vehicle_json).collect::<Vec<_>>(),
        "trip_updates": u.trip_updates.iter().map(trip_update_json).collect::<Vec<_>>(),
        "alerts": u.alerts.iter().map(alert_json).collect::<Vec<_>>(),
        "deleted_entity_ids": u.deleted_entity_ids,
        "raw_entities": u.raw_entities.iter().map(|r| serde_json::json!({
            "entity_id": r.entity_id,
            "feed_entity_hex": crate::util::hex_excerpt(&r.feed_entity, usize::MAX),
        })).collect::<Vec<_>>(),
    })
}

fn trip_json(t: &Option<Trip>) -> serde_json::Value {
    let Some(t) = t else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "trip_id": t.trip_id,
        "route_id": t.route_id,
        "direction_id": t.direction_id,
        "start_time": t.start_time,
        "start_date": t.start_date,
        "schedule_relationship": t.schedule_relationship
            .and_then(|r| trip::ScheduleRelationship::try_from(r).ok())
            .map(|r| r.as_str_name()),
    })
}

fn vehicle_json(v: &Vehicle) -> serde_json::Value {
    serde_json::json!({
        "entity_id": v.entity_id,
        "vehicle_id": v.vehicle_id,
        "label": v.label,
        "trip_id": v.trip_id,
        "route_id": v.route_id,
        "has_position": v.has_position,
        "latitude": v.has_position.then_some(v.latitude),
        "longitude": v.has_position.then_some(v.longitude),
        "bearing": v.bearing,
        "speed": v.speed,
        "timestamp": v.timestamp,
        "trip": trip_json(&v.trip),
        "current_stop_sequence": v.current_stop_sequence,
        "stop_id": v.stop_id,
        "current_status": v.current_status
            .and_then(|s| vehicle::VehicleStopStatus::try_from(s).ok())
            .map(|s| s.as_str_name()),
        "occupancy_status": v.occupancy_status
            .and_then(|s| vehicle::OccupancyStatus::try_from(s).ok())
            .map(|s| s.as_str_name()),
    })
}

fn event_json(e: &Option<StopTimeEvent>) -> serde_json::Value {
    match e {
        None => serde_json::Value::Null,
        Some(e) => serde_json::json!({
            "delay": e.delay,
            "time": e.time,
            "uncertainty": e.uncertainty,
        }),
    }
}

fn trip_update_json(t: &TripUpdate) -> serde_json::Value {
    serde_json::json!({
        "entity_id": t.entity_id,
        "trip": trip_json(&t.trip),
        "vehicle_id": t.vehicle.as_ref().map(|v| v.id.as_str()),
        "timestamp": t.timestamp,
        "delay": t.delay,
        "stop_time_updates": t.stop_time_updates.iter().map(|s| serde_json::json!({
            "stop_sequence": s.stop_sequence,
            "stop_id": s.stop_id,
            "arrival": event_json(&s.arrival),
            "departure": event_json(&s.departure),
            "schedule_relationship": stop_time_update::ScheduleRelationship::try_from(s.schedule_relationship)
                .map(|r| r.as_str_name())
                .unwrap_or("UNKNOWN"),
        })).collect::<Vec<_>>(),
    })
}

fn texts_json(texts: &[Translation]) -> serde_json::Value {
    texts
        .iter()
        .map(|t| serde_json::json!({"text": t.text, "language": t.language}))
        .collect()
}

fn alert_json(a: &Alert) -> serde_json::Value {
    serde_json::json!({
        "entity_id": a.entity_id,
        "active_periods": a.active_periods.iter().map(|p| serde_json::json!({
            "start": p.start,
            "end": p.end,
        })).collect::<Vec<_>>(),
        "informed_entities": a.informed_entities.iter().map(|e| serde_json::json!({
            "agency_id": e.agency_id,
            "route_id": e.route_id,
            "route_type": e.route_type,
            "trip": trip_json(&e.trip),
            "stop_id": e.stop_id,
            "direction_id": e.direction_id,
        })).collect::<Vec<_>>(),
        "cause": alert::Cause::try_from(a.cause).map(|c| c.as_str_name()).unwrap_or("UNKNOWN"),
        "effect": alert::Effect::try_from(a.effect).map(|c| c.as_str_name()).unwrap_or("UNKNOWN"),
        "severity_level": alert::SeverityLevel::try_from(a.severity_level)
            .map(|c| c.as_str_name())
            .unwrap_or("UNKNOWN"),
        "url": texts_json(&a.url),
        "header_text": texts_json(&a.header_text),
        "description_text": texts_json(&a.description_text),
    })
}

/// One update as a human-readable line.
pub fn update_line(u: &StreamUpdate) -> String {
    let age_ms = stallwatch_core::clock::now_us().saturating_sub(u.received_at_us) as f64 / 1000.0;
    let mut line = format!(
        "{} seq={} vehicles={} trip_updates={} alerts={} deleted={} missed={} quarantined={} age={age_ms:.1}ms",
        u.stream,
        u.seq,
        u.vehicles.len(),
        u.trip_updates.len(),
        u.alerts.len(),
        u.deleted_entity_ids.len(),
        u.missed,
        u.quarantined_entities
    );
    if let Some(v) = u.vehicles.first() {
        if v.has_position {
            line.push_str(&format!(
                " first={}@{}({:.5},{:.5})",
                v.vehicle_id, v.route_id, v.latitude, v.longitude
            ));
        } else {
            line.push_str(&format!(" first={}@{}", v.vehicle_id, v.route_id));
        }
    }
    line
}

/// Subscribes and writes each update to `out`. Returns how many were printed.
pub async fn run(opts: &SubscribeOptions, out: &mut impl Write) -> Result<u64, SubscribeError> {
    let mut client = TransitBroadcasterClient::connect(opts.addr.clone())
        .await
        .map_err(|e| SubscribeError::Connect {
            addr: opts.addr.clone(),
            reason: e.to_string(),
        })?
        .max_decoding_message_size(64 * 1024 * 1024);
    let mut updates = client
        .subscribe(SubscribeRequest {
            stream: opts.stream.clone(),
            route_ids: opts.routes.clone(),
            bbox: None,
            include_raw_entities: opts.raw_entities,
        })
        .await?
        .into_inner();
    let mut printed = 0u64;
    while let Some(update) = updates.message().await? {
        if opts.json {
            writeln!(out, "{}", update_json(&update))?;
        } else {
            writeln!(out, "{}", update_line(&update))?;
        }
        out.flush()?;
        printed += 1;
        if opts.count != 0 && printed >= opts.count {
            break;
        }
    }
    Ok(printed)
}

#[cfg(test)]
mod tests;
