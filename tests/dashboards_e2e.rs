//! Every dashboard query against real data: a Kafka cluster running the demo workload
//! (ADR-shaped topics, producers, a healthy and a lagging consumer group), an Apicurio Schema
//! Registry, the exporter with the delivery probe and registry watch, and Prometheus 3.x scraping
//! it with the alert pack's rules loaded (the SLO panels read its recording rules). Each
//! panel target, with the dashboard variables set to real values, must return at least one
//! series, except the few panels listed in [`EMPTY_BY_DESIGN`] and queries of families the
//! default selection serves only in part (opt-in or problems-only ones): the exporter runs with
//! the defaults, as the dashboards must work with them.

mod alerts_support;
mod common;
mod dashboards_support;
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{block_on, bootstrap_yaml, Exporter, Proc};
use dashboards_support::{committed, label_values, queries, substitute, Query};
use kafka_harness::demo::{Workload, HEALTHY_GROUP, LAGGING_GROUP};
use kafka_harness::{ClusterOptions, KafkaCluster, SchemaRegistry};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;

/// Panels that return no series on a healthy cluster, each with the reason; reviewed, keep short.
/// `(dashboard uid, panel title, reason)`.
const EMPTY_BY_DESIGN: [(&str, &str, &str); 2] = [
    (
        "kafka-slo-probe",
        "Failed sends by error",
        "the series exists per error class only once a probe send has failed",
    ),
    (
        "kafka-slo-exporter",
        "Dropped series by family",
        "the series exist only while global.max_series drops a family; the test's limit drops none",
    ),
];

/// The rule pack as committed, but with the 30-day budget ratios recorded every 2 s instead of
/// every 5 minutes, so that the budget panels have data within the test.
const RULES_OVERLAY: &str = "slo: {budget: {interval: 2s}}";

/// The topics and groups selected, as Grafana sends a multi-value selection: a regex
/// alternative. legacy_orders violates the policy; payment.payment.events has no subject.
const TOPICS: &str = "(order.order.events|payment.payment.events|legacy_orders)";
const GROUPS: &str = "(analytics-batch|order-service)";
const CLUSTER: &str = "demo";
const JOB: &str = "kafka-slo-exporter";
/// The cluster's constant label (exporter_config).
const ENV: &str = "demo";
/// What Grafana makes of `$__rate_interval` for a 1 s scrape interval and a short range, with
/// room for a missed scrape.
const RATE_INTERVAL: &str = "15s";

const ORDER_SCHEMA: &str =
    r#"{"type":"record","name":"Order","namespace":"demo","fields":[{"name":"id","type":"string"}]}"#;
const CUSTOMER_SCHEMA: &str =
    r#"{"type":"record","name":"Customer","namespace":"demo","fields":[{"name":"id","type":"string"}]}"#;

/// Starts Prometheus scraping `exporter` every second and evaluating the rule pack (with
/// [`RULES_OVERLAY`]) every second.
fn start_prometheus(dir: &Path, exporter: &str) -> (Proc, u16) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in alerts_support::generate(Some(RULES_OVERLAY)).unwrap() {
        if let Some(name) = f.path.strip_prefix("alerts/") {
            std::fs::write(rules.join(name), &f.text).unwrap();
        }
    }
    let cfg = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}/*.rules.yml']\n\
         scrape_configs:\n  - job_name: kafka-slo-exporter\n    static_configs: [{{targets: ['{exporter}']}}]\n",
        rules.display()
    );
    common::start_prometheus(&tools::prometheus3(), dir, &cfg, &[])
}

/// GETs a Prometheus API path; returns `data` or the error text.
fn api(port: u16, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
    let mut req = ureq::get(&format!("http://127.0.0.1:{port}{path}")).timeout(Duration::from_secs(10));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let body = match req.call() {
        Ok(r) => r.into_string().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, r)) => return Err(format!("{code}: {}", r.into_string().unwrap_or_default())),
        Err(e) => return Err(e.to_string()),
    };
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(body);
    }
    Ok(v["data"].clone())
}

/// Runs `q` as Grafana would with the test's variable values; returns the number of series.
/// Every series must carry the labels the panel's data links pass on.
fn run_query(port: u16, q: &Query, values: &BTreeMap<&str, String>) -> Result<usize, String> {
    let expr = substitute(&q.expr, values)?;
    let data = api(port, "/api/v1/query", &[("query", &expr)])?;
    let series = data["result"].as_array().cloned().unwrap_or_default();
    for s in &series {
        for l in &q.link_labels {
            if s["metric"][l].as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "series {} lacks label {l}, which a data link passes on",
                    s["metric"]
                ));
            }
        }
    }
    Ok(series.len())
}

fn exporter_config(bootstrap: &str, registry: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 5s\n  max_series: 1000000\n  lag: {{status_window: 5m}}\n\
         clusters:\n  - name: {CLUSTER}\n    bootstrap_servers: {bootstrap}\n    labels: {{env: demo}}\n\
         \x20   probe: {{interval: 1s}}\n\
         \x20   schema_registry:\n      urls: [\"{registry}\"]\n      interval: 2s\n      subject_labels: true\n\
         \x20     sampling: {{records: 10}}\n"
    )
}

#[test]
fn every_panel_query_returns_data_from_a_real_stack() {
    let started = Instant::now();
    let dashboards = committed();
    let all: Vec<Query> = dashboards.iter().flat_map(|(_, d)| queries(d)).collect();
    // The allow-list names existing panels only.
    for (uid, panel, _) in EMPTY_BY_DESIGN {
        assert!(
            all.iter().any(|q| q.dashboard == uid && q.panel == panel),
            "EMPTY_BY_DESIGN names {uid} {panel:?}, which does not exist"
        );
    }

    // The registry starts (slowly) while Kafka does.
    let registry = std::thread::spawn(|| SchemaRegistry::start(Duration::from_secs(240)));
    let kafka = KafkaCluster::start_new(ClusterOptions::default()).expect("Kafka");
    let workload = Workload::start(&kafka).expect("demo workload");
    let registry = registry.join().unwrap().expect("Apicurio Registry");
    registry
        .register("order.order.events-value", ORDER_SCHEMA, None)
        .unwrap();
    registry
        .register("dbserver1.inventory.customers-value", CUSTOMER_SCHEMA, None)
        .unwrap();
    // A subject whose topic does not exist (an orphan).
    registry.register("gone.gone.events-value", ORDER_SCHEMA, None).unwrap();
    eprintln!(
        "dashboards e2e: Kafka, workload and registry up after {:?}",
        started.elapsed()
    );

    let exporter = Exporter::start(&exporter_config(&bootstrap_yaml(&kafka), &registry.url()), &[]);
    let dir = tempfile::tempdir().unwrap();
    let (prom, port) = start_prometheus(dir.path(), &exporter.addr.to_string());

    // A partition count change the compliance dashboard shows, once the exporter knows the
    // topic's original count.
    let order = [("topic", "order.order.events")];
    exporter.wait_for(Duration::from_secs(60), "order.order.events", |m| {
        m.value("kafka_topic_partitions", &order) == Some(6.0)
    });
    // An offsets-only group moved backwards (as a replay tool would): KafkaConsumerGroupRewound
    // fires at once and stays while the step is inside the status window (5m, longer than
    // this test), so the overview's alert table has a row.
    let replay = [
        ("group", "replay-tool"),
        ("topic", "order.internal.retry"),
        ("partition", "0"),
    ];
    kafka
        .commit_offsets("replay-tool", &[("order.internal.retry", 0, 5)])
        .unwrap();
    // A lag series exists once the exporter has seen the (only) commit.
    exporter.wait_for(Duration::from_secs(60), "replay-tool's first commit", |m| {
        m.find("kafka_consumergroup_lag", &replay).len() == 1
    });
    kafka
        .commit_offsets("replay-tool", &[("order.internal.retry", 0, 1)])
        .unwrap();

    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let grown = block_on(admin.create_partitions(&[NewPartitions::new("order.order.events", 8)], &AdminOptions::new()))
        .unwrap();
    assert!(grown.iter().all(|r| r.is_ok()), "{grown:?}");

    let values: BTreeMap<&str, String> = BTreeMap::from([
        ("job", JOB.to_string()),
        ("env", ENV.to_string()),
        ("cluster", CLUSTER.to_string()),
        ("topic", TOPICS.to_string()),
        ("group", GROUPS.to_string()),
        ("__rate_interval", RATE_INTERVAL.to_string()),
    ]);
    // The exporter runs with the default selection of families: a query that reads an opt-in
    // or problems-only family may be empty on this healthy cluster (its panel says what it
    // needs; tests/dashboards.rs checks that).
    let by_design = |q: &Query| {
        EMPTY_BY_DESIGN
            .iter()
            .any(|(u, p, _)| q.dashboard == *u && q.panel == *p)
            || !dashboards_support::beyond_defaults(&q.expr).is_empty()
    };
    let describe = |q: &Query| format!("{} {:?} {}: {}", q.dashboard, q.panel, q.ref_id, q.expr);

    // Poll every query until each has data; rates, rule windows and the lagging group's time
    // lag need some scrapes first.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<&Query> = all.iter().filter(|q| !by_design(q)).collect();
    let mut errors = Vec::new();
    loop {
        let mut still = Vec::new();
        for q in pending {
            match run_query(port, q, &values) {
                Ok(0) => still.push(q),
                Ok(_) => {}
                Err(e) => errors.push(format!("{}\n    {e}", describe(q))),
            }
        }
        pending = still;
        if pending.is_empty() || !errors.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(errors.is_empty(), "queries Prometheus rejects:\n{}", errors.join("\n"));
    assert!(
        pending.is_empty(),
        "{} of {} panel queries returned no series:\n{}\nprometheus log:\n{}",
        pending.len(),
        all.len(),
        pending.iter().map(|q| describe(q)).collect::<Vec<_>>().join("\n"),
        prom.tail()
    );
    // With "All" selected (Grafana sends the variable's allValue, `.*`) every panel has data too.
    let all_values: BTreeMap<&str, String> = values
        .keys()
        .map(|k| {
            (
                *k,
                if *k == "__rate_interval" { RATE_INTERVAL } else { ".*" }.to_string(),
            )
        })
        .collect();
    let empty_with_all: Vec<String> = all
        .iter()
        .filter(|q| !by_design(q))
        .filter_map(|q| match run_query(port, q, &all_values) {
            Ok(0) => Some(format!("{} (no series)", describe(q))),
            Ok(_) => None,
            Err(e) => Some(format!("{}\n    {e}", describe(q))),
        })
        .collect();
    assert!(
        empty_with_all.is_empty(),
        "with All selected:\n{}",
        empty_with_all.join("\n")
    );
    // The panels empty by design still run without error.
    for q in all.iter().filter(|q| by_design(q)) {
        let n = run_query(port, q, &values).unwrap_or_else(|e| panic!("{}: {e}", describe(q)));
        eprintln!("dashboards e2e: empty by design, {n} series: {}", describe(q));
    }
    eprintln!(
        "dashboards e2e: {} panel queries with data ({} empty by design) after {:?}",
        all.iter().filter(|q| !by_design(q)).count(),
        all.iter().filter(|q| by_design(q)).count(),
        started.elapsed()
    );

    // Template variables: label_values(selector, label) as Grafana asks Prometheus for it.
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("job", vec![JOB]),
        ("env", vec![ENV]),
        ("cluster", vec![CLUSTER]),
        (
            "topic",
            vec![
                "order.order.events",
                "payment.payment.events",
                "audit.payment.events",
                "legacy_orders",
            ],
        ),
        ("group", vec![HEALTHY_GROUP.0, LAGGING_GROUP.0]),
    ]);
    let mut checked = BTreeSet::new();
    for (file, d) in &dashboards {
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap();
            if name == "datasource" {
                continue;
            }
            let (selector, label) = label_values(v["definition"].as_str().unwrap()).unwrap();
            let selector = substitute(&selector, &values).unwrap();
            let data = api(
                port,
                &format!("/api/v1/label/{label}/values"),
                &[("match[]", &selector)],
            )
            .unwrap_or_else(|e| panic!("{file} variable {name}: {e}"));
            let got: BTreeSet<&str> = data.as_array().unwrap().iter().filter_map(Value::as_str).collect();
            for want in &expected[name] {
                assert!(got.contains(want), "{file} variable {name}: {want} not in {got:?}");
            }
            checked.insert(name.to_string());
        }
    }
    assert_eq!(checked.len(), 5, "{checked:?}");
    drop(workload);
    eprintln!("dashboards e2e: done in {:?}", started.elapsed());
}
