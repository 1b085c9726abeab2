//! The end-to-end delivery probe against a real 3-broker Kafka: healthy delivery on every
//! partition, topic reuse, a killed partition leader, and the whole cluster down.

mod common;

use std::time::Duration;

use common::{Exporter, Metrics};
use kafka_harness::{ClusterOptions, KafkaCluster};

const TOPIC: &str = "kafka-slo-exporter.probe";

fn exporter(kafka: &KafkaCluster) -> Exporter {
    let cfg = format!(
        "global:\n  interval: 1s\n  timeout: 2s\nclusters:\n  - name: local\n    bootstrap_servers: {}\n    probe:\n      interval: 500ms\n      timeout: 4s\n",
        common::bootstrap_yaml(kafka)
    );
    Exporter::start(&cfg, &[])
}

fn counter(m: &Metrics, name: &str, partition: &str) -> f64 {
    m.value(name, &[("partition", partition), ("topic", TOPIC)])
        .unwrap_or(0.0)
}

fn total(m: &Metrics, name: &str) -> f64 {
    m.find(name, &[("topic", TOPIC)])
        .iter()
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Every record is accounted for at most once: received and lost never exceed produced.
fn assert_accounting(m: &Metrics) {
    for p in ["0", "1", "2"] {
        let produced = counter(m, "kafka_probe_records_produced_total", p);
        let received = counter(m, "kafka_probe_records_received_total", p);
        let lost = counter(m, "kafka_probe_records_lost_total", p);
        assert!(
            received + lost <= produced,
            "partition {p}: received {received} + lost {lost} > produced {produced}"
        );
    }
}

#[test]
fn probe_measures_delivery_through_failures() {
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(3).controllers(1)).expect("3-node cluster");

    // Healthy: the topic is created with a partition led by every broker, and every partition
    // delivers without loss.
    let e = exporter(&kafka);
    let m = e.wait_for(Duration::from_secs(60), "deliveries on every partition", |m| {
        ["0", "1", "2"]
            .iter()
            .all(|p| counter(m, "kafka_probe_records_delivered_in_time_total", p) >= 3.0)
    });
    assert_eq!(m.value("kafka_probe_up", &[("topic", TOPIC)]), Some(1.0));
    assert_eq!(total(&m, "kafka_probe_records_lost_total"), 0.0);
    assert_eq!(total(&m, "kafka_probe_records_duplicated_total"), 0.0);
    let mut leaders: Vec<f64> = m
        .find("kafka_probe_partition_leader", &[])
        .iter()
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => -1.0,
        })
        .collect();
    leaders.sort_by(f64::total_cmp);
    assert_eq!(leaders, vec![1.0, 2.0, 3.0], "each broker leads one probe partition");
    for p in ["0", "1", "2"] {
        let c = m.find("kafka_probe_end_to_end_latency_seconds_count", &[("partition", p)]);
        assert!(!c.is_empty(), "end-to-end latency recorded for partition {p}");
        let a = m.find("kafka_probe_produce_latency_seconds_count", &[("partition", p)]);
        assert!(!a.is_empty(), "ack latency recorded for partition {p}");
    }
    assert_eq!(
        m.find("kafka_probe_commit_latency_seconds_count", &[]).len(),
        1,
        "{}",
        m.text
            .lines()
            .filter(|l| l.starts_with("kafka_probe_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The probe's topic and group stay out of the user-facing series.
    assert!(m.find("kafka_topic_partitions", &[("topic", TOPIC)]).is_empty());
    assert!(m
        .find("kafka_consumergroup_info", &[("group", "kafka-slo-exporter-probe")])
        .is_empty());
    // Its configuration follows the policy's durability rules.
    let admin_view = Exporter::start(
        &format!(
            "global: {{interval: 1s, metrics: {{opt_in: ['.*']}}}}\nclusters:\n  - name: local\n    bootstrap_servers: [\"{}\"]\n    topics: {{allow: ['{}']}}\n",
            kafka.bootstrap_servers().split(',').next().unwrap(),
            TOPIC.replace('.', "\\.")
        ),
        &[],
    );
    let t = [("topic", TOPIC)];
    let v = admin_view.wait_for(Duration::from_secs(30), "probe topic configs", |m| {
        m.value("kafka_topic_min_insync_replicas", &t).is_some()
    });
    assert_eq!(v.value("kafka_topic_min_insync_replicas", &t), Some(2.0));
    assert_eq!(
        v.value("kafka_partition_replicas", &[("topic", TOPIC), ("partition", "0")]),
        Some(3.0)
    );
    assert_eq!(
        v.value(
            "kafka_topic_compliance_class_info",
            &[("topic", TOPIC), ("class", "exempt")]
        ),
        Some(1.0)
    );
    drop(admin_view);

    // A restarted exporter reuses the topic.
    drop(e);
    let e = exporter(&kafka);
    e.wait_for(Duration::from_secs(60), "deliveries after restart", |m| {
        total(m, "kafka_probe_records_delivered_in_time_total") >= 6.0
    });
    assert!(!e.logs().contains("creating the probe topic"), "topic must be reused");

    // Kill the leader of one partition (not broker 1, the only KRaft voter): the partition moves
    // to another leader and keeps delivering; nothing is counted twice.
    let m = e.scrape();
    let victim_partition = m
        .find("kafka_probe_partition_leader", &[])
        .iter()
        .find(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 3.0))
        .map(|s| s.labels.get("partition").unwrap().to_string())
        .expect("a partition led by broker 3");
    kafka.kill_broker(3);
    let before = counter(&e.scrape(), "kafka_probe_records_received_total", &victim_partition);
    let m = e.wait_for(Duration::from_secs(60), "new leader delivering", |m| {
        let leader = m.value(
            "kafka_probe_partition_leader",
            &[("partition", victim_partition.as_str())],
        );
        leader.is_some()
            && leader != Some(3.0)
            && counter(m, "kafka_probe_records_received_total", &victim_partition) >= before + 3.0
    });
    assert_accounting(&m);
    kafka.restart_broker(3).unwrap();
    let m = e.wait_for(Duration::from_secs(60), "probe healthy after restart", |m| {
        m.value("kafka_probe_up", &[("topic", TOPIC)]) == Some(1.0)
    });
    assert_accounting(&m);

    // The whole cluster down: the probe keeps sending, nothing is delivered, the exporter stays
    // up and says so.
    let delivered = total(&m, "kafka_probe_records_delivered_in_time_total");
    let produced = total(&m, "kafka_probe_records_produced_total");
    kafka.stop_all();
    let down = e.wait_for(Duration::from_secs(60), "probe down", |m| {
        m.value("kafka_probe_up", &[("topic", TOPIC)]) == Some(0.0)
            && total(m, "kafka_probe_records_produced_total") >= produced + 12.0
    });
    // Records in flight when the cluster stopped may still have arrived; after that, nothing.
    let d1 = total(&down, "kafka_probe_records_delivered_in_time_total");
    std::thread::sleep(Duration::from_secs(6));
    let later = e.scrape();
    assert_eq!(
        total(&later, "kafka_probe_records_delivered_in_time_total"),
        d1,
        "no delivery while the cluster is down"
    );
    assert!(total(&later, "kafka_probe_records_produced_total") > total(&down, "kafka_probe_records_produced_total"));
    assert!(d1 <= delivered + 12.0);
    let failed_or_lost =
        total(&later, "kafka_probe_records_failed_total") + total(&later, "kafka_probe_records_lost_total");
    assert!(
        failed_or_lost > 0.0,
        "undelivered records are counted as failed or lost"
    );
    assert_accounting(&later);
    assert_eq!(e.get("/-/healthy", None).0, 200);

    // Every documented probe family has been exported by now, and nothing undocumented.
    let exported: std::collections::BTreeSet<String> = later
        .samples
        .iter()
        .map(|s| s.metric.trim_end_matches("_count").trim_end_matches("_sum").to_string())
        .filter(|n| n.starts_with("kafka_probe_"))
        .collect();
    let documented: std::collections::BTreeSet<String> = common::documented_metrics()
        .into_iter()
        .filter(|n| n.starts_with("kafka_probe_"))
        .collect();
    assert_eq!(exported, documented);
    common::promtool_check_metrics(&later.text);
}
