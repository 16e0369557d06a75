//! The metrics mapping (which scraped series means what) and why a scrape does not fit it.

use crate::exposition::Sample;

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
