//! deploy/alertmanager/alertmanager.yml in a real Alertmanager (from `$KSE_TOOLS_DIR`): alerts
//! posted as Prometheus posts them, notifications received by a local PagerDuty Events API v2
//! endpoint and the ticket and watchdog webhooks (tests/alertmanager_support). Checks who gets
//! paged, how tickets are grouped and what each inhibition silences, and what it must not.

mod alertmanager_support;
mod alerts_support;
mod common;
mod tools;

use std::time::{Duration, Instant};

use alertmanager_support::{post_alerts, start_alertmanager, Receiver};
use serde_json::Value as Json;

type Labels<'a> = &'a [(&'a str, &'a str)];

/// (receiver path, summary) of every alert in every notification so far; PagerDuty's summary is
/// the group's "[cluster] summary".
fn notified(rx: &Receiver) -> Vec<(String, String)> {
    rx.requests()
        .iter()
        .flat_map(|r| {
            if r.path == "/v2/enqueue" {
                let s = r.body["payload"]["summary"].as_str().unwrap_or_default();
                vec![(r.path.clone(), s.to_string())]
            } else {
                r.body["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let s = a["annotations"]["summary"].as_str().unwrap_or_default();
                        (r.path.clone(), s.to_string())
                    })
                    .collect()
            }
        })
        .collect()
}

/// Waits until every `(path, summary)` of `want` was notified, then gives alerts that should
/// stay silent the time of a few group intervals to show up.
fn wait_notified(rx: &Receiver, am: &common::Proc, want: &[(&str, &str)]) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = notified(rx);
        if want.iter().all(|(p, s)| got.iter().any(|(gp, gs)| gp == p && gs == s)) {
            break;
        }
        assert!(Instant::now() < deadline, "notifications: {got:?}\n{}", am.tail());
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(5));
    notified(rx)
}

/// Names of the alerts Alertmanager reports as inhibited, sorted, with their summaries.
fn inhibited(am_port: u16) -> Vec<String> {
    let status: Json = serde_json::from_str(
        &ureq::get(&format!("http://127.0.0.1:{am_port}/api/v2/alerts"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let mut out: Vec<String> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["status"]["inhibitedBy"].as_array().unwrap().is_empty())
        .map(|a| a["annotations"]["summary"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

const PD: &str = "/v2/enqueue";

/// Two shards of the same StatefulSet (same `job`): shard A's exporter is down while the cluster
/// shard B watches loses a broker. B's page reaches PagerDuty; only A's own alerts are silenced.
#[test]
fn one_shard_down_silences_only_its_own_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let (am, am_port) = start_alertmanager(dir.path(), &rx);
    let job = ("job", "monitoring/kafka-slo-exporter");
    let (a, b) = (("instance", "10.0.0.1:9308"), ("instance", "10.0.0.2:9308"));
    let urp = |inst, cluster| -> Vec<(&str, &str)> {
        vec![
            ("alertname", "KafkaUnderReplicatedPartitions"),
            ("severity", "critical"),
            job,
            inst,
            ("cluster", cluster),
            ("topic", "orders.order.events"),
        ]
    };
    let down: Labels = &[("alertname", "KafkaExporterDown"), ("severity", "critical"), job, a];
    let urp_a = urp(a, "kafka-a");
    let urp_b = urp(b, "kafka-b");
    post_alerts(
        am_port,
        &[(down, "shard a down."), (&urp_a, "urp a."), (&urp_b, "urp b.")],
    );
    let got = wait_notified(&rx, &am, &[(PD, "[kafka-b] urp b."), (PD, "shard a down.")]);
    assert!(
        !got.iter().any(|(_, s)| s.contains("urp a.")),
        "shard A's own alert must be inhibited: {got:?}"
    );
    assert_eq!(inhibited(am_port), ["urp a."]);
}

/// 300 topics violate two compliance rules on one cluster: two tickets, each listing its 300
/// topics, not 600.
#[test]
fn three_hundred_non_compliant_topics_open_one_ticket_per_alert_and_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let (am, am_port) = start_alertmanager(dir.path(), &rx);
    let topics: Vec<String> = (0..300).map(|i| format!("svc{i}.order.events")).collect();
    let mut labels: Vec<Vec<(&str, &str)>> = Vec::new();
    for alert in ["KafkaTopicCompressionNotCompliant", "KafkaTopicRetentionBelowPolicy"] {
        for t in &topics {
            labels.push(vec![
                ("alertname", alert),
                ("severity", "warning"),
                ("job", "kafka-slo-exporter"),
                ("instance", "10.0.0.1:9308"),
                ("cluster", "prod"),
                ("topic", t),
            ]);
        }
    }
    let alerts: Vec<(&[(&str, &str)], &str)> = labels.iter().map(|l| (&l[..], "non-compliant.")).collect();
    post_alerts(am_port, &alerts);
    let deadline = Instant::now() + Duration::from_secs(30);
    let tickets = || -> Vec<Json> {
        rx.requests()
            .into_iter()
            .filter(|r| r.path == "/ticket")
            .map(|r| r.body)
            .collect()
    };
    while tickets().len() < 2 {
        assert!(Instant::now() < deadline, "tickets: {}\n{}", tickets().len(), am.tail());
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(5));
    let tickets = tickets();
    assert_eq!(tickets.len(), 2, "one ticket per alert name and cluster");
    let mut names: Vec<&str> = Vec::new();
    for t in &tickets {
        assert_eq!(t["alerts"].as_array().unwrap().len(), 300, "{}", t["groupKey"]);
        assert_eq!(t["commonLabels"]["cluster"], "prod");
        names.push(t["commonLabels"]["alertname"].as_str().unwrap());
    }
    names.sort();
    assert_eq!(
        names,
        ["KafkaTopicCompressionNotCompliant", "KafkaTopicRetentionBelowPolicy"]
    );
    assert!(rx.events().is_empty(), "warnings reached PagerDuty");
}

/// What each inhibition silences and what it must leave alone: an unreachable cluster silences
/// its Kafka alerts but not the Schema Registry's; a page silences the ticket of the same group,
/// not the ticket of another SLO; a stopped group's no-members ticket is one ticket; the
/// watchdog is never silenced; a mistyped severity still opens a ticket.
#[test]
fn inhibitions_are_scoped_to_the_failing_thing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let (am, am_port) = start_alertmanager(dir.path(), &rx);
    let base = [("job", "kafka-slo-exporter"), ("env", "prod"), ("cluster", "c1")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        base.iter().chain(extra).copied().collect()
    };
    let unreachable = with(&[("alertname", "KafkaClusterUnreachable"), ("severity", "critical")]);
    let offline = with(&[
        ("alertname", "KafkaOfflinePartitions"),
        ("severity", "critical"),
        ("topic", "t"),
    ]);
    let registry = with(&[
        ("alertname", "KafkaSchemaRegistryDown"),
        ("severity", "critical"),
        ("component", "schema-registry"),
    ]);
    let latency = with(&[
        ("alertname", "KafkaDeliveryLatencyBudgetBurn"),
        ("severity", "critical"),
        ("slo", "delivery_latency"),
        ("cluster", "c2"),
    ]);
    let availability = with(&[
        ("alertname", "KafkaDeliveryAvailabilityBudgetBurn"),
        ("severity", "warning"),
        ("slo", "delivery_availability"),
        ("cluster", "c2"),
    ]);
    let fresh = with(&[
        ("alertname", "KafkaConsumerFreshnessBudgetBurn"),
        ("severity", "critical"),
        ("slo", "consumer_freshness"),
        ("cluster", "c2"),
        ("group", "g1"),
    ]);
    let fresh_ticket = with(&[
        ("alertname", "KafkaConsumerFreshnessBudgetBurn"),
        ("severity", "warning"),
        ("slo", "consumer_freshness"),
        ("cluster", "c2"),
        ("group", "g1"),
    ]);
    let stopped = with(&[
        ("alertname", "KafkaConsumerGroupStopped"),
        ("severity", "warning"),
        ("cluster", "c2"),
        ("group", "g2"),
    ]);
    let no_members = with(&[
        ("alertname", "KafkaConsumerGroupNoMembers"),
        ("severity", "warning"),
        ("cluster", "c2"),
        ("group", "g2"),
    ]);
    let typo = with(&[
        ("alertname", "KafkaOfflinePartitions"),
        ("severity", "crit"),
        ("cluster", "c3"),
    ]);
    let watchdog: Labels = &[("alertname", "KafkaWatchdog"), ("severity", "info")];
    post_alerts(
        am_port,
        &[
            (&unreachable, "unreachable."),
            (&offline, "offline."),
            (&registry, "registry down."),
            (&latency, "latency."),
            (&availability, "availability."),
            (&fresh, "fresh page."),
            (&fresh_ticket, "fresh ticket."),
            (&stopped, "stopped."),
            (&no_members, "no members."),
            (&typo, "typo."),
            (watchdog, "watchdog."),
        ],
    );
    let got = wait_notified(
        &rx,
        &am,
        &[
            (PD, "[c1] unreachable."),
            (PD, "[c1] registry down."),
            (PD, "[c2] latency."),
            ("/ticket", "availability."),
            (PD, "[c2] fresh page."),
            ("/ticket", "stopped."),
            ("/ticket", "typo."),
            ("/watchdog", "watchdog."),
        ],
    );
    for silent in ["offline.", "fresh ticket.", "no members."] {
        assert!(
            !got.iter().any(|(_, s)| s.contains(silent)),
            "{silent} notified: {got:?}"
        );
    }
    assert_eq!(inhibited(am_port), ["fresh ticket.", "no members.", "offline."]);
}
