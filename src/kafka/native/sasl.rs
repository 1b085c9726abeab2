//! SASL client exchanges (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) as pure state machines: the
//! transport carries the bytes in SaslAuthenticate requests, this module only decides what to
//! send and whether the broker's answers are acceptable. Keeping I/O out makes every branch,
//! including a hostile or broken broker, testable without a network.
//!
//! Secrets (passwords, tokens) never appear in errors or in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

/// SASL mechanisms the native client can authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OauthBearer,
}

impl Mechanism {
    const ALL: [Mechanism; 4] = [Self::Plain, Self::ScramSha256, Self::ScramSha512, Self::OauthBearer];

    /// Parses a mechanism name as Kafka spells it (`sasl.mechanism`), case-insensitively.
    pub(crate) fn parse(s: &str) -> Option<Mechanism> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The name sent in SaslHandshake.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// Kafka refuses to store SCRAM credentials with fewer iterations, so a server asking for fewer
/// is not a Kafka broker we want to prove our password to (a downgrade makes offline guessing
/// cheaper).
const SCRAM_MIN_ITERATIONS: u32 = 4096;
/// Kafka itself caps iterations at 16384; compatible brokers may allow more. A million bounds
/// the PBKDF2 work a broken or hostile server can make us do to about a second of CPU.
const SCRAM_MAX_ITERATIONS: u32 = 1_000_000;
/// The client nonce: 24 random bytes, base64 (no `,`, so it is a valid SCRAM nonce).
const SCRAM_NONCE_BYTES: usize = 24;

/// Where an exchange stands; each step knows what the next server message must be.
enum Step {
    Start,
    /// PLAIN and OAUTHBEARER: the only client message was sent.
    Sent,
    /// SCRAM: client-first sent; `bare` is the client-first message without the GS2 header.
    ScramFirstSent {
        bare: String,
        nonce: String,
    },
    /// SCRAM: client-final sent; the server must prove it knows the password too.
    ScramFinalSent {
        server_signature: Vec<u8>,
    },
    Done,
    Failed,
}

struct Login {
    username: String,
    password: String,
}

impl Login {
    fn new(username: &str, password: &str) -> Login {
        let (username, password) = (username.to_string(), password.to_string());
        Login { username, password }
    }
}

enum Credentials {
    Plain(Login),
    Scram {
        sha512: bool,
        login: Login,
        /// `Err` when the system random generator failed; reported by `initial`.
        nonce: Result<String, String>,
    },
    OauthBearer {
        token: String,
        extensions: BTreeMap<String, String>,
    },
}

/// One SASL authentication exchange with one broker connection. Not reusable: build a new one
/// per connection (SCRAM needs a fresh nonce each time).
pub(crate) struct SaslClient {
    credentials: Credentials,
    step: Step,
}

impl fmt::Debug for SaslClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SaslClient");
        d.field("mechanism", &self.mechanism());
        match &self.credentials {
            Credentials::Plain(login) | Credentials::Scram { login, .. } => {
                d.field("username", &login.username);
            }
            Credentials::OauthBearer { extensions, .. } => {
                d.field("extension_keys", &extensions.keys().collect::<Vec<_>>());
            }
        }
        d.field("complete", &matches!(self.step, Step::Done))
            .finish_non_exhaustive()
    }
}

impl SaslClient {
    fn new(credentials: Credentials) -> SaslClient {
        let step = Step::Start;
        SaslClient { credentials, step }
    }

    pub(crate) fn plain(username: &str, password: &str) -> SaslClient {
        SaslClient::new(Credentials::Plain(Login::new(username, password)))
    }

    /// SCRAM-SHA-512 when `sha512`, else SCRAM-SHA-256, with a random client nonce.
    pub(crate) fn scram(sha512: bool, username: &str, password: &str) -> SaslClient {
        let mut bytes = [0u8; SCRAM_NONCE_BYTES];
        let nonce = ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map(|()| B64.encode(bytes))
            .map_err(|_| "cannot generate a SCRAM nonce: the system random generator failed".to_string());
        SaslClient::scram_with_nonce(sha512, username, password, nonce)
    }

    /// SCRAM with a given client nonce, so tests can replay published exchanges.
    fn scram_with_nonce(sha512: bool, username: &str, password: &str, nonce: Result<String, String>) -> SaslClient {
        let login = Login::new(username, password);
        SaslClient::new(Credentials::Scram { sha512, login, nonce })
    }

    /// OAUTHBEARER with a token already obtained and the SASL extensions (KIP-342) to send.
    pub(crate) fn oauthbearer(token: &str, extensions: &BTreeMap<String, String>) -> SaslClient {
        let (token, extensions) = (token.to_string(), extensions.clone());
        SaslClient::new(Credentials::OauthBearer { token, extensions })
    }

    pub(crate) fn mechanism(&self) -> &'static str {
        let m = match &self.credentials {
            Credentials::Plain { .. } => Mechanism::Plain,
            Credentials::Scram { sha512: true, .. } => Mechanism::ScramSha512,
            Credentials::Scram { sha512: false, .. } => Mechanism::ScramSha256,
            Credentials::OauthBearer { .. } => Mechanism::OauthBearer,
        };
        m.name()
    }

    /// First message the client sends (in SaslAuthenticate after SaslHandshake).
    pub(crate) fn initial(&mut self) -> Result<Vec<u8>, String> {
        if !matches!(self.step, Step::Start) {
            return Err(format!("{}: the initial message was already sent", self.mechanism()));
        }
        let (message, step) = match &self.credentials {
            Credentials::Plain(login) => (plain_message(login)?, Step::Sent),
            Credentials::Scram { login, nonce, .. } => {
                let nonce = nonce.clone()?;
                let bare = format!("n={},r={nonce}", scram_escape(&login.username));
                (format!("n,,{bare}").into_bytes(), Step::ScramFirstSent { bare, nonce })
            }
            Credentials::OauthBearer { token, extensions } => (oauthbearer_message(token, extensions)?, Step::Sent),
        };
        self.step = step;
        Ok(message)
    }

    /// The server's reply to the last message: `Ok(Some(next message))`, or `Ok(None)` when the
    /// exchange is complete. SCRAM completes only once the server's signature was verified.
    pub(crate) fn respond(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mechanism = self.mechanism();
        let step = std::mem::replace(&mut self.step, Step::Failed);
        let result = match (step, &self.credentials) {
            (Step::Sent, Credentials::Plain { .. }) => Ok((None, Step::Done)),
            (Step::Sent, Credentials::OauthBearer { .. }) => oauthbearer_reply(server).map(|()| (None, Step::Done)),
            (Step::ScramFirstSent { bare, nonce }, Credentials::Scram { sha512, login, .. }) => {
                scram_client_final(*sha512, &login.password, &nonce, &bare, server)
                    .map(|(message, server_signature)| (Some(message), Step::ScramFinalSent { server_signature }))
            }
            (Step::ScramFinalSent { server_signature }, _) => {
                scram_verify_server_final(&server_signature, server).map(|()| (None, Step::Done))
            }
            (Step::Start, _) => Err("respond called before initial".to_string()),
            (Step::Done, _) => Err("the exchange is already complete".to_string()),
            (_, _) => Err("the exchange already failed".to_string()),
        };
        match result {
            Ok((message, step)) => {
                self.step = step;
                Ok(message)
            }
            Err(e) => Err(format!("{mechanism}: {e}")),
        }
    }
}

/// RFC 4616: `authzid NUL authcid NUL passwd`, with an empty authzid (act as ourselves).
fn plain_message(login: &Login) -> Result<Vec<u8>, String> {
    if login.username.contains('\0') || login.password.contains('\0') {
        return Err("PLAIN: the username or password contains a NUL character".to_string());
    }
    Ok([&[0], login.username.as_bytes(), &[0], login.password.as_bytes()].concat())
}

/// RFC 5802 `saslname`: `,` and `=` would otherwise end or confuse the attribute.
fn scram_escape(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// The attributes of a SCRAM server message, `x=value` separated by commas. An `e=` attribute
/// is the server's error and ends the exchange.
fn scram_attributes(server: &[u8]) -> Result<BTreeMap<char, String>, String> {
    let text = std::str::from_utf8(server).map_err(|_| "the server message is not UTF-8".to_string())?;
    let mut attrs = BTreeMap::new();
    for part in text.split(',') {
        let mut chars = part.chars();
        let (Some(key @ ('a'..='z' | 'A'..='Z')), Some('=')) = (chars.next(), chars.next()) else {
            return Err("the server message is not a list of SCRAM attributes".to_string());
        };
        attrs.entry(key).or_insert_with(|| chars.as_str().to_string());
    }
    if let Some(e) = attrs.get(&'e') {
        return Err(format!("the server refused authentication: {}", printable(e)));
    }
    Ok(attrs)
}

/// Server text shortened to printable ASCII, so a broken server cannot flood or garble logs.
fn printable(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect()
}

/// Checks server-first (RFC 5802 section 7) and builds client-final with the proof. Returns the
/// message and the server signature to expect in server-final.
fn scram_client_final(
    sha512: bool,
    password: &str,
    client_nonce: &str,
    client_first_bare: &str,
    server: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let attrs = scram_attributes(server)?;
    if attrs.contains_key(&'m') {
        return Err("the server requires an unsupported SCRAM extension".to_string());
    }
    let nonce = attrs.get(&'r').ok_or("server-first has no nonce (r=)")?;
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
        return Err("server-first nonce does not extend the client nonce".to_string());
    }
    if !nonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("server-first nonce has non-printable characters".to_string());
    }
    let salt = attrs.get(&'s').ok_or("server-first has no salt (s=)")?;
    let salt = B64.decode(salt).map_err(|_| "server-first salt is not valid base64")?;
    if salt.is_empty() {
        return Err("server-first salt is empty".to_string());
    }
    let iterations = attrs.get(&'i').ok_or("server-first has no iteration count (i=)")?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| "server-first iteration count is not a number")?;
    if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "server-first iteration count {iterations} is outside {SCRAM_MIN_ITERATIONS}..={SCRAM_MAX_ITERATIONS}"
        ));
    }
    let server_first = std::str::from_utf8(server).map_err(|_| "the server message is not UTF-8")?;
    // "biws" is base64("n,,"): no channel binding, no authorization identity.
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let (proof, server_signature) = scram_sign(sha512, password, &salt, iterations, auth_message.as_bytes());
    let message = format!("{without_proof},p={}", B64.encode(proof));
    Ok((message.into_bytes(), server_signature))
}

/// `(ClientProof, ServerSignature)` of RFC 5802 section 3 for an AuthMessage. Kafka does not
/// apply SASLprep to passwords, so neither do we: the UTF-8 bytes are used.
fn scram_sign(sha512: bool, password: &str, salt: &[u8], iterations: u32, auth: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (pbkdf2_alg, hmac_alg, digest_alg) = if sha512 {
        (pbkdf2::PBKDF2_HMAC_SHA512, hmac::HMAC_SHA512, &digest::SHA512)
    } else {
        (pbkdf2::PBKDF2_HMAC_SHA256, hmac::HMAC_SHA256, &digest::SHA256)
    };
    let mut salted = vec![0u8; digest_alg.output_len()];
    // The caller checked iterations >= SCRAM_MIN_ITERATIONS, so it is never zero.
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2_alg, iterations, salt, password.as_bytes(), &mut salted);
    let salted = hmac::Key::new(hmac_alg, &salted);
    let client_key = hmac::sign(&salted, b"Client Key");
    let stored_key = digest::digest(digest_alg, client_key.as_ref());
    let client_signature = hmac::sign(&hmac::Key::new(hmac_alg, stored_key.as_ref()), auth);
    let proof = client_key
        .as_ref()
        .iter()
        .zip(client_signature.as_ref())
        .map(|(k, s)| k ^ s);
    let server_key = hmac::sign(&salted, b"Server Key");
    let server_signature = hmac::sign(&hmac::Key::new(hmac_alg, server_key.as_ref()), auth);
    (proof.collect(), server_signature.as_ref().to_vec())
}

/// Server-final must carry the signature only a holder of the password's server key can make;
/// without this check a fake broker could accept any client.
fn scram_verify_server_final(expected: &[u8], server: &[u8]) -> Result<(), String> {
    let attrs = scram_attributes(server)?;
    let v = attrs.get(&'v').ok_or("server-final has no verifier (v=)")?;
    let v = B64.decode(v).map_err(|_| "server-final verifier is not valid base64")?;
    if bool::from(v.ct_eq(expected)) {
        Ok(())
    } else {
        Err("the server signature does not match: the broker does not know this password".to_string())
    }
}

/// RFC 7628 initial client response: GS2 header, `auth=Bearer <token>`, the extensions, each
/// followed by `\x01`, and a final `\x01`.
fn oauthbearer_message(token: &str, extensions: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    // RFC 6750 b64token; anything else would break the message framing or be refused anyway.
    let token_ok = !token.is_empty()
        && token
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !token_ok {
        return Err("OAUTHBEARER: the token is empty or has characters not allowed in a bearer token".to_string());
    }
    let mut m = format!("n,,\x01auth=Bearer {token}\x01");
    for (key, value) in extensions {
        let key_ok = !key.is_empty() && key != "auth" && key.bytes().all(|b| b.is_ascii_alphabetic());
        if !key_ok {
            return Err(format!(
                "OAUTHBEARER: extension key {:?} must be letters, not \"auth\"",
                printable(key)
            ));
        }
        // RFC 7628 section 3.1: VCHAR, space, tab, CR, LF; never the \x01 separator. Kafka's
        // parser also refuses an empty value.
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) || b"\t\r\n".contains(&b))
        {
            return Err(format!(
                "OAUTHBEARER: the value of extension {key:?} must be non-empty printable ASCII"
            ));
        }
        m.push_str(&format!("{key}={value}\x01"));
    }
    m.push('\x01');
    Ok(m.into_bytes())
}

/// An empty server message means success. Anything else is the RFC 7628 section 3.2.2 JSON
/// error; the client would answer `\x01` to get the failure, but Kafka fails the exchange
/// anyway, so the error is reported right away.
fn oauthbearer_reply(server: &[u8]) -> Result<(), String> {
    if server.is_empty() {
        return Ok(());
    }
    let Ok(serde_json::Value::Object(error)) = serde_json::from_slice::<serde_json::Value>(server) else {
        return Err(format!(
            "the broker rejected the token with an unreadable error ({} bytes)",
            server.len()
        ));
    };
    let field = |name: &str| error.get(name).and_then(|v| v.as_str()).map(printable);
    let mut reason = format!(
        "the broker rejected the token: status {}",
        field("status").unwrap_or_else(|| "unknown".to_string())
    );
    if let Some(scope) = field("scope") {
        reason.push_str(&format!(", required scope {scope}"));
    }
    Err(reason)
}

#[cfg(test)]
#[path = "sasl_tests.rs"]
mod tests;
