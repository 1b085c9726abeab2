//! Replication health on a real 3-broker KRaft cluster while brokers die and come back.

mod common;

use std::time::Duration;

use common::Exporter;
use kafka_harness::{ClusterOptions, KafkaCluster};

#[test]
fn under_replicated_then_under_min_isr_then_healthy_again() {
    // Node 1 is the only KRaft voter, so brokers 2 and 3 can die without losing the controller
    // quorum (with three combined voters, two dead nodes freeze the metadata: no ISR changes).
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(3).controllers(1)).expect("3-node cluster");
    kafka
        .create_topic("r.order.events", 6, 3, &[("min.insync.replicas", "2")])
        .unwrap();
    let cfg = format!(
        "global:\n  interval: 1s\n  timeout: 2s\nclusters:\n  - name: local\n    bootstrap_servers: [{}]\n    topics: {{allow: ['r\\..*']}}\n",
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
