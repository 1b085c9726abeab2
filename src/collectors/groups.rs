//! Consumer groups: identity, members, status, and lag in offsets and seconds.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::registry::Unit;

use super::{base_labels, gauge_family, info_family, served_name, Area, Base};
use crate::config::Granularity;
use crate::families::Selection;
use crate::lag::TimeLagMethod;
use crate::snapshot::{ClusterSnapshot, GroupPartitionView, GroupTopicView, GroupView};
use crate::status::Status;

#[derive(Debug)]
pub struct GroupsArea {
    pub selection: Arc<Selection>,
}

type TopicFn = fn(&GroupTopicView) -> Option<f64>;
type PartitionFn = fn(&GroupPartitionView) -> Option<f64>;

/// Per group/topic gauges: name, help, unit, value.
const TOPIC_GAUGES: &[(&str, &str, Option<Unit>, TopicFn)] = &[
    ("kafka_consumergroup_topic_lag", "Sum of the group's offset lag over the topic's partitions.", None, |t| t.lag_sum().map(|v| v as f64)),
    ("kafka_consumergroup_topic_lag_max", "Largest offset lag of the group on any partition of the topic.", None, |t| t.lag_max().map(|v| v as f64)),
    ("kafka_consumergroup_topic_lag", "Age of the oldest record of the topic the group has not consumed (max over partitions); 0 when caught up.", Some(Unit::Seconds), |t| t.time_lag_max()),
    ("kafka_consumergroup_topic_lost_records", "Records deleted (retention or DeleteRecords) before the group consumed them: log start offset minus committed offset, summed over partitions.", None, |t| t.lost_sum().map(|v| v as f64)),
    ("kafka_consumergroup_topic_uncommitted_partitions", "Partitions assigned to the group's members without a committed offset (their lag is measured from the log start offset).", None, |t| Some(t.uncommitted() as f64)),
    ("kafka_consumergroup_topic_retention_usage_ratio", "Time lag divided by the topic's retention.ms: at 1 the oldest unconsumed records are due for deletion. Absent for unlimited or compact-only retention.", None, |t| t.retention_usage()),
];

/// Per group/topic/partition gauges (granularity `partition`).
const PARTITION_GAUGES: &[(&str, &str, Option<Unit>, PartitionFn)] = &[
    ("kafka_consumergroup_lag", "Offset lag: high watermark minus committed offset (never negative); from the log start offset when nothing is committed.", None, |p| p.lag.map(|l| l.lag as f64)),
    ("kafka_consumergroup_committed_offset", "Offset committed by the group; absent when the partition has no commit.", None, |p| p.committed.map(|c| c as f64)),
    ("kafka_consumergroup_lag", "Time lag: age of the oldest record the group has not consumed; 0 when caught up.", Some(Unit::Seconds), |p| p.time_lag.map(|t| t.0)),
];

/// A cluster's base labels, snapshot and groups.
type ClusterGroups<'a> = (Base<'a>, &'a ClusterSnapshot, &'a [GroupView]);

impl Area for GroupsArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let snapshots: Vec<ClusterGroups> = clusters
            .iter()
            .filter_map(|c| c.groups.as_ref().map(|g| (base_labels(c), c.as_ref(), g.as_slice())))
            .collect();
        // Every group with its cluster's base labels.
        let groups = || {
            snapshots
                .iter()
                .flat_map(|(base, _, groups)| groups.iter().map(move |g| (base.as_slice(), g)))
        };
        // Every group/topic.
        let topics = || groups().flat_map(|(base, g)| g.topics.iter().map(move |t| (base, g, t)));
        // Every group/topic/partition of the clusters exported per partition.
        let partitions = || {
            snapshots
                .iter()
                .filter(|(_, c, _)| c.granularity == Granularity::Partition)
                .flat_map(|(base, _, groups)| groups.iter().map(move |g| (base.as_slice(), g)))
                .flat_map(|(base, g)| g.topics.iter().map(move |t| (base, g, t)))
                .flat_map(|(base, g, t)| {
                    t.partitions.iter().map(move |p| {
                        let labels = (
                            base,
                            (
                                [("group", g.name.as_str()), ("topic", t.topic.as_str())],
                                [("partition", p.partition)],
                            ),
                        );
                        (labels, p)
                    })
                })
        };

        let sel = self.selection.as_ref();
        encode_groups(enc, sel, &groups)?;
        encode_topics(enc, sel, &topics)?;
        encode_partitions(enc, sel, &partitions)
    }
}

/// Group identity, members and status.
fn encode_groups<'a, I>(enc: &mut DescriptorEncoder, sel: &Selection, groups: &impl Fn() -> I) -> std::fmt::Result
where
    I: Iterator<Item = (&'a [(&'a str, &'a str)], &'a GroupView)>,
{
    info_family(
        enc,
        "kafka_consumergroup",
        "Consumer group with its protocol type (classic or consumer), state, assignor and coordinator (value 1).",
        groups().map(|(base, g)| {
            let info = (
                [
                    ("type", g.group_type.as_str()),
                    ("state", g.state.as_str()),
                    ("assignor", g.assignor.as_str()),
                ],
                [("coordinator_id", g.coordinator)],
            );
            ((base, [("group", g.name.as_str())]), info)
        }),
    )?;
    gauge_family(
        enc,
        "kafka_consumergroup_members",
        "Number of members of the group.",
        None,
        groups().map(|(base, g)| ((base, [("group", g.name.as_str())]), g.members.len() as f64)),
    )?;
    info_family(
        enc,
        "kafka_consumergroup_member",
        "Member of a group with its client id, host and number of assigned partitions (value 1).",
        groups().flat_map(|(base, g)| {
            g.members.iter().map(move |m| {
                let labels = (base, [("group", g.name.as_str()), ("member_id", m.member_id.as_str())]);
                let info = (
                    [("client_id", m.client_id.as_str()), ("host", m.host.as_str())],
                    [("assigned_partitions", m.assignment.len())],
                );
                (labels, info)
            })
        }),
    )?;
    // By default only the current status (value 1); opted in, every status with 0 for the others.
    let every_status = sel.full("kafka_consumergroup_status");
    gauge_family(
        enc,
        "kafka_consumergroup_status",
        "Group status: 1 for the current status (ok, warn, stall, stop, rewind); the others are 0 when opted in, else absent. See docs/metrics.md for the rules.",
        None,
        groups().flat_map(|(base, g)| {
            g.status.into_iter().flat_map(move |s| {
                Status::ALL
                    .into_iter()
                    .filter(move |candidate| every_status || *candidate == s)
                    .map(move |candidate| {
                        let labels = (base, [("group", g.name.as_str()), ("status", candidate.as_str())]);
                        (labels, if candidate == s { 1.0 } else { 0.0 })
                    })
            })
        }),
    )
}

/// Lag per group and topic.
fn encode_topics<'a, I>(enc: &mut DescriptorEncoder, sel: &Selection, topics: &impl Fn() -> I) -> std::fmt::Result
where
    I: Iterator<Item = (&'a [(&'a str, &'a str)], &'a GroupView, &'a GroupTopicView)>,
{
    for (name, help, unit, f) in TOPIC_GAUGES {
        let served = served_name(name, unit.as_ref());
        if !sel.serves(&served) {
            continue;
        }
        // Counts of problems (lost records, uncommitted partitions) are served only where not
        // 0 unless opted in; the other families are complete anyway.
        let zeros_too = sel.full(&served);
        let samples = topics().filter_map(move |(base, g, t)| {
            f(t).filter(|v| zeros_too || *v != 0.0)
                .map(|v| ((base, [("group", g.name.as_str()), ("topic", t.topic.as_str())]), v))
        });
        gauge_family(enc, name, help, unit.as_ref(), samples)?;
    }
    if !sel.serves("kafka_consumergroup_topic_lag_seconds_partitions") {
        return Ok(());
    }
    gauge_family(
        enc,
        "kafka_consumergroup_topic_lag_seconds_partitions",
        "Partitions of the topic whose time lag was obtained by each method (caught_up, record, interpolated, lower_bound).",
        None,
        topics().flat_map(|(base, g, t)| {
            TimeLagMethod::ALL.into_iter().map(move |m| {
                let n = t.partitions.iter().filter(|p| p.time_lag.map(|x| x.1) == Some(m)).count();
                let labels = (
                    base,
                    [
                        ("group", g.name.as_str()),
                        ("topic", t.topic.as_str()),
                        ("method", m.as_str()),
                    ],
                );
                (labels, n as f64)
            })
        }),
    )
}

/// Lag per group, topic and partition (granularity `partition`).
fn encode_partitions<'a, L, I>(
    enc: &mut DescriptorEncoder,
    sel: &Selection,
    partitions: &impl Fn() -> I,
) -> std::fmt::Result
where
    L: EncodeLabelSet,
    I: Iterator<Item = (L, &'a GroupPartitionView)>,
{
    for (name, help, unit, f) in PARTITION_GAUGES {
        if !sel.serves(&served_name(name, unit.as_ref())) {
            continue;
        }
        let samples = partitions().filter_map(|(labels, p)| f(p).map(|v| (labels, v)));
        gauge_family(enc, name, help, unit.as_ref(), samples)?;
    }
    if !sel.serves("kafka_consumergroup_lag_seconds_method_info") {
        return Ok(());
    }
    info_family(
        enc,
        "kafka_consumergroup_lag_seconds_method",
        "How the partition's time lag was obtained: caught_up, record (timestamp read), interpolated (high-watermark history) or lower_bound (value 1).",
        partitions().filter_map(|(labels, p)| p.time_lag.map(|(_, m)| (labels, [("method", m.as_str())]))),
    )
}
