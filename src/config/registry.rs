//! The `schema_registry` section of a cluster: serde structures, defaults and validation.
//!
//! Like the rest of the configuration, loading reads files (secrets, certificates) but never
//! touches the network. Secrets come only from an environment variable or a file; the validated
//! [`RegistryConfig`] never prints them (its `Debug` and [`RegistryConfig::summary`] redact).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// `schema_registry:` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaRegistry {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer_token: Option<RawToken>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default, deserialize_with = "super::duration::opt")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "super::duration::opt")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "super::duration::opt")]
    max_staleness: Option<Duration>,
    #[serde(default)]
    page_size: Option<usize>,
    #[serde(default)]
    lookups_per_poll: Option<usize>,
    #[serde(default, deserialize_with = "super::duration::opt")]
    subject_refresh: Option<Duration>,
    #[serde(default)]
    subject_labels: Option<bool>,
    #[serde(default)]
    cross_check: RawCrossCheck,
    #[serde(default)]
    sampling: RawSampling,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrossCheck {
    #[serde(default)]
    classes: Option<Vec<String>>,
    #[serde(default)]
    subject_name_strategy: Option<SubjectNameStrategy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampling {
    #[serde(default)]
    records: Option<usize>,
}

/// How producers name the subject of a topic's values (the serializer's
/// `value.subject.name.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectNameStrategy {
    /// `<topic>-value` (and `<topic>-key`): the serializers' default.
    TopicName,
    /// `<topic>-<fully qualified record name>`.
    TopicRecordName,
    /// `<fully qualified record name>`: not tied to a topic, so nothing can be cross-checked.
    RecordName,
}

impl SubjectNameStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectNameStrategy::TopicName => "topic_name",
            SubjectNameStrategy::TopicRecordName => "topic_record_name",
            SubjectNameStrategy::RecordName => "record_name",
        }
    }
}

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// How the exporter authenticates to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// The validated registry settings of a cluster.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Base URLs without a trailing slash, tried in order (the first that answers is kept).
    pub urls: Vec<String>,
    pub auth: Option<RegistryAuth>,
    /// TLS settings built from `tls` (CA and client certificate); `None` uses the public roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What `tls` was built from, for the summary.
    tls_files: Vec<(&'static str, PathBuf)>,
    pub interval: Duration,
    /// Per HTTP request.
    pub timeout: Duration,
    /// How long the last inventory is served while the registry cannot be read.
    pub max_staleness: Duration,
    /// `limit` of paged listings.
    pub page_size: usize,
    /// Per-subject and per-id requests per poll (the rest waits for the next poll).
    pub lookups_per_poll: usize,
    /// How old a subject's cached compatibility and latest version may get.
    pub subject_refresh: Duration,
    /// Export series with a `subject` label (one per subject: cardinality).
    pub subject_labels: bool,
    /// Policy classes whose topics must have a value subject.
    pub required_classes: Vec<String>,
    pub strategy: SubjectNameStrategy,
    /// Records sampled per topic for the wire-format check; 0 disables sampling.
    pub sample_records: usize,
}

/// Equal when every setting is: the TLS client configuration by the files it was built from.
impl PartialEq for RegistryConfig {
    fn eq(&self, o: &Self) -> bool {
        self.urls == o.urls
            && self.auth == o.auth
            && self.tls.is_some() == o.tls.is_some()
            && self.tls_files == o.tls_files
            && self.interval == o.interval
            && self.timeout == o.timeout
            && self.max_staleness == o.max_staleness
            && self.page_size == o.page_size
            && self.lookups_per_poll == o.lookups_per_poll
            && self.subject_refresh == o.subject_refresh
            && self.subject_labels == o.subject_labels
            && self.required_classes == o.required_classes
            && self.strategy == o.strategy
            && self.sample_records == o.sample_records
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("urls", &self.urls)
            .field("auth", &self.auth)
            .field("tls_files", &self.tls_files)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("max_staleness", &self.max_staleness)
            .field("page_size", &self.page_size)
            .field("lookups_per_poll", &self.lookups_per_poll)
            .field("subject_refresh", &self.subject_refresh)
            .field("subject_labels", &self.subject_labels)
            .field("required_classes", &self.required_classes)
            .field("strategy", &self.strategy)
            .field("sample_records", &self.sample_records)
            .finish()
    }
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PAGE_SIZE: usize = 1000;
pub const DEFAULT_LOOKUPS_PER_POLL: usize = 100;
pub const DEFAULT_SUBJECT_REFRESH: Duration = Duration::from_secs(600);
/// Classes of the default (ADR-0007) policy whose topics carry events that need a schema.
pub const DEFAULT_REQUIRED_CLASSES: &[&str] = &["domain_event", "cdc"];

impl RegistryConfig {
    /// The certificate and key files the TLS settings were built from.
    pub fn tls_files(&self) -> impl Iterator<Item = &Path> {
        self.tls_files.iter().map(|(_, p)| p.as_path())
    }

    /// One line for `--config.check`; secrets are never printed.
    pub fn summary(&self) -> String {
        let auth = match &self.auth {
            None => "none".to_string(),
            Some(RegistryAuth::Basic { username, .. }) => format!("basic (user {username:?}, password <secret>)"),
            Some(RegistryAuth::Bearer(_)) => "bearer token <secret>".to_string(),
        };
        let tls = if self.tls_files.is_empty() {
            String::new()
        } else {
            let files: Vec<String> = self
                .tls_files
                .iter()
                .map(|(k, p)| format!("{k} {}", p.display()))
                .collect();
            format!(", tls: {}", files.join(", "))
        };
        let sampling = if self.sample_records == 0 {
            "off".to_string()
        } else {
            format!("last {} records per topic", self.sample_records)
        };
        format!(
            "schema registry: {} (interval {}, timeout {}, auth {auth}{tls}), subjects required for classes [{}] ({}), sampling {sampling}",
            self.urls.join(", "),
            humantime::format_duration(self.interval),
            humantime::format_duration(self.timeout),
            self.required_classes.join(", "),
            self.strategy.as_str(),
        )
    }
}

/// Validates the section. `Ok(None)` when it is disabled. Errors carry the field path below
/// `schema_registry` and the reason.
pub fn validate(
    mut raw: RawSchemaRegistry,
    base_dir: &Path,
    resolve_secret: impl Fn(Option<&str>, Option<&Path>) -> Result<String, String>,
) -> Result<Option<RegistryConfig>, (String, String)> {
    let e = |f: &str, r: String| (f.to_string(), r);
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    if raw.urls.is_empty() {
        return Err(e("urls", "must list at least one http:// or https:// URL".into()));
    }
    let mut urls = Vec::with_capacity(raw.urls.len());
    for (i, u) in raw.urls.iter().enumerate() {
        urls.push(check_url(u).map_err(|r| e(&format!("urls[{i}]"), r))?);
    }

    let auth = auth(raw.basic_auth.take(), raw.bearer_token.take(), &resolve_secret)?;
    if auth.is_some() && urls.iter().any(|u| u.starts_with("http://")) {
        tracing::warn!("schema registry credentials are configured for a plain http:// URL; they travel unencrypted");
    }

    let (tls, tls_files) = match raw.tls.take() {
        None => (None, Vec::new()),
        Some(t) => tls(t, base_dir, &urls)?,
    };

    let limits = limits(&raw)?;

    let required_classes = match raw.cross_check.classes {
        None => DEFAULT_REQUIRED_CLASSES.iter().map(|c| c.to_string()).collect(),
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                if c.trim().is_empty() {
                    return Err(e(&format!("cross_check.classes[{i}]"), "must not be empty".into()));
                }
            }
            list
        }
    };
    let sample_records = raw.sampling.records.unwrap_or(0);
    if sample_records > 10_000 {
        return Err(e(
            "sampling.records",
            "must be at most 10000 (0 disables sampling)".into(),
        ));
    }

    Ok(Some(RegistryConfig {
        urls,
        auth,
        tls,
        tls_files,
        interval: limits.interval,
        timeout: limits.timeout,
        max_staleness: limits.max_staleness,
        page_size: limits.page_size,
        lookups_per_poll: limits.lookups_per_poll,
        subject_refresh: limits.subject_refresh,
        subject_labels: raw.subject_labels.unwrap_or(false),
        required_classes,
        strategy: raw
            .cross_check
            .subject_name_strategy
            .unwrap_or(SubjectNameStrategy::TopicName),
        sample_records,
    }))
}

/// The registry credentials: basic auth or a bearer token (not both), from env or file.
fn auth(
    basic: Option<RawBasicAuth>,
    bearer: Option<RawToken>,
    resolve_secret: &impl Fn(Option<&str>, Option<&Path>) -> Result<String, String>,
) -> Result<Option<RegistryAuth>, (String, String)> {
    let e = |f: &str, r: String| (f.to_string(), r);
    Ok(match (basic, bearer) {
        (Some(_), Some(_)) => {
            return Err(e(
                "bearer_token",
                "give either basic_auth or bearer_token, not both".into(),
            ))
        }
        (Some(b), None) => {
            if b.username.is_empty() || b.username.contains(':') {
                return Err(e(
                    "basic_auth.username",
                    "must be non-empty and must not contain ':'".into(),
                ));
            }
            let password = resolve_secret(b.password_env.as_deref(), b.password_file.as_deref())
                .map_err(|r| e("basic_auth.password_env/password_file", r))?;
            Some(RegistryAuth::Basic {
                username: b.username,
                password: Secret(password),
            })
        }
        (None, Some(t)) => {
            let token =
                resolve_secret(t.env.as_deref(), t.file.as_deref()).map_err(|r| e("bearer_token.env/file", r))?;
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(e(
                    "bearer_token.env/file",
                    "the token must not contain whitespace or control characters".into(),
                ));
            }
            Some(RegistryAuth::Bearer(Secret(token)))
        }
        (None, None) => None,
    })
}

/// A rejected field (below `schema_registry`) and the reason.
type Rejected = (String, String);

/// The files TLS settings were read from, by field (reloaded when they change).
type TlsFiles = Vec<(&'static str, PathBuf)>;

/// The TLS settings of the registry client and the files they were read from.
fn tls(t: RawTls, base_dir: &Path, urls: &[String]) -> Result<(Option<Arc<rustls::ClientConfig>>, TlsFiles), Rejected> {
    let e = |f: &str, r: String| (f.to_string(), r);
    if !urls.iter().any(|u| u.starts_with("https://")) {
        return Err(e("tls", "is set but no URL uses https://".into()));
    }
    let at = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base_dir.join(p)
        }
    };
    let ca = t.ca_file.as_ref().map(at);
    let cert = t.cert_file.as_ref().map(at);
    let key = t.key_file.as_ref().map(at);
    let config =
        tls_config(ca.as_deref(), cert.as_deref(), key.as_deref()).map_err(|(f, r)| e(&format!("tls.{f}"), r))?;
    let mut files = Vec::new();
    for (k, p) in [("ca_file", ca), ("cert_file", cert), ("key_file", key)] {
        if let Some(p) = p {
            files.push((k, p));
        }
    }
    Ok((Some(Arc::new(config)), files))
}

/// Intervals, timeouts and per-poll budgets of the registry watch.
struct Limits {
    interval: Duration,
    timeout: Duration,
    max_staleness: Duration,
    page_size: usize,
    lookups_per_poll: usize,
    subject_refresh: Duration,
}

fn limits(raw: &RawSchemaRegistry) -> Result<Limits, (String, String)> {
    let e = |f: &str, r: String| (f.to_string(), r);
    let interval = raw.interval.unwrap_or(DEFAULT_INTERVAL);
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
        return Err(e("interval", "must be between 1s and 1h".into()));
    }
    let timeout = raw.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(600) {
        return Err(e("timeout", "must be between 100ms and 10m".into()));
    }
    let max_staleness = raw.max_staleness.unwrap_or(interval * 5);
    if max_staleness.is_zero() {
        return Err(e("max_staleness", "must be greater than 0".into()));
    }
    let page_size = raw.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=10_000).contains(&page_size) {
        return Err(e("page_size", "must be between 1 and 10000".into()));
    }
    let lookups_per_poll = raw.lookups_per_poll.unwrap_or(DEFAULT_LOOKUPS_PER_POLL);
    if lookups_per_poll > 100_000 {
        return Err(e("lookups_per_poll", "must be at most 100000".into()));
    }
    let subject_refresh = raw.subject_refresh.unwrap_or(DEFAULT_SUBJECT_REFRESH);
    if subject_refresh < interval {
        return Err(e("subject_refresh", "must be at least the registry interval".into()));
    }
    Ok(Limits {
        interval,
        timeout,
        max_staleness,
        page_size,
        lookups_per_poll,
        subject_refresh,
    })
}

/// Checks a base URL and returns it without a trailing slash. Credentials in the URL are
/// rejected so that they never show up in logs or `--config.check`.
fn check_url(u: &str) -> Result<String, String> {
    let u = u.trim();
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("{u:?} must start with http:// or https://"))?;
    if u.contains('?') || u.contains('#') {
        return Err(format!("{u:?} must not have a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials in the URL are not allowed; use basic_auth with password_env or password_file".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{u:?} has an unterminated [IPv6] host"))?;
            match after {
                "" => (h, None),
                _ => (
                    h,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| format!("{u:?} has an invalid host"))?,
                    ),
                ),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("{u:?} has an invalid port {port:?}")),
        }
    }
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{u:?} has no valid host"));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// Builds the rustls client configuration: trust `ca` (or the public web PKI roots), and
/// present `cert` + `key` when both are given. Errors name the field (`ca_file`, ...).
pub fn tls_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<rustls::ClientConfig, (&'static str, String)> {
    let read = |field: &'static str, p: &Path| {
        std::fs::read(p).map_err(|e| (field, format!("cannot read {}: {e}", p.display())))
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(p) => {
            let pem = read("ca_file", p)?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ("ca_file", format!("{}: {e}", p.display())))?;
            if certs.is_empty() {
                return Err(("ca_file", format!("{} holds no PEM certificate", p.display())));
            }
            for c in certs {
                roots.add(c).map_err(|e| ("ca_file", format!("{}: {e}", p.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("ca_file", e.to_string()))?
        .with_root_certificates(roots);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(("key_file", "is required with cert_file".into())),
        (None, Some(_)) => Err(("cert_file", "is required with key_file".into())),
        (Some(c), Some(k)) => {
            let pem = read("cert_file", c)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ("cert_file", format!("{}: {e}", c.display())))?;
            if chain.is_empty() {
                return Err(("cert_file", format!("{} holds no PEM certificate", c.display())));
            }
            let pem = read("key_file", k)?;
            // The error never echoes key material.
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|_| ("key_file", format!("{} holds no PEM private key", k.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("key_file", format!("cannot be used with cert_file: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalised() {
        assert_eq!(check_url("http://sr:8081/").unwrap(), "http://sr:8081");
        assert_eq!(
            check_url("https://reg.example/apis/ccompat/v7").unwrap(),
            "https://reg.example/apis/ccompat/v7"
        );
        assert_eq!(check_url("http://[::1]:8081").unwrap(), "http://[::1]:8081");
        assert_eq!(check_url("http://[::1]").unwrap(), "http://[::1]");
        for bad in [
            "sr:8081",
            "ftp://sr",
            "http://",
            "http://u:p@sr:8081",
            "http://sr:0",
            "http://sr:x",
            "http://sr/?a=1",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url("http://u:p@sr").unwrap_err().contains("basic_auth"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_summary() {
        let raw: RawSchemaRegistry =
            serde_yaml::from_str("urls: ['http://sr:8081']\nbasic_auth: {username: u, password_env: X}\n").unwrap();
        let c = validate(raw, Path::new("."), |_, _| Ok("hunter2".into()))
            .unwrap()
            .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.summary().contains("hunter2"));
        assert!(c.summary().contains("basic (user \"u\""), "{}", c.summary());
        assert_eq!(c.required_classes, vec!["domain_event", "cdc"]);
        assert_eq!(c.strategy, SubjectNameStrategy::TopicName);
        assert_eq!(c.max_staleness, DEFAULT_INTERVAL * 5);
    }

    #[test]
    fn disabled_section_is_none() {
        let raw: RawSchemaRegistry = serde_yaml::from_str("enabled: false").unwrap();
        assert!(validate(raw, Path::new("."), |_, _| unreachable!()).unwrap().is_none());
    }
}
