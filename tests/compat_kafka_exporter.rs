//! The kafka_exporter compatibility output (`global.compat: [kafka_exporter]`,
//! `/kafka_exporter/metrics`) against a real Kafka and a real Prometheus 3: the published
//! queries of two dashboards written for danielqsj/kafka_exporter, with their variables
//! substituted as Grafana does, return exactly the values kafka_exporter v1.9.0 would report
//! for the staged topics and groups.
//!
//! Queries are copied verbatim (only the variables substituted) from:
//! - [STRIMZI] strimzi/strimzi-kafka-operator, commit 8541da1e336bdcda9647aeacfbc2048e57580a52,
//!   `packaging/examples/metrics/grafana-dashboards/strimzi-kafka-exporter.json`;
//! - [OBSERV] grafana/jsonnet-libs, commit 6da2b4b82e73d1918023586430e00c7ab56976fd,
//!   `kafka-observ-lib/dashboards_out/kafka-topic-dashboard.json` (dashboard panels) and
//!   `kafka-observ-lib/prometheus_rules_out/prometheus_alerts.yaml` (alerts).
//!
//! Prometheus scrapes the compatibility path in a job whose targets carry `namespace` and
//! `strimzi_io_cluster`, as a Strimzi PodMonitor adds them, and `/metrics` in a second job from
//! the same exporter: the queries must select only the compatible series. The mixin's cluster
//! label `kafka_cluster` is a constant label of the cluster in the exporter's configuration.

mod common;
mod tools;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bootstrap_yaml, openmetrics_check, Exporter, Metrics, Proc};
use kafka_harness::{ClusterOptions, KafkaCluster, Record};
use serde_json::Value;

const NAMESPACE: &str = "kafka";
const STRIMZI_CLUSTER: &str = "my-cluster";
const KAFKA_CLUSTER: &str = "prod";
const COMPAT_PATH: &str = "/kafka_exporter/metrics";
/// What Grafana sends for the multi-value variables with every value selected: a regex
/// alternative of the values (Strimzi's `consumergroup` has no custom "All" value, its `topic`
/// has `.*`; the mixin's variables are substituted with the values).
const GROUPS: &str = "(audit|billing)";
const TOPICS: &str = "(orders|payments)";
/// `$__rate_interval` for a 1 s scrape interval.
const RATE_INTERVAL: &str = "15s";

/// A panel or alert: its title, its expression, and the expected series (keys as [`query`]
/// writes them) with their values.
type Panel<K> = (&'static str, &'static str, Vec<(K, f64)>);

/// Records produced per partition: `orders` 0..2, then `payments` 0.
const ORDERS: [i64; 3] = [10, 20, 5];
const PAYMENTS: i64 = 150;

fn exporter_config(bootstrap: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 5s\n  compat: [kafka_exporter]\n  topics: {{deny: ['__.*']}}\n\
         clusters:\n  - name: local\n    bootstrap_servers: {bootstrap}\n    labels: {{kafka_cluster: {KAFKA_CLUSTER}}}\n"
    )
}

fn start_prometheus(dir: &Path, exporter: &str) -> (Proc, u16) {
    let cfg = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n\
         \x20 - job_name: kafka-exporter\n    metrics_path: {COMPAT_PATH}\n\
         \x20   static_configs: [{{targets: ['{exporter}'], labels: {{namespace: {NAMESPACE}, strimzi_io_cluster: {STRIMZI_CLUSTER}}}}}]\n\
         \x20 - job_name: kafka-slo-exporter\n    static_configs: [{{targets: ['{exporter}']}}]\n"
    );
    common::start_prometheus(&tools::prometheus3(), dir, &cfg, &[])
}

fn api(port: u16, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
    let mut req = ureq::get(&format!("http://127.0.0.1:{port}{path}")).timeout(Duration::from_secs(10));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let body = req
        .call()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(body);
    }
    Ok(v["data"].clone())
}

/// An instant query's result as `label=value,...` (sorted, `__name__` left out) → value.
fn query(port: u16, expr: &str) -> Result<BTreeMap<String, f64>, String> {
    let data = api(port, "/api/v1/query", &[("query", expr)])?;
    let mut out = BTreeMap::new();
    for s in data["result"].as_array().cloned().unwrap_or_default() {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(s["metric"].clone()).map_err(|e| e.to_string())?;
        let key: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let value: f64 = s["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no value in {s}"))?;
        out.insert(key.join(","), value);
    }
    Ok(out)
}

/// Polls `expr` until it returns exactly `expected` (series keys as [`query`] makes them).
fn expect_query(port: u16, source: &str, expr: &str, expected: &[(&str, f64)]) {
    let want: BTreeMap<String, f64> = expected.iter().map(|(k, v)| (sorted_key(k), *v)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = query(port, expr);
        if got.as_ref() == Ok(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{source}: {expr}\n  expected {want:?}\n  got      {got:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `k=v,...` with the pairs sorted by label name, as [`query`] writes them.
fn sorted_key(key: &str) -> String {
    let mut pairs: Vec<&str> = key.split(',').filter(|p| !p.is_empty()).collect();
    pairs.sort();
    pairs.join(",")
}

/// A `label_values(selector, label)` variable query, as Grafana runs it.
fn label_values(port: u16, selector: &str, label: &str) -> Vec<String> {
    let data = api(port, &format!("/api/v1/label/{label}/values"), &[("match[]", selector)]).unwrap();
    serde_json::from_value(data).unwrap()
}

/// A `query_result(expr)` variable with a regex extracting one label, as Grafana runs it: the
/// distinct captures over the series' text form.
fn query_result_regex(port: u16, expr: &str, label: &str) -> Vec<String> {
    let data = api(port, "/api/v1/query", &[("query", expr)]).unwrap();
    let mut out: Vec<String> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"][label].as_str().map(String::from))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Stages the topics and the groups' commits: `billing` has committed on `orders` partitions 0
/// and 1 but not 2, `audit` on `payments`.
fn stage(kafka: &KafkaCluster) {
    kafka.create_topic("orders", 3, 1, &[]).unwrap();
    kafka.create_topic("payments", 1, 1, &[]).unwrap();
    for (p, n) in ORDERS.iter().enumerate() {
        let records: Vec<Record> = (0..*n).map(|i| Record::new(format!("o{i}"))).collect();
        kafka.produce("orders", p as i32, &records).unwrap();
    }
    let records: Vec<Record> = (0..PAYMENTS).map(|i| Record::new(format!("p{i}"))).collect();
    kafka.produce("payments", 0, &records).unwrap();
    kafka
        .commit_offsets("billing", &[("orders", 0, 4), ("orders", 1, 20)])
        .unwrap();
    kafka.commit_offsets("audit", &[("payments", 0, 1)]).unwrap();
}

/// `promtool check metrics` (2.x) finds nothing but its lint of kafka_exporter's two `_sum`
/// gauge names, which dashboards query and so are kept.
fn promtool_check(text: &str) {
    let (_, report) = common::promtool_report(text);
    let mut findings: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    findings.sort();
    let suffix = "non-histogram and non-summary metrics should not have \"_sum\" suffix";
    assert_eq!(
        findings,
        [
            format!("kafka_consumergroup_current_offset_sum {suffix}"),
            format!("kafka_consumergroup_lag_sum {suffix}"),
        ],
        "promtool check metrics on:\n{text}"
    );
}

/// The compatibility output parses with promtool, the reference OpenMetrics parser and
/// prometheus-parse, and holds the staged values once a cycle has read them.
fn check_output(exporter: &Exporter) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (status, _, body) = exporter.get(COMPAT_PATH, None);
        assert_eq!(status, 200, "{body}");
        let m = Metrics::parse(&body);
        let lag = [("consumergroup", "audit"), ("topic", "payments"), ("partition", "0")];
        if m.value("kafka_consumergroup_lag", &lag) == Some(149.0) {
            promtool_check(&body);
            break m;
        }
        assert!(Instant::now() < deadline, "compat output never complete:\n{body}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let (_, content_type, body) = exporter.get(COMPAT_PATH, Some("application/openmetrics-text;version=1.0.0"));
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    openmetrics_check(&body);
    metrics
}

#[test]
fn dashboards_written_for_kafka_exporter_read_the_compat_output() {
    let kafka = KafkaCluster::start_new(ClusterOptions::default()).expect("Kafka");
    stage(&kafka);
    let exporter = Exporter::start(&exporter_config(&bootstrap_yaml(&kafka)), &[]);

    let m = check_output(&exporter);
    let billing = |p: &'static str| [("consumergroup", "billing"), ("topic", "orders"), ("partition", p)];
    assert_eq!(m.value("kafka_consumergroup_current_offset", &billing("2")), Some(-1.0));
    assert_eq!(m.value("kafka_consumergroup_lag", &billing("2")), Some(-1.0));
    assert_eq!(m.value("kafka_brokers", &[("cluster", "local")]), Some(1.0));
    // The main output keeps its own names: no kafka_exporter family with its labels there.
    let main = exporter.scrape();
    assert!(main.find("kafka_consumergroup_current_offset", &[]).is_empty());
    assert!(main
        .labels_of("kafka_consumergroup_lag")
        .iter()
        .all(|l| !l.contains_key("consumergroup")));

    let dir = tempfile::tempdir().unwrap();
    let (_prom, port) = start_prometheus(dir.path(), &exporter.addr.to_string());
    strimzi_queries(port);
    observ_lib_queries(port);
}

/// [STRIMZI]: the variables, then every panel target, in the dashboard's order.
fn strimzi_queries(port: u16) {
    // Variables kubernetes_namespace and strimzi_cluster_name: query_result with a regex.
    let deadline = Instant::now() + Duration::from_secs(60);
    while query_result_regex(port, "kafka_broker_info", "namespace").is_empty() {
        assert!(Instant::now() < deadline, "kafka_broker_info never scraped");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(query_result_regex(port, "kafka_broker_info", "namespace"), [NAMESPACE]);
    let q = format!("kafka_broker_info{{namespace=\"{NAMESPACE}\"}}");
    assert_eq!(query_result_regex(port, &q, "strimzi_io_cluster"), [STRIMZI_CLUSTER]);
    let sel = format!("{{namespace=\"{NAMESPACE}\",strimzi_io_cluster=\"{STRIMZI_CLUSTER}\"}}");
    let groups = label_values(
        port,
        &format!("kafka_consumergroup_current_offset{sel}"),
        "consumergroup",
    );
    assert_eq!(groups, ["audit", "billing"]);
    let topics = label_values(port, &format!("kafka_topic_partition_current_offset{sel}"), "topic");
    assert_eq!(topics, ["orders", "payments"]);

    let vars = |e: &str| {
        e.replace("$kubernetes_namespace", NAMESPACE)
            .replace("$consumergroup", GROUPS)
            .replace("$topic", ".*")
    };
    let zero = |k: &'static str| (k, 0.0);
    let panels: Vec<Panel<&str>> = vec![
        (
            "Topics",
            r#"count(kafka_topic_partitions{topic=~"$topic", namespace=~"$kubernetes_namespace"})"#,
            vec![("", 2.0)],
        ),
        (
            "Partitions",
            r#"sum(kafka_topic_partitions{topic=~"$topic", namespace=~"$kubernetes_namespace"})"#,
            vec![("", 4.0)],
        ),
        (
            "Replicas",
            r#"sum(kafka_topic_partition_replicas{topic=~"$topic", namespace="$kubernetes_namespace"})"#,
            vec![("", 4.0)],
        ),
        (
            "In Sync Replicas",
            r#"sum(kafka_topic_partition_in_sync_replica{topic=~"$topic", namespace=~"$kubernetes_namespace"})"#,
            vec![("", 4.0)],
        ),
        (
            "Under Replicated Partitions",
            r#"sum(kafka_topic_partition_under_replicated_partition{topic=~"$topic", namespace=~"$kubernetes_namespace"})"#,
            vec![("", 0.0)],
        ),
        // Two panels read the brokers' JMX metrics (kafka_cluster_partition_atminisr and
        // _underminisr), which no kafka_exporter serves: empty with kafka_exporter too.
        (
            "Partitions at minimum ISR",
            r#"sum(kafka_cluster_partition_atminisr{topic=~"$topic", namespace=~"$kubernetes_namespace"})"#,
            vec![],
        ),
        (
            "Partitions under minimum ISR",
            r#"sum(kafka_cluster_partition_underminisr{topic=~"$topic", namespace=~"$kubernetes_namespace"})"#,
            vec![],
        ),
        (
            "Partitions not on preferred node",
            r#"sum(kafka_topic_partition_leader_is_preferred{topic=~"$topic", namespace=~"$kubernetes_namespace"} < bool 1)"#,
            vec![("", 0.0)],
        ),
        // Nothing is produced or consumed while Prometheus scrapes.
        (
            "Messages in per second",
            r#"sum(rate(kafka_topic_partition_current_offset{topic=~"$topic", namespace=~"$kubernetes_namespace"}[5m])) by (topic)"#,
            vec![zero("topic=orders"), zero("topic=payments")],
        ),
        (
            "Messages consumed per second",
            r#"sum(delta(kafka_consumergroup_current_offset{consumergroup=~"$consumergroup",topic=~"$topic", namespace=~"$kubernetes_namespace"}[5m])/300) by (consumergroup, topic)"#,
            vec![
                zero("consumergroup=audit,topic=payments"),
                zero("consumergroup=billing,topic=orders"),
            ],
        ),
        // kafka_exporter's -1 of billing's uncommitted partition 2 is in the sum: 6 + 0 - 1.
        (
            "Lag by  Consumer Group",
            r#"sum(kafka_consumergroup_lag{consumergroup=~"$consumergroup",topic=~"$topic", namespace=~"$kubernetes_namespace"}) by (consumergroup, topic)"#,
            vec![
                ("consumergroup=audit,topic=payments", 149.0),
                ("consumergroup=billing,topic=orders", 5.0),
            ],
        ),
        (
            "Consumer Group Offsets",
            r#"sum(kafka_consumergroup_current_offset{consumergroup=~"$consumergroup",topic=~"$topic", namespace=~"$kubernetes_namespace"}) by (consumergroup,partition,topic)"#,
            vec![
                ("consumergroup=audit,partition=0,topic=payments", 1.0),
                ("consumergroup=billing,partition=0,topic=orders", 4.0),
                ("consumergroup=billing,partition=1,topic=orders", 20.0),
                ("consumergroup=billing,partition=2,topic=orders", -1.0),
            ],
        ),
        (
            "Consumer Group Lag",
            r#"sum(kafka_consumergroup_lag{consumergroup=~"$consumergroup",topic=~"$topic", namespace=~"$kubernetes_namespace"}) by (consumergroup,partition,topic)"#,
            vec![
                ("consumergroup=audit,partition=0,topic=payments", 149.0),
                ("consumergroup=billing,partition=0,topic=orders", 6.0),
                ("consumergroup=billing,partition=1,topic=orders", 0.0),
                ("consumergroup=billing,partition=2,topic=orders", -1.0),
            ],
        ),
        (
            "Number of Partitions",
            r#"sum(kafka_topic_partitions{topic=~"$topic", namespace=~"$kubernetes_namespace"}) by (topic)"#,
            vec![("topic=orders", 3.0), ("topic=payments", 1.0)],
        ),
        (
            "Latest Offsets",
            r#"sum(kafka_topic_partition_current_offset{topic=~"$topic", namespace=~"$kubernetes_namespace"}) by (partition,topic)"#,
            vec![
                ("partition=0,topic=orders", 10.0),
                ("partition=1,topic=orders", 20.0),
                ("partition=2,topic=orders", 5.0),
                ("partition=0,topic=payments", 150.0),
            ],
        ),
        (
            "Oldest Offsets",
            r#"sum(kafka_topic_partition_oldest_offset{topic=~"$topic", namespace=~"$kubernetes_namespace"}) by (partition,topic)"#,
            vec![
                zero("partition=0,topic=orders"),
                zero("partition=1,topic=orders"),
                zero("partition=2,topic=orders"),
                zero("partition=0,topic=payments"),
            ],
        ),
    ];
    for (title, expr, expected) in panels {
        expect_query(port, &format!("[STRIMZI] panel {title:?}"), &vars(expr), &expected);
    }
}

/// [OBSERV]: the consumer group variable, the panels reading kafka_exporter families, and the
/// two lag alerts.
fn observ_lib_queries(port: u16) {
    let vars = |e: &str| {
        e.replace("$kafka_cluster", KAFKA_CLUSTER)
            .replace("$topic", TOPICS)
            .replace("$consumergroup", GROUPS)
            .replace("$__rate_interval", RATE_INTERVAL)
    };
    // Its cluster and topic variables read brokers' JMX metrics; the values are set as a user
    // would pick them.
    let groups = label_values(
        port,
        &vars(
            r#"{__name__=~"kafka_consumergroup_lag|kafka_consumergroup_uncommitted_offsets",topic!="__consumer_offsets",consumergroup!="",kafka_cluster=~"$kafka_cluster",topic=~"$topic"}"#,
        ),
        "consumergroup",
    );
    assert_eq!(groups, ["audit", "billing"], "[OBSERV] variable consumergroup");

    let c = |rest: &str| format!("kafka_cluster={KAFKA_CLUSTER},{rest}");
    let lag_by_topic = vec![
        (c("consumergroup=audit,topic=payments"), 149.0),
        (c("consumergroup=billing,topic=orders"), 5.0),
    ];
    let rates_by_group = vec![
        (c("consumergroup=audit,topic=payments"), 0.0),
        (c("consumergroup=billing,topic=orders"), 0.0),
    ];
    let by_partition: Vec<(String, f64)> = [
        "partition=0,topic=orders",
        "partition=1,topic=orders",
        "partition=2,topic=orders",
        "partition=0,topic=payments",
    ]
    .iter()
    .map(|k| (c(k), 0.0))
    .collect();
    let by_topic = vec![(c("topic=orders"), 0.0), (c("topic=payments"), 0.0)];
    let panels: Vec<Panel<String>> = vec![
        ("Topic overview", "sum by (kafka_cluster,topic,partition) (\n  rate(kafka_topic_partition_current_offset{topic!=\"__consumer_offsets\",kafka_cluster=~\"$kafka_cluster\",topic=~\"$topic\"}[$__rate_interval])\n)", by_partition),
        ("Messages in per second", "sum by (kafka_cluster,topic) (\n  rate(kafka_topic_partition_current_offset{topic!=\"__consumer_offsets\",kafka_cluster=~\"$kafka_cluster\",topic=~\"$topic\"}[$__rate_interval])\n)", by_topic),
        ("Consumer group consume rate", "avg by (kafka_cluster,consumergroup,topic) (\n  rate(kafka_consumergroup_current_offset{topic!=\"__consumer_offsets\",consumergroup!=\"\",kafka_cluster=~\"$kafka_cluster\",topic=~\"$topic\",consumergroup=~\"$consumergroup\"}[$__rate_interval])\n)", rates_by_group),
        ("Consumer group lag", "sum by (kafka_cluster,consumergroup,topic) (\n  kafka_consumergroup_lag{topic!=\"__consumer_offsets\",consumergroup!=\"\",kafka_cluster=~\"$kafka_cluster\",topic=~\"$topic\",consumergroup=~\"$consumergroup\"}\n)\nor\nsum by (kafka_cluster,consumergroup,topic) (\n  kafka_consumergroup_uncommitted_offsets{topic!=\"__consumer_offsets\",consumergroup!=\"\",kafka_cluster=~\"$kafka_cluster\",topic=~\"$topic\",consumergroup=~\"$consumergroup\"}\n)", lag_by_topic),
        // Alert KafkaLagIsTooHigh (threshold 100): audit is 149 behind.
        ("alert KafkaLagIsTooHigh", "sum by (kafka_cluster, topic, consumergroup) (kafka_consumergroup_lag{topic!=\"__consumer_offsets\",consumergroup!=\"\",}\nor\nkafka_consumergroup_uncommitted_offsets{topic!=\"__consumer_offsets\",consumergroup!=\"\",}) > 100", vec![(c("consumergroup=audit,topic=payments"), 149.0)]),
        // Alert KafkaLagKeepsIncreasing: the lag has not moved.
        ("alert KafkaLagKeepsIncreasing", "sum by (kafka_cluster, topic, consumergroup) (delta(kafka_consumergroup_lag{topic!=\"__consumer_offsets\",consumergroup!=\"\",}[5m])\nor\ndelta(kafka_consumergroup_uncommitted_offsets{topic!=\"__consumer_offsets\",consumergroup!=\"\",}[5m])) > 0", vec![]),
    ];
    for (title, expr, expected) in panels {
        let expected: Vec<(&str, f64)> = expected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        expect_query(port, &format!("[OBSERV] {title:?}"), &vars(expr), &expected);
    }
}

/// Without `global.compat` the path does not exist; the main path is unaffected.
#[test]
fn compat_path_is_not_found_unless_enabled() {
    let exporter = Exporter::start(
        "clusters:\n  - name: local\n    bootstrap_servers: ['127.0.0.1:1']\n",
        &[],
    );
    assert_eq!(exporter.get(COMPAT_PATH, None).0, 404);
    assert_eq!(exporter.get("/metrics", None).0, 200);
}

/// An unknown output name is a configuration error: exit 2, one line naming the file, the
/// field and the reason.
#[test]
fn unknown_compat_output_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(
        dir.path(),
        "bad.yml",
        "global:\n  compat: [kminion]\nclusters:\n  - name: local\n    bootstrap_servers: ['127.0.0.1:1']\n",
    );
    let out = Command::new(common::EXPORTER)
        .args(["--config.check", "--config.file"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("global.compat[0]"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains(&path.display().to_string()) && line.contains("unknown compatibility output \"kminion\""),
        "{line}"
    );
}

/// The compatibility path is behind the same `--web.config.file` basic auth as `/metrics`.
#[test]
fn compat_path_requires_the_web_config_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret-web-pw", 4).unwrap();
    let web = common::write_file(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
    );
    let exporter = Exporter::start(
        "global: {compat: [kafka_exporter]}\nclusters:\n  - name: local\n    bootstrap_servers: ['127.0.0.1:1']\n",
        &["--web.config.file", web.to_str().unwrap()],
    );
    let get = |auth: Option<&str>| {
        let mut req = ureq::get(&exporter.url(COMPAT_PATH)).timeout(Duration::from_secs(10));
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("GET {COMPAT_PATH}: {e}"),
        }
    };
    assert_eq!(get(None), 401);
    let basic = |user: &str, pw: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    assert_eq!(get(Some(&basic("alice", "wrong"))), 401);
    assert_eq!(get(Some(&basic("alice", "s3cret-web-pw"))), 200);
}
