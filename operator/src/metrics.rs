//! Prometheus metrics (`prometheus-client`), served on `/metrics`.

mod phases;
#[cfg(test)]
mod tests;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
    pub result: String,
}

/// `stallwatch_core::remediation::Outcome::as_str` of every outcome.
const REMEDIATION_OUTCOMES: [&str; 7] = [
    "Recovered",
    "Restarted",
    "Dumped",
    "Observed",
    "PodGone",
    "Cancelled",
    "Failed",
];
/// `stallwatch_core::remediation::Blocked::label` of every rail.
const BLOCKING_RAILS: [&str; 5] = [
    "Paused",
    "OptedOut",
    "BudgetSpent",
    "Cooldown",
    "ConcurrencyLimit",
];

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub remediations: Family<OutcomeLabels, Counter>,
    pub remediation_steps: Family<StepLabels, Counter>,
    pub remediations_blocked: Family<ReasonLabels, Counter>,
    pub budget_exhausted: Counter,
    pub stall_to_restart: Histogram,
    pub reconcile_duration: Histogram,
    pub in_flight: Gauge,
    pub leader: Gauge,
    /// The cache `transitstream_phase` is read from at scrape time.
    streams: phases::StreamsSlot,
}

impl Metrics {
    /// Register every metric under the `stallwatch_operator` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            remediations: Family::default(),
            remediation_steps: Family::default(),
            remediations_blocked: Family::default(),
            budget_exhausted: Counter::default(),
            stall_to_restart: Histogram::new([
                0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            reconcile_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            in_flight: Gauge::default(),
            leader: Gauge::default(),
            streams: phases::StreamsSlot::default(),
        };
        let r = registry.sub_registry_with_prefix("stallwatch_operator");
        r.register("reconciles", "Reconciles run", m.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Failed reconciles by error variant",
            m.reconcile_errors.clone(),
        );
        r.register(
            "remediations",
            "Finished remediation attempts by outcome",
            m.remediations.clone(),
        );
        r.register(
            "remediation_steps",
            "Remediation steps by step and result",
            m.remediation_steps.clone(),
        );
        r.register(
            "remediations_blocked",
            "Stalls not acted on, by rail (Paused, OptedOut, BudgetSpent, Cooldown, ConcurrencyLimit)",
            m.remediations_blocked.clone(),
        );
        r.register(
            "budget_exhausted",
            "Times a TransitStream's hourly remediation budget ran out",
            m.budget_exhausted.clone(),
        );
        r.register(
            "stall_to_restart_seconds",
            "From the stall condition's transition to the restart being issued",
            m.stall_to_restart.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        r.register(
            "remediations_in_flight",
            "Remediation attempts in flight, operator-wide",
            m.in_flight.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        r.register_collector(Box::new(phases::PhaseCollector(m.streams.clone())));
        for label in crate::error::Error::LABELS {
            // Pre-create each series at 0 so dashboards see every variant.
            let _ = m.reconcile_errors.get_or_create(&ErrorLabels {
                error: label.into(),
            });
        }
        // And the bounded label sets the alert rules use: `increase()` cannot see the first
        // increment of a series that appears at 1.
        for outcome in REMEDIATION_OUTCOMES {
            let _ = m.remediations.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            });
        }
        for rail in BLOCKING_RAILS {
            let _ = m.remediations_blocked.get_or_create(&ReasonLabels {
                reason: rail.into(),
            });
        }
        m
    }

    /// Export `transitstream_phase` from this cache (the controller's, once it leads).
    pub fn observe_streams(&self, streams: Store<TransitStream>) {
        *lock(&self.streams) = Some(streams);
    }

    pub fn error(&self, label: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: label.into(),
            })
            .inc();
    }
}

/// Every metric this build exports, with no series yet (`transit-operator metrics`): what
/// dashboards and alert rules may name, known without a cluster.
pub fn catalog() -> String {
    let mut registry = Registry::default();
    let _ = Metrics::new(&mut registry);
    render(&registry)
}

/// Render the registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String never fails");
    out
}
