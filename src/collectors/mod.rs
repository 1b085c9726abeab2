//! Prometheus collectors over the current snapshots.
//!
//! Each area in [`all`] encodes its families from one set of snapshots, loaded once per
//! rendering, so one response never mixes two cycles of a cluster. Nothing here talks to Kafka.
//! [`Exposition`] (in `exposition`) encodes the areas once per new set of snapshots and serves
//! the cached text (and its gzip form) to every scrape until the next cycle; only areas that
//! depend on the scrape time ([`Area::scrape_time`]) are encoded on every scrape.
//!
//! Families are encoded as they are iterated ([`gauge_family`], [`info_family`]): label sets
//! borrow the snapshot's strings and the cluster's base labels, so a scrape of a large
//! cluster allocates per family, not per series.

mod cluster;
mod compat;
mod compliance;
mod exporter;
mod exposition;
mod groups;
mod guard;
mod partitions;
mod probe;
mod registry;

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

pub use exposition::{Exposition, Format};

use crate::families::Selection;
use crate::snapshot::ClusterSnapshot;
use crate::snapshot::SnapshotSlot;

/// One area of metrics (cluster, exporter self-metrics, ...), encoded from snapshots.
pub trait Area: Send + Sync + std::fmt::Debug {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result;

    /// True when the area's output depends on the scrape time (`now`) and not only on the
    /// snapshots: it is then encoded on every scrape, the others once per set of snapshots.
    fn scrape_time(&self) -> bool {
        false
    }
}

/// What the areas read beside the Kafka snapshots, by cluster name: the snapshots of delivery
/// probes and Schema Registry watches (only of the clusters that have them), every cluster's
/// Kafka client error counters and the HTTP endpoint's refusals. All are created at start-up
/// and passed in.
#[derive(Debug, Default)]
pub struct SideSlots {
    pub probes: Vec<(String, crate::probe::ProbeSlot)>,
    pub registries: Vec<(String, crate::registry::RegistrySlot)>,
    /// Not a snapshot but live counters: the Kafka client errors of each cluster.
    pub client_errors: Vec<(String, crate::kafka::ClientErrors)>,
    /// Live too: which reader serves each cluster and the requests the native reader sent.
    pub reader_stats: Vec<(String, crate::kafka::ReaderStats)>,
    /// Live counters too: the HTTP endpoint's refusals.
    pub rejections: crate::selfmetrics::Rejections,
    /// Live too: the outcome of the most recent configuration reload.
    pub reloads: crate::selfmetrics::ReloadStatus,
}

/// The registration list: every area, in output order. `shard` is this process's shard;
/// `selection` the families served (areas with many series consult it while encoding).
pub fn all(side: SideSlots, shard: crate::shard::Shard, selection: &Arc<Selection>) -> Vec<Box<dyn Area>> {
    vec![
        Box::new(exporter::ExporterArea {
            shard,
            client_errors: side.client_errors,
            reader_stats: side.reader_stats,
            rejections: side.rejections,
            reloads: side.reloads,
        }),
        Box::new(cluster::ClusterArea),
        Box::new(partitions::PartitionsArea {
            selection: Arc::clone(selection),
        }),
        Box::new(groups::GroupsArea {
            selection: Arc::clone(selection),
        }),
        Box::new(compliance::ComplianceArea {
            selection: Arc::clone(selection),
        }),
        Box::new(probe::ProbeArea { probes: side.probes }),
        Box::new(registry::RegistryArea {
            registries: side.registries,
        }),
    ]
}

/// Builds the exposition served on the telemetry path: the families `selection` serves, within
/// the series limit (`global.max_series`) when one is set.
pub fn registry(
    slots: Vec<SnapshotSlot>,
    side: SideSlots,
    shard: crate::shard::Shard,
    max_series: Option<usize>,
    selection: Selection,
) -> Exposition {
    let selection = Arc::new(selection);
    let mut areas = all(side, shard, &selection);
    match max_series {
        None => Exposition::new(slots, areas).with_selection(&selection),
        Some(limit) => {
            let guard = Arc::new(guard::SeriesGuard::new(limit));
            areas.push(Box::new(guard::GuardArea(Arc::clone(&guard))));
            Exposition::new(slots, areas)
                .with_selection(&selection)
                .with_guard(guard)
        }
    }
}

/// A family's name as served: with `_seconds` for a family in seconds (the encoder appends
/// the unit), as [`crate::families`] lists it.
pub fn served_name<'a>(name: &'a str, unit: Option<&Unit>) -> std::borrow::Cow<'a, str> {
    match unit {
        Some(Unit::Seconds) => format!("{name}_seconds").into(),
        _ => name.into(),
    }
}

/// Builds the exposition of a compatibility output (`global.compat`), served on its own path
/// from the same snapshots and cached per set of snapshots like `/metrics`.
pub fn compat(slots: Vec<SnapshotSlot>, output: crate::config::Compat) -> Exposition {
    let area: Box<dyn Area> = match output {
        crate::config::Compat::KafkaExporter => Box::new(compat::KafkaExporterArea),
    };
    Exposition::new(slots, vec![area])
}

/// The label set of families without labels (process-wide ones).
pub const NO_LABELS: [(&str, &str); 0] = [];

/// A cluster's base labels (`cluster` plus the constant labels), borrowed from its snapshot.
pub type Base<'a> = Vec<(&'a str, &'a str)>;

/// The labels every series of a cluster carries, as borrowed pairs for [`gauge_family`].
pub fn base_labels(c: &ClusterSnapshot) -> Base<'_> {
    let mut l: Base<'_> = Vec::with_capacity(1 + c.labels.len());
    l.push(("cluster", c.name.as_str()));
    l.extend(c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    l
}

/// Encodes a gauge family from an iterator of (label set, value), without collecting it;
/// nothing is written when there are no samples. Label sets are typically tuples of a borrowed
/// [`Base`] slice and arrays of extra pairs, e.g. `(base, [("topic", name)])`.
pub fn gauge_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl Iterator<Item = (L, f64)>,
) -> std::fmt::Result {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in samples {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// Encodes an info family (`_info` is appended to `name`; value 1) from an iterator of
/// (label set, informational labels); nothing is written when there are no samples.
pub fn info_family<L: EncodeLabelSet, I: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (L, I)>,
) -> std::fmt::Result {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Info)?;
    for (labels, info) in samples {
        m.encode_family(&labels)?.encode_info(&info)?;
    }
    Ok(())
}

/// Encodes a counter family (`_total` is appended to `name`) from an iterator.
pub fn counter_family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl Iterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in samples {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

/// Unix time in seconds as a float, for `_timestamp_seconds` gauges.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
