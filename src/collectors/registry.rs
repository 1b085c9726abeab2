//! Schema Registry: availability and latency of the registry, its subject and schema
//! inventory, compatibility, the cross-check with the cluster's topics and sampled framing.
//!
//! Registry snapshots change on the registry's own interval, not the Kafka cycle, so this area
//! is encoded on every scrape from the newest registry snapshot of each cluster (it is small:
//! per-subject series only with `subject_labels`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{base_labels, counter_family, gauge_family, info_family, unix_seconds, Area, Base};
use crate::registry::crosscheck::CrossCheck;
use crate::registry::inventory::Inventory;
use crate::registry::wire::Outcome;
use crate::registry::{Operation, OperationStats, RegistrySlot, RegistrySnapshot};
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

/// A cluster's base labels, borrowed.
type BaseRef<'a> = &'a [(&'a str, &'a str)];

/// Counts by state (live, soft_deleted); `None` when unknown.
type ByState = [(&'static str, Option<usize>); 2];

/// A cluster's base labels with its registry snapshot.
type Watched<'a> = (Base<'a>, Arc<RegistrySnapshot>);

/// Encodes the registry families of each (cluster, registry snapshot).
pub fn encode(
    registries: &[(&ClusterSnapshot, Arc<RegistrySnapshot>)],
    enc: &mut DescriptorEncoder,
) -> std::fmt::Result {
    let watched: Vec<Watched<'_>> = registries
        .iter()
        .map(|(c, r)| (base_labels(c), Arc::clone(r)))
        .collect();
    encode_requests(&watched, enc)?;
    encode_inventory(&watched, enc)?;
    encode_topics(&watched, enc)
}

type OperationFn = fn(&OperationStats) -> u64;

/// Request counters by operation (every operation listed from the start).
const OPERATION_COUNTERS: &[(&str, &str, OperationFn)] = &[
    (
        "kafka_schema_registry_requests",
        "Requests made, by operation (each page of a listing counts).",
        |s| s.requests_total,
    ),
    ("kafka_schema_registry_errors", "Failed requests, by operation.", |s| {
        s.errors_total
    }),
];

/// Availability and requests of each registry.
fn encode_requests(watched: &[Watched<'_>], enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let up = watched
        .iter()
        .map(|(b, r)| (b.as_slice(), if r.up { 1.0 } else { 0.0 }));
    gauge_family(
        enc,
        "kafka_schema_registry_up",
        "1 if the most recent poll of the cluster's Schema Registry read every listing, else 0.",
        None,
        up,
    )?;
    let last = watched
        .iter()
        .filter_map(|(b, r)| r.last_success.map(|t| (b.as_slice(), unix_seconds(t))));
    gauge_family(
        enc,
        "kafka_schema_registry_last_success_timestamp",
        "Unix time at which the most recent successful registry poll ended.",
        Some(&Unit::Seconds),
        last,
    )?;
    let operations = || {
        watched.iter().flat_map(|(b, r)| {
            Operation::ALL.into_iter().map(move |op| {
                let st = r.operations.get(&op).cloned().unwrap_or_default();
                ((b.as_slice(), [("operation", op.as_str())]), st)
            })
        })
    };
    let duration = operations().filter_map(|(l, st)| st.last_duration.map(|d| (l, d.as_secs_f64())));
    gauge_family(
        enc,
        "kafka_schema_registry_request_duration",
        "Slowest request of the operation in the most recent poll that made one.",
        Some(&Unit::Seconds),
        duration,
    )?;
    for (name, help, f) in OPERATION_COUNTERS {
        counter_family(enc, name, help, None, operations().map(|(l, st)| (l, f(&st))))?;
    }
    Ok(())
}

type CountFn = fn(&Inventory) -> Option<usize>;

/// Per-registry inventory gauges that follow the compatibility and mode infos.
const INVENTORY_TOTALS: &[(&str, &str, CountFn)] = &[
    ("kafka_schema_registry_unresolved_subjects", "Live subjects whose compatibility or latest version is not known yet (per-subject requests are bounded per poll).", |i| Some(i.unresolved)),
    ("kafka_schema_registry_contexts", "Schema contexts of the registry; absent when it has none.", |i| i.contexts),
];

/// The subject and schema inventory of each registry, while it is fresh.
fn encode_inventory(watched: &[Watched<'_>], enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let inventories: Vec<(BaseRef<'_>, &Inventory, bool)> = watched
        .iter()
        .filter_map(|(b, r)| r.inventory.as_deref().map(|i| (b.as_slice(), i, r.subject_labels)))
        .collect();
    let by_state = |f: fn(&Inventory) -> ByState| {
        inventories.iter().flat_map(move |(b, i, _)| {
            f(i).into_iter()
                .filter_map(move |(state, n)| n.map(|n| ((*b, [("state", state)]), n as f64)))
        })
    };
    gauge_family(
        enc,
        "kafka_schema_registry_subjects",
        "Subjects by state: live or soft_deleted.",
        None,
        by_state(|i| {
            [
                ("live", Some(i.subjects_live)),
                ("soft_deleted", Some(i.subjects_soft_deleted)),
            ]
        }),
    )?;
    gauge_family(
        enc,
        "kafka_schema_registry_schema_versions",
        "Schema versions over all subjects, by state: live or soft_deleted.",
        None,
        by_state(|i| [("live", i.versions_live), ("soft_deleted", i.versions_soft_deleted)]),
    )?;
    let keyed = |label: &'static str, f: fn(&Inventory) -> &BTreeMap<String, usize>, only_with_subject_labels: bool| {
        inventories
            .iter()
            .filter(move |(_, _, sl)| *sl || !only_with_subject_labels)
            .flat_map(move |(b, i, _)| f(i).iter().map(move |(k, n)| ((*b, [(label, k.as_str())]), *n as f64)))
    };
    gauge_family(
        enc,
        "kafka_schema_registry_subject_versions",
        "Live versions of the subject (only with subject_labels).",
        None,
        keyed("subject", |i| &i.subject_versions, true),
    )?;
    gauge_family(
        enc,
        "kafka_schema_registry_latest_schemas",
        "Live subjects by the type of their latest schema version (no type given means AVRO).",
        None,
        keyed("type", |i| &i.latest_types, false),
    )?;
    let compatibility = inventories
        .iter()
        .filter_map(|(b, i, _)| i.global_compatibility.as_deref().map(|l| (*b, [("level", l)])));
    info_family(
        enc,
        "kafka_schema_registry_compatibility",
        "Global compatibility level of the registry (value 1).",
        compatibility,
    )?;
    let mode = inventories
        .iter()
        .filter_map(|(b, i, _)| i.mode.as_deref().map(|m| (*b, [("mode", m)])));
    info_family(
        enc,
        "kafka_schema_registry_mode",
        "Global mode of the registry (value 1).",
        mode,
    )?;
    gauge_family(
        enc,
        "kafka_schema_registry_subjects_by_compatibility",
        "Live subjects by effective compatibility level (their own, else the global one); NONE allows any change.",
        None,
        keyed("level", |i| &i.by_compatibility, false),
    )?;
    for (name, help, f) in INVENTORY_TOTALS {
        let samples = inventories.iter().filter_map(|(b, i, _)| f(i).map(|n| (*b, n as f64)));
        gauge_family(enc, name, help, None, samples)?;
    }
    Ok(())
}

/// The cross-check of topics with subjects, and the sampled framing of topics' records.
fn encode_topics(watched: &[Watched<'_>], enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let checks: Vec<(BaseRef<'_>, &CrossCheck)> = watched
        .iter()
        .filter_map(|(b, r)| r.cross_check.as_deref().map(|x| (b.as_slice(), x)))
        .collect();
    let missing = checks.iter().flat_map(|(b, x)| {
        x.topics
            .iter()
            .map(move |(t, m)| ((*b, [("topic", t.as_str())]), if *m { 1.0 } else { 0.0 }))
    });
    gauge_family(
        enc,
        "kafka_topic_schema_subject_missing",
        "1 if a topic of a class that requires a schema has no value subject, else 0.",
        None,
        missing,
    )?;
    let missing_count = checks.iter().map(|(b, x)| (*b, x.missing() as f64));
    gauge_family(
        enc,
        "kafka_schema_registry_topics_missing_subject",
        "Topics of classes that require a schema without a value subject.",
        None,
        missing_count,
    )?;
    let orphans = checks.iter().map(|(b, x)| (*b, x.orphans.len() as f64));
    gauge_family(
        enc,
        "kafka_schema_registry_orphan_subjects",
        "Live subjects named after a topic (by the naming strategy) that does not exist.",
        None,
        orphans,
    )?;
    let samples = || {
        watched.iter().flat_map(|(b, r)| {
            r.samples
                .iter()
                .flat_map(|s| s.iter())
                .map(move |(topic, counts)| ((b.as_slice(), [("topic", topic.as_str())]), counts))
        })
    };
    let sampled = samples().flat_map(|(l, counts)| {
        Outcome::ALL
            .into_iter()
            .map(move |o| ((l, [("framing", o.as_str())]), counts.get(o) as f64))
    });
    gauge_family(
        enc,
        "kafka_topic_schema_sampled_records",
        "Newest records of the topic sampled, by framing: registered, unknown_id, unframed, tombstone, unchecked.",
        None,
        sampled,
    )?;
    let ratio = samples().filter_map(|(l, counts)| counts.registered_ratio().map(|v| (l, v)));
    gauge_family(
        enc,
        "kafka_topic_schema_registered_ratio",
        "Share of sampled values framed with a schema id the registry knows (tombstones and unchecked ids left out).",
        None,
        ratio,
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
