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

use std::collections::BTreeMap;

use crate::exposition::Sample;
use crate::report::{
    ChannelReport, DispatcherReport, DispatcherState, PROTOCOL_V1, Report, StreamReport,
    is_valid_stream_name,
};

/// Where the channel capacity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capacity {
    /// A gauge with the same stream label as the depth gauge.
    Metric(String),
    /// The same fixed bound for every stream.
    Fixed(u64),
}

/// The metric names and the stream label (sidecar `--metrics-*` flags,
/// `spec.detection.metrics` in the TransitStream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsMapping {
    /// The gauge of items waiting per stream.
    pub depth: String,
    /// The channel's capacity: a gauge per stream or one fixed value.
    pub capacity: Capacity,
    /// The counter of items taken out per stream.
    pub dequeued: String,
    /// The counter of items put in per stream, if the app exports one.
    pub enqueued: Option<String>,
    /// The counter of items dropped per stream, if the app exports one.
    pub dropped: Option<String>,
    /// The gauge that is 1 while a stream's consumer runs, if the app exports one.
    pub consumer_up: Option<String>,
    /// The label whose value names the stream.
    pub stream_label: String,
}

impl MetricsMapping {
    /// Every metric name the mapping reads, for keeping the scraped series of a bundle.
    pub fn metric_names(&self) -> Vec<&str> {
        let mut names = vec![self.depth.as_str(), self.dequeued.as_str()];
        if let Capacity::Metric(m) = &self.capacity {
            names.push(m);
        }
        names.extend(
            [&self.enqueued, &self.dropped, &self.consumer_up]
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        names
    }

    /// Does `sample` belong to a mapped metric (counters also under their `_total` name)?
    pub fn reads(&self, sample: &Sample) -> bool {
        self.metric_names()
            .iter()
            .any(|m| sample.name == *m || sample.name.strip_suffix("_total") == Some(m))
    }
}

/// Why a scrape could not be turned into a report. The messages name the metric, the label
/// and the stream, so that the status says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A mapped metric is absent from the scrape.
    #[error("metric {metric} is not in the scrape{hint}")]
    MissingMetric {
        /// The metric.
        metric: String,
        /// Appended to the message: similar names in the scrape, or empty.
        hint: String,
    },
    /// A series of a mapped metric lacks the stream label.
    #[error("metric {metric} has a series without the stream label {label:?} (labels: {labels})")]
    MissingLabel {
        /// The metric.
        metric: String,
        /// The stream label.
        label: String,
        /// The labels the series has.
        labels: String,
    },
    /// A stream has no series of a mapped metric.
    #[error("metric {metric} has no series for stream {stream:?} (label {label})")]
    MissingSeries {
        /// The metric.
        metric: String,
        /// The stream label.
        label: String,
        /// The stream.
        stream: String,
    },
    #[error(
        "metric {metric} has two series for stream {stream:?}: add a label filter or pick another metric"
    )]
    /// A stream has two series of one metric.
    DuplicateSeries {
        /// The metric.
        metric: String,
        /// The stream.
        stream: String,
    },
    /// A value is not a whole number >= 0.
    #[error("metric {metric} for stream {stream:?} is {value}, not a whole number >= 0")]
    BadValue {
        /// The metric.
        metric: String,
        /// The stream.
        stream: String,
        /// The value as scraped.
        value: String,
    },
    #[error(
        "stream label value {value:?} of {metric} is not a stream name (a DNS label: [a-z0-9-], 1..=63)"
    )]
    /// A stream label value is not a valid stream name.
    BadStreamName {
        /// The metric.
        metric: String,
        /// The label value.
        value: String,
    },
    #[error(
        "stream {stream:?}: depth {depth} exceeds capacity {capacity}: check the capacity mapping"
    )]
    /// A stream's depth is over its capacity.
    DepthOverCapacity {
        /// The stream.
        stream: String,
        /// Its depth.
        depth: u64,
        /// Its capacity.
        capacity: u64,
    },
    /// A stream's capacity is 0.
    #[error("capacity for stream {stream:?} is 0: check the capacity mapping")]
    ZeroCapacity {
        /// The stream.
        stream: String,
    },
    /// More streams than a report may hold.
    #[error("{count} streams, at most {max} allowed")]
    TooManyStreams {
        /// Streams in the scrape.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl MappingError {
    /// A stable, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            MappingError::MissingMetric { .. } => "missing_metric",
            MappingError::MissingLabel { .. } => "missing_label",
            MappingError::MissingSeries { .. } | MappingError::DuplicateSeries { .. } => {
                "missing_series"
            }
            MappingError::BadValue { .. }
            | MappingError::DepthOverCapacity { .. }
            | MappingError::ZeroCapacity { .. } => "bad_value",
            MappingError::BadStreamName { .. } | MappingError::TooManyStreams { .. } => {
                "bad_stream"
            }
        }
    }
}

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

/// The values of one stream in one scrape.
struct Row {
    depth: u64,
    capacity: u64,
    dequeued: u64,
    enqueued: Option<u64>,
    dropped: Option<u64>,
    up: Option<bool>,
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
        let rows = self.rows(samples)?;
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

    /// One row per stream label value of the depth gauge, every mapped series found.
    fn rows<'a>(&'a self, samples: &[Sample]) -> Result<BTreeMap<String, Row>, MappingError> {
        let m = &self.mapping;
        let depth = self.series(samples, &m.depth)?;
        if depth.len() > crate::report::MAX_STREAMS_PER_REPORT {
            return Err(MappingError::TooManyStreams {
                count: depth.len(),
                max: crate::report::MAX_STREAMS_PER_REPORT,
            });
        }
        let capacity = match &m.capacity {
            Capacity::Metric(name) => Some(self.series(samples, name)?),
            Capacity::Fixed(_) => None,
        };
        let dequeued = self.series(samples, &m.dequeued)?;
        let optional = |name: &'a Option<String>| {
            name.as_ref()
                .map(|n| self.series(samples, n).map(|s| (n.as_str(), s)))
                .transpose()
        };
        let enqueued = optional(&m.enqueued)?;
        let dropped = optional(&m.dropped)?;
        let up = optional(&m.consumer_up)?;

        let mut rows = BTreeMap::new();
        for (stream, &d) in &depth {
            let get = |metric: &str, series: &BTreeMap<String, f64>| {
                let v = *series
                    .get(stream)
                    .ok_or_else(|| MappingError::MissingSeries {
                        metric: metric.to_owned(),
                        label: m.stream_label.clone(),
                        stream: stream.clone(),
                    })?;
                whole(metric, stream, v)
            };
            let depth = whole(&m.depth, stream, d)?;
            let capacity = match (&m.capacity, &capacity) {
                (Capacity::Fixed(n), _) => *n,
                (Capacity::Metric(name), Some(series)) => get(name, series)?,
                (Capacity::Metric(_), None) => unreachable!("read above"),
            };
            if capacity == 0 {
                return Err(MappingError::ZeroCapacity {
                    stream: stream.clone(),
                });
            }
            if depth > capacity {
                return Err(MappingError::DepthOverCapacity {
                    stream: stream.clone(),
                    depth,
                    capacity,
                });
            }
            let opt = |o: &Option<(&str, BTreeMap<String, f64>)>| {
                o.as_ref().map(|(name, s)| get(name, s)).transpose()
            };
            rows.insert(
                stream.clone(),
                Row {
                    depth,
                    capacity,
                    dequeued: get(&m.dequeued, &dequeued)?,
                    enqueued: opt(&enqueued)?,
                    dropped: opt(&dropped)?,
                    up: opt(&up)?.map(|v| v != 0),
                },
            );
        }
        Ok(rows)
    }

    /// The series of `metric` (or, for a counter named without it, `metric_total`) by stream.
    fn series(
        &self,
        samples: &[Sample],
        metric: &str,
    ) -> Result<BTreeMap<String, f64>, MappingError> {
        let total = format!("{metric}_total");
        let mut of: Vec<&Sample> = samples.iter().filter(|s| s.name == metric).collect();
        if of.is_empty() {
            of = samples.iter().filter(|s| s.name == total).collect();
        }
        if of.is_empty() {
            return Err(MappingError::MissingMetric {
                metric: metric.to_owned(),
                hint: similar_names(samples, metric),
            });
        }
        let label = &self.mapping.stream_label;
        let mut out = BTreeMap::new();
        for s in of {
            let Some(stream) = s.label(label) else {
                return Err(MappingError::MissingLabel {
                    metric: metric.to_owned(),
                    label: label.clone(),
                    labels: describe_labels(s),
                });
            };
            if !is_valid_stream_name(stream) {
                return Err(MappingError::BadStreamName {
                    metric: metric.to_owned(),
                    value: crate::report::truncate(stream, 80),
                });
            }
            if out.insert(stream.to_owned(), s.value).is_some() {
                return Err(MappingError::DuplicateSeries {
                    metric: metric.to_owned(),
                    stream: stream.to_owned(),
                });
            }
        }
        Ok(out)
    }
}

/// A gauge or counter value as a count: finite, >= 0, whole.
fn whole(metric: &str, stream: &str, v: f64) -> Result<u64, MappingError> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(63) {
        // Checked above: finite, whole and in range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(v as u64)
    } else {
        Err(MappingError::BadValue {
            metric: metric.to_owned(),
            stream: stream.to_owned(),
            value: v.to_string(),
        })
    }
}

fn describe_labels(s: &Sample) -> String {
    if s.labels.is_empty() {
        return "none".to_owned();
    }
    s.labels
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; did you mean ...?` with up to three scraped names sharing a word with `metric`.
fn similar_names(samples: &[Sample], metric: &str) -> String {
    let words: Vec<&str> = metric
        .split('_')
        .filter(|w| w.len() > 2 && *w != "total")
        .collect();
    let mut names: Vec<&str> = samples
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| words.iter().any(|w| n.contains(w)))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.truncate(3);
    if names.is_empty() {
        format!(" ({} series scraped, none alike)", samples.len())
    } else {
        format!("; did you mean {}?", names.join(", "))
    }
}

#[cfg(test)]
mod tests;
