//! End-to-end delivery probe: record counters, latency histograms and the probe's health.
//! Encoded on every scrape from the probe's own snapshot, which changes every probe round
//! rather than every collection cycle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{base_labels, counter_family, gauge_family, unix_seconds, Area, Base};
use crate::probe::{Histogram, PartitionCounters, ProbeSlot, ProbeSnapshot};
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

/// Encodes a histogram family (buckets of [`crate::probe::LATENCY_BUCKETS`], in seconds) from
/// an iterator; nothing is written when there are no samples.
fn histogram_family<'h, L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (L, &'h Histogram)>,
) -> std::fmt::Result {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in samples {
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum,
            h.count,
            &h.buckets(),
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )?;
    }
    Ok(())
}

/// A cluster's base labels with its probe's latest snapshot.
type Probed<'a> = (Base<'a>, Arc<ProbeSnapshot>);

/// The label set of every probe series: the cluster's labels plus `topic`.
type TopicLabels<'a> = (&'a [(&'a str, &'a str)], [(&'static str, &'a str); 1]);

fn topic<'a>((base, s): &'a Probed<'_>) -> TopicLabels<'a> {
    (base.as_slice(), [("topic", s.topic.as_str())])
}

impl Area for ProbeArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let snaps: Vec<Probed<'_>> = clusters
            .iter()
            .filter_map(|c| {
                let (_, slot) = self.probes.iter().find(|(n, _)| *n == c.name)?;
                Some((base_labels(c), slot.load_full()))
            })
            .collect();
        let up = snaps.iter().map(|x| (topic(x), if x.1.up { 1.0 } else { 0.0 }));
        gauge_family(enc, "kafka_probe_up", "1 if the probe's last round reached Kafka (topic metadata, consumer assignment and offset commit worked), else 0.", None, up)?;
        let rounds = snaps.iter().map(|x| (topic(x), x.1.rounds_total));
        counter_family(
            enc,
            "kafka_probe_rounds",
            "Probe rounds run (one record per partition each).",
            None,
            rounds,
        )?;
        let last = snaps
            .iter()
            .filter_map(|x| x.1.last_success.map(|t| (topic(x), unix_seconds(t))));
        gauge_family(
            enc,
            "kafka_probe_last_success_timestamp",
            "Unix time of the probe's last successful round.",
            Some(&Unit::Seconds),
            last,
        )?;
        let errors = snaps.iter().flat_map(|x| {
            x.1.errors
                .iter()
                .map(move |(stage, n)| ((topic(x), [("stage", *stage)]), *n))
        });
        counter_family(
            enc,
            "kafka_probe_errors",
            "Probe failures by stage (topic, produce, consume, commit, client).",
            None,
            errors,
        )?;
        let leaders = snaps.iter().flat_map(|x| {
            x.1.leaders
                .iter()
                .filter_map(move |(p, l)| l.map(|l| ((topic(x), [("partition", *p)]), f64::from(l))))
        });
        gauge_family(
            enc,
            "kafka_probe_partition_leader",
            "Leader broker of the probe partition.",
            None,
            leaders,
        )?;
        for (name, help, f) in PARTITION_COUNTERS {
            let samples = snaps.iter().flat_map(|x| {
                x.1.partitions
                    .iter()
                    .map(move |(p, c)| ((topic(x), [("partition", *p)]), f(c)))
            });
            counter_family(enc, name, help, None, samples)?;
        }
        let failed = snaps.iter().flat_map(|x| {
            x.1.partitions.iter().flat_map(move |(p, c)| {
                c.failed
                    .iter()
                    .map(move |(class, n)| ((topic(x), ([("partition", *p)], [("error", class.as_str())])), *n))
            })
        });
        counter_family(
            enc,
            "kafka_probe_records_failed",
            "Probe records the producer gave up on, by error class (e.g. timeout, not_enough_replicas).",
            None,
            failed,
        )?;
        encode_latency(&snaps, enc)
    }

    fn scrape_time(&self) -> bool {
        true
    }
}

/// The probe's latency histograms: produce and end to end by partition and leader, commit.
fn encode_latency(snaps: &[Probed<'_>], enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let latency = |of: fn(&ProbeSnapshot) -> &std::collections::BTreeMap<(i32, i32), Histogram>| {
        snaps.iter().flat_map(move |x| {
            of(&x.1)
                .iter()
                .map(move |((p, b), h)| ((topic(x), ([("partition", *p)], [("broker_id", *b)])), h))
        })
    };
    histogram_family(
        enc,
        "kafka_probe_produce_latency",
        "Time from send to acknowledgement (acks=all), by partition and leader broker at send time.",
        latency(|s| &s.produce_latency),
    )?;
    histogram_family(
        enc,
        "kafka_probe_end_to_end_latency",
        "Time from send to receipt by the probe consumer, by partition and leader broker at send time.",
        latency(|s| &s.end_to_end_latency),
    )?;
    let commit = snaps
        .iter()
        .filter(|x| x.1.commit_latency.count > 0)
        .map(|x| (topic(x), &x.1.commit_latency));
    histogram_family(
        enc,
        "kafka_probe_commit_latency",
        "Duration of the probe consumer's synchronous offset commit.",
        commit,
    )
}
