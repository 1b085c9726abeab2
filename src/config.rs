//! Configuration file: serde structures, defaults and validation.
//!
//! Loading never touches the network. Every rejection is a [`ConfigError`] naming the file, the
//! field path and the reason, so the operator can fix it without reading code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::error::ConfigError;

pub mod registry;
mod security;

/// Label names the exporter sets itself; constant labels may not reuse them.
const RESERVED_LABELS: &[&str] = &[
    "cluster",
    "cluster_id",
    "controller_id",
    "broker_id",
    "host",
    "port",
    "rack",
    "topic",
    "partition",
    "group",
    "stage",
    "version",
    "revision",
    "rdkafka_version",
    "internal",
    "instance",
    "job",
];

/// librdkafka properties that carry secrets. They may only be given through `secret_properties`
/// or the `sasl` block, so a config file that is shared or logged never contains a secret.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "ssl_key",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];

/// Properties the exporter owns: overriding them would break collection.
const OWNED_PROPERTIES: &[&str] = &["bootstrap.servers", "group.id", "enable.auto.commit"];

// ---------------------------------------------------------------------------------------------
// File format (what users write)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: RawGlobal,
    clusters: Vec<RawCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    #[serde(default, deserialize_with = "duration::opt")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::opt")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::opt")]
    max_staleness: Option<Duration>,
    #[serde(default)]
    topics: Option<RawFilter>,
    #[serde(default)]
    groups: Option<RawFilter>,
    #[serde(default)]
    lag: RawLag,
    #[serde(default)]
    compliance: RawCompliance,
    #[serde(default)]
    max_series: Option<usize>,
}

/// ADR compliance settings (global).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompliance {
    #[serde(default, deserialize_with = "duration::opt")]
    replay_window_refresh: Option<Duration>,
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

/// Validated compliance settings.
#[derive(Debug, Clone)]
pub struct ComplianceConfig {
    /// How often the records at log start offsets are read again for the replay window.
    pub replay_window_refresh: Duration,
    /// Directory where each cluster's observed partition counts are kept across restarts.
    pub state_dir: Option<PathBuf>,
}

/// Consumer lag settings; at cluster level each key overrides the global one.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLag {
    #[serde(default)]
    granularity: Option<Granularity>,
    #[serde(default, deserialize_with = "duration::opt")]
    status_window: Option<Duration>,
    #[serde(default)]
    status_min_observations: Option<usize>,
    #[serde(default)]
    max_record_reads: Option<usize>,
    #[serde(default)]
    group_offsets_concurrency: Option<usize>,
    #[serde(default)]
    history_samples: Option<usize>,
}

impl RawLag {
    fn or(&self, global: &RawLag) -> RawLag {
        RawLag {
            granularity: self.granularity.or(global.granularity),
            status_window: self.status_window.or(global.status_window),
            status_min_observations: self.status_min_observations.or(global.status_min_observations),
            max_record_reads: self.max_record_reads.or(global.max_record_reads),
            group_offsets_concurrency: self.group_offsets_concurrency.or(global.group_offsets_concurrency),
            history_samples: self.history_samples.or(global.history_samples),
        }
    }
}

/// Level of detail of lag and partition series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Per group/topic/partition and per topic/partition series, plus topic aggregates.
    Partition,
    /// Only per group/topic and per topic aggregates: far fewer series on large clusters.
    Topic,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Partition => "partition",
            Granularity::Topic => "topic",
        }
    }
}

/// Validated lag settings of a cluster.
#[derive(Debug, Clone)]
pub struct LagConfig {
    pub granularity: Granularity,
    /// Window of the group status rules.
    pub status_window: Duration,
    /// Observations needed before a partition can be WARN/STALL/STOP.
    pub status_min_observations: usize,
    /// Records read per cycle to timestamp committed offsets (cached reads do not count).
    pub max_record_reads: usize,
    /// ListConsumerGroupOffsets requests in flight at once.
    pub group_offsets_concurrency: usize,
    /// High-watermark changes remembered per partition for time-lag interpolation.
    pub history_samples: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    bootstrap_servers: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    client_properties: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    secret_properties: BTreeMap<String, RawSecret>,
    #[serde(default)]
    sasl: Option<security::RawSasl>,
    #[serde(default)]
    tls: Option<security::RawTls>,
    #[serde(default, deserialize_with = "duration::opt")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    topics: Option<RawFilter>,
    #[serde(default)]
    groups: Option<RawFilter>,
    #[serde(default)]
    lag: RawLag,
    #[serde(default)]
    probe: Option<RawProbe>,
    #[serde(default)]
    schema_registry: Option<registry::RawSchemaRegistry>,
}

/// End-to-end delivery probe of a cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default, deserialize_with = "duration::opt")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    replication_factor: Option<i32>,
    #[serde(default)]
    min_insync_replicas: Option<i32>,
    #[serde(default)]
    include_in_totals: Option<bool>,
}

/// Validated probe settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub topic: String,
    pub group: String,
    /// One record per partition each interval.
    pub interval: Duration,
    /// A record not received within this time counts as lost.
    pub timeout: Duration,
    /// Replication factor of the probe topic; capped at the number of brokers when created.
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
    /// Whether the probe topic and group appear in the user-facing lag, topic and compliance
    /// series.
    pub include_in_totals: bool,
}

/// Where a secret comes from: exactly one of an environment variable or a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration (what the program uses)
// ---------------------------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub clusters: Vec<ClusterConfig>,
    /// Ceiling on the Kafka state series in `/metrics`; `None` for no limit.
    pub max_series: Option<usize>,
}

/// One Kafka cluster to watch.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub bootstrap_servers: Vec<String>,
    /// Extra constant labels attached to every series of this cluster.
    pub labels: Vec<(String, String)>,
    /// librdkafka properties, secrets already resolved. Never log the values.
    pub client_properties: Vec<(String, String)>,
    /// Names of the properties in `client_properties` whose values are secret.
    pub secret_keys: Vec<String>,
    /// The field below the cluster that selects SASL GSSAPI (Kerberos), if any. Whether the
    /// linked Kafka client supports it is checked at start-up, when the clients are created.
    pub kerberos_field: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// How long data from the last successful cycle is still served while collection fails.
    pub max_staleness: Duration,
    pub topics: NameFilter,
    pub groups: NameFilter,
    pub lag: LagConfig,
    pub compliance: ComplianceConfig,
    /// `None` when the probe is disabled.
    pub probe: Option<ProbeConfig>,
    /// The cluster's Schema Registry; `None` when not watched.
    pub schema_registry: Option<registry::RegistryConfig>,
    /// This process's share of the topics and groups (from the command line, not the file).
    pub shard: crate::shard::Shard,
}

impl ClusterConfig {
    /// Whether the topic's series are exported: the topic filter, and the probe's own topic
    /// only when `probe.include_in_totals` is set.
    pub fn selects_topic(&self, topic: &str) -> bool {
        match &self.probe {
            Some(p) if p.topic == topic && !p.include_in_totals => false,
            _ => self.topics.matches(topic),
        }
    }

    /// Whether the group's series are exported (the probe's group like its topic), by this
    /// shard.
    pub fn selects_group(&self, group: &str) -> bool {
        match &self.probe {
            Some(p) if p.group == group && !p.include_in_totals => false,
            _ => self.groups.matches(group) && self.shard.owns(group),
        }
    }
}

/// Allow/deny regular expressions, each anchored to the whole name. A name is selected when it
/// matches some allow pattern (or the allow list is empty) and no deny pattern.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    allow: Vec<Regex>,
    deny: Vec<Regex>,
}

impl NameFilter {
    /// Builds a filter from anchored patterns; `Err` carries the index list and reason.
    pub fn new(allow: &[&str], deny: &[&str]) -> Result<Self, (String, usize, String)> {
        let compile = |list: &[&str], which: &str| -> Result<Vec<Regex>, (String, usize, String)> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| (which.to_string(), i, first_line(&e.to_string())))
                })
                .collect()
        };
        Ok(Self {
            allow: compile(allow, "allow")?,
            deny: compile(deny, "deny")?,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(name)))
            && !self.deny.iter().any(|r| r.is_match(name))
    }

    fn describe(&self) -> String {
        let join = |v: &[Regex]| {
            v.iter()
                .map(|r| {
                    let s = r.as_str();
                    s[4..s.len() - 2].to_string()
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.allow.is_empty(), self.deny.is_empty()) {
            (true, true) => "all".to_string(),
            (false, true) => format!("allow [{}]", join(&self.allow)),
            (true, false) => format!("all except [{}]", join(&self.deny)),
            (false, false) => format!("allow [{}] except [{}]", join(&self.allow), join(&self.deny)),
        }
    }
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Minimum collection interval: below it a large cluster would be hammered with requests.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, ".", format!("cannot read file: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` as if read from `path` (used for messages and relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                path,
                ".",
                "file is empty; at least `clusters` is required",
            ));
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::from_yaml(path, e))?;
        validate(path, raw)
    }

    /// A human-readable summary for `--config.check`. Secret values are never printed.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "config file {}: OK, {} cluster(s)",
            self.file.display(),
            self.clusters.len()
        );
        for c in &self.clusters {
            let _ = writeln!(s, "- cluster {:?}", c.name);
            let _ = writeln!(s, "    bootstrap servers: {}", c.bootstrap_servers.join(","));
            let _ = writeln!(
                s,
                "    interval: {}, request timeout: {}, max staleness: {}",
                humantime::format_duration(c.interval),
                humantime::format_duration(c.timeout),
                humantime::format_duration(c.max_staleness)
            );
            if !c.labels.is_empty() {
                let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let _ = writeln!(s, "    labels: {}", labels.join(", "));
            }
            let props: Vec<String> = c
                .client_properties
                .iter()
                .map(|(k, v)| {
                    if c.secret_keys.contains(k) {
                        format!("{k}=<secret>")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            if !props.is_empty() {
                let _ = writeln!(s, "    client properties: {}", props.join(", "));
            }
            let _ = writeln!(s, "    topics: {}", c.topics.describe());
            let _ = writeln!(s, "    groups: {}", c.groups.describe());
            if let Some(r) = &c.schema_registry {
                let _ = writeln!(s, "    {}", r.summary());
            }
            let _ = writeln!(
                s,
                "    lag: granularity {}, status window {}, max record reads/cycle {}",
                c.lag.granularity.as_str(),
                humantime::format_duration(c.lag.status_window),
                c.lag.max_record_reads
            );
        }
        s
    }
}

fn first_line(s: &str) -> String {
    // regex errors span several lines with a caret diagram; the last line holds the reason.
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.last() {
        Some(last) if lines.len() > 1 => last.trim_start_matches("error: ").to_string(),
        _ => s.trim().to_string(),
    }
}

/// Optional humantime durations ("30s", "1m30s") that keep humantime's reason on error.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        humantime::parse_duration(s.trim())
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?} ({e}); use e.g. 30s, 1m30s, 500ms")))
    }
}

fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let err = |field: String, reason: String| ConfigError::new(path, field, reason);

    let g = &raw.global;
    let global_interval = g.interval.unwrap_or(DEFAULT_INTERVAL);
    let global_timeout = g.timeout.unwrap_or(DEFAULT_TIMEOUT);
    check_interval(global_interval).map_err(|r| err("global.interval".into(), r))?;
    check_timeout(global_timeout).map_err(|r| err("global.timeout".into(), r))?;
    let global_topics = build_filter(path, "global.topics", g.topics.as_ref())?;
    let global_groups = build_filter(path, "global.groups", g.groups.as_ref())?;
    if let Some(ms) = g.max_staleness {
        if ms.is_zero() {
            return Err(err("global.max_staleness".into(), "must be greater than 0".into()));
        }
    }

    validate_lag(&g.lag, global_interval).map_err(|(f, r)| err(format!("global.lag.{f}"), r))?;

    let compliance = ComplianceConfig {
        replay_window_refresh: g.compliance.replay_window_refresh.unwrap_or(Duration::from_secs(300)),
        state_dir: g.compliance.state_dir.as_ref().map(|d| {
            if d.is_absolute() {
                d.clone()
            } else {
                path.parent().unwrap_or_else(|| Path::new(".")).join(d)
            }
        }),
    };
    if compliance.replay_window_refresh < Duration::from_secs(1) {
        return Err(err(
            "global.compliance.replay_window_refresh".into(),
            "must be at least 1s".into(),
        ));
    }
    if let Some(d) = &compliance.state_dir {
        if !d.is_dir() {
            return Err(err(
                "global.compliance.state_dir".into(),
                format!("{} is not an existing directory", d.display()),
            ));
        }
    }

    if raw.clusters.is_empty() {
        return Err(err("clusters".into(), "at least one cluster is required".into()));
    }

    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut clusters = Vec::with_capacity(raw.clusters.len());
    for (i, rc) in raw.clusters.into_iter().enumerate() {
        let at = |f: &str| format!("clusters[{i}].{f}");

        let name = rc.name.trim().to_string();
        if name.is_empty() {
            return Err(err(at("name"), "must not be empty".into()));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(err(at("name"), "must not contain control characters".into()));
        }
        if let Some(j) = clusters.iter().position(|c: &ClusterConfig| c.name == name) {
            return Err(err(
                at("name"),
                format!("duplicate cluster name {name:?} (already used by clusters[{j}])"),
            ));
        }

        if rc.bootstrap_servers.is_empty() {
            return Err(err(at("bootstrap_servers"), "must list at least one host:port".into()));
        }
        for (j, server) in rc.bootstrap_servers.iter().enumerate() {
            check_host_port(server).map_err(|r| err(format!("clusters[{i}].bootstrap_servers[{j}]"), r))?;
        }

        let mut labels = Vec::with_capacity(rc.labels.len());
        for (k, v) in rc.labels {
            check_label_name(&k).map_err(|r| err(at(&format!("labels.{k}")), r))?;
            labels.push((k, v));
        }

        let mut props: Vec<(String, String)> = Vec::new();
        for (k, v) in rc.client_properties {
            let field = at(&format!("client_properties.{k}"));
            check_property_name(&k).map_err(|r| err(field.clone(), r))?;
            if SECRET_PROPERTIES.contains(&k.as_str()) {
                return Err(err(
                    field,
                    "secrets may not be written inline; use secret_properties with `env` or `file`".into(),
                ));
            }
            let value = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                other => {
                    return Err(err(
                        field,
                        format!("must be a string, number or boolean, not {}", yaml_kind(&other)),
                    ))
                }
            };
            props.push((k, value));
        }

        let mut secret_keys = Vec::new();
        for (k, s) in &rc.secret_properties {
            let field = at(&format!("secret_properties.{k}"));
            check_property_name(k).map_err(|r| err(field.clone(), r))?;
            if props.iter().any(|(p, _)| p == k) {
                return Err(err(field, "also set in client_properties; set it in one place".into()));
            }
            let value =
                resolve_secret(base_dir, s.env.as_deref(), s.file.as_deref()).map_err(|r| err(field.clone(), r))?;
            props.push((k.clone(), value));
            secret_keys.push(k.clone());
        }

        let resolve = |env: Option<&str>, file: Option<&Path>| resolve_secret(base_dir, env, file);
        let mut security_props = security::Properties {
            props: &mut props,
            secret_keys: &mut secret_keys,
        };
        let kerberos_field = security::apply(base_dir, rc.tls, rc.sasl, &mut security_props, &resolve)
            .map_err(|(f, r)| err(at(&f), r))?;

        let interval = rc.interval.unwrap_or(global_interval);
        check_interval(interval).map_err(|r| err(at("interval"), r))?;
        let timeout = rc.timeout.unwrap_or(global_timeout);
        check_timeout(timeout).map_err(|r| err(at("timeout"), r))?;
        let max_staleness = g.max_staleness.unwrap_or(interval * 5);

        let topics = match rc.topics.as_ref() {
            Some(f) => build_filter(path, &at("topics"), Some(f))?,
            None => global_topics.clone(),
        };
        let groups = match rc.groups.as_ref() {
            Some(f) => build_filter(path, &at("groups"), Some(f))?,
            None => global_groups.clone(),
        };

        let schema_registry = match rc.schema_registry {
            Some(r) => registry::validate(r, base_dir, |env, file| resolve_secret(base_dir, env, file))
                .map_err(|(f, r)| err(at(&format!("schema_registry.{f}")), r))?,
            None => None,
        };
        let probe = match rc.probe {
            Some(p) if p.enabled.unwrap_or(true) => {
                Some(validate_probe(&p).map_err(|(f, r)| err(at(&format!("probe.{f}")), r))?)
            }
            _ => None,
        };
        let lag = validate_lag(&rc.lag.or(&g.lag), interval).map_err(|(f, r)| err(at(&format!("lag.{f}")), r))?;

        clusters.push(ClusterConfig {
            name,
            bootstrap_servers: rc.bootstrap_servers,
            labels,
            client_properties: props,
            secret_keys,
            kerberos_field,
            interval,
            timeout,
            max_staleness,
            topics,
            groups,
            lag,
            compliance: compliance.clone(),
            probe,
            schema_registry,
            shard: crate::shard::Shard::default(),
        });
    }

    if raw.global.max_series == Some(0) {
        return Err(err(
            "global.max_series".into(),
            "must be greater than 0; leave it out for no limit".into(),
        ));
    }
    Ok(Config {
        file: path.to_path_buf(),
        clusters,
        max_series: raw.global.max_series,
    })
}

fn validate_probe(raw: &RawProbe) -> Result<ProbeConfig, (&'static str, String)> {
    let topic = raw.topic.clone().unwrap_or_else(|| "kafka-slo-exporter.probe".into());
    let legal =
        |s: &str| !s.is_empty() && s.len() <= 249 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !legal(&topic) || topic == "." || topic == ".." {
        return Err(("topic", format!("{topic:?} is not a legal Kafka topic name")));
    }
    let group = raw.group.clone().unwrap_or_else(|| "kafka-slo-exporter-probe".into());
    if group.trim().is_empty() {
        return Err(("group", "must not be empty".into()));
    }
    let interval = raw.interval.unwrap_or(Duration::from_secs(5));
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(600) {
        return Err(("interval", "must be between 100ms and 10m".into()));
    }
    let timeout = raw.timeout.unwrap_or(Duration::from_secs(10));
    if timeout < interval {
        return Err(("timeout", "must be at least the probe interval".into()));
    }
    let replication_factor = raw.replication_factor.unwrap_or(3);
    if !(1..=32).contains(&replication_factor) {
        return Err(("replication_factor", "must be between 1 and 32".into()));
    }
    let min_insync_replicas = raw.min_insync_replicas.unwrap_or(2);
    if !(1..=32).contains(&min_insync_replicas) {
        return Err(("min_insync_replicas", "must be between 1 and 32".into()));
    }
    Ok(ProbeConfig {
        topic,
        group,
        interval,
        timeout,
        replication_factor,
        min_insync_replicas,
        include_in_totals: raw.include_in_totals.unwrap_or(false),
    })
}

fn validate_lag(raw: &RawLag, interval: Duration) -> Result<LagConfig, (&'static str, String)> {
    let status_window = raw.status_window.unwrap_or(Duration::from_secs(600));
    if status_window < interval * 2 {
        return Err((
            "status_window",
            format!(
                "{} is shorter than two collection intervals ({}); the rules need several observations",
                humantime::format_duration(status_window),
                humantime::format_duration(interval * 2)
            ),
        ));
    }
    let status_min_observations = raw.status_min_observations.unwrap_or(3);
    if !(2..=1000).contains(&status_min_observations) {
        return Err(("status_min_observations", "must be between 2 and 1000".into()));
    }
    let max_record_reads = raw.max_record_reads.unwrap_or(5000);
    if max_record_reads > 1_000_000 {
        return Err(("max_record_reads", "must be at most 1000000".into()));
    }
    let group_offsets_concurrency = raw.group_offsets_concurrency.unwrap_or(16);
    if !(1..=256).contains(&group_offsets_concurrency) {
        return Err(("group_offsets_concurrency", "must be between 1 and 256".into()));
    }
    let history_samples = raw.history_samples.unwrap_or(720);
    if !(2..=100_000).contains(&history_samples) {
        return Err(("history_samples", "must be between 2 and 100000".into()));
    }
    Ok(LagConfig {
        granularity: raw.granularity.unwrap_or(Granularity::Partition),
        status_window,
        status_min_observations,
        max_record_reads,
        group_offsets_concurrency,
        history_samples,
    })
}

fn build_filter(path: &Path, field: &str, raw: Option<&RawFilter>) -> Result<NameFilter, ConfigError> {
    let Some(raw) = raw else {
        return Ok(NameFilter::default());
    };
    let allow: Vec<&str> = raw.allow.iter().map(String::as_str).collect();
    let deny: Vec<&str> = raw.deny.iter().map(String::as_str).collect();
    NameFilter::new(&allow, &deny).map_err(|(which, i, reason)| {
        ConfigError::new(
            path,
            format!("{field}.{which}[{i}]"),
            format!("invalid regular expression: {reason}"),
        )
    })
}

fn check_interval(d: Duration) -> Result<(), String> {
    if d < MIN_INTERVAL {
        return Err(format!(
            "{} is too short; the minimum is {}",
            humantime::format_duration(d),
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    if d > Duration::from_secs(3600) {
        return Err("must be at most 1h; slower collection makes every metric stale".into());
    }
    Ok(())
}

fn check_timeout(d: Duration) -> Result<(), String> {
    if d < Duration::from_millis(100) {
        return Err(format!(
            "{} is too short; the minimum is 100ms",
            humantime::format_duration(d)
        ));
    }
    if d > Duration::from_secs(600) {
        return Err("must be at most 10m".into());
    }
    Ok(())
}

fn check_host_port(s: &str) -> Result<(), String> {
    let s = s.trim();
    // Accept an optional listener-style scheme such as SASL_SSL://host:port.
    let hp = s.split_once("://").map(|(_, rest)| rest).unwrap_or(s);
    let Some((host, port)) = hp.rsplit_once(':') else {
        return Err(format!("{s:?} is not host:port"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains(',') {
        return Err(format!("{s:?} has an invalid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?} has an invalid port {port:?}")),
    }
}

fn check_label_name(k: &str) -> Result<(), String> {
    let mut chars = k.chars();
    let valid = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
        _ => false,
    };
    if !valid {
        return Err(format!(
            "{k:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if k.starts_with("__") {
        return Err(format!("{k:?}: names starting with __ are reserved by Prometheus"));
    }
    if RESERVED_LABELS.contains(&k) {
        return Err(format!(
            "{k:?} is set by the exporter itself and cannot be a constant label"
        ));
    }
    Ok(())
}

fn check_property_name(k: &str) -> Result<(), String> {
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(format!("{k:?} is not a librdkafka property name"));
    }
    if OWNED_PROPERTIES.contains(&k) {
        return Err(format!(
            "{k:?} is managed by the exporter; set bootstrap_servers instead"
        ));
    }
    Ok(())
}

fn resolve_secret(base_dir: &Path, env: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err("give either an environment variable or a file, not both".into()),
        (None, None) => {
            Err("needs an environment variable (`env`/`password_env`) or a file (`file`/`password_file`)".into())
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) => Err(format!("environment variable {var} is empty")),
            Err(_) => Err(format!("environment variable {var} is not set")),
        },
        (None, Some(f)) => {
            let full = if f.is_absolute() {
                f.to_path_buf()
            } else {
                base_dir.join(f)
            };
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read secret file {}: {e}", full.display()))?;
            let v = text.trim_end_matches(['\n', '\r']).to_string();
            if v.is_empty() {
                return Err(format!("secret file {} is empty", full.display()));
            }
            Ok(v)
        }
    }
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
        _ => "a scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.yml"), text)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("clusters:\n  - name: a\n    bootstrap_servers: [\"k:9092\"]\n").unwrap();
        assert_eq!(c.clusters.len(), 1);
        let a = &c.clusters[0];
        assert_eq!(a.interval, DEFAULT_INTERVAL);
        assert_eq!(a.timeout, DEFAULT_TIMEOUT);
        assert_eq!(a.max_staleness, DEFAULT_INTERVAL * 5);
        assert!(a.topics.matches("anything"));
    }

    #[test]
    fn cluster_overrides_global() {
        let c = parse(
            "global: {interval: 10s, timeout: 3s, topics: {deny: ['__.*']}}\n\
             clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n  - {name: b, bootstrap_servers: ['k:2'], interval: 1m, topics: {allow: ['x.*']}}\n",
        )
        .unwrap();
        assert_eq!(c.clusters[0].interval, Duration::from_secs(10));
        assert!(!c.clusters[0].topics.matches("__consumer_offsets"));
        assert_eq!(c.clusters[1].interval, Duration::from_secs(60));
        assert_eq!(c.clusters[1].timeout, Duration::from_secs(3));
        assert!(c.clusters[1].topics.matches("xy"));
        assert!(!c.clusters[1].topics.matches("y"));
        assert!(!c.clusters[1].topics.matches("__consumer_offsets"));
    }

    #[test]
    fn lag_settings_merge_per_key() {
        let c = parse(
            "global: {lag: {granularity: topic, max_record_reads: 10}}\n\
             clusters:\n  - {name: a, bootstrap_servers: ['k:1'], lag: {max_record_reads: 99}}\n  - {name: b, bootstrap_servers: ['k:2']}\n",
        )
        .unwrap();
        assert_eq!(c.clusters[0].lag.granularity, Granularity::Topic);
        assert_eq!(c.clusters[0].lag.max_record_reads, 99);
        assert_eq!(c.clusters[1].lag.max_record_reads, 10);
        assert_eq!(c.clusters[1].lag.status_window, Duration::from_secs(600));
    }

    #[test]
    fn filters_are_anchored() {
        let f = NameFilter::new(&["order\\..*"], &[".*\\.internal\\..*"]).unwrap();
        assert!(f.matches("order.order.events"));
        assert!(!f.matches("xorder.order.events"));
        assert!(!f.matches("order.internal.retry"));
        let alt = NameFilter::new(&["a|b"], &[]).unwrap();
        assert!(alt.matches("a") && alt.matches("b") && !alt.matches("ab"));
    }

    #[test]
    fn numbers_and_bools_pass_through_as_properties() {
        let c = parse(
            "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    client_properties: {socket.keepalive.enable: true, reconnect.backoff.ms: 50}\n",
        )
        .unwrap();
        let p = &c.clusters[0].client_properties;
        assert!(p.contains(&("socket.keepalive.enable".into(), "true".into())));
        assert!(p.contains(&("reconnect.backoff.ms".into(), "50".into())));
    }

    #[test]
    fn secret_from_env_is_resolved_and_hidden_in_summary() {
        std::env::set_var("KSE_TEST_SECRET_A", "s3cr3t");
        let c = parse(
            "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    sasl: {mechanism: scram-sha-512, username: u, password_env: KSE_TEST_SECRET_A}\n",
        )
        .unwrap();
        let p = &c.clusters[0].client_properties;
        assert!(p.contains(&("sasl.password".into(), "s3cr3t".into())));
        assert!(p.contains(&("sasl.mechanism".into(), "SCRAM-SHA-512".into())));
        let summary = c.summary();
        assert!(!summary.contains("s3cr3t"), "{summary}");
        assert!(summary.contains("sasl.password=<secret>"));
    }

    #[test]
    fn secret_file_relative_to_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let cfg = dir.path().join("c.yml");
        let text = "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    secret_properties:\n      ssl.key.password: {file: pw}\n";
        let c = Config::parse(&cfg, text).unwrap();
        assert!(c.clusters[0]
            .client_properties
            .contains(&("ssl.key.password".into(), "hunter2".into())));
    }

    #[test]
    fn host_port_validation() {
        assert!(check_host_port("localhost:9092").is_ok());
        assert!(check_host_port("SASL_SSL://broker-1.example:9093").is_ok());
        assert!(check_host_port("[::1]:9092").is_ok());
        assert!(check_host_port("localhost").is_err());
        assert!(check_host_port("localhost:0").is_err());
        assert!(check_host_port("localhost:99999").is_err());
        assert!(check_host_port(":9092").is_err());
    }

    /// Each bad config must be rejected with the expected field path; the reason must mention
    /// the given fragment.
    #[test]
    fn bad_configs_name_field_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("", ".", "empty"),
            ("clusters: [", "clusters", "line 2 column 1"),
            ("clusters: []", "clusters", "at least one"),
            ("global: {}", ".", "clusters"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], colour: red}", "clusters[0].colour", "unknown field `colour`"),
            ("clusters:\n  - {name: a, bootstrap_servers: []}", "clusters[0].bootstrap_servers", "at least one"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['nohost']}", "clusters[0].bootstrap_servers[0]", "host:port"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n  - {name: a, bootstrap_servers: ['k:2']}", "clusters[1].name", "duplicate"),
            ("clusters:\n  - {name: '', bootstrap_servers: ['k:1']}", "clusters[0].name", "empty"),
            ("global: {interval: 5 parsecs}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.interval", "unknown time unit"),
            ("global: {interval: 10ms}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.interval", "too short"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], timeout: 0s}", "clusters[0].timeout", "too short"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], topics: {allow: ['(unclosed']}}", "clusters[0].topics.allow[0]", "regular expression"),
            ("global: {groups: {deny: ['[z-a]']}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.groups.deny[0]", "regular expression"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], labels: {cluster: x}}", "clusters[0].labels.cluster", "set by the exporter"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], labels: {'bad-label': x}}", "clusters[0].labels.bad-label", "label name"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {sasl.password: x}}", "clusters[0].client_properties.sasl.password", "inline"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {bootstrap.servers: 'x:1'}}", "clusters[0].client_properties.bootstrap.servers", "managed by the exporter"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {debug: [a, b]}}", "clusters[0].client_properties.debug", "a list"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], secret_properties: {sasl.password: {file: /nonexistent/pw}}}", "clusters[0].secret_properties.sasl.password", "cannot read secret file"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], secret_properties: {sasl.password: {env: KSE_TEST_UNSET_VAR_X}}}", "clusters[0].secret_properties.sasl.password", "not set"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: MD5, username: u, password_env: X}}", "clusters[0].sasl.mechanism", "unknown SASL mechanism"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: PLAIN, username: u, password: inline}}", "clusters[0].sasl.password", "unknown field `password`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: PLAIN, username: u}}", "clusters[0].sasl.password_env/password_file", "needs"),
            ("clusters:\n  - {name: a, bootstrap_servers: 'k:1'}", "clusters[0].bootstrap_servers", "invalid type"),
            ("clusters: {name: a}", "clusters", "invalid type"),
            ("global: {lag: {granularity: broker}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.lag.granularity", "unknown variant `broker`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], interval: 1m, lag: {status_window: 1m}}", "clusters[0].lag.status_window", "shorter than two collection intervals"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], lag: {group_offsets_concurrency: 0}}", "clusters[0].lag.group_offsets_concurrency", "between 1 and 256"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], lag: {colour: 1}}", "clusters[0].lag.colour", "unknown field"),
            ("global: {compliance: {state_dir: /nonexistent/dir}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.compliance.state_dir", "not an existing directory"),
            ("global: {compliance: {replay_window_refresh: 10ms}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.compliance.replay_window_refresh", "at least 1s"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], probe: {topic: 'bad topic'}}", "clusters[0].probe.topic", "legal Kafka topic"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: []}}", "clusters[0].schema_registry.urls", "at least one"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['sr:8081']}}", "clusters[0].schema_registry.urls[0]", "http://"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://u:pw@sr:8081']}}", "clusters[0].schema_registry.urls[0]", "credentials in the URL"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], basic_auth: {username: u, password: inline}}}", "clusters[0].schema_registry.basic_auth.password", "unknown field `password`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], basic_auth: {username: u}}}", "clusters[0].schema_registry.basic_auth.password_env/password_file", "needs"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], basic_auth: {username: u, password_env: KSE_TEST_UNSET_VAR_X}, bearer_token: {env: KSE_TEST_UNSET_VAR_X}}}", "clusters[0].schema_registry.bearer_token", "not both"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], bearer_token: {env: KSE_TEST_UNSET_VAR_X}}}", "clusters[0].schema_registry.bearer_token.env/file", "not set"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], tls: {ca_file: ca.pem}}}", "clusters[0].schema_registry.tls", "no URL uses https"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], tls: {ca_file: /nonexistent/ca.pem}}}", "clusters[0].schema_registry.tls.ca_file", "cannot read"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], tls: {cert_file: /nonexistent/c.pem}}}", "clusters[0].schema_registry.tls.key_file", "required with cert_file"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], interval: 100ms}}", "clusters[0].schema_registry.interval", "between 1s and 1h"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], cross_check: {subject_name_strategy: by_guess}}}", "clusters[0].schema_registry.cross_check.subject_name_strategy", "unknown variant `by_guess`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], sampling: {records: 100000}}}", "clusters[0].schema_registry.sampling.records", "at most 10000"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], colour: red}}", "clusters[0].schema_registry.colour", "unknown field"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], probe: {interval: 10s, timeout: 1s}}", "clusters[0].probe.timeout", "at least the probe interval"),
            ("global: {max_staleness: 0s}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.max_staleness", "greater than 0"),
        ];
        let mut failures = Vec::new();
        for (text, field, reason) in cases {
            match parse(text) {
                Ok(_) => failures.push(format!("accepted bad config:\n{text}")),
                Err(e) => {
                    let line = e.to_string();
                    if &e.field != field || !e.reason.contains(reason) {
                        failures.push(format!(
                            "config:\n{text}\nexpected field {field:?} reason ~{reason:?}\ngot: {line}"
                        ));
                    }
                    assert!(line.starts_with("config file test.yml: field `"), "{line}");
                    assert!(!line.contains('\n'), "message must be one line: {line}");
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
