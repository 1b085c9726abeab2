//! deploy/alertmanager/alertmanager.yml in a real Alertmanager (from `$KSE_TOOLS_DIR`): alerts
//! posted as Prometheus posts them, notifications received by a local PagerDuty Events API v2
//! endpoint and the ticket and watchdog webhooks (tests/alertmanager_support).

mod alertmanager_support;
mod alerts_support;
mod common;
mod tools;

use std::time::{Duration, Instant};

use alertmanager_support::{post_alerts, start_alertmanager, Receiver};
use serde_json::Value as Json;

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
