//! Replication health on a real 3-broker KRaft cluster while brokers die and come back.

mod common;

use std::time::Duration;

use common::{Exporter, Metrics};
use kafka_harness::{ClusterOptions, KafkaCluster};

/// The Java program that asks Kafka's own Admin client about eligible leader replicas.
const ELR_TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/java/DescribeElr.java");

/// Kafka releases from 4 on keep eligible leader replicas (KIP-966) once the feature is on.
fn has_elr(kafka: &KafkaCluster) -> bool {
    kafka.version().split('.').next().and_then(|m| m.parse::<u32>().ok()) >= Some(4)
}

/// Each partition's ELR size as Kafka's Admin client reports it, by partition.
fn kafka_elr(kafka: &KafkaCluster, topic: &str) -> Vec<(String, usize, usize)> {
    let out = kafka
        .run_java_source(
            std::path::Path::new(ELR_TOOL),
            &[&kafka.bootstrap_servers(), "describe", topic],
        )
        .expect("describing the topic with Kafka's Admin client");
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let partition = f.next()?.to_string();
            let size = |field: Option<&str>, key: &str| {
                field
                    .and_then(|v| v.strip_prefix(key))
                    .map_or(0, |ids| ids.split(',').filter(|s| !s.is_empty()).count())
            };
            let _isr = f.next();
            let elr = size(f.next(), "elr=");
            let last_known = size(f.next(), "lastKnownElr=");
            Some((partition, elr, last_known))
        })
        .collect()
}

/// Whether the exporter's ELR series of `topic` equal Kafka's view.
fn elr_matches(m: &Metrics, topic: &str, kafka_view: &[(String, usize, usize)]) -> bool {
    !kafka_view.is_empty()
        && kafka_view.iter().all(|(p, elr, last_known)| {
            let l = [("topic", topic), ("partition", p.as_str())];
            m.value("kafka_partition_eligible_leader_replicas", &l) == Some(*elr as f64)
                && m.value("kafka_partition_last_known_elr", &l) == Some(*last_known as f64)
        })
}

#[test]
fn under_replicated_then_under_min_isr_then_healthy_again() {
    // Node 1 is the only KRaft voter, so brokers 2 and 3 can die without losing the controller
    // quorum (with three combined voters, two dead nodes freeze the metadata: no ISR changes).
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(3).controllers(1)).expect("3-node cluster");
    let elr = has_elr(&kafka);
    if elr {
        let level = kafka
            .run_java_source(std::path::Path::new(ELR_TOOL), &[&kafka.bootstrap_servers(), "enable"])
            .expect("finalizing eligible.leader.replicas.version");
        assert_eq!(level.trim(), "eligible.leader.replicas.version=1");
    }
    kafka
        .create_topic("r.order.events", 6, 3, &[("min.insync.replicas", "2")])
        .unwrap();
    let cfg = format!(
        "global:\n  interval: 1s\n  timeout: 2s\n  metrics: {{opt_in: ['.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: [{}]\n    topics: {{allow: ['r\\..*']}}\n",
        kafka.bootstrap_servers().split(',').map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
    );
    let e = Exporter::start(&cfg, &[]);
    let t = [("topic", "r.order.events")];
    let c = [("cluster", "local")];
    let m = e.wait_for(Duration::from_secs(30), "healthy topic", |m| {
        m.value("kafka_topic_under_replicated_partitions", &t) == Some(0.0)
            && m.value("kafka_topic_min_insync_replicas", &t) == Some(2.0)
    });
    assert_eq!(m.value("kafka_brokers", &c), Some(3.0));
    // The cluster total is PromQL's `sum by (cluster)` over the topics.
    assert_eq!(m.sum("kafka_topic_under_min_isr_partitions", &c), Some(0.0));
    assert_eq!(
        m.value(
            "kafka_partition_replicas",
            &[("topic", "r.order.events"), ("partition", "0")]
        ),
        Some(3.0)
    );

    let ids = kafka.broker_ids();
    // With RF 3 on 3 brokers every partition has a replica on every broker.
    kafka.kill_broker(ids[2]);
    let m = e.wait_for(Duration::from_secs(60), "6 under-replicated partitions", |m| {
        m.value("kafka_topic_under_replicated_partitions", &t) == Some(6.0)
    });
    assert_eq!(
        m.value("kafka_topic_under_min_isr_partitions", &t),
        Some(0.0),
        "ISR 2 = min ISR 2"
    );
    assert_eq!(m.value("kafka_cluster_offline_partitions", &c), Some(0.0));
    assert_eq!(
        m.value(
            "kafka_partition_in_sync_replicas",
            &[("topic", "r.order.events"), ("partition", "3")]
        ),
        Some(2.0)
    );

    kafka.kill_broker(ids[1]);
    let m = e.wait_for(Duration::from_secs(60), "6 partitions under min ISR", |m| {
        m.value("kafka_topic_under_min_isr_partitions", &t) == Some(6.0)
    });
    assert_eq!(m.sum("kafka_topic_under_min_isr_partitions", &c), Some(6.0));
    assert_eq!(
        m.value(
            "kafka_partition_under_min_isr",
            &[("topic", "r.order.events"), ("partition", "0")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "kafka_partition_leader",
            &[("topic", "r.order.events"), ("partition", "0")]
        ),
        Some(f64::from(ids[0]))
    );
    if elr {
        // The replica that left the ISR at min ISR stays eligible (KIP-966): the exporter's
        // ELR equals what Kafka's own Admin client reports, and with it no partition lacks a
        // clean leader candidate.
        let m = e.wait_for(Duration::from_secs(60), "ELR as Kafka's Admin client reports it", |m| {
            let view = kafka_elr(&kafka, "r.order.events");
            view.iter().any(|(_, elr, _)| *elr > 0) && elr_matches(m, "r.order.events", &view)
        });
        assert_eq!(m.value("kafka_topic_under_min_isr_with_elr_partitions", &t), Some(0.0));
    } else {
        // Brokers without ELR: the families are absent, and nothing fails for it.
        for family in [
            "kafka_partition_eligible_leader_replicas",
            "kafka_partition_last_known_elr",
            "kafka_topic_under_min_isr_with_elr_partitions",
        ] {
            assert!(m.find(family, &[]).is_empty(), "{family} on Kafka {}", kafka.version());
        }
        // The replication state is published as soon as metadata has it, while the cycle in
        // flight may still be waiting out a request to the broker that just died: whole cycles
        // succeed again once metadata no longer lists it.
        e.wait_for(
            Duration::from_secs(60),
            "whole cycles succeeding without the two brokers",
            |m| m.value("kafka_slo_exporter_cluster_up", &c) == Some(1.0),
        );
    }

    kafka.restart_broker(ids[1]).unwrap();
    kafka.restart_broker(ids[2]).unwrap();
    let m = e.wait_for(Duration::from_secs(90), "healthy again", |m| {
        m.value("kafka_topic_under_replicated_partitions", &t) == Some(0.0)
            && m.value("kafka_topic_under_min_isr_partitions", &t) == Some(0.0)
            && m.value("kafka_brokers", &c) == Some(3.0)
    });
    assert_eq!(m.value("kafka_cluster_under_replicated_partitions", &c), Some(0.0));
    assert_eq!(m.value("kafka_slo_exporter_cluster_up", &c), Some(1.0));
}
