//! Fault matrix on a real 3-broker KRaft cluster with a real Schema Registry, while a
//! background scraper hits `/metrics` every 50 ms for the whole run.
//!
//! Faults, one after the other on the same cluster (each phase starts from a healthy cluster
//! and checks its own assertions): one broker's port throttled to a trickle on `lo`, then the
//! same port cut off, everything the broker sends from it dropped (`tc`; skipped with the
//! reason where the kernel lacks it); one broker frozen with SIGSTOP; one broker killed and
//! restarted; two of three down; the whole cluster down for several cycles and back; the
//! registry down and restarted.
//!
//! Throughout: no scrape fails, the exporter never exits, `/metrics` p99 < 100 ms, and on every
//! scrape stale data is never presented as fresh (checked by [`check_scrape`]). After each
//! repair, every checked series is correct by the end of the first exporter cycle that runs
//! after Kafka itself reports healthy (measured with a separate client). A cycle already running
//! then may still end with the fault's errors: its stages each wait up to the request timeout.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Exporter, Metrics};
use kafka_harness::{ClusterOptions, ConsumerOptions, KafkaCluster, PortFault, SchemaRegistry};
use rdkafka::consumer::{BaseConsumer, Consumer};

const TOPIC: &str = "f.orders";
const PARTITIONS: usize = 6;
/// Exporter collection interval and request timeout (s).
const INTERVAL: f64 = 1.0;
const TIMEOUT: f64 = 2.0;
/// Default max_staleness: 5 × interval.
const MAX_STALENESS: f64 = 5.0 * INTERVAL;
/// One exporter cycle after Kafka is healthy, when no cycle was held up by the fault: the next
/// cycle starts within one interval and ends within the request timeout (plus scheduling slack
/// on a busy 2-core host). Brokers may also still be spreading the new metadata meanwhile.
const ONE_CYCLE: Duration = Duration::from_millis(((INTERVAL + TIMEOUT) * 1000.0) as u64 + 1000);
/// Stages of a cycle, each of which can wait up to the request timeout.
const CYCLE_STAGES: f64 = 8.0;
/// The longest a recovery may take, to catch a stalled exporter: the cycle already running when
/// Kafka turned healthy (every stage up to the request timeout), one interval, and one cycle
/// against a healthy cluster (within the request timeout), plus scheduling slack.
const RECOVERY_LIMIT: Duration =
    Duration::from_millis(((CYCLE_STAGES * TIMEOUT + INTERVAL + TIMEOUT) * 1000.0) as u64 + 1000);
/// The registry's poll interval, request timeout and max_staleness in the exporter (s).
const REGISTRY_INTERVAL: f64 = 1.0;
const REGISTRY_TIMEOUT: f64 = 1.0;
const REGISTRY_MAX_STALENESS: f64 = 4.0;
/// One registry poll after the registry holds its data again: the next poll starts within one
/// interval and its requests to a healthy registry end within the request timeout (plus
/// scheduling slack, and a freshly started JVM's slower first answers).
const REGISTRY_ONE_CYCLE: Duration =
    Duration::from_millis(((REGISTRY_INTERVAL + REGISTRY_TIMEOUT) * 1000.0) as u64 + 1000);
/// How soon a broker kill Kafka's metadata shows must reach /metrics: one interval plus one
/// second, plus slack for this test's polling (a fresh client's metadata request per poll) and
/// for a busy 2-core host.
const KILL_VISIBLE: Duration = Duration::from_millis((INTERVAL * 1000.0) as u64 + 1000 + 2000);
/// Schema of the value subject the test registers.
const SUBJECT_SCHEMA: &str = r#"{"type":"string"}"#;
/// Stages whose data every cycle refreshes (time lag and replay window have their own cadence).
const CORE_STAGES: [&str; 6] = [
    "cluster",
    "topics",
    "topic_configs",
    "offsets",
    "groups",
    "group_offsets",
];

/// One scrape of the background scraper.
struct Scrape {
    at: Instant,
    latency: Duration,
    error: Option<String>,
}

/// The background scraper: GETs `/metrics` every 50 ms, times it and checks the invariants.
struct Scraper {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Scrape>>>,
    violations: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Scraper {
    fn start(url: String) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (s, l, v) = (Arc::clone(&stop), Arc::clone(&log), Arc::clone(&violations));
        let thread = thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let res = agent.get(&url).call();
                let latency = t.elapsed();
                let error = match res {
                    Ok(r) if r.status() == 200 => match r.into_string() {
                        Ok(body) => {
                            let m = Metrics::parse(&body);
                            if let Err(e) = check_scrape(&m, unix_now()) {
                                v.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                            }
                            None
                        }
                        Err(e) => Some(format!("reading body: {e}")),
                    },
                    Ok(r) => Some(format!("HTTP {}", r.status())),
                    Err(e) => Some(e.to_string()),
                };
                l.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Scrape { at: t, latency, error });
                thread::sleep(Duration::from_millis(50));
            }
        });
        Scraper {
            stop,
            log,
            violations,
            thread: Some(thread),
        }
    }

    /// Asserts the scrapes since `since`: none failed, p99 < 100 ms (over at least 100 scrapes),
    /// no invariant broken.
    /// Returns (scrapes, p99) for the report.
    fn assert_clean(&self, phase: &str, since: Instant) -> (usize, Duration) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let window: Vec<&Scrape> = log.iter().filter(|s| s.at >= since).collect();
        assert!(window.len() >= 10, "{phase}: only {} scrapes", window.len());
        let failed: Vec<&String> = window.iter().filter_map(|s| s.error.as_ref()).collect();
        assert!(
            failed.is_empty(),
            "{phase}: {} scrapes failed: {failed:?}",
            failed.len()
        );
        let mut lat: Vec<Duration> = window.iter().map(|s| s.latency).collect();
        lat.sort();
        let p99 = lat[(lat.len() * 99).div_ceil(100) - 1];
        // A p99 of fewer than 100 scrapes would be the maximum of a handful.
        assert!(
            lat.len() < 100 || p99 < Duration::from_millis(100),
            "{phase}: /metrics p99 {p99:?} over {} scrapes",
            lat.len()
        );
        let v = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            v.is_empty(),
            "{phase}: stale data presented as fresh:\n{}",
            v.join("\n")
        );
        eprintln!(
            "[fault-matrix] {phase}: {} scrapes, 0 failed, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            p99.as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3
        );
        (lat.len(), p99)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Longest a cycle can take: the slowest branch is Metadata then three ListOffsets calls, each
/// bounded by the request timeout; the record reads for time lag follow.
const MAX_CYCLE: f64 = 5.0 * TIMEOUT;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Invariants every single scrape must satisfy, whatever the fault (`now`: when it was read):
/// - the age served for a stage's data is the true age: the time since that stage's last
///   success (the data is never refreshed by anything else);
/// - `cluster_up` 1 means every core stage's data is at most one interval plus one cycle old;
/// - no stage's data older than `max_staleness` plus one cycle is served;
/// - Kafka series are only served together with the age of the data they come from;
/// - registry data is withdrawn once older than the registry's `max_staleness` (plus one poll).
fn check_scrape(m: &Metrics, now: f64) -> Result<(), String> {
    let age = |stage: &str| m.value("kafka_slo_exporter_data_age_seconds", &[("stage", stage)]);
    let up = m.value("kafka_slo_exporter_cluster_up", &[]);
    for stage in CORE_STAGES {
        let a = age(stage);
        let ok_at = m.value(
            "kafka_slo_exporter_stage_last_success_timestamp_seconds",
            &[("stage", stage)],
        );
        if let (Some(a), Some(ok_at)) = (a, ok_at) {
            if (now - ok_at - a).abs() > 1.5 {
                return Err(format!(
                    "{stage} data age {a:.2}s but its last success was {:.2}s ago",
                    now - ok_at
                ));
            }
        }
        if up == Some(1.0) && a.is_none_or(|a| a > INTERVAL + MAX_CYCLE + 1.0) {
            return Err(format!("cluster_up 1 with {stage} data age {a:?}"));
        }
        if let Some(a) = a {
            if a > MAX_STALENESS + MAX_CYCLE + 1.0 {
                return Err(format!("{stage} data {a:.1}s old is still served"));
            }
        }
    }
    if m.value("kafka_brokers", &[]).is_some() && age("cluster").is_none() {
        return Err("kafka_brokers served without a cluster data age".into());
    }
    if m.value("kafka_topic_under_replicated_partitions", &[("topic", TOPIC)])
        .is_some()
        && age("topics").is_none()
    {
        return Err("topic series served without a topics data age".into());
    }
    if m.value("kafka_schema_registry_subjects", &[("state", "live")])
        .is_some()
    {
        let Some(ok_at) = m.value("kafka_schema_registry_last_success_timestamp_seconds", &[]) else {
            return Err("registry series served without a last success".into());
        };
        if now - ok_at > REGISTRY_MAX_STALENESS + REGISTRY_INTERVAL + 2.0 * REGISTRY_TIMEOUT + 1.5 {
            return Err(format!("registry data {:.1}s old is still served", now - ok_at));
        }
    }
    Ok(())
}

/// Registers the test's subjects (again, after a registry restart lost them).
fn seed_registry(registry: &SchemaRegistry) {
    registry
        .register(&format!("{TOPIC}-value"), SUBJECT_SCHEMA, None)
        .unwrap();
}

/// The values of every registry-derived series that describes the registry's content (not
/// request counters, durations or timestamps), keyed by name and sorted labels.
fn registry_series(m: &Metrics) -> BTreeMap<String, f64> {
    const VOLATILE: [&str; 5] = [
        "kafka_schema_registry_up",
        "kafka_schema_registry_last_success_timestamp_seconds",
        "kafka_schema_registry_request_duration_seconds",
        "kafka_schema_registry_requests_total",
        "kafka_schema_registry_errors_total",
    ];
    m.samples
        .iter()
        .filter(|s| {
            (s.metric.starts_with("kafka_schema_registry_") || s.metric.starts_with("kafka_topic_schema_"))
                && !VOLATILE.contains(&s.metric.as_str())
        })
        .filter_map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let labels: BTreeMap<&String, &String> = s.labels.iter().collect();
            Some((format!("{}{labels:?}", s.metric), v))
        })
        .collect()
}

/// Kafka's own view, from a client independent of the exporter: (brokers, partitions of TOPIC
/// with a full ISR of 3), as whichever broker a fresh client asks first sees it.
fn kafka_view(kafka: &KafkaCluster) -> Option<(usize, usize)> {
    let consumer: BaseConsumer = kafka.client_config().create().ok()?;
    view_of(&consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(2)).ok()?)
}

/// The same view as broker `id`'s own metadata cache shows it: a client bootstrapped with that
/// broker alone, and `None` unless that broker answered. Each broker's cache follows the
/// controller on its own: a broker just resumed from SIGSTOP still answers with the cluster as
/// it was when it stopped (every replica in sync) until it has replayed the metadata log.
fn kafka_view_from(kafka: &KafkaCluster, id: i32) -> Option<(usize, usize)> {
    let consumer: BaseConsumer = kafka.broker_client_config(id).create().ok()?;
    let md = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(2)).ok()?;
    if md.orig_broker_id() != id {
        return None;
    }
    view_of(&md)
}

fn view_of(md: &rdkafka::metadata::Metadata) -> Option<(usize, usize)> {
    let full = md
        .topics()
        .iter()
        .find(|t| t.name() == TOPIC)
        .map(|t| {
            t.partitions()
                .iter()
                .filter(|p| p.leader() >= 0 && p.isr().len() == 3)
                .count()
        })
        .unwrap_or(0);
    Some((md.brokers().len(), full))
}

/// After a broker was killed: the time from Kafka's own metadata (a fresh client) first showing
/// every partition of TOPIC under-replicated to /metrics first showing it. Both are polled on
/// their own threads, each observation timed when its answer came.
fn broker_kill_delay(kafka: &KafkaCluster, e: &Exporter) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(90);
    let (kafka_at, metrics_at) = thread::scope(|scope| {
        let kafka_seen = scope.spawn(|| loop {
            if kafka_view(kafka).is_some_and(|(_, full)| full == 0) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "Kafka never showed the partitions under-replicated"
            );
            thread::sleep(Duration::from_millis(50));
        });
        let metrics_seen = scope.spawn(|| loop {
            let m = e.scrape();
            let at = Instant::now();
            if m.value("kafka_topic_under_replicated_partitions", &[("topic", TOPIC)]) == Some(PARTITIONS as f64) {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "/metrics never showed the partitions under-replicated"
            );
            thread::sleep(Duration::from_millis(50));
        });
        (kafka_seen.join().unwrap(), metrics_seen.join().unwrap())
    });
    metrics_at.saturating_duration_since(kafka_at)
}

/// Waits (up to `timeout`) until Kafka itself reports 3 brokers and every partition fully in
/// sync, in every broker's metadata; returns when that was first seen. One broker's answer is
/// not enough: a CI run once saw a fresh client report recovery after the hung-broker phase
/// while /metrics, read fresh every cycle, went on showing the ISR shrunk for 4 s.
fn wait_kafka_healthy(kafka: &KafkaCluster, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    let views = || {
        kafka
            .broker_ids()
            .into_iter()
            .map(|id| (id, kafka_view_from(kafka, id)))
            .collect::<Vec<_>>()
    };
    loop {
        if views().iter().all(|(_, v)| *v == Some((3, PARTITIONS))) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "Kafka did not recover within {timeout:?}: by broker {:?}",
            views()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn healthy(m: &Metrics) -> bool {
    unhealthy(m).is_empty()
}

/// The checks of [`healthy`] that `m` fails.
fn unhealthy(m: &Metrics) -> Vec<&'static str> {
    let t = [("topic", TOPIC)];
    let checks = [
        ("3 brokers", m.value("kafka_brokers", &[]) == Some(3.0)),
        ("3 broker_info", m.find("kafka_broker_info", &[]).len() == 3),
        (
            "topic fully replicated",
            m.value("kafka_topic_under_replicated_partitions", &t) == Some(0.0),
        ),
        (
            "topic not under min ISR",
            m.value("kafka_topic_under_min_isr_partitions", &t) == Some(0.0),
        ),
        (
            "topic online",
            m.value("kafka_topic_offline_partitions", &t) == Some(0.0),
        ),
        (
            "cluster fully replicated",
            m.value("kafka_cluster_under_replicated_partitions", &[]) == Some(0.0),
        ),
        ("cluster_up", m.value("kafka_slo_exporter_cluster_up", &[]) == Some(1.0)),
        (
            "every partition's leader",
            m.find("kafka_partition_leader", &t).len() == PARTITIONS,
        ),
        (
            "every partition's high watermark",
            m.find("kafka_partition_high_watermark", &t).len() == PARTITIONS,
        ),
        (
            "no partition offset errors",
            m.value("kafka_slo_exporter_partition_offset_errors", &[]) == Some(0.0),
        ),
    ];
    checks.into_iter().filter(|(_, ok)| !ok).map(|(name, _)| name).collect()
}

/// What a failed recovery shows first (CI keeps only the start of a long failure): the failed
/// checks, each stage's errors and last duration, and the exporter's latest warnings and
/// librdkafka request timeouts; the whole scrape follows.
fn recovery_report(m: &Metrics, e: &Exporter) -> String {
    let stages: Vec<String> = CORE_STAGES
        .iter()
        .map(|s| {
            let d = m.value("kafka_slo_exporter_stage_duration_seconds", &[("stage", s)]);
            format!("{s} {} errors, {:.1} s", errors(m, s), d.unwrap_or(f64::NAN))
        })
        .collect();
    let logs = e.logs();
    let mut warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#) || l.contains("REQTMOUT"))
        .rev()
        .take(15)
        .collect();
    warnings.reverse();
    format!(
        "failed checks: {:?}\nstages: {}\nlatest exporter warnings:\n{}\nlast scrape:\n{}",
        unhealthy(m),
        stages.join("; "),
        warnings
            .iter()
            .map(|l| l.chars().take(400).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n"),
        m.text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("kafka_probe") && !l.contains("_bucket"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// After a repair: waits for Kafka's own recovery, then asserts the exporter shows every
/// checked series correct within one cycle: within [`ONE_CYCLE`], or, when the cycle running
/// at the repair was held up by the fault (its stages each waiting the request timeout), by
/// the end of the next one. Cycles are counted with `kafka_slo_exporter_cycles_total`.
fn assert_recovers(phase: &str, kafka: &KafkaCluster, e: &Exporter, kafka_timeout: Duration) {
    let kafka_ok = wait_kafka_healthy(kafka, kafka_timeout);
    let cycles = |m: &Metrics| m.value("kafka_slo_exporter_cycles_total", &[]).unwrap_or(0.0);
    let first = cycles(&e.scrape());
    let deadline = kafka_ok + RECOVERY_LIMIT;
    loop {
        let m = e.scrape();
        let ended = cycles(&m) - first;
        if healthy(&m) {
            eprintln!(
                "[fault-matrix] {phase}: exporter correct {:.2} s after Kafka reported healthy, {ended} cycle(s) later",
                kafka_ok.elapsed().as_secs_f64()
            );
            return;
        }
        let waited = kafka_ok.elapsed();
        assert!(
            (ended < 2.0 || waited < ONE_CYCLE) && Instant::now() < deadline,
            "{phase}: the exporter was not correct after the first cycle run after Kafka was healthy ({ended} cycles ended, {:.1} s; limit {RECOVERY_LIMIT:?});\n{}",
            kafka_ok.elapsed().as_secs_f64(),
            recovery_report(&m, e)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn errors(m: &Metrics, stage: &str) -> f64 {
    m.value("kafka_slo_exporter_errors_total", &[("stage", stage)])
        .unwrap_or(0.0)
}

fn total_errors(m: &Metrics) -> f64 {
    CORE_STAGES.iter().map(|s| errors(m, s)).sum()
}

fn assert_alive(e: &Exporter, phase: &str) {
    let pid = e.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
    assert!(
        matches!(state, Some(s) if s != 'Z' && s != 'X'),
        "{phase}: the exporter exited; logs:\n{}",
        e.logs()
    );
    assert_eq!(e.get("/-/healthy", None).0, 200, "{phase}: /-/healthy");
}

#[test]
fn fault_matrix() {
    let started = Instant::now();
    let registry = thread::spawn(|| SchemaRegistry::start(Duration::from_secs(180)).expect("registry"));
    // Node 1 is the only KRaft voter, so brokers 2 and 3 can die without losing the quorum.
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(3).controllers(1)).expect("3-node cluster");
    let registry = registry.join().unwrap();
    kafka
        .create_topic(TOPIC, PARTITIONS as i32, 3, &[("min.insync.replicas", "2")])
        .unwrap();
    seed_registry(&registry);
    let _producer = kafka.producing_loop(TOPIC, 20).unwrap();
    let _group = kafka
        .consuming_group("f-billing", &[TOPIC], ConsumerOptions::default())
        .unwrap();

    let cfg = format!(
        "global:\n  interval: {INTERVAL}s\n  metrics: {{opt_in: ['.*']}}\n  timeout: {TIMEOUT}s\n  topics: {{allow: ['f\\..*']}}\n  groups: {{allow: ['f-.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: {}\n    probe:\n      interval: 500ms\n      timeout: 4s\n    schema_registry:\n      urls: [\"{}\"]\n      interval: {REGISTRY_INTERVAL}s\n      timeout: {REGISTRY_TIMEOUT}s\n      max_staleness: {REGISTRY_MAX_STALENESS}s\n",
        common::bootstrap_yaml(&kafka),
        registry.url()
    );
    let e = Exporter::start(&cfg, &[]);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_phases(&kafka, &registry, &e, started)
    }));
    if let Err(panic) = outcome {
        let logs = e.logs();
        let tail: Vec<&str> = logs.lines().filter(|l| !l.contains("ureq")).rev().take(150).collect();
        eprintln!(
            "exporter log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        std::panic::resume_unwind(panic);
    }
}

fn run_phases(kafka: &KafkaCluster, registry: &SchemaRegistry, e: &Exporter, started: Instant) {
    let scraper = Scraper::start(e.url("/metrics"));
    let t = [("topic", TOPIC)];

    // Baseline.
    let phase = Instant::now();
    let m = e.wait_for(Duration::from_secs(60), "healthy baseline", |m| {
        healthy(m)
            && m.value("kafka_probe_up", &[("topic", "kafka-slo-exporter.probe")]) == Some(1.0)
            && m.value("kafka_schema_registry_up", &[]) == Some(1.0)
    });
    common::promtool_check_metrics(&m.text);
    scraper.assert_clean("baseline", phase);

    // Broker 2's port throttled to a trickle, then cut off (real network faults on `lo`).
    // First, while leadership is still spread over the brokers, so that the exporter needs
    // broker 2. Each fault is held long enough for connection attempts to pile up behind it:
    // with librdkafka's default connection set-up limit (30 s), one made during the fault
    // stayed unanswered for up to 13 s after the repair, failing every request to broker 2
    // (the exporter now sets one stage timeout).
    type Start = fn(u16) -> Result<PortFault, String>;
    let faults: [(&str, Start, u64); 2] = [
        ("throttled broker", |port| PortFault::throttle(port, 8), 15),
        ("cut-off broker", PortFault::cut, 15),
    ];
    for (name, start, hold) in faults {
        let phase = Instant::now();
        assert_leads(&e.scrape(), "2");
        match start(kafka.broker_port(2)) {
            Err(reason) => eprintln!("[fault-matrix] SKIPPED {name}: {reason}"),
            Ok(fault) => {
                let before = e.scrape();
                let m = e.wait_for(Duration::from_secs(60), &format!("the {name} shows"), |m| {
                    fault_visible(&before, m, "2")
                });
                assert_fault_explicit(&before, &m, "2", name);
                thread::sleep(Duration::from_secs(hold));
                drop(fault);
                assert_recovers(name, kafka, e, Duration::from_secs(90));
            }
        }
        assert_alive(e, name);
        scraper.assert_clean(name, phase);
    }

    // A hung broker (SIGSTOP): sockets open, nothing answers. Broker 3 still leads partitions.
    let phase = Instant::now();
    let before = e.scrape();
    assert_leads(&before, "3");
    assert!(kafka.pause_broker(3), "broker 3 paused");
    let m = e.wait_for(Duration::from_secs(60), "the hung broker shows", |m| {
        fault_visible(&before, m, "3")
    });
    assert_fault_explicit(&before, &m, "3", "hung broker");
    // Once Kafka fences it, the exporter reports the cluster as Kafka sees it again.
    e.wait_for(Duration::from_secs(60), "the hung broker fenced", |m| {
        m.value("kafka_brokers", &[]) == Some(2.0)
            && m.value("kafka_topic_under_replicated_partitions", &t) == Some(PARTITIONS as f64)
            && m.value("kafka_slo_exporter_cluster_up", &[]) == Some(1.0)
    });
    assert!(kafka.resume_broker(3), "broker 3 resumed");
    assert_recovers("hung broker", kafka, e, Duration::from_secs(90));
    assert_alive(e, "hung broker");
    scraper.assert_clean("hung broker", phase);

    // One broker killed and restarted. Brokers 2 and 3 are not voters.
    let phase = Instant::now();
    kafka.kill_broker(3);
    let delay = broker_kill_delay(kafka, e);
    eprintln!(
        "[fault-matrix] broker kill: under-replicated partitions on /metrics {:.2}s after Kafka's metadata showed them (interval {INTERVAL}s)",
        delay.as_secs_f64()
    );
    assert!(
        delay <= KILL_VISIBLE,
        "the killed broker's under-replicated partitions reached /metrics {delay:?} after Kafka showed them"
    );
    let m = e.wait_for(
        Duration::from_secs(60),
        "broker 3 gone and its replicas out of sync",
        |m| {
            m.value("kafka_brokers", &[]) == Some(2.0)
                && m.value("kafka_topic_under_replicated_partitions", &t) == Some(PARTITIONS as f64)
        },
    );
    // What is served is Kafka's current state, not a stale view: the data is one cycle old.
    assert!(
        m.value("kafka_slo_exporter_data_age_seconds", &[("stage", "topics")])
            .unwrap()
            <= INTERVAL + MAX_CYCLE + 1.0
    );
    assert_eq!(m.value("kafka_topic_under_min_isr_partitions", &t), Some(0.0));
    assert!(m.find("kafka_broker_info", &[("broker_id", "3")]).is_empty());
    kafka.restart_broker(3).unwrap();
    assert_recovers("one broker killed", kafka, e, Duration::from_secs(90));
    assert_alive(e, "one broker killed");
    scraper.assert_clean("one broker killed", phase);

    // Two of three down: every partition under min ISR, the exporter still collects.
    let phase = Instant::now();
    kafka.kill_broker(2);
    kafka.kill_broker(3);
    let m = e.wait_for(Duration::from_secs(60), "two brokers gone", |m| {
        m.value("kafka_brokers", &[]) == Some(1.0)
            && m.value("kafka_topic_under_min_isr_partitions", &t) == Some(PARTITIONS as f64)
    });
    assert_eq!(
        m.sum("kafka_topic_under_min_isr_partitions", &[]),
        Some(PARTITIONS as f64),
        "no other topic is under min ISR"
    );
    assert_eq!(
        m.value("kafka_topic_offline_partitions", &t),
        Some(0.0),
        "broker 1 leads all"
    );
    assert!(
        m.value("kafka_slo_exporter_data_age_seconds", &[("stage", "topics")])
            .unwrap()
            <= INTERVAL + MAX_CYCLE + 1.0
    );
    kafka.restart_broker(2).unwrap();
    kafka.restart_broker(3).unwrap();
    assert_recovers("two of three down", kafka, e, Duration::from_secs(120));
    assert_alive(e, "two of three down");
    scraper.assert_clean("two of three down", phase);

    // The whole cluster down for several cycles.
    let phase = Instant::now();
    let before = e.scrape();
    let last_success = before
        .value("kafka_slo_exporter_last_success_timestamp_seconds", &[])
        .unwrap();
    kafka.stop_all();
    let down = e.wait_for(Duration::from_secs(30), "cluster reported down", |m| {
        m.value("kafka_slo_exporter_cluster_up", &[]) == Some(0.0)
            && errors(m, "cluster") >= errors(&before, "cluster") + 2.0
    });
    let age1 = down
        .value("kafka_slo_exporter_data_age_seconds", &[("stage", "cluster")])
        .unwrap_or(f64::INFINITY);
    assert!(age1 > INTERVAL, "cluster data age {age1} must show the data is old");
    // Failing cycles end at their requests' timeouts (one to two request timeouts while the
    // cluster is down): at least one more fails and ends meanwhile.
    thread::sleep(Duration::from_secs_f64(2.0 * (INTERVAL + 2.0 * TIMEOUT) + 0.5));
    let later = e.scrape();
    if let Some(age2) = later.value("kafka_slo_exporter_data_age_seconds", &[("stage", "cluster")]) {
        assert!(
            age2 >= age1 + 1.0,
            "data age grows while Kafka is down: {age1} then {age2}"
        );
    }
    assert!(
        later
            .value("kafka_slo_exporter_last_success_timestamp_seconds", &[])
            .unwrap()
            <= last_success + INTERVAL + TIMEOUT,
        "no successful cycle is reported while the cluster is down"
    );
    // Past max_staleness the old values are withdrawn, never served as current.
    let gone = e.wait_for(
        Duration::from_secs_f64(MAX_STALENESS + 3.0 * (INTERVAL + TIMEOUT)),
        "stale Kafka series withdrawn",
        |m| m.value("kafka_brokers", &[]).is_none() && m.find("kafka_partition_leader", &t).is_empty(),
    );
    assert_eq!(gone.value("kafka_slo_exporter_cluster_up", &[]), Some(0.0));
    assert_eq!(
        gone.value("kafka_probe_up", &[("topic", "kafka-slo-exporter.probe")]),
        Some(0.0)
    );
    let cycles = |m: &Metrics| m.value("kafka_slo_exporter_cycles_total", &[]).unwrap();
    assert!(cycles(&later) > cycles(&down), "cycles go on while Kafka is down");
    // Every failed cycle is counted once. A stage's failure is published when it happens and
    // the cycle's end later, so the cycle in flight at either scrape may be counted in one
    // number and not yet in the other.
    let (failed, ended) = (
        errors(&later, "cluster") - errors(&down, "cluster"),
        cycles(&later) - cycles(&down),
    );
    assert!(
        failed >= 1.0 && (failed - ended).abs() <= 1.0,
        "every failed cycle is counted once: {failed} DescribeCluster errors over {ended} cycles"
    );
    assert_eq!(
        gone.value("kafka_schema_registry_up", &[]),
        Some(1.0),
        "the registry is unaffected"
    );
    assert_eq!(
        e.get("/-/ready", None).0,
        200,
        "{}",
        "the endpoint stays ready and serves the staleness"
    );
    common::promtool_check_metrics(&gone.text);
    thread::sleep(Duration::from_secs(2));
    for id in kafka.broker_ids() {
        kafka.restart_broker(id).unwrap();
    }
    assert_recovers("whole cluster down", kafka, e, Duration::from_secs(120));
    assert_alive(e, "whole cluster down");
    scraper.assert_clean("whole cluster down", phase);

    // The registry down: its own up/staleness say so, Kafka collection is untouched.
    let phase = Instant::now();
    let before = e.scrape();
    let expected = registry_series(&before);
    assert_eq!(before.value("kafka_schema_registry_up", &[]), Some(1.0));
    assert_eq!(
        before.value("kafka_schema_registry_subjects", &[("state", "live")]),
        Some(1.0)
    );
    assert_eq!(
        before.value("kafka_schema_registry_unresolved_subjects", &[]),
        Some(0.0),
        "every subject resolved before the fault"
    );
    registry.stop();
    let m = e.wait_for(Duration::from_secs(20), "registry down", |m| {
        m.value("kafka_schema_registry_up", &[]) == Some(0.0)
    });
    assert!(m
        .find("kafka_schema_registry_errors_total", &[])
        .iter()
        .any(|s| matches!(s.value, prometheus_parse::Value::Counter(v) if v > 0.0)));
    let m = e.wait_for(
        Duration::from_secs(20),
        "registry data withdrawn after its max_staleness",
        |m| {
            m.value("kafka_schema_registry_subjects", &[("state", "live")])
                .is_none()
        },
    );
    assert!(
        healthy(&m),
        "Kafka series stay fresh and complete while the registry is down"
    );
    assert_eq!(total_errors(&m), total_errors(&before), "no Kafka stage failed");
    assert_alive(e, "registry down");
    scraper.assert_clean("registry down", phase);

    // Repair: the same registry back on its URL. Its storage is in memory, so the subjects are
    // registered again; then every registry series is what it was before the fault.
    let phase = Instant::now();
    registry.restart(Duration::from_secs(180)).expect("registry restarted");
    let ready = Instant::now();
    seed_registry(registry);
    let seeded = Instant::now();
    let deadline = seeded + REGISTRY_ONE_CYCLE;
    let m = loop {
        let m = e.scrape();
        if m.value("kafka_schema_registry_up", &[]) == Some(1.0) && registry_series(&m) == expected {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "registry restarted: the exporter was not correct within one poll ({REGISTRY_ONE_CYCLE:?}) of the subjects being registered again; up {:?}\nexpected {expected:#?}\nserved {:#?}",
            m.value("kafka_schema_registry_up", &[]),
            registry_series(&m)
        );
        thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "[fault-matrix] registry restarted: ready {:.2} s after the restart began, subjects registered again in {:.0} ms, exporter correct {:.2} s after that ({:.2} s after ready); {} registry series equal",
        (ready - phase).as_secs_f64(),
        (seeded - ready).as_secs_f64() * 1e3,
        seeded.elapsed().as_secs_f64(),
        ready.elapsed().as_secs_f64(),
        expected.len()
    );
    assert!(healthy(&m), "Kafka series stay fresh and complete");
    assert_eq!(total_errors(&m), total_errors(&before), "no Kafka stage failed");
    assert_alive(e, "registry restarted");
    scraper.assert_clean("registry restarted", phase);

    let (n, p99) = scraper.assert_clean("whole run", started);
    eprintln!(
        "[fault-matrix] total {:.0} s, {n} scrapes, p99 {:.1} ms",
        started.elapsed().as_secs_f64(),
        p99.as_secs_f64() * 1e3
    );
}

/// Requests to a broker that does not answer time out: a stage fails (its error count grows,
/// cluster_up 0), or, for ListOffsets, whose partitions fail one by one, the offsets of the
/// partitions it leads are withdrawn and counted instead of served from an older cycle.
fn fault_visible(before: &Metrics, m: &Metrics, broker: &str) -> bool {
    total_errors(m) > total_errors(before)
        || m.value("kafka_slo_exporter_cluster_up", &[]) == Some(0.0)
        || offsets_withdrawn(m, broker)
}

fn assert_fault_explicit(before: &Metrics, m: &Metrics, broker: &str, phase: &str) {
    if offsets_withdrawn(m, broker) {
        assert!(
            m.value("kafka_topic_high_watermarks", &[("topic", TOPIC)]).is_none(),
            "{phase}: the topic's sum of high watermarks is withdrawn with a partition's"
        );
        assert!(
            m.value("kafka_slo_exporter_partition_offset_errors", &[]).unwrap() >= 1.0,
            "{phase}: the failed partitions are counted"
        );
        eprintln!("[fault-matrix] {phase}: offsets of the partitions it leads withdrawn and counted");
    } else {
        assert_degraded_explicitly(before, m, phase);
    }
}

/// Whether the partitions `broker` leads have no high watermark served.
fn offsets_withdrawn(m: &Metrics, broker: &str) -> bool {
    let led: Vec<String> = m
        .find("kafka_partition_leader", &[("topic", TOPIC)])
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v.to_string() == broker))
        .map(|s| s.labels.get("partition").unwrap().to_string())
        .collect();
    !led.is_empty()
        && led.iter().all(|p| {
            m.value("kafka_partition_high_watermark", &[("topic", TOPIC), ("partition", p)])
                .is_none()
        })
}

/// The fault must hit a broker the exporter needs: one leading partitions of the topic.
fn assert_leads(m: &Metrics, broker: &str) {
    let led = m
        .find("kafka_partition_leader", &[("topic", TOPIC)])
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v.to_string() == broker))
        .count();
    assert!(led > 0, "broker {broker} leads no partition of {TOPIC}");
}

/// A degraded cycle must say so: `cluster_up` is 0, the failing stages' error counts grew, and
/// their data is shown older than one cycle.
fn assert_degraded_explicitly(before: &Metrics, m: &Metrics, phase: &str) {
    assert_eq!(
        m.value("kafka_slo_exporter_cluster_up", &[]),
        Some(0.0),
        "{phase}: a failed stage makes cluster_up 0"
    );
    let failing: Vec<&str> = CORE_STAGES
        .iter()
        .copied()
        .filter(|s| errors(m, s) > errors(before, s))
        .collect();
    assert!(!failing.is_empty(), "{phase}: the failing stage has an error count");
    eprintln!("[fault-matrix] {phase}: stages with errors: {failing:?}");
}
