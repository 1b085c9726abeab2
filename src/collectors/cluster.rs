//! Kafka cluster state: cluster id, controller, brokers, topics and partition counts. The
//! cluster-wide series come from shard 0 only; per-topic ones from the topic's shard.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;

use super::{cluster_labels, gauges, infos, with, Area, Labels};
use crate::snapshot::ClusterSnapshot;

#[derive(Debug)]
pub struct ClusterArea;

impl Area for ClusterArea {
    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        _now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let mut cluster_info: Vec<(Labels, Labels)> = Vec::new();
        let mut controller: Vec<(Labels, f64)> = Vec::new();
        let mut broker_count: Vec<(Labels, f64)> = Vec::new();
        let mut broker_info: Vec<(Labels, Labels)> = Vec::new();
        let mut is_controller: Vec<(Labels, f64)> = Vec::new();
        let mut topic_count: Vec<(Labels, f64)> = Vec::new();
        let mut partition_count: Vec<(Labels, f64)> = Vec::new();
        let mut topic_partitions: Vec<(Labels, f64)> = Vec::new();

        for c in clusters {
            let base = cluster_labels(c);
            let cluster_wide = c.shard.owns_cluster_wide();
            if let Some(d) = c.cluster.as_ref().filter(|_| cluster_wide) {
                cluster_info.push((
                    base.clone(),
                    vec![("cluster_id", Cow::Borrowed(d.cluster_id.as_deref().unwrap_or("")))],
                ));
                if let Some(id) = d.controller_id {
                    controller.push((base.clone(), f64::from(id)));
                }
                broker_count.push((base.clone(), d.brokers.len() as f64));
                for b in &d.brokers {
                    let id: Cow<str> = Cow::Owned(b.id.to_string());
                    broker_info.push((
                        with(&base, [("broker_id", id.clone())]),
                        vec![
                            ("host", Cow::Borrowed(b.host.as_str())),
                            ("port", Cow::Owned(b.port.to_string())),
                            ("rack", Cow::Borrowed(b.rack.as_deref().unwrap_or(""))),
                        ],
                    ));
                    let ctl = d.controller_id == Some(b.id);
                    is_controller.push((with(&base, [("broker_id", id)]), if ctl { 1.0 } else { 0.0 }));
                }
            }
            if let Some(totals) = c.totals.filter(|_| cluster_wide) {
                topic_count.push((base.clone(), totals.topics as f64));
                partition_count.push((base.clone(), totals.partitions as f64));
            }
            if let Some(topics) = &c.topics {
                for t in topics.iter() {
                    topic_partitions.push((
                        with(&base, [("topic", Cow::Borrowed(t.name.as_str()))]),
                        t.partitions.len() as f64,
                    ));
                }
            }
        }

        infos(enc, "kafka_cluster", "Kafka cluster identity (value 1).", &cluster_info)?;
        gauges(
            enc,
            "kafka_cluster_controller_id",
            "Broker id of the active controller.",
            None,
            &controller,
        )?;
        gauges(
            enc,
            "kafka_brokers",
            "Number of brokers registered in the cluster.",
            None,
            &broker_count,
        )?;
        infos(
            enc,
            "kafka_broker",
            "Registered broker with its advertised address and rack (value 1).",
            &broker_info,
        )?;
        gauges(
            enc,
            "kafka_broker_is_controller",
            "1 if this broker is the active controller, else 0.",
            None,
            &is_controller,
        )?;
        gauges(
            enc,
            "kafka_topics",
            "Number of topics exported (after the topic filter).",
            None,
            &topic_count,
        )?;
        gauges(
            enc,
            "kafka_partitions",
            "Number of partitions of the exported topics.",
            None,
            &partition_count,
        )?;
        gauges(
            enc,
            "kafka_topic_partitions",
            "Number of partitions of the topic.",
            None,
            &topic_partitions,
        )
    }
}
