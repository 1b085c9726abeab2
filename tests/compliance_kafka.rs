//! ADR compliance measured on a real 3-broker Kafka: one topic per rule violated, naming
//! classes, the replay window cut short by `retention.bytes`, partition count changes, and the
//! on-call report in JSON and in headless Chromium.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Exporter, Metrics};
use kafka_harness::{now_ms, ClusterOptions, KafkaCluster, Record};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

const DAY_MS: i64 = 86_400_000;

/// One 3-broker cluster for this test binary (RF 3 is part of the policy).
fn cluster() -> &'static KafkaCluster {
    static CLUSTER: OnceLock<KafkaCluster> = OnceLock::new();
    CLUSTER
        .get_or_init(|| KafkaCluster::start_new(ClusterOptions::with_nodes(3).controllers(1)).expect("3-node cluster"))
}

fn compliant(retention_days: i64) -> Vec<(&'static str, String)> {
    vec![
        ("retention.ms", (retention_days * DAY_MS).to_string()),
        ("min.insync.replicas", "2".into()),
        ("compression.type", "lz4".into()),
        ("cleanup.policy", "delete".into()),
        ("unclean.leader.election.enable", "false".into()),
        ("retention.bytes", "-1".into()),
    ]
}

fn create(
    kafka: &KafkaCluster,
    name: &str,
    partitions: i32,
    rf: i32,
    configs: Vec<(&str, String)>,
    change: &[(&'static str, &str)],
) {
    let mut cfg: Vec<(&str, String)> = configs
        .into_iter()
        .filter(|(k, _)| !change.iter().any(|(c, _)| c == k))
        .collect();
    cfg.extend(change.iter().map(|(k, v)| (*k, v.to_string())));
    let refs: Vec<(&str, &str)> = cfg.iter().map(|(k, v)| (*k, v.as_str())).collect();
    kafka.create_topic(name, partitions, rf, &refs).unwrap();
}

fn exporter(kafka: &KafkaCluster, topics: &str, extra_global: &str, args: &[&str]) -> Exporter {
    let cfg = format!(
        "global:\n  interval: 1s\n  timeout: 3s\n  metrics: {{opt_in: ['.*']}}\n{extra_global}clusters:\n  - name: local\n    bootstrap_servers: {}\n    topics: {{allow: ['{topics}']}}\n",
        common::bootstrap_yaml(kafka)
    );
    Exporter::start(&cfg, args)
}

fn rule(m: &Metrics, topic: &str, rule: &str) -> Option<f64> {
    m.value("kafka_topic_compliance", &[("topic", topic), ("rule", rule)])
}

fn class(m: &Metrics, topic: &str) -> Option<String> {
    m.find("kafka_topic_compliance_class_info", &[("topic", topic)])
        .first()
        .and_then(|s| s.labels.get("class").map(str::to_string))
}

#[test]
fn every_rule_and_class_against_real_topic_configs() {
    let kafka = cluster();
    create(kafka, "cmp.seed.events", 1, 3, compliant(7), &[]);
    // A commit creates __consumer_offsets, which the policy exempts.
    kafka.commit_offsets("cmp-seed", &[("cmp.seed.events", 0, 0)]).unwrap();
    create(kafka, "cmp.order.events", 3, 3, compliant(7), &[]);
    create(kafka, "audit.cmp.events", 1, 3, compliant(7), &[]);
    create(
        kafka,
        "cmp.internal.retry",
        1,
        3,
        compliant(7),
        &[("compression.type", "gzip")],
    );
    create(
        kafka,
        "cmpdb.inventory.customers",
        1,
        3,
        compliant(7),
        &[("cleanup.policy", "compact")],
    );
    create(kafka, "cmp.rf.events", 1, 2, compliant(7), &[]);
    create(
        kafka,
        "cmp.isr.events",
        1,
        3,
        compliant(7),
        &[("min.insync.replicas", "1")],
    );
    create(
        kafka,
        "cmp.unclean.events",
        1,
        3,
        compliant(7),
        &[("unclean.leader.election.enable", "true")],
    );
    create(
        kafka,
        "cmp.bytes.events",
        1,
        3,
        compliant(7),
        &[("retention.bytes", "1073741824")],
    );
    create(
        kafka,
        "cmp.short.events",
        1,
        3,
        compliant(7),
        &[("retention.ms", "3600000")],
    );
    create(kafka, "Cmp_Legacy_Orders", 1, 3, compliant(7), &[]);

    let e = exporter(
        kafka,
        "cmp\\.(order|rf|isr|unclean|bytes|short)\\.events|cmp\\.internal\\.retry|cmpdb\\..*|audit\\.cmp\\..*|Cmp_.*|__consumer_offsets",
        "",
        &[],
    );
    let m = e.wait_for(Duration::from_secs(40), "compliance of every topic", |m| {
        rule(m, "cmp.short.events", "min_retention").is_some() && rule(m, "Cmp_Legacy_Orders", "naming").is_some()
    });

    assert_eq!(class(&m, "cmp.order.events").as_deref(), Some("domain_event"));
    assert_eq!(class(&m, "audit.cmp.events").as_deref(), Some("audit"));
    assert_eq!(class(&m, "cmp.internal.retry").as_deref(), Some("internal"));
    assert_eq!(class(&m, "cmpdb.inventory.customers").as_deref(), Some("cdc"));
    assert_eq!(class(&m, "Cmp_Legacy_Orders").as_deref(), Some("unmatched"));
    assert_eq!(class(&m, "__consumer_offsets").as_deref(), Some("exempt"));
    assert!(m
        .find("kafka_topic_compliance", &[("topic", "__consumer_offsets")])
        .is_empty());

    // The compliant topic passes all ten rules.
    let passing = m.find("kafka_topic_compliance", &[("topic", "cmp.order.events")]);
    assert_eq!(passing.len(), 10, "{}", m.text);
    assert!(passing
        .iter()
        .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)));

    // Each other topic violates exactly its own rule.
    for (topic, failing) in [
        ("audit.cmp.events", "min_retention"),
        ("cmp.internal.retry", "compression_type"),
        ("cmpdb.inventory.customers", "cleanup_policy"),
        ("cmp.rf.events", "replication_factor"),
        ("cmp.isr.events", "min_insync_replicas"),
        ("cmp.unclean.events", "unclean_leader_election"),
        ("cmp.bytes.events", "retention_bytes"),
        ("cmp.short.events", "min_retention"),
        ("Cmp_Legacy_Orders", "naming"),
    ] {
        let fails: Vec<String> = m
            .find("kafka_topic_compliance", &[("topic", topic)])
            .iter()
            .filter(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 0.0))
            .map(|s| s.labels.get("rule").unwrap().to_string())
            .collect();
        assert_eq!(fails, vec![failing.to_string()], "{topic}");
    }
    // Violations per rule as the dashboards count them:
    // `sum by (cluster, rule) (1 - kafka_topic_compliance)`, 0 for a rule nothing violates.
    let c = [("cluster", "local")];
    let violating = |rule: &str| {
        let all = m.find("kafka_topic_compliance", &[c[0], ("rule", rule)]);
        assert!(!all.is_empty(), "rule {rule} evaluated");
        all.iter()
            .filter(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 0.0))
            .count()
    };
    assert_eq!(violating("min_retention"), 2);
    assert_eq!(violating("naming"), 1);
    assert_eq!(violating("partition_count_stable"), 0);
    assert_eq!(
        m.value(
            "kafka_topic_required_retention_seconds",
            &[("topic", "audit.cmp.events")]
        ),
        Some(30.0 * 86_400.0)
    );
    assert_eq!(
        m.value("kafka_topic_retention_seconds", &[("topic", "audit.cmp.events")]),
        Some(7.0 * 86_400.0)
    );
    // Topics per class: `count by (cluster, class) (kafka_topic_compliance_class_info)`.
    assert_eq!(
        m.find("kafka_topic_compliance_class_info", &[c[0], ("class", "domain_event")])
            .len(),
        6
    );

    // The JSON report says the same, with actual and required values.
    let (status, ct, body) = e.get("/api/v1/compliance?failing=1", None);
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let topics = json["clusters"][0]["topics"].as_array().unwrap();
    assert!(
        topics.iter().all(|t| t["topic"] != "cmp.order.events"),
        "failing=1 hides compliant topics"
    );
    let audit = topics.iter().find(|t| t["topic"] == "audit.cmp.events").unwrap();
    let r = audit["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "min_retention")
        .unwrap();
    assert_eq!(
        (r["verdict"].as_str(), r["actual"].as_str(), r["required"].as_str()),
        (Some("fail"), Some("7days"), Some("30days"))
    );
    assert_eq!(e.get("/api/v1/compliance?rule=bogus", None).0, 400);

    // The HTML page in a real browser: it loads, lists the topics, marks the failing rule.
    let dom = chromium_dom(&e.url("/compliance"));
    assert!(dom.contains("<h1>ADR compliance</h1>"), "{dom}");
    for topic in ["cmp.order.events", "audit.cmp.events", "Cmp_Legacy_Orders"] {
        assert!(dom.contains(&format!("data-topic=\"{topic}\"")), "{topic} missing");
    }
    assert!(
        dom.contains("class=\"fail\" data-rule=\"compression_type\">FAIL"),
        "failing rule not shown as failing"
    );
    let filtered = chromium_dom(&e.url("/compliance?rule=naming"));
    assert!(filtered.contains("data-topic=\"Cmp_Legacy_Orders\""));
    assert!(!filtered.contains("data-topic=\"cmp.order.events\""));
}

#[test]
fn replay_window_cut_short_by_retention_bytes_is_detected() {
    let kafka = cluster();
    create(
        kafka,
        "cmp.trim.events",
        1,
        3,
        compliant(7),
        &[("retention.bytes", "1048576"), ("segment.bytes", "1048576")],
    );
    // ~5 MB of records produced an hour ago: size-based retention deletes the oldest segments
    // long before 7 days.
    // Incompressible payloads: the topic compresses with LZ4.
    let ts = now_ms() - 3_600_000;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for _ in 0..4 {
        let batch: Vec<Record> = (0..80)
            .map(|_| Record::new(noise(16 * 1024)).with_timestamp(ts))
            .collect();
        kafka.produce("cmp.trim.events", 0, &batch).unwrap();
    }
    let e = exporter(kafka, "cmp\\.trim\\..*", "", &[]);
    let m = e.wait_for(Duration::from_secs(60), "replay window rule failing", |m| {
        rule(m, "cmp.trim.events", "replay_window") == Some(0.0)
    });
    let start = m
        .value("kafka_partition_log_start_offset", &[("topic", "cmp.trim.events")])
        .unwrap();
    assert!(start > 0.0, "segments were deleted");
    let window = m
        .value("kafka_topic_replay_window_seconds", &[("topic", "cmp.trim.events")])
        .unwrap();
    assert!(
        (3500.0..4000.0).contains(&window),
        "oldest retained record is ~1 h old: {window}"
    );
    assert_eq!(
        m.value(
            "kafka_partition_replay_window_seconds",
            &[("topic", "cmp.trim.events"), ("partition", "0")]
        ),
        Some(window)
    );
    assert_eq!(rule(&m, "cmp.trim.events", "retention_bytes"), Some(0.0));
    assert_eq!(
        rule(&m, "cmp.trim.events", "min_retention"),
        Some(1.0),
        "the configured time alone looks fine"
    );
}

#[test]
fn partition_count_increase_is_reported_and_survives_restart_with_state_dir() {
    let kafka = cluster();
    create(kafka, "cmp.grow.events", 2, 3, compliant(7), &[]);
    let state = tempfile::tempdir().unwrap();
    let global = format!("  compliance: {{state_dir: \"{}\"}}\n", state.path().display());
    let e = exporter(kafka, "cmp\\.grow\\..*", &global, &[]);
    e.wait_for(Duration::from_secs(30), "baseline", |m| {
        rule(m, "cmp.grow.events", "partition_count_stable") == Some(1.0)
    });

    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let results =
        common::block_on(admin.create_partitions(&[NewPartitions::new("cmp.grow.events", 4)], &AdminOptions::new()))
            .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");

    let t = [("topic", "cmp.grow.events")];
    let m = e.wait_for(Duration::from_secs(30), "change detected", |m| {
        m.value("kafka_topic_partition_count_changes_total", &t) == Some(1.0)
    });
    assert_eq!(m.value("kafka_topic_partitions", &t), Some(4.0));
    assert_eq!(rule(&m, "cmp.grow.events", "partition_count_stable"), Some(0.0));
    let changed_at = m
        .value("kafka_topic_partition_count_last_change_timestamp_seconds", &t)
        .unwrap();
    assert!((changed_at - now_ms() as f64 / 1000.0).abs() < 30.0);
    drop(e);

    // A new process with the same state directory still knows when the change happened; its
    // own change counter starts again at 0.
    let e2 = exporter(kafka, "cmp\\.grow\\..*", &global, &[]);
    let m = e2.wait_for(Duration::from_secs(30), "restored state", |m| {
        rule(m, "cmp.grow.events", "partition_count_stable").is_some()
    });
    assert_eq!(
        m.value("kafka_topic_partition_count_last_change_timestamp_seconds", &t),
        Some(changed_at.floor())
    );
    assert_eq!(rule(&m, "cmp.grow.events", "partition_count_stable"), Some(0.0));
    assert_eq!(m.value("kafka_topic_partition_count_changes_total", &t), Some(0.0));
}

/// Renders `url` in headless Chromium and returns the DOM after scripts ran.
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium must be installed (Debian package chromium; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
