//! OAUTHBEARER tokens for the native reader: unsigned tokens naming a principal (what
//! librdkafka's `sasl.oauthbearer.config` builds, accepted only by brokers configured for tests)
//! or tokens from an OIDC token endpoint (client credentials grant, RFC 6749 4.4), cached until
//! most of their lifetime has passed. Neither the client secret nor a token is ever part of an
//! error message.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::settings::SaslSettings;

/// Where tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Unsecured {
        principal: String,
        scope: Option<String>,
        lifetime: Duration,
    },
    Oidc {
        token_endpoint_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

/// A token and when it is to be replaced.
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// See the module documentation.
pub(crate) struct TokenProvider {
    source: TokenSource,
    extensions: BTreeMap<String, String>,
    cached: Mutex<Option<Cached>>,
}

/// Share of a token's lifetime after which a new one is fetched, as Kafka's own clients do.
const REFRESH_AT: f64 = 0.8;

/// Lifetime assumed when the token endpoint does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl TokenProvider {
    /// The provider for an OAUTHBEARER `sasl` setting (`None` for other mechanisms).
    pub(crate) fn from_settings(sasl: Option<&SaslSettings>) -> Option<TokenProvider> {
        let (source, extensions) = match sasl? {
            SaslSettings::OauthUnsecured {
                principal,
                scope,
                lifetime,
                extensions,
            } => (
                TokenSource::Unsecured {
                    principal: principal.clone(),
                    scope: scope.clone(),
                    lifetime: *lifetime,
                },
                extensions.clone(),
            ),
            SaslSettings::OauthOidc {
                token_endpoint_url,
                client_id,
                client_secret,
                scope,
                extensions,
            } => (
                TokenSource::Oidc {
                    token_endpoint_url: token_endpoint_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    scope: scope.clone(),
                },
                extensions.clone(),
            ),
            _ => return None,
        };
        Some(TokenProvider {
            source,
            extensions,
            cached: Mutex::new(None),
        })
    }

    /// SASL extensions sent with every token.
    pub(crate) fn extensions(&self) -> &BTreeMap<String, String> {
        &self.extensions
    }

    /// A current token: the cached one, or a new one. Blocking (the token endpoint is asked
    /// over HTTP); callers run it on a blocking thread.
    pub(crate) fn token(&self, timeout: Duration) -> Result<String, String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = match &self.source {
            TokenSource::Unsecured {
                principal,
                scope,
                lifetime,
            } => (
                unsecured_token(principal, scope.as_deref(), *lifetime, now_secs()),
                *lifetime,
            ),
            TokenSource::Oidc {
                token_endpoint_url,
                client_id,
                client_secret,
                scope,
            } => fetch(token_endpoint_url, client_id, client_secret, scope.as_deref(), timeout)?,
        };
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.mul_f64(REFRESH_AT),
        });
        Ok(token)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An unsigned JWS (`alg: none`) with the claims Kafka's unsecured validator reads: `sub`,
/// `iat`, `exp` and, when given, `scope` as a list (comma-separated in the configuration).
pub(crate) fn unsecured_token(principal: &str, scope: Option<&str>, lifetime: Duration, now: u64) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let mut claims = serde_json::json!({
        "sub": principal,
        "iat": now,
        "exp": now + lifetime.as_secs(),
    });
    if let Some(scope) = scope {
        let list: Vec<&str> = scope.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        claims["scope"] = serde_json::json!(list);
    }
    format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims.to_string()))
}

/// The form body of a client credentials request.
pub(crate) fn token_request_body(scope: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    form.finish()
}

/// `Authorization: Basic` for the client credentials, each form-urlencoded first (RFC 6749
/// 2.3.1).
pub(crate) fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(client_secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// The access token and its lifetime from a token endpoint's JSON answer.
pub(crate) fn parse_token_response(body: &str) -> Result<(String, Duration), String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the token endpoint's answer is not JSON: {e}"))?;
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?;
    let lifetime = json
        .get("expires_in")
        .and_then(|e| e.as_u64())
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((token.to_string(), lifetime))
}

/// Largest token endpoint answer read: tokens are a few KiB.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

fn fetch(
    url: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
    timeout: Duration,
) -> Result<(String, Duration), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout.max(Duration::from_secs(1)))
        .build();
    let response = agent
        .post(url)
        .set("Authorization", &basic_auth(client_id, client_secret))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .set("Accept", "application/json")
        .send_string(&token_request_body(scope));
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(code, _)) => return Err(format!("token endpoint {url} answered HTTP {code}")),
        Err(e) => return Err(format!("token endpoint {url}: {}", e.kind())),
    };
    let mut body = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(response.into_reader(), MAX_TOKEN_RESPONSE),
        &mut body,
    )
    .map_err(|e| format!("token endpoint {url}: reading the answer: {e}"))?;
    parse_token_response(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    #[test]
    fn unsecured_tokens_carry_the_claims_kafka_reads() {
        let t = unsecured_token("alice", Some("a, b"), Duration::from_secs(60), 1000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "unsigned");
        let decode = |s: &str| {
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
            serde_json::from_slice::<serde_json::Value>(&b).unwrap()
        };
        assert_eq!(decode(parts[0]), serde_json::json!({"alg": "none"}));
        assert_eq!(
            decode(parts[1]),
            serde_json::json!({"sub": "alice", "iat": 1000, "exp": 1060, "scope": ["a", "b"]})
        );
    }

    #[test]
    fn client_credentials_are_encoded_as_the_rfc_says() {
        assert_eq!(token_request_body(None), "grant_type=client_credentials");
        assert_eq!(
            token_request_body(Some("kafka read")),
            "grant_type=client_credentials&scope=kafka+read"
        );
        let expected = base64::engine::general_purpose::STANDARD.encode("id%3A1:s+e%26c");
        assert_eq!(basic_auth("id:1", "s e&c"), format!("Basic {expected}"));
        assert_eq!(
            parse_token_response(r#"{"access_token":"t0k","expires_in":120}"#),
            Ok(("t0k".to_string(), Duration::from_secs(120)))
        );
        assert_eq!(
            parse_token_response(r#"{"access_token":"t0k"}"#).unwrap().1,
            DEFAULT_LIFETIME
        );
        assert!(parse_token_response(r#"{"error":"invalid_client"}"#).is_err());
        assert!(parse_token_response("<html>").is_err());
    }

    /// Serves `answers` in turn, one HTTP request each, returning each request's
    /// `Authorization` header.
    fn endpoint(answers: Vec<(u16, String)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if lower.starts_with("authorization:") {
                        seen.push(line["authorization:".len()..].trim().to_string());
                    }
                }
                let mut body_in = vec![0; length];
                reader.read_exact(&mut body_in).unwrap();
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (url, server)
    }

    #[test]
    fn oidc_tokens_are_fetched_cached_and_refused_without_leaking_the_secret() {
        let (url, server) = endpoint(vec![
            (200, r#"{"access_token":"first","expires_in":3600}"#.into()),
            (401, r#"{"error":"invalid_client"}"#.into()),
        ]);
        let oidc = |url: &str| {
            TokenProvider::from_settings(Some(&SaslSettings::OauthOidc {
                token_endpoint_url: url.to_string(),
                client_id: "kse".into(),
                client_secret: "s3cr3t".into(),
                scope: None,
                extensions: BTreeMap::new(),
            }))
            .unwrap()
        };
        let p = oidc(&url);
        assert_eq!(p.token(Duration::from_secs(5)).unwrap(), "first");
        assert_eq!(p.token(Duration::from_secs(5)).unwrap(), "first", "cached");
        let refused = oidc(&url).token(Duration::from_secs(5)).unwrap_err();
        assert!(refused.contains("HTTP 401") && !refused.contains("s3cr3t"), "{refused}");
        let seen = server.join().unwrap();
        assert_eq!(seen, vec![basic_auth("kse", "s3cr3t"); 2]);
    }
}
