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

    /// Reads the web config file and the files it names again (a configuration reload): the
    /// new settings apply to the next connection; an invalid file keeps the current ones.
    /// Blocking file I/O: run it on the blocking pool.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let active = load_active(&self.file)?;
        self.active.store(Arc::new(active));
        tracing::info!(file = %self.file.display(), "web config reloaded");
        Ok(())
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

mod tls;

pub(crate) use tls::signatures_checked_with_algorithms;
use tls::tls_config;

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
