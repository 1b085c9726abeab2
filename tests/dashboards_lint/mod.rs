//! The PromQL checks of tests/dashboards.rs: every panel query parses with a real PromQL
//! parser, reads only documented or recorded metrics, uses `$__rate_interval` in its rates,
//! applies rate() only to counters and scans no fixed window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};

use crate::alerts_support;
use crate::dashboards_support::{root, substitute};

/// Functions that treat their input as a counter.
const COUNTER_FUNCTIONS: [&str; 4] = ["rate", "irate", "increase", "resets"];

/// Series that are counters: `_total` families and the histogram series.
fn is_counter_series(name: &str) -> bool {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Functions over a range that must use Grafana's `$__rate_interval`.
const RATE_FUNCTIONS: [&str; 9] = [
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "resets",
    "changes",
];

/// A range no dashboard uses on its own: stands in for `$__rate_interval` while parsing, so
/// the AST tells which ranges came from it.
const RATE_INTERVAL_SENTINEL: Duration = Duration::from_secs(7777);

/// Collects metric names and range problems of one expression.
#[derive(Default)]
struct Walker {
    metrics: BTreeSet<String>,
    problems: Vec<String>,
}

impl Walker {
    fn check_range(&mut self, func: &str, arg: &Expr) {
        let Expr::MatrixSelector(m) = arg else {
            self.problems.push(format!(
                "{func}(): argument is not a range selector (subqueries are not allowed)"
            ));
            return;
        };
        let name = m.vs.name.clone().unwrap_or_default();
        // Offsets and other gauges go back on a replay; rate() would read that as a counter
        // reset and spike. Their slope is deriv().
        if COUNTER_FUNCTIONS.contains(&func) && !is_counter_series(&name) {
            self.problems.push(format!(
                "{func}({name}): a gauge; use deriv() (clamped) or a difference"
            ));
        }
        if RATE_FUNCTIONS.contains(&func) {
            if m.range != RATE_INTERVAL_SENTINEL {
                self.problems
                    .push(format!("{func}({name}[...]) must use [$__rate_interval]"));
            }
        } else if func.ends_with("_over_time") {
            // A fixed window (an SLO's 30 days) is scanned on every refresh: the rule pack
            // records it instead (`<record>30d`).
            if m.range != RATE_INTERVAL_SENTINEL {
                self.problems.push(format!(
                    "{func}({name}[...]): fixed windows belong in recording rules; use [$__rate_interval]"
                ));
            }
        } else {
            self.problems.push(format!("{func}(): unexpected range function"));
        }
    }
}

impl ExprVisitor for Walker {
    type Error = String;

    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        match e {
            Expr::VectorSelector(v) => match &v.name {
                Some(n) => {
                    self.metrics.insert(n.clone());
                }
                None => self.problems.push(format!("selector {v} has no metric name")),
            },
            Expr::MatrixSelector(m) => {
                if let Some(n) = &m.vs.name {
                    self.metrics.insert(n.clone());
                }
            }
            Expr::Subquery(_) => self.problems.push("subqueries are not allowed".into()),
            Expr::Call(c) => {
                for a in &c.args.args {
                    if matches!(**a, Expr::MatrixSelector(_) | Expr::Subquery(_)) {
                        self.check_range(c.func.name, a);
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// Values standing in for the Grafana variables while parsing.
pub fn parse_values() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("job", "j".to_string()),
        ("env", "e".to_string()),
        ("cluster", "c".to_string()),
        ("topic", "t".to_string()),
        ("group", "g".to_string()),
        ("__rate_interval", format!("{}s", RATE_INTERVAL_SENTINEL.as_secs())),
    ])
}

/// Metrics the dashboards may read: the catalogue (docs/metrics.md, histograms with their
/// series suffixes), the rule pack's recording rules, and the series Prometheus itself makes.
pub fn readable_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("| `") else { continue };
        let Some((name, cols)) = rest.split_once('`') else {
            continue;
        };
        if !name.starts_with("kafka_") {
            continue;
        }
        names.insert(name.to_string());
        if cols.split('|').nth(1).is_some_and(|t| t.trim() == "histogram") {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        }
    }
    let groups = alerts_support::groups_of(&alerts_support::rule_files());
    for g in &groups {
        for r in g["rules"].as_sequence().into_iter().flatten() {
            if let Some(rec) = r["record"].as_str() {
                names.insert(rec.to_string());
            }
        }
    }
    // `up` from the scrape, `ALERTS` from rule evaluation.
    names.insert("up".into());
    names.insert("ALERTS".into());
    names
}

/// Parses `expr` (variables substituted) and returns the metrics it reads, or the problems.
pub fn analyse(expr: &str) -> Result<BTreeSet<String>, Vec<String>> {
    let text = substitute(expr, &parse_values()).map_err(|e| vec![e])?;
    let ast = parser::parse(&text).map_err(|e| vec![format!("does not parse: {e}")])?;
    let mut w = Walker::default();
    walk_expr(&mut w, &ast).map_err(|e| vec![e])?;
    if w.problems.is_empty() {
        Ok(w.metrics)
    } else {
        Err(w.problems)
    }
}
