//! The Kafka state families `/metrics` can serve, what each serves by default, and the user's
//! selection over them (`global.metrics` or the `--metric-*` flags).
//!
//! Series cost Prometheus memory and disk, so the defaults carry what dashboards and alerts read
//! at a cost no higher than the leanest peer's: topic, group and cluster aggregates, the offset
//! lag of every group on every partition, and per-partition replication state only where a
//! partition has a problem. Everything else is one `opt_in` away. The selection works in the
//! manner of kube-state-metrics: an allow list (only these) or a deny list (all but these), plus
//! an opt-in list for families that are off or sparse by default. Patterns are anchored regular
//! expressions over the names as served (`kafka_cluster_info`, `..._total`); one that matches
//! no family is a configuration error, so a typo never silently selects nothing.
//!
//! The exporter's own families (`kafka_slo_exporter_*`) are not in the catalog: they are always
//! served, so that a selection can never hide the exporter's health. Pure logic, no I/O.

use std::collections::BTreeSet;

use regex::Regex;

/// What a family serves when the selection does not name it in `opt_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Every series.
    On,
    /// Only the series that carry a problem: per-partition replication state of partitions that
    /// are under-replicated, offline, under min ISR, led by a non-preferred replica, with
    /// eligible leader replicas in use or holding an open transaction; compliance verdicts that
    /// are violations; counts of problems (lost records, uncommitted partitions) that are not 0.
    /// `opt_in` serves every series.
    Problems,
    /// A state set's current state only (value 1), not the others at 0: no information is left
    /// out. `opt_in` serves every state.
    Current,
    /// Nothing; `opt_in` (or an allow list naming it) serves it.
    Off,
}

use Preset::{Current, Off, On, Problems};

/// Every family of the Kafka state, by its name as served, with its default.
pub const CATALOG: &[(&str, Preset)] = &[
    ("kafka_cluster_info", On),
    ("kafka_cluster_controller_id", On),
    ("kafka_brokers", On),
    ("kafka_broker_info", On),
    ("kafka_broker_is_controller", On),
    ("kafka_broker_leader_partitions", On),
    ("kafka_topics", On),
    ("kafka_partitions", On),
    ("kafka_topic_partitions", On),
    ("kafka_partition_leader", Problems),
    ("kafka_partition_replicas", Problems),
    ("kafka_partition_in_sync_replicas", Problems),
    ("kafka_partition_under_replicated", Problems),
    ("kafka_partition_under_min_isr", Problems),
    ("kafka_partition_offline", Problems),
    ("kafka_partition_eligible_leader_replicas", Problems),
    ("kafka_partition_last_known_elr", Problems),
    ("kafka_partition_leader_is_preferred", Problems),
    ("kafka_partition_log_start_offset", Off),
    ("kafka_partition_high_watermark", Off),
    ("kafka_partition_last_stable_offset", Problems),
    ("kafka_partition_open_transaction_offsets", Problems),
    ("kafka_topic_under_replicated_partitions", On),
    ("kafka_topic_under_min_isr_partitions", On),
    ("kafka_topic_offline_partitions", On),
    ("kafka_topic_under_min_isr_with_elr_partitions", On),
    ("kafka_topic_non_preferred_leader_partitions", On),
    ("kafka_topic_min_insync_replicas", On),
    ("kafka_topic_retention_seconds", On),
    ("kafka_topic_high_watermarks", On),
    ("kafka_topic_log_start_offsets", On),
    ("kafka_topic_open_transaction_offsets", On),
    ("kafka_cluster_under_replicated_partitions", On),
    ("kafka_cluster_offline_partitions", On),
    ("kafka_cluster_non_preferred_leader_partitions", On),
    ("kafka_consumergroup_info", On),
    ("kafka_consumergroup_members", On),
    ("kafka_consumergroup_member_info", On),
    ("kafka_consumergroup_status", Current),
    ("kafka_consumergroup_topic_lag", On),
    ("kafka_consumergroup_topic_lag_max", On),
    ("kafka_consumergroup_topic_lag_seconds", On),
    ("kafka_consumergroup_topic_lost_records", Problems),
    ("kafka_consumergroup_topic_uncommitted_partitions", Problems),
    ("kafka_consumergroup_topic_retention_usage_ratio", On),
    ("kafka_consumergroup_topic_lag_seconds_partitions", Off),
    ("kafka_consumergroup_lag", On),
    ("kafka_consumergroup_committed_offset", Off),
    ("kafka_consumergroup_lag_seconds", Off),
    ("kafka_consumergroup_lag_seconds_method_info", Off),
    ("kafka_topic_compliance_class_info", On),
    ("kafka_topic_required_retention_seconds", On),
    ("kafka_topic_replay_window_seconds", On),
    ("kafka_partition_replay_window_seconds", Off),
    ("kafka_topic_compliance", Problems),
    ("kafka_topic_partition_count_changes_total", On),
    ("kafka_topic_partition_count_last_change_timestamp_seconds", On),
    ("kafka_probe_up", On),
    ("kafka_probe_rounds_total", On),
    ("kafka_probe_last_success_timestamp_seconds", On),
    ("kafka_probe_errors_total", On),
    ("kafka_probe_partition_leader", On),
    ("kafka_probe_records_produced_total", On),
    ("kafka_probe_records_acknowledged_total", On),
    ("kafka_probe_records_failed_total", On),
    ("kafka_probe_records_received_total", On),
    ("kafka_probe_records_delivered_in_time_total", On),
    ("kafka_probe_records_lost_total", On),
    ("kafka_probe_records_late_total", On),
    ("kafka_probe_records_duplicated_total", On),
    ("kafka_probe_produce_latency_seconds", On),
    ("kafka_probe_end_to_end_latency_seconds", On),
    ("kafka_probe_commit_latency_seconds", On),
    ("kafka_schema_registry_up", On),
    ("kafka_schema_registry_last_success_timestamp_seconds", On),
    ("kafka_schema_registry_request_duration_seconds", On),
    ("kafka_schema_registry_requests_total", On),
    ("kafka_schema_registry_errors_total", On),
    ("kafka_schema_registry_subjects", On),
    ("kafka_schema_registry_schema_versions", On),
    ("kafka_schema_registry_subject_versions", On),
    ("kafka_schema_registry_latest_schemas", On),
    ("kafka_schema_registry_compatibility_info", On),
    ("kafka_schema_registry_mode_info", On),
    ("kafka_schema_registry_subjects_by_compatibility", On),
    ("kafka_schema_registry_unresolved_subjects", On),
    ("kafka_schema_registry_contexts", On),
    ("kafka_topic_schema_subject_missing", On),
    ("kafka_schema_registry_topics_missing_subject", On),
    ("kafka_schema_registry_orphan_subjects", On),
    ("kafka_topic_schema_sampled_records", On),
    ("kafka_topic_schema_registered_ratio", On),
];

/// The family key of a served name, as the exposition's metadata lines name it in both
/// formats: without the `_total` of counters and the `_info` of info families.
pub fn family_key(name: &str) -> &str {
    name.strip_suffix("_total")
        .or_else(|| name.strip_suffix("_info"))
        .unwrap_or(name)
}

/// The user's lists, as written (anchored regular expressions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lists {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub opt_in: Vec<String>,
}

/// Lists given on the command line (`--metric-allowlist`, `--metric-denylist`,
/// `--metric-opt-in-list`): each replaces the configuration file's list of the same kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub opt_in: Option<Vec<String>>,
}

impl Overrides {
    /// The flag of each list.
    pub const FLAGS: [(&'static str, &'static str); 3] = [
        ("allow", "--metric-allowlist"),
        ("deny", "--metric-denylist"),
        ("opt_in", "--metric-opt-in-list"),
    ];

    /// `lists` with the given flags' lists in place of the file's.
    pub fn apply(&self, lists: &Lists) -> Lists {
        Lists {
            allow: self.allow.clone().unwrap_or_else(|| lists.allow.clone()),
            deny: self.deny.clone().unwrap_or_else(|| lists.deny.clone()),
            opt_in: self.opt_in.clone().unwrap_or_else(|| lists.opt_in.clone()),
        }
    }

    /// The flag that gave `list`, when a flag gave it.
    pub fn flag_of(&self, list: &str) -> Option<&'static str> {
        let given = match list {
            "allow" => self.allow.is_some(),
            "deny" => self.deny.is_some(),
            "opt_in" => self.opt_in.is_some(),
            _ => false,
        };
        Self::FLAGS.iter().find(|(l, _)| *l == list && given).map(|(_, f)| *f)
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_none() && self.opt_in.is_none()
    }
}

/// Splits a flag value into patterns at commas; blanks around them are dropped.
pub fn split_flag(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Why a list is not accepted: the list (`allow`, `deny`, `opt_in`, or `""` for the pair),
/// the index of the pattern, and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ListError {
    pub list: &'static str,
    pub index: Option<usize>,
    pub reason: String,
}

/// Which families are served, and which of the sparse ones serve every series.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Family keys ([`family_key`]) of catalog families that are not served.
    hidden: BTreeSet<&'static str>,
    /// Family keys of served families that serve every series although their default is
    /// [`Preset::Problems`] or [`Preset::Current`].
    full: BTreeSet<&'static str>,
}

impl Default for Selection {
    fn default() -> Self {
        Self::new(&Lists::default()).expect("empty lists are valid")
    }
}

impl Selection {
    /// Resolves `lists` against the catalog.
    pub fn new(lists: &Lists) -> Result<Self, ListError> {
        if !lists.allow.is_empty() && !lists.deny.is_empty() {
            return Err(ListError {
                list: "",
                index: None,
                reason: "an allow list and a deny list exclude each other; use one".into(),
            });
        }
        let allow = matched(&lists.allow, "allow")?;
        let deny = matched(&lists.deny, "deny")?;
        let opt_in = matched(&lists.opt_in, "opt_in")?;
        let mut hidden = BTreeSet::new();
        let mut full = BTreeSet::new();
        for (name, default) in CATALOG {
            let named = allow.contains(name) || opt_in.contains(name);
            let served = if lists.allow.is_empty() {
                *default != Off || opt_in.contains(name)
            } else {
                named
            } && !deny.contains(name);
            if !served {
                hidden.insert(family_key(name));
            } else if matches!(default, Problems | Current) && opt_in.contains(name) {
                full.insert(family_key(name));
            }
        }
        Ok(Self { hidden, full })
    }

    /// True when the family (by served name or family key) is served.
    pub fn serves(&self, name: &str) -> bool {
        !self.hidden.contains(family_key(name))
    }

    /// True when the family serves every series, false when only those with a problem or the
    /// current state (families whose default is [`Preset::Problems`] or [`Preset::Current`] and
    /// that are not opted in).
    pub fn full(&self, name: &str) -> bool {
        let key = family_key(name);
        self.full.contains(key)
            || !CATALOG
                .iter()
                .any(|(n, d)| matches!(d, Problems | Current) && family_key(n) == key)
    }

    /// One line for `--config.check`: how many families are served, how many in full.
    pub fn summary(&self) -> String {
        let served = CATALOG.len() - self.hidden.len();
        let problems: Vec<&str> = CATALOG
            .iter()
            .filter(|(n, p)| matches!(p, Problems | Current) && self.serves(n) && !self.full(n))
            .map(|(n, _)| *n)
            .collect();
        format!(
            "metrics: {served} of {} Kafka state families served, {} of them for problems or the current state only",
            CATALOG.len(),
            problems.len()
        )
    }

    /// Family keys of the catalog that are not served.
    pub fn hidden(&self) -> &BTreeSet<&'static str> {
        &self.hidden
    }
}

/// The catalog names `patterns` match; every pattern must match at least one.
fn matched(patterns: &[String], list: &'static str) -> Result<BTreeSet<&'static str>, ListError> {
    let mut out = BTreeSet::new();
    for (i, p) in patterns.iter().enumerate() {
        let fail = |reason: String| ListError {
            list,
            index: Some(i),
            reason,
        };
        let re = Regex::new(&format!("^(?:{p})$")).map_err(|e| {
            let e = e.to_string();
            fail(format!(
                "invalid regular expression: {}",
                e.lines().last().unwrap_or(&e)
            ))
        })?;
        let hits: Vec<&'static str> = CATALOG.iter().map(|(n, _)| *n).filter(|n| re.is_match(n)).collect();
        if hits.is_empty() {
            let reason = if p.starts_with("kafka_slo_exporter_") {
                format!("{p:?}: the exporter's own families are always served")
            } else {
                format!("{p:?} matches no family (docs/metrics.md lists them)")
            };
            return Err(fail(reason));
        }
        out.extend(hits);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(allow: &[&str], deny: &[&str], opt_in: &[&str]) -> Lists {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Lists {
            allow: v(allow),
            deny: v(deny),
            opt_in: v(opt_in),
        }
    }

    #[test]
    fn defaults_serve_on_and_problem_families_but_not_off_ones() {
        let s = Selection::default();
        assert!(s.serves("kafka_consumergroup_lag"));
        assert!(s.serves("kafka_topic_partition_count_changes_total"));
        assert!(s.serves("kafka_topic_partition_count_changes"), "family key form");
        assert!(s.serves("kafka_partition_under_replicated"));
        assert!(!s.full("kafka_partition_under_replicated"));
        assert!(s.full("kafka_consumergroup_lag"));
        assert!(!s.serves("kafka_partition_high_watermark"));
        assert!(!s.serves("kafka_consumergroup_lag_seconds_method_info"));
        assert!(!s.serves("kafka_consumergroup_lag_seconds_method"));
        // Names outside the catalog (the exporter's own) are always served.
        assert!(s.serves("kafka_slo_exporter_cluster_up"));
    }

    #[test]
    fn opt_in_turns_on_off_families_and_fills_problem_families() {
        let s = Selection::new(&lists(&[], &[], &["kafka_partition_.*"])).unwrap();
        assert!(s.serves("kafka_partition_high_watermark"));
        assert!(s.serves("kafka_partition_replay_window_seconds"));
        assert!(s.full("kafka_partition_leader"));
        assert!(!s.serves("kafka_consumergroup_committed_offset"));
    }

    #[test]
    fn deny_removes_whatever_the_defaults_or_opt_in_serve() {
        let s = Selection::new(&lists(
            &[],
            &["kafka_consumergroup_.*"],
            &["kafka_consumergroup_lag_seconds"],
        ))
        .unwrap();
        assert!(!s.serves("kafka_consumergroup_lag"));
        assert!(!s.serves("kafka_consumergroup_lag_seconds"));
        assert!(s.serves("kafka_topic_partitions"));
    }

    #[test]
    fn allow_serves_exactly_what_it_names() {
        let s = Selection::new(&lists(
            &["kafka_consumergroup_lag", "kafka_partition_high_watermark"],
            &[],
            &[],
        ))
        .unwrap();
        assert!(s.serves("kafka_consumergroup_lag"));
        assert!(s.serves("kafka_partition_high_watermark"));
        assert!(!s.serves("kafka_brokers"));
        assert_eq!(s.hidden().len(), CATALOG.len() - 2);
        // A problems-only family named by the allow list stays problems-only unless opted in.
        let s = Selection::new(&lists(&["kafka_partition_leader"], &[], &[])).unwrap();
        assert!(s.serves("kafka_partition_leader") && !s.full("kafka_partition_leader"));
        let s = Selection::new(&lists(&["kafka_partition_leader"], &[], &["kafka_partition_leader"])).unwrap();
        assert!(s.full("kafka_partition_leader"));
    }

    #[test]
    fn bad_lists_are_errors_that_name_the_list_and_pattern() {
        let e = Selection::new(&lists(&["kafka_brokers"], &["kafka_topics"], &[])).unwrap_err();
        assert_eq!((e.list, e.index), ("", None));
        let e = Selection::new(&lists(&[], &["kafka_topics", "kafka_partition_leadr"], &[])).unwrap_err();
        assert_eq!((e.list, e.index), ("deny", Some(1)));
        assert!(e.reason.contains("matches no family"), "{}", e.reason);
        let e = Selection::new(&lists(&[], &[], &["kafka_(unclosed"])).unwrap_err();
        assert_eq!((e.list, e.index), ("opt_in", Some(0)));
        assert!(e.reason.contains("regular expression"), "{}", e.reason);
        let e = Selection::new(&lists(&[], &["kafka_slo_exporter_cluster_up"], &[])).unwrap_err();
        assert!(e.reason.contains("always served"), "{}", e.reason);
    }

    #[test]
    fn flags_replace_the_files_lists_one_by_one() {
        let file = lists(&[], &["kafka_topics"], &["kafka_partition_high_watermark"]);
        let flags = Overrides {
            opt_in: Some(split_flag(" kafka_consumergroup_lag_seconds , ,kafka_partition_leader")),
            ..Overrides::default()
        };
        let l = flags.apply(&file);
        assert_eq!(l.deny, vec!["kafka_topics"]);
        assert_eq!(
            l.opt_in,
            vec!["kafka_consumergroup_lag_seconds", "kafka_partition_leader"]
        );
        assert_eq!(flags.flag_of("opt_in"), Some("--metric-opt-in-list"));
        assert_eq!(flags.flag_of("deny"), None);
        assert!(!flags.is_empty() && Overrides::default().is_empty());
    }

    #[test]
    fn patterns_are_anchored() {
        // `kafka_topic_partitions` alone, not `kafka_topic_partitions_...` or a prefix match.
        let s = Selection::new(&lists(&[], &["kafka_topic_partition"], &[])).err();
        assert!(s.is_some(), "a prefix is not a match");
    }

    #[test]
    fn catalog_names_are_unique_per_family_key() {
        let mut keys = BTreeSet::new();
        for (n, _) in CATALOG {
            assert!(keys.insert(family_key(n)), "{n} twice");
            assert!(n.starts_with("kafka_") && !n.starts_with("kafka_slo_exporter_"));
        }
    }
}
