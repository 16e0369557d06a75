//! `transit-broadcaster subscribe`: prints a stream's updates, one line each (text or JSON),
//! so a user can watch a stream without grpcurl.

use std::io::Write;

use crate::generated::transit_v1::transit_broadcaster_client::TransitBroadcasterClient;
use crate::generated::transit_v1::{StreamUpdate, SubscribeRequest};

#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// e.g. `http://127.0.0.1:50051`.
    pub addr: String,
    pub stream: String,
    /// Stop after this many updates; 0 = until the server ends the stream.
    pub count: u64,
    pub json: bool,
    pub routes: Vec<String>,
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

/// One update as a JSON object (the `--json` output, one per line).
pub fn update_json(u: &StreamUpdate) -> serde_json::Value {
    serde_json::json!({
        "stream": u.stream,
        "seq": u.seq,
        "feed_timestamp": u.feed_timestamp,
        "received_at_us": u.received_at_us,
        "missed": u.missed,
        "quarantined_entities": u.quarantined_entities,
        "vehicles": u.vehicles.iter().map(|v| serde_json::json!({
            "entity_id": v.entity_id,
            "vehicle_id": v.vehicle_id,
            "label": v.label,
            "trip_id": v.trip_id,
            "route_id": v.route_id,
            "latitude": v.latitude,
            "longitude": v.longitude,
            "bearing": v.bearing,
            "speed": v.speed,
            "timestamp": v.timestamp,
        })).collect::<Vec<_>>(),
    })
}

/// One update as a human-readable line.
pub fn update_line(u: &StreamUpdate) -> String {
    let age_ms = stallwatch_core::clock::now_us().saturating_sub(u.received_at_us) as f64 / 1000.0;
    let mut line = format!(
        "{} seq={} vehicles={} missed={} quarantined={} age={age_ms:.1}ms",
        u.stream,
        u.seq,
        u.vehicles.len(),
        u.missed,
        u.quarantined_entities
    );
    if let Some(v) = u.vehicles.first() {
        line.push_str(&format!(
            " first={}@{}({:.5},{:.5})",
            v.vehicle_id, v.route_id, v.latitude, v.longitude
        ));
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
