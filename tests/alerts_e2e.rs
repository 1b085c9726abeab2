//! The alert pack end to end, every component real: a 3-node Kafka cluster, the exporter,
//! Prometheus 3.x loaded with the pack (a test overlay of alerts/config.yml with short `for`s and
//! windows), Alertmanager (both from `$KSE_TOOLS_DIR`, see tests/tools) with
//! deploy/alertmanager/alertmanager.yml (receivers pointed at this test), and an HTTP
//! endpoint in this test speaking the PagerDuty Events API v2 (tests/alertmanager_support).

mod alertmanager_support;
mod alerts_support;
mod common;
mod tools;

use std::path::Path;
use std::time::{Duration, Instant};

use alertmanager_support::{class, runbook, start_alertmanager, Receiver, ROUTING_KEY};
use alerts_support::generate;
use common::{Exporter, Proc};
use kafka_harness::{ClusterOptions, ConsumerOptions, KafkaCluster};
use serde_json::Value as Json;

/// The pack with durations and windows short enough for a test: same rules, same expressions.
const OVERLAY: &str = r#"
replication: {under_replicated_for: 5s, under_replicated_window: 2s, keep_firing_for: 5s}
cluster: {broker_count_for: 5s}
slo:
  page: [{long: 1m, short: 10s, factor: 14.4}, {long: 2m, short: 20s, factor: 6}]
  page_for: 5s
  ticket: [{long: 3m, short: 30s, factor: 3}, {long: 5m, short: 1m, factor: 1}]
  ticket_for: 30s
  freshness: {default_threshold_seconds: 5, overrides: []}
"#;

/// Starts Prometheus scraping `exporter` every second, with the pack generated with [`OVERLAY`].
fn start_prometheus(dir: &Path, exporter: &str, am_port: u16) -> (Proc, u16) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in generate(Some(OVERLAY)).unwrap() {
        if let Some(name) = f.path.strip_prefix("alerts/") {
            std::fs::write(rules.join(name), &f.text).unwrap();
        }
    }
    let cfg = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}/*.rules.yml']\n\
         alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n\
         scrape_configs:\n  - job_name: kafka-slo-exporter\n    static_configs: [{{targets: ['{exporter}']}}]\n",
        rules.display()
    );
    // Alerts that fire before the Alertmanager is discovered are dropped and re-sent only
    // after this delay (default 1m).
    common::start_prometheus(&tools::prometheus3(), dir, &cfg, &["--rules.alert.resend-delay=2s"])
}

/// Active alerts in Prometheus, for failure messages.
fn prometheus_alerts(port: u16) -> String {
    ureq::get(&format!("http://127.0.0.1:{port}/api/v1/alerts"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default()
}

/// Checks a PagerDuty trigger of `alert`: routing key, severity, summary and runbook link.
fn assert_trigger(e: &Json, alert: &str, summary: &str) {
    assert_eq!(e["routing_key"], ROUTING_KEY, "routing key from the file: {e:#}");
    assert_eq!(e["event_action"], "trigger", "{e:#}");
    assert_eq!(e["payload"]["severity"], "critical", "{e:#}");
    // "[cluster] summary", with " (N firing)" when the group holds several alerts.
    let got = e["payload"]["summary"].as_str().unwrap_or_default();
    assert!(got.starts_with(&format!("[e2e] {summary}")), "{e:#}");
    assert_eq!(e["payload"]["source"], "kafka/e2e", "{e:#}");
    assert_eq!(e["payload"]["component"], "kafka", "{e:#}");
    let links = e["links"].as_array().expect("links");
    assert_eq!(links[0]["href"], runbook(alert), "{e:#}");
    assert!(!e["dedup_key"].as_str().unwrap_or_default().is_empty(), "{e:#}");
}

/// The firing alerts of a PagerDuty event, one line each ("topic=T ... description"); every
/// line must be text, not a structure Alertmanager made of it.
fn firing_lines(e: &Json) -> Vec<String> {
    let lines = e["payload"]["custom_details"]["firing"]
        .as_array()
        .unwrap_or_else(|| panic!("custom_details.firing is no list: {e:#}"));
    lines
        .iter()
        .map(|l| {
            l.as_str()
                .unwrap_or_else(|| panic!("a firing line is no text: {e:#}"))
                .to_string()
        })
        .collect()
}

#[test]
fn broker_failure_and_lagging_consumer_page_and_resolve_in_pagerduty() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    // Node 1 is the only KRaft voter, so brokers 2 and 3 can die without losing the quorum.
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(3).controllers(1)).expect("3-node cluster");
    kafka
        .create_topic(
            "e2e.order.events",
            3,
            3,
            &[("min.insync.replicas", "2"), ("compression.type", "lz4")],
        )
        .unwrap();
    kafka
        .create_topic(
            "e2e.billing.events",
            1,
            3,
            &[("min.insync.replicas", "2"), ("compression.type", "lz4")],
        )
        .unwrap();
    let servers: Vec<String> = kafka
        .bootstrap_servers()
        .split(',')
        .map(|s| format!("\"{s}\""))
        .collect();
    let exporter = Exporter::start(
        &format!(
            "global:\n  interval: 1s\n  timeout: 2s\n  lag: {{status_window: 10s}}\n\
             clusters:\n  - name: e2e\n    bootstrap_servers: [{}]\n    topics: {{allow: ['e2e\\..*']}}\n    probe: {{interval: 1s}}\n",
            servers.join(", ")
        ),
        &[],
    );
    let (am, am_port) = start_alertmanager(dir.path(), &rx);
    let (prom, prom_port) = start_prometheus(dir.path(), &exporter.addr.to_string(), am_port);
    let diag = || {
        format!(
            "prometheus alerts: {}\nprometheus log:\n{}\nalertmanager log:\n{}",
            prometheus_alerts(prom_port),
            prom.tail(),
            am.tail()
        )
    };
    eprintln!("e2e: stack up after {:?}", started.elapsed());

    // The dead man's switch gets its heartbeat.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rx
        .requests()
        .iter()
        .any(|r| r.path == "/watchdog" && r.body["commonLabels"]["alertname"] == "KafkaWatchdog")
    {
        assert!(Instant::now() < deadline, "no watchdog heartbeat\n{}", diag());
        std::thread::sleep(Duration::from_millis(250));
    }

    // Kill a broker: every partition of e2e.order.events loses a replica.
    let t = Instant::now();
    let victim = kafka.broker_ids()[2];
    kafka.kill_broker(victim);
    let urp = "KafkaUnderReplicatedPartitions";
    let trigger = rx.wait_event(Duration::from_secs(180), "the under-replication page", &diag, |e| {
        class(e) == urp && e["event_action"] == "trigger"
    });
    assert_trigger(&trigger, urp, "Kafka partitions are under-replicated.");
    let details = firing_lines(&trigger);
    assert!(
        details.iter().any(|l| l.starts_with("topic=e2e.order.events ")),
        "{trigger:#}"
    );
    eprintln!("e2e: under-replication trigger {:?} after the kill", t.elapsed());

    // The broker count drop is a warning: it goes to the ticket webhook, not to PagerDuty.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rx.requests().iter().any(|r| {
        r.path == "/ticket"
            && r.body["status"] == "firing"
            && r.body["commonLabels"]["alertname"] == "KafkaBrokerCountDropped"
    }) {
        assert!(Instant::now() < deadline, "no broker-count ticket\n{}", diag());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !rx.events().iter().any(|e| class(e) == "KafkaBrokerCountDropped"),
        "a warning reached PagerDuty"
    );

    let t = Instant::now();
    kafka.restart_broker(victim).unwrap();
    let dedup = trigger["dedup_key"].clone();
    let resolve = rx.wait_event(Duration::from_secs(180), "the under-replication resolve", &diag, |e| {
        e["dedup_key"] == dedup && e["event_action"] == "resolve"
    });
    assert_eq!(resolve["routing_key"], ROUTING_KEY);
    eprintln!("e2e: under-replication resolve {:?} after the restart", t.elapsed());

    // A consumer that falls behind its 5 s freshness threshold (test overlay).
    let t = Instant::now();
    let producer = kafka.producing_loop("e2e.billing.events", 40).unwrap();
    let slow = kafka
        .consuming_group(
            "e2e-billing",
            &["e2e.billing.events"],
            ConsumerOptions::default().with_delay(Duration::from_millis(100)),
        )
        .unwrap();
    let fresh = "KafkaConsumerFreshnessBudgetBurn";
    let trigger = rx.wait_event(Duration::from_secs(180), "the freshness page", &diag, |e| {
        class(e) == fresh && e["event_action"] == "trigger"
    });
    assert_trigger(
        &trigger,
        fresh,
        "A consumer group is burning its freshness error budget.",
    );
    let details = firing_lines(&trigger);
    assert!(
        details.iter().any(|l| l.starts_with("group=e2e-billing ")),
        "{trigger:#}"
    );
    eprintln!(
        "e2e: freshness trigger {:?} after the slow consumer started",
        t.elapsed()
    );

    // A fast member takes over and catches up.
    let t = Instant::now();
    slow.stop();
    let fast = kafka
        .consuming_group("e2e-billing", &["e2e.billing.events"], ConsumerOptions::default())
        .unwrap();
    let dedup = trigger["dedup_key"].clone();
    rx.wait_event(Duration::from_secs(180), "the freshness resolve", &diag, |e| {
        e["dedup_key"] == dedup && e["event_action"] == "resolve"
    });
    eprintln!("e2e: freshness resolve {:?} after the catch-up started", t.elapsed());
    drop(fast);
    drop(producer);

    // Every PagerDuty event was critical and carried a runbook.
    for e in rx.events() {
        assert_eq!(e["routing_key"], ROUTING_KEY);
        if e["event_action"] == "trigger" {
            assert_eq!(e["payload"]["severity"], "critical", "{e:#}");
            assert_eq!(e["links"][0]["href"], runbook(class(&e)), "{e:#}");
        }
    }
    eprintln!("e2e: done in {:?}", started.elapsed());
}
