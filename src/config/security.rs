//! The `tls` and `sasl` blocks of a cluster: how the exporter's Kafka clients authenticate the
//! brokers and themselves, mapped to librdkafka properties.
//!
//! Every client of a cluster (admin, record reader, delivery probe) is built from the same
//! property list, so these settings apply to all of them. Secrets come only from environment
//! variables or files; their property names are recorded so summaries and logs never show them.
//! Files are checked here (readable, PEM of the expected kind) so that a wrong path is a start-up
//! error naming the field, not a connection failure minutes later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::kerberos::Kerberos;

/// TLS towards the brokers (`security.protocol` SSL, or SASL_SSL with a `sasl` block).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// CA bundle (PEM) that signed the brokers' certificates; the system roots when absent.
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs `key_file`.
    #[serde(default)]
    cert_file: Option<PathBuf>,
    /// Private key (PEM) of `cert_file`.
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    key_password_env: Option<String>,
    #[serde(default)]
    key_password_file: Option<PathBuf>,
    /// Check that the broker's certificate names the host it was reached at (default true).
    #[serde(default)]
    verify_hostname: Option<bool>,
    /// Accept any broker certificate. Only for tests: it gives up server authentication.
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
}

/// SASL authentication.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSasl {
    mechanism: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    oauthbearer: Option<RawOauthBearer>,
    /// Principal, keytab, service name and krb5.conf for mechanism GSSAPI.
    #[serde(default)]
    kerberos: Option<super::kerberos::RawKerberos>,
}

/// How OAUTHBEARER tokens are obtained.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOauthBearer {
    /// `oidc` (client credentials grant against `token_endpoint_url`) or `unsecured_jwt`
    /// (an unsigned token naming `principal`; only brokers configured for tests accept it).
    method: String,
    #[serde(default)]
    token_endpoint_url: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    extensions: BTreeMap<String, String>,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default, deserialize_with = "super::duration::opt")]
    lifetime: Option<Duration>,
}

/// Default lifetime of unsecured OAUTHBEARER tokens, which are never refreshed.
const UNSECURED_JWT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where CA bundles of common distributions live; one must exist when TLS verifies brokers
/// against the system roots. The native reader loads its roots from the same list.
pub(crate) const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// A rejected setting: the field path below the cluster and the reason.
type Rejection = (String, String);

/// Resolves a secret from exactly one of an environment variable or a file.
pub(super) type ResolveSecret<'a> = &'a dyn Fn(Option<&str>, Option<&Path>) -> Result<String, String>;

/// The property list being built, with the names of its secret values.
pub(super) struct Properties<'a> {
    pub props: &'a mut Vec<(String, String)>,
    pub secret_keys: &'a mut Vec<String>,
}

impl Properties<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Adds a property the `tls`/`sasl` blocks own; setting it also in `client_properties` or
    /// `secret_properties` is ambiguous and rejected.
    pub(super) fn set(&mut self, field: &str, key: &str, value: String, secret: bool) -> Result<(), Rejection> {
        if self.get(key).is_some() {
            return Err((
                field.to_string(),
                format!(
                    "sets `{key}`, which is also set in client_properties or secret_properties; set it in one place"
                ),
            ));
        }
        self.props.push((key.to_string(), value));
        if secret {
            self.secret_keys.push(key.to_string());
        }
        Ok(())
    }
}

/// Applies the `tls` and `sasl` blocks to `p`, derives `security.protocol` and checks the
/// combination. Relative paths are resolved against `base_dir`.
///
/// Returns the Kerberos settings when SASL GSSAPI is selected (by the `sasl` block or in
/// `client_properties`): what the process's Kerberos set-up needs, which start-up wiring
/// checks across clusters.
pub(super) fn apply(
    base_dir: &Path,
    tls: Option<RawTls>,
    sasl: Option<RawSasl>,
    p: &mut Properties<'_>,
    resolve: ResolveSecret<'_>,
) -> Result<Option<Kerberos>, Rejection> {
    let mut kerberos = ["sasl.mechanism", "sasl.mechanisms"]
        .into_iter()
        .find(|key| p.get(key).is_some_and(|m| m.trim().eq_ignore_ascii_case("GSSAPI")))
        .map(|key| Kerberos {
            field: format!("client_properties.{key}"),
            principal: p.get("sasl.kerberos.principal").map(str::to_string),
            keytab: p.get("sasl.kerberos.keytab").map(PathBuf::from),
            krb5_conf: None,
        });
    let derived = match (&tls, &sasl) {
        (None, None) => None,
        (Some(_), None) => Some("SSL"),
        (None, Some(_)) => Some("SASL_PLAINTEXT"),
        (Some(_), Some(_)) => Some("SASL_SSL"),
    };
    if let Some(derived) = derived {
        match p.get("security.protocol").map(str::to_ascii_uppercase) {
            None => p.set("security.protocol", "security.protocol", derived.into(), false)?,
            // Without a `tls` block, TLS may still be configured through ssl.* client properties.
            Some(given) if given == derived || (tls.is_none() && given == "SASL_SSL") => {}
            Some(given) => {
                return Err((
                    "client_properties.security.protocol".into(),
                    format!(
                        "is {given}, but the {} block(s) need {derived}; remove it, the exporter derives it",
                        match (&tls, &sasl) {
                            (Some(_), Some(_)) => "`tls` and `sasl`",
                            (Some(_), None) => "`tls`",
                            _ => "`sasl`",
                        }
                    ),
                ))
            }
        }
    }
    if let Some(tls) = tls {
        apply_tls(base_dir, tls, p, resolve)?;
    }
    if let Some(sasl) = sasl {
        if let Some(k) = apply_sasl(base_dir, sasl, p, resolve)? {
            kerberos = Some(k);
        }
    }
    check_system_roots(p)?;
    Ok(kerberos)
}

fn apply_tls(
    base_dir: &Path,
    tls: RawTls,
    p: &mut Properties<'_>,
    resolve: ResolveSecret<'_>,
) -> Result<(), Rejection> {
    let skip_verify = tls.insecure_skip_verify.unwrap_or(false);
    if let Some(ca) = &tls.ca_file {
        if skip_verify {
            return Err((
                "tls.ca_file".into(),
                "has no effect with insecure_skip_verify: true; remove one of them".into(),
            ));
        }
        let path = pem_file(base_dir, ca, "CERTIFICATE").map_err(|r| ("tls.ca_file".to_string(), r))?;
        p.set("tls.ca_file", "ssl.ca.location", path, false)?;
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let cert = pem_file(base_dir, cert, "CERTIFICATE").map_err(|r| ("tls.cert_file".to_string(), r))?;
            let key_path = pem_file(base_dir, key, "PRIVATE KEY").map_err(|r| ("tls.key_file".to_string(), r))?;
            p.set("tls.cert_file", "ssl.certificate.location", cert, false)?;
            let encrypted = std::fs::read_to_string(&key_path)
                .map(|t| t.contains("ENCRYPTED"))
                .unwrap_or(false);
            p.set("tls.key_file", "ssl.key.location", key_path, false)?;
            if tls.key_password_env.is_some() || tls.key_password_file.is_some() {
                let pw = resolve(tls.key_password_env.as_deref(), tls.key_password_file.as_deref())
                    .map_err(|r| ("tls.key_password_env/key_password_file".to_string(), r))?;
                p.set("tls.key_password_env/key_password_file", "ssl.key.password", pw, true)?;
            } else if encrypted && p.get("ssl.key.password").is_none() {
                return Err((
                    "tls.key_file".into(),
                    "the private key is encrypted; give key_password_env or key_password_file".into(),
                ));
            }
        }
        (Some(_), None) => return Err(("tls.key_file".into(), "cert_file needs key_file".into())),
        (None, Some(_)) => return Err(("tls.cert_file".into(), "key_file needs cert_file".into())),
        (None, None) => {
            if tls.key_password_env.is_some() || tls.key_password_file.is_some() {
                return Err((
                    "tls.key_password_env/key_password_file".into(),
                    "a key password needs cert_file and key_file".into(),
                ));
            }
        }
    }
    if skip_verify {
        p.set(
            "tls.insecure_skip_verify",
            "enable.ssl.certificate.verification",
            "false".into(),
            false,
        )?;
    }
    if skip_verify || tls.verify_hostname == Some(false) {
        p.set(
            "tls.verify_hostname",
            "ssl.endpoint.identification.algorithm",
            "none".into(),
            false,
        )?;
    } else {
        p.set(
            "tls.verify_hostname",
            "ssl.endpoint.identification.algorithm",
            "https".into(),
            false,
        )?;
    }
    Ok(())
}

fn apply_sasl(
    base_dir: &Path,
    sasl: RawSasl,
    p: &mut Properties<'_>,
    resolve: ResolveSecret<'_>,
) -> Result<Option<Kerberos>, Rejection> {
    const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"];
    let mechanism = sasl.mechanism.trim().to_ascii_uppercase();
    if !MECHANISMS.contains(&mechanism.as_str()) {
        return Err((
            "sasl.mechanism".into(),
            format!(
                "unknown SASL mechanism {:?}; expected one of {}",
                sasl.mechanism,
                MECHANISMS.join(", ")
            ),
        ));
    }
    if p.get("sasl.mechanisms").is_some() {
        return Err((
            "sasl".into(),
            "`sasl.mechanisms` is also set in client_properties; set the mechanism in one place".into(),
        ));
    }
    let has_password = sasl.password_env.is_some() || sasl.password_file.is_some();
    if sasl.kerberos.is_some() && mechanism != "GSSAPI" {
        return Err((
            "sasl.kerberos".into(),
            format!("only for mechanism GSSAPI, not {mechanism}"),
        ));
    }
    match mechanism.as_str() {
        "GSSAPI" => {
            if sasl.username.is_some() || has_password || sasl.oauthbearer.is_some() {
                return Err((
                    "sasl".into(),
                    "GSSAPI takes no username, password or oauthbearer block; configure `kerberos` instead".into(),
                ));
            }
            p.set("sasl", "sasl.mechanism", mechanism, false)?;
            return super::kerberos::apply(base_dir, sasl.kerberos, p).map(Some);
        }
        "OAUTHBEARER" => {
            if sasl.username.is_some() || has_password {
                return Err((
                    "sasl".into(),
                    "OAUTHBEARER takes no username or password; configure `oauthbearer` instead".into(),
                ));
            }
            let o = sasl.oauthbearer.ok_or_else(|| {
                (
                    "sasl.oauthbearer".to_string(),
                    "OAUTHBEARER needs an `oauthbearer` block (method oidc or unsecured_jwt)".to_string(),
                )
            })?;
            p.set("sasl", "sasl.mechanism", mechanism, false)?;
            apply_oauthbearer(o, p, resolve)?;
        }
        _ => {
            if sasl.oauthbearer.is_some() {
                return Err((
                    "sasl.oauthbearer".into(),
                    format!("only for mechanism OAUTHBEARER, not {mechanism}"),
                ));
            }
            let username = sasl.username.unwrap_or_default();
            if username.is_empty() {
                return Err(("sasl.username".into(), format!("{mechanism} needs a username")));
            }
            let password = resolve(sasl.password_env.as_deref(), sasl.password_file.as_deref())
                .map_err(|r| ("sasl.password_env/password_file".to_string(), r))?;
            p.set("sasl", "sasl.mechanism", mechanism, false)?;
            p.set("sasl", "sasl.username", username, false)?;
            p.set("sasl", "sasl.password", password, true)?;
        }
    }
    Ok(None)
}

fn apply_oauthbearer(o: RawOauthBearer, p: &mut Properties<'_>, resolve: ResolveSecret<'_>) -> Result<(), Rejection> {
    match o.method.trim().to_ascii_lowercase().as_str() {
        "oidc" => apply_oidc(o, p, resolve),
        "unsecured_jwt" => apply_unsecured_jwt(o, p),
        other => Err((
            oauth_field("method"),
            format!("unknown method {other:?}; expected oidc or unsecured_jwt"),
        )),
    }
}

/// `sasl.oauthbearer.<name>`, the path of a field of the `oauthbearer` block.
fn oauth_field(name: &str) -> String {
    format!("sasl.oauthbearer.{name}")
}

/// OAUTHBEARER with tokens from an OIDC token endpoint (client credentials grant).
fn apply_oidc(o: RawOauthBearer, p: &mut Properties<'_>, resolve: ResolveSecret<'_>) -> Result<(), Rejection> {
    let f = oauth_field;
    let has_secret = o.client_secret_env.is_some() || o.client_secret_file.is_some();
    if o.principal.is_some() || o.lifetime.is_some() {
        return Err((
            f("method"),
            "principal and lifetime are only for method unsecured_jwt".into(),
        ));
    }
    let url = o.token_endpoint_url.ok_or_else(|| {
        (
            f("token_endpoint_url"),
            "method oidc needs the token endpoint URL".to_string(),
        )
    })?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err((f("token_endpoint_url"), format!("{url:?} is not an http(s) URL")));
    }
    let client_id = o
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| (f("client_id"), "method oidc needs a client id".to_string()))?;
    if !has_secret {
        return Err((
            f("client_secret_env/client_secret_file"),
            "method oidc needs the client secret from an environment variable or a file".into(),
        ));
    }
    let secret = resolve(o.client_secret_env.as_deref(), o.client_secret_file.as_deref())
        .map_err(|r| (f("client_secret_env/client_secret_file"), r))?;
    p.set(&f("method"), "sasl.oauthbearer.method", "oidc".into(), false)?;
    p.set(
        &f("token_endpoint_url"),
        "sasl.oauthbearer.token.endpoint.url",
        url,
        false,
    )?;
    p.set(&f("client_id"), "sasl.oauthbearer.client.id", client_id, false)?;
    p.set(&f("client_secret_env"), "sasl.oauthbearer.client.secret", secret, true)?;
    if let Some(scope) = o.scope {
        p.set(&f("scope"), "sasl.oauthbearer.scope", scope, false)?;
    }
    if !o.extensions.is_empty() {
        let ext = extensions(&o.extensions).map_err(|r| (f("extensions"), r))?;
        p.set(&f("extensions"), "sasl.oauthbearer.extensions", ext, false)?;
    }
    Ok(())
}

/// OAUTHBEARER with an unsigned token naming `principal` (only test brokers accept it).
fn apply_unsecured_jwt(o: RawOauthBearer, p: &mut Properties<'_>) -> Result<(), Rejection> {
    let f = oauth_field;
    let has_secret = o.client_secret_env.is_some() || o.client_secret_file.is_some();
    if o.token_endpoint_url.is_some() || o.client_id.is_some() || has_secret {
        return Err((
            f("method"),
            "token_endpoint_url, client_id and client_secret are only for method oidc".into(),
        ));
    }
    let principal = o
        .principal
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .ok_or_else(|| {
            (
                f("principal"),
                "method unsecured_jwt needs a principal without spaces".to_string(),
            )
        })?;
    let mut config = format!("principal={principal}");
    if let Some(scope) = o.scope {
        if scope.contains(char::is_whitespace) {
            return Err((f("scope"), "must not contain spaces (use commas)".into()));
        }
        config.push_str(&format!(" scope={scope}"));
    }
    // librdkafka makes this token once per client and leaves its refresh to the
    // application's event loop, which the exporter's clients do not run: the lifetime
    // has to outlast the process.
    let lifetime = o.lifetime.unwrap_or(UNSECURED_JWT_LIFETIME);
    config.push_str(&format!(" lifeSeconds={}", lifetime.as_secs().max(1)));
    for (k, v) in &o.extensions {
        extensions(&BTreeMap::from([(k.clone(), v.clone())])).map_err(|r| (f("extensions"), r))?;
        config.push_str(&format!(" extension_{k}={v}"));
    }
    p.set(
        &f("method"),
        "enable.sasl.oauthbearer.unsecure.jwt",
        "true".into(),
        false,
    )?;
    p.set(&f("principal"), "sasl.oauthbearer.config", config, true)?;
    Ok(())
}

/// SASL extensions as librdkafka wants them: `key=value,key=value` (RFC 7628 key syntax).
fn extensions(map: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = Vec::new();
    for (k, v) in map {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphabetic()) || k == "auth" {
            return Err(format!("extension name {k:?} must be letters only and not `auth`"));
        }
        if v.contains([',', '=', ' ']) {
            return Err(format!("extension {k}: value must not contain ',', '=' or spaces"));
        }
        out.push(format!("{k}={v}"));
    }
    Ok(out.join(","))
}

/// With TLS that verifies brokers but no CA file, librdkafka uses OpenSSL's default roots, so a
/// bundle must exist.
fn check_system_roots(p: &Properties<'_>) -> Result<(), Rejection> {
    let tls = p
        .get("security.protocol")
        .is_some_and(|s| s.eq_ignore_ascii_case("SSL") || s.eq_ignore_ascii_case("SASL_SSL"));
    let verifies = p
        .get("enable.ssl.certificate.verification")
        .is_none_or(|v| v != "false");
    if !tls || !verifies || p.get("ssl.ca.location").is_some() || p.get("ssl.ca.pem").is_some() {
        return Ok(());
    }
    let env_bundle = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    if env_bundle.iter().any(|b| b.is_file()) || SYSTEM_CA_BUNDLES.iter().any(|b| Path::new(b).is_file()) {
        return Ok(());
    }
    Err((
        "tls.ca_file".into(),
        format!(
            "TLS needs a CA to verify the brokers: no ca_file is given and no system CA bundle exists (looked at SSL_CERT_FILE and {})",
            SYSTEM_CA_BUNDLES.join(", ")
        ),
    ))
}

/// Checks that `file` (relative to `base_dir`) is readable PEM holding a `kind` block and
/// returns its full path.
fn pem_file(base_dir: &Path, file: &Path, kind: &str) -> Result<String, String> {
    let full = if file.is_absolute() {
        file.to_path_buf()
    } else {
        base_dir.join(file)
    };
    let text = std::fs::read_to_string(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))?;
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{kind}-----")));
    if !found {
        return Err(format!("{} holds no PEM {kind} block", full.display()));
    }
    full.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not a UTF-8 path", full.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tls: Option<RawTls>, sasl: Option<RawSasl>, base: &Path) -> Result<Vec<(String, String)>, Rejection> {
        let mut props = Vec::new();
        let mut secrets = Vec::new();
        let resolve = |env: Option<&str>, _: Option<&Path>| -> Result<String, String> {
            env.map(|e| format!("value-of-{e}")).ok_or_else(|| "no env".to_string())
        };
        apply(
            base,
            tls,
            sasl,
            &mut Properties {
                props: &mut props,
                secret_keys: &mut secrets,
            },
            &resolve,
        )?;
        Ok(props)
    }

    fn sasl(mechanism: &str) -> RawSasl {
        RawSasl {
            mechanism: mechanism.into(),
            username: Some("alice".into()),
            password_env: Some("PW".into()),
            password_file: None,
            oauthbearer: None,
            kerberos: None,
        }
    }

    #[test]
    fn protocol_is_derived_from_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = run(None, Some(sasl("scram-sha-256")), dir.path()).unwrap();
        assert!(p.contains(&("security.protocol".into(), "SASL_PLAINTEXT".into())));
        assert!(p.contains(&("sasl.mechanism".into(), "SCRAM-SHA-256".into())));
        assert!(p.contains(&("sasl.password".into(), "value-of-PW".into())));
        let p = run(Some(RawTls::default()), Some(sasl("PLAIN")), dir.path()).unwrap();
        assert!(p.contains(&("security.protocol".into(), "SASL_SSL".into())));
        assert!(p.contains(&("ssl.endpoint.identification.algorithm".into(), "https".into())));
    }

    #[test]
    fn tls_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("key.pem"), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n").unwrap();
        let tls = |ca: &str| RawTls {
            ca_file: Some(ca.into()),
            ..RawTls::default()
        };
        let p = run(Some(tls("ca.pem")), None, dir.path()).unwrap();
        let ca = dir.path().join("ca.pem").display().to_string();
        assert!(p.contains(&("ssl.ca.location".into(), ca)));
        assert!(p.contains(&("security.protocol".into(), "SSL".into())));
        let (field, reason) = run(Some(tls("missing.pem")), None, dir.path()).unwrap_err();
        assert_eq!(field, "tls.ca_file");
        assert!(reason.contains("cannot read"), "{reason}");
        let (_, reason) = run(Some(tls("key.pem")), None, dir.path()).unwrap_err();
        assert!(reason.contains("no PEM CERTIFICATE block"), "{reason}");
        let mtls = RawTls {
            cert_file: Some("ca.pem".into()),
            key_file: Some("key.pem".into()),
            ..RawTls::default()
        };
        let (field, reason) = run(Some(mtls), None, dir.path()).unwrap_err();
        assert_eq!(field, "tls.key_file");
        assert!(reason.contains("encrypted"), "{reason}");
        let half = RawTls {
            cert_file: Some("ca.pem".into()),
            ..RawTls::default()
        };
        assert_eq!(run(Some(half), None, dir.path()).unwrap_err().0, "tls.key_file");
    }

    #[test]
    fn mechanism_specific_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sasl("OAUTHBEARER");
        let (field, _) = run(None, Some(s), dir.path()).unwrap_err();
        assert_eq!(field, "sasl");
        s = sasl("OAUTHBEARER");
        s.username = None;
        s.password_env = None;
        s.oauthbearer = Some(RawOauthBearer {
            method: "unsecured_jwt".into(),
            token_endpoint_url: None,
            client_id: None,
            client_secret_env: None,
            client_secret_file: None,
            scope: None,
            extensions: BTreeMap::new(),
            principal: Some("alice".into()),
            lifetime: Some(Duration::from_secs(3600)),
        });
        let p = run(None, Some(s), dir.path()).unwrap();
        assert!(p.contains(&(
            "sasl.oauthbearer.config".into(),
            "principal=alice lifeSeconds=3600".into()
        )));
        assert!(p.contains(&("enable.sasl.oauthbearer.unsecure.jwt".into(), "true".into())));
        let mut s = sasl("PLAIN");
        s.username = None;
        assert_eq!(run(None, Some(s), dir.path()).unwrap_err().0, "sasl.username");
    }

    #[test]
    fn oidc_maps_to_librdkafka_properties() {
        let dir = tempfile::tempdir().unwrap();
        let oidc = |secret: Option<&str>| RawSasl {
            mechanism: "oauthbearer".into(),
            username: None,
            password_env: None,
            password_file: None,
            oauthbearer: Some(RawOauthBearer {
                method: "oidc".into(),
                token_endpoint_url: Some("https://idp.example/token".into()),
                client_id: Some("kse".into()),
                client_secret_env: secret.map(str::to_string),
                client_secret_file: None,
                scope: Some("kafka".into()),
                extensions: BTreeMap::from([("logicalCluster".to_string(), "lkc-1".to_string())]),
                principal: None,
                lifetime: None,
            }),
            kerberos: None,
        };
        let mut props = Vec::new();
        let mut secrets = Vec::new();
        let resolve = |env: Option<&str>, _: Option<&Path>| -> Result<String, String> {
            env.map(|e| format!("value-of-{e}")).ok_or_else(|| "no env".to_string())
        };
        apply(
            dir.path(),
            Some(RawTls::default()),
            Some(oidc(Some("CS"))),
            &mut Properties {
                props: &mut props,
                secret_keys: &mut secrets,
            },
            &resolve,
        )
        .unwrap();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.token.endpoint.url", "https://idp.example/token"),
            ("sasl.oauthbearer.client.id", "kse"),
            ("sasl.oauthbearer.client.secret", "value-of-CS"),
            ("sasl.oauthbearer.scope", "kafka"),
            ("sasl.oauthbearer.extensions", "logicalCluster=lkc-1"),
        ] {
            assert!(props.contains(&(k.to_string(), v.to_string())), "{k}: {props:?}");
        }
        assert_eq!(secrets, ["sasl.oauthbearer.client.secret"]);
        let (field, _) = run(None, Some(oidc(None)), dir.path()).unwrap_err();
        assert_eq!(field, "sasl.oauthbearer.client_secret_env/client_secret_file");
    }

    #[test]
    fn gssapi_is_reported_with_the_field_that_selects_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kse.keytab"), [5u8, 2]).unwrap();
        let mut props = Vec::new();
        let mut secrets = Vec::new();
        let resolve = |_: Option<&str>, _: Option<&Path>| -> Result<String, String> { Ok("pw".into()) };
        let mut apply_with = |props: &mut Vec<(String, String)>, sasl: Option<RawSasl>| {
            let mut p = Properties {
                props,
                secret_keys: &mut secrets,
            };
            apply(dir.path(), None, sasl, &mut p, &resolve)
        };
        let field = |k: Result<Option<Kerberos>, Rejection>| k.unwrap().map(|k| k.field);
        let kerberos: super::super::kerberos::RawKerberos =
            serde_yaml::from_str("{principal: kse@KSE.TEST, keytab: kse.keytab}").unwrap();
        let gssapi = |kerberos| RawSasl {
            username: None,
            password_env: None,
            kerberos,
            ..sasl("GSSAPI")
        };
        assert_eq!(
            field(apply_with(&mut props, Some(gssapi(Some(kerberos))))).as_deref(),
            Some("sasl.mechanism")
        );
        let (f, reason) = apply_with(&mut Vec::new(), Some(gssapi(None))).unwrap_err();
        assert_eq!(f, "sasl.kerberos", "{reason}");
        let (f, reason) = apply_with(&mut Vec::new(), Some(sasl("GSSAPI"))).unwrap_err();
        assert_eq!(f, "sasl", "a password with GSSAPI: {reason}");
        let mut props = vec![
            ("security.protocol".to_string(), "SASL_PLAINTEXT".to_string()),
            ("sasl.mechanisms".to_string(), "gssapi".to_string()),
            ("sasl.kerberos.principal".to_string(), "kse@KSE.TEST".to_string()),
        ];
        let k = apply_with(&mut props, None).unwrap().unwrap();
        assert_eq!(k.field, "client_properties.sasl.mechanisms");
        assert_eq!(k.principal.as_deref(), Some("kse@KSE.TEST"));
        let mut props = Vec::new();
        assert_eq!(apply_with(&mut props, Some(sasl("SCRAM-SHA-512"))).unwrap(), None);
    }
}
