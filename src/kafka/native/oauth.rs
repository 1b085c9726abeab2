//! Where OAUTHBEARER tokens come from: an unsecured JWT (for brokers set up for tests, like
//! librdkafka's `sasl.oauthbearer.config`), or an OIDC client-credentials grant. Tokens are
//! cached so that every new broker connection does not hit the token endpoint.
//!
//! Client secrets and tokens never appear in errors or in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::settings::SaslSettings;

/// Token lifetime assumed when the token endpoint does not say (`expires_in` is optional in
/// RFC 6749 section 5.1).
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);
/// Largest response read from the token endpoint; a token response is a few kilobytes.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

pub(crate) enum TokenSource {
    /// Unsigned JWT (alg none) naming a principal; only brokers configured for tests accept it.
    Unsecured {
        principal: String,
        scope: Option<String>,
        lifetime: Duration,
        extensions: BTreeMap<String, String>,
    },
    /// OIDC client-credentials grant against a token endpoint.
    Oidc {
        token_endpoint_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        extensions: BTreeMap<String, String>,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Unsecured {
                principal,
                scope,
                lifetime,
                extensions,
            } => f
                .debug_struct("Unsecured")
                .field("principal", principal)
                .field("scope", scope)
                .field("lifetime", lifetime)
                .field("extensions", extensions)
                .finish(),
            TokenSource::Oidc {
                token_endpoint_url,
                client_id,
                scope,
                extensions,
                ..
            } => f
                .debug_struct("Oidc")
                .field("token_endpoint_url", token_endpoint_url)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("scope", scope)
                .field("extensions", extensions)
                .finish(),
        }
    }
}

/// A token with the moment it should be replaced.
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Hands out tokens from a [`TokenSource`], fetching a new one once 80% of the last one's
/// lifetime has passed, so that a connection opened just before expiry still authenticates.
pub(crate) struct TokenProvider {
    source: TokenSource,
    cache: Mutex<Option<Cached>>,
    /// TLS towards an `https` token endpoint; ureq's built-in public roots when `None`.
    https: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// The provider for an OAUTHBEARER `sasl` setting (`None` for other mechanisms).
    pub(crate) fn from_settings(sasl: Option<&SaslSettings>) -> Option<TokenProvider> {
        let source = match sasl? {
            SaslSettings::OauthUnsecured {
                principal,
                scope,
                lifetime,
                extensions,
            } => TokenSource::Unsecured {
                principal: principal.clone(),
                scope: scope.clone(),
                lifetime: *lifetime,
                extensions: extensions.clone(),
            },
            SaslSettings::OauthOidc {
                token_endpoint_url,
                client_id,
                client_secret,
                scope,
                extensions,
            } => TokenSource::Oidc {
                token_endpoint_url: token_endpoint_url.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                scope: scope.clone(),
                extensions: extensions.clone(),
            },
            _ => return None,
        };
        Some(TokenProvider::new(source))
    }

    /// The same provider, trusting `https` for the token endpoint.
    pub(crate) fn with_https(mut self, https: Arc<rustls::ClientConfig>) -> Self {
        self.https = Some(https);
        self
    }

    pub(crate) fn new(source: TokenSource) -> Self {
        TokenProvider {
            source,
            cache: Mutex::new(None),
            https: None,
        }
    }

    /// A token valid for at least a while: cached until 80% of its lifetime has passed, then
    /// fetched again. Blocking (HTTP for OIDC); the caller runs it on a blocking thread.
    /// Holding the lock while fetching makes concurrent callers wait for one fetch instead of
    /// each asking the token endpoint.
    pub(crate) fn token(&self, timeout: Duration) -> Result<String, String> {
        // A panic elsewhere while holding the lock leaves a valid (or empty) cache: keep going.
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if let Some(c) = cache.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = match &self.source {
            TokenSource::Unsecured {
                principal,
                scope,
                lifetime,
                ..
            } => (
                unsecured_jwt(principal, scope.as_deref(), *lifetime, unix_now()?)?,
                *lifetime,
            ),
            TokenSource::Oidc {
                token_endpoint_url,
                client_id,
                client_secret,
                scope,
                ..
            } => fetch_oidc(
                token_endpoint_url,
                (client_id, client_secret),
                scope.as_deref(),
                self.https.clone(),
                timeout,
            )?,
        };
        *cache = Some(Cached {
            token: token.clone(),
            // An absurd lifetime cannot overflow the clock; it only means "fetch again next time".
            refresh_at: now.checked_add(lifetime.mul_f64(0.8)).unwrap_or(now),
        });
        Ok(token)
    }

    /// SASL extensions (KIP-342) to send with every token.
    pub(crate) fn extensions(&self) -> &BTreeMap<String, String> {
        match &self.source {
            TokenSource::Unsecured { extensions, .. } | TokenSource::Oidc { extensions, .. } => extensions,
        }
    }
}

fn unix_now() -> Result<Duration, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_string())
}

/// An unsecured JWS as Kafka's `OAuthBearerUnsecuredLoginCallbackHandler` writes and its
/// unsecured validator reads: header `{"alg":"none"}`, claims `sub`, `iat`, `exp` (seconds since
/// the epoch) and `scope` (a list), base64url without padding, and an empty signature.
///
/// Kafka's validator decodes with Java's basic base64 decoder, which refuses the base64url
/// characters `-` and `_`. [`alphabet_neutral_json`] keeps them out of the encoding, so the
/// token is valid for both Kafka and standard JWT parsers.
fn unsecured_jwt(principal: &str, scope: Option<&str>, lifetime: Duration, now: Duration) -> Result<String, String> {
    if principal.trim().is_empty() {
        return Err("unsecured OAUTHBEARER token: the principal is empty".to_string());
    }
    if lifetime.as_secs() == 0 {
        return Err("unsecured OAUTHBEARER token: the lifetime must be at least one second".to_string());
    }
    let iat = now.as_secs();
    let mut claims = serde_json::json!({
        "sub": principal,
        "iat": iat,
        "exp": iat.saturating_add(lifetime.as_secs()),
    });
    if let Some(scope) = scope {
        let scopes: Vec<&str> = scope.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        claims["scope"] = serde_json::json!(scopes);
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    let payload = URL_SAFE_NO_PAD.encode(alphabet_neutral_json(&claims.to_string()));
    Ok(format!("{header}.{payload}."))
}

/// JSON whose base64 encoding has no `+`, `/`, `-` or `_`, so base64 and base64url agree. Only
/// bytes 0x3E `>`, 0x3F `?`, 0x7E `~`, 0x7F and non-ASCII bytes can produce those sextets; they
/// can only occur inside JSON strings, where `\uXXXX` escapes mean the same text.
fn alphabet_neutral_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !matches!(c, '>' | '?' | '~' | '\x7f') {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0u16; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The form body of a client-credentials token request (RFC 6749 section 4.4.2).
fn token_request_body(scope: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        form.append_pair("scope", scope);
    }
    form.finish()
}

/// HTTP Basic credentials of a client: RFC 6749 section 2.3.1 has both parts form-urlencoded
/// before they are joined and base64-encoded, so a `:` in the client id stays unambiguous.
fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(client_secret.as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Reads `access_token` and `expires_in` from a successful token response. The body holds the
/// token, so errors describe it without quoting it.
fn parse_token_response(body: &[u8]) -> Result<(String, Duration), String> {
    let Ok(serde_json::Value::Object(response)) = serde_json::from_slice(body) else {
        return Err("the token endpoint response is not a JSON object".to_string());
    };
    let token = match response.get("access_token") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err("the token endpoint response has no access_token string".to_string()),
    };
    let lifetime = match response.get("expires_in") {
        None | Some(serde_json::Value::Null) => DEFAULT_EXPIRES_IN,
        Some(v) => match v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
            Some(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs.min(1e9)),
            _ => return Err("the token endpoint response has an invalid expires_in".to_string()),
        },
    };
    Ok((token, lifetime))
}

/// The OAuth error code (`invalid_client`, ...) of an error response, if it has one; it helps
/// and holds no secret.
fn oauth_error_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = v.get("error")?.as_str()?;
    Some(code.chars().filter(|c| c.is_ascii_graphic()).take(100).collect())
}

/// POSTs the client-credentials grant and returns the token and its lifetime.
fn fetch_oidc(
    url: &str,
    (client_id, client_secret): (&str, &str),
    scope: Option<&str>,
    https: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<(String, Duration), String> {
    // Redirects are not followed: they would carry the client credentials to another URL.
    let mut agent = ureq::AgentBuilder::new().timeout(timeout).redirects(0);
    if let Some(https) = https {
        agent = agent.tls_config(https);
    }
    let agent = agent.build();
    let response = agent
        .post(url)
        .set("Authorization", &basic_authorization(client_id, client_secret))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .set("Accept", "application/json")
        .send_string(&token_request_body(scope));
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            let code = r.into_string().ok().and_then(|b| oauth_error_code(&b));
            let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
            return Err(format!("token endpoint {url} answered HTTP {status}{code}"));
        }
        Err(ureq::Error::Transport(t)) => {
            let detail = t.message().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(format!("cannot get a token from {url}: {}{detail}", t.kind()));
        }
    };
    if response.status() != 200 {
        return Err(format!(
            "token endpoint {url} answered HTTP {} instead of 200",
            response.status()
        ));
    }
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(response.into_reader(), MAX_RESPONSE_BYTES),
        &mut body,
    )
    .map_err(|e| format!("cannot read the token endpoint {url} response: {}", e.kind()))?;
    parse_token_response(&body).map_err(|e| format!("token endpoint {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    fn decode_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn unsecured_jwt_has_kafka_claims() {
        let jwt = unsecured_jwt(
            "alice",
            Some("read, write"),
            Duration::from_secs(60),
            Duration::from_secs(1000),
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "");
        assert!(!jwt.contains('='));
        assert_eq!(decode_part(parts[0]), serde_json::json!({"alg": "none"}));
        assert_eq!(
            decode_part(parts[1]),
            serde_json::json!({"sub": "alice", "iat": 1000, "exp": 1060, "scope": ["read", "write"]})
        );
        // Characters whose base64 would differ between the two alphabets are escaped.
        let odd = unsecured_jwt("a>b?c~d\u{7f}é😀", Some("x?"), Duration::from_secs(1), Duration::ZERO).unwrap();
        let payload = odd.split('.').nth(1).unwrap();
        assert!(!payload.contains(['-', '_', '+', '/']), "{payload}");
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&standard).unwrap();
        assert_eq!(claims["sub"], "a>b?c~d\u{7f}é😀");
        assert_eq!(claims["scope"], serde_json::json!(["x?"]));
        let no_scope = unsecured_jwt("a", None, Duration::from_secs(1), Duration::ZERO).unwrap();
        assert!(decode_part(no_scope.split('.').nth(1).unwrap()).get("scope").is_none());
        assert!(unsecured_jwt("", None, Duration::from_secs(1), Duration::ZERO).is_err());
        assert!(unsecured_jwt("a", None, Duration::from_millis(10), Duration::ZERO).is_err());
    }

    #[test]
    fn provider_caches_unsecured_token() {
        let p = TokenProvider::new(TokenSource::Unsecured {
            principal: "alice".into(),
            scope: None,
            lifetime: Duration::from_secs(3600),
            extensions: BTreeMap::from([("traceId".into(), "x".into())]),
        });
        let a = p.token(Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(p.token(Duration::from_secs(1)).unwrap(), a, "cached, iat unchanged");
        assert_eq!(p.extensions().len(), 1);
    }

    #[test]
    fn request_helpers() {
        assert_eq!(token_request_body(None), "grant_type=client_credentials");
        assert_eq!(
            token_request_body(Some("a b")),
            "grant_type=client_credentials&scope=a+b"
        );
        // "a:b" / "p w" form-encode to "a%3Ab" / "p+w".
        assert_eq!(
            basic_authorization("a:b", "p w"),
            format!("Basic {}", STANDARD.encode("a%3Ab:p+w"))
        );
    }

    #[test]
    fn token_responses_are_parsed() {
        let (t, l) = parse_token_response(br#"{"access_token":"abc","expires_in":120}"#).unwrap();
        assert_eq!((t.as_str(), l), ("abc", Duration::from_secs(120)));
        let (_, l) = parse_token_response(br#"{"access_token":"abc","token_type":"Bearer"}"#).unwrap();
        assert_eq!(l, DEFAULT_EXPIRES_IN);
        for bad in [
            &b"not json"[..],
            br#"{"expires_in":1}"#,
            br#"{"access_token":"secretX","expires_in":-1}"#,
        ] {
            let e = parse_token_response(bad).unwrap_err();
            assert!(!e.contains("secretX"), "{e}");
        }
    }

    /// Serves one HTTP request with `status` and `body`; returns the request's headers.
    fn serve_once(status: &str, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let status = status.to_string();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut form = vec![0; len];
            reader.read_exact(&mut form).unwrap();
            head.push_str(&String::from_utf8(form).unwrap());
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            reader.get_mut().write_all(reply.as_bytes()).unwrap();
            head
        });
        (url, handle)
    }

    fn oidc(url: String) -> TokenProvider {
        TokenProvider::new(TokenSource::Oidc {
            token_endpoint_url: url,
            client_id: "exporter".into(),
            client_secret: "s3cr3t!".into(),
            scope: Some("kafka".into()),
            extensions: BTreeMap::new(),
        })
    }

    #[test]
    fn oidc_fetches_a_token_with_basic_auth() {
        let (url, server) = serve_once("200 OK", r#"{"access_token":"tok123","expires_in":300}"#);
        let p = oidc(url);
        assert_eq!(p.token(Duration::from_secs(5)).unwrap(), "tok123");
        let request = server.join().unwrap();
        let basic = format!("authorization: Basic {}", STANDARD.encode("exporter:s3cr3t%21"));
        assert!(
            request.to_ascii_lowercase().contains(&basic.to_ascii_lowercase()),
            "{request}"
        );
        assert!(request.starts_with("POST /token"), "{request}");
        assert!(
            request.ends_with("grant_type=client_credentials&scope=kafka"),
            "{request}"
        );
        // Cached: no second request (the server is gone).
        assert_eq!(p.token(Duration::from_secs(5)).unwrap(), "tok123");
    }

    #[test]
    fn oidc_http_error_names_status_and_url_not_secret() {
        let (url, server) = serve_once("401 Unauthorized", r#"{"error":"invalid_client"}"#);
        let p = oidc(url.clone());
        let e = p.token(Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(
            e.contains("401") && e.contains(&url) && e.contains("invalid_client"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t") && !format!("{p:?}").contains("s3cr3t"), "{e}");

        let (url, server) = serve_once("302 Found", "{}");
        let e = oidc(url).token(Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(e.contains("302"), "{e}");
    }

    #[test]
    fn oidc_token_is_fetched_again_once_expired() {
        let (url, server) = serve_once("200 OK", r#"{"access_token":"short","expires_in":0}"#);
        let p = oidc(url);
        assert_eq!(p.token(Duration::from_secs(5)).unwrap(), "short");
        server.join().unwrap();
        // Not cached: the second call asks the endpoint again, which is gone now.
        assert!(p.token(Duration::from_secs(5)).is_err());
    }

    #[test]
    fn oidc_unreachable_endpoint_names_url() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/token");
        let e = oidc(url.clone()).token(Duration::from_secs(5)).unwrap_err();
        assert!(e.contains(&url) && !e.contains("s3cr3t"), "{e}");
    }
}
