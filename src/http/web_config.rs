//! `--web.config.file`: TLS, client certificates, basic authentication and response headers of
//! the endpoint, in the Prometheus exporter-toolkit format, so one file serves all exporters of
//! a fleet.
//!
//! The file and the certificate files it names are checked for changes every
//! [`RELOAD_INTERVAL`]: new certificates, CAs and users apply to new connections and requests
//! without a restart, and a change that does not load is logged and ignored (the previous
//! settings stay in force). Basic auth applies to every path, as in exporter-toolkit. bcrypt is
//! deliberately slow, so each user's last successful password is remembered as a keyed MAC in
//! memory and later requests compare against it in constant time; verification itself runs on
//! the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DistinguishedName, RootCertStore, ServerConfig};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// How often the web config file and its certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Response headers a web config may set (the exporter-toolkit list).
const ALLOWED_HEADERS: &[&str] = &[
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTlsServer>,
    #[serde(default)]
    http_server_config: Option<RawHttpServer>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServer {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpServer {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What a health check of this process's own endpoint (`--healthcheck`) must know of the web
/// config to reach it.
#[derive(Debug, Clone, Default)]
pub struct SelfCheck {
    /// The endpoint's certificate (the first of `cert_file`) when it serves TLS: the health
    /// check trusts exactly this certificate.
    pub certificate: Option<CertificateDer<'static>>,
    /// A client certificate is required (`RequireAnyClientCert`, `RequireAndVerifyClientCert`,
    /// or any verifying type with `client_allowed_sans`): the health check has none, so the
    /// endpoint's refusal of the handshake is the expected answer.
    pub client_cert_required: bool,
    /// Basic auth users are configured: the health check has no password, so 401 is the
    /// expected answer.
    pub basic_auth: bool,
}

/// Reads the web config as the running exporter would and says how to reach its endpoint.
pub fn self_check(file: &Path) -> Result<SelfCheck, ConfigError> {
    load_active(file).map(|a| a.self_check)
}

/// What a loaded web config enforces.
struct Active {
    self_check: SelfCheck,
    tls: Option<Arc<ServerConfig>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash.
    users: BTreeMap<String, String>,
    /// Files whose change triggers a reload, with their state when loaded.
    stamps: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

/// The endpoint's protection, reloaded when its files change.
pub struct WebSecurity {
    file: PathBuf,
    active: ArcSwap<Active>,
    /// Key of the MACs of verified passwords; random per process.
    mac_key: ring::hmac::Key,
    /// User → MAC of (user, hash, password) of the last password that verified.
    verified: Mutex<HashMap<String, ring::hmac::Tag>>,
    /// Bounds the bcrypt verifications running at once, so that a flood of wrong passwords
    /// cannot take the blocking pool that Kafka collection runs on.
    bcrypt_slots: tokio::sync::Semaphore,
    /// Verifications running or waiting for a slot. Each holds a served connection's slot, so
    /// beyond [`BCRYPT_QUEUE_PER_SLOT`] per slot a flood could take them all from scrapes:
    /// further attempts are refused at once.
    bcrypt_queued: std::sync::atomic::AtomicUsize,
}

/// Verifications that may wait for each bcrypt slot.
const BCRYPT_QUEUE_PER_SLOT: usize = 8;

/// One verification counted in [`WebSecurity::bcrypt_queued`] until dropped.
struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<Queued<'a>> {
        use std::sync::atomic::Ordering::AcqRel;
        count
            .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Queued(count))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// bcrypt verifications running at once, at most: half the CPUs (at least one, at most four),
/// so that a flood of wrong passwords leaves the other half to the scrapes.
fn bcrypt_concurrency() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).clamp(1, 4)
}

/// Why a request is refused by basic auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
}

impl WebSecurity {
    /// Loads and checks the web config file; every problem names the file and the field.
    pub fn load(file: &Path) -> Result<WebSecurity, ConfigError> {
        let active = load_active(file)?;
        let rng = ring::rand::SystemRandom::new();
        let mac_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| ConfigError::new(file, ".", "cannot get random bytes for the password cache key"))?;
        Ok(WebSecurity {
            file: file.to_path_buf(),
            active: ArcSwap::from_pointee(active),
            mac_key,
            verified: Mutex::new(HashMap::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(bcrypt_concurrency()),
            bcrypt_queued: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A one-line description for the start-up log and `--config.check`.
    pub fn summary(&self) -> String {
        let a = self.active.load();
        format!(
            "web config file {}: OK, TLS {}, {} basic auth user(s), {} extra header(s)",
            self.file.display(),
            if a.tls.is_some() { "on" } else { "off" },
            a.users.len(),
            a.headers.len()
        )
    }

    /// The TLS settings for a new connection; `None` serves plain HTTP.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.active.load().tls.clone()
    }

    /// Adds the configured headers to a response.
    pub fn decorate<B>(&self, response: &mut hyper::Response<B>) {
        let a = self.active.load();
        for (k, v) in &a.headers {
            response.headers_mut().insert(k.clone(), v.clone());
        }
    }

    /// Checks the `Authorization` header against the basic auth users (always passes when
    /// none are configured).
    pub async fn authorize(&self, header: Option<&HeaderValue>) -> Result<(), AuthFailure> {
        let active = self.active.load_full();
        let users = &active.users;
        if users.is_empty() {
            return Ok(());
        }
        let (user, password) = header.and_then(parse_basic).ok_or(AuthFailure::Missing)?;
        // An unknown user is checked against a real hash all the same, so that the response
        // time does not tell which users exist.
        let (known, hash) = match users.get(&user) {
            Some(h) => (true, h.clone()),
            None => (false, users.values().next().cloned().unwrap_or_default()),
        };
        let tag = {
            let mut ctx = ring::hmac::Context::with_key(&self.mac_key);
            for part in [user.as_bytes(), hash.as_bytes(), password.as_bytes()] {
                ctx.update(&(part.len() as u64).to_be_bytes());
                ctx.update(part);
            }
            ctx.sign()
        };
        if known {
            let cached = self.lock_verified().get(&user).cloned();
            if cached.is_some_and(|c| bool::from(c.as_ref().ct_eq(tag.as_ref()))) {
                return Ok(());
            }
        }
        let max_queued = bcrypt_concurrency() * BCRYPT_QUEUE_PER_SLOT;
        let Some(_queued) = Queued::enter(&self.bcrypt_queued, max_queued) else {
            return Err(AuthFailure::Invalid);
        };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return Err(AuthFailure::Invalid);
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok && known {
            self.lock_verified().insert(user, tag);
            Ok(())
        } else {
            Err(AuthFailure::Invalid)
        }
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, ring::hmac::Tag>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads when the web config file or a file it names has changed. Blocking file I/O: run
    /// it on the blocking pool.
    pub fn reload_if_changed(&self) {
        let changed = self
            .active
            .load()
            .stamps
            .iter()
            .any(|(path, stamp)| file_stamp(path) != *stamp);
        if !changed {
            return;
        }
        match load_active(&self.file) {
            Ok(active) => {
                tracing::info!(file = %self.file.display(), "web config reloaded");
                self.active.store(Arc::new(active));
            }
            Err(e) => {
                tracing::warn!(error = %e, "web config changed but does not load; keeping the previous one");
                // Remember the broken state so the same error is not logged every interval.
                let old = self.active.load_full();
                let stamps = old.stamps.iter().map(|(p, _)| (p.clone(), file_stamp(p))).collect();
                self.active.store(Arc::new(Active {
                    self_check: old.self_check.clone(),
                    tls: old.tls.clone(),
                    headers: old.headers.clone(),
                    users: old.users.clone(),
                    stamps,
                }));
            }
        }
    }
}

/// Decodes `Basic base64(user:password)`.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let v = value.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn load_active(file: &Path) -> Result<Active, ConfigError> {
    let err = |field: &str, reason: String| ConfigError::new(file, field, reason);
    let stamp = file_stamp(file);
    let text = std::fs::read_to_string(file).map_err(|e| err(".", format!("cannot read file: {e}")))?;
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig::default()
    } else {
        let de = serde_yaml::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| ConfigError::from_yaml(file, e))?
    };
    let base_dir = file.parent().unwrap_or_else(|| Path::new("."));
    let mut stamps = vec![(file.to_path_buf(), stamp)];

    let mut self_check = SelfCheck {
        basic_auth: !raw.basic_auth_users.is_empty(),
        ..SelfCheck::default()
    };
    let tls = match raw.tls_server_config {
        Some(t) => {
            let (config, certificate, client_cert_required) =
                tls_config(base_dir, t, &mut stamps).map_err(|(f, r)| err(&format!("tls_server_config.{f}"), r))?;
            self_check.certificate = Some(certificate);
            self_check.client_cert_required = client_cert_required;
            Some(Arc::new(config))
        }
        None => None,
    };

    let mut headers = Vec::new();
    if let Some(h) = raw.http_server_config {
        if h.http2 == Some(true) {
            return Err(err(
                "http_server_config.http2",
                "HTTP/2 is not served (HTTP/1.1 only); remove the key or set it to false".into(),
            ));
        }
        for (k, v) in h.headers {
            let field = format!("http_server_config.headers.{k}");
            let Some(name) = ALLOWED_HEADERS.iter().find(|a| a.eq_ignore_ascii_case(&k)) else {
                return Err(err(
                    &field,
                    format!("header not allowed; allowed are {}", ALLOWED_HEADERS.join(", ")),
                ));
            };
            let value = HeaderValue::from_str(&v).map_err(|_| err(&field, "not a valid header value".into()))?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| err(&field, e.to_string()))?;
            headers.push((name, value));
        }
    }

    for (user, hash) in &raw.basic_auth_users {
        let field = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            return Err(err(&field, "user names must be non-empty and contain no ':'".into()));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(err(
                &field,
                "not a bcrypt hash (expected $2a$/$2b$/$2y$..., e.g. from `htpasswd -nBC 10 user`)".into(),
            ));
        }
    }

    Ok(Active {
        self_check,
        tls,
        headers,
        users: raw.basic_auth_users,
        stamps,
    })
}

/// A rejected setting: the field below `tls_server_config` and the reason.
type FieldError = (String, String);

/// The server configuration, the endpoint's certificate and whether a client certificate is
/// required.
fn tls_config(
    base_dir: &Path,
    t: RawTlsServer,
    stamps: &mut Vec<(PathBuf, Option<(SystemTime, u64)>)>,
) -> Result<(ServerConfig, CertificateDer<'static>, bool), FieldError> {
    let rej = |f: &str, r: String| (f.to_string(), r);
    let mut resolve = |p: &Path| {
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        stamps.push((full.clone(), file_stamp(&full)));
        full
    };
    let cert_file = resolve(&t.cert_file.ok_or_else(|| rej("cert_file", "required for TLS".into()))?);
    let key_file = resolve(&t.key_file.ok_or_else(|| rej("key_file", "required for TLS".into()))?);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| rej("cert_file", format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(rej(
            "cert_file",
            format!("{} holds no certificate", cert_file.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|e| {
        rej(
            "key_file",
            format!("{}: no usable private key: {e}", key_file.display()),
        )
    })?;

    let mut provider = rustls::crypto::ring::default_provider();
    let version = |f: &str, v: &Option<String>, default: &'static rustls::SupportedProtocolVersion| match v.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(&rustls::version::TLS12),
        Some("TLS13") => Ok(&rustls::version::TLS13),
        Some(other @ ("TLS10" | "TLS11")) => Err(rej(f, format!("{other} is not supported; use TLS12 or TLS13"))),
        Some(other) => Err(rej(f, format!("unknown version {other:?}; expected TLS12 or TLS13"))),
    };
    let min = version("min_version", &t.min_version, &rustls::version::TLS12)?;
    let max = version("max_version", &t.max_version, &rustls::version::TLS13)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match (min.version, max.version) {
        (rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2) => {
            return Err(rej("min_version", "is above max_version".into()))
        }
        (a, b) if a == b => vec![min],
        _ => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };

    if let Some(names) = &t.cipher_suites {
        let known: Vec<String> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        let mut chosen = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let wanted = match name.as_str() {
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                    format!("{name}_SHA256")
                }
                _ => name.clone(),
            };
            let Some(suite) = provider
                .cipher_suites
                .iter()
                .find(|s| s.version() == &rustls::version::TLS12 && format!("{:?}", s.suite()) == wanted)
            else {
                return Err(rej(
                    &format!("cipher_suites[{i}]"),
                    format!("unsupported cipher suite {name:?}; supported: {}", known.join(", ")),
                ));
            };
            chosen.push(*suite);
        }
        // The list applies to TLS 1.2; TLS 1.3 suites are not configurable (as in Go).
        let tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied();
        provider.cipher_suites = tls13.chain(chosen).collect();
    }
    if let Some(curves) = &t.curve_preferences {
        use rustls::crypto::ring::kx_group;
        let mut groups = Vec::new();
        for (i, c) in curves.iter().enumerate() {
            groups.push(match c.as_str() {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                other => {
                    return Err(rej(
                        &format!("curve_preferences[{i}]"),
                        format!("unsupported curve {other:?}; supported: X25519, CurveP256, CurveP384"),
                    ))
                }
            });
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = match &t.client_ca_file {
        Some(ca) => {
            let ca = resolve(ca);
            let mut store = RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| rej("client_ca_file", format!("{}: {e}", ca.display())))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(rej(
                    "client_ca_file",
                    format!("{} holds no usable CA certificate", ca.display()),
                ));
            }
            Some(Arc::new(store))
        }
        None => None,
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| rej("min_version", e.to_string()))?;
    let verifying = matches!(auth_type, "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert");
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match (auth_type, roots) {
        ("NoClientCert" | "RequestClientCert" | "RequireAnyClientCert", Some(_)) => {
            return Err(rej(
                "client_ca_file",
                format!("set, but client_auth_type {auth_type} does not verify client certificates; use RequireAndVerifyClientCert"),
            ))
        }
        (_, None) if verifying => {
            return Err(rej(
                "client_ca_file",
                format!("client_auth_type {auth_type} needs client_ca_file"),
            ))
        }
        ("NoClientCert", None) => None,
        ("RequestClientCert" | "RequireAnyClientCert", None) => Some(Arc::new(UnverifiedClientCert {
            mandatory: auth_type == "RequireAnyClientCert",
            algorithms: provider.signature_verification_algorithms,
        })),
        ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert", Some(roots)) => {
            let b = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider));
            let b = if auth_type == "VerifyClientCertIfGiven" {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(b.build().map_err(|e| rej("client_ca_file", e.to_string()))?)
        }
        (other, _) => {
            return Err(rej(
                "client_auth_type",
                format!("unknown value {other:?}; expected NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    let allowed_sans = t.client_allowed_sans.unwrap_or_default();
    if let Some(i) = allowed_sans.iter().position(|s| s.trim().is_empty()) {
        return Err(rej(&format!("client_allowed_sans[{i}]"), "empty name".into()));
    }
    let verifier = match verifier {
        Some(inner) if !allowed_sans.is_empty() && verifying => Some(Arc::new(AllowedSans {
            inner,
            allowed: allowed_sans,
            algorithms: provider.signature_verification_algorithms,
        }) as Arc<dyn ClientCertVerifier>),
        _ if !allowed_sans.is_empty() => {
            return Err(rej(
                "client_allowed_sans",
                format!("client_auth_type {auth_type} does not verify client certificates, so their names prove nothing; use RequireAndVerifyClientCert"),
            ))
        }
        v => v,
    };
    let required = verifier.as_ref().is_some_and(|v| v.client_auth_mandatory());
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let leaf = certs[0].clone();
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| rej("key_file", format!("does not match cert_file: {e}")))?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, leaf, required))
}

/// The handshake-signature methods of a rustls certificate verifier, the same in the client-
/// and the server-side traits: signatures are checked with the provider's algorithms in
/// `self.algorithms`. Used by every verifier here and by the health check's.
macro_rules! signatures_checked_with_algorithms {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}
pub(crate) use signatures_checked_with_algorithms;

/// `RequestClientCert` / `RequireAnyClientCert`: a client certificate is asked for (and for
/// the latter required), its handshake signature checked, but its issuer is not; such
/// certificates identify nobody, as exporter-toolkit warns.
#[derive(Debug)]
struct UnverifiedClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for UnverifiedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signatures_checked_with_algorithms!();
}

/// `client_allowed_sans`: after the configured verification, the client certificate must carry
/// one of these subject alternative names. DNS names, e-mail addresses, IP addresses and URIs are
/// compared as text, as exporter-toolkit compares them; a certificate is then required even with
/// `VerifyClientCertIfGiven`, as there.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            tracing::debug!(names = ?names, "client certificate carries none of client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    signatures_checked_with_algorithms!();
}

/// The subject alternative names of a certificate as text: DNS names, e-mail addresses, IP
/// addresses (in their usual notation) and URIs.
fn subject_alt_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => names.push(s.to_string()),
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    names.push(std::net::Ipv4Addr::from(v4).to_string());
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    names.push(std::net::Ipv6Addr::from(v6).to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<WebSecurity, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.yml");
        std::fs::write(&f, text).unwrap();
        WebSecurity::load(&f)
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (
                "tls_server_config: {key_file: k}",
                "tls_server_config.cert_file",
                "required",
            ),
            (
                "basic_auth_users: {alice: plain}",
                "basic_auth_users.alice",
                "not a bcrypt hash",
            ),
            (
                "http_server_config: {headers: {Server: x}}",
                "http_server_config.headers.Server",
                "not allowed",
            ),
            (
                "http_server_config: {http2: true}",
                "http_server_config.http2",
                "HTTP/1.1",
            ),
            ("nonsense: 1", "nonsense", "unknown field"),
        ];
        for (text, field, reason) in cases {
            let e = load_text(text).err().unwrap_or_else(|| panic!("{text} loaded"));
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let w = load_text("").unwrap();
        assert!(w.tls().is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(w.authorize(None)), Ok(()));
    }

    #[test]
    fn basic_auth_checks_and_caches() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let w = load_text(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let header = |u: &str, p: &str| {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {v}")).unwrap()
        };
        assert_eq!(rt.block_on(w.authorize(None)), Err(AuthFailure::Missing));
        assert_eq!(
            rt.block_on(w.authorize(Some(&header("alice", "wrong")))),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            rt.block_on(w.authorize(Some(&header("bob", "right")))),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(rt.block_on(w.authorize(Some(&header("alice", "right")))), Ok(()));
        assert_eq!(w.lock_verified().len(), 1);
        // Cached now; a wrong password must still fail.
        assert_eq!(rt.block_on(w.authorize(Some(&header("alice", "right")))), Ok(()));
        assert_eq!(
            rt.block_on(w.authorize(Some(&header("alice", "righ")))),
            Err(AuthFailure::Invalid)
        );
    }

    #[test]
    fn a_flood_of_wrong_passwords_waits_in_a_bounded_queue() {
        let hash = bcrypt::hash("right", 8).unwrap();
        let w = Arc::new(load_text(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let wrong = |i: usize| {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("alice:guess-{i}"));
            HeaderValue::from_str(&format!("Basic {v}")).unwrap()
        };
        let t0 = std::time::Instant::now();
        assert!(rt.block_on(w.authorize(Some(&wrong(0)))).is_err());
        let one = t0.elapsed();
        let queue = bcrypt_concurrency() * BCRYPT_QUEUE_PER_SLOT;
        let flood = queue + 20;
        let t0 = std::time::Instant::now();
        let times: Vec<std::time::Duration> = rt.block_on(async {
            let tasks: Vec<_> = (0..flood)
                .map(|i| {
                    let (w, h) = (Arc::clone(&w), wrong(i + 1));
                    tokio::spawn(async move {
                        assert_eq!(w.authorize(Some(&h)).await, Err(AuthFailure::Invalid));
                        t0.elapsed()
                    })
                })
                .collect();
            let mut times = Vec::new();
            for t in tasks {
                times.push(t.await.unwrap());
            }
            times
        });
        let at_once = times.iter().filter(|t| **t < one / 2).count();
        assert!(
            at_once >= flood - queue,
            "{at_once} of {flood} refused without bcrypt ({one:?} each)"
        );
        assert_eq!(w.bcrypt_queued.load(std::sync::atomic::Ordering::Acquire), 0);
    }
}
