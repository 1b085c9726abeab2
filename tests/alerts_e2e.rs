//! The alert pack end to end, every component real: a 3-node Kafka cluster, the exporter,
//! Prometheus loaded with the pack (a test overlay of alerts/config.yml with short `for`s and
//! windows), Alertmanager with deploy/alertmanager/alertmanager.yml (receivers pointed at this
//! test), and an HTTP endpoint in this test speaking the PagerDuty Events API v2.

mod alerts_support;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alerts_support::{generate, root};
use common::{Exporter, Proc};
use kafka_harness::{ClusterOptions, ConsumerOptions, KafkaCluster};
use serde_json::Value as Json;
use serde_yaml::Value;

/// The pack with durations and windows short enough for a test: same rules, same expressions.
const OVERLAY: &str = r#"
replication: {under_replicated_for: 5s, under_replicated_window: 2s}
cluster: {broker_count_for: 5s}
slo:
  page: [{long: 1m, short: 10s, factor: 14.4}, {long: 2m, short: 20s, factor: 6}]
  page_for: 5s
  ticket: [{long: 3m, short: 30s, factor: 3}, {long: 5m, short: 1m, factor: 1}]
  ticket_for: 30s
  freshness: {default_threshold_seconds: 5, overrides: []}
"#;

const ROUTING_KEY: &str = "e2e0123456789abcdef0123456789abc";

/// One request received by [`Receiver`].
#[derive(Debug, Clone)]
struct Request {
    path: String,
    body: Json,
}

/// The PagerDuty Events API v2 (`POST /v2/enqueue`) plus the ticket and watchdog webhooks,
/// recording every request.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Receiver { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// PagerDuty events so far.
    fn events(&self) -> Vec<Json> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v2/enqueue")
            .map(|r| r.body)
            .collect()
    }

    /// Waits for a PagerDuty event matching `pred`.
    fn wait_event(
        &self,
        timeout: Duration,
        what: &str,
        diag: &dyn Fn() -> String,
        pred: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; received:\n{:#?}\n{}",
                self.requests(),
                diag()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let json: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
        let reply = if path == "/v2/enqueue" {
            let ok = json["routing_key"].as_str().is_some_and(|k| k.len() == 32)
                && matches!(
                    json["event_action"].as_str(),
                    Some("trigger" | "resolve" | "acknowledge")
                );
            let dedup = json["dedup_key"].as_str().unwrap_or_default().to_string();
            sink.lock().unwrap().push(Request { path, body: json });
            if ok {
                (
                    "202 Accepted",
                    format!(r#"{{"status":"success","message":"Event processed","dedup_key":"{dedup}"}}"#),
                )
            } else {
                ("400 Bad Request", r#"{"status":"invalid event"}"#.to_string())
            }
        } else {
            sink.lock().unwrap().push(Request { path, body: json });
            ("200 OK", "{}".to_string())
        };
        let resp = format!(
            "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            reply.0,
            reply.1.len(),
            reply.1
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `url` answers 200.
fn wait_ready(url: &str, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(url).timeout(Duration::from_secs(2)).call().is_err() {
        assert!(Instant::now() < deadline, "{url} not ready:\n{}", p.tail());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alertmanager_binary() -> &'static str {
    // Debian names the binary prometheus-alertmanager.
    for b in ["alertmanager", "prometheus-alertmanager"] {
        if Command::new(b).arg("--version").output().is_ok() {
            return b;
        }
    }
    panic!("no alertmanager binary (install prometheus-alertmanager with scripts/setup.sh)");
}

/// Starts Alertmanager with the example configuration, its receivers pointed at `rx`.
fn start_alertmanager(dir: &Path, rx: &Receiver) -> (Proc, u16) {
    let key_file = dir.join("pagerduty-routing-key");
    std::fs::write(&key_file, format!("{ROUTING_KEY}\n")).unwrap();
    let text = std::fs::read_to_string(root().join("deploy/alertmanager/alertmanager.yml")).unwrap();
    let mut cfg: Value = serde_yaml::from_str(&text).unwrap();
    cfg["global"]["pagerduty_url"] = rx.url("/v2/enqueue").into();
    cfg["templates"] = Value::Sequence(vec![root()
        .join("deploy/alertmanager/templates/*.tmpl")
        .to_string_lossy()
        .to_string()
        .into()]);
    cfg["route"]["group_wait"] = "1s".into();
    cfg["route"]["group_interval"] = "2s".into();
    for r in cfg["receivers"].as_sequence_mut().unwrap() {
        let name = r["name"].as_str().unwrap().to_string();
        if let Some(pd) = r.get_mut("pagerduty_configs").and_then(Value::as_sequence_mut) {
            for c in pd {
                c["routing_key_file"] = key_file.to_string_lossy().to_string().into();
            }
        }
        if let Some(wh) = r.get_mut("webhook_configs").and_then(Value::as_sequence_mut) {
            for c in wh {
                c["url"] = rx.url(&format!("/{name}")).into();
            }
        }
    }
    let cfg_path = dir.join("alertmanager.yml");
    std::fs::write(&cfg_path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.join("am-data")).unwrap();
    let p = Proc::spawn(
        Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
        dir.join("alertmanager.log"),
    );
    wait_ready(&format!("http://127.0.0.1:{port}/-/ready"), &p);
    (p, port)
}

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
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let port = free_port();
    let p = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Alerts that fire before the Alertmanager is discovered are dropped and re-sent
            // only after this delay (default 1m).
            .arg("--rules.alert.resend-delay=2s"),
        dir.join("prometheus.log"),
    );
    wait_ready(&format!("http://127.0.0.1:{port}/-/ready"), &p);
    (p, port)
}

/// Active alerts in Prometheus, for failure messages.
fn prometheus_alerts(port: u16) -> String {
    ureq::get(&format!("http://127.0.0.1:{port}/api/v1/alerts"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default()
}

fn runbook(alert: &str) -> String {
    let cfg: Value = serde_yaml::from_str(&std::fs::read_to_string(root().join("alerts/config.yml")).unwrap()).unwrap();
    format!("{}/{alert}.md", cfg["links"]["runbook_base_url"].as_str().unwrap())
}

fn class(e: &Json) -> &str {
    e["payload"]["class"].as_str().unwrap_or_default()
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
    let details = trigger["payload"]["custom_details"]["firing"]
        .as_str()
        .unwrap_or_default();
    assert!(details.contains("topic=e2e.order.events"), "{trigger:#}");
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
    let details = trigger["payload"]["custom_details"]["firing"]
        .as_str()
        .unwrap_or_default();
    assert!(details.contains("group=e2e-billing"), "{trigger:#}");
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

/// Posts alerts to Alertmanager's API as Prometheus would.
fn post_alerts(am_port: u16, alerts: &[(&[(&str, &str)], &str)]) {
    let body: Vec<Json> = alerts
        .iter()
        .map(|(labels, summary)| {
            let labels: serde_json::Map<String, Json> =
                labels.iter().map(|(k, v)| (k.to_string(), Json::from(*v))).collect();
            let alert = labels["alertname"].as_str().unwrap().to_string();
            serde_json::json!({
                "labels": labels,
                "annotations": {"summary": summary, "description": "test", "runbook_url": runbook(&alert)},
            })
        })
        .collect();
    ureq::post(&format!("http://127.0.0.1:{am_port}/api/v2/alerts"))
        .set("Content-Type", "application/json")
        .send_string(&Json::Array(body).to_string())
        .expect("post alerts");
}

/// The example's inhibition rules, in a real Alertmanager: the exporter being down silences
/// what it feeds; a page silences tickets of the same cluster/topic/group; the watchdog is
/// never silenced.
#[test]
fn alertmanager_example_inhibits_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let (am, am_port) = start_alertmanager(dir.path(), &rx);
    let job = ("job", "kafka-slo-exporter");
    post_alerts(
        am_port,
        &[
            (
                &[
                    ("alertname", "KafkaExporterDown"),
                    ("severity", "critical"),
                    job,
                    ("instance", "x:1"),
                ],
                "down.",
            ),
            (
                &[
                    ("alertname", "KafkaUnderReplicatedPartitions"),
                    ("severity", "critical"),
                    job,
                    ("cluster", "a"),
                    ("topic", "t"),
                ],
                "urp.",
            ),
            (&[("alertname", "KafkaWatchdog"), ("severity", "info")], "watchdog."),
        ],
    );
    // Another job: a critical page silencing tickets of its own group only.
    let other = ("job", "other-exporter");
    post_alerts(
        am_port,
        &[
            (
                &[
                    ("alertname", "KafkaConsumerFreshnessBudgetBurn"),
                    ("severity", "critical"),
                    other,
                    ("cluster", "b"),
                    ("group", "g1"),
                ],
                "fresh.",
            ),
            (
                &[
                    ("alertname", "KafkaConsumerGroupStalled"),
                    ("severity", "warning"),
                    other,
                    ("cluster", "b"),
                    ("group", "g1"),
                ],
                "stalled g1.",
            ),
            (
                &[
                    ("alertname", "KafkaConsumerGroupStalled"),
                    ("severity", "warning"),
                    other,
                    ("cluster", "b"),
                    ("group", "g2"),
                ],
                "stalled g2.",
            ),
        ],
    );
    // Inhibition is evaluated when notifications are built; wait for them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let summaries = || -> Vec<String> {
        rx.requests()
            .iter()
            .flat_map(|r| {
                if r.path == "/v2/enqueue" {
                    vec![r.body["payload"]["summary"].as_str().unwrap_or_default().to_string()]
                } else {
                    r.body["alerts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| a["annotations"]["summary"].as_str().unwrap_or_default().to_string())
                        .collect()
                }
            })
            .collect()
    };
    loop {
        let s = summaries();
        if ["down.", "[b] fresh.", "stalled g2.", "watchdog."]
            .iter()
            .all(|w| s.iter().any(|x| x == w))
        {
            break;
        }
        assert!(Instant::now() < deadline, "notifications: {s:?}\n{}", am.tail());
        std::thread::sleep(Duration::from_millis(250));
    }
    // Give a wrongly uninhibited alert the time to show up, then check it did not.
    std::thread::sleep(Duration::from_secs(3));
    let s = summaries();
    assert!(
        !s.iter().any(|x| x.contains("urp.")),
        "ExporterDown must inhibit: {s:?}"
    );
    assert!(
        !s.iter().any(|x| x == "stalled g1."),
        "the page must inhibit the ticket: {s:?}"
    );
    let status: Json = serde_json::from_str(
        &ureq::get(&format!("http://127.0.0.1:{am_port}/api/v2/alerts"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let inhibited: Vec<String> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["status"]["inhibitedBy"].as_array().unwrap().is_empty())
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    let mut inhibited = inhibited;
    inhibited.sort();
    assert_eq!(
        inhibited,
        ["KafkaConsumerGroupStalled", "KafkaUnderReplicatedPartitions"]
    );
}
