//! Running at scale against real Kafka: many clusters in one process, and sharding the topics
//! and groups of one cluster across processes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{bootstrap_yaml, Exporter, Metrics, EXPORTER};
use kafka_harness::{ClusterOptions, ConsumerOptions, KafkaCluster, Record};
use kafka_slo_exporter::shard::owner;

/// Self-metrics of the process rather than of a cluster.
fn value(m: &Metrics, name: &str, cluster: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let mut labels = vec![("cluster", cluster)];
    labels.extend_from_slice(extra);
    m.value(name, &labels)
}

fn cycles(m: &Metrics, cluster: &str) -> f64 {
    value(m, "kafka_slo_exporter_cycles_total", cluster, &[]).unwrap_or(0.0)
}

fn topics_age(m: &Metrics, cluster: &str) -> Option<f64> {
    value(
        m,
        "kafka_slo_exporter_data_age_seconds",
        cluster,
        &[("stage", "topics")],
    )
}

#[test]
fn shard_flags_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_file(
        dir.path(),
        "c.yml",
        "clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n",
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(EXPORTER)
            .args(args)
            .arg("--config.file")
            .arg(&config)
            .arg("--config.check")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(run(&["--shard", "1", "--total-shards", "2"]).0, Some(0));
    let (code, err) = run(&["--shard", "2", "--total-shards", "2"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        "error: --shard 2 is out of range: shards are numbered 0 to 1 for --total-shards 2"
    );
    let (code, err) = run(&["--total-shards", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--total-shards must be at least 1"), "{err}");
    let (code, err) = run(&["--shard", "-1"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn one_cluster_down_neither_delays_nor_blanks_another() {
    let alive = KafkaCluster::shared_single();
    let doomed = KafkaCluster::start_new(ClusterOptions::with_nodes(1)).expect("second cluster");
    for k in [alive, &doomed] {
        k.create_topic("mc.orders", 2, 1, &[]).unwrap();
        k.produce("mc.orders", 0, &[Record::new("a"), Record::new("b"), Record::new("c")])
            .unwrap();
        k.commit_offsets("mc-app", &[("mc.orders", 0, 1)]).unwrap();
    }
    // A timeout much longer than the interval: a dead cluster's cycle takes several timeouts,
    // which must not hold back the live cluster's cycles.
    let config = format!(
        "global:\n  interval: 1s\n  timeout: 6s\n  max_staleness: 30s\n  topics: {{allow: ['mc\\..*']}}\n  groups: {{allow: ['mc-.*']}}\nclusters:\n  - name: alive\n    bootstrap_servers: {}\n  - name: doomed\n    bootstrap_servers: {}\n",
        bootstrap_yaml(alive),
        bootstrap_yaml(&doomed)
    );
    let exporter = Exporter::start(&config, &[]);
    let m = exporter.wait_for(Duration::from_secs(60), "both clusters up", |m| {
        ["alive", "doomed"].iter().all(|c| {
            value(m, "kafka_slo_exporter_cluster_up", c, &[]) == Some(1.0)
                && value(m, "kafka_consumergroup_topic_lag", c, &[("group", "mc-app")]) == Some(2.0)
        })
    });

    // Every series but those the catalogue documents as the process's own (build, shard, HTTP
    // rejections) carries `cluster`; both clusters export the same families.
    let process = common::process_metrics();
    assert!(process.contains("kafka_slo_exporter_build_info"), "{process:?}");
    let mut families: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in &m.samples {
        if process.contains(&s.metric) {
            continue;
        }
        let c = s
            .labels
            .get("cluster")
            .unwrap_or_else(|| panic!("{} has no cluster label", s.metric));
        families.entry(c).or_default().insert(s.metric.clone());
    }
    assert_eq!(families.keys().copied().collect::<Vec<_>>(), vec!["alive", "doomed"]);
    assert_eq!(families["alive"], families["doomed"]);
    assert!(families["alive"].len() > 40, "{:?}", families["alive"]);

    let id = doomed.broker_ids()[0];
    doomed.kill_broker(id);
    let killed = Instant::now();
    let cycles_at_kill = cycles(&m, "alive");

    // For 12 s (two of the dead cluster's request timeouts): the live cluster's data stays
    // fresh at every scrape and its cycles keep their 1 s pace.
    alive
        .produce("mc.orders", 0, &[Record::new("d"), Record::new("e")])
        .unwrap();
    let mut max_age = 0.0f64;
    let mut lag_seen = false;
    let mut last = m;
    while killed.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(250));
        last = exporter.scrape();
        let age = topics_age(&last, "alive").expect("the live cluster's data is served");
        max_age = max_age.max(age);
        lag_seen |= value(&last, "kafka_consumergroup_topic_lag", "alive", &[("group", "mc-app")]) == Some(4.0);
        assert_eq!(value(&last, "kafka_slo_exporter_cluster_up", "alive", &[]), Some(1.0));
        assert_eq!(value(&last, "kafka_brokers", "alive", &[]), Some(1.0));
    }
    let elapsed = killed.elapsed().as_secs_f64();
    let alive_cycles = cycles(&last, "alive") - cycles_at_kill;
    eprintln!("live cluster: {alive_cycles} cycles in {elapsed:.1} s after the kill, data age at most {max_age:.2} s");
    assert!(alive_cycles >= elapsed - 3.0, "{alive_cycles} cycles in {elapsed:.1} s");
    assert!(max_age < 2.5, "live cluster's data was {max_age} s old");
    assert!(lag_seen, "new records on the live cluster show in its lag");

    // The dead cluster is reported stale at once (its data age grows at every scrape) and down
    // once its first failing cycle has used up its request timeouts; its last data is served
    // until max_staleness.
    let doomed_age = topics_age(&last, "doomed").expect("last data within max_staleness");
    assert!(doomed_age > 10.0, "dead cluster's data age {doomed_age}");
    let last = exporter.wait_for(Duration::from_secs(30), "the dead cluster reported down", |m| {
        value(m, "kafka_slo_exporter_cluster_up", "doomed", &[]) == Some(0.0)
    });
    eprintln!(
        "dead cluster reported down {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let errors: f64 = last
        .find("kafka_slo_exporter_errors_total", &[("cluster", "doomed")])
        .iter()
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(errors >= 1.0, "errors of the dead cluster are counted");
    assert_eq!(
        value(&last, "kafka_topic_partitions", "doomed", &[("topic", "mc.orders")]),
        Some(2.0)
    );
    assert_eq!(value(&last, "kafka_slo_exporter_cluster_up", "alive", &[]), Some(1.0));
    assert!(topics_age(&last, "alive").unwrap() < 2.5);
}

/// Series identity: metric name and sorted labels.
type SeriesKey = (String, BTreeMap<String, String>);

fn series(m: &Metrics) -> BTreeMap<SeriesKey, f64> {
    m.samples
        .iter()
        .filter(|s| !s.metric.starts_with("kafka_slo_exporter_"))
        .map(|s| {
            let labels: BTreeMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            ((s.metric.clone(), labels), v)
        })
        .collect()
}

/// Values that depend on the scrape or cycle time rather than on the cluster's state.
fn time_dependent(name: &str) -> bool {
    name.contains("_seconds") || name.ends_with("_ratio") || name == "kafka_consumergroup_status"
}

#[test]
fn two_shards_split_the_series_of_one_unsharded_exporter() {
    let kafka = KafkaCluster::shared_single();
    let topics: Vec<String> = (0..8).map(|i| format!("shd.t{i}")).collect();
    for t in &topics {
        kafka.create_topic(t, 2, 1, &[("min.insync.replicas", "1")]).unwrap();
        let records: Vec<Record> = (0..5).map(|i| Record::new(format!("r{i}"))).collect();
        kafka.produce(t, 0, &records).unwrap();
        kafka.produce(t, 1, &records[..2]).unwrap();
    }
    // Group i commits on topic i+1: groups and the topics they consume land on different
    // shards for some pairs.
    let groups: Vec<String> = (0..8).map(|i| format!("shd-g{i}")).collect();
    for (i, g) in groups.iter().enumerate() {
        let t = &topics[(i + 1) % topics.len()];
        kafka.commit_offsets(g, &[(t, 0, 2), (t, 1, 1)]).unwrap();
    }
    let cross = groups
        .iter()
        .enumerate()
        .filter(|(i, g)| owner(g, 2) != owner(&topics[(i + 1) % topics.len()], 2))
        .count();
    assert!(cross >= 2, "the names must give cross-shard consumption, got {cross}");
    for names in [&topics, &groups] {
        let on_0 = names.iter().filter(|n| owner(n, 2) == 0).count();
        assert!(on_0 > 0 && on_0 < names.len(), "both shards own some of {names:?}");
    }
    let member = kafka
        .consuming_group("shd-live", &[&topics[0]], ConsumerOptions::default())
        .unwrap();
    member.wait_for_assignment(Duration::from_secs(30)).unwrap();
    // The member has read and committed everything before the exporters look: static state.
    let deadline = Instant::now() + Duration::from_secs(30);
    while kafka
        .committed_offsets("shd-live", &[(&topics[0], 0), (&topics[0], 1)])
        .unwrap()
        != vec![Some(5), Some(2)]
    {
        assert!(Instant::now() < deadline, "the live member did not commit its position");
        std::thread::sleep(Duration::from_millis(200));
    }

    let config = format!(
        "global:\n  interval: 1s\n  timeout: 5s\n  metrics: {{opt_in: ['.*']}}\n  topics: {{allow: ['shd\\..*']}}\n  groups: {{allow: ['shd-.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: {}\n    labels: {{env: test}}\n",
        bootstrap_yaml(kafka)
    );
    let whole = Exporter::start(&config, &[]);
    let shard0 = Exporter::start(&config, &["--shard", "0", "--total-shards", "2"]);
    let shard1 = Exporter::start(&config, &["--shard", "1", "--total-shards", "2"]);

    // Wait until each has completed cycles with every stage fresh and the live member seen.
    let settled = |m: &Metrics| {
        m.value("kafka_slo_exporter_cluster_up", &[("cluster", "local")]) == Some(1.0) && cycles(m, "local") >= 3.0
    };
    let m_whole = whole.wait_for(Duration::from_secs(60), "unsharded exporter settled", |m| {
        settled(m) && m.value("kafka_consumergroup_members", &[("group", "shd-live")]) == Some(1.0)
    });
    let m0 = shard0.wait_for(Duration::from_secs(60), "shard 0 settled", settled);
    let m1 = shard1.wait_for(Duration::from_secs(60), "shard 1 settled", settled);

    for (m, shard) in [(&m0, "0"), (&m1, "1")] {
        assert_eq!(
            m.value(
                "kafka_slo_exporter_shard_info",
                &[("shard", shard), ("total_shards", "2")]
            ),
            Some(1.0)
        );
    }
    assert_eq!(
        m_whole.value(
            "kafka_slo_exporter_shard_info",
            &[("shard", "0"), ("total_shards", "1")]
        ),
        Some(1.0)
    );

    let (whole_s, s0, s1) = (series(&m_whole), series(&m0), series(&m1));
    let keys = |s: &BTreeMap<SeriesKey, f64>| s.keys().cloned().collect::<BTreeSet<_>>();
    let (k_whole, k0, k1) = (keys(&whole_s), keys(&s0), keys(&s1));

    let overlap: Vec<_> = k0.intersection(&k1).collect();
    assert!(overlap.is_empty(), "series exported by both shards: {overlap:#?}");
    let union: BTreeSet<SeriesKey> = k0.union(&k1).cloned().collect();
    let extra: Vec<_> = union.difference(&k_whole).collect();
    assert!(extra.is_empty(), "series only the shards export: {extra:#?}");
    let missing: Vec<&SeriesKey> = k_whole.difference(&union).collect();
    assert!(missing.is_empty(), "series missing from the shards: {missing:#?}");

    // Cluster-wide series come from shard 0 only; per-topic and per-group ones from the owner.
    for f in [
        "kafka_brokers",
        "kafka_broker_leader_partitions",
        "kafka_cluster_info",
        "kafka_topics",
        "kafka_partitions",
    ] {
        assert!(k0.iter().any(|(n, _)| n == f), "{f} on shard 0");
        assert!(!k1.iter().any(|(n, _)| n == f), "{f} not on shard 1");
    }
    assert_eq!(m0.value("kafka_topics", &[("cluster", "local")]), Some(8.0));
    assert_eq!(m0.value("kafka_partitions", &[("cluster", "local")]), Some(16.0));
    for (m, shard) in [(&m0, 0), (&m1, 1)] {
        for t in &topics {
            let present = m.value("kafka_topic_partitions", &[("topic", t)]).is_some();
            assert_eq!(present, owner(t, 2) == shard, "{t} on shard {shard}");
        }
        for g in &groups {
            let present = m.value("kafka_consumergroup_topic_lag", &[("group", g)]).is_some();
            assert_eq!(present, owner(g, 2) == shard, "{g} on shard {shard}");
        }
    }

    // Values agree for everything that does not move with the clock.
    let mut compared = 0;
    for (k, v) in s0.iter().chain(s1.iter()) {
        if time_dependent(&k.0) {
            continue;
        }
        let w = whole_s[k];
        assert!(v == &w || (v.is_nan() && w.is_nan()), "{k:?}: shard {v}, unsharded {w}");
        compared += 1;
    }
    eprintln!(
        "series: unsharded {}, shard 0 {}, shard 1 {}; {} values compared; {} unsharded-only aggregates",
        k_whole.len(),
        k0.len(),
        k1.len(),
        compared,
        missing.len()
    );
    assert!(compared > 200, "{compared}");
    drop(member);
}
