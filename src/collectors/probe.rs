//! End-to-end delivery probe: record counters, latency histograms and the probe's health.
//! Encoded on every scrape from the probe's own snapshot, which changes every probe round
//! rather than every collection cycle.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{cluster_labels, counters, gauges, unix_seconds, with, Area, Labels};
use crate::probe::{Histogram, PartitionCounters, ProbeSlot};
use crate::snapshot::ClusterSnapshot;

#[derive(Debug)]
pub struct ProbeArea {
    /// Cluster name → its probe's slot.
    pub probes: Vec<(String, ProbeSlot)>,
}

type CounterFn = fn(&PartitionCounters) -> u64;

const PARTITION_COUNTERS: &[(&str, &str, CounterFn)] = &[
    (
        "kafka_probe_records_produced",
        "Probe records handed to the producer (the availability SLI's denominator).",
        |c| c.produced,
    ),
    (
        "kafka_probe_records_acknowledged",
        "Probe records acknowledged by the cluster (acks=all).",
        |c| c.acknowledged,
    ),
    (
        "kafka_probe_records_received",
        "Probe records read back (first receipt).",
        |c| c.received,
    ),
    (
        "kafka_probe_records_delivered_in_time",
        "Probe records read back within the probe timeout (the availability SLI's numerator).",
        |c| c.delivered_in_time,
    ),
    (
        "kafka_probe_records_lost",
        "Probe records not read back within the probe timeout, counted once.",
        |c| c.lost,
    ),
    (
        "kafka_probe_records_late",
        "Probe records read back after being counted lost.",
        |c| c.late,
    ),
    (
        "kafka_probe_records_duplicated",
        "Probe records read back more than once (allowed by at-least-once, counted).",
        |c| c.duplicated,
    ),
];

fn histograms(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, &Histogram)],
) -> std::fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in samples {
        let buckets = h.buckets();
        m.encode_family(labels)?.encode_histogram::<Labels<'_>>(
            h.sum,
            h.count,
            &buckets,
            None::<&HashMap<usize, Exemplar<Labels<'_>, f64>>>,
        )?;
    }
    Ok(())
}

impl Area for ProbeArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let snaps: Vec<_> = clusters
            .iter()
            .filter_map(|c| {
                let (_, slot) = self.probes.iter().find(|(n, _)| *n == c.name)?;
                Some((cluster_labels(c), slot.load_full()))
            })
            .collect();
        let mut up = Vec::new();
        let mut rounds = Vec::new();
        let mut last = Vec::new();
        let mut errors = Vec::new();
        let mut leader = Vec::new();
        let mut failed = Vec::new();
        let mut per: Vec<Vec<(Labels, u64)>> = vec![Vec::new(); PARTITION_COUNTERS.len()];
        let mut produce = Vec::new();
        let mut e2e = Vec::new();
        let mut commit = Vec::new();
        for (base, s) in &snaps {
            let base = with(base, [("topic", Cow::Borrowed(s.topic.as_str()))]);
            up.push((base.clone(), if s.up { 1.0 } else { 0.0 }));
            rounds.push((base.clone(), s.rounds_total));
            if let Some(t) = s.last_success {
                last.push((base.clone(), unix_seconds(t)));
            }
            for (stage, n) in &s.errors {
                errors.push((with(&base, [("stage", Cow::Borrowed(*stage))]), *n));
            }
            for (p, l) in &s.leaders {
                if let Some(l) = l {
                    leader.push((with(&base, [("partition", Cow::Owned(p.to_string()))]), f64::from(*l)));
                }
            }
            for (p, c) in &s.partitions {
                let pl = with(&base, [("partition", Cow::Owned(p.to_string()))]);
                for (i, (_, _, f)) in PARTITION_COUNTERS.iter().enumerate() {
                    per[i].push((pl.clone(), f(c)));
                }
                for (class, n) in &c.failed {
                    failed.push((with(&pl, [("error", Cow::Borrowed(class.as_str()))]), *n));
                }
            }
            for ((p, b), h) in &s.produce_latency {
                let l = with(
                    &base,
                    [
                        ("partition", Cow::Owned(p.to_string())),
                        ("broker_id", Cow::Owned(b.to_string())),
                    ],
                );
                produce.push((l, h));
            }
            for ((p, b), h) in &s.end_to_end_latency {
                let l = with(
                    &base,
                    [
                        ("partition", Cow::Owned(p.to_string())),
                        ("broker_id", Cow::Owned(b.to_string())),
                    ],
                );
                e2e.push((l, h));
            }
            if s.commit_latency.count > 0 {
                commit.push((base.clone(), &s.commit_latency));
            }
        }
        gauges(enc, "kafka_probe_up", "1 if the probe's last round reached Kafka (topic metadata, consumer assignment and offset commit worked), else 0.", None, &up)?;
        counters(
            enc,
            "kafka_probe_rounds",
            "Probe rounds run (one record per partition each).",
            None,
            &rounds,
        )?;
        gauges(
            enc,
            "kafka_probe_last_success_timestamp",
            "Unix time of the probe's last successful round.",
            Some(Unit::Seconds),
            &last,
        )?;
        counters(
            enc,
            "kafka_probe_errors",
            "Probe failures by stage (topic, produce, consume, commit, client).",
            None,
            &errors,
        )?;
        gauges(
            enc,
            "kafka_probe_partition_leader",
            "Leader broker of the probe partition.",
            None,
            &leader,
        )?;
        for (i, (name, help, _)) in PARTITION_COUNTERS.iter().enumerate() {
            counters(enc, name, help, None, &per[i])?;
        }
        counters(
            enc,
            "kafka_probe_records_failed",
            "Probe records the producer gave up on, by error class (e.g. timeout, not_enough_replicas).",
            None,
            &failed,
        )?;
        histograms(
            enc,
            "kafka_probe_produce_latency",
            "Time from send to acknowledgement (acks=all), by partition and leader broker at send time.",
            &produce,
        )?;
        histograms(
            enc,
            "kafka_probe_end_to_end_latency",
            "Time from send to receipt by the probe consumer, by partition and leader broker at send time.",
            &e2e,
        )?;
        histograms(
            enc,
            "kafka_probe_commit_latency",
            "Duration of the probe consumer's synchronous offset commit.",
            &commit,
        )
    }

    fn scrape_time(&self) -> bool {
        true
    }
}
