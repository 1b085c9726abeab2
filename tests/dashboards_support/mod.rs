//! The Grafana dashboards: their generator and what `tests/dashboards.rs` and
//! `tests/dashboards_e2e.rs` share.
//!
//! Each dashboard is described by a short YAML spec in `dashboards/src/` (title, uid,
//! variables, rows of panels with their PromQL); the generator expands it into the Grafana
//! import format (`__inputs`, `__requires`, the `datasource`/`cluster`/`topic`/`group`
//! variables, panel ids, layout, data links) in `dashboards/<uid>.json`. The specs reject
//! unknown keys, so a typo is an error rather than a silently ignored option.
//! `UPDATE_DASHBOARDS=1 cargo test --test dashboards` (`scripts/gen-dashboards.sh`) rewrites
//! the files.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Value};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Grafana dashboard schema version the files are written in (Grafana 10.3+; Grafana
/// migrates it forward on load).
pub const SCHEMA_VERSION: u64 = 39;

/// The tag every dashboard carries; the dashboards link to each other through it.
pub const TAG: &str = "kafka-slo";

/// The datasource reference every panel, target and query variable uses.
pub fn datasource_ref() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// The template variables a spec may ask for, with the query filling each. `job` and `env`
/// come first on every dashboard: two environments (or two Prometheus jobs) may name a cluster
/// alike, and without them their series would merge.
pub const VARIABLES: [(&str, &str, &str); 5] = [
    ("job", "Job", "label_values(kafka_slo_exporter_cluster_up, job)"),
    (
        "env",
        "Environment",
        "label_values(kafka_slo_exporter_cluster_up{job=~\"$job\"}, env)",
    ),
    (
        "cluster",
        "Cluster",
        "label_values(kafka_slo_exporter_cluster_up{job=~\"$job\", env=~\"$env\"}, cluster)",
    ),
    (
        "topic",
        "Topic",
        "label_values(kafka_topic_partitions{job=~\"$job\", env=~\"$env\", cluster=~\"$cluster\"}, topic)",
    ),
    (
        "group",
        "Consumer group",
        "label_values(kafka_consumergroup_info{job=~\"$job\", env=~\"$env\", cluster=~\"$cluster\"}, group)",
    ),
];

/// Variables every dashboard has, whatever its spec lists.
const SCOPE_VARIABLES: [&str; 2] = ["job", "env"];

/// The cluster matcher of a spec's queries, and what it becomes: the same cluster of the
/// selected job and environment. Series without a cluster (the exporter process's own) select
/// `job=~"$job"` in the spec.
const CLUSTER_MATCHER: &str = r#"cluster=~"$cluster""#;
const SCOPED_CLUSTER_MATCHER: &str = r#"job=~"$job", env=~"$env", cluster=~"$cluster""#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    uid: String,
    title: String,
    description: String,
    /// Template variables besides `datasource`, from [`VARIABLES`].
    variables: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    title: String,
    panels: Vec<PanelSpec>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Stat,
    Timeseries,
    Table,
    Bargauge,
}

impl Kind {
    fn plugin(self) -> (&'static str, &'static str) {
        match self {
            Kind::Stat => ("stat", "Stat"),
            Kind::Timeseries => ("timeseries", "Time series"),
            Kind::Table => ("table", "Table"),
            Kind::Bargauge => ("bargauge", "Bar gauge"),
        }
    }

    fn size(self) -> (u64, u64) {
        match self {
            Kind::Stat => (4, 4),
            Kind::Timeseries => (12, 8),
            Kind::Table => (12, 8),
            Kind::Bargauge => (8, 8),
        }
    }

    /// Tables and bar gauges show the current value (instant queries); the others a range.
    fn instant(self) -> bool {
        matches!(self, Kind::Table | Kind::Bargauge)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PanelSpec {
    title: String,
    #[serde(rename = "type")]
    kind: Kind,
    description: String,
    unit: String,
    targets: Vec<TargetSpec>,
    width: Option<u64>,
    height: Option<u64>,
    /// Colour below the first step (default green).
    base: Option<String>,
    /// Threshold steps, `"<value> <colour>"`.
    #[serde(default)]
    thresholds: Vec<String>,
    #[serde(default)]
    mappings: Vec<MappingSpec>,
    /// Data links to another dashboard, passing labels of the clicked series as variables.
    #[serde(default)]
    links: Vec<LinkSpec>,
    /// A panel link to another dashboard with the current variables.
    drilldown: Option<String>,
    decimals: Option<u64>,
    min: Option<f64>,
    max: Option<f64>,
    #[serde(default)]
    stack: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    expr: String,
    legend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingSpec {
    value: String,
    text: String,
    color: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSpec {
    title: String,
    dashboard: String,
    /// Variables set from the clicked series' labels (besides `cluster`, always passed).
    #[serde(default)]
    vars: Vec<String>,
}

/// One generated dashboard: path relative to the root, and its text.
#[derive(Debug, Clone)]
pub struct Generated {
    pub path: String,
    pub text: String,
}

/// Spec files in `dashboards/src/`, sorted.
pub fn spec_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards/src"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "yml"));
    v.sort();
    v
}

/// Generates every dashboard from its spec.
pub fn generate() -> Result<Vec<Generated>, String> {
    let files = spec_files();
    if files.is_empty() {
        return Err("dashboards/src holds no *.yml spec".into());
    }
    let mut sources = Vec::new();
    for f in &files {
        let name = format!("dashboards/src/{}", f.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(f).map_err(|e| format!("{name}: {e}"))?;
        sources.push((name, text));
    }
    generate_from(&sources)
}

/// Generates dashboards from `(file name, spec text)` pairs; links may point at any of them.
pub fn generate_from(sources: &[(String, String)]) -> Result<Vec<Generated>, String> {
    let mut specs = Vec::new();
    for (name, text) in sources {
        let spec: Spec = serde_yaml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        specs.push((name, spec));
    }
    // Titles by uid, for link texts.
    let uids: BTreeMap<String, String> = specs.iter().map(|(_, s)| (s.uid.clone(), s.title.clone())).collect();
    if uids.len() != specs.len() {
        return Err("two specs share a uid".into());
    }
    let mut out = Vec::new();
    for (name, spec) in &specs {
        let dash = dashboard(spec, &uids).map_err(|e| format!("{name}: {e}"))?;
        let text = serde_json::to_string_pretty(&dash).map_err(|e| e.to_string())? + "\n";
        out.push(Generated {
            path: format!("dashboards/{}.json", spec.uid),
            text,
        });
    }
    Ok(out)
}

fn dashboard(spec: &Spec, uids: &BTreeMap<String, String>) -> Result<Value, String> {
    for v in &spec.variables {
        if !VARIABLES.iter().any(|(n, _, _)| n == v) {
            return Err(format!("variables: unknown variable {v:?}"));
        }
    }
    if !spec.variables.iter().any(|v| v == "cluster") {
        return Err("variables: every dashboard needs `cluster`".into());
    }
    let mut panels = Vec::new();
    let mut plugins: BTreeMap<&str, &str> = BTreeMap::new();
    let mut id = 0u64;
    let mut y = 0u64;
    for row in &spec.rows {
        id += 1;
        panels.push(json!({
            "collapsed": false,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "id": id,
            "panels": [],
            "title": row.title,
            "type": "row",
        }));
        y += 1;
        let (mut x, mut line_h) = (0u64, 0u64);
        for p in &row.panels {
            let (dw, dh) = p.kind.size();
            let (w, h) = (p.width.unwrap_or(dw), p.height.unwrap_or(dh));
            if w == 0 || w > 24 {
                return Err(format!("panel {:?}: width {w} outside 1..=24", p.title));
            }
            if x + w > 24 {
                y += line_h;
                x = 0;
                line_h = 0;
            }
            id += 1;
            let (plugin, plugin_name) = p.kind.plugin();
            plugins.insert(plugin, plugin_name);
            panels.push(panel(p, id, json!({"h": h, "w": w, "x": x, "y": y}), uids)?);
            x += w;
            line_h = line_h.max(h);
        }
        y += line_h;
    }
    let mut requires = vec![
        json!({"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.3.0"}),
        json!({"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}),
    ];
    for (id, name) in plugins {
        requires.push(json!({"type": "panel", "id": id, "name": name, "version": ""}));
    }
    let mut templating = vec![json!({
        "current": {"selected": false, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
        "hide": 0,
        "includeAll": false,
        "label": "Data source",
        "multi": false,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": false,
        "type": "datasource",
    })];
    for (name, label, query) in VARIABLES {
        if !spec.variables.iter().any(|v| v == name) && !SCOPE_VARIABLES.contains(&name) {
            continue;
        }
        templating.push(json!({
            "allValue": ".*",
            "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
            "datasource": datasource_ref(),
            "definition": query,
            "hide": 0,
            "includeAll": true,
            "label": label,
            "multi": true,
            "name": name,
            "options": [],
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": false,
            "sort": 1,
            "type": "query",
        }));
    }
    Ok(json!({
        "__inputs": [{
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes kafka-slo-exporter and evaluates its rule pack (alerts/).",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }],
        "__requires": requires,
        "annotations": {"list": [{
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }]},
        "description": spec.description,
        "editable": true,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": null,
        "links": [{
            "asDropdown": true,
            "icon": "external link",
            "includeVars": true,
            "keepTime": true,
            "tags": [TAG],
            "targetBlank": false,
            "title": "Kafka SLO dashboards",
            "tooltip": "",
            "type": "dashboards",
            "url": "",
        }],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["kafka", TAG],
        "templating": {"list": templating},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": spec.title,
        "uid": spec.uid,
        "version": 1,
        "weekStart": "",
    }))
}

/// The URL of dashboard `uid` keeping the time range and data source; `vars` are
/// `(variable, value expression)` pairs.
fn dashboard_url(uid: &str, vars: &[(String, String)]) -> String {
    let mut url = format!("/d/{uid}/?${{datasource:queryparam}}&${{__url_time_range}}");
    for (k, v) in vars {
        url.push_str(&format!("&var-{k}={v}"));
    }
    url
}

fn panel(p: &PanelSpec, id: u64, grid: Value, uids: &BTreeMap<String, String>) -> Result<Value, String> {
    let what = format!("panel {:?}", p.title);
    if p.description.trim().is_empty() || p.unit.trim().is_empty() {
        return Err(format!("{what}: needs a description and a unit"));
    }
    if p.targets.is_empty() {
        return Err(format!("{what}: no targets"));
    }
    let instant = p.kind.instant();
    let targets: Vec<Value> = p
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "datasource": datasource_ref(),
                "editorMode": "code",
                "expr": t.expr.trim().replace(CLUSTER_MATCHER, SCOPED_CLUSTER_MATCHER),
                "format": if p.kind == Kind::Table { "table" } else { "time_series" },
                "instant": instant,
                "legendFormat": t.legend.clone().unwrap_or_else(|| "__auto".into()),
                "range": !instant,
                "refId": ((b'A' + i as u8) as char).to_string(),
            })
        })
        .collect();
    let mut steps = vec![json!({"color": p.base.clone().unwrap_or_else(|| "green".into()), "value": null})];
    for s in &p.thresholds {
        let (v, c) = s
            .split_once(' ')
            .ok_or_else(|| format!("{what}: threshold {s:?} is not \"<value> <colour>\""))?;
        let v: f64 = v.parse().map_err(|_| format!("{what}: threshold value {v:?}"))?;
        steps.push(json!({"color": c, "value": v}));
    }
    let mappings: Vec<Value> = if p.mappings.is_empty() {
        Vec::new()
    } else {
        let options: serde_json::Map<String, Value> = p
            .mappings
            .iter()
            .enumerate()
            .map(|(i, m)| (m.value.clone(), json!({"color": m.color, "index": i, "text": m.text})))
            .collect();
        vec![json!({"type": "value", "options": options})]
    };
    // Series labels in tables are columns (`__data.fields`), elsewhere field labels.
    let label = |l: &str| {
        if p.kind == Kind::Table {
            format!("${{__data.fields.{l}}}")
        } else {
            format!("${{__field.labels.{l}}}")
        }
    };
    let mut links = Vec::new();
    for l in &p.links {
        if !uids.contains_key(&l.dashboard) {
            return Err(format!("{what}: link to unknown dashboard {:?}", l.dashboard));
        }
        let mut pass = vec![("cluster".to_string(), label("cluster"))];
        pass.extend(l.vars.iter().map(|v| (v.clone(), label(v))));
        links.push(json!({"targetBlank": false, "title": l.title, "url": dashboard_url(&l.dashboard, &pass)}));
    }
    let mut defaults = json!({
        "color": {"mode": if p.kind == Kind::Timeseries { "palette-classic" } else { "thresholds" }},
        "links": links,
        "mappings": mappings,
        "thresholds": {"mode": "absolute", "steps": steps},
        "unit": p.unit,
    });
    for (k, v) in [
        ("decimals", p.decimals.map(Value::from)),
        ("min", p.min.map(Value::from)),
        ("max", p.max.map(Value::from)),
    ] {
        if let Some(v) = v {
            defaults[k] = v;
        }
    }
    let options = match p.kind {
        Kind::Timeseries => {
            defaults["custom"] = json!({
                "drawStyle": "line",
                "fillOpacity": if p.stack { 40 } else { 10 },
                "lineWidth": 1,
                "showPoints": "never",
                "spanNulls": false,
                "stacking": {"group": "A", "mode": if p.stack { "normal" } else { "none" }},
            });
            json!({
                "legend": {"calcs": ["lastNotNull", "max"], "displayMode": "table", "placement": "bottom", "showLegend": true},
                "tooltip": {"mode": "multi", "sort": "desc"},
            })
        }
        Kind::Stat => json!({
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
            "textMode": "auto",
        }),
        Kind::Bargauge => json!({
            "displayMode": "gradient",
            "minVizHeight": 10,
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
            "showUnfilled": true,
        }),
        Kind::Table => {
            defaults["custom"] = json!({"align": "auto", "cellOptions": {"type": "color-text"}, "filterable": true});
            json!({"cellHeight": "sm", "footer": {"show": false}, "showHeader": true})
        }
    };
    let mut panel = json!({
        "datasource": datasource_ref(),
        "description": p.description.trim(),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": grid,
        "id": id,
        "options": options,
        "targets": targets,
        "title": p.title,
        "type": p.kind.plugin().0,
    });
    if p.kind == Kind::Table {
        // One row per series, the value columns named after their target's legend.
        let mut t = Vec::new();
        let mut names = serde_json::Map::new();
        for (i, target) in p.targets.iter().enumerate() {
            let column = target
                .legend
                .clone()
                .ok_or_else(|| format!("{what}: table targets need a legend (the column name)"))?;
            let value = if p.targets.len() > 1 {
                format!("Value #{}", (b'A' + i as u8) as char)
            } else {
                "Value".to_string()
            };
            names.insert(value, Value::from(column));
        }
        if p.targets.len() > 1 {
            t.push(json!({"id": "merge", "options": {}}));
        }
        t.push(json!({"id": "organize", "options": {"excludeByName": {"Time": true}, "renameByName": names}}));
        panel["transformations"] = Value::Array(t);
    }
    if let Some(d) = &p.drilldown {
        let title = uids
            .get(d)
            .ok_or_else(|| format!("{what}: drilldown to unknown dashboard {d:?}"))?;
        // `${cluster:queryparam}` carries every selected value.
        let url = dashboard_url(d, &[]) + "&${cluster:queryparam}";
        panel["links"] = json!([{"targetBlank": false, "title": format!("Open {title}"), "url": url}]);
    }
    Ok(panel)
}

/// The committed dashboards, `(file name, JSON)`, sorted.
pub fn committed() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&f).unwrap();
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("dashboards/{name}: invalid JSON: {e}"));
            (name, v)
        })
        .collect()
}

/// One PromQL expression of a dashboard: a panel target or a variable query.
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    pub panel: String,
    pub panel_type: String,
    pub ref_id: String,
    pub expr: String,
    /// The panel's description.
    pub description: String,
    /// Series labels the panel's data links pass on (`${__field.labels.x}`, `${__data.fields.x}`).
    pub link_labels: BTreeSet<String>,
}

/// Every panel target of `dash`.
pub fn queries(dash: &Value) -> Vec<Query> {
    let uid = dash["uid"].as_str().unwrap_or_default().to_string();
    let label = regex::Regex::new(r"\$\{__(?:field\.labels|data\.fields)\.([A-Za-z0-9_]+)\}").unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        let link_labels: BTreeSet<String> = p["fieldConfig"]["defaults"]["links"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["url"].as_str())
            .flat_map(|u| label.captures_iter(u).map(|c| c[1].to_string()).collect::<Vec<_>>())
            .collect();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                dashboard: uid.clone(),
                panel: p["title"].as_str().unwrap_or_default().to_string(),
                panel_type: p["type"].as_str().unwrap_or_default().to_string(),
                ref_id: t["refId"].as_str().unwrap_or_default().to_string(),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
                description: p["description"].as_str().unwrap_or_default().to_string(),
                link_labels: link_labels.clone(),
            });
        }
    }
    out
}

/// The families `expr` reads that serve less than their information by default (opt-in or
/// problems-only ones, per the exporter's catalog; a state set's current state is all of it).
pub fn beyond_defaults(expr: &str) -> Vec<&'static str> {
    use kafka_slo_exporter::families::{Preset, CATALOG};
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    CATALOG
        .iter()
        .filter(|(_, p)| matches!(p, Preset::Off | Preset::Problems))
        .map(|(n, _)| *n)
        .filter(|n| {
            expr.match_indices(n).any(|(i, _)| {
                !expr[..i].chars().next_back().is_some_and(ident)
                    && !expr[i + n.len()..].chars().next().is_some_and(ident)
            })
        })
        .collect()
}

/// Replaces Grafana variables (`$name`, `${name}`, `${name:format}`) in `expr` with `values`;
/// an unknown variable is an error.
pub fn substitute(expr: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)").unwrap();
    let mut err = None;
    let out = re.replace_all(expr, |c: &regex::Captures| {
        let name = c.get(1).or_else(|| c.get(2)).unwrap().as_str();
        match values.get(name) {
            Some(v) => v.clone(),
            None => {
                err = Some(format!("unknown variable ${name} in {expr:?}"));
                String::new()
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

/// `label_values(<selector>, <label>)` of a query variable, split.
pub fn label_values(query: &str) -> Option<(String, String)> {
    let inner = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (sel, label) = inner.rsplit_once(',')?;
    Some((sel.trim().to_string(), label.trim().to_string()))
}
