//! Prometheus 3.x scraping the exporter as it does by default: no `fallback_scrape_protocol`,
//! its default `scrape_protocols` (the exporter answers OpenMetrics), text and OpenMetrics forced
//! through `scrape_protocols`, and the UTF-8 escaping schemes Prometheus 3 negotiates in the
//! `Accept` header. For every scrape job, every metric family arrives with the type the exporter
//! declares for that format (Prometheus's `/api/v1/targets/metadata`), and every `le` matcher of
//! the rule pack and the dashboards selects exactly one bucket of the histogram it reads:
//! Prometheus 3 stores `le` normalised as a float (`le="1.0"`, never `le="1"`).

mod alerts_support;
mod common;
mod dashboards_support;
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{bootstrap_yaml, Exporter, Proc};
use kafka_harness::{ClusterOptions, KafkaCluster};
use serde_json::Value;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

/// Scrape jobs: (job, extra scrape_config lines, the exposition format the exporter answers).
const JOBS: [(&str, &str, Format); 6] = [
    ("default-protocols", "", Format::OpenMetrics),
    ("text-0.0.4", "scrape_protocols: [PrometheusText0.0.4]", Format::Text),
    ("text-1.0.0", "scrape_protocols: [PrometheusText1.0.0]", Format::Text),
    (
        "openmetrics-1.0.0",
        "scrape_protocols: [OpenMetricsText1.0.0]",
        Format::OpenMetrics,
    ),
    (
        "escaping-underscores",
        "metric_name_validation_scheme: legacy\n    metric_name_escaping_scheme: underscores",
        Format::OpenMetrics,
    ),
    (
        "escaping-utf8",
        "metric_name_validation_scheme: utf8\n    metric_name_escaping_scheme: allow-utf-8",
        Format::OpenMetrics,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Text,
    OpenMetrics,
}

fn start_prometheus(dir: &Path, exporter: &str) -> (Proc, u16) {
    let mut cfg = String::from("global: {scrape_interval: 1s}\nscrape_configs:\n");
    for (job, extra, _) in JOBS {
        cfg.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: ['{exporter}']}}]\n"
        ));
        if !extra.is_empty() {
            cfg.push_str(&format!("    {extra}\n"));
        }
    }
    common::start_prometheus(&tools::prometheus3(), dir, &cfg, &[])
}

fn api(port: u16, path: &str, params: &[(&str, &str)]) -> Value {
    let mut req = ureq::get(&format!("http://127.0.0.1:{port}{path}")).timeout(Duration::from_secs(10));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let body = req
        .call()
        .unwrap_or_else(|e| panic!("{path} {params:?}: {e}"))
        .into_string()
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v["data"].clone()
}

/// Family name → type from the `# TYPE` lines of an exposition.
fn declared_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.trim().to_string()))
        .collect()
}

/// Family name → type as Prometheus recorded them for the job's target.
fn scraped_types(port: u16, job: &str) -> BTreeMap<String, String> {
    let data = api(
        port,
        "/api/v1/targets/metadata",
        &[("match_target", &format!("{{job=\"{job}\"}}"))],
    );
    data.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["metric"].as_str().unwrap().to_string(),
                m["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Differences between what the exporter declares and what Prometheus recorded for `job`.
fn type_mismatches(declared: &BTreeMap<String, String>, scraped: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, t) in declared {
        match scraped.get(name) {
            Some(s) if s == t => {}
            Some(s) => out.push(format!("{name}: declared {t}, recorded {s}")),
            None => out.push(format!("{name}: declared {t}, not recorded")),
        }
    }
    for name in scraped.keys().filter(|n| !declared.contains_key(*n)) {
        out.push(format!("{name}: recorded, not declared"));
    }
    out
}

/// Every `<histogram>_bucket{..., le<op>"<value>"}` selector in the rule pack and the dashboards:
/// (where, histogram bucket series, le matcher as written).
fn le_selectors() -> Vec<(String, String, String)> {
    let selector = regex::Regex::new(r#"([a-zA-Z_:][a-zA-Z0-9_:]*_bucket)\{([^}]*)\}"#).unwrap();
    let le = regex::Regex::new(r#"\ble\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)""#).unwrap();
    let mut exprs: Vec<(String, String)> = Vec::new();
    let groups = alerts_support::groups_of(&alerts_support::rule_files());
    for g in &groups {
        for r in g["rules"].as_sequence().into_iter().flatten() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or_default();
            exprs.push((format!("rule {name}"), r["expr"].as_str().unwrap().to_string()));
        }
    }
    for (_, d) in dashboards_support::committed() {
        for q in dashboards_support::queries(&d) {
            exprs.push((format!("dashboard {} {:?}", q.dashboard, q.panel), q.expr));
        }
    }
    let mut out = Vec::new();
    for (where_, expr) in exprs {
        for c in selector.captures_iter(&expr) {
            if let Some(m) = le.captures(&c[2]) {
                out.push((where_.clone(), c[1].to_string(), m[0].to_string()));
            }
        }
    }
    out
}

/// `le` as Prometheus 3 stores it: the float's shortest representation with a fraction.
fn normalised_le(bound: f64) -> String {
    format!("{bound:?}")
}

#[test]
fn prometheus_3_scrapes_every_family_with_its_type_and_float_le() {
    let started = Instant::now();
    let kafka = KafkaCluster::start_new(ClusterOptions::default()).expect("Kafka");
    let exporter = Exporter::start(
        &format!(
            "global:\n  interval: 1s\n  timeout: 5s\nclusters:\n  - name: p3\n    bootstrap_servers: {}\n    labels: {{env: test}}\n    probe: {{interval: 1s}}\n",
            bootstrap_yaml(&kafka)
        ),
        &[],
    );
    exporter.wait_for(Duration::from_secs(60), "probe latency observed", |m| {
        m.sum("kafka_probe_end_to_end_latency_seconds_count", &[])
            .is_some_and(|c| c > 0.0)
    });
    let dir = tempfile::tempdir().unwrap();
    let (prom, port) = start_prometheus(dir.path(), &exporter.addr.to_string());

    // Families can appear between two scrapes (a new error class, a probe partition), so both
    // sides are read again until they agree.
    for (job, _, format) in JOBS {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = declared_types(&exporter.get("/metrics", None).2);
            let openmetrics = declared_types(&exporter.get("/metrics", Some(OPENMETRICS)).2);
            // The two formats name counters and info families differently, so matching one of
            // them tells which format the job negotiated.
            assert_ne!(text.keys().collect::<Vec<_>>(), openmetrics.keys().collect::<Vec<_>>());
            let declared = match format {
                Format::Text => text,
                Format::OpenMetrics => openmetrics,
            };
            assert!(declared.len() > 40, "{job}: only {} families", declared.len());
            let problems = type_mismatches(&declared, &scraped_types(port, job));
            if problems.is_empty() {
                eprintln!("prometheus3 scrape: {job}: {} families, types match", declared.len());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} ({format:?}):\n{}\nprometheus log:\n{}",
                problems.join("\n"),
                prom.tail()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    // Bucket boundaries as stored: floats, whatever the exposition format.
    let mut expected: BTreeSet<String> = kafka_slo_exporter::probe::LATENCY_BUCKETS
        .iter()
        .map(|b| normalised_le(*b))
        .collect();
    expected.insert("+Inf".to_string());
    let selectors = le_selectors();
    assert!(
        selectors.iter().any(|(w, _, _)| w.starts_with("rule ")),
        "the latency SLI selects a bucket: {selectors:?}"
    );
    for (job, _, _) in JOBS {
        let stored = api(
            port,
            "/api/v1/label/le/values",
            &[(
                "match[]",
                &format!("kafka_probe_end_to_end_latency_seconds_bucket{{job=\"{job}\"}}"),
            )],
        );
        let stored: BTreeSet<String> = stored
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(stored, expected, "{job}: stored le values");
        for (where_, bucket, matcher) in &selectors {
            let q = format!("group by (le) ({bucket}{{job=\"{job}\", {matcher}}})");
            let data = api(port, "/api/v1/query", &[("query", &q)]);
            let les: Vec<&str> = data["result"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["metric"]["le"].as_str())
                .collect();
            assert_eq!(les.len(), 1, "{where_}: {matcher} selects {les:?} in job {job}");
        }
    }
    eprintln!(
        "prometheus3 scrape: {} le selectors checked in {} jobs; done in {:?}",
        selectors.len(),
        JOBS.len(),
        started.elapsed()
    );
}
