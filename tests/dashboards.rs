//! The Grafana dashboards (`dashboards/`): generated files are current; every dashboard follows
//! the conventions (import format, variables, datasource references, units, descriptions,
//! ids, layout, links); every PromQL expression parses with a real PromQL parser, uses
//! `$__rate_interval` in its rates and reads only metrics the exporter documents or the rule
//! pack records; the alerts' dashboard links and the provisioning files resolve.

mod alerts_support;
mod dashboards_lint;
mod dashboards_support;

use std::collections::{BTreeMap, BTreeSet};

use dashboards_lint::{analyse, readable_metrics};
use dashboards_support::{
    committed, generate, generate_from, label_values, queries, root, SCHEMA_VERSION, TAG, VARIABLES,
};
use serde_json::Value;

/// Compares the committed dashboards with a fresh generation; `UPDATE_DASHBOARDS=1` rewrites
/// them instead (`scripts/gen-dashboards.sh`).
#[test]
fn generated_dashboards_are_current() {
    let files = generate().unwrap_or_else(|e| panic!("generating the dashboards: {e}"));
    let update = std::env::var_os("UPDATE_DASHBOARDS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for f in &files {
        let path = root().join(&f.path);
        if std::fs::read_to_string(&path).unwrap_or_default() != f.text {
            if update {
                std::fs::write(&path, &f.text).unwrap();
            } else {
                stale.push(f.path.clone());
            }
        }
    }
    let expected: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    for (name, _) in committed() {
        let path = format!("dashboards/{name}");
        if !expected.contains(&path) {
            if update {
                std::fs::remove_file(root().join(&path)).unwrap();
            } else {
                stale.push(format!("{path} (no spec in dashboards/src)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated dashboards are stale: {stale:?}; run ./scripts/gen-dashboards.sh and commit the result"
    );
}

/// The generator refuses specs it would turn into a broken or unconventional dashboard.
#[test]
fn generator_rejects_bad_specs() {
    let spec = |panel: &str| {
        format!(
            "uid: kafka-slo-x\ntitle: X\ndescription: d\nvariables: [cluster]\nrows:\n  - title: r\n    panels:\n{panel}"
        )
    };
    let gen = |panel: &str| generate_from(&[("x.yml".to_string(), spec(panel))]);
    let good = "      - {title: p, type: stat, unit: s, description: d, targets: [{expr: 'up'}]}\n";
    assert!(gen(good).is_ok(), "{:?}", gen(good));
    for (panel, why) in [
        (
            "      - {title: p, type: stat, unit: s, description: d, colour: red, targets: [{expr: 'up'}]}\n",
            "unknown field",
        ),
        ("      - {title: p, type: stat, description: d, targets: [{expr: 'up'}]}\n", "unit"),
        ("      - {title: p, type: stat, unit: s, description: ' ', targets: [{expr: 'up'}]}\n", "description"),
        ("      - {title: p, type: table, unit: s, description: d, targets: [{expr: 'up'}]}\n", "legend"),
        ("      - {title: p, type: pie, unit: s, description: d, targets: [{expr: 'up'}]}\n", "unknown variant"),
        (
            "      - {title: p, type: stat, unit: s, description: d, width: 25, targets: [{expr: 'up'}]}\n",
            "width",
        ),
        (
            "      - {title: p, type: stat, unit: s, description: d, drilldown: kafka-slo-nope, targets: [{expr: 'up'}]}\n",
            "unknown dashboard",
        ),
        (
            "      - {title: p, type: stat, unit: s, description: d, thresholds: [red], targets: [{expr: 'up'}]}\n",
            "threshold",
        ),
    ] {
        let e = gen(panel).expect_err(panel);
        assert!(e.contains(why), "{panel}: {e}");
    }
    let e = generate_from(&[("x.yml".into(), spec(good).replace("[cluster]", "[cluster, shard]"))]).unwrap_err();
    assert!(e.contains("shard"), "{e}");
    let e = generate_from(&[("x.yml".into(), spec(good).replace("[cluster]", "[topic]"))]).unwrap_err();
    assert!(e.contains("cluster"), "{e}");
}

/// Dashboard uids listed in docs/runbooks/README.md's "Dashboards" table: the alerts link to
/// them, so each must exist, and each dashboard must be listed there.
fn listed_uids() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/runbooks/README.md")).unwrap();
    let section = text.split("\n## Dashboards").nth(1).expect("a Dashboards section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(uid, _)| uid.to_string()))
        .collect()
}

/// Variables a dashboard defines, by name.
fn variables(dash: &Value) -> BTreeMap<String, Value> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_string(), v.clone()))
        .collect()
}

/// Grafana variable names referenced in `text`.
fn referenced_variables(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)").unwrap();
    re.captures_iter(text)
        .map(|c| c.get(1).or_else(|| c.get(2)).unwrap().as_str().to_string())
        .collect()
}

/// Every `datasource` value anywhere in `v`, with its JSON path.
fn datasources(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if k == "datasource" {
                    out.push((p.clone(), x.clone()));
                }
                datasources(x, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                datasources(x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every string in `v` with its path.
fn strings(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Object(m) => m.iter().for_each(|(k, x)| strings(x, &format!("{path}.{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| strings(x, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// `/d/<uid>/?...var-x=...` links: (uid, variables passed).
fn parse_link(url: &str) -> Option<(String, BTreeSet<String>)> {
    let rest = url.split("/d/").nth(1)?;
    let uid = rest.split(['/', '?']).next()?.to_string();
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let mut vars = BTreeSet::new();
    for part in query.split('&') {
        if let Some(v) = part.strip_prefix("var-") {
            vars.insert(v.split('=').next().unwrap_or_default().to_string());
        } else if let Some(v) = part.strip_prefix("${").and_then(|p| p.strip_suffix(":queryparam}")) {
            vars.insert(v.to_string());
        }
    }
    Some((uid, vars))
}

/// Grafana unit ids the dashboards use; a misspelt unit would silently show raw numbers.
const UNITS: [&str; 7] = ["none", "short", "s", "percentunit", "cps", "reqps", "dateTimeAsIso"];

#[test]
fn dashboards_follow_the_conventions() {
    let dashboards = committed();
    let uids: BTreeMap<String, BTreeSet<String>> = dashboards
        .iter()
        .map(|(_, d)| {
            (
                d["uid"].as_str().unwrap_or_default().to_string(),
                variables(d).into_keys().collect(),
            )
        })
        .collect();
    let mut problems = Vec::new();
    let listed = listed_uids();
    let have: BTreeSet<String> = uids.keys().cloned().collect();
    if listed != have {
        problems.push(format!(
            "dashboard uids {have:?} differ from docs/runbooks/README.md's Dashboards table {listed:?}"
        ));
    }
    let expected_ds = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for (file, d) in &dashboards {
        let mut bad = |what: String| problems.push(format!("{file}: {what}"));
        let uid = d["uid"].as_str().unwrap_or_default();
        if file != &format!("{uid}.json") {
            bad(format!("file name must be <uid>.json (uid {uid:?})"));
        }
        if !uid.starts_with("kafka-slo-") || uid.len() > 40 {
            bad("uid must start with kafka-slo- and fit Grafana's 40 characters".into());
        }
        if d["schemaVersion"].as_u64() != Some(SCHEMA_VERSION) {
            bad(format!("schemaVersion must be {SCHEMA_VERSION}"));
        }
        if !d["id"].is_null() {
            bad("id must be null (Grafana assigns it)".into());
        }
        for k in ["title", "description"] {
            if d[k].as_str().is_none_or(|s| s.trim().is_empty()) {
                bad(format!("no {k}"));
            }
        }
        if !d["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == TAG)) {
            bad(format!("no tag {TAG}"));
        }
        // Import format: one Prometheus input, requirements naming every panel plugin used.
        let inputs = d["__inputs"].as_array().cloned().unwrap_or_default();
        if inputs.len() != 1
            || inputs[0]["name"] != "DS_PROMETHEUS"
            || inputs[0]["type"] != "datasource"
            || inputs[0]["pluginId"] != "prometheus"
        {
            bad(format!(
                "__inputs must be exactly DS_PROMETHEUS (prometheus): {inputs:?}"
            ));
        }
        let requires: BTreeSet<(String, String)> = d["__requires"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["type"].as_str().unwrap_or_default().into(),
                    r["id"].as_str().unwrap_or_default().into(),
                )
            })
            .collect();
        for need in [("grafana", "grafana"), ("datasource", "prometheus")] {
            if !requires.contains(&(need.0.to_string(), need.1.to_string())) {
                bad(format!("__requires lacks {need:?}"));
            }
        }
        // Links to the other dashboards by tag, keeping variables and time.
        let tag_link = d["links"].as_array().into_iter().flatten().any(|l| {
            l["type"] == "dashboards"
                && l["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == TAG))
                && l["includeVars"] == true
                && l["keepTime"] == true
        });
        if !tag_link {
            bad(format!("no dashboards link by tag {TAG} with includeVars and keepTime"));
        }
        // Variables: the datasource variable, then label_values query variables, multi + All.
        let vars = variables(d);
        match vars.get("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => bad("no datasource variable of type prometheus".into()),
        }
        if !vars.contains_key("cluster") {
            bad("no cluster variable".into());
        }
        for (name, v) in &vars {
            if name == "datasource" {
                continue;
            }
            let Some((_, _, query)) = VARIABLES.iter().find(|(n, _, _)| n == name) else {
                bad(format!("variable {name}: not one of {VARIABLES:?}"));
                continue;
            };
            if v["type"] != "query" || v["multi"] != true || v["includeAll"] != true {
                bad(format!(
                    "variable {name}: must be a query variable with multi and includeAll"
                ));
            }
            if v["definition"] != *query || v["query"]["query"] != *query || label_values(query).is_none() {
                bad(format!("variable {name}: query must be {query}"));
            }
            if v["datasource"] != expected_ds {
                bad(format!("variable {name}: datasource must be ${{datasource}}"));
            }
        }
        // No hard-coded datasource: every reference is the variable, except Grafana's own
        // annotation source; ${DS_PROMETHEUS} only as the datasource variable's default.
        let mut ds = Vec::new();
        datasources(d, "", &mut ds);
        for (path, v) in ds {
            let builtin = path.starts_with(".annotations") && v["type"] == "grafana";
            if v != expected_ds && !builtin {
                bad(format!("{path}: datasource {v} is not ${{datasource}}"));
            }
        }
        let mut texts = Vec::new();
        strings(d, "", &mut texts);
        for (path, s) in &texts {
            if s.contains("DS_PROMETHEUS") && !path.starts_with(".__inputs") && !path.contains(".current.") {
                bad(format!("{path}: {s:?} hard-codes the import input"));
            }
        }
        // Panels: unique ids, inside the 24-column grid without overlaps, unit and description,
        // targets with unique refIds, variables used = variables defined.
        let mut ids = BTreeSet::new();
        let mut cells: BTreeSet<(u64, u64)> = BTreeSet::new();
        let mut used_vars = BTreeSet::new();
        for p in d["panels"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default();
            let id = p["id"].as_u64();
            if id.is_none_or(|id| !ids.insert(id)) {
                bad(format!("panel {title:?}: missing or duplicate id {id:?}"));
            }
            let g = &p["gridPos"];
            let (x, y, w, h) = (g["x"].as_u64(), g["y"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
            match (x, y, w, h) {
                (Some(x), Some(y), Some(w), Some(h)) if x + w <= 24 && w > 0 && h > 0 => {
                    for cx in x..x + w {
                        for cy in y..y + h {
                            if !cells.insert((cx, cy)) {
                                bad(format!("panel {title:?} overlaps another at ({cx}, {cy})"));
                            }
                        }
                    }
                }
                _ => bad(format!("panel {title:?}: gridPos {g} outside the grid")),
            }
            let ptype = p["type"].as_str().unwrap_or_default();
            if ptype == "row" {
                continue;
            }
            if !requires.contains(&("panel".to_string(), ptype.to_string())) {
                bad(format!("panel {title:?}: type {ptype} not in __requires"));
            }
            if title.trim().is_empty() {
                bad(format!("panel {}: no title", p["id"]));
            }
            if p["description"].as_str().is_none_or(|s| s.trim().len() < 20) {
                bad(format!("panel {title:?}: no description"));
            }
            match p["fieldConfig"]["defaults"]["unit"].as_str() {
                Some(u) if UNITS.contains(&u) => {}
                other => bad(format!("panel {title:?}: unit {other:?} is not one of {UNITS:?}")),
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                bad(format!("panel {title:?}: no targets"));
            }
            let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
            if refs.len() != targets.len() {
                bad(format!("panel {title:?}: refIds missing or not unique"));
            }
            for t in &targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                if expr.trim().is_empty() {
                    bad(format!("panel {title:?}: empty expr"));
                }
                used_vars.extend(referenced_variables(expr));
            }
            // Links go to existing dashboards and pass only variables they define.
            let links = p["links"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(p["fieldConfig"]["defaults"]["links"].as_array().into_iter().flatten());
            for l in links {
                let url = l["url"].as_str().unwrap_or_default();
                match parse_link(url) {
                    Some((target, passed)) => match uids.get(&target) {
                        Some(target_vars) => {
                            for v in passed.difference(target_vars) {
                                bad(format!(
                                    "panel {title:?}: link {url} passes {v}, which {target} does not define"
                                ));
                            }
                        }
                        None => bad(format!("panel {title:?}: link to unknown dashboard {target}")),
                    },
                    None => bad(format!("panel {title:?}: link {url} is not a /d/<uid> link")),
                }
                for v in referenced_variables(url) {
                    if !v.starts_with("__") && v != "datasource" && !vars.contains_key(&v) {
                        bad(format!("panel {title:?}: link uses undefined variable {v}"));
                    }
                }
            }
        }
        for q in vars.values().filter_map(|v| v["definition"].as_str()) {
            used_vars.extend(referenced_variables(q));
        }
        for v in &used_vars {
            if !v.starts_with("__") && !vars.contains_key(v) {
                bad(format!("query uses undefined variable ${v}"));
            }
        }
        for v in vars.keys() {
            if v != "datasource" && !used_vars.contains(v) {
                bad(format!("variable {v} is defined but no query uses it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_query_parses_and_reads_only_exported_metrics() {
    let readable = readable_metrics();
    let mut problems = Vec::new();
    let mut read = BTreeSet::new();
    let mut count = 0;
    for (file, d) in committed() {
        for q in queries(&d) {
            count += 1;
            match analyse(&q.expr) {
                Ok(metrics) => {
                    for m in metrics {
                        if !readable.contains(&m) {
                            problems.push(format!(
                                "{file} {:?} {}: {m} is not exported or recorded",
                                q.panel, q.ref_id
                            ));
                        }
                        read.insert(m);
                    }
                }
                Err(errs) => {
                    for e in errs {
                        problems.push(format!("{file} {:?} {}: {e}\n    {}", q.panel, q.ref_id, q.expr));
                    }
                }
            }
        }
        for (name, v) in variables(&d) {
            if name == "datasource" {
                continue;
            }
            let def = v["definition"].as_str().unwrap_or_default();
            let Some((selector, _)) = label_values(def) else {
                problems.push(format!("{file} variable {name}: not label_values(...)"));
                continue;
            };
            match analyse(&selector) {
                Ok(m) => {
                    for m in m.into_iter().filter(|m| !readable.contains(m)) {
                        problems.push(format!("{file} variable {name}: {m} is not exported"));
                    }
                }
                Err(e) => problems.push(format!("{file} variable {name}: {e:?}")),
            }
        }
    }
    assert!(count > 50, "only {count} queries found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("{count} queries read {} distinct metrics", read.len());
}

/// The checks above catch what they should: a renamed metric, a fixed rate window, a fixed
/// `_over_time` window, rate() of a gauge, an unknown variable and a syntax error.
#[test]
fn the_query_checks_reject_broken_queries() {
    let readable = readable_metrics();
    let metrics =
        analyse(r#"sum by (cluster) (rate(kafka_probe_round_total{cluster=~"$cluster"}[$__rate_interval]))"#).unwrap();
    assert!(
        !metrics.iter().all(|m| readable.contains(m)),
        "a misspelt metric must be caught"
    );
    let e = analyse(r#"rate(kafka_probe_rounds_total[5m])"#).unwrap_err();
    assert!(e[0].contains("$__rate_interval"), "{e:?}");
    let e = analyse(r#"avg_over_time(kafka_probe_up[30d])"#).unwrap_err();
    assert!(e[0].contains("recording rules"), "{e:?}");
    let e = analyse(r#"avg_over_time(cluster:kafka_slo_delivery_errors:ratio_rate5m[30d])"#).unwrap_err();
    assert!(e[0].contains("recording rules"), "{e:?}");
    let e = analyse(r#"rate(kafka_consumergroup_committed_offset[$__rate_interval])"#).unwrap_err();
    assert!(e[0].contains("a gauge"), "{e:?}");
    assert!(analyse(r#"clamp_min(deriv(kafka_consumergroup_committed_offset[$__rate_interval]), 0)"#).is_ok());
    assert!(analyse(r#"rate(kafka_probe_rounds_total[$__rate_interval])"#).is_ok());
    let e = analyse(r#"kafka_brokers{cluster=~"$cluser"}"#).unwrap_err();
    assert!(e[0].contains("cluser"), "{e:?}");
    let e = analyse(r#"sum by (cluster (kafka_brokers)"#).unwrap_err();
    assert!(e[0].contains("parse"), "{e:?}");
    let e = analyse(r#"max_over_time(rate(kafka_topic_high_watermarks[$__rate_interval])[1h:])"#).unwrap_err();
    assert!(e.iter().any(|e| e.contains("subquer")), "{e:?}");
}

/// Every alert's dashboard_url names a shipped dashboard and only variables it defines.
#[test]
fn alert_dashboard_links_resolve() {
    let dashboards: BTreeMap<String, BTreeSet<String>> = committed()
        .iter()
        .map(|(_, d)| {
            (
                d["uid"].as_str().unwrap().to_string(),
                variables(d).into_keys().collect(),
            )
        })
        .collect();
    let alerts = alerts_support::alerts_of(&alerts_support::groups_of(&alerts_support::rule_files()));
    let mut problems = Vec::new();
    let mut linked = 0;
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        let Some(url) = a["annotations"]["dashboard_url"].as_str() else {
            continue;
        };
        linked += 1;
        let (uid, vars) = parse_link(url).unwrap_or_else(|| panic!("{name}: {url}"));
        match dashboards.get(&uid) {
            Some(defined) => {
                for v in vars.difference(defined) {
                    problems.push(format!("{name}: {url} sets var-{v}, which {uid} does not define"));
                }
            }
            None => problems.push(format!("{name}: {url} names no shipped dashboard")),
        }
    }
    assert!(linked > 20, "only {linked} alerts link a dashboard");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The provisioning example loads exactly these dashboards from a folder and defines the
/// datasource the dashboards' variable selects.
#[test]
fn provisioning_example_matches_the_dashboards() {
    let read = |p: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}")))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let dash = read("deploy/grafana/provisioning/dashboards/kafka-slo.yaml");
    assert_eq!(dash["apiVersion"], serde_yaml::Value::from(1));
    let providers = dash["providers"].as_sequence().expect("providers");
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["type"].as_str(), Some("file"));
    assert!(p["options"]["path"].as_str().is_some_and(|s| !s.is_empty()));
    let ds = read("deploy/grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(ds["apiVersion"], serde_yaml::Value::from(1));
    let sources = ds["datasources"].as_sequence().expect("datasources");
    assert!(
        sources.iter().any(|s| s["type"].as_str() == Some("prometheus")),
        "no prometheus datasource"
    );
    // The README describes every dashboard.
    let readme = std::fs::read_to_string(root().join("dashboards/README.md")).unwrap();
    for (file, d) in committed() {
        let uid = d["uid"].as_str().unwrap();
        assert!(
            readme.contains(&format!("`{uid}`")),
            "dashboards/README.md does not describe {file}"
        );
    }
}

/// Every family of docs/metrics.md is read by some panel, so no documented family (the series
/// guard, client errors, refused requests, ...) goes unseen on the dashboards.
#[test]
fn every_documented_family_is_on_a_dashboard() {
    let docs = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let exprs: Vec<String> = committed()
        .iter()
        .flat_map(|(_, d)| queries(d))
        .map(|q| q.expr)
        .collect();
    let missing: Vec<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(n, _)| n))
        .filter(|n| n.starts_with("kafka_"))
        .filter(|n| !exprs.iter().any(|e| e.contains(n)))
        .collect();
    assert!(missing.is_empty(), "documented families on no dashboard: {missing:?}");
}

/// A panel that reads a family the defaults serve only in part (opt-in, or problems only) says
/// so in its description, naming `global.metrics.opt_in` or the problems-only rule, so that a
/// user who sees it empty knows why and what to change.
#[test]
fn panels_beyond_the_defaults_say_what_they_need() {
    let mut problems = Vec::new();
    for (file, d) in committed() {
        for q in queries(&d) {
            let needs = dashboards_support::beyond_defaults(&q.expr);
            let said = q.description.contains("global.metrics.opt_in") || q.description.contains("problem");
            if !needs.is_empty() && !said {
                problems.push(format!(
                    "{file} {:?}: reads {needs:?}; its description must say what it needs",
                    q.panel
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(dashboards_support::beyond_defaults("max(kafka_partition_leader{a=\"b\"})") == ["kafka_partition_leader"]);
    assert!(
        dashboards_support::beyond_defaults("kafka_partition_leader_partitions + kafka_broker_leader_partitions")
            .is_empty()
    );
}
