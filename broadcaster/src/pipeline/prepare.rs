//! Preparing a feed message for one stream: take the message's shared decoding
//! ([`crate::gtfs::decoded`], done once for all streams), select what the stream's filter carries,
//! and assemble the update's bytes from the entities' ready encodings.
//!
//! Bad input never ends the dispatcher here: a message that does not decode is an error for
//! the whole message, an invalid entity is set aside (and reported by each stream that would
//! carry it) while the valid entities of the same message still go out.
//!
//! Filters: `routes:` selects vehicles and trip updates by their trip's route, alerts by their
//! informed entities (see [`RouteScope::Alert`]), deletions always; `bbox:` selects vehicles
//! that have a position inside the box and leaves out vehicles without one; trip updates,
//! alerts and deletions have no position and pass a `bbox:` unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::generated::transit_v1::StreamUpdate;
pub use crate::gtfs::decoded::{
    Carried, DecodedFeed, EntityKind, MAX_FEED_BYTES, MalformedEntity, PrepareError, RouteScope,
    Text,
};
use crate::pipeline::channel::Item;
use crate::pipeline::spec::Filter;

#[cfg(test)]
pub(crate) mod tests;

/// Which of a feed's carried entities an update holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    All,
    /// Indices into [`DecodedFeed::carried`], ascending.
    Some(Arc<[usize]>),
}

/// A stream's selection of a decoded feed: what a subscriber's own filter narrows further and
/// what raw entities are taken from.
#[derive(Debug, Clone)]
pub struct FeedView {
    pub feed: Arc<DecodedFeed>,
    pub selection: Selection,
}

impl FeedView {
    fn indices(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match &self.selection {
            Selection::All => Box::new(0..self.feed.carried.len()),
            Selection::Some(ix) => Box::new(ix.iter().copied()),
        }
    }

    /// The entity fields of this view narrowed by `filter` (a subscriber's own), plus the
    /// original entity encodings when `raw`.
    pub fn body(&self, filter: &Filter, raw: bool) -> Bytes {
        let picked: Vec<usize> = self
            .indices()
            .filter(|&i| selects(filter, &self.feed.carried[i]))
            .collect();
        let fields = self.feed.fields_of(picked.iter().copied());
        if !raw {
            return fields;
        }
        let mut out = BytesMut::from(&fields[..]);
        out.extend_from_slice(&self.feed.raw_fields_of(picked.into_iter()));
        out.freeze()
    }
}

/// How many entities of each kind an update carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub vehicles: u64,
    pub trip_updates: u64,
    pub alerts: u64,
    pub deleted: u64,
}

impl KindCounts {
    fn add(&mut self, kind: EntityKind) {
        match kind {
            EntityKind::Vehicle => self.vehicles += 1,
            EntityKind::TripUpdate => self.trip_updates += 1,
            EntityKind::Alert => self.alerts += 1,
            EntityKind::Deleted => self.deleted += 1,
        }
    }

    pub fn get(&self, kind: EntityKind) -> u64 {
        match kind {
            EntityKind::Vehicle => self.vehicles,
            EntityKind::TripUpdate => self.trip_updates,
            EntityKind::Alert => self.alerts,
            EntityKind::Deleted => self.deleted,
        }
    }
}

/// The outcome of preparing one feed message for one stream.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub view: FeedView,
    /// The selected entities' `StreamUpdate` fields.
    pub body: Bytes,
    pub counts: KindCounts,
    /// The invalid entities this stream would have carried.
    pub malformed: Vec<MalformedEntity>,
    pub received_at_us: u64,
}

impl Prepared {
    /// The update's header fields (everything but the entities), encoded.
    pub fn head(&self, stream: &str, seq: u64) -> Bytes {
        self.view.feed.head(
            stream,
            seq,
            self.received_at_us,
            self.malformed.len() as u32,
        )
    }

    /// The typed update (tests and tools; the dispatcher never builds it).
    pub fn to_update(&self) -> StreamUpdate {
        let mut bytes = BytesMut::from(&self.head("", 0)[..]);
        bytes.extend_from_slice(&self.body);
        StreamUpdate::decode(bytes.freeze()).expect("our own encoding decodes")
    }
}

/// Whether `filter` carries `c` (see the module docs for entities without a route or position).
pub fn selects(filter: &Filter, c: &Carried) -> bool {
    let route_ok = match (&filter.routes, &c.scope) {
        (None, _) | (_, RouteScope::Everywhere) => true,
        (Some(set), RouteScope::Route(r)) => r.as_ref().is_some_and(|r| set.contains(r.as_str())),
        (Some(set), RouteScope::Alert { routes, everywhere }) => {
            *everywhere || routes.iter().any(|r| set.contains(r.as_str()))
        }
    };
    let bbox_ok = match (&filter.bbox, c.kind) {
        (Some(b), EntityKind::Vehicle) => c.position.is_some_and(|(lat, lon)| b.contains(lat, lon)),
        _ => true,
    };
    route_ok && bbox_ok
}

/// Builds the update for a stream with `filter` from `item`'s shared decoding.
pub fn prepare(filter: &Filter, item: &Item) -> Result<Prepared, PrepareError> {
    let feed = item.decoded()?;
    Ok(select(filter, feed, item.received_at_us))
}

/// Selects what `filter` carries of a decoded feed.
pub fn select(filter: &Filter, feed: Arc<DecodedFeed>, received_at_us: u64) -> Prepared {
    // An invalid entity on a route this stream does not carry is none of its business: one
    // route's bad data stays that route's problem.
    let malformed = feed
        .malformed
        .iter()
        .filter(|m| m.route.as_deref().is_none_or(|r| filter.wants_route(r)))
        .cloned()
        .collect();
    let mut counts = KindCounts::default();
    let (selection, body) = if filter.is_empty() {
        for c in &feed.carried {
            counts.add(c.kind);
        }
        (Selection::All, feed.body.clone())
    } else {
        let picked: Vec<usize> = feed
            .carried
            .iter()
            .enumerate()
            .filter(|(_, c)| selects(filter, c))
            .map(|(i, c)| {
                counts.add(c.kind);
                i
            })
            .collect();
        let body = feed.fields_of(picked.iter().copied());
        (Selection::Some(picked.into()), body)
    };
    Prepared {
        view: FeedView { feed, selection },
        body,
        counts,
        malformed,
        received_at_us,
    }
}

/// The legacy preparation the story's service had: the first bad entity fails the whole
/// message (and, in `legacy-unsupervised` mode, ends the dispatcher).
pub fn prepare_strict(filter: &Filter, item: &Item) -> Result<Prepared, PrepareError> {
    let mut prepared = prepare(filter, item)?;
    if let Some(bad) = prepared.malformed.drain(..).next() {
        return Err(PrepareError::Entity {
            index: bad.index,
            id: bad.id,
            reason: bad.reason,
        });
    }
    Ok(prepared)
}

/// Decodes a payload on its own (no sharing): tools and tests.
pub fn decode(payload: &Bytes) -> Result<DecodedFeed, PrepareError> {
    crate::gtfs::decoded::decode(payload)
}

/// Per-stream counts of what the stream published and what it met in the feed.
#[derive(Debug, Default)]
pub struct EntityCounters {
    published: [AtomicU64; 4],
    duplicate_ids: AtomicU64,
    not_carried: AtomicU64,
}

impl EntityCounters {
    pub fn record(&self, prepared: &Prepared) {
        for (slot, kind) in self.published.iter().zip(EntityKind::ALL) {
            slot.fetch_add(prepared.counts.get(kind), Ordering::Relaxed);
        }
        let feed = &prepared.view.feed;
        self.duplicate_ids
            .fetch_add(feed.duplicate_ids, Ordering::Relaxed);
        self.not_carried
            .fetch_add(feed.not_carried, Ordering::Relaxed);
    }

    pub fn published(&self, kind: EntityKind) -> u64 {
        self.published[EntityKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
            .load(Ordering::Relaxed)
    }

    /// Entity ids seen twice or more within one message (counted per repeat).
    pub fn duplicate_ids(&self) -> u64 {
        self.duplicate_ids.load(Ordering::Relaxed)
    }

    /// Entities of kinds the broadcaster does not carry (shapes, stops, ...).
    pub fn not_carried(&self) -> u64 {
        self.not_carried.load(Ordering::Relaxed)
    }
}
