//! ADR compliance: topic classes, required vs actual retention, replay window, per-rule
//! verdicts and partition count changes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{cluster_labels, counters, gauges, infos, unix_seconds, with, Area, Labels};
use crate::config::Granularity;
use crate::policy::Verdict;
use crate::snapshot::ClusterSnapshot;

#[derive(Debug)]
pub struct ComplianceArea;

impl Area for ComplianceArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let mut class_info: Vec<(Labels, Labels)> = Vec::new();
        let mut required: Vec<(Labels, f64)> = Vec::new();
        let mut window: Vec<(Labels, f64)> = Vec::new();
        let mut partition_window: Vec<(Labels, f64)> = Vec::new();
        let mut verdicts: Vec<(Labels, f64)> = Vec::new();
        let mut changes: Vec<(Labels, u64)> = Vec::new();
        let mut last_change: Vec<(Labels, f64)> = Vec::new();

        for c in clusters {
            let (Some(topics), Some(compliance)) = (&c.topics, &c.compliance) else {
                continue;
            };
            let base = cluster_labels(c);
            for (t, tc) in topics.iter().zip(compliance.iter()) {
                let tl = with(&base, [("topic", Cow::Borrowed(t.name.as_str()))]);
                class_info.push((tl.clone(), vec![("class", Cow::Borrowed(tc.class.as_str()))]));
                if let Some(r) = tc.required_retention_seconds {
                    required.push((tl.clone(), r));
                }
                if let Some(w) = tc.replay_window_seconds {
                    window.push((tl.clone(), w));
                }
                if c.granularity == Granularity::Partition {
                    for p in &t.partitions {
                        if let Some(w) = p.replay_window {
                            partition_window.push((with(&tl, [("partition", Cow::Owned(p.id.to_string()))]), w));
                        }
                    }
                }
                for r in &tc.rules {
                    let v = match r.verdict {
                        Verdict::Pass => 1.0,
                        Verdict::Fail => 0.0,
                        Verdict::Unknown => continue,
                    };
                    verdicts.push((with(&tl, [("rule", Cow::Borrowed(r.rule.as_str()))]), v));
                }
                changes.push((tl.clone(), t.partition_changes));
                if let Some(ts) = t.last_partition_change {
                    last_change.push((tl, unix_seconds(ts)));
                }
            }
        }

        infos(enc, "kafka_topic_compliance_class", "Policy class of the topic by naming convention: a class name, `unmatched` (no convention) or `exempt` (value 1).", &class_info)?;
        gauges(
            enc,
            "kafka_topic_required_retention",
            "Retention the topic's class requires.",
            Some(Unit::Seconds),
            &required,
        )?;
        gauges(enc, "kafka_topic_replay_window", "Effective replay window: age of the oldest retained record, minimum over the topic's non-empty partitions.", Some(Unit::Seconds), &window)?;
        gauges(
            enc,
            "kafka_partition_replay_window",
            "Age of the oldest retained record of the partition (the record at the log start offset).",
            Some(Unit::Seconds),
            &partition_window,
        )?;
        gauges(enc, "kafka_topic_compliance", "1 if the topic passes the policy rule, 0 if it violates it; absent while the facts are unknown or the rule does not apply.", None, &verdicts)?;
        counters(
            enc,
            "kafka_topic_partition_count_changes",
            "Partition count changes of the topic observed by this exporter process.",
            None,
            &changes,
        )?;
        gauges(enc, "kafka_topic_partition_count_last_change_timestamp", "Unix time at which a partition count change of the topic was observed (kept across restarts with compliance.state_dir).", Some(Unit::Seconds), &last_change)
    }
}
