//! Schema Registry: availability and latency of the registry, its subject and schema
//! inventory, compatibility, the cross-check with the cluster's topics and sampled framing.
//!
//! Registry snapshots change on the registry's own interval, not the Kafka cycle, so this area
//! is encoded on every scrape from the newest registry snapshot of each cluster (it is small:
//! per-subject series only with `subject_labels`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{cluster_labels, counters, gauges, infos, unix_seconds, with, Area, Labels};
use crate::registry::wire::Outcome;
use crate::registry::{Operation, RegistrySlot, RegistrySnapshot};
use crate::snapshot::ClusterSnapshot;

/// The registry snapshots by cluster name, of the clusters that watch a registry.
#[derive(Debug)]
pub struct RegistryArea {
    pub registries: Vec<(String, RegistrySlot)>,
}

impl RegistryArea {
    fn slot(&self, cluster: &str) -> Option<&RegistrySlot> {
        self.registries.iter().find(|(n, _)| n == cluster).map(|(_, s)| s)
    }
}

impl Area for RegistryArea {
    fn scrape_time(&self) -> bool {
        true
    }

    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let registries: Vec<(&ClusterSnapshot, Arc<RegistrySnapshot>)> = clusters
            .iter()
            .filter_map(|c| self.slot(&c.name).map(|slot| (c.as_ref(), slot.load_full())))
            .collect();
        encode(&registries, enc)
    }
}

/// Encodes the registry families of each (cluster, registry snapshot).
pub fn encode(
    registries: &[(&ClusterSnapshot, Arc<RegistrySnapshot>)],
    enc: &mut DescriptorEncoder,
) -> std::fmt::Result {
    let mut up = Vec::new();
    let mut last_success = Vec::new();
    let mut duration = Vec::new();
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut subjects = Vec::new();
    let mut versions = Vec::new();
    let mut subject_versions = Vec::new();
    let mut latest = Vec::new();
    let mut compatibility: Vec<(Labels, Labels)> = Vec::new();
    let mut mode: Vec<(Labels, Labels)> = Vec::new();
    let mut by_level = Vec::new();
    let mut unresolved = Vec::new();
    let mut contexts = Vec::new();
    let mut missing = Vec::new();
    let mut missing_count = Vec::new();
    let mut orphans = Vec::new();
    let mut sampled = Vec::new();
    let mut ratio = Vec::new();

    for (c, r) in registries {
        let base = cluster_labels(c);
        up.push((base.clone(), if r.up { 1.0 } else { 0.0 }));
        if let Some(t) = r.last_success {
            last_success.push((base.clone(), unix_seconds(t)));
        }
        for op in Operation::ALL {
            let st = r.operations.get(&op).cloned().unwrap_or_default();
            let l = with(&base, [("operation", Cow::Borrowed(op.as_str()))]);
            requests.push((l.clone(), st.requests_total));
            errors.push((l.clone(), st.errors_total));
            if let Some(d) = st.last_duration {
                duration.push((l, d.as_secs_f64()));
            }
        }
        if let Some(inv) = &r.inventory {
            let state = |s: &'static str| with(&base, [("state", Cow::Borrowed(s))]);
            subjects.push((state("live"), inv.subjects_live as f64));
            subjects.push((state("soft_deleted"), inv.subjects_soft_deleted as f64));
            if let Some(n) = inv.versions_live {
                versions.push((state("live"), n as f64));
            }
            if let Some(n) = inv.versions_soft_deleted {
                versions.push((state("soft_deleted"), n as f64));
            }
            if r.subject_labels {
                for (s, n) in &inv.subject_versions {
                    subject_versions.push((with(&base, [("subject", Cow::Borrowed(s.as_str()))]), *n as f64));
                }
            }
            for (t, n) in &inv.latest_types {
                latest.push((with(&base, [("type", Cow::Borrowed(t.as_str()))]), *n as f64));
            }
            if let Some(level) = &inv.global_compatibility {
                compatibility.push((base.clone(), vec![("level", Cow::Borrowed(level.as_str()))]));
            }
            if let Some(m) = &inv.mode {
                mode.push((base.clone(), vec![("mode", Cow::Borrowed(m.as_str()))]));
            }
            for (level, n) in &inv.by_compatibility {
                by_level.push((with(&base, [("level", Cow::Borrowed(level.as_str()))]), *n as f64));
            }
            unresolved.push((base.clone(), inv.unresolved as f64));
            if let Some(n) = inv.contexts {
                contexts.push((base.clone(), n as f64));
            }
        }
        if let Some(x) = &r.cross_check {
            for (topic, m) in &x.topics {
                missing.push((
                    with(&base, [("topic", Cow::Borrowed(topic.as_str()))]),
                    if *m { 1.0 } else { 0.0 },
                ));
            }
            missing_count.push((base.clone(), x.missing() as f64));
            orphans.push((base.clone(), x.orphans.len() as f64));
        }
        if let Some(samples) = &r.samples {
            for (topic, counts) in samples.iter() {
                let tl = with(&base, [("topic", Cow::Borrowed(topic.as_str()))]);
                for o in Outcome::ALL {
                    sampled.push((
                        with(&tl, [("framing", Cow::Borrowed(o.as_str()))]),
                        counts.get(o) as f64,
                    ));
                }
                if let Some(v) = counts.registered_ratio() {
                    ratio.push((tl, v));
                }
            }
        }
    }

    gauges(
        enc,
        "kafka_schema_registry_up",
        "1 if the most recent poll of the cluster's Schema Registry read every listing, else 0.",
        None,
        &up,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_last_success_timestamp",
        "Unix time at which the most recent successful registry poll ended.",
        Some(Unit::Seconds),
        &last_success,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_request_duration",
        "Slowest request of the operation in the most recent poll that made one.",
        Some(Unit::Seconds),
        &duration,
    )?;
    counters(
        enc,
        "kafka_schema_registry_requests",
        "Requests made, by operation (each page of a listing counts).",
        None,
        &requests,
    )?;
    counters(
        enc,
        "kafka_schema_registry_errors",
        "Failed requests, by operation.",
        None,
        &errors,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_subjects",
        "Subjects by state: live or soft_deleted.",
        None,
        &subjects,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_schema_versions",
        "Schema versions over all subjects, by state: live or soft_deleted.",
        None,
        &versions,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_subject_versions",
        "Live versions of the subject (only with subject_labels).",
        None,
        &subject_versions,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_latest_schemas",
        "Live subjects by the type of their latest schema version (no type given means AVRO).",
        None,
        &latest,
    )?;
    infos(
        enc,
        "kafka_schema_registry_compatibility",
        "Global compatibility level of the registry (value 1).",
        &compatibility,
    )?;
    infos(
        enc,
        "kafka_schema_registry_mode",
        "Global mode of the registry (value 1).",
        &mode,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_subjects_by_compatibility",
        "Live subjects by effective compatibility level (their own, else the global one); NONE allows any change.",
        None,
        &by_level,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_unresolved_subjects",
        "Live subjects whose compatibility or latest version is not known yet (per-subject requests are bounded per poll).",
        None,
        &unresolved,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_contexts",
        "Schema contexts of the registry; absent when it has none.",
        None,
        &contexts,
    )?;
    gauges(
        enc,
        "kafka_topic_schema_subject_missing",
        "1 if a topic of a class that requires a schema has no value subject, else 0.",
        None,
        &missing,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_topics_missing_subject",
        "Topics of classes that require a schema without a value subject.",
        None,
        &missing_count,
    )?;
    gauges(
        enc,
        "kafka_schema_registry_orphan_subjects",
        "Live subjects named after a topic (by the naming strategy) that does not exist.",
        None,
        &orphans,
    )?;
    gauges(
        enc,
        "kafka_topic_schema_sampled_records",
        "Newest records of the topic sampled, by framing: registered, unknown_id, unframed, tombstone, unchecked.",
        None,
        &sampled,
    )?;
    gauges(
        enc,
        "kafka_topic_schema_registered_ratio",
        "Share of sampled values framed with a schema id the registry knows (tombstones and unchecked ids left out).",
        None,
        &ratio,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashSet};
    use std::time::Duration;

    use arc_swap::ArcSwap;

    use super::*;
    use crate::collectors::{Exposition, Format};
    use crate::config::Granularity;
    use crate::registry::inventory::Inventory;
    use crate::snapshot::SnapshotSlot;

    fn inventory() -> Inventory {
        Inventory {
            at: SystemTime::now(),
            subjects_live: 2,
            subjects_soft_deleted: 1,
            versions_live: Some(3),
            versions_soft_deleted: Some(1),
            subject_versions: BTreeMap::from([("a-value".to_string(), 2), ("b-value".to_string(), 1)]),
            latest_types: BTreeMap::from([("AVRO".to_string(), 2)]),
            global_compatibility: Some("BACKWARD".into()),
            mode: None,
            by_compatibility: BTreeMap::from([("BACKWARD".to_string(), 2)]),
            unresolved: 0,
            contexts: None,
            subjects: BTreeSet::new(),
            ids: HashSet::new(),
        }
    }

    fn render(e: &Exposition) -> String {
        String::from_utf8(e.render(Format::Prometheus, false).unwrap()).unwrap()
    }

    #[test]
    fn registry_series_follow_the_registry_snapshot_not_the_kafka_cycle() {
        let name = "collector-test-registry";
        let kafka: SnapshotSlot = Arc::new(ArcSwap::from_pointee(ClusterSnapshot::empty(
            name,
            &[("env".into(), "t".into())],
            Granularity::Partition,
        )));
        let slot: RegistrySlot = Arc::new(ArcSwap::from_pointee(RegistrySnapshot::empty(false)));
        let area = RegistryArea {
            registries: vec![(name.to_string(), Arc::clone(&slot))],
        };
        let e = Exposition::new(vec![Arc::clone(&kafka)], vec![Box::new(area)]);

        let text = render(&e);
        assert!(
            text.contains(&format!("kafka_schema_registry_up{{cluster=\"{name}\",env=\"t\"}} 0")),
            "{text}"
        );
        assert!(
            text.contains("operation=\"schema_by_id\"} 0"),
            "every operation from the start: {text}"
        );
        assert!(
            !text.contains("kafka_schema_registry_subjects{"),
            "no inventory yet: {text}"
        );

        // A new registry snapshot shows at the next scrape, with the Kafka snapshot unchanged.
        let mut s = RegistrySnapshot::empty(false);
        s.up = true;
        s.inventory = Some(Arc::new(inventory()));
        s.operations.get_mut(&Operation::Subjects).unwrap().last_duration = Some(Duration::from_millis(20));
        slot.store(Arc::new(s));
        let text = render(&e);
        assert!(
            text.contains(&format!("kafka_schema_registry_up{{cluster=\"{name}\",env=\"t\"}} 1")),
            "{text}"
        );
        assert!(text.contains("kafka_schema_registry_subjects{cluster=\"collector-test-registry\",env=\"t\",state=\"soft_deleted\"} 1"), "{text}");
        assert!(text.contains("kafka_schema_registry_compatibility_info{cluster=\"collector-test-registry\",env=\"t\",level=\"BACKWARD\"} 1"), "{text}");
        assert!(text.contains("kafka_schema_registry_request_duration_seconds{cluster=\"collector-test-registry\",env=\"t\",operation=\"subjects\"} 0.02"), "{text}");
        assert!(
            !text.contains("kafka_schema_registry_subject_versions"),
            "subject labels are opt-in: {text}"
        );
        assert!(
            !text.contains("kafka_schema_registry_mode_info"),
            "no mode known: {text}"
        );

        let mut s = RegistrySnapshot::empty(true);
        s.inventory = Some(Arc::new(inventory()));
        slot.store(Arc::new(s));
        let text = render(&e);
        assert!(text.contains("kafka_schema_registry_subject_versions{cluster=\"collector-test-registry\",env=\"t\",subject=\"a-value\"} 2"), "{text}");
    }
}
