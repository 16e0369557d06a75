//! Reading a scrape through the mapping: one [`Row`] per stream, every value checked (whole,
//! labelled, unique, within capacity), errors that name what to fix.

use std::collections::BTreeMap;

use super::mapping::{Capacity, MappingError, MetricsMapping};
use crate::exposition::Sample;
use crate::report::is_valid_stream_name;

/// The values of one stream in one scrape.
pub(super) struct Row {
    pub(super) depth: u64,
    pub(super) capacity: u64,
    pub(super) dequeued: u64,
    pub(super) enqueued: Option<u64>,
    pub(super) dropped: Option<u64>,
    pub(super) up: Option<bool>,
}

/// One row per stream label value of the depth gauge, every mapped series found.
pub(super) fn rows<'a>(
    m: &'a MetricsMapping,
    samples: &[Sample],
) -> Result<BTreeMap<String, Row>, MappingError> {
    let depth = series(m, samples, &m.depth)?;
    if depth.len() > crate::report::MAX_STREAMS_PER_REPORT {
        return Err(MappingError::TooManyStreams {
            count: depth.len(),
            max: crate::report::MAX_STREAMS_PER_REPORT,
        });
    }
    let capacity = match &m.capacity {
        Capacity::Metric(name) => Some(series(m, samples, name)?),
        Capacity::Fixed(_) => None,
    };
    let dequeued = series(m, samples, &m.dequeued)?;
    let optional = |name: &'a Option<String>| {
        name.as_ref()
            .map(|n| series(m, samples, n).map(|s| (n.as_str(), s)))
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
    m: &MetricsMapping,
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
    let label = &m.stream_label;
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
