//! The alert rule pack: its generator and what `tests/alerts.rs` and `tests/alerts_e2e.rs` share.
//!
//! The pack's source is `alerts/config.yml` (every threshold, selector, duration and link) and
//! the templates in `alerts/src/`. Each template is YAML with `${dotted.config.key}`
//! placeholders; `alerts/src/kafka-slo.yml` instead lists SLOs, which are expanded into
//! recording rules per window and multiwindow multi-burn-rate alerts. The generator writes
//! `alerts/<template>.rules.yml` and `deploy/kubernetes/prometheusrule.yaml`, adds every alert's
//! `runbook_url`, and refuses unknown placeholders and unused configuration keys.
//! `UPDATE_ALERTS=1 cargo test --test alerts` (`scripts/gen-alerts.sh`) rewrites the files.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::{Mapping, Value};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of the PrometheusRule manifest, relative to the root.
pub const MANIFEST: &str = "deploy/kubernetes/prometheusrule.yaml";

/// The template that lists SLOs rather than rules.
const SLO_TEMPLATE: &str = "kafka-slo.yml";

/// One generated file: path relative to the root, and its text.
#[derive(Debug, Clone)]
pub struct Generated {
    pub path: String,
    pub text: String,
}

/// Generates the pack from `alerts/config.yml` with `overlay` (YAML, deep-merged over the
/// configuration; mappings merge, everything else replaces) and the templates.
pub fn generate(overlay: Option<&str>) -> Result<Vec<Generated>, String> {
    let dir = root().join("alerts");
    let mut config = load_yaml(&dir.join("config.yml"))?;
    if let Some(o) = overlay {
        let o: Value = serde_yaml::from_str(o).map_err(|e| format!("overlay: {e}"))?;
        merge(&mut config, o);
    }
    let mut vars = HashMap::new();
    flatten("", &config, &mut vars);
    let mut used: BTreeSet<String> = BTreeSet::new();
    derive_vars(&mut vars, &mut used)?;

    let mut templates: Vec<PathBuf> = std::fs::read_dir(dir.join("src"))
        .map_err(|e| format!("alerts/src: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    templates.sort();

    let runbook_base = var(&vars, "links.runbook_base_url", &mut used)?;
    let mut out = Vec::new();
    let mut all_groups = Vec::new();
    for t in &templates {
        let name = t.file_name().unwrap().to_string_lossy().to_string();
        let raw = std::fs::read_to_string(t).map_err(|e| format!("{}: {e}", t.display()))?;
        let text = substitute(&raw, &vars, &mut used).map_err(|e| format!("alerts/src/{name}: {e}"))?;
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| format!("alerts/src/{name}: {e}"))?;
        let mut groups = if name == SLO_TEMPLATE {
            expand_slos(&doc, &config, &mut used).map_err(|e| format!("alerts/src/{name}: {e}"))?
        } else {
            doc.get("groups")
                .and_then(Value::as_sequence)
                .cloned()
                .ok_or_else(|| format!("alerts/src/{name}: no `groups` list"))?
        };
        for g in &mut groups {
            add_runbook_urls(g, &runbook_base)?;
        }
        let mut file = Mapping::new();
        file.insert("groups".into(), Value::Sequence(groups.clone()));
        all_groups.extend(groups);
        let stem = name.trim_end_matches(".yml");
        out.push(Generated {
            path: format!("alerts/{stem}.rules.yml"),
            text: format!(
                "{}{}",
                header(&format!("alerts/src/{name}")),
                to_yaml(&Value::Mapping(file))?
            ),
        });
    }

    out.push(Generated {
        path: MANIFEST.to_string(),
        text: format!(
            "{}{}",
            header("alerts/src/*.yml"),
            to_yaml(&manifest(&config, all_groups, &mut used)?)?
        ),
    });

    let unused: Vec<&String> = vars.keys().filter(|k| !used.contains(*k)).collect();
    if !unused.is_empty() {
        let mut unused: Vec<_> = unused.into_iter().cloned().collect();
        unused.sort();
        return Err(format!("alerts/config.yml keys used by no template: {unused:?}"));
    }
    Ok(out)
}

fn header(source: &str) -> String {
    format!(
        "# Generated from alerts/config.yml and {source} by scripts/gen-alerts.sh. Do not edit:\n\
         # change those and regenerate (tests/alerts.rs fails while this file is stale).\n"
    )
}

fn load_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn to_yaml(v: &Value) -> Result<String, String> {
    serde_yaml::to_string(v).map_err(|e| e.to_string())
}

/// Deep merge: mappings merge key by key, anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Every leaf of the configuration as `a.b.c` → text; sequences and mappings below a sequence
/// are leaves too (the generator reads them itself, they cannot be placeholders).
fn flatten(prefix: &str, v: &Value, out: &mut HashMap<String, String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.to_string());
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        _ => {
            out.insert(prefix.to_string(), String::new());
        }
    }
}

fn var(vars: &HashMap<String, String>, key: &str, used: &mut BTreeSet<String>) -> Result<String, String> {
    used.insert(key.to_string());
    vars.get(key)
        .cloned()
        .ok_or_else(|| format!("alerts/config.yml has no `{key}`"))
}

/// Values computed from the configuration, available as placeholders too.
fn derive_vars(vars: &mut HashMap<String, String>, used: &mut BTreeSet<String>) -> Result<(), String> {
    // The latency SLI reads one bucket of the end-to-end histogram. Prometheus 2 stores `le` as
    // exposed, Prometheus 3 in float form ("1.0"); the matcher accepts both spellings.
    let t = var(vars, "slo.delivery_latency.threshold_seconds", used)?;
    let secs: f64 = t
        .parse()
        .map_err(|_| format!("slo.delivery_latency.threshold_seconds: not a number: {t}"))?;
    if !kafka_slo_exporter::probe::LATENCY_BUCKETS.contains(&secs) {
        return Err(format!(
            "slo.delivery_latency.threshold_seconds {secs} is not a bucket of kafka_probe_end_to_end_latency_seconds {:?}",
            kafka_slo_exporter::probe::LATENCY_BUCKETS
        ));
    }
    let le = if secs.fract() == 0.0 {
        format!("le=~\"{secs:.0}|{secs:.0}\\\\.0\"")
    } else {
        format!("le=\"{secs}\"")
    };
    vars.insert("slo.delivery_latency.le".into(), le.clone());
    used.insert("slo.delivery_latency.le".into());
    Ok(())
}

/// Replaces `${key}` with configuration values; an unknown key is an error.
fn substitute(text: &str, vars: &HashMap<String, String>, used: &mut BTreeSet<String>) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_.]+)\}").unwrap();
    let mut err = None;
    let out = re.replace_all(text, |c: &regex::Captures| match var(vars, &c[1], used) {
        Ok(v) => v,
        Err(e) => {
            err.get_or_insert(e);
            String::new()
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

fn add_runbook_urls(group: &mut Value, base: &str) -> Result<(), String> {
    let rules = group
        .get_mut("rules")
        .and_then(Value::as_sequence_mut)
        .ok_or("a group without rules")?;
    for r in rules {
        let Some(name) = r.get("alert").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let ann = r
            .get_mut("annotations")
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| format!("{name}: no annotations"))?;
        // summary, description, runbook_url, then the rest (dashboard_url).
        let mut ordered = Mapping::new();
        for k in ["summary", "description"] {
            if let Some(v) = ann.remove(k) {
                ordered.insert(k.into(), v);
            }
        }
        ordered.insert("runbook_url".into(), format!("{base}/{name}.md").into());
        for (k, v) in std::mem::take(ann) {
            ordered.insert(k, v);
        }
        *ann = ordered;
    }
    Ok(())
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string `{key}`"))
}

fn duration_list(config: &Value, key: &str) -> Result<Vec<(String, String, f64)>, String> {
    let seq = config
        .get("slo")
        .and_then(|s| s.get(key))
        .and_then(Value::as_sequence)
        .ok_or_else(|| format!("slo.{key} must be a list of {{long, short, factor}}"))?;
    seq.iter()
        .map(|w| {
            let long = str_field(w, "long")?.to_string();
            let short = str_field(w, "short")?.to_string();
            let factor = w
                .get("factor")
                .and_then(Value::as_f64)
                .ok_or("missing number `factor`")?;
            Ok((long, short, factor))
        })
        .collect()
}

/// A rule mapping from (key, value) pairs.
fn rule(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(k.into(), v);
    }
    Value::Mapping(m)
}

fn fmt_num(x: f64) -> String {
    let mut s = format!("{x}");
    if s.contains('e') {
        s = format!("{x:.12}").trim_end_matches('0').to_string();
    }
    s
}

/// Expands the SLO template into rule groups.
fn expand_slos(doc: &Value, config: &Value, used: &mut BTreeSet<String>) -> Result<Vec<Value>, String> {
    let page = duration_list(config, "page")?;
    let ticket = duration_list(config, "ticket")?;
    used.insert("slo.page".into());
    used.insert("slo.ticket".into());
    let page_for = str_field(&config["slo"], "page_for")?.to_string();
    let ticket_for = str_field(&config["slo"], "ticket_for")?.to_string();
    used.insert("slo.page_for".into());
    used.insert("slo.ticket_for".into());
    let mut windows: Vec<String> = Vec::new();
    for (l, s, _) in page.iter().chain(&ticket) {
        for w in [s, l] {
            if !windows.contains(w) {
                windows.push(w.clone());
            }
        }
    }
    windows.sort_by_key(|w| duration_seconds(w).unwrap_or(u64::MAX));
    for w in &windows {
        duration_seconds(w).ok_or_else(|| format!("not a duration: {w}"))?;
    }

    let budget = budget_spec(config, used)?;
    let slos = doc.get("slos").and_then(Value::as_sequence).ok_or("no `slos` list")?;
    let mut groups = Vec::new();
    for slo in slos {
        let name = str_field(slo, "name")?;
        let objective: f64 = slo
            .get("objective")
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{name}: objective must be a number"))?;
        if !(0.0..1.0).contains(&objective) {
            return Err(format!("{name}: objective {objective} must be in [0, 1)"));
        }
        let record = str_field(slo, "record")?;
        let sli = str_field(slo, "errors")?.trim_end();
        let alert = str_field(slo, "alert")?;
        let mut rules = vec![rule(vec![
            ("record", "kafka_slo:objective:ratio".into()),
            ("expr", format!("vector({})", fmt_num(objective)).into()),
            ("labels", rule(vec![("slo", name.into())])),
        ])];
        if let Some(extra) = slo.get("rules").and_then(Value::as_sequence) {
            rules.extend(extra.iter().cloned());
        }
        if let Some(t) = slo.get("per_group_thresholds") {
            // Right after the rule they are derived from, before the rules that use them.
            let source = str_field(t, "source")?;
            let at = rules
                .iter()
                .position(|r| r.get("record").and_then(Value::as_str) == Some(source))
                .ok_or_else(|| format!("{name}: no rule records {source}"))?;
            let thresholds = group_thresholds(t, config, used).map_err(|e| format!("{name}: {e}"))?;
            rules.splice(at + 1..at + 1, thresholds);
        }
        for w in &windows {
            rules.push(rule(vec![
                ("record", format!("{record}{w}").into()),
                ("expr", format!("{}\n", sli.replace("$window", w)).into()),
            ]));
        }
        let allowed = format!("(1 - {})", fmt_num(objective));
        for (severity, pairs, for_) in [("critical", &page, &page_for), ("warning", &ticket, &ticket_for)] {
            let mut expr = String::new();
            let mut text = Vec::new();
            for (i, (long, short, factor)) in pairs.iter().enumerate() {
                if i > 0 {
                    expr.push_str("or\n");
                }
                let f = fmt_num(*factor);
                let _ = write!(
                    expr,
                    "(\n  {record}{long} > ({f} * {allowed})\n  and\n  {record}{short} > ({f} * {allowed})\n)\n"
                );
                text.push(format!("{f}x over {long} and {short}"));
            }
            let mut ann = Mapping::new();
            ann.insert("summary".into(), str_field(slo, "summary")?.into());
            let desc = str_field(slo, "description")?
                .replace("$burn", &text.join(", or "))
                .replace("$objective", &format!("{}%", fmt_num(objective * 100.0)));
            ann.insert("description".into(), desc.trim_end().to_string().into());
            if let Some(d) = slo.get("dashboard_url") {
                ann.insert("dashboard_url".into(), d.clone());
            }
            rules.push(rule(vec![
                ("alert", alert.into()),
                ("expr", expr.into()),
                ("for", for_.as_str().into()),
                (
                    "labels",
                    rule(vec![("severity", severity.into()), ("slo", name.into())]),
                ),
                ("annotations", Value::Mapping(ann)),
            ]));
        }
        groups.push(rule(vec![
            ("name", format!("kafka-slo-{}", name.replace('_', "-")).into()),
            ("rules", Value::Sequence(rules)),
        ]));
        groups.push(budget_group(name, record, &windows[0], &budget)?);
    }
    Ok(groups)
}

/// The error ratio over the whole budget window (`slo.budget.window`, 30 days), recorded in a
/// group of its own evaluated every `slo.budget.interval`, so that dashboards read one recorded
/// sample instead of scanning 30 days of the short-window ratio on every refresh.
fn budget_group(name: &str, record: &str, shortest: &str, budget: &BudgetSpec) -> Result<Value, String> {
    Ok(rule(vec![
        ("name", format!("kafka-slo-{}-budget", name.replace('_', "-")).into()),
        ("interval", budget.interval.as_str().into()),
        (
            "rules",
            Value::Sequence(vec![rule(vec![
                ("record", format!("{record}{}", budget.window).into()),
                (
                    "expr",
                    format!("avg_over_time({record}{shortest}[{}])\n", budget.window).into(),
                ),
            ])]),
        ),
    ]))
}

/// `slo.budget`: the window the objectives are defined over and how often its ratio is recorded.
struct BudgetSpec {
    window: String,
    interval: String,
}

fn budget_spec(config: &Value, used: &mut BTreeSet<String>) -> Result<BudgetSpec, String> {
    let b = config
        .get("slo")
        .and_then(|s| s.get("budget"))
        .ok_or("alerts/config.yml has no `slo.budget`")?;
    used.insert("slo.budget.window".into());
    used.insert("slo.budget.interval".into());
    let spec = BudgetSpec {
        window: str_field(b, "window")?.to_string(),
        interval: str_field(b, "interval")?.to_string(),
    };
    for d in [&spec.window, &spec.interval] {
        duration_seconds(d).ok_or_else(|| format!("slo.budget: not a duration: {d}"))?;
    }
    Ok(spec)
}

/// The recording rule giving every consumer group its freshness threshold: the first override
/// whose pattern matches the group, else the default (`or` keeps the first match).
fn group_thresholds(spec: &Value, config: &Value, used: &mut BTreeSet<String>) -> Result<Vec<Value>, String> {
    let source = str_field(spec, "source")?;
    let record = str_field(spec, "record")?;
    let key = str_field(spec, "config")?;
    let cfg = key
        .split('.')
        .try_fold(config, |v, k| v.get(k))
        .ok_or_else(|| format!("alerts/config.yml has no `{key}`"))?;
    used.insert(format!("{key}.default_threshold_seconds"));
    used.insert(format!("{key}.overrides"));
    let default = cfg
        .get("default_threshold_seconds")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{key}.default_threshold_seconds must be a number"))?;
    let mut terms = Vec::new();
    let overrides = cfg
        .get("overrides")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for o in &overrides {
        let groups = str_field(o, "groups")?;
        regex::Regex::new(groups).map_err(|e| format!("{key}.overrides: {groups}: {e}"))?;
        let t = o
            .get("threshold_seconds")
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{key}.overrides: threshold_seconds must be a number"))?;
        let quoted = groups.replace('\\', "\\\\").replace('"', "\\\"");
        terms.push(format!("(0 * {source}{{group=~\"{quoted}\"}} + {})", fmt_num(t)));
    }
    terms.push(format!("(0 * {source} + {})", fmt_num(default)));
    Ok(vec![rule(vec![
        ("record", record.into()),
        ("expr", format!("{}\n", terms.join("\nor\n")).into()),
    ])])
}

fn manifest(config: &Value, groups: Vec<Value>, used: &mut BTreeSet<String>) -> Result<Value, String> {
    let pr = config
        .get("prometheusrule")
        .ok_or("alerts/config.yml has no `prometheusrule`")?;
    let name = str_field(pr, "name")?;
    used.insert("prometheusrule.name".into());
    used.insert("prometheusrule.labels".into());
    let mut meta = Mapping::new();
    meta.insert("name".into(), name.into());
    if let Some(l) = pr.get("labels") {
        meta.insert("labels".into(), l.clone());
        if let Some(m) = l.as_mapping() {
            for k in m.keys() {
                used.insert(format!("prometheusrule.labels.{}", k.as_str().unwrap_or_default()));
            }
        }
    }
    let mut spec = Mapping::new();
    spec.insert("groups".into(), Value::Sequence(groups));
    Ok(rule(vec![
        ("apiVersion", "monitoring.coreos.com/v1".into()),
        ("kind", "PrometheusRule".into()),
        ("metadata", Value::Mapping(meta)),
        ("spec", Value::Mapping(spec)),
    ]))
}

/// Seconds of a Prometheus duration such as `5m`, `1h30m`, `3d`.
pub fn duration_seconds(d: &str) -> Option<u64> {
    let re = regex::Regex::new(r"^((\d+)(ms|s|m|h|d|w|y))+$").unwrap();
    if !re.is_match(d) {
        return None;
    }
    let part = regex::Regex::new(r"(\d+)(ms|s|m|h|d|w|y)").unwrap();
    let mut total_ms: u64 = 0;
    for c in part.captures_iter(d) {
        let n: u64 = c[1].parse().ok()?;
        let unit = match &c[2] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => 31_536_000_000,
        };
        total_ms += n * unit;
    }
    Some(total_ms / 1000)
}

/// The generated rule files (`alerts/*.rules.yml`), sorted.
pub fn rule_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("alerts"))
        .expect("alerts/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .collect();
    v.sort();
    v
}

/// Every rule group of the given rule files, in order.
pub fn groups_of(files: &[PathBuf]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| {
            let v = load_yaml(f).unwrap_or_else(|e| panic!("{e}"));
            v["groups"].as_sequence().cloned().unwrap_or_default()
        })
        .collect()
}

/// Every alerting rule of the given groups.
pub fn alerts_of(groups: &[Value]) -> Vec<Value> {
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// Runs a command; returns (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install with scripts/setup.sh)"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
