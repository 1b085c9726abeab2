//! A configuration without a file: one cluster from command-line flags or environment
//! variables (`--kafka.*`, `KSE_KAFKA_*`), and the commented starter configuration
//! (`--config.generate`).
//!
//! Both are YAML text that goes through the same parsing and validation as a file, so a flag is
//! held to exactly the rules of the key it stands for; errors name the flag instead of the key.
//! The password never travels as a flag value: it comes from a file or from the environment
//! variable [`PASSWORD_ENV`], which the generated text names (`password_env`) rather than copies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// Where a configuration built from flags says it comes from (relative paths in flags resolve
/// against the working directory).
pub const FLAGS_SOURCE: &str = "(command-line flags)";

/// The environment variable the SASL password is read from when no password file is given.
pub const PASSWORD_ENV: &str = "KSE_KAFKA_SASL_PASSWORD";

/// Each flag, its environment variable, and the key of the configuration it fills.
pub const FLAGS: &[(&str, &str, &str)] = &[
    (
        "--kafka.bootstrap-servers",
        "KSE_KAFKA_BOOTSTRAP_SERVERS",
        "clusters[0].bootstrap_servers",
    ),
    ("--kafka.cluster-name", "KSE_KAFKA_CLUSTER_NAME", "clusters[0].name"),
    (
        "--kafka.tls-ca-file",
        "KSE_KAFKA_TLS_CA_FILE",
        "clusters[0].tls.ca_file",
    ),
    ("--kafka.tls", "KSE_KAFKA_TLS", "clusters[0].tls"),
    (
        "--kafka.sasl-mechanism",
        "KSE_KAFKA_SASL_MECHANISM",
        "clusters[0].sasl.mechanism",
    ),
    (
        "--kafka.sasl-username",
        "KSE_KAFKA_SASL_USERNAME",
        "clusters[0].sasl.username",
    ),
    (
        "--kafka.sasl-password-file",
        "KSE_KAFKA_SASL_PASSWORD_FILE",
        "clusters[0].sasl.password_file",
    ),
    ("--kafka.sasl-mechanism", "KSE_KAFKA_SASL_MECHANISM", "clusters[0].sasl"),
    (
        "--kafka.bootstrap-servers",
        "KSE_KAFKA_BOOTSTRAP_SERVERS",
        "clusters[0]",
    ),
];

/// Where the configuration comes from: a file, or the `--kafka.*` flags for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    File(PathBuf),
    Flags(SingleCluster),
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(path) => Config::load(path),
            ConfigSource::Flags(flags) => flags.load(),
        }
    }

    /// The file's path, or what the flags call themselves in messages.
    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::File(path) => path,
            ConfigSource::Flags(_) => Path::new(FLAGS_SOURCE),
        }
    }
}

/// The cluster name when `--kafka.cluster-name` is not given.
pub const DEFAULT_CLUSTER_NAME: &str = "kafka";

/// One cluster as the `--kafka.*` flags describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SingleCluster {
    pub bootstrap_servers: Vec<String>,
    pub name: Option<String>,
    pub tls: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password_file: Option<PathBuf>,
    /// True when [`PASSWORD_ENV`] is set (its value is read where the file's `password_env` is).
    pub sasl_password_env: bool,
}

impl SingleCluster {
    /// The flags given (those a file cannot be combined with).
    pub fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |set: bool, flag: &'static str| {
            if set {
                out.push(flag);
            }
        };
        note(!self.bootstrap_servers.is_empty(), "--kafka.bootstrap-servers");
        note(self.name.is_some(), "--kafka.cluster-name");
        note(self.tls, "--kafka.tls");
        note(self.tls_ca_file.is_some(), "--kafka.tls-ca-file");
        note(self.sasl_mechanism.is_some(), "--kafka.sasl-mechanism");
        note(self.sasl_username.is_some(), "--kafka.sasl-username");
        note(self.sasl_password_file.is_some(), "--kafka.sasl-password-file");
        out
    }

    /// The flag behind a librdkafka property the flags set (for errors librdkafka reports).
    pub fn flag_of_property(property: &str) -> Option<&'static str> {
        Some(match property {
            "bootstrap.servers" => "--kafka.bootstrap-servers",
            "ssl.ca.location" => "--kafka.tls-ca-file",
            "security.protocol" => "--kafka.tls",
            "sasl.mechanism" | "sasl.mechanisms" => "--kafka.sasl-mechanism",
            "sasl.username" => "--kafka.sasl-username",
            "sasl.password" => "--kafka.sasl-password-file",
            _ => return None,
        })
    }

    /// The configuration these flags describe, validated as a file would be.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let text = format!("clusters:\n{}", self.cluster_entry()?);
        Config::parse(Path::new(FLAGS_SOURCE), &text).map_err(|e| self.flag_error(e))
    }

    /// The error of the text built from flags, naming the flag (or the password's environment
    /// variable) that set the offending key.
    fn flag_error(&self, e: ConfigError) -> ConfigError {
        if e.field.ends_with("sasl.password_env/password_file") {
            let source = if self.sasl_password_file.is_some() {
                "--kafka.sasl-password-file"
            } else {
                PASSWORD_ENV
            };
            return ConfigError::new(FLAGS_SOURCE, source, e.reason);
        }
        let flag = FLAGS
            .iter()
            .filter(|(_, _, key)| {
                e.field == *key || e.field.starts_with(&format!("{key}.")) || e.field.starts_with(&format!("{key}["))
            })
            .max_by_key(|(_, _, key)| key.len())
            .map(|(flag, _, _)| *flag);
        match flag {
            Some(flag) => ConfigError::new(FLAGS_SOURCE, flag, e.reason),
            None => e,
        }
    }

    /// The cluster's entry of `clusters:` (indented by two), from the flags.
    fn cluster_entry(&self) -> Result<String, ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::new(
                FLAGS_SOURCE,
                "--kafka.bootstrap-servers",
                "required without --config.file (or set KSE_KAFKA_BOOTSTRAP_SERVERS)",
            ));
        }
        let mut s = String::new();
        let name = self.name.as_deref().unwrap_or(DEFAULT_CLUSTER_NAME);
        let _ = writeln!(s, "  - name: {}", quote(name));
        let servers: Vec<String> = self.bootstrap_servers.iter().map(|b| quote(b)).collect();
        let _ = writeln!(s, "    bootstrap_servers: [{}]", servers.join(", "));
        if self.tls || self.tls_ca_file.is_some() {
            match &self.tls_ca_file {
                Some(ca) => {
                    let _ = writeln!(s, "    tls: {{ca_file: {}}}", quote(&ca.display().to_string()));
                }
                None => s.push_str("    tls: {}   # the system CA bundle\n"),
            }
        }
        let sasl_given = self.sasl_username.is_some() || self.sasl_password_file.is_some();
        match &self.sasl_mechanism {
            Some(mechanism) => {
                let _ = writeln!(s, "    sasl:\n      mechanism: {}", quote(mechanism));
                if let Some(u) = &self.sasl_username {
                    let _ = writeln!(s, "      username: {}", quote(u));
                }
                match (&self.sasl_password_file, self.sasl_password_env) {
                    (Some(f), _) => {
                        let _ = writeln!(s, "      password_file: {}", quote(&f.display().to_string()));
                    }
                    (None, true) => {
                        let _ = writeln!(s, "      password_env: {PASSWORD_ENV}");
                    }
                    (None, false) if needs_password(mechanism) => {
                        return Err(ConfigError::new(
                            FLAGS_SOURCE,
                            "--kafka.sasl-password-file",
                            format!(
                                "the SASL password is required: give --kafka.sasl-password-file or set {PASSWORD_ENV}"
                            ),
                        ));
                    }
                    // Any other mechanism is the validation's to judge (and name).
                    (None, false) => {}
                }
            }
            None if sasl_given => {
                return Err(ConfigError::new(
                    FLAGS_SOURCE,
                    "--kafka.sasl-mechanism",
                    "required with --kafka.sasl-username or --kafka.sasl-password-file (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                ));
            }
            None => {}
        }
        Ok(s)
    }

    /// A commented configuration file for this cluster: every section with its default and a
    /// line on what it does. It is checked here to validate to the same settings as the flags.
    pub fn starter(&self) -> Result<String, ConfigError> {
        let mut s = String::from(STARTER_HEADER);
        s.push_str(&self.cluster_entry()?);
        s.push_str(STARTER_CLUSTER_TAIL);
        Config::parse(Path::new("(starter configuration)"), &s).map_err(|e| self.flag_error(e))?;
        Ok(s)
    }
}

/// The mechanisms the flags can configure, which all take a password.
fn needs_password(mechanism: &str) -> bool {
    ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.trim().to_ascii_uppercase().as_str())
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The global part of the starter configuration: every key with its default.
const STARTER_HEADER: &str = "\
# kafka-slo-exporter configuration (docs: README.md#configuration, docs/metrics.md).
# Every key below shows its default; change what you need and check the file with
#   kafka-slo-exporter --config.file THIS_FILE --config.check
global:
  interval: 30s               # collection cycle per cluster (500ms to 1h)
  timeout: 10s                # deadline of each collection stage's Kafka requests
  max_staleness: 2m30s        # serve the last good data this long while collection fails (5 x interval)
  topics:                     # anchored regular expressions; a cluster's own list replaces these
    allow: []                 # empty: every topic
    deny: []                  # e.g. ['__.*'] to leave out internal topics
  groups:
    allow: []                 # empty: every consumer group
    deny: []                  # e.g. ['console-consumer-.*']
  lag:
    granularity: partition    # or `topic`: per-topic aggregates only, far fewer series
    status_window: 10m        # window of the group status rules (ok, warn, stall, stop, rewind)
    status_min_observations: 3   # observations before a partition can leave `ok`
    max_record_reads: 5000    # uncached record timestamp reads per cycle (time lag, replay window)
    group_offsets_concurrency: 16   # committed-offset requests in flight (librdkafka reader)
    history_samples: 720      # high-watermark changes kept per partition to interpolate time lag
  compliance:
    replay_window_refresh: 5m # how often moved log start offsets are read again
    # state_dir: /var/lib/kafka-slo-exporter   # keeps observed partition counts across restarts
  # max_series: 100000        # ceiling on the Kafka state series; whole families go first
  metrics:                    # which families are served (docs/metrics.md#which-families-are-served)
    opt_in: []                # e.g. [kafka_partition_high_watermark] for per-partition offsets
    deny: []                  # families to leave out
  # compat: [kafka_exporter]  # also serve kafka_exporter's names on /kafka_exporter/metrics
clusters:
";

/// The rest of the cluster's entry in the starter configuration.
const STARTER_CLUSTER_TAIL: &str =
    "    labels: {}                # constant labels on every series of the cluster, e.g. {env: prod}
    reader: auto              # auto, native (the exporter's own Kafka client) or librdkafka
    # probe: {}               # end-to-end delivery probe (creates topic kafka-slo-exporter.probe)
    # schema_registry:        # watch the cluster's Schema Registry
    #   urls: [\"http://schema-registry:8081\"]
";

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> SingleCluster {
        SingleCluster {
            bootstrap_servers: vec!["k1:9092".into(), "k2:9092".into()],
            ..SingleCluster::default()
        }
    }

    #[test]
    fn flags_build_the_cluster_a_file_would() {
        let c = plain().load().unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].name, DEFAULT_CLUSTER_NAME);
        assert_eq!(c.clusters[0].bootstrap_servers, vec!["k1:9092", "k2:9092"]);
        let file = Config::parse(
            Path::new("f.yml"),
            "clusters:\n  - name: kafka\n    bootstrap_servers: [k1:9092, k2:9092]\n",
        )
        .unwrap();
        assert_eq!(format!("{:?}", c.clusters), format!("{:?}", file.clusters));
    }

    #[test]
    fn tls_and_sasl_flags_map_to_their_blocks() {
        let f = SingleCluster {
            tls: true,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("exporter".into()),
            sasl_password_file: Some("/nonexistent/pw".into()),
            ..plain()
        };
        let e = f.load().unwrap_err();
        assert_eq!(e.field, "--kafka.sasl-password-file", "{e}");
        let f = SingleCluster {
            sasl_password_file: None,
            sasl_password_env: false,
            ..f
        };
        let e = f.load().unwrap_err();
        assert_eq!(e.field, "--kafka.sasl-password-file", "a password is required: {e}");
        assert!(e.reason.contains(PASSWORD_ENV), "{e}");
        let e = SingleCluster {
            sasl_mechanism: Some("GSSAPI-ish".into()),
            ..plain()
        }
        .load()
        .unwrap_err();
        assert_eq!(e.field, "--kafka.sasl-mechanism", "{e}");
        let e = SingleCluster {
            sasl_username: Some("u".into()),
            ..plain()
        }
        .load()
        .unwrap_err();
        assert_eq!(e.field, "--kafka.sasl-mechanism", "{e}");
        let e = SingleCluster::default().load().unwrap_err();
        assert_eq!(e.field, "--kafka.bootstrap-servers");
        let e = SingleCluster {
            name: Some(String::new()),
            ..plain()
        }
        .load()
        .unwrap_err();
        assert_eq!(e.field, "--kafka.cluster-name", "{e}");
        assert!(
            e.to_string().starts_with("command line flag `--kafka.cluster-name`"),
            "{e}"
        );
    }

    #[test]
    fn values_are_quoted_not_interpreted() {
        let f = SingleCluster {
            bootstrap_servers: vec!["k1:9092, {evil: 1}".into()],
            ..SingleCluster::default()
        };
        let e = f.load().unwrap_err();
        assert_eq!(e.field, "--kafka.bootstrap-servers", "{e}");
    }

    /// The starter file validates, and to the very settings of an empty global section: the
    /// defaults it shows are the defaults.
    #[test]
    fn the_starter_configuration_shows_the_real_defaults() {
        let text = plain().starter().unwrap();
        let starter = Config::parse(Path::new("s.yml"), &text).unwrap();
        let minimal = plain().load().unwrap();
        assert_eq!(format!("{:?}", starter.clusters), format!("{:?}", minimal.clusters));
        assert_eq!(starter.selection, minimal.selection);
        assert_eq!(starter.max_series, minimal.max_series);
        assert!(text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| l.len() < 120));
    }
}
