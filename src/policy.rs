//! The compliance policy: topic classes matched by naming conventions, their requirements, and
//! the pure evaluation of a topic against them.
//!
//! The built-in default is ADR-0007 (`policies/adr-0007.yml`). Loading is validated like the main
//! configuration: unknown keys, bad patterns and bad values are [`ConfigError`]s naming the
//! file and field. Format and ADR mapping: `docs/policy.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::model::{PartitionView, TopicSettings};

/// The policy shipped with the exporter, used when no `--policy.file` is given.
pub const DEFAULT_POLICY: &str = include_str!("../policies/adr-0007.yml");
/// Name under which the built-in policy is reported.
pub const DEFAULT_POLICY_NAME: &str = "built-in:policies/adr-0007.yml";

// ---------------------------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    exempt: RawMatch,
    #[serde(default, deserialize_with = "duration_opt")]
    partition_change_window: Option<Duration>,
    #[serde(default)]
    defaults: RawDefaults,
    classes: Vec<RawClass>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    require: RawRequire,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    require: RawRequire,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    #[serde(default, deserialize_with = "duration_opt")]
    min_retention: Option<Duration>,
    #[serde(default)]
    replication_factor: Option<u32>,
    #[serde(default)]
    min_insync_replicas: Option<i32>,
    #[serde(default)]
    compression_type: Option<Vec<String>>,
    #[serde(default)]
    cleanup_policy: Option<Vec<String>>,
    #[serde(default)]
    unclean_leader_election: Option<bool>,
    #[serde(default)]
    retention_bytes: Option<RawRetentionBytes>,
    #[serde(default)]
    partition_count_stable: Option<bool>,
}

/// `unlimited` or a minimum size in bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawRetentionBytes {
    Word(String),
    Bytes(u64),
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    humantime::parse_duration(s.trim())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?} ({e}); use e.g. 7d, 30d, 12h")))
}

impl RawRequire {
    fn or(&self, base: &RawRequire) -> RawRequire {
        RawRequire {
            min_retention: self.min_retention.or(base.min_retention),
            replication_factor: self.replication_factor.or(base.replication_factor),
            min_insync_replicas: self.min_insync_replicas.or(base.min_insync_replicas),
            compression_type: self.compression_type.clone().or_else(|| base.compression_type.clone()),
            cleanup_policy: self.cleanup_policy.clone().or_else(|| base.cleanup_policy.clone()),
            unclean_leader_election: self.unclean_leader_election.or(base.unclean_leader_election),
            retention_bytes: self.retention_bytes.clone().or_else(|| base.retention_bytes.clone()),
            partition_count_stable: self.partition_count_stable.or(base.partition_count_stable),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validated policy
// ---------------------------------------------------------------------------------------------

/// A compliance rule. Each has its own `rule` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Naming,
    MinRetention,
    ReplayWindow,
    ReplicationFactor,
    MinInsyncReplicas,
    CompressionType,
    CleanupPolicy,
    UncleanLeaderElection,
    RetentionBytes,
    PartitionCountStable,
}

impl Rule {
    pub const ALL: [Rule; 10] = [
        Rule::Naming,
        Rule::MinRetention,
        Rule::ReplayWindow,
        Rule::ReplicationFactor,
        Rule::MinInsyncReplicas,
        Rule::CompressionType,
        Rule::CleanupPolicy,
        Rule::UncleanLeaderElection,
        Rule::RetentionBytes,
        Rule::PartitionCountStable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Naming => "naming",
            Rule::MinRetention => "min_retention",
            Rule::ReplayWindow => "replay_window",
            Rule::ReplicationFactor => "replication_factor",
            Rule::MinInsyncReplicas => "min_insync_replicas",
            Rule::CompressionType => "compression_type",
            Rule::CleanupPolicy => "cleanup_policy",
            Rule::UncleanLeaderElection => "unclean_leader_election",
            Rule::RetentionBytes => "retention_bytes",
            Rule::PartitionCountStable => "partition_count_stable",
        }
    }

    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Required `retention.bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionBytes {
    /// `retention.bytes` must be -1: only time decides deletion.
    Unlimited,
    /// A size cap is allowed if at least this many bytes per partition.
    AtLeast(u64),
}

/// Requirements of a class; `None` means "not checked".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    pub min_retention: Option<Duration>,
    pub replication_factor: Option<u32>,
    pub min_insync_replicas: Option<i32>,
    pub compression_type: Option<Vec<String>>,
    pub cleanup_policy: Option<Vec<String>>,
    pub unclean_leader_election: Option<bool>,
    pub retention_bytes: Option<RetentionBytes>,
    pub partition_count_stable: bool,
}

/// A topic class.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: String,
    pub description: String,
    patterns: Vec<Regex>,
    topics: Vec<String>,
    pub require: Requirements,
}

impl Class {
    fn matches(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic) || self.patterns.iter().any(|p| p.is_match(topic))
    }
}

/// The policy in force, shared by every poller; a reload swaps it and each poller reads it at
/// the start of its next cycle.
pub type PolicySlot = std::sync::Arc<arc_swap::ArcSwap<Policy>>;

/// The validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from (a path, or the built-in name).
    pub source: String,
    exempt_patterns: Vec<Regex>,
    exempt_topics: Vec<String>,
    pub partition_change_window: Duration,
    pub classes: Vec<Class>,
    /// Requirements applied to topics that match no class (naming fails; min retention unknown).
    pub unmatched: Requirements,
}

/// How a topic was classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// Kafka or registry internal: no rules.
    Exempt,
    /// Matches no naming convention.
    Unmatched,
    /// Index into [`Policy::classes`].
    Class(usize),
}

impl Policy {
    /// The built-in ADR-0007 policy.
    pub fn builtin() -> Policy {
        Self::parse(Path::new(DEFAULT_POLICY_NAME), DEFAULT_POLICY).expect("the built-in policy is valid")
    }

    /// Loads a policy file.
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, ".", format!("cannot read file: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` as read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                path,
                ".",
                "file is empty; at least `classes` is required",
            ));
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawPolicy = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::from_yaml(path, e))?;
        validate(path, raw)
    }

    /// Classifies a topic: exempt first, then classes in file order (first match wins).
    pub fn classify(&self, topic: &str) -> Classification {
        if self.exempt_topics.iter().any(|t| t == topic) || self.exempt_patterns.iter().any(|p| p.is_match(topic)) {
            return Classification::Exempt;
        }
        match self.classes.iter().position(|c| c.matches(topic)) {
            Some(i) => Classification::Class(i),
            None => Classification::Unmatched,
        }
    }

    /// Class name for metrics and the report: a class name, `exempt` or `unmatched`.
    pub fn class_name(&self, c: &Classification) -> &str {
        match c {
            Classification::Exempt => "exempt",
            Classification::Unmatched => "unmatched",
            Classification::Class(i) => &self.classes[*i].name,
        }
    }

    /// A one-paragraph description for `--config.check`.
    pub fn summary(&self) -> String {
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|c| match c.require.min_retention {
                Some(r) => format!("{} (min retention {})", c.name, humantime::format_duration(r)),
                None => c.name.clone(),
            })
            .collect();
        format!(
            "policy {}: OK, classes in precedence order: {}\n",
            self.source,
            classes.join(", ")
        )
    }
}

fn compile(path: &Path, field: &str, patterns: &[String]) -> Result<Vec<Regex>, ConfigError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                let reason = e.to_string();
                let reason = reason.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                ConfigError::new(
                    path,
                    format!("{field}[{i}]"),
                    format!("invalid regular expression: {}", reason.trim_start_matches("error: ")),
                )
            })
        })
        .collect()
}

fn requirements(path: &Path, field: &str, raw: &RawRequire) -> Result<Requirements, ConfigError> {
    let err = |f: &str, r: String| ConfigError::new(path, format!("{field}.{f}"), r);
    if let Some(rf) = raw.replication_factor {
        if rf == 0 || rf > 32 {
            return Err(err("replication_factor", "must be between 1 and 32".into()));
        }
    }
    if let Some(m) = raw.min_insync_replicas {
        if !(1..=32).contains(&m) {
            return Err(err("min_insync_replicas", "must be between 1 and 32".into()));
        }
        if raw.replication_factor.is_some_and(|rf| m as u32 > rf) {
            return Err(err(
                "min_insync_replicas",
                "is larger than replication_factor: acks=all writes could never succeed".into(),
            ));
        }
    }
    const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
    if let Some(list) = &raw.compression_type {
        if list.is_empty() {
            return Err(err("compression_type", "must list at least one allowed value".into()));
        }
        for (i, c) in list.iter().enumerate() {
            if !COMPRESSION.contains(&c.as_str()) {
                return Err(err(
                    &format!("compression_type[{i}]"),
                    format!(
                        "unknown compression type {c:?}; expected one of {}",
                        COMPRESSION.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(list) = &raw.cleanup_policy {
        if list.is_empty() {
            return Err(err("cleanup_policy", "must list at least one allowed value".into()));
        }
        for (i, c) in list.iter().enumerate() {
            if normalise_cleanup(c).is_none() {
                return Err(err(
                    &format!("cleanup_policy[{i}]"),
                    format!("{c:?} is not delete, compact or compact,delete"),
                ));
            }
        }
    }
    let retention_bytes = match &raw.retention_bytes {
        None => None,
        Some(RawRetentionBytes::Word(w)) if w == "unlimited" => Some(RetentionBytes::Unlimited),
        Some(RawRetentionBytes::Word(w)) => {
            return Err(err(
                "retention_bytes",
                format!("{w:?} is neither `unlimited` nor a number of bytes"),
            ))
        }
        Some(RawRetentionBytes::Bytes(b)) => Some(RetentionBytes::AtLeast(*b)),
    };
    Ok(Requirements {
        min_retention: raw.min_retention,
        replication_factor: raw.replication_factor,
        min_insync_replicas: raw.min_insync_replicas,
        compression_type: raw.compression_type.clone(),
        cleanup_policy: raw
            .cleanup_policy
            .as_ref()
            .map(|l| l.iter().filter_map(|c| normalise_cleanup(c)).collect()),
        unclean_leader_election: raw.unclean_leader_election,
        retention_bytes,
        partition_count_stable: raw.partition_count_stable.unwrap_or(false),
    })
}

/// `compact, delete` → `compact,delete`; `None` for anything else.
fn normalise_cleanup(s: &str) -> Option<String> {
    let mut parts: Vec<&str> = s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts.dedup();
    let ok = !parts.is_empty() && parts.iter().all(|p| *p == "delete" || *p == "compact");
    ok.then(|| parts.join(","))
}

fn validate(path: &Path, raw: RawPolicy) -> Result<Policy, ConfigError> {
    if raw.classes.is_empty() {
        return Err(ConfigError::new(path, "classes", "at least one class is required"));
    }
    let exempt_patterns = compile(path, "exempt.patterns", &raw.exempt.patterns)?;
    let defaults = &raw.defaults.require;
    requirements(path, "defaults.require", defaults)?;
    let mut classes: Vec<Class> = Vec::with_capacity(raw.classes.len());
    for (i, c) in raw.classes.iter().enumerate() {
        let at = format!("classes[{i}]");
        let name = c.name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(ConfigError::new(
                path,
                format!("{at}.name"),
                format!("{name:?} must be non-empty and use only letters, digits, _ and -"),
            ));
        }
        if name == "exempt" || name == "unmatched" {
            return Err(ConfigError::new(
                path,
                format!("{at}.name"),
                format!("{name:?} is reserved"),
            ));
        }
        if let Some(j) = classes.iter().position(|x| x.name == name) {
            return Err(ConfigError::new(
                path,
                format!("{at}.name"),
                format!("duplicate class name {name:?} (already used by classes[{j}])"),
            ));
        }
        if c.matcher.patterns.is_empty() && c.matcher.topics.is_empty() {
            return Err(ConfigError::new(
                path,
                format!("{at}.match"),
                "needs at least one pattern or topic".to_string(),
            ));
        }
        let patterns = compile(path, &format!("{at}.match.patterns"), &c.matcher.patterns)?;
        let require = requirements(path, &format!("{at}.require"), &c.require.or(defaults))?;
        classes.push(Class {
            name: name.to_string(),
            description: c.description.clone(),
            patterns,
            topics: c.matcher.topics.clone(),
            require,
        });
    }
    let mut unmatched = requirements(path, "defaults.require", defaults)?;
    unmatched.min_retention = None;
    Ok(Policy {
        source: path.display().to_string(),
        exempt_patterns,
        exempt_topics: raw.exempt.topics,
        partition_change_window: raw.partition_change_window.unwrap_or(Duration::from_secs(7 * 86_400)),
        classes,
        unmatched,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// The facts needed are not known (yet): neither pass nor violation.
    Unknown,
}

/// One rule applied to one topic, with what was found and what is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    pub rule: Rule,
    pub verdict: Verdict,
    pub actual: String,
    pub required: String,
}

/// Everything the evaluation needs to know about a topic.
#[derive(Debug, Clone)]
pub struct TopicFacts<'a> {
    pub name: &'a str,
    pub partitions: &'a [PartitionView],
    pub settings: Option<&'a TopicSettings>,
    /// Age in seconds of the oldest retained record over the topic's non-empty partitions.
    pub replay_window: Option<f64>,
    /// When the exporter last saw the partition count change.
    pub last_partition_change: Option<SystemTime>,
}

/// The compliance of one topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicCompliance {
    pub topic: String,
    pub class: String,
    /// Required retention of the class, in seconds.
    pub required_retention_seconds: Option<f64>,
    pub replay_window_seconds: Option<f64>,
    pub rules: Vec<RuleResult>,
}

impl TopicCompliance {
    pub fn failing(&self) -> impl Iterator<Item = &RuleResult> {
        self.rules.iter().filter(|r| r.verdict == Verdict::Fail)
    }
}

/// The built-in policy's path, for messages.
pub fn default_policy_path() -> PathBuf {
    PathBuf::from(DEFAULT_POLICY_NAME)
}

mod evaluate;

pub use evaluate::evaluate;

#[cfg(test)]
mod tests;
