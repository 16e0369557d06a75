//! `stallwatch_operator_transitstream_phase{namespace,name,phase}`: one series per
//! TransitStream that has a phase, read from the operator's cache at scrape time, so a
//! deleted TransitStream leaves no stale series (the controller never reconciles a deleted
//! object without finalizers, so a gauge set in reconcile could never be removed). Only the
//! replica that leads has the cache, so only it exports the series: no duplicates across
//! replicas. Bounded by the number of TransitStreams the operator watches.

use std::sync::{Arc, Mutex};

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use stallwatch_core::sync::lock;
use stallwatch_crds::TransitStream;

pub(super) const NAME: &str = "transitstream_phase";
pub(super) const HELP: &str = "1 for the TransitStream's current status.phase (Pending, Running, Stalled, Remediating, Degraded, Paused, InvalidSpec); exported by the leading replica only.";

/// The TransitStream cache, once the controller has one (set by the reconcile context).
pub(super) type StreamsSlot = Arc<Mutex<Option<Store<TransitStream>>>>;

#[derive(Debug)]
pub(super) struct PhaseCollector(pub(super) StreamsSlot);

impl Collector for PhaseCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // The descriptor is written even with no cache, so `transit-operator metrics` lists it.
        let mut family = enc.encode_descriptor(NAME, HELP, None, MetricType::Gauge)?;
        let Some(store) = lock(&self.0).clone() else {
            return Ok(());
        };
        let mut rows: Vec<(String, String, &'static str)> = store
            .state()
            .iter()
            .filter_map(|ts| {
                let phase = ts.status.as_ref()?.phase?;
                Some((
                    ts.metadata.namespace.clone().unwrap_or_default(),
                    ts.metadata.name.clone().unwrap_or_default(),
                    phase.as_str(),
                ))
            })
            .collect();
        rows.sort();
        for (namespace, name, phase) in &rows {
            let labels = [
                ("namespace", namespace.as_str()),
                ("name", name.as_str()),
                ("phase", *phase),
            ];
            ConstGauge::new(1_i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
