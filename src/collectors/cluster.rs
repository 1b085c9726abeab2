//! Kafka cluster state: cluster id, controller, brokers, topics and partition counts. The
//! cluster-wide series come from shard 0 only; per-topic ones from the topic's shard.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;

use super::{base_labels, gauge_family, info_family, Area, Base};
use crate::kafka::ClusterDescription;
use crate::snapshot::{ClusterSnapshot, ClusterTotals};

#[derive(Debug)]
pub struct ClusterArea;

type DescriptionFn = fn(&ClusterDescription) -> Option<f64>;

/// Cluster-wide gauges from DescribeCluster.
const DESCRIPTION_GAUGES: &[(&str, &str, DescriptionFn)] = &[
    (
        "kafka_cluster_controller_id",
        "Broker id of the active controller.",
        |d| d.controller_id.map(f64::from),
    ),
    ("kafka_brokers", "Number of brokers registered in the cluster.", |d| {
        Some(d.brokers.len() as f64)
    }),
];

type TotalsFn = fn(&ClusterTotals) -> usize;

/// Cluster-wide counts of the exported topics.
const TOTALS_GAUGES: &[(&str, &str, TotalsFn)] = &[
    (
        "kafka_topics",
        "Number of topics exported (after the topic filter).",
        |t| t.topics,
    ),
    (
        "kafka_partitions",
        "Number of partitions of the exported topics.",
        |t| t.partitions,
    ),
];

impl Area for ClusterArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        // The cluster-wide series come from shard 0 only.
        let wide: Vec<(Base, &ClusterSnapshot)> = clusters
            .iter()
            .filter(|c| c.shard.owns_cluster_wide())
            .map(|c| (base_labels(c), c.as_ref()))
            .collect();
        let described: Vec<(&Base, &ClusterDescription)> = wide
            .iter()
            .filter_map(|(b, c)| c.cluster.as_deref().map(|d| (b, d)))
            .collect();

        let ids = described
            .iter()
            .map(|(b, d)| (b.as_slice(), [("cluster_id", d.cluster_id.as_deref().unwrap_or(""))]));
        info_family(enc, "kafka_cluster", "Kafka cluster identity (value 1).", ids)?;
        for (name, help, f) in DESCRIPTION_GAUGES {
            let samples = described.iter().filter_map(|(b, d)| f(d).map(|v| (b.as_slice(), v)));
            gauge_family(enc, name, help, None, samples)?;
        }
        let brokers = || {
            described
                .iter()
                .flat_map(|(b, d)| d.brokers.iter().map(move |br| (b.as_slice(), *d, br)))
        };
        let info = brokers().map(|(b, _, br)| {
            let host = [("host", br.host.as_str())];
            let rack = [("rack", br.rack.as_deref().unwrap_or(""))];
            ((b, [("broker_id", br.id)]), (host, ([("port", br.port)], rack)))
        });
        info_family(
            enc,
            "kafka_broker",
            "Registered broker with its advertised address and rack (value 1).",
            info,
        )?;
        let is_controller = brokers().map(|(b, d, br)| {
            let v = if d.controller_id == Some(br.id) { 1.0 } else { 0.0 };
            ((b, [("broker_id", br.id)]), v)
        });
        gauge_family(
            enc,
            "kafka_broker_is_controller",
            "1 if this broker is the active controller, else 0.",
            None,
            is_controller,
        )?;
        for (name, help, f) in TOTALS_GAUGES {
            let samples = wide
                .iter()
                .filter_map(|(b, c)| c.totals.as_ref().map(|t| (b.as_slice(), f(t) as f64)));
            gauge_family(enc, name, help, None, samples)?;
        }
        // Every registered broker, with 0 when it leads nothing (a broker back from a restart
        // before the preferred leaders are elected again).
        let leaders = wide.iter().flat_map(|(b, c)| {
            let counts = c.totals.as_ref().map(|t| t.leaders.as_slice()).unwrap_or_default();
            let brokers = c.cluster.as_deref().map(|d| d.brokers.as_slice()).unwrap_or_default();
            let led = move |id: i32| counts.iter().find(|(l, _)| *l == id).map_or(0, |(_, n)| *n);
            brokers
                .iter()
                .filter(move |_| c.totals.is_some())
                .map(move |br| ((b.as_slice(), [("broker_id", br.id)]), led(br.id) as f64))
        });
        gauge_family(
            enc,
            "kafka_broker_leader_partitions",
            "Partitions of the exported topics led by the broker (0 for a registered broker leading none).",
            None,
            leaders,
        )?;
        let topics = clusters
            .iter()
            .filter_map(|c| c.topics.as_ref().map(|t| (base_labels(c), t)));
        let per_topic: Vec<_> = topics.collect();
        let samples = per_topic.iter().flat_map(|(b, topics)| {
            topics
                .iter()
                .map(move |t| ((b.as_slice(), [("topic", t.name.as_str())]), t.partitions.len() as f64))
        });
        gauge_family(
            enc,
            "kafka_topic_partitions",
            "Number of partitions of the topic.",
            None,
            samples,
        )
    }
}
