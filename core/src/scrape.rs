//! Zero-code mode's input adapter: an app's own metrics, as scraped, turned into the same
//! [`Report`] the verdict machine ([`crate::verdict::Judge`]) takes from a report client.
//!
//! Pure: the caller scrapes, parses ([`crate::exposition::parse`]) and passes the samples with
//! the scrape's wall clock. [`ScrapeAdapter::adapt`] either returns a report or says what is
//! wrong with the mapping; a wrong mapping never yields a report, so it can never yield a
//! verdict.
//!
//! What maps to what, per value of the stream label on the depth gauge:
//! - `depth` gauge → `channel.depth`; `capacity` gauge (same label) or a fixed number →
//!   `channel.capacity`.
//! - `dequeued` counter → `dequeued_total`.
//! - `enqueued` counter (optional) → `enqueued_total`; without it, `dequeued + depth (+
//!   dropped)`, the items that must have entered.
//! - `dropped` counter (optional) → `dropped_oldest_total`.
//! - `consumer_up` gauge (optional) → the dispatcher: `0` is `dead`, anything else `running`.
//!   Without it the dispatcher is always `running`: `DispatcherDead` cannot be seen from depth
//!   and counters alone, and a dead consumer shows as `ChannelStuck` after `stall_after`.
//!
//! A counter that goes backwards means the app restarted: the adapter starts a new report
//! `instance`, exactly as a restarted report client would, so baselines reset and no stall is
//! read into the drop.

//!
//! ## Where a change goes
//! - `mapping`: the [`MetricsMapping`] (a new mapped metric) and [`MappingError`].
//! - `read`: what a mapped value must be (whole, labelled, unique, within capacity) and how a
//!   stream's row is read from the scrape.
//! - here: the [`ScrapeAdapter`]: the synthetic instance and sequence, restarts (a counter
//!   going back), a stream's row as a [`StreamReport`].
//!
//! `read` imports `mapping`; this root imports both.

mod mapping;
mod read;

use std::collections::BTreeMap;

pub use mapping::{Capacity, MappingError, MetricsMapping};
use read::Row;

use crate::exposition::Sample;
use crate::report::{
    ChannelReport, DispatcherReport, DispatcherState, PROTOCOL_V1, Report, StreamReport,
};

/// A scrape turned into a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapted {
    /// The report, as a broadcaster would have sent it.
    pub report: Report,
    /// Set when this scrape started a new instance because a counter went backwards: which
    /// counter, for which stream, from what to what.
    pub restart: Option<String>,
}

/// The adapter's memory between scrapes: the synthetic instance and sequence, and the last
/// counters per stream, to notice a restart of the app.
#[derive(Debug, Clone)]
pub struct ScrapeAdapter {
    mapping: MetricsMapping,
    /// Prefix of the synthetic instance ids (e.g. the scrape URL's host), for people.
    instance_prefix: String,
    generation: u64,
    seq: u64,
    /// Per stream: the last value of every mapped counter.
    counters: BTreeMap<String, BTreeMap<String, u64>>,
}

impl ScrapeAdapter {
    /// An adapter for `mapping`; instance ids start with `instance_prefix`.
    pub fn new(mapping: MetricsMapping, instance_prefix: &str) -> Self {
        ScrapeAdapter {
            mapping,
            instance_prefix: instance_prefix.to_owned(),
            generation: 1,
            seq: 0,
            counters: BTreeMap::new(),
        }
    }

    /// The mapping it reads.
    pub fn mapping(&self) -> &MetricsMapping {
        &self.mapping
    }

    /// The synthetic instance id the next report carries.
    pub fn instance(&self) -> String {
        format!("{}#{}", self.instance_prefix, self.generation)
    }

    /// Turn one scrape (taken at wall clock `at_ms`, every `interval_ms`) into a report.
    /// On error nothing is remembered: the next good scrape compares with the last good one.
    pub fn adapt(
        &mut self,
        samples: &[Sample],
        at_ms: u64,
        interval_ms: u64,
    ) -> Result<Adapted, MappingError> {
        let rows = read::rows(&self.mapping, samples)?;
        let restart = self.backwards_counter(&rows);
        if restart.is_some() {
            self.generation += 1;
            self.seq = 0;
        }
        self.seq += 1;
        self.counters = rows
            .iter()
            .map(|(name, r)| (name.clone(), self.counter_values(r)))
            .collect();
        let streams = rows
            .into_iter()
            .map(|(name, r)| {
                let dropped = r.dropped.unwrap_or(0);
                let enqueued = r
                    .enqueued
                    .unwrap_or_else(|| r.dequeued.saturating_add(r.depth).saturating_add(dropped))
                    // An app's counters are read one by one: never let them contradict.
                    .max(r.dequeued);
                StreamReport {
                    name,
                    channel: ChannelReport {
                        depth: r.depth,
                        capacity: r.capacity,
                    },
                    enqueued_total: enqueued,
                    dequeued_total: r.dequeued,
                    dropped_oldest_total: dropped,
                    quarantined_total: 0,
                    last_dequeue_ms: None,
                    dispatcher: DispatcherReport {
                        state: match r.up {
                            Some(false) => DispatcherState::Dead,
                            _ => DispatcherState::Running,
                        },
                        restarts_total: 0,
                    },
                    last_error: None,
                    subscribers: 0,
                    delivered_total: 0,
                }
            })
            .collect();
        Ok(Adapted {
            report: Report {
                protocol: PROTOCOL_V1.to_owned(),
                instance: self.instance(),
                seq: self.seq,
                sent_at_ms: at_ms,
                interval_ms: interval_ms.clamp(1, 60_000),
                pid: None,
                version: None,
                streams,
            },
            restart,
        })
    }

    fn counter_values(&self, r: &Row) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::from([(self.mapping.dequeued.clone(), r.dequeued)]);
        if let (Some(name), Some(v)) = (&self.mapping.enqueued, r.enqueued) {
            m.insert(name.clone(), v);
        }
        if let (Some(name), Some(v)) = (&self.mapping.dropped, r.dropped) {
            m.insert(name.clone(), v);
        }
        m
    }

    /// The first mapped counter lower than in the previous scrape, described.
    fn backwards_counter(&self, rows: &BTreeMap<String, Row>) -> Option<String> {
        rows.iter().find_map(|(stream, r)| {
            let before = self.counters.get(stream)?;
            self.counter_values(r).into_iter().find_map(|(metric, now)| {
                let was = *before.get(&metric)?;
                (now < was).then(|| {
                    format!(
                        "counter {metric} of stream {stream} went back from {was} to {now}: the app restarted"
                    )
                })
            })
        })
    }
}

#[cfg(test)]
mod tests;
