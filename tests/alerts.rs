//! The alert rule pack (`alerts/`) and the Alertmanager example (`deploy/alertmanager/`),
//! checked with the real tools: generated files are current, the PrometheusRule manifest equals
//! the rule files, `promtool check rules` (all lints, fatal) and `promtool test rules` pass,
//! every alert has a firing and a non-firing unit test, follows the conventions and has a
//! runbook, every metric it reads is documented, and `amtool` accepts and routes the example.

mod alerts_support;
mod tools;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use alerts_support::{alerts_of, generate, groups_of, root, rule_files, run, MANIFEST};
use serde_yaml::Value;

/// Compares the committed generated files with a fresh generation; `UPDATE_ALERTS=1`
/// rewrites them instead (`scripts/gen-alerts.sh`).
#[test]
fn generated_files_are_current() {
    let files = generate(None).unwrap_or_else(|e| panic!("generating the rule pack: {e}"));
    let update = std::env::var_os("UPDATE_ALERTS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for f in &files {
        let path = root().join(&f.path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != f.text {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &f.text).unwrap();
            } else {
                stale.push(f.path.clone());
            }
        }
    }
    // No rule file without a template.
    let expected: BTreeSet<PathBuf> = files.iter().map(|f| root().join(&f.path)).collect();
    for f in rule_files() {
        if !expected.contains(&f) {
            if update {
                std::fs::remove_file(&f).unwrap();
            } else {
                stale.push(format!("{} (no template in alerts/src)", f.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}; run ./scripts/gen-alerts.sh and commit the result"
    );
}

#[test]
fn prometheusrule_manifest_equals_the_rule_files() {
    let text = std::fs::read_to_string(root().join(MANIFEST)).expect("manifest");
    let manifest: Value = serde_yaml::from_str(&text).expect("manifest YAML");
    assert_eq!(manifest["apiVersion"], Value::from("monitoring.coreos.com/v1"));
    assert_eq!(manifest["kind"], Value::from("PrometheusRule"));
    let in_manifest = manifest["spec"]["groups"].as_sequence().cloned().expect("spec.groups");
    let in_files = groups_of(&rule_files());
    let names = |g: &[Value]| -> Vec<String> {
        g.iter()
            .map(|g| g["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&in_manifest), names(&in_files), "rule groups differ");
    for (m, f) in in_manifest.iter().zip(&in_files) {
        assert_eq!(m, f, "group {:?} differs between {MANIFEST} and alerts/", f["name"]);
    }
}

/// Debian's promtool 2.x and promtool 3.x both accept the pack with every lint fatal.
#[test]
fn promtool_check_rules_with_all_lints_fatal() {
    let files = rule_files();
    assert!(files.len() >= 5, "rule files: {files:?}");
    for (name, promtool) in tools::promtools() {
        let (ok, out) = run(Command::new(&promtool)
            .args(["check", "rules", "--lint=all", "--lint-fatal"])
            .args(&files));
        assert!(ok, "{name} check rules:\n{out}");
        assert!(!out.contains("WARNING") && !out.contains("lint"), "{name}: {out}");
    }
}

fn test_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("alerts/tests"))
        .expect("alerts/tests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    v.sort();
    v
}

/// The unit tests pass under Debian's promtool 2.x and under promtool 3.x.
#[test]
fn promtool_unit_tests_pass() {
    let files = test_files();
    assert!(!files.is_empty());
    for (name, promtool) in tools::promtools() {
        let (ok, out) = run(Command::new(&promtool).args(["test", "rules"]).args(&files));
        assert!(ok, "{name} test rules:\n{out}");
    }
}

/// Every alerting rule — each (alert, severity) pair — has a unit test in which it fires, and
/// every alert one in which it does not.
#[test]
fn every_alert_has_a_firing_and_a_non_firing_test() {
    let alerts = alerts_of(&groups_of(&rule_files()));
    let mut firing: BTreeSet<(String, String)> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    let mut tested_files: BTreeSet<String> = BTreeSet::new();
    for f in test_files() {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for rf in doc["rule_files"].as_sequence().into_iter().flatten() {
            tested_files.insert(rf.as_str().unwrap().trim_start_matches("../").to_string());
        }
        for t in doc["tests"].as_sequence().into_iter().flatten() {
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = a["alertname"].as_str().unwrap().to_string();
                let exp = a["exp_alerts"].as_sequence().cloned().unwrap_or_default();
                if exp.is_empty() {
                    quiet.insert(name.clone());
                }
                for e in exp {
                    let sev = e["exp_labels"]["severity"].as_str().unwrap_or_default().to_string();
                    firing.insert((name.clone(), sev));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for a in &alerts {
        let name = a["alert"].as_str().unwrap().to_string();
        let sev = a["labels"]["severity"].as_str().unwrap_or_default().to_string();
        if !firing.contains(&(name.clone(), sev.clone())) {
            missing.push(format!("{name} ({sev}): no firing case"));
        }
        // The watchdog fires whenever rules are evaluated; it cannot have a quiet case.
        if !quiet.contains(&name) && name != "KafkaWatchdog" {
            missing.push(format!("{name}: no non-firing case"));
        }
    }
    for f in rule_files() {
        let rel = f
            .strip_prefix(root().join("alerts"))
            .unwrap()
            .to_string_lossy()
            .to_string();
        if !tested_files.contains(&rel) {
            missing.push(format!("{rel}: loaded by no test file"));
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "untested alerts:\n{}", missing.join("\n"));
}

fn config() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join("alerts/config.yml")).unwrap()).unwrap()
}

/// Dashboard uids reserved for the dashboards (docs/runbooks/README.md lists them).
const DASHBOARDS: [&str; 7] = [
    "kafka-slo-overview",
    "kafka-slo-replication",
    "kafka-slo-consumers",
    "kafka-slo-probe",
    "kafka-slo-compliance",
    "kafka-slo-registry",
    "kafka-slo-exporter",
];

#[test]
fn alerts_follow_the_conventions_and_have_runbooks() {
    let cfg = config();
    let runbook_base = cfg["links"]["runbook_base_url"].as_str().unwrap();
    let dashboard_base = cfg["links"]["dashboard_base_url"].as_str().unwrap();
    let camel = regex::Regex::new(r"^Kafka([A-Z][a-z0-9]*)+$").unwrap();
    let alerts = alerts_of(&groups_of(&rule_files()));
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        names.insert(name.to_string());
        let mut bad = |what: &str| problems.push(format!("{name}: {what}"));
        if !camel.is_match(name) {
            bad("name is not CamelCase with the Kafka prefix");
        }
        match a["labels"]["severity"].as_str() {
            Some("critical" | "warning" | "info") => {}
            other => bad(&format!("severity {other:?}")),
        }
        let ann = &a["annotations"];
        match ann["summary"].as_str() {
            Some(s) if !s.contains("{{") && s.ends_with('.') => {}
            other => bad(&format!("summary must be static text ending in '.': {other:?}")),
        }
        match ann["description"].as_str() {
            Some(d) if d.contains("{{") => {}
            other => bad(&format!("description must be templated: {other:?}")),
        }
        if ann["runbook_url"].as_str() != Some(&format!("{runbook_base}/{name}.md")) {
            bad("runbook_url is not <runbook_base_url>/<alert>.md");
        }
        if let Some(d) = ann["dashboard_url"].as_str() {
            let uid = d
                .strip_prefix(&format!("{dashboard_base}/"))
                .and_then(|r| r.split('?').next())
                .unwrap_or_default();
            if !DASHBOARDS.contains(&uid) {
                bad(&format!("dashboard_url {d} is not a reserved dashboard"));
            }
        } else if name != "KafkaWatchdog" {
            bad("no dashboard_url");
        }
        let allowed: BTreeSet<&str> = ["summary", "description", "runbook_url", "dashboard_url"].into();
        for k in ann.as_mapping().unwrap().keys() {
            if !allowed.contains(k.as_str().unwrap()) {
                bad(&format!("unexpected annotation {k:?}"));
            }
        }
    }
    // One runbook per alert with the four sections; no runbook without an alert.
    let dir = root().join("docs/runbooks");
    for name in &names {
        let path = dir.join(format!("{name}.md"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems.push(format!("{name}: no docs/runbooks/{name}.md"));
            continue;
        };
        if !text.starts_with(&format!("# {name}\n")) {
            problems.push(format!("{name}.md: must start with '# {name}'"));
        }
        // Runbooks are read as Markdown, not rendered by Alertmanager.
        if text.contains("{{") {
            problems.push(format!(
                "{name}.md: an alert template ({{{{ ... }}}}) in plain Markdown"
            ));
        }
        for section in ["## Meaning", "## Impact", "## Diagnosis", "## Mitigation"] {
            if !text.contains(&format!("\n{section}\n")) {
                problems.push(format!("{name}.md: no '{section}' section"));
            }
        }
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let f = e.unwrap().file_name().to_string_lossy().to_string();
        if let Some(stem) = f.strip_suffix(".md") {
            if stem != "README" && !names.contains(stem) {
                problems.push(format!("docs/runbooks/{f}: no such alert"));
            }
        }
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("docs/runbooks/README.md");
    for uid in DASHBOARDS {
        if !readme.contains(&format!("`{uid}`")) {
            problems.push(format!("docs/runbooks/README.md does not list dashboard uid {uid}"));
        }
    }
    for name in &names {
        if !readme.contains(&format!("[{name}]({name}.md)")) {
            problems.push(format!("docs/runbooks/README.md does not link {name}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every metric the rules read is one the exporter documents (docs/metrics.md), so a renamed
/// metric cannot silently disable an alert; every recording rule read is recorded by the pack.
#[test]
fn rules_read_only_documented_metrics() {
    let documented = documented_metrics();
    let groups = groups_of(&rule_files());
    let rules: Vec<Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect();
    let recorded: BTreeSet<String> = rules
        .iter()
        .filter_map(|r| r["record"].as_str().map(str::to_string))
        .collect();
    let ident = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    // Label matchers, strings and durations, removed before looking for metric names.
    let noise = regex::Regex::new(r#"\{[^}]*\}|"[^"]*"|\[[^\]]*\]"#).unwrap();
    let mut problems = BTreeSet::new();
    for r in &rules {
        let expr = r["expr"].as_str().unwrap();
        let stripped = noise.replace_all(expr, "{}");
        for m in ident.find_iter(&stripped) {
            let name = m.as_str();
            if name.contains(':') {
                if !recorded.contains(name) {
                    problems.insert(format!("{name}: read but never recorded"));
                }
            } else if name.starts_with("kafka_") {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| documented.contains(*b))
                    .unwrap_or(name);
                if !documented.contains(base) {
                    problems.insert(format!("{name}: not in docs/metrics.md"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Metric names in the first column of docs/metrics.md's tables.
fn documented_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(n, _)| n.to_string()))
        .filter(|n| n.starts_with("kafka_"))
        .collect()
}

/// The generator refuses configuration it would silently ignore or misapply: keys no template
/// uses, a latency threshold that is no histogram bucket, an objective outside [0, 1); and an
/// overlay changes exactly the files that use the changed key.
#[test]
fn generator_rejects_unknown_keys_and_bad_values() {
    let e = generate(Some("unused_key: 1")).unwrap_err();
    assert!(e.contains("unused_key"), "{e}");
    let e = generate(Some("slo: {delivery_latency: {threshold_seconds: 0.7}}")).unwrap_err();
    assert!(e.contains("not a bucket"), "{e}");
    let e = generate(Some("slo: {freshness: {objective: 1.5}}")).unwrap_err();
    assert!(e.contains("objective"), "{e}");
    // An overlay changes the output and nothing else.
    let base = generate(None).unwrap();
    let tuned = generate(Some("replication: {under_replicated_for: 7m}")).unwrap();
    let diff: Vec<_> = base
        .iter()
        .zip(&tuned)
        .filter(|(a, b)| a.text != b.text)
        .map(|(a, _)| a.path.as_str())
        .collect();
    assert_eq!(diff, ["alerts/kafka-cluster.rules.yml", MANIFEST]);
}

fn amtool(args: &[&str]) -> (bool, String) {
    run(Command::new(tools::amtool()).args(args))
}

#[test]
fn alertmanager_example_is_valid() {
    let cfg = root().join("deploy/alertmanager/alertmanager.yml");
    let (ok, out) = amtool(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "amtool check-config:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The routing tree sends each severity where deploy/alertmanager/README.md says, and an alert
/// with a severity no route knows to a ticket rather than nowhere.
#[test]
fn alertmanager_example_routes_by_severity() {
    let cfg = root().join("deploy/alertmanager/alertmanager.yml");
    let cfg = cfg.to_str().unwrap();
    let cases: [(&str, &[&str]); 6] = [
        (
            "pagerduty",
            &[
                "alertname=KafkaUnderReplicatedPartitions",
                "severity=critical",
                "cluster=prod",
            ],
        ),
        (
            "ticket",
            &[
                "alertname=KafkaTopicNamingViolation",
                "severity=warning",
                "cluster=prod",
            ],
        ),
        ("watchdog", &["alertname=KafkaWatchdog", "severity=info"]),
        (
            "null",
            &["alertname=KafkaConsumerGroupRewound", "severity=info", "cluster=prod"],
        ),
        (
            "ticket",
            &["alertname=KafkaOfflinePartitions", "severity=crit", "cluster=prod"],
        ),
        ("ticket", &["alertname=KafkaOfflinePartitions", "cluster=prod"]),
    ];
    for (receiver, labels) in cases {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file",
            cfg,
            "--verify.receivers",
            receiver,
        ];
        args.extend_from_slice(labels);
        let (ok, out) = amtool(&args);
        assert!(ok, "{labels:?} should go to {receiver}:\n{out}");
    }
}

/// docs/adr-alerts.md maps every ADR-0007 clause to alerts of the pack: each row names at least
/// one alert, and every name is an alert of the rule files (which all have firing and
/// non-firing tests, see above).
#[test]
fn adr_table_names_only_tested_alerts() {
    let text = std::fs::read_to_string(root().join("docs/adr-alerts.md")).expect("docs/adr-alerts.md");
    let alerts: BTreeSet<String> = alerts_of(&groups_of(&rule_files()))
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_string())
        .collect();
    let name = regex::Regex::new(r"`(Kafka[A-Za-z]+)`").unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ADR-0007 clause"))
        .collect();
    assert!(rows.len() >= 10, "clauses: {rows:#?}");
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for row in &rows {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let [clause, cell] = cells[..] else {
            problems.push(format!("not a two-column row: {row}"));
            continue;
        };
        let names: Vec<String> = name.captures_iter(cell).map(|c| c[1].to_string()).collect();
        if names.is_empty() {
            problems.push(format!("{clause}: no alert"));
        }
        for n in names {
            if !alerts.contains(&n) {
                problems.push(format!("{clause}: {n} is no alert of the pack"));
            }
            named.insert(n);
        }
    }
    // The Avro mandate, the replication factor and the retention classes have alerts.
    for n in [
        "KafkaSchemaNotAvro",
        "KafkaTopicRecordsWithoutSchema",
        "KafkaTopicReplicationFactorBelowPolicy",
    ] {
        if !named.contains(n) {
            problems.push(format!("{n} is in no clause's row"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
