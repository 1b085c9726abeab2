//! Lag, time lag, group health and partition offsets measured against a real single-node Kafka.

mod common;

use std::time::Duration;

use common::{Exporter, Metrics};
use kafka_harness::{now_ms, ConsumerOptions, KafkaCluster, Record};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;

const HOUR_MS: i64 = 3_600_000;

/// An exporter watching only topics and groups with `prefix`, collecting every second.
fn exporter(kafka: &KafkaCluster, prefix: &str, extra: &str) -> Exporter {
    let cfg = format!(
        "global:\n  interval: 1s\n  timeout: 3s\n  metrics: {{opt_in: ['.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: [\"{}\"]\n    topics: {{allow: ['{prefix}\\..*']}}\n    groups: {{allow: ['{prefix}-.*']}}\n{extra}",
        kafka.bootstrap_servers()
    );
    Exporter::start(&cfg, &[])
}

fn records(n: usize, timestamp_ms: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("v{i}")).with_timestamp(timestamp_ms))
        .collect()
}

fn v(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m.value(name, labels)
}

#[test]
fn exact_offset_lag_with_sums_and_maxima() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l1.order.events", 3, 1, &[]).unwrap();
    let ts = now_ms();
    for (p, n) in [(0, 10), (1, 20), (2, 5)] {
        kafka.produce("l1.order.events", p, &records(n, ts)).unwrap();
    }
    kafka
        .commit_offsets(
            "l1-app",
            &[
                ("l1.order.events", 0, 4),
                ("l1.order.events", 1, 20),
                ("l1.order.events", 2, 0),
            ],
        )
        .unwrap();

    let e = exporter(kafka, "l1", "");
    let g = [("group", "l1-app"), ("topic", "l1.order.events")];
    let m = e.wait_for(Duration::from_secs(30), "lag of l1-app", |m| {
        v(m, "kafka_consumergroup_topic_lag", &g).is_some()
    });
    let p = |n: &'static str| [("group", "l1-app"), ("topic", "l1.order.events"), ("partition", n)];
    assert_eq!(v(&m, "kafka_consumergroup_lag", &p("0")), Some(6.0));
    assert_eq!(v(&m, "kafka_consumergroup_lag", &p("1")), Some(0.0));
    assert_eq!(v(&m, "kafka_consumergroup_lag", &p("2")), Some(5.0));
    assert_eq!(v(&m, "kafka_consumergroup_committed_offset", &p("0")), Some(4.0));
    assert_eq!(v(&m, "kafka_consumergroup_topic_lag", &g), Some(11.0));
    assert_eq!(v(&m, "kafka_consumergroup_topic_lag_max", &g), Some(6.0));
    assert_eq!(v(&m, "kafka_consumergroup_topic_lost_records", &g), Some(0.0));
    assert_eq!(v(&m, "kafka_consumergroup_topic_uncommitted_partitions", &g), Some(0.0));
    assert_eq!(v(&m, "kafka_consumergroup_members", &[("group", "l1-app")]), Some(0.0));
    assert_eq!(
        v(
            &m,
            "kafka_partition_high_watermark",
            &[("topic", "l1.order.events"), ("partition", "1")]
        ),
        Some(20.0)
    );
    assert_eq!(
        v(
            &m,
            "kafka_partition_log_start_offset",
            &[("topic", "l1.order.events"), ("partition", "1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        v(&m, "kafka_topic_high_watermarks", &[("topic", "l1.order.events")]),
        Some(35.0)
    );
    // An offsets-only group is listed as classic and empty.
    assert_eq!(
        m.find("kafka_consumergroup_info", &[("group", "l1-app"), ("state", "empty")])
            .len(),
        1
    );
    // Lag is never negative anywhere.
    assert!(m
        .find("kafka_consumergroup_lag", &[])
        .iter()
        .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(x) if x >= 0.0)));
}

#[test]
fn time_lag_from_record_timestamps_hours_in_the_past_with_idle_producer() {
    let kafka = KafkaCluster::shared_single();
    kafka
        .create_topic(
            "l2.audit.events",
            2,
            1,
            &[("retention.ms", &(48 * HOUR_MS).to_string())],
        )
        .unwrap();
    let now = now_ms();
    // p0: records 3 h and 1 h old; the group is at the 1 h old one. Nobody produces afterwards.
    kafka
        .produce("l2.audit.events", 0, &records(5, now - 3 * HOUR_MS))
        .unwrap();
    kafka.produce("l2.audit.events", 0, &records(5, now - HOUR_MS)).unwrap();
    // p1: the group is caught up.
    kafka
        .produce("l2.audit.events", 1, &records(3, now - 2 * HOUR_MS))
        .unwrap();
    kafka
        .commit_offsets("l2-app", &[("l2.audit.events", 0, 5), ("l2.audit.events", 1, 3)])
        .unwrap();

    let e = exporter(kafka, "l2", "");
    let p = |n: &'static str| [("group", "l2-app"), ("topic", "l2.audit.events"), ("partition", n)];
    let m = e.wait_for(Duration::from_secs(30), "time lag", |m| {
        m.find(
            "kafka_consumergroup_lag_seconds_method_info",
            &[("partition", "0"), ("group", "l2-app"), ("method", "record")],
        )
        .len()
            == 1
    });
    let expected = (now_ms() - (now - HOUR_MS)) as f64 / 1000.0;
    let got = v(&m, "kafka_consumergroup_lag_seconds", &p("0")).unwrap();
    let tolerance = (expected * 0.05).max(1.0);
    assert!(
        (got - expected).abs() <= tolerance,
        "time lag {got} s, expected {expected} s ± {tolerance}"
    );
    assert_eq!(
        v(&m, "kafka_consumergroup_lag_seconds", &p("1")),
        Some(0.0),
        "caught up is 0 despite old records"
    );
    assert_eq!(
        m.find(
            "kafka_consumergroup_lag_seconds_method_info",
            &[("group", "l2-app"), ("partition", "1"), ("method", "caught_up")]
        )
        .len(),
        1
    );
    let g = [("group", "l2-app"), ("topic", "l2.audit.events")];
    assert_eq!(v(&m, "kafka_consumergroup_topic_lag_seconds", &g), Some(got));
    let ratio = v(&m, "kafka_consumergroup_topic_retention_usage_ratio", &g).unwrap();
    assert!((ratio - got / (48.0 * 3600.0)).abs() < 1e-3, "{ratio}");

    // The producer stays idle: time lag keeps growing with wall time, from the cached read.
    std::thread::sleep(Duration::from_secs(3));
    let m2 = e.wait_for(Duration::from_secs(10), "a later cycle", |m2| {
        v(m2, "kafka_consumergroup_lag_seconds", &p("0")).is_some_and(|x| x >= got + 2.0)
    });
    let later = v(&m2, "kafka_consumergroup_lag_seconds", &p("0")).unwrap();
    assert!(later - got < 10.0, "grew by {} s", later - got);
    let reads = v(
        &m2,
        "kafka_slo_exporter_record_reads_total",
        &[("cluster", "local"), ("purpose", "time_lag")],
    )
    .unwrap();
    assert_eq!(reads, 1.0, "the record at (p0, 5) is read once and cached");
}

#[test]
fn classic_and_kip848_groups_both_appear_with_members() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l3.order.events", 2, 1, &[]).unwrap();
    kafka.produce("l3.order.events", 0, &records(5, now_ms())).unwrap();
    let classic = kafka
        .consuming_group("l3-classic", &["l3.order.events"], ConsumerOptions::default())
        .unwrap();
    let kip848 = kafka.supports_kip848_consumers();
    if !kip848 {
        eprintln!(
            "Kafka {}: no KIP-848 members (before 4.0); classic group only",
            kafka.version()
        );
    }
    let modern = kip848.then(|| {
        kafka
            .consuming_group("l3-kip848", &["l3.order.events"], ConsumerOptions::kip848())
            .unwrap()
    });
    classic.wait_for_assignment(Duration::from_secs(30)).unwrap();
    if let Some(modern) = &modern {
        modern.wait_for_assignment(Duration::from_secs(30)).unwrap();
    }

    let e = exporter(kafka, "l3", "");
    let m = e.wait_for(Duration::from_secs(30), "every group with its member", |m| {
        v(m, "kafka_consumergroup_members", &[("group", "l3-classic")]) == Some(1.0)
            && (!kip848 || v(m, "kafka_consumergroup_members", &[("group", "l3-kip848")]) == Some(1.0))
    });
    assert_eq!(
        m.find(
            "kafka_consumergroup_info",
            &[("group", "l3-classic"), ("type", "classic")]
        )
        .len(),
        1,
        "{}",
        m.text
    );
    let member = m.find("kafka_consumergroup_member_info", &[("group", "l3-classic")]);
    assert_eq!(member.len(), 1);
    assert_eq!(member[0].labels.get("assigned_partitions"), Some("2"));
    if kip848 {
        assert_eq!(
            m.find(
                "kafka_consumergroup_info",
                &[("group", "l3-kip848"), ("type", "consumer")]
            )
            .len(),
            1,
            "{}",
            m.text
        );
        let member = m.find("kafka_consumergroup_member_info", &[("group", "l3-kip848")]);
        assert_eq!(member.len(), 1);
        assert_eq!(member[0].labels.get("assigned_partitions"), Some("2"));
    }
    // Member and client ids never appear on lag series.
    for s in m.find("kafka_consumergroup_lag", &[]) {
        assert!(s.labels.get("member_id").is_none() && s.labels.get("client_id").is_none());
    }
}

#[test]
fn deleted_group_vanishes_within_one_cycle() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l4.order.events", 1, 1, &[]).unwrap();
    kafka.produce("l4.order.events", 0, &records(3, now_ms())).unwrap();
    kafka.commit_offsets("l4-gone", &[("l4.order.events", 0, 1)]).unwrap();
    kafka.commit_offsets("l4-kept", &[("l4.order.events", 0, 2)]).unwrap();
    let e = exporter(kafka, "l4", "");
    e.wait_for(Duration::from_secs(30), "both groups", |m| {
        v(m, "kafka_consumergroup_lag", &[("group", "l4-gone")]).is_some()
            && v(m, "kafka_consumergroup_lag", &[("group", "l4-kept")]).is_some()
    });
    kafka.delete_group("l4-gone").unwrap();
    let c0 = v(&e.scrape(), "kafka_slo_exporter_cycles_total", &[("cluster", "local")]).unwrap();
    let m = e.wait_for(Duration::from_secs(20), "two more cycles", |m| {
        v(m, "kafka_slo_exporter_cycles_total", &[("cluster", "local")]).unwrap() >= c0 + 2.0
    });
    assert!(
        m.find("kafka_consumergroup_info", &[("group", "l4-gone")]).is_empty(),
        "{}",
        m.text
    );
    assert!(m.find("kafka_consumergroup_lag", &[("group", "l4-gone")]).is_empty());
    assert!(m.find("kafka_consumergroup_status", &[("group", "l4-gone")]).is_empty());
    assert_eq!(v(&m, "kafka_consumergroup_lag", &[("group", "l4-kept")]), Some(1.0));
}

#[test]
fn open_transaction_shows_gap_until_committed() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l5.payment.events", 1, 1, &[]).unwrap();
    let producer: BaseProducer = kafka
        .client_config()
        .set("transactional.id", "l5-tx")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..4 {
        producer
            .send(
                BaseRecord::<str, str>::to("l5.payment.events")
                    .partition(0)
                    .payload(&format!("tx{i}")),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let e = exporter(kafka, "l5", "");
    let p = [("topic", "l5.payment.events"), ("partition", "0")];
    let m = e.wait_for(Duration::from_secs(30), "open transaction gap", |m| {
        v(m, "kafka_partition_open_transaction_offsets", &p).is_some_and(|x| x > 0.0)
    });
    assert_eq!(v(&m, "kafka_partition_last_stable_offset", &p), Some(0.0));
    assert_eq!(v(&m, "kafka_partition_high_watermark", &p), Some(4.0));
    assert_eq!(
        v(
            &m,
            "kafka_topic_open_transaction_offsets",
            &[("topic", "l5.payment.events")]
        ),
        Some(4.0)
    );

    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    let m = e.wait_for(Duration::from_secs(20), "gap closed", |m| {
        v(m, "kafka_partition_open_transaction_offsets", &p) == Some(0.0)
    });
    // The commit marker takes one offset: high watermark = last stable offset = 5.
    assert_eq!(v(&m, "kafka_partition_last_stable_offset", &p), Some(5.0));
}

#[test]
fn committed_offset_below_log_start_reports_lost_records() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l6.order.events", 1, 1, &[]).unwrap();
    kafka.produce("l6.order.events", 0, &records(20, now_ms())).unwrap();
    kafka.commit_offsets("l6-app", &[("l6.order.events", 0, 5)]).unwrap();
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("l6.order.events", 0, rdkafka::Offset::Offset(12))
        .unwrap();
    let rt = common::block_on(admin.delete_records(&tpl, &AdminOptions::new()));
    rt.expect("delete records");

    let e = exporter(kafka, "l6", "");
    let g = [("group", "l6-app"), ("topic", "l6.order.events")];
    let m = e.wait_for(Duration::from_secs(30), "lost records", |m| {
        v(m, "kafka_consumergroup_topic_lost_records", &g).is_some()
    });
    assert_eq!(v(&m, "kafka_consumergroup_topic_lost_records", &g), Some(7.0));
    assert_eq!(
        v(
            &m,
            "kafka_partition_log_start_offset",
            &[("topic", "l6.order.events"), ("partition", "0")]
        ),
        Some(12.0)
    );
    assert_eq!(v(&m, "kafka_consumergroup_topic_lag", &g), Some(15.0));
}

#[test]
fn stopped_consumer_is_reported_as_stop() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l7.order.events", 1, 1, &[]).unwrap();
    kafka.produce("l7.order.events", 0, &records(10, now_ms())).unwrap();
    // A consumer reads part of the topic and goes away; then more records arrive.
    let c = kafka
        .consuming_group("l7-app", &["l7.order.events"], ConsumerOptions::default())
        .unwrap();
    c.wait_for_consumed(10, Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(1200)); // let the last commit land
    c.stop();
    kafka.produce("l7.order.events", 0, &records(10, now_ms())).unwrap();

    let e = exporter(
        kafka,
        "l7",
        "    lag: {status_window: 4s, status_min_observations: 3}\n",
    );
    let ok = e.wait_for(Duration::from_secs(30), "status known", |m| {
        m.find("kafka_consumergroup_status", &[("group", "l7-app")]).len() == 5
    });
    assert_eq!(v(&ok, "kafka_consumergroup_lag", &[("group", "l7-app")]), Some(10.0));
    let m = e.wait_for(Duration::from_secs(30), "status stop", |m| {
        v(
            m,
            "kafka_consumergroup_status",
            &[("group", "l7-app"), ("status", "stop")],
        ) == Some(1.0)
    });
    for other in ["ok", "warn", "stall", "rewind"] {
        assert_eq!(
            v(
                &m,
                "kafka_consumergroup_status",
                &[("group", "l7-app"), ("status", other)]
            ),
            Some(0.0)
        );
    }
}

#[test]
fn topic_granularity_drops_partition_series() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("l8.order.events", 4, 1, &[]).unwrap();
    kafka.produce("l8.order.events", 0, &records(8, now_ms())).unwrap();
    kafka.commit_offsets("l8-app", &[("l8.order.events", 0, 2)]).unwrap();
    let e = exporter(kafka, "l8", "    lag: {granularity: topic}\n");
    let m = e.wait_for(Duration::from_secs(30), "topic lag", |m| {
        v(m, "kafka_consumergroup_topic_lag", &[("group", "l8-app")]) == Some(6.0)
    });
    assert!(m.find("kafka_consumergroup_lag", &[]).is_empty());
    assert!(m.find("kafka_partition_high_watermark", &[]).is_empty());
    assert_eq!(
        v(
            &m,
            "kafka_topic_under_replicated_partitions",
            &[("topic", "l8.order.events")]
        ),
        Some(0.0)
    );
}
