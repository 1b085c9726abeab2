//! What the native reader needs to reach a cluster, read from the same librdkafka property
//! list every other client of the cluster is built from (the `tls` and `sasl` blocks are mapped
//! to those properties by the configuration), so a user configures one set of keys.
//!
//! A property the native reader cannot honour makes [`Settings::from_cluster`] return the
//! reason, and the cluster is read through librdkafka instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::sasl::Mechanism;
use crate::config::ClusterConfig;

/// How the reader authenticates with SASL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum SaslSettings {
    Plain {
        username: String,
        password: String,
    },
    Scram {
        sha512: bool,
        username: String,
        password: String,
    },
    /// An unsigned token naming `principal` (brokers configured for tests accept it).
    OauthUnsecured {
        principal: String,
        scope: Option<String>,
        lifetime: Duration,
        extensions: BTreeMap<String, String>,
    },
    /// Tokens from an OIDC token endpoint (client credentials grant).
    OauthOidc {
        token_endpoint_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        extensions: BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for SaslSettings {
    /// Names the mechanism only: the other fields include secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SaslSettings::Plain { .. } => "SaslSettings::Plain",
            SaslSettings::Scram { sha512: false, .. } => "SaslSettings::ScramSha256",
            SaslSettings::Scram { sha512: true, .. } => "SaslSettings::ScramSha512",
            SaslSettings::OauthUnsecured { .. } => "SaslSettings::OauthUnsecured",
            SaslSettings::OauthOidc { .. } => "SaslSettings::OauthOidc",
        })
    }
}

/// TLS towards the brokers.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<String>,
    pub verify_certificates: bool,
    pub verify_hostname: bool,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("key_password", &self.key_password.as_ref().map(|_| "<secret>"))
            .field("verify_certificates", &self.verify_certificates)
            .field("verify_hostname", &self.verify_hostname)
            .finish()
    }
}

/// Everything the native reader needs to connect and authenticate. Holds secrets: its Debug
/// output leaves them out.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub tls: Option<TlsFiles>,
    pub sasl: Option<SaslSettings>,
    /// Time allowed to open a connection (TCP, TLS and SASL).
    pub connect_timeout: Duration,
    pub reconnect_backoff: Duration,
    pub reconnect_backoff_max: Duration,
}

/// Properties that concern only librdkafka's own clients (the delivery probe, record reads)
/// or its diagnostics, and do not change what the native reader must do.
const LIBRDKAFKA_ONLY: &[&str] = &[
    "statistics.interval.ms",
    "debug",
    "log_level",
    "log.connection.close",
    "socket.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "topic.metadata.refresh.interval.ms",
    "metadata.max.age.ms",
    "api.version.request",
    "allow.auto.create.topics",
    "enable.sparse.connections",
];

/// The property list of a cluster as the native reader reads it: every key must be known.
struct Props<'a> {
    map: BTreeMap<&'a str, &'a str>,
}

impl<'a> Props<'a> {
    fn take(&mut self, key: &str) -> Option<String> {
        self.map.remove(key).map(str::to_string)
    }
}

impl Settings {
    /// The settings of `cfg`, or why the native reader cannot honour them.
    pub(crate) fn from_cluster(cfg: &ClusterConfig) -> Result<Settings, String> {
        let mut p = Props {
            map: cfg
                .client_properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        let protocol = p.take("security.protocol").unwrap_or_else(|| "PLAINTEXT".into());
        let (tls, sasl) = match protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(format!(
                    "security.protocol {other} is not supported by the native reader"
                ))
            }
        };
        let tls = if tls { Some(tls_files(&mut p)?) } else { None };
        let sasl = if sasl { Some(sasl_settings(&mut p)?) } else { None };
        let ms = |p: &mut Props<'_>, key: &str, default: u64| -> Result<Duration, String> {
            match p.take(key) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{key} is not a number of milliseconds")),
            }
        };
        let client_id = p.take("client.id").unwrap_or_else(|| "kafka-slo-exporter".into());
        let reconnect_backoff = ms(&mut p, "reconnect.backoff.ms", 100)?;
        let reconnect_backoff_max = ms(&mut p, "reconnect.backoff.max.ms", 1000)?;
        for key in LIBRDKAFKA_ONLY {
            p.map.remove(key);
        }
        if let Some(key) = p.map.keys().next() {
            return Err(format!("client property {key} is not supported by the native reader"));
        }
        Ok(Settings {
            bootstrap: cfg.bootstrap_servers.clone(),
            client_id,
            tls,
            sasl,
            connect_timeout: connect_timeout(cfg.timeout),
            reconnect_backoff,
            reconnect_backoff_max: reconnect_backoff_max.max(reconnect_backoff),
        })
    }
}

/// A connection attempt may take half the request timeout, at least a second and at most ten:
/// long enough for TLS and SASL round trips over a slow link, short enough that a dead broker
/// leaves time to try another within one request.
fn connect_timeout(timeout: Duration) -> Duration {
    (timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

fn tls_files(p: &mut Props<'_>) -> Result<TlsFiles, String> {
    for key in [
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.truststore.location",
    ] {
        if p.map.contains_key(key) {
            return Err(format!("{key} (keystores) is not supported by the native reader"));
        }
    }
    let verify_certificates = match p.take("enable.ssl.certificate.verification").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(format!(
                "enable.ssl.certificate.verification={other} is not true or false"
            ))
        }
    };
    let verify_hostname = match p.take("ssl.endpoint.identification.algorithm").as_deref() {
        None | Some("https") => true,
        Some("none") => false,
        Some(other) => {
            return Err(format!(
                "ssl.endpoint.identification.algorithm={other} is not https or none"
            ))
        }
    };
    Ok(TlsFiles {
        ca_file: p.take("ssl.ca.location").map(PathBuf::from),
        cert_file: p.take("ssl.certificate.location").map(PathBuf::from),
        key_file: p.take("ssl.key.location").map(PathBuf::from),
        key_password: p.take("ssl.key.password"),
        verify_certificates,
        verify_hostname,
    })
}

fn sasl_settings(p: &mut Props<'_>) -> Result<SaslSettings, String> {
    let mechanism = p
        .take("sasl.mechanism")
        .or_else(|| p.take("sasl.mechanisms"))
        .unwrap_or_else(|| "GSSAPI".into())
        .trim()
        .to_ascii_uppercase();
    let user = |p: &mut Props<'_>| -> Result<(String, String), String> {
        match (p.take("sasl.username"), p.take("sasl.password")) {
            (Some(u), Some(pw)) => Ok((u, pw)),
            _ => Err(format!("{mechanism} needs sasl.username and sasl.password")),
        }
    };
    match Mechanism::parse(&mechanism) {
        Some(Mechanism::Plain) => user(p).map(|(username, password)| SaslSettings::Plain { username, password }),
        Some(m @ (Mechanism::ScramSha256 | Mechanism::ScramSha512)) => {
            user(p).map(|(username, password)| SaslSettings::Scram {
                sha512: m == Mechanism::ScramSha512,
                username,
                password,
            })
        }
        Some(Mechanism::OauthBearer) => oauthbearer(p),
        None if mechanism == "GSSAPI" => Err("SASL GSSAPI (Kerberos) is not supported by the native reader".into()),
        None => Err(format!(
            "SASL mechanism {mechanism} is not supported by the native reader"
        )),
    }
}

fn oauthbearer(p: &mut Props<'_>) -> Result<SaslSettings, String> {
    let extensions = match p.take("sasl.oauthbearer.extensions") {
        None => BTreeMap::new(),
        Some(list) => parse_pairs(&list, ',')?,
    };
    match p
        .take("sasl.oauthbearer.method")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("oidc") => Ok(SaslSettings::OauthOidc {
            token_endpoint_url: p
                .take("sasl.oauthbearer.token.endpoint.url")
                .ok_or("OIDC needs sasl.oauthbearer.token.endpoint.url")?,
            client_id: p
                .take("sasl.oauthbearer.client.id")
                .ok_or("OIDC needs sasl.oauthbearer.client.id")?,
            client_secret: p
                .take("sasl.oauthbearer.client.secret")
                .ok_or("OIDC needs sasl.oauthbearer.client.secret")?,
            scope: p.take("sasl.oauthbearer.scope"),
            extensions,
        }),
        None | Some("default") => {
            // librdkafka asks for an explicit opt-in to unsigned tokens; the reader builds them
            // only from sasl.oauthbearer.config, so the opt-in has nothing more to change.
            p.take("enable.sasl.oauthbearer.unsecure.jwt");
            unsecured(p, extensions)
        }
        Some(other) => Err(format!(
            "sasl.oauthbearer.method {other} is not supported by the native reader"
        )),
    }
}

/// `sasl.oauthbearer.config` as librdkafka's unsecured token builder reads it:
/// `principal=NAME [scope=A,B] [lifeSeconds=N] [extension_KEY=VALUE ...]`.
fn unsecured(p: &mut Props<'_>, mut extensions: BTreeMap<String, String>) -> Result<SaslSettings, String> {
    let config = p
        .take("sasl.oauthbearer.config")
        .ok_or("OAUTHBEARER needs sasl.oauthbearer.config or the oidc method")?;
    let pairs = parse_pairs(&config, ' ')?;
    let mut principal = None;
    let mut scope = None;
    let mut lifetime = Duration::from_secs(3600);
    for (k, v) in pairs {
        match k.as_str() {
            "principal" => principal = Some(v),
            "scope" => scope = Some(v),
            "lifeSeconds" => {
                lifetime = Duration::from_secs(v.parse().map_err(|_| "lifeSeconds is not a number".to_string())?)
            }
            _ => match k.strip_prefix("extension_") {
                Some(name) => {
                    extensions.insert(name.to_string(), v);
                }
                None => return Err(format!("sasl.oauthbearer.config key {k} is not supported")),
            },
        }
    }
    Ok(SaslSettings::OauthUnsecured {
        principal: principal.ok_or("sasl.oauthbearer.config needs principal=")?,
        scope,
        lifetime,
        extensions,
    })
}

fn parse_pairs(list: &str, sep: char) -> Result<BTreeMap<String, String>, String> {
    list.split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(format!("{kv:?} is not key=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster(extra: &str) -> ClusterConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let path = dir.path().join("c.yml");
        std::fs::write(
            &path,
            format!("clusters:\n  - name: a\n    bootstrap_servers: ['h:9092']\n{extra}"),
        )
        .unwrap();
        Config::load(&path).unwrap().clusters.remove(0)
    }

    #[test]
    fn plaintext_and_sasl_settings_come_from_the_shared_keys() {
        let s = Settings::from_cluster(&cluster("")).unwrap();
        assert_eq!(s.bootstrap, vec!["h:9092".to_string()]);
        assert!(s.tls.is_none() && s.sasl.is_none());
        assert_eq!(s.client_id, "kafka-slo-exporter");
        let s = Settings::from_cluster(&cluster(
            "    sasl: {mechanism: SCRAM-SHA-512, username: u, password_file: pw}\n",
        ))
        .unwrap();
        assert_eq!(
            s.sasl,
            Some(SaslSettings::Scram {
                sha512: true,
                username: "u".into(),
                password: "s3cret".into()
            })
        );
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
    }

    #[test]
    fn tls_settings_follow_the_tls_block() {
        let s = Settings::from_cluster(&cluster("    tls: {verify_hostname: false}\n")).unwrap();
        let tls = s.tls.unwrap();
        assert!(tls.verify_certificates && !tls.verify_hostname);
        let s = Settings::from_cluster(&cluster("    tls: {insecure_skip_verify: true}\n")).unwrap();
        assert!(!s.tls.unwrap().verify_certificates);
    }

    #[test]
    fn unsecured_oauthbearer_is_read_from_librdkafkas_config_string() {
        let s = Settings::from_cluster(&cluster(
            "    sasl: {mechanism: OAUTHBEARER, oauthbearer: {method: unsecured_jwt, principal: alice, scope: 'a,b', extensions: {traceId: x1}}}\n",
        ))
        .unwrap();
        match s.sasl.unwrap() {
            SaslSettings::OauthUnsecured {
                principal,
                scope,
                extensions,
                ..
            } => {
                assert_eq!(principal, "alice");
                assert_eq!(scope.as_deref(), Some("a,b"));
                assert_eq!(extensions.get("traceId").map(String::as_str), Some("x1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_the_native_reader_cannot_honour_is_named() {
        let reason = Settings::from_cluster(&cluster("    client_properties: {queued.min.messages: 5}\n")).unwrap_err();
        assert!(reason.contains("queued.min.messages"), "{reason}");
        let reason = Settings::from_cluster(&cluster(
            "    client_properties: {security.protocol: SASL_PLAINTEXT, sasl.mechanism: GSSAPI}\n",
        ))
        .unwrap_err();
        assert!(reason.contains("GSSAPI"), "{reason}");
        // Tuning that only concerns librdkafka's clients does not stop the native reader.
        Settings::from_cluster(&cluster("    client_properties: {statistics.interval.ms: 1000}\n")).unwrap();
    }
}
