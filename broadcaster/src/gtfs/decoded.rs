//! One raw feed message decoded, validated and converted once, shared by every stream.
//!
//! Each stream's dispatcher used to decode the same payload itself; a 2.8 MB message then cost
//! one full decode per stream. Now the first dispatcher to take a message decodes it (the
//! pipeline's `Item::decoded`) and every other stream reuses the result: each carried
//! entity is converted to its typed `stallwatch.transit.v1` message and encoded once, as the
//! `StreamUpdate` field it becomes, so a stream's update is a concatenation of those encodings
//! (an unfiltered stream's is the whole [`DecodedFeed::body`], shared, not copied).
//!
//! Two paths give the same result. [`decode`] takes the direct one (`transcode`: the
//! producer's bytes read in place and our fields written by hand, no prost structs, no string
//! copies); whatever it does not decide exactly like prost (a wire error, a field prost would
//! merge, an invalid entity's error text) goes to [`decode_with_prost`], the reference path:
//! prost decode, [`validate`], [`convert`], prost encode.
//! (Both paths' top levels are here, side by side, which is why the file passes 600 lines;
//! the per-message tables are in `transcode.rs` and `wire.rs`.)

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::generated::transit_realtime::{FeedEntity, FeedMessage};
use crate::gtfs::convert;
use crate::gtfs::fields::{feed_message, stream_update};
use crate::gtfs::validate::{self, Rules};

mod transcode;
mod wire;

#[cfg(test)]
mod tests;

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

/// The entity kinds a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Vehicle,
    TripUpdate,
    Alert,
    /// `is_deleted`: carried as the id to delete.
    Deleted,
}

impl EntityKind {
    pub const ALL: [EntityKind; 4] = [Self::Vehicle, Self::TripUpdate, Self::Alert, Self::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vehicle => "vehicle",
            Self::TripUpdate => "trip_update",
            Self::Alert => "alert",
            Self::Deleted => "deleted",
        }
    }
}

/// UTF-8 text, usually a slice of the feed message it was decoded from: an entity's id or
/// route costs no allocation.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    /// `text` (UTF-8, checked by the caller), which must lie within `within` (or be
    /// empty), shared with it.
    fn within(within: &Bytes, text: &[u8]) -> Self {
        Self(within.slice_ref(text))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("Text holds UTF-8, checked when built")
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Which routes an entity concerns, for `routes:` filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteScope {
    /// A vehicle's or trip update's trip's route (`None`: no trip; "" a trip without route).
    Route(Option<Text>),
    /// An alert: the routes its informed entities name (directly or through their trip), and
    /// whether one of them names neither a route nor a trip (a whole agency, a stop, a route
    /// type): without static GTFS that could concern any route, so every stream carries it.
    Alert { routes: Vec<Text>, everywhere: bool },
    /// Deletions go to every stream: a subscriber ignores ids it does not hold.
    Everywhere,
}

/// One entity a stream may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    /// Index in the feed message.
    pub index: usize,
    pub id: Text,
    pub kind: EntityKind,
    pub scope: RouteScope,
    /// WGS-84 degrees, for vehicles that have a position.
    pub position: Option<(f64, f64)>,
    /// Its `StreamUpdate` field in [`DecodedFeed::body`].
    pub field: Range<usize>,
    /// Its original `FeedEntity` encoding in [`DecodedFeed::payload`].
    pub raw: Range<usize>,
}

/// One entity that breaks a rule of the GTFS-realtime reference.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedEntity {
    pub index: usize,
    pub id: String,
    /// Names the field and the rule.
    pub reason: String,
    /// The route it is on, when the feed says: a stream that does not carry that route is not
    /// concerned by it.
    pub route: Option<String>,
    /// The entity's original bytes, for the quarantine excerpt.
    pub raw: Bytes,
}

impl MalformedEntity {
    /// The `index`-th entity of a feed, refused for `reason`; `raw` is its encoding.
    fn new(index: usize, entity: FeedEntity, reason: String, raw: Bytes) -> Self {
        MalformedEntity {
            index,
            route: route_of(&entity),
            id: entity.id,
            reason,
            raw,
        }
    }
}

/// A feed message, decoded once.
#[derive(Debug, Clone)]
pub struct DecodedFeed {
    pub payload: Bytes,
    pub feed_timestamp: u64,
    /// `stallwatch.transit.v1.Incrementality`, the GTFS number.
    pub incrementality: i32,
    pub gtfs_realtime_version: String,
    /// In feed order; an entity that (against the reference's advice) populates several kinds
    /// is carried once per kind.
    pub carried: Vec<Carried>,
    pub malformed: Vec<MalformedEntity>,
    /// Entities whose id an earlier entity of the same message already had. Not an error:
    /// real feeds do it (a vehicle and its trip update under one id).
    pub duplicate_ids: u64,
    /// Entities with none of the kinds carried (shapes, stops, trip modifications, or empty).
    pub not_carried: u64,
    /// Every carried entity's `StreamUpdate` field, in feed order.
    pub body: Bytes,
}

impl DecodedFeed {
    /// A stream's update header: every `StreamUpdate` field but the entities (and `missed`,
    /// which the sender appends), written as prost would.
    pub fn head(&self, stream: &str, seq: u64, received_at_us: u64, quarantined: u32) -> Bytes {
        let mut out = Vec::with_capacity(48 + stream.len() + self.gtfs_realtime_version.len());
        let mut w = wire::Writer { out: &mut out };
        w.str(1, stream);
        w.u64(2, seq);
        w.u64(3, self.feed_timestamp);
        w.u64(4, received_at_us);
        w.u64(6, u64::from(quarantined));
        w.i32(11, self.incrementality);
        w.str(12, &self.gtfs_realtime_version);
        out.into()
    }

    /// The concatenated fields of `carried[i]` for each `i`, in order.
    pub fn fields_of(&self, indices: impl Iterator<Item = usize>) -> Bytes {
        let mut out = BytesMut::new();
        for i in indices {
            out.extend_from_slice(&self.body[self.carried[i].field.clone()]);
        }
        out.freeze()
    }

    /// `StreamUpdate.raw_entities` fields for `carried[i]` for each `i`. An entity carried
    /// under several kinds appears once.
    pub fn raw_fields_of(&self, indices: impl Iterator<Item = usize>) -> Bytes {
        let mut out = Vec::new();
        let mut last = None;
        for i in indices {
            let c = &self.carried[i];
            if last == Some(c.index) {
                continue;
            }
            last = Some(c.index);
            let mut w = wire::Writer { out: &mut out };
            // `RawEntity`: entity_id, feed_entity.
            w.message(stream_update::RAW_ENTITIES, |w| {
                w.str(1, c.id.as_str());
                let feed_entity = &self.payload[c.raw.clone()];
                if !feed_entity.is_empty() {
                    w.bytes(2, feed_entity);
                }
            });
        }
        out.into()
    }
}

/// Decodes, validates and converts `payload`.
pub fn decode(payload: &Bytes) -> Result<DecodedFeed, PrepareError> {
    check_size(payload)?;
    match decode_direct(payload) {
        Some(feed) => Ok(feed),
        None => decode_with_prost(payload),
    }
}

fn check_size(payload: &Bytes) -> Result<(), PrepareError> {
    if payload.len() > MAX_FEED_BYTES {
        return Err(PrepareError::TooLarge {
            size: payload.len(),
            max: MAX_FEED_BYTES,
        });
    }
    Ok(())
}

/// The direct path alone: `None` when it leaves the message to [`decode_with_prost`] (any
/// message prost refuses, and the odd ones prost merges). Public for the benchmark.
pub fn decode_direct(payload: &Bytes) -> Option<DecodedFeed> {
    let mut header = None;
    let mut entities = 0;
    for field in wire::fields(payload) {
        match field.ok()? {
            (feed_message::HEADER, v) => wire::once(&mut header, v).ok()?,
            (feed_message::ENTITY, v) => {
                v.message().ok()?;
                entities += 1;
            }
            _ => {}
        }
    }
    let (version, incrementality, timestamp) = transcode::header(header?).ok()?;
    let version = std::str::from_utf8(version).ok()?;
    let rules = Rules::for_version(version);
    let mut feed = DecodedFeed {
        payload: payload.clone(),
        feed_timestamp: timestamp.unwrap_or(0),
        incrementality: incrementality.unwrap_or(0),
        gtfs_realtime_version: version.to_string(),
        carried: Vec::with_capacity(entities),
        malformed: Vec::new(),
        duplicate_ids: 0,
        not_carried: 0,
        body: Bytes::new(),
    };
    // Our fields encode to about the size of the producer's, a little more for small entities
    // (each of our messages repeats the entity id): one allocation, no regrowth.
    let mut body = Vec::with_capacity(payload.len() + payload.len() / 4 + 64);
    let mut ids = Vec::with_capacity(entities);
    let mut index = 0;
    for field in wire::fields(payload) {
        let (feed_message::ENTITY, v) = field.ok()? else {
            continue;
        };
        let bytes = v.message().ok()?;
        let start = bytes.as_ptr() as usize - payload.as_ptr() as usize;
        let raw = start..start + bytes.len();
        let entity = transcode::entity(bytes).ok()?;
        ids.push(entity.id);
        let (body_len, carried_len) = (body.len(), feed.carried.len());
        let at = Entry {
            payload,
            index,
            raw: raw.clone(),
            rules,
        };
        match carry_direct(&at, &entity, &mut body, &mut feed.carried) {
            Ok(()) if feed.carried.len() == carried_len => feed.not_carried += 1,
            Ok(()) => {}
            Err(wire::Stop::Fallback) => return None,
            Err(wire::Stop::Invalid) => {
                body.truncate(body_len);
                feed.carried.truncate(carried_len);
                // prost and `validate` name what is wrong (and prost may refuse the message).
                let decoded = FeedEntity::decode(bytes).ok()?;
                let Err(reason) = validate::entity(&decoded, rules) else {
                    debug_assert!(
                        false,
                        "entity {index}: the direct path refused a valid entity"
                    );
                    return None;
                };
                feed.malformed.push(MalformedEntity::new(
                    index,
                    decoded,
                    reason,
                    payload.slice(raw),
                ));
            }
        }
        index += 1;
    }
    ids.sort_unstable();
    feed.duplicate_ids = ids.windows(2).filter(|w| w[0] == w[1]).count() as u64;
    feed.body = body.into();
    Some(feed)
}

/// Where an entity sits, for [`carry_direct`].
struct Entry<'p> {
    payload: &'p Bytes,
    index: usize,
    raw: Range<usize>,
    rules: Rules,
}

/// Checks and writes one entity's fields, as [`validate::entity`] and [`carry`] would.
fn carry_direct(
    at: &Entry<'_>,
    e: &transcode::Entity<'_>,
    body: &mut Vec<u8>,
    carried: &mut Vec<Carried>,
) -> wire::Step {
    if e.id.is_empty() {
        return Err(wire::Stop::Invalid);
    }
    let text = |s: &[u8]| Text::within(at.payload, s);
    let mut push = |kind, scope, position, field: Range<usize>| {
        carried.push(Carried {
            index: at.index,
            id: text(e.id),
            kind,
            scope,
            position,
            field,
            raw: at.raw.clone(),
        });
    };
    let mut w = wire::Writer { out: body };
    if e.is_deleted == Some(true) {
        // Not carried, but prost decodes (and may refuse) them.
        if e.trip_update.or(e.vehicle).or(e.alert).is_some() {
            FeedEntity::decode(&at.payload[at.raw.clone()]).map_err(|_| wire::Stop::Fallback)?;
        }
        let start = w.out.len();
        w.bytes(stream_update::DELETED_ENTITY_IDS, e.id);
        push(
            EntityKind::Deleted,
            RouteScope::Everywhere,
            None,
            start..w.out.len(),
        );
        return Ok(());
    }
    if let Some(vp) = e.vehicle {
        let start = w.out.len();
        let v = w.message(stream_update::VEHICLES, |w| {
            transcode::vehicle(w, e.id, vp, at.rules)
        })?;
        let scope = RouteScope::Route(v.route.map(text));
        push(EntityKind::Vehicle, scope, v.position, start..w.out.len());
    }
    if let Some(tu) = e.trip_update {
        let start = w.out.len();
        let route = w.message(stream_update::TRIP_UPDATES, |w| {
            transcode::trip_update(w, e.id, tu, at.rules)
        })?;
        let scope = RouteScope::Route(route.map(text));
        push(EntityKind::TripUpdate, scope, None, start..w.out.len());
    }
    if let Some(a) = e.alert {
        let start = w.out.len();
        let s = w.message(stream_update::ALERTS, |w| {
            transcode::alert(w, e.id, a, at.rules)
        })?;
        let scope = RouteScope::Alert {
            routes: s.routes.into_iter().map(text).collect(),
            everywhere: s.everywhere,
        };
        push(EntityKind::Alert, scope, None, start..w.out.len());
    }
    Ok(())
}

/// The reference path: prost decode, [`validate`], [`convert`], prost encode. Public for
/// the benchmark's baseline.
pub fn decode_with_prost(payload: &Bytes) -> Result<DecodedFeed, PrepareError> {
    check_size(payload)?;
    let msg = FeedMessage::decode(payload.as_ref())
        .map_err(|e| PrepareError::Decode(describe_decode_error(payload, &e)))?;
    let (raw, has_header) = entity_ranges(payload)?;
    if !has_header {
        return Err(PrepareError::Decode(
            "FeedMessage.header: missing (required)".into(),
        ));
    }
    if raw.len() != msg.entity.len() {
        return Err(PrepareError::Decode(format!(
            "{} entities decoded but {} entity fields found",
            msg.entity.len(),
            raw.len()
        )));
    }
    let mut feed = DecodedFeed {
        payload: payload.clone(),
        feed_timestamp: msg.header.timestamp.unwrap_or(0),
        incrementality: msg.header.incrementality.unwrap_or(0),
        gtfs_realtime_version: msg.header.gtfs_realtime_version,
        carried: Vec::with_capacity(msg.entity.len()),
        malformed: Vec::new(),
        duplicate_ids: 0,
        not_carried: 0,
        body: Bytes::new(),
    };
    // Converted messages encode to about the size of their GTFS encoding.
    let mut body = Vec::with_capacity(payload.len() + payload.len() / 8);
    let rules = Rules::for_version(&feed.gtfs_realtime_version);
    let mut seen: HashSet<String> = HashSet::with_capacity(msg.entity.len());
    for (index, (entity, raw)) in msg.entity.into_iter().zip(raw).enumerate() {
        if !seen.insert(entity.id.clone()) {
            feed.duplicate_ids += 1;
        }
        if let Err(reason) = validate::entity(&entity, rules) {
            feed.malformed.push(MalformedEntity::new(
                index,
                entity,
                reason,
                payload.slice(raw),
            ));
            continue;
        }
        let before = feed.carried.len();
        carry(index, entity, raw, &mut body, &mut feed.carried);
        if feed.carried.len() == before {
            feed.not_carried += 1;
        }
    }
    feed.body = body.into();
    Ok(feed)
}

fn route_of(e: &FeedEntity) -> Option<String> {
    let trip = e
        .vehicle
        .as_ref()
        .and_then(|v| v.trip.as_ref())
        .or_else(|| e.trip_update.as_ref().and_then(|t| t.trip.as_ref()))?;
    trip.route_id.clone()
}

/// Converts a valid entity and appends its fields to `body`.
fn carry(
    index: usize,
    entity: FeedEntity,
    raw: Range<usize>,
    body: &mut Vec<u8>,
    carried: &mut Vec<Carried>,
) {
    let FeedEntity {
        id,
        is_deleted,
        trip_update,
        vehicle,
        alert,
    } = entity;
    let mut push = |kind, scope, position, body: &mut Vec<u8>, start: usize, id: &str| {
        carried.push(Carried {
            index,
            id: Text::from(id),
            kind,
            scope,
            position,
            field: start..body.len(),
            raw: raw.clone(),
        });
    };
    if is_deleted == Some(true) {
        let start = body.len();
        prost::encoding::string::encode(stream_update::DELETED_ENTITY_IDS, &id, body);
        push(
            EntityKind::Deleted,
            RouteScope::Everywhere,
            None,
            body,
            start,
            &id,
        );
        return;
    }
    if let Some(vp) = vehicle {
        let v = convert::vehicle(id.clone(), vp);
        let start = body.len();
        prost::encoding::message::encode(stream_update::VEHICLES, &v, body);
        let scope = RouteScope::Route(v.trip.as_ref().map(|t| Text::from(t.route_id.as_str())));
        let position = v.has_position.then_some((v.latitude, v.longitude));
        push(EntityKind::Vehicle, scope, position, body, start, &id);
    }
    if let Some(tu) = trip_update {
        let t = convert::trip_update(id.clone(), tu);
        let start = body.len();
        prost::encoding::message::encode(stream_update::TRIP_UPDATES, &t, body);
        let scope = RouteScope::Route(t.trip.as_ref().map(|t| Text::from(t.route_id.as_str())));
        push(EntityKind::TripUpdate, scope, None, body, start, &id);
    }
    if let Some(a) = alert {
        let a = convert::alert(id.clone(), a);
        let start = body.len();
        prost::encoding::message::encode(stream_update::ALERTS, &a, body);
        let mut routes = Vec::new();
        let mut everywhere = false;
        for sel in &a.informed_entities {
            let route = Some(sel.route_id.as_str())
                .filter(|r| !r.is_empty())
                .or_else(|| {
                    sel.trip
                        .as_ref()
                        .map(|t| t.route_id.as_str())
                        .filter(|r| !r.is_empty())
                });
            match route {
                Some(r) => routes.push(Text::from(r)),
                None if sel.trip.is_none() => everywhere = true,
                // A trip named by its id alone: its route is not known here.
                None => {}
            }
        }
        let scope = RouteScope::Alert { routes, everywhere };
        push(EntityKind::Alert, scope, None, body, start, &id);
    }
}

/// The byte range of each `FeedMessage.entity` in `payload`, in order, and whether the
/// message has a header.
fn entity_ranges(payload: &[u8]) -> Result<(Vec<Range<usize>>, bool), PrepareError> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    let mut buf = payload;
    let mut ranges = Vec::new();
    let mut has_header = false;
    let err = |e: prost::DecodeError| PrepareError::Decode(e.to_string());
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(err)?;
        if tag == feed_message::ENTITY && wire_type == WireType::LengthDelimited {
            let len = decode_varint(&mut buf).map_err(err)? as usize;
            if len > buf.len() {
                return Err(PrepareError::Decode("entity field is truncated".into()));
            }
            let start = payload.len() - buf.len();
            ranges.push(start..start + len);
            buf = &buf[len..];
        } else {
            has_header |= tag == feed_message::HEADER;
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).map_err(err)?;
        }
    }
    Ok((ranges, has_header))
}

/// prost's error plus what the bytes look like, so an HTML error page or a text body served
/// as a feed is named as such.
fn describe_decode_error(payload: &[u8], e: &prost::DecodeError) -> String {
    let head = &payload[..payload.len().min(80)];
    let text = std::str::from_utf8(head).ok().filter(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| !c.is_control() || c.is_ascii_whitespace())
    });
    match text {
        Some(t) => format!(
            "{e}; the {} bytes are text, not protobuf: {:?}",
            payload.len(),
            t.trim()
        ),
        None if payload.is_empty() => format!("{e} (empty message)"),
        None => format!("{e} ({} bytes)", payload.len()),
    }
}
