//! The sidecar's Prometheus metrics (`stallwatch_sidecar_*`), served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use stallwatch_core::condition::StallReason;
use std::sync::atomic::AtomicU64;

/// Every `reason` label `stream_stalled` can carry: `none` and each `StallReason`.
fn verdict_reasons() -> impl Iterator<Item = &'static str> {
    std::iter::once("none").chain(StallReason::ALL.iter().map(|r| r.as_str()))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamReasonLabels {
    pub stream: String,
    /// A `StallReason`, or `none` while healthy.
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabels {
    /// `condition` or `event`.
    pub what: String,
}

/// `StallReason`s, as the `reason` label spells them.
const STALL_REASONS: [&str; 3] = ["ChannelStuck", "DispatcherDead", "ReportsLost"];

pub struct Metrics {
    registry: Registry,
    pub reports_received: Counter,
    pub reports_rejected: Family<KindLabels, Counter>,
    /// 1 while the stream is stalled for `reason`; 0 with `reason="none"` while healthy.
    pub stream_stalled: Family<StreamReasonLabels, Gauge>,
    pub stream_depth: Family<StreamLabels, Gauge>,
    pub stream_capacity: Family<StreamLabels, Gauge>,
    pub detections: Family<ReasonLabels, Counter>,
    pub recoveries: Family<ReasonLabels, Counter>,
    pub last_report_age_seconds: Gauge<f64, AtomicU64>,
    pub dumps: Family<OutcomeLabels, Counter>,
    pub process_dumps: Family<OutcomeLabels, Counter>,
    pub last_bundle_seconds: Gauge<f64, AtomicU64>,
    pub last_bundle_bytes: Gauge,
    /// 1 when the last bundle write succeeded (or none was tried), 0 after a failure.
    pub dump_storage_ok: Gauge,
    pub publishes: Family<WhatLabels, Counter>,
    pub publish_errors: Family<WhatLabels, Counter>,
    pub restarts_requested: Family<OutcomeLabels, Counter>,
    /// Zero-code mode: scrapes of the app's metrics, by outcome.
    pub scrapes: Family<OutcomeLabels, Counter>,
    pub scrape_ok: Gauge,
    pub app_restarts: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stallwatch_sidecar");
        let m = Metrics {
            registry: Registry::default(),
            reports_received: Counter::default(),
            reports_rejected: Family::default(),
            stream_stalled: Family::default(),
            stream_depth: Family::default(),
            stream_capacity: Family::default(),
            detections: Family::default(),
            recoveries: Family::default(),
            last_report_age_seconds: Gauge::default(),
            dumps: Family::default(),
            process_dumps: Family::default(),
            last_bundle_seconds: Gauge::default(),
            last_bundle_bytes: Gauge::default(),
            dump_storage_ok: Gauge::default(),
            publishes: Family::default(),
            publish_errors: Family::default(),
            restarts_requested: Family::default(),
            scrapes: Family::default(),
            scrape_ok: Gauge::default(),
            app_restarts: Counter::default(),
        };
        m.dump_storage_ok.set(1);
        // The bounded label sets the chart's alert rules use, at 0: `increase()` cannot see
        // the first increment of a series that appears at 1.
        for reason in STALL_REASONS {
            let labels = ReasonLabels {
                reason: reason.into(),
            };
            let _ = m.detections.get_or_create(&labels);
            let _ = m.recoveries.get_or_create(&labels);
        }
        for outcome in ["ok", "no_space", "unavailable", "failed"] {
            let _ = m.dumps.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            });
        }
        for what in ["condition", "event"] {
            let _ = m
                .publish_errors
                .get_or_create(&WhatLabels { what: what.into() });
        }
        registry.register(
            "reports_received",
            "Reports accepted from the broadcaster",
            m.reports_received.clone(),
        );
        registry.register("reports_rejected", "Reports refused, by kind (malformed, invalid, unsupported_protocol, out_of_order, too_large)", m.reports_rejected.clone());
        registry.register(
            "stream_stalled",
            "1 while the stream is stalled for the labelled reason (reason=none while healthy)",
            m.stream_stalled.clone(),
        );
        registry.register(
            "stream_depth",
            "Items waiting in the stream's channel at the last report",
            m.stream_depth.clone(),
        );
        registry.register(
            "stream_capacity",
            "The stream's channel capacity",
            m.stream_capacity.clone(),
        );
        registry.register(
            "detections",
            "Streams judged stalled, by reason",
            m.detections.clone(),
        );
        registry.register(
            "recoveries",
            "Stalled streams judged healthy again, by the reason they were stalled for",
            m.recoveries.clone(),
        );
        registry.register(
            "last_report_age_seconds",
            "Seconds since the last accepted report",
            m.last_report_age_seconds.clone(),
        );
        registry.register(
            "dumps",
            "Bundle captures, by outcome (ok, no_space, unavailable, failed, busy)",
            m.dumps.clone(),
        );
        registry.register(
            "process_dumps",
            "Process dumps in bundles, by outcome (written, skipped, failed)",
            m.process_dumps.clone(),
        );
        registry.register(
            "last_bundle_duration_seconds",
            "Time from request to durable bundle of the last capture",
            m.last_bundle_seconds.clone(),
        );
        registry.register(
            "last_bundle_bytes",
            "Size of the last bundle",
            m.last_bundle_bytes.clone(),
        );
        registry.register(
            "dump_storage_ok",
            "0 after a failed bundle write (full, read-only or missing volume), 1 otherwise",
            m.dump_storage_ok.clone(),
        );
        registry.register(
            "publishes",
            "Successful pod condition patches and Events",
            m.publishes.clone(),
        );
        registry.register(
            "publish_errors",
            "Failed pod condition patches and Events",
            m.publish_errors.clone(),
        );
        registry.register(
            "restarts_requested",
            "Stream restarts proxied to the broadcaster, by outcome",
            m.restarts_requested.clone(),
        );
        registry.register(
            "scrapes",
            "Zero-code mode: scrapes of the app's metrics by outcome (ok, or why no verdict came of it: timeout, unreachable, http_status, not_metrics, parse_error, missing_metric, missing_label, missing_series, bad_value, bad_stream)",
            m.scrapes.clone(),
        );
        registry.register(
            "scrape_ok",
            "Zero-code mode: 1 while the last scrape mapped to streams, 0 while verdicts wait for a working scrape",
            m.scrape_ok.clone(),
        );
        registry.register(
            "app_restarts",
            "Zero-code mode: app restarts seen as a mapped counter going backwards",
            m.app_restarts.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn reject(&self, kind: &str) {
        self.reports_rejected
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    pub fn dump(&self, outcome: &str) {
        self.dumps
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn scrape(&self, outcome: &str) {
        self.scrapes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.scrape_ok.set(i64::from(outcome == "ok"));
    }

    pub fn process_dump(&self, outcome: &str) {
        self.process_dumps
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn published(&self, what: &str, ok: bool) {
        let labels = WhatLabels { what: what.into() };
        if ok {
            self.publishes.get_or_create(&labels).inc();
        } else {
            self.publish_errors.get_or_create(&labels).inc();
        }
    }

    /// Set the stream's verdict gauge, removing the series of its previous reason.
    pub(crate) fn set_stream_verdict(&self, stream: &str, reason: Option<&str>) {
        for r in verdict_reasons() {
            if Some(r) != reason && !(r == "none" && reason.is_none()) {
                self.stream_stalled.remove(&StreamReasonLabels {
                    stream: stream.into(),
                    reason: r.into(),
                });
            }
        }
        let labels = StreamReasonLabels {
            stream: stream.into(),
            reason: reason.unwrap_or("none").into(),
        };
        self.stream_stalled
            .get_or_create(&labels)
            .set(i64::from(reason.is_some()));
    }

    pub(crate) fn has_stream_verdict(&self, stream: &str) -> bool {
        verdict_reasons().any(|r| {
            self.stream_stalled
                .get(&StreamReasonLabels {
                    stream: stream.into(),
                    reason: r.into(),
                })
                .is_some()
        })
    }

    pub(crate) fn remove_stream(&self, stream: &str) {
        for r in verdict_reasons() {
            self.stream_stalled.remove(&StreamReasonLabels {
                stream: stream.into(),
                reason: r.into(),
            });
        }
        let labels = StreamLabels {
            stream: stream.into(),
        };
        self.stream_depth.remove(&labels);
        self.stream_capacity.remove(&labels);
    }
}

#[cfg(test)]
mod tests;
