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

mod kerberos;
pub mod registry;
mod security;
pub(crate) use security::SYSTEM_CA_BUNDLES;
mod single;
mod validate;

use validate::validate;

pub use kerberos::Kerberos;
pub use single::{ConfigSource, SingleCluster, DEFAULT_CLUSTER_NAME, FLAGS_SOURCE, PASSWORD_ENV};

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
    #[serde(default)]
    compat: Vec<String>,
    #[serde(default)]
    metrics: RawMetrics,
}

/// Which Kafka state families are served (`global.metrics`); see [`crate::families`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    opt_in: Vec<String>,
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
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Which client reads the cluster's state: `auto` (default), `native` or `librdkafka`.
    #[serde(default)]
    reader: Option<String>,
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
#[derive(Debug, Clone, PartialEq)]
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
    /// The families `global.metrics` selects, as written (the `--metric-*` flags replace them).
    pub metrics: crate::families::Lists,
    /// The same lists resolved against the catalog.
    pub selection: crate::families::Selection,
    /// Compatibility outputs served beside `/metrics`, each on its own path.
    pub compat: Vec<Compat>,
}

/// A compatibility output: another exporter's family and label names, on its own path so that
/// one output never holds a family with two label schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// danielqsj/kafka_exporter's names and semantics, on [`Compat::path`].
    KafkaExporter,
}

impl Compat {
    pub const ALL: [Compat; 1] = [Compat::KafkaExporter];

    /// The name used in `global.compat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compat::KafkaExporter => "kafka_exporter",
        }
    }

    /// The telemetry path of the output.
    pub fn path(self) -> &'static str {
        match self {
            Compat::KafkaExporter => "/kafka_exporter/metrics",
        }
    }

    pub fn parse(s: &str) -> Result<Compat, String> {
        Compat::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Compat::ALL.iter().map(|c| c.as_str()).collect();
            format!("unknown compatibility output {s:?}; known: {}", known.join(", "))
        })
    }
}

/// One Kafka cluster to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub bootstrap_servers: Vec<String>,
    /// Extra constant labels attached to every series of this cluster.
    pub labels: Vec<(String, String)>,
    /// librdkafka properties, secrets already resolved. Never log the values.
    pub client_properties: Vec<(String, String)>,
    /// Names of the properties in `client_properties` whose values are secret.
    pub secret_keys: Vec<String>,
    /// Set when the cluster authenticates with SASL GSSAPI (Kerberos). What it needs from the
    /// process is checked across clusters when the clients are created.
    pub kerberos: Option<Kerberos>,
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
    /// Which client reads the cluster's state in the collection cycle.
    pub reader: ReaderChoice,
    /// A digest of each file the cluster's clients read when they are created (the Kafka TLS
    /// `*.location` properties, the Schema Registry's TLS files); `None` for one that cannot be
    /// read. Part of the settings, so that a reload restarts a cluster whose certificate or key
    /// was replaced under the same name.
    pub file_digests: Vec<(String, Option<u64>)>,
}

/// Which client serves a cluster's collection cycle. The native reader speaks the Kafka
/// protocol itself and batches what librdkafka's admin API sends one group at a time; it
/// handles PLAINTEXT, TLS and SASL PLAIN, SCRAM and OAUTHBEARER. Whatever it cannot honour
/// (Kerberos, keystores, other client properties) needs librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReaderChoice {
    /// The native reader where it can serve the cluster, librdkafka otherwise.
    #[default]
    Auto,
    /// The native reader; a configuration it cannot honour is a start-up error.
    Native,
    /// librdkafka's admin API.
    Librdkafka,
}

impl ReaderChoice {
    pub fn parse(s: &str) -> Result<ReaderChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ReaderChoice::Auto),
            "native" => Ok(ReaderChoice::Native),
            "librdkafka" => Ok(ReaderChoice::Librdkafka),
            other => Err(format!("unknown reader {other:?}; expected auto, native or librdkafka")),
        }
    }
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

/// Two filters are equal when they hold the same patterns in the same order.
impl PartialEq for NameFilter {
    fn eq(&self, other: &Self) -> bool {
        let patterns = |v: &[Regex]| v.iter().map(|r| r.as_str().to_string()).collect::<Vec<_>>();
        patterns(&self.allow) == patterns(&other.allow) && patterns(&self.deny) == patterns(&other.deny)
    }
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
    /// Applies the `--metric-*` flags: each given list replaces the file's.
    pub fn apply_metric_flags(&mut self, flags: &crate::families::Overrides) -> Result<(), ConfigError> {
        if flags.is_empty() {
            return Ok(());
        }
        self.selection = validate::select(&self.file, &self.metrics, flags)?;
        self.metrics = flags.apply(&self.metrics);
        Ok(())
    }

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
        let from = if self.file == Path::new(FLAGS_SOURCE) {
            "configuration from command-line flags".to_string()
        } else {
            format!("config file {}", self.file.display())
        };
        let _ = writeln!(s, "{from}: OK, {} cluster(s)", self.clusters.len());
        let _ = writeln!(s, "{}", self.selection.summary());
        for c in &self.compat {
            let _ = writeln!(s, "compatibility output {}: {}", c.as_str(), c.path());
        }
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

#[cfg(test)]
mod tests;
