//! Command line, logging and exit codes. The work happens in [`kafka_slo_exporter::app`].
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kafka_slo_exporter::app::{self, RunOptions, DEFAULT_PORT};
use kafka_slo_exporter::config::{ConfigSource, SingleCluster, PASSWORD_ENV};
use kafka_slo_exporter::error::ConfigError;
use kafka_slo_exporter::http::HttpOptions;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The quick start `--help` ends with.
const QUICK_START: &str = "\
Quick start, one cluster without a file:
  kafka-slo-exporter --kafka.bootstrap-servers broker-1:9092,broker-2:9092
  KSE_KAFKA_BOOTSTRAP_SERVERS=broker-1:9093 KSE_KAFKA_TLS=true KSE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \\
    KSE_KAFKA_SASL_USERNAME=exporter KSE_KAFKA_SASL_PASSWORD=... kafka-slo-exporter
A commented configuration file to start from:
  kafka-slo-exporter --config.generate --kafka.bootstrap-servers broker-1:9092 > kafka-slo-exporter.yml
Then open http://localhost:10077/metrics.";

/// Prometheus exporter for Kafka SLOs: lag, replication health and ADR compliance.
#[derive(Debug, Parser)]
#[command(name = "kafka-slo-exporter", version, about, after_help = QUICK_START)]
struct Cli {
    /// Path to the YAML configuration file [default: kafka-slo-exporter.yml, unless the
    /// --kafka.* flags describe the cluster].
    #[arg(long = "config.file", value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Print a commented configuration file for the cluster the --kafka.* flags describe, every
    /// setting with its default, and exit.
    #[arg(long = "config.generate")]
    config_generate: bool,
    #[command(flatten)]
    kafka: KafkaFlags,
    /// Compliance policy (YAML); default: the built-in ADR-0007 policy (policies/adr-0007.yml).
    #[arg(long = "policy.file", value_name = "PATH")]
    policy_file: Option<PathBuf>,
    /// Validate the configuration and policy, print a summary and exit (0 = valid, 2 = invalid).
    #[arg(long = "config.check")]
    config_check: bool,
    /// Address to listen on: host:port, [v6]:port, or :port for all interfaces.
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value_t = format!(":{DEFAULT_PORT}"))]
    listen_address: String,
    /// Path under which metrics are exposed.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = telemetry_path)]
    telemetry_path: String,
    /// Maximum number of HTTP connections past their first request; at the limit a new request
    /// takes over the connection idle longest.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Maximum number of connections still in their TLS handshake or first request head; at
    /// the limit the one waiting longest is closed.
    #[arg(long = "web.max-pending-connections", value_name = "N", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    max_pending_connections: u32,
    /// Exporter-toolkit web config file: TLS, client certificates, basic auth, response headers.
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config_file: Option<PathBuf>,
    /// Time a client has for the TLS handshake and for sending each request's headers.
    #[arg(long = "web.read-header-timeout", value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    read_header_timeout: Duration,
    /// Time a client may read nothing of a response being written before it is disconnected.
    #[arg(long = "web.write-timeout", value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    write_timeout: Duration,
    /// How long shutdown waits for open HTTP connections and collection tasks.
    #[arg(long = "shutdown.timeout", value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// This process's shard (0-based) of every cluster's topics and consumer groups.
    #[arg(long = "shard", value_name = "N", default_value_t = 0)]
    shard: u32,
    /// Number of exporter processes sharing the topics and consumer groups by a stable hash.
    #[arg(long = "total-shards", value_name = "M", default_value_t = 1)]
    total_shards: u32,
    /// Kafka state families to serve, and no others: comma-separated anchored regular
    /// expressions over the names in docs/metrics.md. Replaces `global.metrics.allow`; excludes
    /// --metric-denylist.
    #[arg(long = "metric-allowlist", value_name = "PATTERNS", value_parser = metric_list)]
    metric_allowlist: Option<MetricList>,
    /// Kafka state families not to serve (comma-separated patterns). Replaces
    /// `global.metrics.deny`.
    #[arg(long = "metric-denylist", value_name = "PATTERNS", value_parser = metric_list)]
    metric_denylist: Option<MetricList>,
    /// Families that are off by default to serve, and problems-only families to serve for
    /// every partition or state (comma-separated patterns). Replaces `global.metrics.opt_in`.
    #[arg(long = "metric-opt-in-list", value_name = "PATTERNS", value_parser = metric_list)]
    metric_opt_in_list: Option<MetricList>,
    /// Ask the exporter listening on --web.listen-address for /-/healthy and exit (0 = healthy,
    /// 1 = not); for container health checks.
    #[arg(long = "healthcheck")]
    healthcheck: bool,
}

/// One cluster without a configuration file; each flag can come from its environment variable.
#[derive(Debug, clap::Args)]
struct KafkaFlags {
    /// Bootstrap servers (host:port), comma-separated or repeated; a single-cluster
    /// configuration without a file.
    #[arg(
        long = "kafka.bootstrap-servers",
        value_name = "HOST:PORT",
        env = "KSE_KAFKA_BOOTSTRAP_SERVERS",
        value_delimiter = ','
    )]
    bootstrap_servers: Vec<String>,
    /// The `cluster` label of the cluster [default: kafka].
    #[arg(long = "kafka.cluster-name", value_name = "NAME", env = "KSE_KAFKA_CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// Connect with TLS, trusting the system CA bundle unless --kafka.tls-ca-file is given.
    #[arg(long = "kafka.tls", env = "KSE_KAFKA_TLS", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    tls: bool,
    /// CA bundle (PEM) that signed the brokers' certificates; implies --kafka.tls.
    #[arg(long = "kafka.tls-ca-file", value_name = "PATH", env = "KSE_KAFKA_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long = "kafka.sasl-mechanism",
        value_name = "MECHANISM",
        env = "KSE_KAFKA_SASL_MECHANISM"
    )]
    sasl_mechanism: Option<String>,
    /// SASL username.
    #[arg(long = "kafka.sasl-username", value_name = "USER", env = "KSE_KAFKA_SASL_USERNAME")]
    sasl_username: Option<String>,
    /// File holding the SASL password; without it the password is read from the environment
    /// variable KSE_KAFKA_SASL_PASSWORD (never from a flag value).
    #[arg(
        long = "kafka.sasl-password-file",
        value_name = "PATH",
        env = "KSE_KAFKA_SASL_PASSWORD_FILE"
    )]
    sasl_password_file: Option<PathBuf>,
}

impl KafkaFlags {
    fn single(&self) -> SingleCluster {
        SingleCluster {
            bootstrap_servers: self
                .bootstrap_servers
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            name: self.cluster_name.clone(),
            tls: self.tls,
            tls_ca_file: self.tls_ca_file.clone(),
            sasl_mechanism: self.sasl_mechanism.clone(),
            sasl_username: self.sasl_username.clone(),
            sasl_password_file: self.sasl_password_file.clone(),
            sasl_password_env: std::env::var_os(PASSWORD_ENV).is_some(),
        }
    }
}

/// The file or the --kafka.* flags; both at once is an error naming the first flag given.
fn config_source(cli: &Cli) -> Result<ConfigSource, ConfigError> {
    let single = cli.kafka.single();
    let given = single.given();
    match (&cli.config_file, given.first()) {
        (Some(file), Some(flag)) => Err(ConfigError::new(
            file,
            *flag,
            format!(
                "cannot be combined with --config.file {}: describe the cluster in the file, or leave --config.file out (flags and KSE_KAFKA_* variables)",
                file.display()
            ),
        )),
        (Some(file), None) => Ok(ConfigSource::File(file.clone())),
        (None, Some(_)) => Ok(ConfigSource::Flags(single)),
        (None, None) => Ok(ConfigSource::File(PathBuf::from(DEFAULT_CONFIG_FILE))),
    }
}

/// The configuration file read when neither --config.file nor --kafka.* flags are given.
const DEFAULT_CONFIG_FILE: &str = "kafka-slo-exporter.yml";

/// `--config.generate`: the starter configuration on stdout.
fn config_generate(cli: &Cli) -> ExitCode {
    if let Some(file) = &cli.config_file {
        eprintln!(
            "error: --config.generate writes a new configuration; it does not read --config.file {}",
            file.display()
        );
        return ExitCode::from(2);
    }
    match cli.kafka.single().starter() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.len() < 2 {
        return Err("must start with '/' and name a path other than '/'".into());
    }
    if s == "/-/healthy" || s == "/-/ready" {
        return Err("collides with a built-in endpoint".into());
    }
    Ok(s.to_string())
}

/// The patterns of one `--metric-*` flag (a newtype, so that clap takes the flag once with a
/// comma-separated value rather than as a repeated list).
#[derive(Debug, Clone)]
struct MetricList(Vec<String>);

fn metric_list(s: &str) -> Result<MetricList, String> {
    Ok(MetricList(kafka_slo_exporter::families::split_flag(s)))
}

fn metric_flags(cli: &Cli) -> kafka_slo_exporter::families::Overrides {
    kafka_slo_exporter::families::Overrides {
        allow: cli.metric_allowlist.clone().map(|l| l.0),
        deny: cli.metric_denylist.clone().map(|l| l.0),
        opt_in: cli.metric_opt_in_list.clone().map(|l| l.0),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `--healthcheck`: asks a running exporter's readiness endpoint, for container health checks.
fn healthcheck(cli: &Cli) -> ExitCode {
    let web = match &cli.web_config_file {
        Some(f) => kafka_slo_exporter::http::web_config::self_check(f).map_err(|e| format!("web config: {e}")),
        None => Ok(Default::default()),
    };
    let checked = web.and_then(|web| {
        app::parse_listen_address(&cli.listen_address).and_then(|addr| {
            kafka_slo_exporter::healthcheck::check(
                kafka_slo_exporter::healthcheck::target(addr),
                Duration::from_secs(3),
                &web,
            )
        })
    });
    match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--config.check`: loads the configuration, the policy and the web config, prints their
/// summaries, exits 2 on the first error.
fn config_check(cli: &Cli) -> ExitCode {
    let loaded = match config_source(cli)
        .and_then(|source| app::load(&source, cli.policy_file.as_deref(), &metric_flags(cli)))
    {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", loaded.config.summary());
    print!("{}", loaded.policy.summary());
    if let Some(f) = &cli.web_config_file {
        match kafka_slo_exporter::http::web_config::WebSecurity::load(f) {
            Ok(w) => println!("{}", w.summary()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    kafka_slo_exporter::kafka::limit_malloc_arenas();
    let cli = Cli::parse();
    if cli.healthcheck {
        return healthcheck(&cli);
    }
    let shard = match kafka_slo_exporter::shard::Shard::new(cli.shard, cli.total_shards) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };

    if cli.config_generate {
        return config_generate(&cli);
    }
    if cli.config_check {
        return config_check(&cli);
    }
    let config = match config_source(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };

    init_logging(cli.log_level, cli.log_format);
    // Every pending connection holds a descriptor: the soft limit (often 1024) would cut the
    // endpoint off long before --web.max-pending-connections.
    match kafka_slo_exporter::kafka::raise_open_files_limit() {
        Some(limit) => tracing::debug!(limit, "open files limit"),
        None => tracing::warn!("cannot read or raise the open files limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kse-worker")
        // Kafka calls block; each cluster runs at most one cycle at a time.
        .max_blocking_threads(64)
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = RunOptions {
        metric_flags: metric_flags(&cli),
        config,
        policy_file: cli.policy_file,
        listen_address: cli.listen_address,
        http: HttpOptions {
            telemetry_path: cli.telemetry_path,
            max_connections: cli.max_connections as usize,
            max_pending_connections: cli.max_pending_connections as usize,
            header_read_timeout: cli.read_header_timeout,
            write_timeout: cli.write_timeout,
            web_config_file: cli.web_config_file,
        },
        shutdown_timeout: cli.shutdown_timeout,
        shard,
    };
    match runtime.block_on(app::run(opts)) {
        Ok(()) => {
            // Blocking Kafka calls still in flight must not hold the process open.
            runtime.shutdown_timeout(Duration::from_millis(100));
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line on stderr whatever the log format, so wrappers and humans see one message.
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
