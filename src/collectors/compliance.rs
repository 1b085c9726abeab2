//! ADR compliance: topic classes, required vs actual retention, replay window, per-rule
//! verdicts and partition count changes.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{base_labels, counter_family, gauge_family, info_family, unix_seconds, Area, Base};
use crate::config::Granularity;
use crate::families::Selection;
use crate::policy::{TopicCompliance, Verdict};
use crate::snapshot::{ClusterSnapshot, TopicView};

#[derive(Debug)]
pub struct ComplianceArea {
    pub selection: Arc<Selection>,
}

type TopicFn = fn(&TopicView, &TopicCompliance) -> Option<f64>;

/// Per-topic gauges in seconds, from the topic and its compliance.
const TOPIC_SECONDS: &[(&str, &str, TopicFn)] = &[
    (
        "kafka_topic_required_retention",
        "Retention the topic's class requires.",
        |_, c| c.required_retention_seconds,
    ),
    (
        "kafka_topic_replay_window",
        "Effective replay window: age of the oldest retained record, minimum over the topic's non-empty partitions.",
        |_, c| c.replay_window_seconds,
    ),
];

impl Area for ComplianceArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let evaluated: Vec<(Base, &ClusterSnapshot)> = clusters
            .iter()
            .filter(|c| c.topics.is_some() && c.compliance.is_some())
            .map(|c| (base_labels(c), c.as_ref()))
            .collect();
        // Every topic with its verdicts and whether its cluster is exported per partition.
        let topics = || {
            evaluated.iter().flat_map(|(b, c)| {
                let (topics, compliance) = (
                    c.topics.as_deref().map_or(&[][..], |v| v.as_slice()),
                    c.compliance.as_deref().map_or(&[][..], |v| v.as_slice()),
                );
                let per_partition = c.granularity == Granularity::Partition;
                topics
                    .iter()
                    .zip(compliance)
                    .map(move |(t, tc)| ((b.as_slice(), [("topic", t.name.as_str())]), t, tc, per_partition))
            })
        };
        let classes = topics().map(|(l, _, tc, _)| (l, [("class", tc.class.as_str())]));
        info_family(enc, "kafka_topic_compliance_class", "Policy class of the topic by naming convention: a class name, `unmatched` (no convention) or `exempt` (value 1).", classes)?;
        for (name, help, f) in TOPIC_SECONDS {
            let samples = topics().filter_map(|(l, t, tc, _)| f(t, tc).map(|v| (l, v)));
            gauge_family(enc, name, help, Some(&Unit::Seconds), samples)?;
        }
        let partition_window = topics()
            .filter(|(.., per_partition)| *per_partition)
            .flat_map(|(l, t, _, _)| {
                t.partitions
                    .iter()
                    .filter_map(move |p| p.replay_window.map(|w| ((l, [("partition", p.id)]), w)))
            });
        gauge_family(
            enc,
            "kafka_partition_replay_window",
            "Age of the oldest retained record of the partition (the record at the log start offset).",
            Some(&Unit::Seconds),
            partition_window,
        )?;
        // By default only the violations (problems only); every verdict when opted in.
        let passes_too = self.selection.full("kafka_topic_compliance");
        let verdicts = topics().flat_map(|(l, _, tc, _)| {
            tc.rules.iter().filter_map(move |r| {
                let v = match r.verdict {
                    Verdict::Pass if passes_too => 1.0,
                    Verdict::Fail => 0.0,
                    Verdict::Pass | Verdict::Unknown => return None,
                };
                Some(((l, [("rule", r.rule.as_str())]), v))
            })
        });
        gauge_family(enc, "kafka_topic_compliance", "1 if the topic passes the policy rule (served when opted in), 0 if it violates it; absent while the facts are unknown or the rule does not apply.", None, verdicts)?;
        let changes = topics().map(|(l, t, _, _)| (l, t.partition_changes));
        counter_family(
            enc,
            "kafka_topic_partition_count_changes",
            "Partition count changes of the topic observed by this exporter process.",
            None,
            changes,
        )?;
        let last_change = topics().filter_map(|(l, t, _, _)| t.last_partition_change.map(|ts| (l, unix_seconds(ts))));
        gauge_family(enc, "kafka_topic_partition_count_last_change_timestamp", "Unix time at which a partition count change of the topic was observed (kept across restarts with compliance.state_dir).", Some(&Unit::Seconds), last_change)
    }
}
