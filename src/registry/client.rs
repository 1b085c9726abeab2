//! Blocking HTTP client of the Confluent-compatible Schema Registry REST API (Confluent,
//! Apicurio `ccompat`, Karapace, Redpanda). Call it from a blocking thread only.
//!
//! Several base URLs are tried in order: a transport error or a 5xx answer moves on to the
//! next, and the one that answered is tried first next time. Credentials go only into the
//! `Authorization` header and never into messages.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::registry::{RegistryAuth, RegistryConfig};

/// Largest response body read (a page of 1000 schemas with their text can be large).
const MAX_BODY: u64 = 256 * 1024 * 1024;
/// Pages read per listing at most; with the default page size that is a million entries.
pub const MAX_PAGES: usize = 1000;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No URL answered (connection refused, timeout, TLS failure, ...).
    #[error("{0}")]
    Transport(String),
    /// The registry answered with an error status; `code` is Confluent's `error_code`.
    #[error("HTTP {status}{}: {message}", code.map(|c| format!(" (error_code {c})")).unwrap_or_default())]
    Status {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl ApiError {
    /// A 404 (or 405) answer: the endpoint or the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404 | 405, .. })
    }
}

/// One entry of `GET /schemas`. Confluent returns subject, version and id; Apicurio's
/// `ccompat` returns only the schema text and type, so those are optional. The text itself is
/// kept as a hash: it tells different entries apart without holding every schema in memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct SchemaEntry {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default, rename = "schemaType")]
    pub schema_type: Option<String>,
    #[serde(default, rename = "schema", deserialize_with = "hash_text")]
    pub schema_hash: u64,
}

/// `GET /subjects/{subject}/versions/latest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default, rename = "schemaType")]
    pub schema_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CompatibilityAnswer {
    #[serde(default, rename = "compatibilityLevel")]
    level: Option<String>,
    #[serde(default)]
    compatibility: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ModeAnswer {
    mode: String,
}

#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

fn hash_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use std::hash::{Hash, Hasher};
    let s = Option::<String>::deserialize(d)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    Ok(h.finish())
}

/// A registry client with its base URLs and credentials.
pub struct RegistryClient {
    agent: ureq::Agent,
    urls: Vec<String>,
    /// Value of the `Authorization` header. Secret: never log it.
    authorization: Option<String>,
    /// Index of the URL that answered last.
    preferred: AtomicUsize,
}

/// The outcome of one request and how long it took (all URLs tried included).
pub struct Timed<T> {
    pub result: Result<T, ApiError>,
    pub duration: Duration,
}

impl RegistryClient {
    pub fn new(cfg: &RegistryConfig) -> Self {
        let mut builder = ureq::AgentBuilder::new()
            .timeout(cfg.timeout)
            .user_agent(concat!("kafka-slo-exporter/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &cfg.tls {
            builder = builder.tls_config(std::sync::Arc::clone(tls));
        }
        let authorization = cfg.auth.as_ref().map(|a| match a {
            RegistryAuth::Basic { username, password } => {
                format!("Basic {}", BASE64.encode(format!("{username}:{}", password.expose())))
            }
            RegistryAuth::Bearer(token) => format!("Bearer {}", token.expose()),
        });
        Self {
            agent: builder.build(),
            urls: cfg.urls.clone(),
            authorization,
            preferred: AtomicUsize::new(0),
        }
    }

    /// GET `path` (with query) and decode its JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Timed<T> {
        let started = Instant::now();
        let result = self.get_inner(path);
        Timed {
            result,
            duration: started.elapsed(),
        }
    }

    fn get_inner<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let n = self.urls.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut last_error = ApiError::Transport("no URL configured".into());
        for k in 0..n {
            let i = (first + k) % n;
            let url = format!("{}{path}", self.urls[i]);
            let mut req = self
                .agent
                .get(&url)
                .set("Accept", "application/vnd.schemaregistry.v1+json, application/json");
            if let Some(a) = &self.authorization {
                req = req.set("Authorization", a);
            }
            match req.call() {
                Ok(resp) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    let mut body = Vec::new();
                    resp.into_reader()
                        .take(MAX_BODY)
                        .read_to_end(&mut body)
                        .map_err(|e| ApiError::Transport(format!("{}: reading the answer: {e}", self.urls[i])))?;
                    return serde_json::from_slice(&body).map_err(|e| ApiError::Decode(format!("{path}: {e}")));
                }
                Err(ureq::Error::Status(status, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let parsed: Option<ErrorAnswer> = serde_json::from_str(&text).ok();
                    let message = parsed
                        .as_ref()
                        .and_then(|e| e.message.clone())
                        .unwrap_or_else(|| text.chars().take(200).collect());
                    let error = ApiError::Status {
                        status,
                        code: parsed.and_then(|e| e.error_code),
                        message,
                    };
                    // A server error may be one node's; another URL may answer.
                    if status >= 500 {
                        last_error = error;
                        continue;
                    }
                    self.preferred.store(i, Ordering::Relaxed);
                    return Err(error);
                }
                Err(ureq::Error::Transport(t)) => {
                    last_error = ApiError::Transport(format!("{}: {}", self.urls[i], transport_message(&t)));
                }
            }
        }
        Err(last_error)
    }

    /// `GET /config` or `GET /config/{subject}`: the compatibility level.
    pub fn compatibility(&self, path: &str) -> Timed<String> {
        let t = self.get::<CompatibilityAnswer>(path);
        Timed {
            duration: t.duration,
            result: t.result.and_then(|a| {
                a.level
                    .or(a.compatibility)
                    .map(|l| l.to_ascii_uppercase())
                    .ok_or_else(|| ApiError::Decode(format!("{path}: no compatibilityLevel")))
            }),
        }
    }

    /// `GET /mode`.
    pub fn mode(&self) -> Timed<String> {
        let t = self.get::<ModeAnswer>("/mode");
        Timed {
            duration: t.duration,
            result: t.result.map(|m| m.mode.to_ascii_uppercase()),
        }
    }
}

/// A transport error without the URL's query (which never holds secrets, but keeps lines short).
fn transport_message(t: &ureq::Transport) -> String {
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s.push_str(": ");
        s.push_str(m);
    }
    if let Some(src) = std::error::Error::source(t) {
        s.push_str(": ");
        s.push_str(&src.to_string());
    }
    s
}

/// Percent-encodes one path segment (a subject name may hold `/`, `:` or spaces).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A paged listing: every entry, the number of requests made and the slowest request.
pub struct Listing<T> {
    pub entries: Vec<T>,
    pub pages: usize,
    pub slowest: Duration,
    /// True when [`MAX_PAGES`] was reached before the end.
    pub truncated: bool,
}

/// Offset of the request that tells a registry ignoring `offset` from a list that repeats
/// itself: far beyond any real list, so an honouring registry answers with an empty page.
const PROBE_OFFSET: usize = 1 << 30;

/// Reads a listing page by page with `offset`/`limit`. `fetch(offset, limit)` requests one
/// page. A page shorter than `limit` is the last. Registries that ignore the parameters
/// answer with the whole list every time: a page longer than `limit` is the whole list, and
/// a later page equal to the first is, unless a request far beyond the end returns nothing
/// (then the list really repeats itself, as Apicurio's `/schemas` entries can, which name no
/// subject).
pub fn paged<T: PartialEq + Clone>(
    limit: usize,
    max_pages: usize,
    mut fetch: impl FnMut(usize, usize) -> Timed<Vec<T>>,
) -> Timed<Listing<T>> {
    let started = Instant::now();
    let limit = limit.max(1);
    let mut entries: Vec<T> = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut requests = 0;
    let mut truncated = false;
    let mut first: Option<Vec<T>> = None;
    let mut page_no = 0;
    let failed = |e: ApiError, started: Instant| Timed {
        result: Err(e),
        duration: started.elapsed(),
    };
    loop {
        if page_no == max_pages {
            truncated = true;
            break;
        }
        let page = fetch(page_no * limit, limit);
        requests += 1;
        slowest = slowest.max(page.duration);
        let page = match page.result {
            Ok(p) => p,
            Err(e) => return failed(e, started),
        };
        let n = page.len();
        match &first {
            None => first = Some(page.clone()),
            Some(f) if n > 0 && *f == page => {
                let probe = fetch(PROBE_OFFSET, limit);
                requests += 1;
                slowest = slowest.max(probe.duration);
                match probe.result {
                    Ok(p) if !p.is_empty() => break,
                    Ok(_) => {}
                    Err(e) => return failed(e, started),
                }
            }
            Some(_) => {}
        }
        entries.extend(page);
        page_no += 1;
        if n != limit {
            break;
        }
    }
    Timed {
        result: Ok(Listing {
            entries,
            pages: requests,
            slowest,
            truncated,
        }),
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `data` the way a registry that honours offset/limit does.
    fn honouring(data: &[u32]) -> impl FnMut(usize, usize) -> Timed<Vec<u32>> + '_ {
        move |offset, limit| Timed {
            result: Ok(data.iter().skip(offset).take(limit).copied().collect()),
            duration: Duration::from_millis(offset as u64),
        }
    }

    fn entries(t: Timed<Listing<u32>>) -> (Vec<u32>, usize) {
        let l = t.result.unwrap();
        (l.entries, l.pages)
    }

    #[test]
    fn pages_until_a_short_page() {
        let data: Vec<u32> = (0..7).collect();
        assert_eq!(entries(paged(3, 10, honouring(&data))), (data.clone(), 3));
        // An exact multiple needs one more (empty) page to know the end.
        let six: Vec<u32> = (0..6).collect();
        assert_eq!(entries(paged(3, 10, honouring(&six))), (six.clone(), 3));
        assert_eq!(entries(paged(3, 10, honouring(&[]))), (vec![], 1));
        assert_eq!(entries(paged(1000, 10, honouring(&data))), (data.clone(), 1));
        let slowest = paged(3, 10, honouring(&data)).result.unwrap().slowest;
        assert_eq!(slowest, Duration::from_millis(6));
    }

    #[test]
    fn registries_ignoring_paging_are_read_once() {
        let data: Vec<u32> = (0..6).collect();
        // Longer than the limit: the whole list in one answer.
        let whole = |_: usize, _: usize| Timed {
            result: Ok(data.clone()),
            duration: Duration::ZERO,
        };
        assert_eq!(entries(paged(4, 10, whole)), (data.clone(), 1));
        // Exactly the limit and the same answer again, also far beyond the end: the repeat is
        // dropped.
        let whole = |_: usize, _: usize| Timed {
            result: Ok(data.clone()),
            duration: Duration::ZERO,
        };
        assert_eq!(entries(paged(6, 10, whole)), (data.clone(), 3));
    }

    #[test]
    fn equal_entries_on_different_pages_are_kept() {
        // Apicurio's /schemas entries can be equal (same text and type under two subjects);
        // only a whole repeated page means the registry ignored the offset.
        let data = [1, 1, 1, 1, 2];
        assert_eq!(entries(paged(2, 10, honouring(&data))), (vec![1, 1, 1, 1, 2], 4));
    }

    #[test]
    fn page_cap_and_errors() {
        let data: Vec<u32> = (0..100).collect();
        let t = paged(10, 3, honouring(&data)).result.unwrap();
        assert!(t.truncated);
        assert_eq!(t.entries.len(), 30);
        let failing = |offset: usize, _: usize| Timed {
            result: if offset == 0 {
                Ok(vec![1, 2])
            } else {
                Err(ApiError::Transport("down".into()))
            },
            duration: Duration::ZERO,
        };
        assert_eq!(
            paged(2, 10, failing).result.err(),
            Some(ApiError::Transport("down".into()))
        );
    }

    #[test]
    fn schema_entries_from_confluent_and_apicurio() {
        let confluent: Vec<SchemaEntry> = serde_json::from_str(
            r#"[{"subject":"a-value","version":2,"id":7,"schema":"{}"},
                {"subject":"b-value","version":1,"id":8,"schemaType":"PROTOBUF","schema":"syntax"}]"#,
        )
        .unwrap();
        assert_eq!(confluent[0].subject.as_deref(), Some("a-value"));
        assert_eq!(confluent[0].schema_type, None);
        assert_eq!(confluent[1].schema_type.as_deref(), Some("PROTOBUF"));
        let apicurio: Vec<SchemaEntry> =
            serde_json::from_str(r#"[{"schema":"{}"},{"schema":"{\"a\":1}","schemaType":"JSON"}]"#).unwrap();
        assert_eq!(apicurio[0].subject, None);
        assert_ne!(apicurio[0].schema_hash, apicurio[1].schema_hash);
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("order.order.events-value"), "order.order.events-value");
        assert_eq!(path_segment("a/b c:d"), "a%2Fb%20c%3Ad");
    }

    #[test]
    fn error_display_names_status_and_code() {
        let e = ApiError::Status {
            status: 404,
            code: Some(40401),
            message: "Subject not found".into(),
        };
        assert_eq!(e.to_string(), "HTTP 404 (error_code 40401): Subject not found");
        assert!(e.is_not_found());
    }
}
