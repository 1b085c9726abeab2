//! Partition and replication health and partition offsets, per partition (granularity
//! `partition`), per topic and per cluster.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;

use super::{base_labels, gauge_family, Area, Base};
use crate::config::Granularity;
use crate::families::Selection;
use crate::snapshot::{ClusterSnapshot, ClusterTotals, PartitionView, TopicView};

#[derive(Debug)]
pub struct PartitionsArea {
    pub selection: Arc<Selection>,
}

type PartitionFn = fn(&PartitionView) -> Option<f64>;

fn flag(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

fn offset(o: Option<i64>) -> Option<f64> {
    o.map(|v| v as f64)
}

/// Per-partition gauges: name, help, value (absent when unknown).
const PARTITION_GAUGES: &[(&str, &str, PartitionFn)] = &[
    ("kafka_partition_leader", "Broker id of the partition leader; absent when the partition is offline.", |p| p.leader.map(f64::from)),
    ("kafka_partition_replicas", "Number of replicas assigned to the partition.", |p| Some(f64::from(p.replicas))),
    ("kafka_partition_in_sync_replicas", "Number of in-sync replicas of the partition.", |p| Some(f64::from(p.isr))),
    ("kafka_partition_under_replicated", "1 if fewer replicas are in sync than assigned, else 0.", |p| flag(p.under_replicated())),
    ("kafka_partition_under_min_isr", "1 if fewer replicas are in sync than the topic's min.insync.replicas (acks=all writes fail), else 0.", |p| p.under_min_isr().and_then(flag)),
    ("kafka_partition_offline", "1 if the partition has no leader, else 0.", |p| flag(p.offline())),
    ("kafka_partition_eligible_leader_replicas", "Size of the partition's eligible leader replica set (KIP-966): replicas that left the ISR while it was below min.insync.replicas and can still be elected cleanly. Absent where the cluster keeps no ELR.", |p| p.elr.map(f64::from)),
    ("kafka_partition_last_known_elr", "Size of the partition's last known ELR (KIP-966): the eligible replicas known when the last one was lost. Absent where the cluster keeps no ELR.", |p| p.last_known_elr.map(f64::from)),
    ("kafka_partition_leader_is_preferred", "1 if the leader is the preferred (first assigned) replica, else 0.", |p| flag(p.leader_is_preferred())),
    ("kafka_partition_log_start_offset", "Offset of the oldest retained record (ListOffsets earliest).", |p| offset(p.log_start)),
    ("kafka_partition_high_watermark", "High watermark: offset of the next record to be written (ListOffsets latest).", |p| offset(p.high_watermark)),
    ("kafka_partition_last_stable_offset", "Last stable offset (ListOffsets latest, read_committed): below the first open transaction.", |p| offset(p.last_stable)),
    ("kafka_partition_open_transaction_offsets", "High watermark minus last stable offset: offsets held back by open transactions. Stays > 0 for a stuck transaction.", |p| offset(p.open_transaction_gap())),
];

/// True when the partition has a problem that its problems-only families show (see
/// [`crate::families::Preset::Problems`]): replication short of what is assigned or of
/// min.insync.replicas, no leader or not the preferred one, eligible leader replicas in use, or
/// offsets held back by an open transaction.
pub fn has_problem(p: &PartitionView) -> bool {
    p.under_replicated()
        || p.offline()
        || !p.leader_is_preferred()
        || p.under_min_isr() == Some(true)
        || p.elr.is_some_and(|n| n > 0)
        || p.last_known_elr.is_some_and(|n| n > 0)
        || p.open_transaction_gap().is_some_and(|g| g > 0)
}

type TopicFn = fn(&TopicView) -> Option<f64>;

fn count(t: &TopicView, f: impl Fn(&PartitionView) -> bool) -> Option<f64> {
    Some(t.partitions.iter().filter(|p| f(p)).count() as f64)
}

fn sum(t: &TopicView, f: impl Fn(&PartitionView) -> Option<i64>) -> Option<f64> {
    let values: Option<Vec<i64>> = t.partitions.iter().map(f).collect();
    values.map(|v| v.iter().map(|x| *x as f64).sum())
}

/// Per-topic gauges. Sums are absent unless every partition's value is known.
const TOPIC_GAUGES: &[(&str, &str, TopicFn)] = &[
    (
        "kafka_topic_under_replicated_partitions",
        "Partitions of the topic with fewer in-sync than assigned replicas.",
        |t| count(t, |p| p.under_replicated()),
    ),
    (
        "kafka_topic_under_min_isr_partitions",
        "Partitions of the topic with fewer in-sync replicas than min.insync.replicas.",
        |t| {
            if t.partitions.iter().any(|p| p.under_min_isr().is_none()) {
                None
            } else {
                count(t, |p| p.under_min_isr() == Some(true))
            }
        },
    ),
    (
        "kafka_topic_under_min_isr_with_elr_partitions",
        "Partitions of the topic whose in-sync plus eligible leader replicas are fewer than min.insync.replicas (KIP-966): no clean election restores acks=all writes. Absent where the cluster keeps no ELR.",
        |t| {
            if t.partitions.iter().any(|p| p.under_min_isr_with_elr().is_none()) {
                None
            } else {
                count(t, |p| p.under_min_isr_with_elr() == Some(true))
            }
        },
    ),
    (
        "kafka_topic_offline_partitions",
        "Partitions of the topic without a leader.",
        |t| count(t, |p| p.offline()),
    ),
    (
        "kafka_topic_non_preferred_leader_partitions",
        "Partitions of the topic led by a replica other than the preferred one.",
        |t| count(t, |p| !p.offline() && !p.leader_is_preferred()),
    ),
    (
        "kafka_topic_min_insync_replicas",
        "Effective min.insync.replicas of the topic.",
        |t| t.settings.as_ref()?.min_insync_replicas.map(f64::from),
    ),
    (
        "kafka_topic_retention_seconds",
        "Effective retention.ms of the topic in seconds; -1 for unlimited.",
        |t| {
            t.settings
                .as_ref()?
                .retention_ms
                .map(|r| if r < 0 { -1.0 } else { r as f64 / 1000.0 })
        },
    ),
    (
        "kafka_topic_high_watermarks",
        "Sum of the high watermarks of the topic's partitions: its rate is the produce rate in records/s.",
        |t| sum(t, |p| p.high_watermark),
    ),
    (
        "kafka_topic_log_start_offsets",
        "Sum of the log start offsets of the topic's partitions.",
        |t| sum(t, |p| p.log_start),
    ),
    (
        "kafka_topic_open_transaction_offsets",
        "Sum over the topic's partitions of high watermark minus last stable offset.",
        |t| sum(t, |p| p.open_transaction_gap()),
    ),
];

type TotalsFn = fn(&ClusterTotals) -> usize;

/// Per-cluster totals over all exported partitions (from shard 0 when sharded).
const CLUSTER_GAUGES: &[(&str, &str, TotalsFn)] = &[
    (
        "kafka_cluster_under_replicated_partitions",
        "Partitions with fewer in-sync than assigned replicas.",
        |t| t.under_replicated,
    ),
    (
        "kafka_cluster_offline_partitions",
        "Partitions without a leader.",
        |t| t.offline,
    ),
    (
        "kafka_cluster_non_preferred_leader_partitions",
        "Partitions led by a replica other than the preferred one.",
        |t| t.non_preferred_leader,
    ),
];

impl Area for PartitionsArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let snapshots: Vec<(Base, &ClusterSnapshot, &[TopicView])> = clusters
            .iter()
            .filter_map(|c| c.topics.as_ref().map(|t| (base_labels(c), c.as_ref(), t.as_slice())))
            .collect();

        for (name, help, f) in CLUSTER_GAUGES {
            let samples = snapshots.iter().filter_map(|(base, c, _)| {
                let totals = c.totals.as_ref().filter(|_| c.shard.owns_cluster_wide())?;
                Some((base.as_slice(), f(totals) as f64))
            });
            gauge_family(enc, name, help, None, samples)?;
        }

        for (name, help, f) in TOPIC_GAUGES {
            let samples = snapshots.iter().flat_map(|(base, _, topics)| {
                topics
                    .iter()
                    .filter_map(move |t| f(t).map(|v| ((base.as_slice(), [("topic", t.name.as_str())]), v)))
            });
            gauge_family(enc, name, help, None, samples)?;
        }

        for (name, help, f) in PARTITION_GAUGES {
            if !self.selection.serves(name) {
                continue;
            }
            let every = self.selection.full(name);
            let samples = snapshots
                .iter()
                .filter(|(_, c, _)| c.granularity == Granularity::Partition)
                .flat_map(|(base, _, topics)| {
                    topics.iter().flat_map(move |t| {
                        t.partitions
                            .iter()
                            .filter(move |p| every || has_problem(p))
                            .filter_map(move |p| {
                                let labels = (base.as_slice(), ([("topic", t.name.as_str())], [("partition", p.id)]));
                                f(p).map(|v| (labels, v))
                            })
                    })
                });
            gauge_family(enc, name, help, None, samples)?;
        }
        Ok(())
    }
}
