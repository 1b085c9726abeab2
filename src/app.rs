//! Wiring: configuration → sources → pollers → HTTP, the reload on SIGHUP and
//! `POST /-/reload`, and the shutdown order.

mod clusters;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::config::{ClusterConfig, ReaderChoice, SingleCluster};
use crate::error::{AppError, ConfigError};
use crate::http::{HttpOptions, HttpState, View};
use crate::kafka::{ClientErrors, KafkaSource, NativeSource, RdKafkaSource, ReaderKind, ReaderStats};
use crate::policy::Policy;
use crate::selfmetrics::{Rejections, ReloadStatus};
use crate::supervisor::Supervisor;
use clusters::{Clients, Clusters};

/// Default port: 9100–9999 of the Prometheus default-port allocation list is exhausted, so the
/// exporter uses one from the continuation above 10000.
pub const DEFAULT_PORT: u16 = 10077;

/// Everything `run` needs from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file, or the `--kafka.*` flags of a single cluster.
    pub config: crate::config::ConfigSource,
    /// Compliance policy; `None` for the built-in ADR-0007 policy.
    pub policy_file: Option<PathBuf>,
    pub listen_address: String,
    pub http: HttpOptions,
    pub shutdown_timeout: Duration,
    /// This process's share of every cluster's topics and groups.
    pub shard: crate::shard::Shard,
    /// The `--metric-*` lists that replace the file's `global.metrics` lists.
    pub metric_flags: crate::families::Overrides,
}

/// Everything loaded from files before the exporter starts.
pub struct Loaded {
    pub config: Config,
    pub policy: Policy,
    pub sources: Vec<Arc<dyn KafkaSource>>,
    /// Per cluster, the error counters every Kafka client of the cluster reports into.
    pub client_errors: Vec<ClientErrors>,
    /// Per cluster, which reader serves it and the requests the native reader sent.
    pub reader_stats: Vec<ReaderStats>,
}

/// Loads the configuration and the policy, and creates (but does not connect) a client per
/// cluster, so that every property librdkafka rejects is reported as a configuration error.
pub fn load(
    source: &crate::config::ConfigSource,
    policy_file: Option<&std::path::Path>,
    metric_flags: &crate::families::Overrides,
) -> Result<Loaded, ConfigError> {
    let mut config = source.load()?;
    let config_file = source.path();
    config.apply_metric_flags(metric_flags)?;
    let policy = match policy_file {
        Some(p) => Policy::load(p)?,
        None => Policy::builtin(),
    };
    let mut sources: Vec<Arc<dyn KafkaSource>> = Vec::with_capacity(config.clusters.len());
    let client_errors: Vec<ClientErrors> = config.clusters.iter().map(|_| ClientErrors::new()).collect();
    let reader_stats: Vec<ReaderStats> = config.clusters.iter().map(|_| ReaderStats::new()).collect();
    // Before any client exists: GSSAPI clients read the environment this sets.
    crate::kafka::kerberos::prepare(&config.clusters)
        .map_err(|(field, reason)| ConfigError::new(config_file, field, reason))?;
    for (i, c) in config.clusters.iter().enumerate() {
        if let Some(k) = &c.kerberos {
            crate::kafka::check_sasl_mechanism("GSSAPI").map_err(|reason| {
                ConfigError::new(
                    config_file,
                    format!("clusters[{i}].{}", k.field),
                    format!(
                        "GSSAPI (Kerberos) is not supported by the linked librdkafka ({reason}); use SCRAM-SHA-512, OAUTHBEARER or mutual TLS"
                    ),
                )
            })?;
        }
        let source = RdKafkaSource::new(c, &client_errors[i]).map_err(|(property, reason)| {
            // A cluster from the --kafka.* flags: name the flag behind the property.
            // librdkafka names a file it cannot load only in the message (`ssl.ca.location
            // failed: ...`).
            let named = || {
                reason
                    .split_once(" failed:")
                    .map(|(p, _)| p)
                    .filter(|p| !p.contains(' '))
            };
            let flag = match source {
                crate::config::ConfigSource::Flags(_) => property
                    .as_deref()
                    .or_else(named)
                    .and_then(SingleCluster::flag_of_property),
                crate::config::ConfigSource::File(_) => None,
            };
            if let Some(flag) = flag {
                return ConfigError::new(config_file, flag, reason);
            }
            let field = match property {
                Some(k) if c.client_properties.iter().any(|(p, _)| *p == k) => {
                    let section = if c.secret_keys.contains(&k) {
                        "secret_properties"
                    } else {
                        "client_properties"
                    };
                    format!("clusters[{i}].{section}.{k}")
                }
                _ => format!("clusters[{i}].client_properties"),
            };
            ConfigError::new(config_file, field, reason)
        })?;
        let source = choose_reader(c, source, &client_errors[i], &reader_stats[i])
            .map_err(|reason| ConfigError::new(config_file, format!("clusters[{i}].reader"), reason))?;
        sources.push(source);
    }
    Ok(Loaded {
        config,
        policy,
        sources,
        client_errors,
        reader_stats,
    })
}

/// The source serving `c`'s collection cycle (see [`ReaderChoice`]), recorded in `stats` (logged
/// when the cluster starts: a reload loads every cluster, but starts only the new or changed
/// ones). `records` reads records in either case. Fails only when the native reader was asked
/// for and cannot serve the cluster.
fn choose_reader(
    c: &ClusterConfig,
    records: RdKafkaSource,
    errors: &ClientErrors,
    stats: &ReaderStats,
) -> Result<Arc<dyn KafkaSource>, String> {
    let cluster = c.name.as_str();
    let (source, kind, reason): (Arc<dyn KafkaSource>, ReaderKind, String) = match c.reader {
        ReaderChoice::Librdkafka => (Arc::new(records), ReaderKind::Librdkafka, "configured".into()),
        ReaderChoice::Native => match NativeSource::new(c, records, errors, stats) {
            Ok(s) => (Arc::new(s), ReaderKind::Native, "configured".into()),
            Err((reason, _)) => return Err(format!("the native reader cannot serve this cluster: {reason}")),
        },
        ReaderChoice::Auto => match NativeSource::new(c, records, errors, stats) {
            Ok(s) => (Arc::new(s), ReaderKind::Native, "default".into()),
            Err((reason, records)) => (Arc::new(*records), ReaderKind::Librdkafka, reason),
        },
    };
    tracing::debug!(
        cluster,
        reader = kind.as_str(),
        reason = reason.as_str(),
        "collection reader chosen"
    );
    stats.set_reader(kind, reason);
    Ok(source)
}

/// Connections the kernel may queue before they are accepted (capped by `net.core.somaxconn`):
/// a burst of thousands of connections must not make new ones time out in SYN retries.
const LISTEN_BACKLOG: u32 = 65535;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Parses `host:port`, `:port` (all interfaces) or `[v6]:port`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("invalid listen address {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("listen address {s:?} resolves to nothing"))
}

/// Runs the exporter until SIGINT or SIGTERM, reloading on SIGHUP and `POST /-/reload`.
pub async fn run(opts: RunOptions) -> Result<(), AppError> {
    // Installed before anything serves: a SIGTERM sent as soon as the exporter answers
    // (a supervisor that waits for /-/healthy, then stops it) must be a graceful shutdown,
    // not the default action that kills the process.
    let mut signals = Signals::install()?;
    let (config, policy, clients) = load_run(&opts)?;
    let web = match &opts.http.web_config_file {
        Some(f) => Some(Arc::new(crate::http::web_config::WebSecurity::load(f)?)),
        None => None,
    };
    let (listener, bound) = bind(&opts.listen_address)?;

    let mut supervisor = Supervisor::new();
    let policy_source = policy.source.clone();
    let mut clusters = Clusters::start(&config, policy, clients, opts.shard, &mut supervisor)?;
    let rejections = Rejections::default();
    let reloads = ReloadStatus::started(SystemTime::now());
    let (trigger, mut requests) = crate::reload::Trigger::channel();
    let state = Arc::new(HttpState {
        view: ArcSwap::from_pointee(view(&clusters, &config, policy_source, &rejections, &reloads)),
        reload: trigger,
        options: opts.http.clone(),
        web,
        rejections,
    });
    tracing::info!(address = %bound, telemetry_path = opts.http.telemetry_path.as_str(), "listening");
    let stop = supervisor.signal();
    supervisor.task(
        "http server",
        crate::http::serve(listener, Arc::clone(&state), stop, opts.shutdown_timeout),
    );

    loop {
        let reply = tokio::select! {
            signal = signals.next() => match signal {
                Signal::Reload => None,
                Signal::Stop(signal) => {
                    tracing::info!(signal, "shutting down");
                    break;
                }
            },
            Some(reply) = requests.recv() => Some(reply),
        };
        let outcome = reload(&opts, &mut clusters, &mut supervisor, &state, &reloads).await;
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
    // Reload requests still queued are answered with an error rather than left waiting.
    drop(requests);
    let running = supervisor
        .shutdown(opts.shutdown_timeout + Duration::from_millis(500))
        .await;
    crate::kafka::kerberos::remove_own_credential_cache();
    if running.is_empty() {
        tracing::info!("stopped");
    } else {
        let running = running.join(", ");
        tracing::warn!(running, "shutdown timeout reached; exiting with tasks still running");
    }
    Ok(())
}

/// [`load`] with this process's shard set on every cluster: what start-up and reloads run.
fn load_run(opts: &RunOptions) -> Result<(Config, Policy, Clients), ConfigError> {
    let Loaded {
        mut config,
        policy,
        sources,
        client_errors,
        reader_stats,
    } = load(&opts.config, opts.policy_file.as_deref(), &opts.metric_flags)?;
    for c in &mut config.clusters {
        c.shard = opts.shard;
    }
    let clients = Clients {
        sources,
        client_errors,
        reader_stats,
    };
    Ok((config, policy, clients))
}

/// What the HTTP endpoints serve for the running clusters under `config`'s global settings
/// (series selection, compatibility outputs, series limit).
fn view(
    clusters: &Clusters,
    config: &Config,
    policy_source: String,
    rejections: &Rejections,
    reloads: &ReloadStatus,
) -> View {
    let slots = clusters.slots();
    View {
        registry: crate::collectors::registry(
            slots.clone(),
            clusters.side(rejections, reloads),
            clusters.shard(),
            config.max_series,
            config.selection.clone(),
        ),
        compat: config
            .compat
            .iter()
            .map(|c| (*c, crate::collectors::compat(slots.clone(), *c)))
            .collect(),
        slots,
        policy_source,
    }
}

/// Reloads the configuration, the policy and the web config, recording the outcome in
/// `reloads`. Invalid files change nothing: the error is logged and returned.
async fn reload(
    opts: &RunOptions,
    clusters: &mut Clusters,
    supervisor: &mut Supervisor,
    state: &HttpState,
    reloads: &ReloadStatus,
) -> Result<(), String> {
    tracing::info!("reloading the configuration");
    match try_reload(opts, clusters, supervisor, state, reloads).await {
        Ok(d) => {
            reloads.succeeded(SystemTime::now());
            tracing::info!(
                added = ?d.added,
                removed = ?d.removed,
                changed = ?d.changed,
                unchanged = ?d.unchanged,
                "configuration reloaded"
            );
            Ok(())
        }
        Err(e) => {
            reloads.failed();
            tracing::error!(
                error = e.as_str(),
                "configuration reload failed; the running configuration stays"
            );
            Err(e)
        }
    }
}

async fn try_reload(
    opts: &RunOptions,
    clusters: &mut Clusters,
    supervisor: &mut Supervisor,
    state: &HttpState,
    reloads: &ReloadStatus,
) -> Result<crate::reload::ClusterDiff, String> {
    // File reads and client creation block: off the runtime's workers.
    let run = opts.clone();
    let (config, policy, clients) = tokio::task::spawn_blocking(move || load_run(&run))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if let Some(web) = &state.web {
        let web = Arc::clone(web);
        tokio::task::spawn_blocking(move || web.reload())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let policy_source = policy.source.clone();
    let diff = clusters
        .reload(&config, policy, clients, supervisor, opts.shutdown_timeout)
        .await;
    // Even after a cluster that failed to start, serve what runs now.
    state.view.store(Arc::new(view(
        clusters,
        &config,
        policy_source,
        &state.rejections,
        reloads,
    )));
    diff.map_err(|e| e.to_string())
}

/// Binds the listen address.
fn bind(address: &str) -> Result<(TcpListener, SocketAddr), AppError> {
    let listen_error = |source| AppError::Listen {
        address: address.to_string(),
        source,
    };
    let addr = parse_listen_address(address)
        .map_err(|reason| listen_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, reason)))?;
    let listener = listen(addr).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(|e| AppError::Runtime(e.to_string()))?;
    Ok((listener, bound))
}

/// SIGTERM, SIGINT and SIGHUP, captured from the moment [`Signals::install`] returns.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, AppError> {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate())
            .map_err(|e| AppError::Runtime(format!("cannot install SIGTERM handler: {e}")))?;
        let int = signal(SignalKind::interrupt())
            .map_err(|e| AppError::Runtime(format!("cannot install SIGINT handler: {e}")))?;
        let hup = signal(SignalKind::hangup())
            .map_err(|e| AppError::Runtime(format!("cannot install SIGHUP handler: {e}")))?;
        Ok(Self { term, int, hup })
    }

    /// Waits for the next SIGTERM, SIGINT or SIGHUP.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// What a signal asks for.
enum Signal {
    /// SIGHUP: reload the configuration and the policy.
    Reload,
    /// SIGTERM or SIGINT (named): shut down.
    Stop(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_forms() {
        assert_eq!(parse_listen_address(":10077").unwrap().port(), 10077);
        assert!(parse_listen_address(":10077").unwrap().ip().is_unspecified());
        assert_eq!(parse_listen_address("127.0.0.1:0").unwrap().port(), 0);
        assert!(parse_listen_address("[::1]:9").unwrap().is_ipv6());
        assert!(parse_listen_address("nonsense").is_err());
        assert!(parse_listen_address("127.0.0.1:99999").is_err());
    }
}
