//! The migration guides in `docs/migrate-from-*.md` against a real Kafka: each guide's example
//! configuration of the other exporter is checked against the guide's mapping table (every option
//! it sets has a row; servers and filters carry over with the documented conversion), and our
//! equivalent configuration from the same guide must pass `--config.check` and, pointed at the
//! harness's Kafka, produce exactly the lag series the filters select.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Exporter, Metrics, EXPORTER};
use kafka_harness::{KafkaCluster, Record};
use serde_yaml::Value;

struct Guide {
    name: &'static str,
    text: String,
}

impl Guide {
    fn load(name: &'static str) -> Guide {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Guide { name, text }
    }

    /// The body of the fenced block whose info string is `info` (exactly one must exist).
    fn block(&self, info: &str) -> String {
        let fence = format!("```{info}");
        let mut found = Vec::new();
        let mut lines = self.text.lines();
        while let Some(l) = lines.next() {
            if l.trim_end() == fence {
                let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim_end() != "```").collect();
                found.push(body.join("\n") + "\n");
            }
        }
        assert_eq!(found.len(), 1, "{}: expected one ```{info} block", self.name);
        found.pop().unwrap()
    }

    /// Backticked names in the first column of every table: what the mapping tables cover.
    fn first_column(&self) -> BTreeSet<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix('|'))
            .filter_map(|l| l.split('|').next())
            .flat_map(|cell| {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Fails unless every option of the peer's example has a row (a key, or failing that its
    /// parent section, as for free-form maps such as labels).
    fn assert_table_covers(&self, options: &[String]) {
        let covered = self.first_column();
        let missing: Vec<&String> = options
            .iter()
            .filter(|o| {
                let mut key = o.as_str();
                loop {
                    if covered.contains(key) {
                        return false;
                    }
                    match key.rsplit_once('.') {
                        Some((parent, _)) => key = parent,
                        None => return true,
                    }
                }
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{}: options without a table row: {missing:?}",
            self.name
        );
    }

    /// Every `kafka_*` name in the second column of the metric tables is one we document.
    fn assert_our_metrics_exist(&self) {
        let documented = common::documented_metrics();
        let mut in_metric_table = false;
        for line in self.text.lines() {
            if !line.starts_with('|') {
                in_metric_table = false;
                continue;
            }
            let cells: Vec<&str> = line.split('|').collect();
            if cells.len() < 3 {
                continue;
            }
            if cells[1].to_lowercase().contains("metric") {
                in_metric_table = true;
                continue;
            }
            if !in_metric_table {
                continue;
            }
            for token in cells[2].split('`').skip(1).step_by(2) {
                let name = token.split(['{', ' ']).next().unwrap();
                if name.starts_with("kafka_") {
                    assert!(
                        documented.contains(name),
                        "{}: {name} is not in docs/metrics.md",
                        self.name
                    );
                }
            }
        }
    }
}

/// A Go-style regular expression searched anywhere in the name, written as one anchored to the
/// whole name: the conversion the guides document.
fn anchored(pattern: &str) -> String {
    let mut p = pattern.to_string();
    match p.strip_prefix('^') {
        Some(rest) => p = rest.to_string(),
        None if !p.starts_with(".*") => p = format!(".*{p}"),
        None => {}
    }
    match p.strip_suffix('$') {
        Some(rest) => p = rest.to_string(),
        None if !p.ends_with(".*") => p.push_str(".*"),
        None => {}
    }
    p
}

/// KMinion's patterns: `/expr/` is searched anywhere, anything else is anchored as written.
fn kminion_pattern(pattern: &str) -> String {
    match pattern.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
        Some(expr) => anchored(expr),
        None => pattern.to_string(),
    }
}

/// Flag names and values of a shell command line (`--name=value`, `--flag`).
fn parse_flags(cmd: &str) -> Vec<(String, Option<String>)> {
    cmd.replace("\\\n", " ")
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (
                format!("--{k}"),
                Some(v.trim_matches('\'').trim_matches('"').to_string()),
            ),
            None => (format!("--{w}"), None),
        })
        .collect()
}

/// A TOML document flattened to (section.key, value) for the subset the examples use: tables,
/// arrays of tables, strings, numbers, booleans and one-line arrays of strings.
fn parse_toml(text: &str) -> Vec<(String, Vec<String>)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = s.to_string();
        } else if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not TOML: {line}"));
            out.push((format!("{section}.{}", k.trim()), toml_strings(v.trim())));
        }
    }
    out
}

fn toml_strings(v: &str) -> Vec<String> {
    let unquote = |s: &str| -> String {
        let s = s.trim();
        if let Some(lit) = s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            lit.to_string()
        } else if let Some(basic) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            basic.replace("\\\\", "\\")
        } else {
            s.to_string()
        }
    };
    match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(items) => items.split(',').filter(|i| !i.trim().is_empty()).map(unquote).collect(),
        None => vec![unquote(v)],
    }
}

/// YAML mapping keys flattened to dotted paths of their leaves.
fn yaml_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let k = k.as_str().expect("string keys");
                let p = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                yaml_paths(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().map(|x| x.as_str().expect("a string").to_string()).collect(),
        Value::Null => Vec::new(),
        other => vec![other.as_str().expect("a string").to_string()],
    }
}

/// Our example, parsed.
struct Ours {
    doc: Value,
}

impl Ours {
    fn parse(yaml: &str) -> Ours {
        Ours {
            doc: serde_yaml::from_str(yaml).expect("kse-example is YAML"),
        }
    }

    fn cluster(&self) -> &Value {
        let clusters = self.doc["clusters"].as_sequence().expect("clusters");
        assert_eq!(clusters.len(), 1, "one cluster in the example");
        &clusters[0]
    }

    fn bootstrap_servers(&self) -> Vec<String> {
        strings(&self.cluster()["bootstrap_servers"])
    }

    /// The effective filter: the cluster's own, else the global one.
    fn filter(&self, what: &str, list: &str) -> Vec<String> {
        let own = &self.cluster()[what];
        let f = if own.is_mapping() {
            own
        } else {
            &self.doc["global"][what]
        };
        f.get(list).map(strings).unwrap_or_default()
    }

    /// The configuration pointed at `kafka` and with collection every second, so a test does not
    /// wait out production intervals; the status window shrinks with it.
    fn for_test(&self, kafka: &KafkaCluster) -> String {
        let mut doc = self.doc.clone();
        let servers: Vec<Value> = kafka
            .bootstrap_servers()
            .split(',')
            .map(|s| Value::String(s.to_string()))
            .collect();
        doc["clusters"][0]["bootstrap_servers"] = Value::Sequence(servers);
        let global = doc
            .as_mapping_mut()
            .unwrap()
            .entry("global".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        global["interval"] = "1s".into();
        if let Some(lag) = global.get_mut("lag") {
            if lag.get("status_window").is_some() {
                lag["status_window"] = "3s".into();
            }
        }
        serde_yaml::to_string(&doc).unwrap()
    }
}

/// `--config.check` on `yaml` must succeed.
fn assert_config_check(guide: &str, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kse.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(EXPORTER)
        .arg("--config.file")
        .arg(&path)
        .arg("--config.check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{guide}: --config.check exit {:?}\n{}\n{yaml}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn produce(kafka: &KafkaCluster, topic: &str, partition: i32, n: usize, first_ts_ms: Option<i64>) {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let r = Record::new(format!("r{i}"));
            match first_ts_ms {
                Some(ts) => r.with_timestamp(ts + 1000 * i as i64),
                None => r,
            }
        })
        .collect();
    kafka.produce(topic, partition, &records).unwrap();
}

fn lag(m: &Metrics, group: &str, topic: &str, partition: &str) -> Option<f64> {
    m.value(
        "kafka_consumergroup_lag",
        &[("group", group), ("topic", topic), ("partition", partition)],
    )
}

fn has_group(m: &Metrics, group: &str) -> bool {
    m.samples.iter().any(|s| s.labels.get("group") == Some(group))
}

fn has_topic(m: &Metrics, topic: &str) -> bool {
    m.samples.iter().any(|s| s.labels.get("topic") == Some(topic))
}

#[test]
fn kafka_exporter_guide() {
    let guide = Guide::load("migrate-from-kafka_exporter.md");
    let theirs = guide.block("text kafka_exporter-example");
    let ours_yaml = guide.block("yaml kse-example");
    let ours = Ours::parse(&ours_yaml);
    guide.assert_our_metrics_exist();

    let flags = parse_flags(&theirs);
    guide.assert_table_covers(&flags.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
    let values = |name: &str| -> Vec<String> {
        flags
            .iter()
            .filter(|(k, _)| k == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(ours.bootstrap_servers(), values("--kafka.server"));
    for (flag, what, list) in [
        ("--topic.filter", "topics", "allow"),
        ("--topic.exclude", "topics", "deny"),
        ("--group.filter", "groups", "allow"),
        ("--group.exclude", "groups", "deny"),
    ] {
        let want: Vec<String> = values(flag).iter().map(|p| anchored(p)).collect();
        assert_eq!(ours.filter(what, list), want, "{flag} → {what}.{list}");
    }
    for kv in values("--kafka.labels")
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
    {
        let (k, v) = kv.split_once('=').unwrap();
        assert_eq!(ours.cluster()["labels"][k].as_str(), Some(v), "--kafka.labels {kv}");
    }
    assert_config_check(guide.name, &ours_yaml);

    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("orders.created", 2, 1, &[]).unwrap();
    kafka.create_topic("orders.test.created", 1, 1, &[]).unwrap();
    produce(kafka, "orders.created", 0, 5, None);
    produce(kafka, "orders.created", 1, 5, None);
    produce(kafka, "orders.test.created", 0, 5, None);
    kafka
        .commit_offsets(
            "fulfilment-svc",
            &[
                ("orders.created", 0, 3),
                ("orders.created", 1, 5),
                ("orders.test.created", 0, 1),
            ],
        )
        .unwrap();
    kafka
        .commit_offsets("billing-canary", &[("orders.created", 0, 0)])
        .unwrap();
    kafka.commit_offsets("audit-svc", &[("orders.created", 0, 0)]).unwrap();

    let config = ours.for_test(kafka);
    assert_config_check(guide.name, &config);
    let e = Exporter::start(&config, &[]);
    let m = e.wait_for(Duration::from_secs(60), "fulfilment-svc lag", |m| {
        lag(m, "fulfilment-svc", "orders.created", "0").is_some()
            && lag(m, "fulfilment-svc", "orders.created", "1").is_some()
    });
    let labels = [("cluster", "prod"), ("env", "prod"), ("group", "fulfilment-svc")];
    assert_eq!(lag(&m, "fulfilment-svc", "orders.created", "0"), Some(2.0));
    assert_eq!(lag(&m, "fulfilment-svc", "orders.created", "1"), Some(0.0));
    assert_eq!(
        m.value(
            "kafka_consumergroup_topic_lag",
            &[labels[0], labels[1], labels[2], ("topic", "orders.created")]
        ),
        Some(2.0)
    );
    // kafka_topic_partition_current_offset's documented replacement.
    assert_eq!(
        m.value("kafka_topic_high_watermarks", &[("topic", "orders.created")]),
        Some(10.0)
    );
    assert!(!has_topic(&m, "orders.test.created"), "--topic.exclude");
    assert!(!has_group(&m, "billing-canary"), "--group.exclude");
    assert!(!has_group(&m, "audit-svc"), "--group.filter");
}

#[test]
fn kminion_guide() {
    let guide = Guide::load("migrate-from-kminion.md");
    let theirs: Value = serde_yaml::from_str(&guide.block("yaml kminion-example")).unwrap();
    let ours_yaml = guide.block("yaml kse-example");
    let ours = Ours::parse(&ours_yaml);
    guide.assert_our_metrics_exist();

    let mut options = Vec::new();
    yaml_paths(&theirs, "", &mut options);
    guide.assert_table_covers(&options);
    assert_eq!(ours.bootstrap_servers(), strings(&theirs["kafka"]["brokers"]));
    for (section, key, what, list) in [
        ("consumerGroups", "allowedGroups", "groups", "allow"),
        ("consumerGroups", "ignoredGroups", "groups", "deny"),
        ("topics", "allowedTopics", "topics", "allow"),
        ("topics", "ignoredTopics", "topics", "deny"),
    ] {
        let want: Vec<String> = strings(&theirs["minion"][section][key])
            .iter()
            .map(|p| kminion_pattern(p))
            .collect();
        assert_eq!(ours.filter(what, list), want, "minion.{section}.{key} → {what}.{list}");
    }
    let probe = &ours.cluster()["probe"];
    assert!(probe.is_mapping(), "endToEnd.enabled → probe");
    assert_eq!(
        probe["timeout"].as_str(),
        theirs["minion"]["endToEnd"]["consumer"]["roundtripSla"].as_str()
    );
    assert_eq!(
        probe["interval"].as_str(),
        theirs["minion"]["endToEnd"]["probeInterval"].as_str()
    );
    assert_config_check(guide.name, &ours_yaml);

    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("payments.card", 1, 1, &[]).unwrap();
    kafka.create_topic("payments.card.dlq", 1, 1, &[]).unwrap();
    produce(kafka, "payments.card", 0, 7, None);
    produce(kafka, "payments.card.dlq", 0, 2, None);
    kafka
        .commit_offsets(
            "payments-ledger",
            &[("payments.card", 0, 3), ("payments.card.dlq", 0, 0)],
        )
        .unwrap();
    kafka
        .commit_offsets("payments-replay", &[("payments.card", 0, 0)])
        .unwrap();

    let config = ours.for_test(kafka);
    assert_config_check(guide.name, &config);
    let e = Exporter::start(&config, &[]);
    let probe_topic = probe["topic"].as_str().unwrap();
    let m = e.wait_for(Duration::from_secs(90), "lag and a delivered probe record", |m| {
        lag(m, "payments-ledger", "payments.card", "0").is_some()
            && m.sum("kafka_probe_records_delivered_in_time_total", &[("topic", probe_topic)])
                .unwrap_or(0.0)
                > 0.0
    });
    assert_eq!(lag(&m, "payments-ledger", "payments.card", "0"), Some(4.0));
    assert_eq!(
        m.value(
            "kafka_consumergroup_topic_lag",
            &[("group", "payments-ledger"), ("topic", "payments.card")]
        ),
        Some(4.0)
    );
    // topics.granularity: partition → the opted-in per-partition watermarks.
    assert_eq!(
        m.value(
            "kafka_partition_high_watermark",
            &[("topic", "payments.card"), ("partition", "0")]
        ),
        Some(7.0)
    );
    assert_eq!(
        m.value(
            "kafka_partition_log_start_offset",
            &[("topic", "payments.card"), ("partition", "0")]
        ),
        Some(0.0)
    );
    assert_eq!(m.value("kafka_probe_up", &[("topic", probe_topic)]), Some(1.0));
    assert!(!has_topic(&m, "payments.card.dlq"), "ignoredTopics");
    assert!(!has_group(&m, "payments-replay"), "ignoredGroups");
}

#[test]
fn burrow_guide() {
    let guide = Guide::load("migrate-from-burrow.md");
    let theirs = parse_toml(&guide.block("toml burrow-example"));
    let ours_yaml = guide.block("yaml kse-example");
    let ours = Ours::parse(&ours_yaml);
    guide.assert_our_metrics_exist();

    // Burrow keys are `kind.NAME.key`; the table names the instance `NAME`.
    let options: Vec<String> = theirs
        .iter()
        .map(|(k, _)| {
            let parts: Vec<&str> = k.splitn(3, '.').collect();
            format!("{}.NAME.{}", parts[0], parts[2])
        })
        .collect();
    guide.assert_table_covers(&options);
    let value = |key: &str| -> Vec<String> {
        theirs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} not in the Burrow example"))
    };
    assert_eq!(ours.bootstrap_servers(), value("cluster.prod.servers"));
    let groups_allow: Vec<String> = value("consumer.prod.group-allowlist")
        .iter()
        .map(|p| anchored(p))
        .collect();
    let groups_deny: Vec<String> = value("consumer.prod.group-denylist")
        .iter()
        .map(|p| anchored(p))
        .collect();
    assert_eq!(ours.filter("groups", "allow"), groups_allow);
    assert_eq!(ours.filter("groups", "deny"), groups_deny);
    assert_eq!(
        ours.doc["global"]["interval"].as_str(),
        Some("30s"),
        "offset-refresh=30"
    );
    assert_config_check(guide.name, &ours_yaml);

    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("shipments.events", 1, 1, &[]).unwrap();
    produce(kafka, "shipments.events", 0, 6, None);
    // A group with lag whose offset never moves and that has no members: stop.
    kafka
        .commit_offsets("shipping-router", &[("shipments.events", 0, 3)])
        .unwrap();
    // A group that is caught up: ok.
    kafka
        .commit_offsets("invoicing-writer", &[("shipments.events", 0, 6)])
        .unwrap();
    kafka
        .commit_offsets("shipping-canary", &[("shipments.events", 0, 0)])
        .unwrap();

    let config = ours.for_test(kafka);
    assert_config_check(guide.name, &config);
    let e = Exporter::start(&config, &[]);
    let status = |m: &Metrics, group: &str, status: &str| {
        m.value("kafka_consumergroup_status", &[("group", group), ("status", status)])
    };
    let m = e.wait_for(Duration::from_secs(60), "shipping-router stopped", |m| {
        status(m, "shipping-router", "stop") == Some(1.0)
    });
    assert_eq!(lag(&m, "shipping-router", "shipments.events", "0"), Some(3.0));
    assert_eq!(status(&m, "invoicing-writer", "ok"), Some(1.0));
    assert_eq!(lag(&m, "invoicing-writer", "shipments.events", "0"), Some(0.0));
    assert_eq!(
        m.find("kafka_consumergroup_status", &[("group", "shipping-router")])
            .len(),
        1
    );
    assert!(!has_group(&m, "shipping-canary"), "group-denylist");
}

#[test]
fn kafka_lag_exporter_guide() {
    let guide = Guide::load("migrate-from-kafka-lag-exporter.md");
    let theirs = parse_toml(&guide.block("toml klag-exporter-example"));
    let ours_yaml = guide.block("yaml kse-example");
    let ours = Ours::parse(&ours_yaml);
    guide.assert_our_metrics_exist();

    guide.assert_table_covers(&theirs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
    let value = |key: &str| -> Vec<String> {
        theirs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} not in the klag-exporter example"))
    };
    let servers: Vec<String> = value("clusters.bootstrap_servers")[0]
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(ours.bootstrap_servers(), servers);
    for (key, what, list) in [
        ("clusters.group_whitelist", "groups", "allow"),
        ("clusters.group_blacklist", "groups", "deny"),
        ("clusters.topic_whitelist", "topics", "allow"),
        ("clusters.topic_blacklist", "topics", "deny"),
    ] {
        let want: Vec<String> = value(key).iter().map(|p| anchored(p)).collect();
        assert_eq!(ours.filter(what, list), want, "{key} → {what}.{list}");
    }
    assert_eq!(
        ours.cluster()["labels"]["environment"].as_str(),
        value("clusters.labels.environment").first().map(String::as_str)
    );
    assert_config_check(guide.name, &ours_yaml);

    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("clicks.raw", 2, 1, &[]).unwrap();
    // Records an hour old, one second apart: the record at the committed offset says the time lag.
    let first_ts = kafka_harness::now_ms() - 3_600_000;
    produce(kafka, "clicks.raw", 0, 6, Some(first_ts));
    produce(kafka, "clicks.raw", 1, 6, Some(first_ts));
    kafka
        .commit_offsets("etl-sessions", &[("clicks.raw", 0, 2), ("clicks.raw", 1, 6)])
        .unwrap();
    kafka
        .commit_offsets("etl-test-replay", &[("clicks.raw", 0, 0)])
        .unwrap();

    let config = ours.for_test(kafka);
    assert_config_check(guide.name, &config);
    let start_ms = kafka_harness::now_ms();
    let e = Exporter::start(&config, &[]);
    let key = |p: &'static str| [("group", "etl-sessions"), ("topic", "clicks.raw"), ("partition", p)];
    let m = e.wait_for(Duration::from_secs(60), "etl-sessions time lag", |m| {
        m.value("kafka_consumergroup_lag_seconds", &key("0")).is_some()
            && m.value("kafka_consumergroup_lag_seconds", &key("1")).is_some()
    });
    let end_ms = kafka_harness::now_ms();
    assert_eq!(lag(&m, "etl-sessions", "clicks.raw", "0"), Some(4.0));
    assert_eq!(lag(&m, "etl-sessions", "clicks.raw", "1"), Some(0.0));
    assert_eq!(m.value("kafka_consumergroup_committed_offset", &key("0")), Some(2.0));
    assert_eq!(
        m.value(
            "kafka_partition_high_watermark",
            &[("topic", "clicks.raw"), ("partition", "0")]
        ),
        Some(6.0)
    );
    // The record at offset 2 was stamped first_ts + 2 s.
    let record_ts = first_ts + 2_000;
    let seconds = m.value("kafka_consumergroup_lag_seconds", &key("0")).unwrap();
    let (low, high) = ((start_ms - record_ts) as f64 / 1e3, (end_ms - record_ts) as f64 / 1e3);
    assert!(
        (low - 1.0..=high + 1.0).contains(&seconds),
        "time lag {seconds} outside [{low}, {high}]"
    );
    let method = |p: &'static str, method: &'static str| {
        let mut labels = key(p).to_vec();
        labels.push(("method", method));
        m.value("kafka_consumergroup_lag_seconds_method_info", &labels)
    };
    assert_eq!(method("0", "record"), Some(1.0), "read from the record");
    assert_eq!(m.value("kafka_consumergroup_lag_seconds", &key("1")), Some(0.0));
    assert_eq!(method("1", "caught_up"), Some(1.0));
    assert_eq!(
        m.value(
            "kafka_consumergroup_lag",
            &[
                ("cluster", "analytics"),
                ("environment", "analytics"),
                ("group", "etl-sessions"),
                ("partition", "0")
            ]
        ),
        Some(4.0)
    );
    assert!(!has_group(&m, "etl-test-replay"), "group_blacklist");
}
