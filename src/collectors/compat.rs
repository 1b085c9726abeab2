//! The kafka_exporter compatibility output (`global.compat: [kafka_exporter]`): the family and
//! label names of danielqsj/kafka_exporter (v1.9.0) with its semantics, so that dashboards and
//! alerts written for it (Strimzi's kafka-exporter dashboard, Grafana's kafka-observ-lib) work
//! unchanged. Served on its own path ([`crate::config::Compat::path`]): several of the names
//! are ours too with other labels (`kafka_consumergroup_lag` has `group` in `/metrics`,
//! `consumergroup` here), and one output never holds one family with two label schemes.
//!
//! Everything is read from the same snapshots as `/metrics`. Every series carries the cluster's
//! base labels (`cluster` and its constant labels), as kafka_exporter's `--kafka.labels` adds
//! constant labels: that tells several clusters of one exporter apart, and every query of the
//! two dashboards aggregates it away. Per-partition families are served whatever
//! `lag.granularity` says: the dashboards group by partition.
//!
//! Semantics kept on purpose, because queries written for kafka_exporter depend on them: a
//! group's topic is reported once the group has committed an offset on any of its partitions,
//! and then on every partition of the topic; a partition without a commit has current offset
//! -1 and lag -1; the lag is the high watermark minus the committed offset, not clamped; the
//! per-topic lag sum leaves out partitions without a commit, but the current offset sum adds
//! their -1.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;

use super::{base_labels, gauge_family, Area, Base};
use crate::snapshot::{ClusterSnapshot, GroupView, PartitionView, TopicView};

#[derive(Debug)]
pub struct KafkaExporterArea;

type PartitionFn = fn(&PartitionView) -> Option<f64>;

fn flag(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

/// Per-partition gauges of every exported topic: name, help, value (absent when unknown).
const PARTITION_GAUGES: &[(&str, &str, PartitionFn)] = &[
    (
        "kafka_topic_partition_current_offset",
        "High watermark of the partition: offset of the next record to be written.",
        |p| p.high_watermark.map(|o| o as f64),
    ),
    (
        "kafka_topic_partition_oldest_offset",
        "Log start offset of the partition: offset of the oldest retained record.",
        |p| p.log_start.map(|o| o as f64),
    ),
    (
        "kafka_topic_partition_leader",
        "Broker id of the partition leader; absent when the partition has no leader.",
        |p| p.leader.map(f64::from),
    ),
    (
        "kafka_topic_partition_replicas",
        "Number of replicas assigned to the partition.",
        |p| Some(f64::from(p.replicas)),
    ),
    (
        "kafka_topic_partition_in_sync_replica",
        "Number of in-sync replicas of the partition.",
        |p| Some(f64::from(p.isr)),
    ),
    (
        "kafka_topic_partition_leader_is_preferred",
        "1 if the partition is led by its preferred (first assigned) replica, else 0 (also without a leader).",
        |p| flag(p.leader_is_preferred()),
    ),
    (
        "kafka_topic_partition_under_replicated_partition",
        "1 if fewer replicas of the partition are in sync than assigned, else 0.",
        |p| flag(p.under_replicated()),
    ),
];

/// One partition of a group's topic as kafka_exporter reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPartitionRow {
    pub partition: i32,
    /// The committed offset, -1 without a commit.
    pub current_offset: i64,
    /// High watermark minus committed offset, -1 without a commit; absent when the high
    /// watermark is unknown.
    pub lag: Option<i64>,
}

/// A group's topic as kafka_exporter reports it: every partition of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTopicRows<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partitions: Vec<GroupPartitionRow>,
}

impl GroupTopicRows<'_> {
    /// Sum of the current offsets, the -1 of partitions without a commit included.
    pub fn current_offset_sum(&self) -> i64 {
        self.partitions
            .iter()
            .fold(0, |s, p| s.saturating_add(p.current_offset))
    }

    /// Sum of the lags of the partitions with a commit.
    pub fn lag_sum(&self) -> i64 {
        self.partitions
            .iter()
            .filter(|p| p.current_offset >= 0)
            .filter_map(|p| p.lag)
            .fold(0, i64::saturating_add)
    }
}

/// The rows of a group: each topic it has committed on, with every partition of the topic.
/// `topics` are the cluster's topics by name; a topic that is not among them (another shard's)
/// is reported with the partitions the group knows of, its lag from the group's own view.
pub fn group_rows<'a>(g: &'a GroupView, topics: &HashMap<&str, &'a TopicView>) -> Vec<GroupTopicRows<'a>> {
    let mut out = Vec::new();
    for gt in &g.topics {
        if gt.partitions.iter().all(|p| p.committed.is_none()) {
            continue;
        }
        let high_watermarks: HashMap<i32, Option<i64>> = topics
            .get(gt.topic.as_str())
            .map(|t| t.partitions.iter().map(|p| (p.id, p.high_watermark)).collect())
            .unwrap_or_default();
        let mut rows: BTreeMap<i32, GroupPartitionRow> = high_watermarks
            .iter()
            .map(|(id, hw)| (*id, row(*id, None, *hw, None)))
            .collect();
        for p in &gt.partitions {
            let hw = high_watermarks.get(&p.partition).copied().flatten();
            rows.insert(p.partition, row(p.partition, p.committed, hw, p.lag.map(|l| l.lag)));
        }
        out.push(GroupTopicRows {
            group: &g.name,
            topic: &gt.topic,
            partitions: rows.into_values().collect(),
        });
    }
    out
}

/// A partition row from the committed offset (negative ones are "no commit" sentinels), the
/// high watermark, and the group's own (clamped) lag used only when the high watermark is
/// unknown here.
fn row(partition: i32, committed: Option<i64>, hw: Option<i64>, own_lag: Option<i64>) -> GroupPartitionRow {
    let committed = committed.filter(|c| *c >= 0);
    let lag = match (committed, hw) {
        (Some(c), Some(hw)) => Some(hw - c),
        (Some(_), None) => own_lag,
        (None, Some(_)) => Some(-1),
        (None, None) => own_lag.map(|_| -1),
    };
    GroupPartitionRow {
        partition,
        current_offset: committed.unwrap_or(-1),
        lag,
    }
}

/// `host:port`, with brackets around an IPv6 host, as kafka_exporter's broker address.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Area for KafkaExporterArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        encode_brokers(clusters, enc)?;
        let with_topics: Vec<(Base, &[TopicView])> = clusters
            .iter()
            .filter_map(|c| c.topics.as_ref().map(|t| (base_labels(c), t.as_slice())))
            .collect();
        gauge_family(
            enc,
            "kafka_topic_partitions",
            "Number of partitions of the topic.",
            None,
            with_topics.iter().flat_map(|(base, topics)| {
                topics.iter().map(move |t| {
                    (
                        (base.as_slice(), [("topic", t.name.as_str())]),
                        t.partitions.len() as f64,
                    )
                })
            }),
        )?;
        for (name, help, f) in PARTITION_GAUGES {
            let samples = with_topics.iter().flat_map(|(base, topics)| {
                topics.iter().flat_map(move |t| {
                    t.partitions.iter().filter_map(move |p| {
                        let labels = (base.as_slice(), ([("topic", t.name.as_str())], [("partition", p.id)]));
                        f(p).map(|v| (labels, v))
                    })
                })
            });
            gauge_family(enc, name, help, None, samples)?;
        }
        encode_groups(clusters, enc)
    }
}

/// `kafka_brokers` and `kafka_broker_info`: cluster-wide, so from shard 0 only.
fn encode_brokers(clusters: &[Arc<ClusterSnapshot>], enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let described: Vec<(Base, Vec<(String, String)>)> = clusters
        .iter()
        .filter(|c| c.shard.owns_cluster_wide())
        .filter_map(|c| {
            let d = c.cluster.as_deref()?;
            let brokers = d
                .brokers
                .iter()
                .map(|b| (b.id.to_string(), address(&b.host, b.port)))
                .collect();
            Some((base_labels(c), brokers))
        })
        .collect();
    gauge_family(
        enc,
        "kafka_brokers",
        "Number of brokers registered in the cluster.",
        None,
        described.iter().map(|(base, b)| (base.as_slice(), b.len() as f64)),
    )?;
    gauge_family(
        enc,
        "kafka_broker_info",
        "Registered broker with its id and advertised host:port (value 1).",
        None,
        described.iter().flat_map(|(base, brokers)| {
            brokers.iter().map(move |(id, addr)| {
                (
                    (base.as_slice(), [("id", id.as_str()), ("address", addr.as_str())]),
                    1.0,
                )
            })
        }),
    )
}

/// The consumer group families, from each cluster's groups and topics.
fn encode_groups(clusters: &[Arc<ClusterSnapshot>], enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let mut groups: Vec<(Base, &[GroupView])> = Vec::new();
    let mut rows: Vec<(Base, Vec<GroupTopicRows>)> = Vec::new();
    for c in clusters {
        let Some(gs) = c.groups.as_ref() else { continue };
        let topics: HashMap<&str, &TopicView> = c
            .topics
            .iter()
            .flat_map(|t| t.iter())
            .map(|t| (t.name.as_str(), t))
            .collect();
        let r = gs.iter().flat_map(|g| group_rows(g, &topics)).collect();
        groups.push((base_labels(c), gs.as_slice()));
        rows.push((base_labels(c), r));
    }
    gauge_family(
        enc,
        "kafka_consumergroup_members",
        "Number of members of the consumer group.",
        None,
        groups.iter().flat_map(|(base, gs)| {
            gs.iter().map(move |g| {
                (
                    (base.as_slice(), [("consumergroup", g.name.as_str())]),
                    g.members.len() as f64,
                )
            })
        }),
    )?;
    let topic_rows = || {
        rows.iter().flat_map(|(base, rs)| {
            rs.iter()
                .map(move |r| (base.as_slice(), [("consumergroup", r.group), ("topic", r.topic)], r))
        })
    };
    let partition_rows = || {
        topic_rows().flat_map(|(base, names, r)| {
            r.partitions
                .iter()
                .map(move |p| ((base, (names, [("partition", p.partition)])), p))
        })
    };
    gauge_family(
        enc,
        "kafka_consumergroup_current_offset",
        "Offset committed by the group on the partition; -1 without a commit.",
        None,
        partition_rows().map(|(l, p)| (l, p.current_offset as f64)),
    )?;
    gauge_family(
        enc,
        "kafka_consumergroup_current_offset_sum",
        "Sum of the group's current offsets over the topic's partitions (the -1 of partitions without a commit included).",
        None,
        topic_rows().map(|(base, names, r)| ((base, names), r.current_offset_sum() as f64)),
    )?;
    gauge_family(
        enc,
        "kafka_consumergroup_lag",
        "High watermark minus the group's committed offset on the partition; -1 without a commit.",
        None,
        partition_rows().filter_map(|(l, p)| p.lag.map(|v| (l, v as f64))),
    )?;
    gauge_family(
        enc,
        "kafka_consumergroup_lag_sum",
        "Sum of the group's lag over the topic's partitions with a commit.",
        None,
        topic_rows().map(|(base, names, r)| ((base, names), r.lag_sum() as f64)),
    )
}

#[cfg(test)]
#[path = "compat_tests.rs"]
mod tests;
