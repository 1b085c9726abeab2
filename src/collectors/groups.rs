//! Consumer groups: identity, members, status, and lag in offsets and seconds.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{cluster_labels, gauges, infos, with, Area, Labels};
use crate::config::Granularity;
use crate::lag::TimeLagMethod;
use crate::snapshot::{ClusterSnapshot, GroupPartitionView, GroupTopicView};
use crate::status::Status;

#[derive(Debug)]
pub struct GroupsArea;

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

impl Area for GroupsArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let mut info: Vec<(Labels, Labels)> = Vec::new();
        let mut members: Vec<(Labels, f64)> = Vec::new();
        let mut member_info: Vec<(Labels, Labels)> = Vec::new();
        let mut status: Vec<(Labels, f64)> = Vec::new();
        let mut methods: Vec<(Labels, f64)> = Vec::new();
        let mut method_info: Vec<(Labels, Labels)> = Vec::new();
        let mut topic_samples: Vec<Vec<(Labels, f64)>> = vec![Vec::new(); TOPIC_GAUGES.len()];
        let mut partition_samples: Vec<Vec<(Labels, f64)>> = vec![Vec::new(); PARTITION_GAUGES.len()];

        for c in clusters {
            let Some(groups) = &c.groups else { continue };
            let base = cluster_labels(c);
            let per_partition = c.granularity == Granularity::Partition;
            for g in groups.iter() {
                let gl = with(&base, [("group", Cow::Borrowed(g.name.as_str()))]);
                info.push((
                    gl.clone(),
                    vec![
                        ("type", Cow::Borrowed(g.group_type.as_str())),
                        ("state", Cow::Borrowed(g.state.as_str())),
                        ("assignor", Cow::Borrowed(g.assignor.as_str())),
                        (
                            "coordinator_id",
                            Cow::Owned(g.coordinator.map(|c| c.to_string()).unwrap_or_default()),
                        ),
                    ],
                ));
                members.push((gl.clone(), g.members.len() as f64));
                for m in &g.members {
                    member_info.push((
                        with(&gl, [("member_id", Cow::Borrowed(m.member_id.as_str()))]),
                        vec![
                            ("client_id", Cow::Borrowed(m.client_id.as_str())),
                            ("host", Cow::Borrowed(m.host.as_str())),
                            ("assigned_partitions", Cow::Owned(m.assignment.len().to_string())),
                        ],
                    ));
                }
                if let Some(s) = g.status {
                    for candidate in Status::ALL {
                        status.push((
                            with(&gl, [("status", Cow::Borrowed(candidate.as_str()))]),
                            if candidate == s { 1.0 } else { 0.0 },
                        ));
                    }
                }
                for t in &g.topics {
                    let tl = with(&gl, [("topic", Cow::Borrowed(t.topic.as_str()))]);
                    for (i, (_, _, _, f)) in TOPIC_GAUGES.iter().enumerate() {
                        if let Some(v) = f(t) {
                            topic_samples[i].push((tl.clone(), v));
                        }
                    }
                    for m in TimeLagMethod::ALL {
                        let n = t
                            .partitions
                            .iter()
                            .filter(|p| p.time_lag.map(|x| x.1) == Some(m))
                            .count();
                        methods.push((with(&tl, [("method", Cow::Borrowed(m.as_str()))]), n as f64));
                    }
                    if !per_partition {
                        continue;
                    }
                    for p in &t.partitions {
                        let pl = with(&tl, [("partition", Cow::Owned(p.partition.to_string()))]);
                        for (i, (_, _, _, f)) in PARTITION_GAUGES.iter().enumerate() {
                            if let Some(v) = f(p) {
                                partition_samples[i].push((pl.clone(), v));
                            }
                        }
                        if let Some((_, m)) = p.time_lag {
                            method_info.push((pl, vec![("method", Cow::Borrowed(m.as_str()))]));
                        }
                    }
                }
            }
        }

        infos(
            enc,
            "kafka_consumergroup",
            "Consumer group with its protocol type (classic or consumer), state, assignor and coordinator (value 1).",
            &info,
        )?;
        gauges(
            enc,
            "kafka_consumergroup_members",
            "Number of members of the group.",
            None,
            &members,
        )?;
        infos(
            enc,
            "kafka_consumergroup_member",
            "Member of a group with its client id, host and number of assigned partitions (value 1).",
            &member_info,
        )?;
        gauges(enc, "kafka_consumergroup_status", "Group status: 1 for the current status (ok, warn, stall, stop, rewind), 0 for the others. See docs/metrics.md for the rules.", None, &status)?;
        for (i, (name, help, unit, _)) in TOPIC_GAUGES.iter().enumerate() {
            gauges(enc, name, help, unit.clone(), &topic_samples[i])?;
        }
        gauges(enc, "kafka_consumergroup_topic_lag_seconds_partitions", "Partitions of the topic whose time lag was obtained by each method (caught_up, record, interpolated, lower_bound).", None, &methods)?;
        for (i, (name, help, unit, _)) in PARTITION_GAUGES.iter().enumerate() {
            gauges(enc, name, help, unit.clone(), &partition_samples[i])?;
        }
        infos(enc, "kafka_consumergroup_lag_seconds_method", "How the partition's time lag was obtained: caught_up, record (timestamp read), interpolated (high-watermark history) or lower_bound (value 1).", &method_info)
    }
}
