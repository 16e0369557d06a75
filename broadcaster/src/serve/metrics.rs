//! `/metrics`: Prometheus text exposition, read live from the pipeline's own counters at
//! scrape time (no second set of counters to keep in sync).
//!
//! Per stream (`stream` label): `..._channel_depth`, `..._channel_capacity`,
//! `..._enqueued_total`, `..._dequeued_total`, `..._dropped_oldest_total`,
//! `..._quarantined_total{kind}`, `..._last_dequeue_timestamp_seconds`,
//! `..._dispatcher_up`, `..._dispatcher_restarts_total`, `..._subscribers`,
//! `..._delivered_total`, `..._subscriber_lagged_total`, `..._entities_published_total{kind}`
//! (vehicle, trip_update, alert, deleted), `..._duplicate_entity_ids_total`,
//! `..._entities_not_carried_total`. Process-wide: source messages, bytes,
//! errors by kind, HTTP 304s, reports sent/failed; the lean HTTP/2 server's connections
//! closed for going past a limit, `..._h2_limit_exceeded_total{reason}`. Prefix:
//! `stallwatch_broadcaster_`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use stallwatch_core::report::{DispatcherState, StreamReport};

use crate::pipeline::engine::Engine;
use crate::pipeline::prepare::EntityKind;
use crate::pipeline::quarantine::QuarantineKind;
use crate::pipeline::stream_runtime::StreamRuntime;

macro_rules! n {
    ($s:literal) => {
        concat!("stallwatch_broadcaster_", $s)
    };
}

#[derive(Debug)]
struct EngineCollector(Arc<Engine>);

type Labels<'a> = [(&'static str, &'a str); 1];
type Labels2<'a> = [(&'static str, &'a str); 2];

impl Collector for EngineCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let engine = &self.0;
        // One report per stream per scrape, shared by every per-stream family.
        let rows: Vec<Row> = engine
            .streams()
            .iter()
            .map(|s| (s.report(), s.clone()))
            .collect();
        encode_stream_channels(&mut enc, &rows)?;
        encode_stream_dispatchers(&mut enc, &rows, engine.stuck_after())?;
        encode_entities(&mut enc, &rows)?;
        encode_quarantined(&mut enc, &self.0)?;
        encode_source(&mut enc, &self.0)?;
        encode_reporter(&mut enc, &self.0)
    }
}

/// One stream's state at scrape time: its report and its runtime.
type Row = (StreamReport, Arc<StreamRuntime>);

/// One family per stream counter, each sample labelled `stream`.
macro_rules! per_stream {
    ($enc:ident, $rows:ident, $name:literal, $help:expr, $unit:expr, $ty:expr, |$r:ident, $s:ident| $value:expr, $wrap:ident) => {{
        let mut d = $enc.encode_descriptor(n!($name), $help, $unit, $ty)?;
        for ($r, $s) in $rows {
            let _ = &$s;
            let labels: Labels<'_> = [("stream", $r.name.as_str())];
            $wrap::new($value).encode(d.encode_family(&labels)?)?;
        }
    }};
}

/// The channel's counters, per stream. A flat table: one entry per metric.
fn encode_stream_channels(
    enc: &mut DescriptorEncoder<'_>,
    rows: &[Row],
) -> Result<(), std::fmt::Error> {
    per_stream!(
        enc,
        rows,
        "channel_depth",
        "Items waiting in the stream's channel.",
        None,
        MetricType::Gauge,
        |r, s| r.channel.depth as i64,
        ConstGauge
    );
    per_stream!(
        enc,
        rows,
        "channel_capacity",
        "The stream channel's bound.",
        None,
        MetricType::Gauge,
        |r, s| r.channel.capacity as i64,
        ConstGauge
    );
    per_stream!(
        enc,
        rows,
        "enqueued",
        "Items written to the stream's channel, including later dropped ones.",
        None,
        MetricType::Counter,
        |r, s| r.enqueued_total,
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "dequeued",
        "Items taken out of the stream's channel by its dispatcher.",
        None,
        MetricType::Counter,
        |r, s| r.dequeued_total,
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "dropped_oldest",
        "Items evicted because the stream's channel was full.",
        None,
        MetricType::Counter,
        |r, s| r.dropped_oldest_total,
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "last_dequeue_timestamp",
        "Wall clock of the last dequeue (0 if never).",
        Some(&Unit::Seconds),
        MetricType::Gauge,
        |r, s| r.last_dequeue_ms.unwrap_or(0) as f64 / 1000.0,
        ConstGauge
    );
    Ok(())
}

/// Dispatcher, subscriber and health state, per stream. A flat table: one entry per metric.
fn encode_stream_dispatchers(
    enc: &mut DescriptorEncoder<'_>,
    rows: &[Row],
    stuck_after: Duration,
) -> Result<(), std::fmt::Error> {
    per_stream!(
        enc,
        rows,
        "dispatcher_up",
        "1 while the stream's dispatcher task is running.",
        None,
        MetricType::Gauge,
        |r, s| i64::from(r.dispatcher.state == DispatcherState::Running),
        ConstGauge
    );
    per_stream!(
        enc,
        rows,
        "dispatcher_restarts",
        "Dispatcher restarts by the supervisor (or on request).",
        None,
        MetricType::Counter,
        |r, s| r.dispatcher.restarts_total,
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "subscribers",
        "Subscribers connected to the stream.",
        None,
        MetricType::Gauge,
        |r, s| r.subscribers as i64,
        ConstGauge
    );
    per_stream!(
        enc,
        rows,
        "delivered",
        "Updates handed to subscriber queues, summed over subscribers.",
        None,
        MetricType::Counter,
        |r, s| r.delivered_total,
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "subscriber_lagged",
        "Updates skipped for a subscriber whose queue was full, summed over subscribers.",
        None,
        MetricType::Counter,
        |r, s| s.hub.lagged_total(),
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "serving",
        "1 while the stream makes progress (its gRPC health is SERVING).",
        None,
        MetricType::Gauge,
        |r, s| i64::from(s.is_serving(stuck_after)),
        ConstGauge
    );
    Ok(())
}

/// What each stream published, by kind, and what it met in the feed.
fn encode_entities(enc: &mut DescriptorEncoder<'_>, rows: &[Row]) -> Result<(), std::fmt::Error> {
    per_stream!(
        enc,
        rows,
        "duplicate_entity_ids",
        "Entities whose id an earlier entity of the same feed message had (valid; carried).",
        None,
        MetricType::Counter,
        |r, s| s.entities.duplicate_ids(),
        ConstCounter
    );
    per_stream!(
        enc,
        rows,
        "entities_not_carried",
        "Entities of kinds the broadcaster does not carry (shapes, stops, trip modifications).",
        None,
        MetricType::Counter,
        |r, s| s.entities.not_carried(),
        ConstCounter
    );
    let mut d = enc.encode_descriptor(
        n!("entities_published"),
        "Entities published to the stream's subscribers, by kind.",
        None,
        MetricType::Counter,
    )?;
    for (r, s) in rows {
        for kind in EntityKind::ALL {
            let labels: Labels2<'_> = [("stream", r.name.as_str()), ("kind", kind.as_str())];
            ConstCounter::new(s.entities.published(kind)).encode(d.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn encode_quarantined(
    enc: &mut DescriptorEncoder<'_>,
    engine: &Engine,
) -> Result<(), std::fmt::Error> {
    let streams = engine.streams();
    let mut d = enc.encode_descriptor(
        n!("quarantined"),
        "Messages or entities set aside because they failed to parse or prepare.",
        None,
        MetricType::Counter,
    )?;
    for s in streams.iter() {
        for kind in QuarantineKind::ALL {
            let labels: Labels2<'_> = [("stream", s.name()), ("kind", kind.as_str())];
            ConstCounter::new(s.quarantine.count(kind)).encode(d.encode_family(&labels)?)?;
        }
    }

    Ok(())
}

fn encode_source(enc: &mut DescriptorEncoder<'_>, engine: &Engine) -> Result<(), std::fmt::Error> {
    let source = engine.source_stats();
    let mut d = enc.encode_descriptor(
        n!("source_messages"),
        "Feed messages received from the source.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(source.messages.load(Ordering::Relaxed)).encode(d)?;
    d = enc.encode_descriptor(
        n!("source_received"),
        "Feed bytes received from the source.",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    ConstCounter::new(source.bytes.load(Ordering::Relaxed)).encode(d)?;
    d = enc.encode_descriptor(
        n!("source_not_modified"),
        "HTTP polls answered 304 Not Modified.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(source.not_modified.load(Ordering::Relaxed)).encode(d)?;
    let mut d = enc.encode_descriptor(
        n!("source_errors"),
        "Source failures by kind.",
        None,
        MetricType::Counter,
    )?;
    for (kind, n) in source.errors() {
        let labels: Labels<'_> = [("kind", kind)];
        ConstCounter::new(n).encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_reporter(
    enc: &mut DescriptorEncoder<'_>,
    engine: &Engine,
) -> Result<(), std::fmt::Error> {
    let reporter = engine.reporter_stats();
    let d = enc.encode_descriptor(
        n!("reports_sent"),
        "Reports the sidecar accepted.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(reporter.sent.load(Ordering::Relaxed)).encode(d)?;
    let d = enc.encode_descriptor(
        n!("reports_failed"),
        "Reports that failed or timed out.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(reporter.failed.load(Ordering::Relaxed)).encode(d)?;
    Ok(())
}

/// A registry exposing `engine`'s state.
pub fn registry(engine: Arc<Engine>) -> Registry {
    let mut registry = Registry::default();
    let h2 = engine.h2_limits_exceeded().clone();
    registry.register_collector(Box::new(EngineCollector(engine)));
    // `stallwatch_broadcaster_h2_limit_exceeded_total{reason}`.
    registry
        .sub_registry_with_prefix("stallwatch_broadcaster")
        .register_collector(Box::new(h2));
    registry
}

pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
