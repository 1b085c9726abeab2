//! Prometheus collectors over the current snapshots.
//!
//! A scrape loads every cluster's snapshot once ([`SnapshotCollector`]), then each area in
//! [`all`] encodes its families from those same snapshots, so one response never mixes two
//! cycles of a cluster. Nothing here talks to Kafka.

mod cluster;
mod exporter;
mod groups;
mod partitions;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::poller::SnapshotSlot;
use crate::snapshot::ClusterSnapshot;

/// A label set: borrowed names, borrowed or formatted values.
pub type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// One area of metrics (cluster, exporter self-metrics, ...), encoded from snapshots.
pub trait Area: Send + Sync + std::fmt::Debug {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result;
}

/// The registration list: every area, in output order.
pub fn all() -> Vec<Box<dyn Area>> {
    vec![
        Box::new(exporter::ExporterArea),
        Box::new(cluster::ClusterArea),
        Box::new(partitions::PartitionsArea),
        Box::new(groups::GroupsArea),
    ]
}

/// The one `prometheus-client` collector of the exporter.
#[derive(Debug)]
pub struct SnapshotCollector {
    slots: Vec<SnapshotSlot>,
    areas: Vec<Box<dyn Area>>,
}

impl SnapshotCollector {
    pub fn new(slots: Vec<SnapshotSlot>) -> Self {
        Self { slots, areas: all() }
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let clusters: Vec<Arc<ClusterSnapshot>> = self.slots.iter().map(|s| s.load_full()).collect();
        let now = SystemTime::now();
        for area in &self.areas {
            area.encode(&clusters, now, &mut encoder)?;
        }
        Ok(())
    }
}

/// Builds the registry served on the telemetry path.
pub fn registry(slots: Vec<SnapshotSlot>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector::new(slots)));
    registry
}

/// Labels every series of a cluster carries: `cluster` plus the configured constant labels.
pub fn cluster_labels(c: &ClusterSnapshot) -> Labels<'_> {
    let mut l: Labels<'_> = Vec::with_capacity(1 + c.labels.len());
    l.push(("cluster", Cow::Borrowed(c.name.as_str())));
    for (k, v) in &c.labels {
        l.push((k.as_str(), Cow::Borrowed(v.as_str())));
    }
    l
}

/// `base` extended with more labels.
pub fn with<'a>(base: &Labels<'a>, more: impl IntoIterator<Item = (&'a str, Cow<'a, str>)>) -> Labels<'a> {
    let mut l = base.clone();
    l.extend(more);
    l
}

/// Encodes a gauge family; nothing is written when there are no samples.
pub fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: &[(Labels<'_>, f64)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Encodes a counter family (`_total` is appended to `name`).
pub fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: &[(Labels<'_>, u64)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Encodes an info family (`_info` is appended to `name`; value 1). Each sample is the shared
/// label set plus the informational labels.
pub fn infos(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, Labels<'_>)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Info)?;
    for (labels, info) in samples {
        Info::new(info.clone()).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Unix time in seconds as a float, for `_timestamp_seconds` gauges.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
