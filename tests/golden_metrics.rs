//! Golden `/metrics` fixtures: the whole output of one scripted cluster, in Prometheus text and
//! OpenMetrics, rendered without Kafka.
//!
//! A scripted [`KafkaSource`] (three brokers, topics that pass and fail the ADR policy, an
//! under-replicated and an offline partition, an open transaction, a consumer group behind,
//! an assign-only group, a group that lost data) goes through the poller's real cycle
//! functions three times, 30 s apart, at fixed instants; the snapshots are encoded by the real
//! collectors with a fixed scrape time, beside a delivery probe's and a Schema Registry's
//! snapshot. The output is compared byte for byte with `tests/golden/metrics.prom` and
//! `tests/golden/metrics.openmetrics`, so every change to names, help texts, labels, types or
//! values shows up in review as a diff of those files.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden_metrics` rewrites the fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use kafka_slo_exporter::collectors::{Format, SideSlots};
use kafka_slo_exporter::config::{ClusterConfig, Compat, Config};
use kafka_slo_exporter::families::{Lists, Preset, Selection, CATALOG};
use kafka_slo_exporter::kafka::{
    Broker, ClientErrors, ClusterDescription, GroupDescription, GroupListing, GroupMember, GroupOffsets, GroupState,
    GroupType, KafkaSource, OffsetSpec, PartitionMetadata, PartitionOffset, ReaderKind, ReaderStats, RecordAt,
    SourceError, TopicConfig, TopicMetadata, TopicPartition,
};
use kafka_slo_exporter::policy::Policy;
use kafka_slo_exporter::poller::collect_io;
use kafka_slo_exporter::probe::{Histogram, PartitionCounters, ProbeSnapshot, ERROR_STAGES};
use kafka_slo_exporter::registry::crosscheck::CrossCheck;
use kafka_slo_exporter::registry::inventory::Inventory;
use kafka_slo_exporter::registry::wire::SampleCounts;
use kafka_slo_exporter::registry::{Operation, OperationStats, RegistrySnapshot};
use kafka_slo_exporter::snapshot::{ClusterSnapshot, IoOutcome, Memory, StageOutcome};

/// The first cycle's instant (2026-01-01T00:00:00Z); cycles run every [`INTERVAL`].
const T0_UNIX: u64 = 1_767_225_600;
const INTERVAL: Duration = Duration::from_secs(30);
const CYCLES: u32 = 3;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0_UNIX)
}

/// One partition of the scripted estate: replicas, in-sync replicas, leader, and offsets at the
/// first cycle (log start, high watermark, last stable); the high watermark grows by `rate`
/// records per cycle.
struct Part {
    topic: &'static str,
    id: i32,
    leader: Option<i32>,
    replicas: &'static [i32],
    isr: &'static [i32],
    start: i64,
    hw: i64,
    open_txn: i64,
    rate: i64,
}

const PARTS: &[Part] = &[
    // A compliant domain-event topic, one replica out of sync on partition 1.
    Part {
        topic: "orders.order.events",
        id: 0,
        leader: Some(1),
        replicas: &[1, 2, 3],
        isr: &[1, 2, 3],
        start: 0,
        hw: 1_000,
        open_txn: 0,
        rate: 60,
    },
    Part {
        topic: "orders.order.events",
        id: 1,
        leader: Some(2),
        replicas: &[2, 3, 1],
        isr: &[2, 3],
        start: 0,
        hw: 900,
        open_txn: 0,
        rate: 30,
    },
    // An audit topic with an open transaction and a retention below the class minimum.
    Part {
        topic: "audit.payments",
        id: 0,
        leader: Some(3),
        replicas: &[3, 1, 2],
        isr: &[3, 1, 2],
        start: 200,
        hw: 5_000,
        open_txn: 40,
        rate: 10,
    },
    // A topic no convention matches, replication factor 1, its only partition offline.
    Part {
        topic: "legacy_export",
        id: 0,
        leader: None,
        replicas: &[2],
        isr: &[],
        start: 0,
        hw: 0,
        open_txn: 0,
        rate: 0,
    },
];

/// (topic, config) pairs returned by DescribeConfigs.
const CONFIGS: &[(&str, &[(&str, &str)])] = &[
    (
        "orders.order.events",
        &[
            ("retention.ms", "604800000"),
            ("min.insync.replicas", "2"),
            ("compression.type", "lz4"),
            ("cleanup.policy", "delete"),
            ("unclean.leader.election.enable", "false"),
            ("retention.bytes", "-1"),
        ],
    ),
    (
        "audit.payments",
        &[
            ("retention.ms", "86400000"),
            ("min.insync.replicas", "2"),
            ("compression.type", "zstd"),
            ("cleanup.policy", "delete"),
            ("unclean.leader.election.enable", "false"),
            ("retention.bytes", "-1"),
        ],
    ),
    (
        "legacy_export",
        &[
            ("retention.ms", "3600000"),
            ("min.insync.replicas", "1"),
            ("compression.type", "producer"),
            ("cleanup.policy", "compact"),
            ("unclean.leader.election.enable", "true"),
            ("retention.bytes", "1073741824"),
        ],
    ),
];

/// A consumer group: listing, whether it has members (which consume every partition of
/// `topic`), and its committed offsets as (topic, partition, offset at the first cycle,
/// growth per cycle).
struct Group {
    name: &'static str,
    state: GroupState,
    group_type: GroupType,
    simple: bool,
    members: bool,
    topic: &'static str,
    commits: &'static [(&'static str, i32, i64, i64)],
}

const GROUPS: &[Group] = &[
    // Keeps up on partition 0, falls behind on partition 1.
    Group {
        name: "billing",
        state: GroupState::Stable,
        group_type: GroupType::Consumer,
        simple: false,
        members: true,
        topic: "orders.order.events",
        commits: &[("orders.order.events", 0, 990, 60), ("orders.order.events", 1, 600, 10)],
    },
    // A classic group without members whose committed offset is below the log start.
    Group {
        name: "audit-archiver",
        state: GroupState::Empty,
        group_type: GroupType::Classic,
        simple: false,
        members: false,
        topic: "audit.payments",
        commits: &[("audit.payments", 0, 150, 0)],
    },
    // A stream processor that assigns partitions itself and only commits.
    Group {
        name: "flink-enricher",
        state: GroupState::Empty,
        group_type: GroupType::Classic,
        simple: true,
        members: false,
        topic: "orders.order.events",
        commits: &[("orders.order.events", 0, 1_000, 50)],
    },
];

/// The scripted cluster; `cycle` selects the offsets of the current cycle.
#[derive(Default)]
struct Estate {
    cycle: AtomicI64,
}

impl Estate {
    fn hw(&self, p: &Part) -> i64 {
        p.hw + p.rate * self.cycle.load(Ordering::SeqCst)
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

impl KafkaSource for Estate {
    fn describe_cluster(&self, _: Duration) -> Result<ClusterDescription, SourceError> {
        let brokers = (1..=3)
            .map(|id| Broker {
                id,
                host: format!("kafka-{id}.test"),
                port: 9092,
                rack: Some(format!("zone-{id}")),
            })
            .collect();
        Ok(ClusterDescription {
            cluster_id: Some("golden-cluster-id".into()),
            controller_id: Some(1),
            brokers,
        })
    }

    fn topic_metadata(&self, _: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        let mut topics: BTreeMap<&str, Vec<PartitionMetadata>> = BTreeMap::new();
        for p in PARTS {
            topics.entry(p.topic).or_default().push(PartitionMetadata {
                id: p.id,
                leader: p.leader,
                replicas: p.replicas.to_vec(),
                isr: p.isr.to_vec(),
                // A cluster with ELR (KIP-966): one replica out of the ISR is still eligible.
                elr: Some(
                    p.replicas
                        .iter()
                        .filter(|r| !p.isr.contains(r))
                        .take(1)
                        .copied()
                        .collect(),
                ),
                last_known_elr: Some(Vec::new()),
            });
        }
        // The exporter's own probe topic, exempt from the policy.
        topics
            .entry("kafka-slo-exporter.probe")
            .or_default()
            .push(PartitionMetadata {
                id: 0,
                leader: Some(1),
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                elr: Some(Vec::new()),
                last_known_elr: Some(Vec::new()),
            });
        Ok(topics
            .into_iter()
            .map(|(name, partitions)| TopicMetadata {
                name: name.into(),
                partitions,
            })
            .collect())
    }

    fn topic_configs(&self, topics: &[String], _: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        Ok(topics
            .iter()
            .map(|t| {
                let cfg = CONFIGS.iter().find(|(n, _)| n == t).map(|(_, c)| *c).unwrap_or(&[]);
                (
                    t.clone(),
                    cfg.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                )
            })
            .collect())
    }

    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        _: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        Ok(partitions
            .iter()
            .map(|want| {
                let offset = match PARTS.iter().find(|p| tp(p.topic, p.id) == *want) {
                    None => Ok(10),
                    Some(p) => Ok(match spec {
                        OffsetSpec::Earliest => p.start,
                        OffsetSpec::Latest => self.hw(p),
                        OffsetSpec::LatestCommitted => self.hw(p) - p.open_txn,
                    }),
                };
                PartitionOffset {
                    tp: want.clone(),
                    offset,
                }
            })
            .collect())
    }

    fn list_groups(&self, _: Duration) -> Result<Vec<GroupListing>, SourceError> {
        Ok(GROUPS
            .iter()
            .map(|g| GroupListing {
                group: g.name.into(),
                state: g.state,
                group_type: g.group_type,
                is_simple: g.simple,
            })
            .collect())
    }

    fn describe_groups(&self, groups: &[String], _: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        Ok(GROUPS
            .iter()
            .filter(|g| groups.iter().any(|n| n == g.name))
            .map(|g| {
                let members = if g.members {
                    let assignment = PARTS
                        .iter()
                        .filter(|p| p.topic == g.topic)
                        .map(|p| tp(p.topic, p.id))
                        .collect();
                    vec![GroupMember {
                        member_id: format!("{}-member-1", g.name),
                        client_id: format!("{}-client", g.name),
                        host: "/10.0.0.7".into(),
                        assignment,
                    }]
                } else {
                    Vec::new()
                };
                GroupDescription {
                    group: g.name.into(),
                    state: g.state,
                    group_type: g.group_type,
                    assignor: if g.members { "uniform".into() } else { String::new() },
                    coordinator: Some(2),
                    members,
                    error: None,
                }
            })
            .collect())
    }

    fn group_offsets(&self, groups: &[String], _: usize, _: Duration) -> Result<Vec<GroupOffsets>, SourceError> {
        let cycle = self.cycle.load(Ordering::SeqCst);
        Ok(GROUPS
            .iter()
            .filter(|g| groups.iter().any(|n| n == g.name))
            .map(|g| GroupOffsets {
                group: g.name.into(),
                offsets: Ok(g
                    .commits
                    .iter()
                    .map(|(t, p, o, step)| (tp(t, *p), o + step * cycle))
                    .collect()),
            })
            .collect())
    }

    /// Records arrive at the partition's rate: the one at offset `o` was written
    /// `(o - hw) / rate` intervals after the first cycle (before it for `o` below that cycle's
    /// high watermark).
    fn records_at(&self, requests: &[(TopicPartition, i64)], _: Duration) -> Result<Vec<RecordAt>, SourceError> {
        let t0_ms = (T0_UNIX * 1000) as i64;
        let interval_ms = INTERVAL.as_millis() as i64;
        Ok(requests
            .iter()
            .map(|(want, o)| {
                let (hw, rate) = PARTS
                    .iter()
                    .find(|p| tp(p.topic, p.id) == *want)
                    .map_or((*o, 1), |p| (p.hw, p.rate.max(1)));
                let timestamp_ms = t0_ms + (o - hw) * interval_ms / rate;
                RecordAt {
                    tp: want.clone(),
                    requested: *o,
                    offset: *o,
                    timestamp_ms,
                }
            })
            .collect())
    }
}

const CONFIG: &str = "\
global:
  interval: 30s
  max_series: 100000
  topics:
    deny: ['__.*']
  lag:
    granularity: partition
clusters:
  - name: golden
    bootstrap_servers: ['kafka-1.test:9092']
    labels:
      env: test
";

fn cluster_config() -> ClusterConfig {
    Config::parse(Path::new("golden.yml"), CONFIG)
        .expect("the golden configuration is valid")
        .clusters
        .remove(0)
}

/// Sets every stage's duration to a fixed value (they are measured with a real clock).
fn fixed_durations(io: &mut IoOutcome) {
    let ms = Duration::from_millis;
    io.cluster.duration = ms(4);
    io.topics.duration = ms(6);
    io.groups.duration = ms(9);
    if let Some(c) = io.configs.as_mut() {
        c.duration = ms(5);
    }
    if let Some(o) = io.offsets.as_mut() {
        o.duration = ms(7);
    }
    if let Some(g) = io.group_offsets.as_mut() {
        g.duration = ms(8);
    }
}

/// One collection cycle at `at` through the poller's cycle functions, with fixed durations.
fn cycle(
    source: &Estate,
    cfg: &ClusterConfig,
    policy: &Policy,
    memory: &mut Memory,
    at: SystemTime,
) -> ClusterSnapshot {
    let mut io = collect_io(source, cfg, memory);
    io.at = at;
    fixed_durations(&mut io);
    let mut ok = memory.fold_io(io, cfg);
    let read = |wanted: &[(TopicPartition, i64)]| StageOutcome {
        duration: Duration::from_millis(3),
        result: source.records_at(wanted, cfg.timeout),
    };
    let wanted = memory.reads_needed(cfg.lag.max_record_reads);
    ok &= memory.fold_records(read(&wanted), wanted.len(), at);
    let limit = cfg.lag.max_record_reads.saturating_sub(wanted.len());
    if let Some(replay) = memory.replay_reads_needed(at, cfg.compliance.replay_window_refresh, limit, cfg.shard) {
        ok &= memory.fold_replay_reads(read(&replay), replay.len(), at);
    }
    memory.snapshot(cfg, policy, at, Duration::from_millis(48), ok)
}

/// The delivery probe after three rounds: one record per partition per round, one late.
fn probe_snapshot(at: SystemTime) -> ProbeSnapshot {
    let mut produce = Histogram::default();
    let mut end_to_end = Histogram::default();
    for (p, e) in [(0.004, 0.012), (0.006, 0.030), (0.003, 0.800)] {
        produce.observe(p);
        end_to_end.observe(e);
    }
    let mut commit = Histogram::default();
    commit.observe(0.002);
    let counters = PartitionCounters {
        produced: 3,
        acknowledged: 3,
        failed: BTreeMap::from([("timeout".to_string(), 1)]),
        received: 3,
        delivered_in_time: 2,
        lost: 0,
        late: 1,
        duplicated: 0,
    };
    ProbeSnapshot {
        topic: "kafka-slo-exporter.probe".into(),
        up: true,
        rounds_total: 3,
        last_success: Some(at),
        errors: ERROR_STAGES.iter().map(|s| (*s, u64::from(*s == "produce"))).collect(),
        leaders: BTreeMap::from([(0, Some(1))]),
        partitions: BTreeMap::from([(0, counters)]),
        produce_latency: BTreeMap::from([((0, 1), produce)]),
        end_to_end_latency: BTreeMap::from([((0, 1), end_to_end)]),
        commit_latency: commit,
    }
}

/// The Schema Registry after a successful poll: a small inventory with one soft-deleted
/// subject, the audit topic without a value subject, an orphan subject, and sampled records of
/// the orders topic of every framing.
fn registry_snapshot(at: SystemTime) -> RegistrySnapshot {
    let mut s = RegistrySnapshot::empty(true);
    s.up = true;
    s.last_success = Some(at);
    for (i, op) in Operation::ALL.into_iter().enumerate() {
        let n = i as u64;
        s.operations.insert(
            op,
            OperationStats {
                requests_total: 3 + n,
                errors_total: u64::from(op == Operation::SubjectConfig),
                last_duration: Some(Duration::from_millis(2 + n)),
            },
        );
    }
    s.inventory = Some(Arc::new(Inventory {
        at,
        subjects_live: 2,
        subjects_soft_deleted: 1,
        versions_live: Some(3),
        versions_soft_deleted: Some(1),
        subject_versions: BTreeMap::from([
            ("orders.order.events-value".into(), 2),
            ("retired.topic-value".into(), 1),
        ]),
        latest_types: BTreeMap::from([("AVRO".into(), 1), ("JSON".into(), 1)]),
        global_compatibility: Some("BACKWARD".into()),
        mode: Some("READWRITE".into()),
        by_compatibility: BTreeMap::from([("BACKWARD".into(), 1), ("NONE".into(), 1)]),
        unresolved: 0,
        contexts: Some(1),
        subjects: ["orders.order.events-value", "retired.topic-value"]
            .map(String::from)
            .into(),
        ids: [1, 2, 3].into(),
    }));
    s.cross_check = Some(Arc::new(CrossCheck {
        topics: vec![("audit.payments".into(), true), ("orders.order.events".into(), false)],
        orphans: vec!["retired.topic-value".into()],
    }));
    s.samples = Some(Arc::new(BTreeMap::from([(
        "orders.order.events".to_string(),
        SampleCounts {
            counts: [40, 3, 5, 1, 2],
        },
    )])));
    s
}

/// The native reader serving the cluster, after the requests of one cycle.
fn reader_stats() -> ReaderStats {
    let stats = ReaderStats::new();
    stats.set_reader(ReaderKind::Native, "default");
    for (api, n) in [
        ("ApiVersions", 1),
        ("Metadata", 2),
        ("ListOffsets", 3),
        ("ListGroups", 1),
        ("OffsetFetch", 1),
    ] {
        for _ in 0..n {
            stats.count(api, "1");
        }
    }
    stats
}

/// The snapshot after the scripted cycles, and the instant of the last one.
fn scripted_snapshot(cfg: &ClusterConfig) -> (ClusterSnapshot, SystemTime) {
    let policy = Policy::builtin();
    let source = Estate::default();
    let mut memory = Memory::default();
    let mut last = None;
    for n in 0..CYCLES {
        source.cycle.store(i64::from(n), Ordering::SeqCst);
        last = Some(cycle(&source, cfg, &policy, &mut memory, t0() + INTERVAL * n));
    }
    (last.expect("at least one cycle"), t0() + INTERVAL * (CYCLES - 1))
}

/// The whole `/metrics` body in `format`, scraped 2 s after the last cycle, with the default
/// selection of families.
fn render(format: Format) -> String {
    render_selected(format, Selection::default())
}

/// Every family, each with every series (`opt_in: [".*"]`).
fn everything() -> Selection {
    Selection::new(&Lists {
        opt_in: vec![".*".into()],
        ..Lists::default()
    })
    .unwrap()
}

/// The `/metrics` body in `format` with `selection`.
fn render_selected(format: Format, selection: Selection) -> String {
    let cfg = cluster_config();
    let (snapshot, at) = scripted_snapshot(&cfg);
    let slot = Arc::new(ArcSwap::from_pointee(snapshot));
    let probe = Arc::new(ArcSwap::from_pointee(probe_snapshot(at)));
    let registry = Arc::new(ArcSwap::from_pointee(registry_snapshot(at)));
    let side = SideSlots {
        probes: vec![("golden".to_string(), probe)],
        registries: vec![("golden".to_string(), registry)],
        client_errors: vec![("golden".to_string(), ClientErrors::new())],
        reader_stats: vec![("golden".to_string(), reader_stats())],
        rejections: Default::default(),
        reloads: Default::default(),
    };
    let exposition = kafka_slo_exporter::collectors::registry(vec![slot], side, cfg.shard, Some(100_000), selection);
    let body = exposition
        .render_plain_at(format, at + Duration::from_secs(2))
        .expect("the fixed snapshots encode");
    mask_build(&String::from_utf8(body).expect("the exposition is UTF-8"))
}

/// The build info names the crate version, git revision and librdkafka version, which change
/// without the output's shape changing.
fn mask_build(body: &str) -> String {
    body.lines()
        .map(|l| {
            if l.starts_with("kafka_slo_exporter_build_info{") {
                "kafka_slo_exporter_build_info{version=\"<version>\",revision=\"<revision>\",rdkafka_version=\"<rdkafka_version>\"} 1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Compares `actual` with the fixture, or rewrites the fixture under `UPDATE_GOLDEN=1`.
fn check(name: &str, actual: &str) {
    let path = fixture(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered output from line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended, rewrite the fixtures with UPDATE_GOLDEN=1 and review the diff.",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first),
        );
    }
}

#[test]
fn prometheus_text_matches_the_golden_fixture() {
    check("metrics.prom", &render(Format::Prometheus));
}

#[test]
fn openmetrics_matches_the_golden_fixture() {
    let body = render(Format::OpenMetrics);
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    check("metrics.openmetrics", &body);
}

/// Rendering twice gives the same bytes: no hash-map order or clock reading leaks into the
/// output, so the fixtures can be compared byte for byte.
#[test]
fn rendering_is_deterministic() {
    assert_eq!(render(Format::Prometheus), render(Format::Prometheus));
}

#[test]
fn every_family_opted_in_matches_the_golden_fixture() {
    check("metrics-all.prom", &render_selected(Format::Prometheus, everything()));
}

/// The families of a Prometheus text body, by the names the catalog uses (counters with
/// `_total`, infos with `_info`), without the exporter's own.
fn families_of(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let name = rest.split(' ').next().unwrap();
        if !name.starts_with("kafka_slo_exporter_") {
            out.insert(name.to_string());
        }
    }
    out
}

/// The catalog of families (what the selection lists validate against) is exactly what the
/// exporter can serve: every family of the all-families output is in it, and every catalog
/// family shows up there. The estate of this fixture has every kind of problem, so the default
/// output shows the problems-only families too, and only the off-by-default ones are missing.
#[test]
fn the_catalog_is_exactly_the_served_families() {
    let all = families_of(&render_selected(Format::Prometheus, everything()));
    // Served only after an event the fixture does not stage (a topic gaining partitions);
    // compliance_kafka.rs checks it against real Kafka.
    let evented = ["kafka_topic_partition_count_last_change_timestamp_seconds"];
    let catalog: BTreeSet<String> = CATALOG
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| !evented.contains(&n.as_str()))
        .collect();
    assert_eq!(
        all.difference(&catalog).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "served but not in the catalog"
    );
    assert_eq!(
        catalog.difference(&all).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the catalog but never served"
    );
    // By default: every family that serves all its series, none of the opt-in ones, and of the
    // problems-only ones those whose problem the fixture stages.
    let default = families_of(&render(Format::Prometheus));
    let preset = |n: &str| CATALOG.iter().find(|(c, _)| *c == n).map(|(_, p)| *p);
    let always: BTreeSet<String> = CATALOG
        .iter()
        .filter(|(_, p)| matches!(p, Preset::On | Preset::Current))
        .map(|(n, _)| n.to_string())
        .filter(|n| !evented.contains(&n.as_str()))
        .collect();
    assert_eq!(always.difference(&default).collect::<Vec<_>>(), Vec::<&String>::new());
    for n in default.difference(&always) {
        assert_eq!(preset(n), Some(Preset::Problems), "{n} is served by default");
    }
    let unstaged: Vec<&str> = CATALOG
        .iter()
        .filter(|(n, p)| *p == Preset::Problems && !default.contains(*n))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        unstaged,
        ["kafka_consumergroup_topic_uncommitted_partitions"],
        "problems the fixture does not stage"
    );
}

/// Problems-only families serve only the partitions with a problem by default, every partition
/// when opted in; the current group status only, every status when opted in.
#[test]
fn problems_only_families_serve_problem_partitions_and_current_states() {
    let count = |body: &str, family: &str| {
        body.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
            .count()
    };
    let default = render(Format::Prometheus);
    let all = render_selected(Format::Prometheus, everything());
    let (d, a) = (
        count(&default, "kafka_partition_leader"),
        count(&all, "kafka_partition_leader"),
    );
    assert!(0 < d && d < a, "leader series: {d} by default, {a} opted in");
    for l in default
        .lines()
        .filter(|l| l.starts_with("kafka_partition_under_replicated{"))
    {
        let topic = l.split("topic=\"").nth(1).unwrap().split('"').next().unwrap();
        let partition = l.split("partition=\"").nth(1).unwrap().split('"').next().unwrap();
        let replicas = default
            .lines()
            .find(|x| {
                x.starts_with("kafka_partition_in_sync_replicas{")
                    && x.contains(&format!("topic=\"{topic}\",partition=\"{partition}\""))
            })
            .expect("a problem partition shows its in-sync replicas too");
        assert!(!replicas.is_empty());
    }
    let statuses = |body: &str| {
        body.lines()
            .filter(|l| l.starts_with("kafka_consumergroup_status{"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        statuses(&default).iter().all(|v| v == "1.0" || v == "1"),
        "{:?}",
        statuses(&default)
    );
    assert_eq!(statuses(&all).len(), statuses(&default).len() * 5);
}

/// docs/metrics.md lists every catalog family and marks each one whose default is not "every
/// series" the way the catalog has it (*Problems only* or *Opt-in*), so the reference never
/// promises a series the defaults leave out.
#[test]
fn docs_mark_every_family_with_its_default() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md")).unwrap();
    for (name, preset) in CATALOG {
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("{name} has no row in docs/metrics.md"));
        let meaning = row.rsplit_once(" | ").map(|(_, m)| m).unwrap_or(row);
        let marked = if meaning.starts_with("*Problems only") {
            Preset::Problems
        } else if meaning.starts_with("*Current state only") {
            Preset::Current
        } else if meaning.starts_with("*Opt-in.*") {
            Preset::Off
        } else {
            Preset::On
        };
        assert_eq!(
            marked, *preset,
            "{name}: docs/metrics.md marks {marked:?}, the catalog has {preset:?}"
        );
    }
}

/// The kafka_exporter compatibility output (`/kafka_exporter/metrics`) of the same snapshots:
/// its names, labels and values (the -1 of partitions without a commit) show up in review.
fn render_compat(format: Format) -> String {
    let (snapshot, at) = scripted_snapshot(&cluster_config());
    let slot = Arc::new(ArcSwap::from_pointee(snapshot));
    let exposition = kafka_slo_exporter::collectors::compat(vec![slot], Compat::KafkaExporter);
    let body = exposition
        .render_plain_at(format, at + Duration::from_secs(2))
        .expect("the fixed snapshots encode");
    String::from_utf8(body).expect("the exposition is UTF-8")
}

#[test]
fn kafka_exporter_compat_output_matches_the_golden_fixture() {
    check("compat-kafka_exporter.prom", &render_compat(Format::Prometheus));
    let body = render_compat(Format::OpenMetrics);
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    check("compat-kafka_exporter.openmetrics", &body);
}
