//! The exporter against a real single-node Kafka (KRaft) started by the harness.

mod common;

use std::time::{Duration, Instant};

use common::{openmetrics_check, promtool_check_metrics, Exporter, Metrics};
use kafka_harness::{ClusterOptions, ConsumerOptions, KafkaCluster, Record};

fn config(bootstrap: &str, topic_allow: &str, interval: &str) -> String {
    format!(
        "global:\n  interval: {interval}\n  timeout: 2s\n  metrics: {{opt_in: ['.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: [\"{bootstrap}\"]\n    labels: {{env: test}}\n    topics:\n      allow: ['{topic_allow}']\n"
    )
}

fn cycles(m: &Metrics) -> f64 {
    m.value("kafka_slo_exporter_cycles_total", &[("cluster", "local")])
        .unwrap_or(0.0)
}

#[test]
fn reports_brokers_cluster_topics_and_partitions() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("t1.order.events", 3, 1, &[]).unwrap();
    kafka.create_topic("t1.payment.events", 2, 1, &[]).unwrap();
    kafka.create_topic("other.topic", 1, 1, &[]).unwrap();
    // A group behind by 6 records on one partition, so every group family is exported.
    let ts = kafka_harness::now_ms() - 60_000;
    let records: Vec<Record> = (0..10)
        .map(|i| Record::new(format!("r{i}")).with_timestamp(ts))
        .collect();
    kafka.produce("t1.order.events", 0, &records).unwrap();
    kafka.commit_offsets("t1-app", &[("t1.order.events", 0, 4)]).unwrap();
    let member = kafka
        .consuming_group("t1-live", &["t1.payment.events"], ConsumerOptions::default())
        .unwrap();
    member.wait_for_assignment(Duration::from_secs(30)).unwrap();

    let exporter = Exporter::start(&config(&kafka.bootstrap_servers(), "t1\\..*", "1s"), &[]);
    let m = exporter.wait_for(Duration::from_secs(30), "cluster up with topics", |m| {
        m.value("kafka_slo_exporter_cluster_up", &[("cluster", "local")]) == Some(1.0)
            && m.value("kafka_topic_partitions", &[("topic", "t1.payment.events")])
                .is_some()
    });

    let l = [("cluster", "local"), ("env", "test")];
    assert_eq!(m.value("kafka_brokers", &l), Some(1.0));
    assert_eq!(m.value("kafka_topics", &l), Some(2.0), "topic filter leaves two topics");
    assert_eq!(m.value("kafka_partitions", &l), Some(5.0));
    assert_eq!(
        m.value("kafka_topic_partitions", &[("topic", "t1.order.events")]),
        Some(3.0)
    );
    assert_eq!(
        m.value("kafka_topic_partitions", &[("topic", "t1.payment.events")]),
        Some(2.0)
    );
    assert_eq!(m.value("kafka_topic_partitions", &[("topic", "other.topic")]), None);

    let id = kafka.broker_ids()[0];
    let port = kafka.broker_port(id).to_string();
    let id_s = id.to_string();
    assert_eq!(m.value("kafka_cluster_controller_id", &l), Some(f64::from(id)));
    assert_eq!(
        m.value(
            "kafka_broker_info",
            &[
                ("broker_id", &id_s),
                ("host", "127.0.0.1"),
                ("port", &port),
                ("rack", "")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("kafka_broker_is_controller", &[("broker_id", &id_s)]),
        Some(1.0)
    );
    assert_eq!(
        m.value("kafka_cluster_info", &[("cluster_id", kafka.cluster_id())]),
        Some(1.0)
    );

    // Self-metrics are present for every stage and sane.
    for stage in [
        "cluster",
        "topics",
        "topic_configs",
        "offsets",
        "groups",
        "group_offsets",
        "time_lag",
    ] {
        let sl = [("cluster", "local"), ("stage", stage)];
        assert_eq!(m.value("kafka_slo_exporter_errors_total", &sl), Some(0.0), "{stage}");
        let d = m.value("kafka_slo_exporter_stage_duration_seconds", &sl).unwrap();
        assert!(d > 0.0 && d < 2.0, "{stage} took {d}");
        let age = m.value("kafka_slo_exporter_data_age_seconds", &sl).unwrap();
        assert!((0.0..5.0).contains(&age), "{stage} age {age}");
    }
    let last = m
        .value("kafka_slo_exporter_last_success_timestamp_seconds", &l)
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 10.0, "last success {last} vs now {now}");
    assert_eq!(m.find("kafka_slo_exporter_build_info", &[]).len(), 1);

    let (status, _, body) = exporter.get("/-/ready", None);
    assert_eq!(status, 200, "{body}");

    // The metrics reference is complete and has no leftovers: on a healthy cluster every
    // documented family is exported and every exported family is documented.
    let exported: std::collections::BTreeSet<String> = m.samples.iter().map(|s| s.metric.clone()).collect();
    let documented = common::documented_metrics();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    // Families that exist only after an event this test does not cause; each is asserted by the
    // test named here.
    let conditional = [
        // compliance_kafka::partition_count_increase_is_reported_and_survives_restart_with_state_dir
        "kafka_topic_partition_count_last_change_timestamp_seconds",
        // series_limit_kafka::series_over_the_limit_are_dropped_by_whole_families
        "kafka_slo_exporter_series_limit",
        "kafka_slo_exporter_series",
        "kafka_slo_exporter_dropped_series",
        "kafka_slo_exporter_series_dropped_total",
    ];
    // Families of features this test does not enable; their own tests check completeness
    // (probe_kafka::probe_measures_delivery_through_failures).
    // Schema Registry families (no registry configured here): registry_kafka checks them.
    let other_features = ["kafka_probe_", "kafka_schema_registry_", "kafka_topic_schema_"];
    let missing: Vec<_> = documented
        .difference(&exported)
        .filter(|m| !conditional.contains(&m.as_str()) && !other_features.iter().any(|p| m.starts_with(p)))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/metrics.md: {undocumented:?}"
    );
    assert!(missing.is_empty(), "documented but not exported: {missing:?}");
}

#[test]
fn output_is_valid_prometheus_text_and_openmetrics() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("t2.fmt.events", 2, 1, &[]).unwrap();
    let exporter = Exporter::start(&config(&kafka.bootstrap_servers(), "t2\\..*", "1s"), &[]);
    exporter.wait_for(Duration::from_secs(30), "topic visible", |m| {
        m.value("kafka_topic_partitions", &[("topic", "t2.fmt.events")])
            .is_some()
    });

    let (status, ct, text) = exporter.get("/metrics", None);
    assert_eq!(status, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    promtool_check_metrics(&text);
    assert!(!text.contains("# EOF"));

    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, ct, om) = exporter.get("/metrics", Some(accept));
    assert_eq!(status, 200);
    assert_eq!(ct, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(om.ends_with("# EOF\n"));
    openmetrics_check(&om);

    // Landing page and health.
    let (status, ct, html) = exporter.get("/", None);
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"));
    assert!(html.contains("href=\"/metrics\""));
    assert_eq!(exporter.get("/-/healthy", None).0, 200);
    assert_eq!(exporter.get("/nope", None).0, 404);
}

#[test]
fn deleted_topic_vanishes_within_one_cycle() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("t3.keep.events", 1, 1, &[]).unwrap();
    kafka.create_topic("t3.gone.events", 4, 1, &[]).unwrap();
    let exporter = Exporter::start(&config(&kafka.bootstrap_servers(), "t3\\..*", "1s"), &[]);
    exporter.wait_for(Duration::from_secs(30), "both topics", |m| {
        m.value("kafka_topic_partitions", &[("topic", "t3.gone.events")]) == Some(4.0)
            && m.value("kafka_topic_partitions", &[("topic", "t3.keep.events")])
                .is_some()
    });

    kafka.delete_topic("t3.gone.events").unwrap();
    // The cycle running at this moment may have read metadata before the deletion; the one
    // after it must not show the topic any more.
    let c0 = cycles(&exporter.scrape());
    let m = exporter.wait_for(Duration::from_secs(20), "two more cycles", |m| cycles(m) >= c0 + 2.0);
    assert_eq!(
        m.value("kafka_topic_partitions", &[("topic", "t3.gone.events")]),
        None,
        "{}",
        m.text
    );
    assert_eq!(
        m.value("kafka_topic_partitions", &[("topic", "t3.keep.events")]),
        Some(1.0)
    );
    assert_eq!(m.value("kafka_topics", &[("cluster", "local")]), Some(1.0));
}

#[test]
fn kafka_down_at_start_then_up_within_two_cycles() {
    let kafka = KafkaCluster::prepare(ClusterOptions::with_nodes(1)).unwrap();
    let exporter = Exporter::start(&config(&kafka.bootstrap_servers(), ".*", "1s"), &[]);

    // Kafka is not running: the exporter serves, says the cluster is down and is not ready.
    let m = exporter.wait_for(Duration::from_secs(20), "a failed cycle", |m| cycles(m) >= 2.0);
    assert_eq!(
        m.value("kafka_slo_exporter_cluster_up", &[("cluster", "local")]),
        Some(0.0)
    );
    assert!(
        m.value("kafka_slo_exporter_errors_total", &[("stage", "topics")])
            .unwrap()
            >= 1.0
    );
    assert!(m.find("kafka_brokers", &[]).is_empty(), "no Kafka data without Kafka");
    promtool_check_metrics(&m.text);
    assert_eq!(exporter.get("/-/ready", None).0, 503);
    assert_eq!(exporter.get("/-/healthy", None).0, 200);

    kafka.start().unwrap();
    let c0 = cycles(&exporter.scrape());
    let started = Instant::now();
    let m = exporter.wait_for(Duration::from_secs(30), "cluster up", |m| {
        m.value("kafka_slo_exporter_cluster_up", &[("cluster", "local")]) == Some(1.0)
    });
    let took = cycles(&m) - c0;
    assert!(
        took <= 2.0,
        "cluster up only after {took} cycles ({:?})",
        started.elapsed()
    );
    assert_eq!(m.value("kafka_brokers", &[("cluster", "local")]), Some(1.0));
    assert_eq!(exporter.get("/-/ready", None).0, 200);
}

#[test]
fn sigterm_shuts_down_promptly_even_with_kafka_unreachable() {
    // A port nobody listens on: collection cycles block in Kafka requests until their timeout.
    let exporter_cfg =
        "global: {interval: 1s, timeout: 10s}\nclusters:\n  - name: local\n    bootstrap_servers: ['127.0.0.1:9']\n";
    let mut exporter = Exporter::start(exporter_cfg, &["--shutdown.timeout", "2s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let status = exporter
        .terminate(Duration::from_secs(5))
        .expect("exporter must exit within 5s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "took {:?}", t.elapsed());
}

/// The same cluster watched twice in one exporter, once through each reader: the native reader
/// serves by default and says so, `reader: librdkafka` is honoured, both export the same
/// offsets and lag, and the native reader's requests are counted per API.
#[test]
fn both_readers_export_the_same_state_and_say_which_serves() {
    let kafka = KafkaCluster::shared_single();
    let topic = "rd.compare";
    kafka.create_topic(topic, 3, 1, &[]).unwrap();
    for p in 0..3 {
        let records: Vec<Record> = (0..(5 + p)).map(|i| Record::new(format!("r{i}"))).collect();
        kafka.produce(topic, p, &records).unwrap();
    }
    kafka.commit_offsets("rd-app", &[(topic, 0, 2), (topic, 1, 6)]).unwrap();
    let b = kafka.bootstrap_servers();
    let yaml = format!(
        "global:\n  interval: 1s\n  timeout: 5s\n  metrics: {{opt_in: ['.*']}}\n  topics: {{allow: ['rd\\..*']}}\n  groups: {{allow: ['rd-.*']}}\nclusters:\n  - name: native\n    bootstrap_servers: [\"{b}\"]\n  - name: rdk\n    bootstrap_servers: [\"{b}\"]\n    reader: librdkafka\n"
    );
    let exporter = Exporter::start(&yaml, &[]);
    let lag = |m: &Metrics, cluster: &str, p: &str| {
        m.value(
            "kafka_consumergroup_lag",
            &[("cluster", cluster), ("group", "rd-app"), ("partition", p)],
        )
    };
    let m = exporter.wait_for(Duration::from_secs(60), "lag from both readers", |m| {
        ["native", "rdk"]
            .iter()
            .all(|c| lag(m, c, "0").is_some() && lag(m, c, "1").is_some())
    });
    assert_eq!(
        m.labels_of("kafka_slo_exporter_kafka_reader_info")
            .into_iter()
            .map(|l| (l["cluster"].clone(), l["reader"].clone(), l["reason"].clone()))
            .collect::<std::collections::BTreeSet<_>>(),
        [
            ("native".to_string(), "native".to_string(), "default".to_string()),
            ("rdk".to_string(), "librdkafka".to_string(), "configured".to_string()),
        ]
        .into_iter()
        .collect()
    );
    for c in ["native", "rdk"] {
        assert_eq!((lag(&m, c, "0"), lag(&m, c, "1")), (Some(3.0), Some(0.0)), "{c}");
        for p in ["0", "1", "2"] {
            assert_eq!(
                m.value(
                    "kafka_partition_high_watermark",
                    &[("cluster", c), ("topic", topic), ("partition", p)]
                ),
                Some(5.0 + p.parse::<f64>().unwrap()),
                "{c} partition {p}"
            );
        }
    }
    let requests = |api: &str| {
        m.sum(
            "kafka_slo_exporter_kafka_requests_total",
            &[("cluster", "native"), ("api", api)],
        )
    };
    for api in [
        "ApiVersions",
        "Metadata",
        "ListOffsets",
        "ListGroups",
        "OffsetFetch",
        "DescribeConfigs",
    ] {
        assert!(requests(api).unwrap_or(0.0) >= 1.0, "{api} counted");
    }
    assert_eq!(
        m.sum("kafka_slo_exporter_kafka_requests_total", &[("cluster", "rdk")]),
        None,
        "librdkafka's requests are not counted by the exporter"
    );
}

/// One command, no file: `--kafka.bootstrap-servers` alone watches a real cluster with the
/// defaults, and the group's lag is served.
#[test]
fn one_flag_watches_a_cluster_without_a_file() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("qs.orders", 2, 1, &[]).unwrap();
    let records: Vec<Record> = (0..7).map(|i| Record::new(format!("r{i}"))).collect();
    kafka.produce("qs.orders", 1, &records).unwrap();
    kafka
        .commit_offsets("qs-app", &[("qs.orders", 0, 0), ("qs.orders", 1, 2)])
        .unwrap();
    let args: Vec<String> = [
        "--kafka.bootstrap-servers",
        &kafka.bootstrap_servers(),
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let exporter = Exporter::start_env(&args, &[]);
    let lag = |m: &Metrics, p: &str| {
        m.value(
            "kafka_consumergroup_lag",
            &[
                ("cluster", "kafka"),
                ("group", "qs-app"),
                ("topic", "qs.orders"),
                ("partition", p),
            ],
        )
    };
    let m = exporter.wait_for(Duration::from_secs(60), "qs-app's lag", |m| lag(m, "1").is_some());
    assert_eq!(lag(&m, "0"), Some(0.0));
    assert_eq!(lag(&m, "1"), Some(5.0));
    assert_eq!(m.value("kafka_brokers", &[("cluster", "kafka")]), Some(1.0));
}
