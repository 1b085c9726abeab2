//! The compliance report for on-call: `GET /api/v1/compliance` (JSON) and `GET /compliance`
//! (a self-contained HTML page). Both read the current snapshots only.
//!
//! Query parameters (both endpoints): `cluster=<name>` (repeatable), `rule=<rule>`
//! (repeatable: topics failing any of these rules), `failing=1` (only topics failing at least
//! one rule), `class=<class>` (repeatable).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::policy::{Rule, TopicCompliance, Verdict};
use crate::snapshot::ClusterSnapshot;

/// Which topics the caller wants to see.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    pub clusters: BTreeSet<String>,
    pub classes: BTreeSet<String>,
    pub rules: BTreeSet<Rule>,
    pub failing_only: bool,
}

impl Filter {
    /// Parses a URL query string. Unknown rule names are an error (so a typo does not silently
    /// show everything).
    pub fn parse(query: Option<&str>) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "cluster" => {
                    f.clusters.insert(v.into_owned());
                }
                "class" => {
                    f.classes.insert(v.into_owned());
                }
                "rule" if v.is_empty() => {}
                "rule" => {
                    let rule = Rule::parse(&v).ok_or_else(|| {
                        let all: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
                        format!("unknown rule {v:?}; expected one of {}", all.join(", "))
                    })?;
                    f.rules.insert(rule);
                }
                "failing" => f.failing_only = matches!(v.as_ref(), "1" | "true" | "yes" | "on"),
                _ => {}
            }
        }
        Ok(f)
    }

    fn keeps(&self, cluster: &str, t: &TopicCompliance) -> bool {
        if !self.clusters.is_empty() && !self.clusters.contains(cluster) {
            return false;
        }
        if !self.classes.is_empty() && !self.classes.contains(&t.class) {
            return false;
        }
        if !self.rules.is_empty() && !t.failing().any(|r| self.rules.contains(&r.rule)) {
            return false;
        }
        !self.failing_only || t.failing().next().is_some()
    }
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    generated_at: f64,
    policy: &'a str,
    clusters: Vec<ClusterReport<'a>>,
}

#[derive(Debug, Serialize)]
struct ClusterReport<'a> {
    cluster: &'a str,
    /// Unix time of the cycle the data comes from; `null` before the first cycle.
    collected_at: Option<f64>,
    topics_total: usize,
    topics_failing: usize,
    topics: Vec<&'a TopicCompliance>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn build<'a>(clusters: &'a [Arc<ClusterSnapshot>], policy: &'a str, filter: &Filter) -> Report<'a> {
    Report {
        generated_at: unix(SystemTime::now()),
        policy,
        clusters: clusters
            .iter()
            .filter(|c| filter.clusters.is_empty() || filter.clusters.contains(&c.name))
            .map(|c| {
                let all: &[TopicCompliance] = c.compliance.as_deref().map(Vec::as_slice).unwrap_or(&[]);
                ClusterReport {
                    cluster: &c.name,
                    collected_at: c.compliance.as_ref().and(c.built_at).map(unix),
                    topics_total: all.len(),
                    topics_failing: all.iter().filter(|t| t.failing().next().is_some()).count(),
                    topics: all.iter().filter(|t| filter.keeps(&c.name, t)).collect(),
                }
            })
            .collect(),
    }
}

/// The JSON report.
pub fn json(clusters: &[Arc<ClusterSnapshot>], policy: &str, filter: &Filter) -> String {
    serde_json::to_string_pretty(&build(clusters, policy, filter)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn query(filter: &Filter, rule: Option<Rule>, failing: bool) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for c in &filter.clusters {
        q.append_pair("cluster", c);
    }
    for c in &filter.classes {
        q.append_pair("class", c);
    }
    if let Some(r) = rule {
        q.append_pair("rule", r.as_str());
    }
    if failing {
        q.append_pair("failing", "1");
    }
    q.finish()
}

/// The HTML report: one table per cluster, failing rules highlighted, links to filter by rule.
pub fn html(clusters: &[Arc<ClusterSnapshot>], policy: &str, filter: &Filter) -> String {
    let report = build(clusters, policy, filter);
    let mut h = String::with_capacity(64 * 1024);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>ADR compliance — kafka-slo-exporter</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}",
        "table{border-collapse:collapse;margin-bottom:2rem;font-size:.9rem}",
        "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}",
        "th{background:#f3f3f3}.fail{background:#fde2e1;color:#8a1c14;font-weight:600}",
        ".pass{color:#1d6b2c}.unknown{color:#777}nav a{margin-right:.6rem}",
        "</style></head><body>\n<h1>ADR compliance</h1>\n"
    ));
    let _ = writeln!(
        h,
        "<p>Policy: <code>{}</code>. <a href=\"/api/v1/compliance?{}\">JSON</a> · <a href=\"/\">exporter</a></p>",
        esc(policy),
        esc(&query(filter, None, filter.failing_only))
    );
    filter_nav(&mut h, filter);
    for c in &report.clusters {
        let _ = writeln!(
            h,
            "<h2>Cluster {}</h2>\n<p>{} topics, <span class=\"{}\">{} failing</span>; showing {}.</p>",
            esc(c.cluster),
            c.topics_total,
            if c.topics_failing > 0 { "fail" } else { "pass" },
            c.topics_failing,
            c.topics.len()
        );
        if c.collected_at.is_none() {
            h.push_str("<p class=\"unknown\">No data yet: waiting for the first complete collection.</p>\n");
            continue;
        }
        let _ = writeln!(
            h,
            "<table data-cluster=\"{}\"><thead><tr><th>Topic</th><th>Class</th><th>Rule</th><th>Result</th><th>Actual</th><th>Required</th></tr></thead><tbody>",
            esc(c.cluster)
        );
        topic_rows(&mut h, &c.topics);
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

/// The links that filter the report: all topics, only failing ones, by failing rule.
fn filter_nav(h: &mut String, filter: &Filter) {
    h.push_str("<nav><strong>Show:</strong> ");
    let _ = write!(
        h,
        "<a href=\"/compliance?{}\">all topics</a>",
        esc(&query(filter, None, false))
    );
    let _ = write!(
        h,
        "<a href=\"/compliance?{}\" id=\"only-failing\">only failing</a>",
        esc(&query(filter, None, true))
    );
    h.push_str(" <strong>Failing rule:</strong> ");
    for r in Rule::ALL {
        let cls = if filter.rules.contains(&r) {
            " class=\"fail\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<a{cls} href=\"/compliance?{}\">{}</a>",
            esc(&query(filter, Some(r), false)),
            r.as_str()
        );
    }
    h.push_str("</nav>\n");
}

/// One row per rule of each topic (one row for an exempt topic).
fn topic_rows(h: &mut String, topics: &[&TopicCompliance]) {
    for t in topics {
        let rows = t.rules.len().max(1);
        let failing = t.failing().next().is_some();
        let _ = write!(
            h,
            "<tr data-topic=\"{topic}\" data-failing=\"{failing}\"><td rowspan=\"{rows}\">{topic}</td><td rowspan=\"{rows}\">{class}</td>",
            topic = esc(&t.topic),
            class = esc(&t.class),
        );
        if t.rules.is_empty() {
            h.push_str("<td colspan=\"4\" class=\"unknown\">exempt: no rules apply</td></tr>\n");
            continue;
        }
        for (i, r) in t.rules.iter().enumerate() {
            if i > 0 {
                h.push_str("<tr>");
            }
            let (cls, word) = match r.verdict {
                Verdict::Pass => ("pass", "pass"),
                Verdict::Fail => ("fail", "FAIL"),
                Verdict::Unknown => ("unknown", "unknown"),
            };
            let _ = writeln!(
                h,
                "<td>{}</td><td class=\"{cls}\" data-rule=\"{}\">{word}</td><td>{}</td><td>{}</td></tr>",
                r.rule.as_str(),
                r.rule.as_str(),
                esc(&r.actual),
                esc(&r.required)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parsing() {
        let f = Filter::parse(Some("cluster=a&rule=min_retention&rule=naming&failing=1&class=audit")).unwrap();
        assert!(f.clusters.contains("a") && f.classes.contains("audit") && f.failing_only);
        assert_eq!(f.rules.len(), 2);
        assert!(Filter::parse(Some("rule=nonsense"))
            .unwrap_err()
            .contains("unknown rule"));
        assert_eq!(Filter::parse(None).unwrap(), Filter::default());
        assert_eq!(Filter::parse(Some("rule=")).unwrap(), Filter::default());
    }

    #[test]
    fn html_escapes_topic_names() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
