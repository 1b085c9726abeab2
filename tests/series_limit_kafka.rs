//! The series budget against a real Kafka: the default selection of families (aggregates,
//! per-partition group lag, per-partition state only where a partition has a problem), the
//! `--metric-*` flags over it, and the series limit (`global.max_series`) with many partitions.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Exporter, Metrics};
use kafka_harness::{KafkaCluster, Record};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPICS: usize = 30;
const PARTITIONS: usize = 8;
const LIMIT: usize = 400;

fn config(kafka: &KafkaCluster, limit: Option<usize>) -> String {
    let limit = limit.map(|l| format!("  max_series: {l}\n")).unwrap_or_default();
    format!(
        "global:\n  interval: 1s\n{limit}  topics: {{allow: ['sl\\..*']}}\n  groups: {{allow: ['sl-.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: {}\n",
        common::bootstrap_yaml(kafka)
    )
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{} is not a plain sample", s.metric),
    }
}

/// Samples of the Kafka state families (what the limit counts), by sample name.
fn kafka_state(m: &Metrics) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in &m.samples {
        if !s.metric.starts_with("kafka_slo_exporter_") {
            *out.entry(s.metric.clone()).or_default() += 1;
        }
    }
    out
}

#[test]
fn series_over_the_limit_are_dropped_by_whole_families() {
    let kafka = KafkaCluster::shared_single();
    for i in 0..TOPICS {
        kafka
            .create_topic(&format!("sl.t{i:02}"), PARTITIONS as i32, 1, &[])
            .unwrap();
    }
    let commits: Vec<(String, i32, i64)> = (0..TOPICS)
        .flat_map(|i| (0..PARTITIONS as i32).map(move |p| (format!("sl.t{i:02}"), p, 0)))
        .collect();
    let refs: Vec<(&str, i32, i64)> = commits.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
    kafka.commit_offsets("sl-billing", &refs).unwrap();
    let ready = |m: &Metrics| {
        m.value("kafka_topics", &[]) == Some(TOPICS as f64)
            && m.value("kafka_slo_exporter_cluster_up", &[]) == Some(1.0)
    };

    // The reference: the same cluster without a limit.
    let free = Exporter::start(&config(kafka, None), &[]);
    let all = free.wait_for(Duration::from_secs(60), "every topic without a limit", |m| {
        ready(m) && m.find("kafka_consumergroup_lag", &[]).len() == TOPICS * PARTITIONS
    });
    assert!(
        all.find("kafka_slo_exporter_series", &[]).is_empty(),
        "no guard series without a limit"
    );
    let unlimited = kafka_state(&all);
    let total: usize = unlimited.values().sum();
    assert!(total > LIMIT, "the workload must exceed the limit: {total} series");
    drop(free);

    let e = Exporter::start(&config(kafka, Some(LIMIT)), &[]);
    let m = e.wait_for(Duration::from_secs(60), "every topic with a limit", |m| {
        ready(m) && m.value("kafka_slo_exporter_series", &[]).is_some()
    });
    let kept = kafka_state(&m);
    let kept_total: usize = kept.values().sum();
    assert_eq!(m.value("kafka_slo_exporter_series_limit", &[]), Some(LIMIT as f64));
    assert_eq!(m.value("kafka_slo_exporter_series", &[]), Some(kept_total as f64));
    assert!(kept_total <= LIMIT, "{kept_total} series over the limit {LIMIT}");

    // Whole families are gone, and each dropped family is counted with its full size.
    let dropped: BTreeMap<String, f64> = m
        .find("kafka_slo_exporter_dropped_series", &[])
        .iter()
        .map(|s| (s.labels.get("family").unwrap().to_string(), value(s)))
        .collect();
    assert!(!dropped.is_empty());
    for (family, n) in &dropped {
        assert!(
            !kept.keys().any(|k| k == family
                || k.strip_suffix("_total") == Some(family)
                || k.strip_suffix("_info") == Some(family)),
            "family {family} is dropped but still exported"
        );
        let reference = unlimited
            .iter()
            .filter(|(k, _)| {
                *k == family || k.strip_suffix("_total") == Some(family) || k.strip_suffix("_info") == Some(family)
            })
            .map(|(_, v)| *v)
            .sum::<usize>();
        assert_eq!(
            *n, reference as f64,
            "{family}: dropped count vs its size without a limit"
        );
    }
    // Largest first: every kept family is no larger than the smallest dropped one.
    let smallest_dropped = dropped.values().cloned().fold(f64::INFINITY, f64::min);
    for (name, n) in &kept {
        assert!(
            *n as f64 <= smallest_dropped,
            "{name} ({n}) kept while a smaller family was dropped"
        );
    }
    // The per-partition group lag is among the largest families; the aggregates stay.
    assert!(dropped.contains_key("kafka_consumergroup_lag"), "{dropped:?}");
    assert_eq!(m.value("kafka_brokers", &[]), Some(1.0));
    assert_eq!(m.value("kafka_partitions", &[]), Some((TOPICS * PARTITIONS) as f64));
    let counted: f64 = m
        .find("kafka_slo_exporter_series_dropped_total", &[])
        .iter()
        .map(|s| value(s))
        .sum();
    assert!(counted >= dropped.values().sum::<f64>(), "dropped_total {counted}");

    // Both formats stay valid, and the choice is the same on every scrape.
    common::promtool_check_metrics(&m.text);
    let (status, _, om) = e.get("/metrics", Some("application/openmetrics-text; version=1.0.0"));
    assert_eq!(status, 200);
    common::openmetrics_check(&om);
    assert!(!om.contains("kafka_consumergroup_lag{"), "dropped in OpenMetrics too");
    // The gzip path (what Prometheus asks for) applies the same plan to its cached parts.
    let resp = ureq::get(&e.url("/metrics"))
        .set("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    let mut gz = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut gz).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let zipped = Metrics::parse(&text);
    assert!(zipped.find("kafka_consumergroup_lag", &[]).is_empty());
    assert!(kafka_state(&zipped).values().sum::<usize>() <= LIMIT);
    common::promtool_check_metrics(&text);
    let again = e.scrape();
    let dropped_again: Vec<String> = again
        .find("kafka_slo_exporter_dropped_series", &[])
        .iter()
        .map(|s| s.labels.get("family").unwrap().to_string())
        .collect();
    assert_eq!(dropped_again, dropped.keys().cloned().collect::<Vec<_>>());
    assert!(
        e.logs().contains("series over global.max_series"),
        "a warning is logged"
    );
}

fn budget_config(kafka: &KafkaCluster) -> String {
    format!(
        "global:\n  interval: 1s\n  topics: {{allow: ['sd\\..*']}}\n  groups: {{allow: ['sd-.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: {}\n",
        common::bootstrap_yaml(kafka)
    )
}

/// With the defaults, a healthy partition shows no per-partition state and a partition held
/// back by an open transaction shows its state; the group's lag is per partition; aggregates
/// are complete. The flags then opt families in and deny one.
#[test]
fn defaults_serve_aggregates_lag_and_problem_partitions_only() {
    const PARTITIONS: i32 = 4;
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("sd.orders", PARTITIONS, 1, &[]).unwrap();
    kafka.create_topic("sd.payments", 1, 1, &[]).unwrap();
    let records: Vec<Record> = (0..3).map(|i| Record::new(format!("r{i}"))).collect();
    kafka.produce("sd.orders", 0, &records).unwrap();
    let commits: Vec<(&str, i32, i64)> = (0..PARTITIONS).map(|p| ("sd.orders", p, 0)).collect();
    kafka.commit_offsets("sd-app", &commits).unwrap();
    // sd.payments/0 holds an open transaction: its last stable offset lags its high watermark.
    let producer: BaseProducer = kafka
        .client_config()
        .set("transactional.id", "sd-tx")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..2 {
        producer
            .send(
                BaseRecord::<str, str>::to("sd.payments")
                    .partition(0)
                    .payload(&format!("tx{i}")),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let e = Exporter::start(&budget_config(kafka), &[]);
    let m = e.wait_for(
        Duration::from_secs(60),
        "lag of every partition and the open transaction",
        |m| {
            m.find("kafka_consumergroup_lag", &[("group", "sd-app")]).len() == PARTITIONS as usize
                && m.value("kafka_topic_open_transaction_offsets", &[("topic", "sd.payments")]) == Some(2.0)
        },
    );
    let orders = [("topic", "sd.orders")];
    assert_eq!(
        m.value(
            "kafka_consumergroup_lag",
            &[("group", "sd-app"), ("topic", "sd.orders"), ("partition", "0")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.value(
            "kafka_consumergroup_topic_lag",
            &[("group", "sd-app"), ("topic", "sd.orders")]
        ),
        Some(3.0)
    );
    assert_eq!(m.value("kafka_topic_high_watermarks", &orders), Some(3.0));
    assert_eq!(m.value("kafka_topic_under_replicated_partitions", &orders), Some(0.0));
    // Off by default.
    for family in [
        "kafka_partition_high_watermark",
        "kafka_partition_log_start_offset",
        "kafka_consumergroup_committed_offset",
    ] {
        assert!(m.find(family, &[]).is_empty(), "{family} is off by default");
    }
    // Problems only: nothing of the healthy topic, everything of the partition with the open
    // transaction.
    for family in [
        "kafka_partition_leader",
        "kafka_partition_in_sync_replicas",
        "kafka_partition_under_replicated",
        "kafka_partition_last_stable_offset",
    ] {
        assert!(m.find(family, &orders).is_empty(), "{family} of a healthy partition");
    }
    let payments = [("topic", "sd.payments"), ("partition", "0")];
    assert_eq!(
        m.value("kafka_partition_open_transaction_offsets", &payments),
        Some(2.0)
    );
    assert_eq!(m.value("kafka_partition_last_stable_offset", &payments), Some(0.0));
    assert_eq!(m.value("kafka_partition_under_replicated", &payments), Some(0.0));
    assert!(m.value("kafka_partition_leader", &payments).is_some());
    // Leaders per broker replace the per-partition leader for the distribution.
    let led: f64 = m
        .find("kafka_broker_leader_partitions", &[])
        .iter()
        .map(|s| value(s))
        .sum();
    assert_eq!(led, f64::from(PARTITIONS + 1));
    // The current status only.
    let status = m.find("kafka_consumergroup_status", &[("group", "sd-app")]);
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(value(status[0]), 1.0);
    drop(e);
    producer.abort_transaction(Duration::from_secs(30)).unwrap();

    let e = Exporter::start(
        &budget_config(kafka),
        &[
            "--metric-opt-in-list",
            "kafka_partition_high_watermark,kafka_partition_leader,kafka_consumergroup_status",
            "--metric-denylist",
            "kafka_consumergroup_lag",
        ],
    );
    let m = e.wait_for(Duration::from_secs(60), "opted-in families", |m| {
        m.find("kafka_partition_high_watermark", &orders).len() == PARTITIONS as usize
    });
    assert_eq!(m.find("kafka_partition_leader", &orders).len(), PARTITIONS as usize);
    assert_eq!(m.find("kafka_consumergroup_status", &[("group", "sd-app")]).len(), 5);
    assert!(m.find("kafka_consumergroup_lag", &[]).is_empty(), "denied");
    assert!(m
        .value(
            "kafka_consumergroup_topic_lag",
            &[("group", "sd-app"), ("topic", "sd.orders")]
        )
        .is_some());
    common::promtool_check_metrics(&m.text);
}
