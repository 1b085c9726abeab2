//! Validation of the parsed file into [`Config`]: defaults, ranges, names, filters, secrets
//! and the `tls`/`sasl` blocks. Every rejection names the file, the field path and the reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

/// Validates a parsed file: global settings first (they are the clusters' defaults), then
/// every cluster.
pub(super) fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let err = |field: &str, reason: String| ConfigError::new(path, field, reason);
    let defaults = validate_global(path, &raw.global)?;
    if raw.clusters.is_empty() {
        return Err(err("clusters", "at least one cluster is required".into()));
    }
    let mut clusters: Vec<ClusterConfig> = Vec::with_capacity(raw.clusters.len());
    for (i, rc) in raw.clusters.into_iter().enumerate() {
        let cluster = validate_cluster(path, i, rc, &raw.global, &defaults, &clusters)?;
        clusters.push(cluster);
    }
    if raw.global.max_series == Some(0) {
        return Err(err(
            "global.max_series",
            "must be greater than 0; leave it out for no limit".into(),
        ));
    }
    let m = &raw.global.metrics;
    let metrics = crate::families::Lists {
        allow: m.allow.clone(),
        deny: m.deny.clone(),
        opt_in: m.opt_in.clone(),
    };
    let selection = select(path, &metrics, &crate::families::Overrides::default())?;
    Ok(Config {
        file: path.to_path_buf(),
        clusters,
        max_series: raw.global.max_series,
        metrics,
        selection,
        compat: validate_compat(&raw.global.compat).map_err(|(f, r)| err(&f, r))?,
    })
}

/// `global.compat`: known outputs, each at most once.
fn validate_compat(names: &[String]) -> Result<Vec<Compat>, (String, String)> {
    let mut out: Vec<Compat> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = format!("global.compat[{i}]");
        let c = Compat::parse(name).map_err(|r| (field.clone(), r))?;
        if out.contains(&c) {
            return Err((field, format!("{name:?} is listed twice")));
        }
        out.push(c);
    }
    Ok(out)
}

/// The validated `global` section: the defaults of every cluster.
struct Defaults {
    interval: Duration,
    timeout: Duration,
    topics: NameFilter,
    groups: NameFilter,
    compliance: ComplianceConfig,
}

fn validate_global(path: &Path, g: &RawGlobal) -> Result<Defaults, ConfigError> {
    let err = |field: &str, reason: String| ConfigError::new(path, field, reason);
    let interval = g.interval.unwrap_or(DEFAULT_INTERVAL);
    let timeout = g.timeout.unwrap_or(DEFAULT_TIMEOUT);
    check_interval(interval).map_err(|r| err("global.interval", r))?;
    check_timeout(timeout).map_err(|r| err("global.timeout", r))?;
    let topics = build_filter(path, "global.topics", g.topics.as_ref())?;
    let groups = build_filter(path, "global.groups", g.groups.as_ref())?;
    if g.max_staleness.is_some_and(|ms| ms.is_zero()) {
        return Err(err("global.max_staleness", "must be greater than 0".into()));
    }
    validate_lag(&g.lag, interval).map_err(|(f, r)| err(&format!("global.lag.{f}"), r))?;

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
            "global.compliance.replay_window_refresh",
            "must be at least 1s".into(),
        ));
    }
    if let Some(d) = compliance.state_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(err(
            "global.compliance.state_dir",
            format!("{} is not an existing directory", d.display()),
        ));
    }
    Ok(Defaults {
        interval,
        timeout,
        topics,
        groups,
        compliance,
    })
}

/// Validates `clusters[i]`, filling what it leaves out from the global defaults; `earlier` are
/// the clusters before it, whose names it must not reuse.
fn validate_cluster(
    path: &Path,
    i: usize,
    rc: RawCluster,
    g: &RawGlobal,
    defaults: &Defaults,
    earlier: &[ClusterConfig],
) -> Result<ClusterConfig, ConfigError> {
    let err = |field: String, reason: String| ConfigError::new(path, field, reason);
    let at = |f: &str| format!("clusters[{i}].{f}");

    let name = rc.name.trim().to_string();
    check_cluster_name(&name, earlier).map_err(|r| err(at("name"), r))?;
    if rc.bootstrap_servers.is_empty() {
        return Err(err(at("bootstrap_servers"), "must list at least one host:port".into()));
    }
    for (j, server) in rc.bootstrap_servers.iter().enumerate() {
        check_host_port(server).map_err(|r| err(at(&format!("bootstrap_servers[{j}]")), r))?;
    }
    let mut labels = Vec::with_capacity(rc.labels.len());
    for (k, v) in rc.labels {
        check_label_name(&k).map_err(|r| err(at(&format!("labels.{k}")), r))?;
        labels.push((k, v));
    }

    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let (mut props, mut secret_keys) =
        client_properties(base_dir, rc.client_properties, &rc.secret_properties).map_err(|(f, r)| err(at(&f), r))?;
    let resolve = |env: Option<&str>, file: Option<&Path>| resolve_secret(base_dir, env, file);
    let mut security_props = security::Properties {
        props: &mut props,
        secret_keys: &mut secret_keys,
    };
    let kerberos =
        security::apply(base_dir, rc.tls, rc.sasl, &mut security_props, &resolve).map_err(|(f, r)| err(at(&f), r))?;

    let reader = match rc.reader.as_deref() {
        Some(r) => ReaderChoice::parse(r).map_err(|r| err(at("reader"), r))?,
        None => ReaderChoice::Auto,
    };
    let interval = rc.interval.unwrap_or(defaults.interval);
    check_interval(interval).map_err(|r| err(at("interval"), r))?;
    let timeout = rc.timeout.unwrap_or(defaults.timeout);
    check_timeout(timeout).map_err(|r| err(at("timeout"), r))?;
    let filter = |field: &str, raw: Option<&RawFilter>, default: &NameFilter| match raw {
        Some(f) => build_filter(path, &at(field), Some(f)),
        None => Ok(default.clone()),
    };
    let schema_registry = match rc.schema_registry {
        Some(r) => {
            registry::validate(r, base_dir, resolve).map_err(|(f, r)| err(at(&format!("schema_registry.{f}")), r))?
        }
        None => None,
    };
    let probe = match rc.probe {
        Some(p) if p.enabled.unwrap_or(true) => {
            Some(validate_probe(&p).map_err(|(f, r)| err(at(&format!("probe.{f}")), r))?)
        }
        _ => None,
    };
    let file_digests = file_digests(&props, schema_registry.as_ref());
    Ok(ClusterConfig {
        name,
        bootstrap_servers: rc.bootstrap_servers,
        labels,
        client_properties: props,
        secret_keys,
        kerberos,
        interval,
        timeout,
        max_staleness: g.max_staleness.unwrap_or(interval * 5),
        topics: filter("topics", rc.topics.as_ref(), &defaults.topics)?,
        groups: filter("groups", rc.groups.as_ref(), &defaults.groups)?,
        lag: validate_lag(&rc.lag.or(&g.lag), interval).map_err(|(f, r)| err(at(&format!("lag.{f}")), r))?,
        compliance: defaults.compliance.clone(),
        probe,
        schema_registry,
        shard: crate::shard::Shard::default(),
        reader,
        file_digests,
    })
}

/// The digests of the files named by the `*.location` properties and the registry's TLS
/// settings (see [`ClusterConfig::file_digests`]).
fn file_digests(props: &[(String, String)], registry: Option<&registry::RegistryConfig>) -> Vec<(String, Option<u64>)> {
    use std::hash::{Hash, Hasher};
    let kafka = props
        .iter()
        .filter(|(k, _)| k.ends_with(".location"))
        .map(|(_, v)| Path::new(v.as_str()));
    let files = kafka.chain(registry.into_iter().flat_map(|r| r.tls_files()));
    files
        .map(|f| {
            let digest = std::fs::read(f).ok().map(|bytes| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            });
            (f.display().to_string(), digest)
        })
        .collect()
}

fn check_cluster_name(name: &str, earlier: &[ClusterConfig]) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    match earlier.iter().position(|c| c.name == name) {
        Some(j) => Err(format!(
            "duplicate cluster name {name:?} (already used by clusters[{j}])"
        )),
        None => Ok(()),
    }
}

/// A property list and the names of its secret properties.
type PropertyList = (Vec<(String, String)>, Vec<String>);

/// A cluster's `client_properties` and `secret_properties` merged into one property list, with
/// the names of the secret ones; a rejection names the field below the cluster.
fn client_properties(
    base_dir: &Path,
    inline: BTreeMap<String, serde_yaml::Value>,
    secrets: &BTreeMap<String, RawSecret>,
) -> Result<PropertyList, (String, String)> {
    let mut props: Vec<(String, String)> = Vec::new();
    for (k, v) in inline {
        let field = format!("client_properties.{k}");
        check_property_name(&k).map_err(|r| (field.clone(), r))?;
        if SECRET_PROPERTIES.contains(&k.as_str()) {
            return Err((
                field,
                "secrets may not be written inline; use secret_properties with `env` or `file`".into(),
            ));
        }
        let value = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => {
                return Err((
                    field,
                    format!("must be a string, number or boolean, not {}", yaml_kind(&other)),
                ))
            }
        };
        props.push((k, value));
    }
    let mut secret_keys = Vec::new();
    for (k, s) in secrets {
        let field = format!("secret_properties.{k}");
        check_property_name(k).map_err(|r| (field.clone(), r))?;
        if props.iter().any(|(p, _)| p == k) {
            return Err((field, "also set in client_properties; set it in one place".into()));
        }
        let value = resolve_secret(base_dir, s.env.as_deref(), s.file.as_deref()).map_err(|r| (field, r))?;
        props.push((k.clone(), value));
        secret_keys.push(k.clone());
    }
    Ok((props, secret_keys))
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

pub(super) fn check_host_port(s: &str) -> Result<(), String> {
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

/// Resolves the family lists (the file's, with `flags` in place of those they give); an error
/// names the flag that gave the bad list, else the file's field.
pub(super) fn select(
    path: &Path,
    lists: &crate::families::Lists,
    flags: &crate::families::Overrides,
) -> Result<crate::families::Selection, ConfigError> {
    crate::families::Selection::new(&flags.apply(lists)).map_err(|e| {
        let field = match (e.index, flags.flag_of(e.list)) {
            (Some(i), Some(flag)) => format!("{flag}[{i}]"),
            (Some(i), None) => format!("global.metrics.{}[{i}]", e.list),
            (None, _) => {
                let given: Vec<&str> = ["allow", "deny"].iter().filter_map(|l| flags.flag_of(l)).collect();
                if given.is_empty() {
                    "global.metrics".to_string()
                } else {
                    given.join(" / ")
                }
            }
        };
        ConfigError::new(path, field, e.reason)
    })
}
