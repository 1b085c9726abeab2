//! The HTTP endpoint: telemetry path, landing page, health and readiness.
//!
//! Every response is computed from the current snapshots; no request waits on Kafka.
//! [`web_config`] adds TLS, client certificates and basic auth. Each connection is bounded:
//! [`admission`] keeps at most [`HttpOptions::max_connections`] connections past their first
//! request and [`HttpOptions::max_pending_connections`] before it, closing the oldest waiting
//! one rather than making a new client wait; a client has [`HttpOptions::header_read_timeout`]
//! for its TLS handshake and for each request head and [`HttpOptions::write_timeout`] to read
//! each part of a response ([`write_deadline`]), a head may hold [`MAX_HEADERS`] fields in
//! [`MAX_HEADER_BYTES`], and as no endpoint takes a body, a request with one is refused.
//!
//! What the endpoints serve ([`View`]: the clusters' snapshot slots, the expositions, the
//! policy's source) is read through an [`ArcSwap`] that a configuration reload replaces;
//! `POST /-/reload` asks for one ([`crate::reload::Trigger`]) behind the same authentication
//! as every other path.

pub mod admission;
pub mod first_message;
pub mod web_config;
pub mod write_deadline;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::selfmetrics::{Rejection, Rejections};
use admission::{Admission, Limits, Ticket};
use first_message::{First, Stalled};
use write_deadline::WriteDeadline;

use crate::collectors::{Exposition, Format};
use crate::snapshot::SnapshotSlot;

/// Largest request head (request line and header fields) accepted; larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields a request may have; more get 431.
pub const MAX_HEADERS: usize = 64;

/// Content type of OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// HTTP settings from the command line.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub telemetry_path: String,
    /// Connections past their first request head (busy or idle keep-alive) kept at once; at
    /// the limit, the one idle longest is closed for a new request.
    pub max_connections: usize,
    /// Connections still in their TLS handshake or first request head kept at once; at the
    /// limit, the one waiting longest is closed for a new connection.
    pub max_pending_connections: usize,
    /// Time a client has for its TLS handshake and to send each request head.
    pub header_read_timeout: Duration,
    /// Time a response write may make no progress (a client not reading) before the connection
    /// is closed.
    pub write_timeout: Duration,
    /// Exporter-toolkit web config (TLS, basic auth, headers); `None` for plain HTTP.
    pub web_config_file: Option<std::path::PathBuf>,
}

/// What the endpoints serve from the running configuration; replaced whole by a reload.
pub struct View {
    /// The `/metrics` output, cached per collection cycle.
    pub registry: Exposition,
    /// Compatibility outputs (`global.compat`) by path, cached the same way.
    pub compat: Vec<(crate::config::Compat, Exposition)>,
    pub slots: Vec<SnapshotSlot>,
    /// Where the compliance policy came from, for the report.
    pub policy_source: String,
}

/// What request handlers share.
pub struct HttpState {
    /// The running configuration's outputs, swapped by a reload.
    pub view: ArcSwap<View>,
    /// Where `POST /-/reload` sends its request.
    pub reload: crate::reload::Trigger,
    pub options: HttpOptions,
    /// TLS and basic auth from `--web.config.file`; `None` serves plain HTTP to anyone.
    pub web: Option<Arc<web_config::WebSecurity>>,
    /// Where refused requests and connections are counted (exported by the collectors).
    pub rejections: Rejections,
}

type Body = Full<Bytes>;

/// Serves until `shutdown` turns true, then lets open connections finish for at most `grace`.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
    let graceful = GracefulShutdown::new();
    if let Some(web) = &state.web {
        tracing::info!("{}", web.summary());
        tokio::spawn(watch_web_config(Arc::clone(web), shutdown.clone()));
    }
    let admission = Admission::new(
        Limits {
            max_served: state.options.max_connections,
            max_pending: state.options.max_pending_connections,
        },
        state.rejections.clone(),
    );
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: the connection pending longest gives up its descriptor;
                // with none pending, back off briefly instead of spinning.
                if admission.evict_oldest_pending() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        // Responses are written whole; waiting for more data to fill a segment only adds latency.
        let _ = stream.set_nodelay(true);
        let ticket = Arc::new(admission.admit());
        let state = Arc::clone(&state);
        let watcher = graceful.watcher();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = ticket.closed() => tracing::debug!(%peer, "connection evicted"),
                _ = connection(stream, peer, state, watcher, &ticket) => {}
                _ = pending_at_shutdown(stop, &ticket) => {}
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all HTTP connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("HTTP connections still open after {grace:?}; closing them"),
    }
}

/// Completes when shutdown begins while the connection has not sent a complete request: hyper
/// closes the idle connections it serves on shutdown, but has not seen these yet.
async fn pending_at_shutdown(mut stop: watch::Receiver<bool>, ticket: &Ticket) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    if !ticket.is_pending() {
        std::future::pending::<()>().await;
    }
}

/// One accepted connection: the TLS handshake when configured, then its requests. Neither
/// starts before the client's first message is complete ([`first_message`]).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<HttpState>,
    watcher: Watcher,
    ticket: &Arc<Ticket>,
) {
    let timeout = state.options.header_read_timeout;
    let tls = state.web.as_ref().and_then(|w| w.tls());
    let first = if tls.is_some() {
        First::TlsRecord
    } else {
        First::HttpHead
    };
    if let Err(e) = first_message::wait(&stream, first, timeout).await {
        match (first, &e) {
            (First::HttpHead, Stalled::TimedOut(_)) => state.rejections.count(Rejection::HeaderTimeout),
            (First::HttpHead, _) => {}
            (First::TlsRecord, _) => state.rejections.count(Rejection::TlsHandshake),
        }
        tracing::debug!(%peer, error = %e, "connection closed before its first message");
        return;
    }
    match tls {
        None => serve_connection(stream, peer, state, watcher, ticket).await,
        Some(tls) => match tls_handshake(stream, tls, timeout, &state.rejections).await {
            Ok(stream) => serve_connection(stream, peer, state, watcher, ticket).await,
            Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        },
    }
}

/// Reloads the web config when its files change, until shutdown.
async fn watch_web_config(web: Arc<web_config::WebSecurity>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(web_config::RELOAD_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let web = Arc::clone(&web);
        let _ = tokio::task::spawn_blocking(move || web.reload_if_changed()).await;
    }
}

/// Serves HTTP/1.1 requests on one connection (plain or TLS) until it closes.
async fn serve_connection<I>(io: I, peer: SocketAddr, state: Arc<HttpState>, watcher: Watcher, ticket: &Arc<Ticket>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = state.options.header_read_timeout;
    let write_timeout = state.options.write_timeout;
    let rejections = state.rejections.clone();
    let svc_ticket = Arc::clone(ticket);
    let svc = service_fn(move |req| {
        let state = Arc::clone(&state);
        let ticket = Arc::clone(&svc_ticket);
        async move {
            ticket.begin_request().await;
            let response = respond(&state, req, peer).await;
            ticket.end_request();
            Ok::<_, Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(io, write_timeout, rejections.clone())),
            svc,
        );
    if let Err(e) = watcher.watch(conn).await {
        let rejection = if e.is_parse_too_large() {
            Some(Rejection::HeaderTooLarge)
        } else if e.is_parse() {
            Some(Rejection::Malformed)
        } else if e.is_timeout() && ticket.is_pending() {
            // Only a connection that never completed a request: a keep-alive connection idle
            // past the timeout is a client's ordinary pause between scrapes.
            Some(Rejection::HeaderTimeout)
        } else {
            None
        };
        if let Some(r) = rejection {
            rejections.count(r);
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The TLS handshake, within `timeout`; a failure is counted as a rejection. A client speaking
/// plain HTTP gets a short 400 answer (as Go servers give) instead of a TLS alert it cannot read.
async fn tls_handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    rejections: &Rejections,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    use Rejection::{PlainHttp, TlsHandshake};
    // Every refusal is counted where it happens, before anything else waits.
    let refused = |kind, reason: String| {
        rejections.count(kind);
        reason
    };
    let handshake = async {
        let mut first = [0u8; 1];
        let n = stream
            .peek(&mut first)
            .await
            .map_err(|e| refused(TlsHandshake, e.to_string()))?;
        if n == 1 && first[0].is_ascii_uppercase() {
            let reason = refused(PlainHttp, "plain HTTP request on the HTTPS port".to_string());
            answer_plain_http(stream).await;
            return Err(reason);
        }
        tokio_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await
            .map_err(|e| refused(TlsHandshake, e.to_string()))
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .unwrap_or_else(|_| Err(refused(TlsHandshake, format!("no TLS handshake within {timeout:?}"))))
}

/// Answers a plain HTTP request on the TLS port with a 400 and closes. What the client sent is
/// read first (at most 64 KiB or 0.5 s): closing with unread data resets the connection, and
/// the reset can destroy the answer before the client reads it.
async fn answer_plain_http(mut stream: TcpStream) {
    let answer = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Basic auth (when configured), then the endpoint, then the configured response headers.
async fn respond(state: &HttpState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let Some(web) = &state.web else {
        return route(state, req, peer).await;
    };
    let mut r = match web.authorize(req.headers().get(AUTHORIZATION)).await {
        Ok(()) => route(state, req, peer).await,
        Err(failure) => {
            state.rejections.count(Rejection::Unauthorized);
            if failure == web_config::AuthFailure::Invalid {
                tracing::debug!(%peer, path = req.uri().path(), "basic auth failed");
            }
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
    };
    web.decorate(&mut r);
    r
}

/// `/-/reload` (the one path that waits, and the one that takes POST), else [`handle`].
async fn route(state: &HttpState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.uri().path() != RELOAD_PATH {
        return handle(state, req, peer);
    }
    if req.method() != Method::POST {
        state.rejections.count(Rejection::Method);
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only POST reloads the configuration\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if !hyper::body::Body::is_end_stream(req.body()) {
        state.rejections.count(Rejection::Body);
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request bodies are not accepted\n");
    }
    tracing::info!(%peer, "configuration reload requested over HTTP");
    match state.reload.request().await {
        Ok(()) => text(StatusCode::OK, "configuration reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("failed to reload the configuration: {e}\n"),
        ),
    }
}

/// The path that reloads the configuration and the policy on POST.
pub const RELOAD_PATH: &str = "/-/reload";

fn handle(state: &HttpState, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        state.rejections.count(Rejection::Method);
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // The body is never read: answering without it makes hyper close the connection.
    if !hyper::body::Body::is_end_stream(req.body()) {
        state.rejections.count(Rejection::Body);
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request bodies are not accepted\n");
    }
    let view = state.view.load_full();
    if path == state.options.telemetry_path {
        return metrics(&view.registry, &req);
    }
    if let Some((_, exposition)) = view.compat.iter().find(|(c, _)| c.path() == path) {
        return metrics(exposition, &req);
    }
    match path {
        "/" => landing(&view, &state.options),
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" => ready(&view),
        "/api/v1/compliance" | "/compliance" => compliance(&view, path, req.uri().query()),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// True when the client accepts OpenMetrics text (as Prometheus does by default).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut fields = part.split(';').map(str::trim);
            let media = fields.next().unwrap_or("");
            let q_zero = fields.any(|f| f.replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        })
    })
}

fn metrics(exposition: &Exposition, req: &Request<Incoming>) -> Response<Body> {
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let (format, content_type) = if wants_openmetrics(header(ACCEPT)) {
        (Format::OpenMetrics, OPENMETRICS_CONTENT_TYPE)
    } else {
        (
            Format::Prometheus,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    let gzip = accepts_gzip(header(ACCEPT_ENCODING));
    // Scrapes of a cycle already encoded only copy bytes. Encoding a new cycle of a large
    // cluster takes a while: the worker is handed over meanwhile so that other connections keep
    // being served.
    let rendered = match exposition.cached(format, gzip) {
        Some(r) => r,
        None => tokio::task::block_in_place(|| exposition.render(format, gzip)),
    };
    let body = match rendered {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed\n");
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// True when the client accepts a gzip-encoded response (as Prometheus does).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut fields = part.split(';').map(str::trim);
            let coding = fields.next().unwrap_or("");
            let q_zero = fields.any(|f| {
                f.replace(' ', "")
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip")) && !q_zero
        })
    })
}

fn compliance(state: &View, path: &str, query: Option<&str>) -> Response<Body> {
    let filter = match crate::report::Filter::parse(query) {
        Ok(f) => f,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    };
    let clusters: Vec<_> = state.slots.iter().map(|s| s.load_full()).collect();
    let (body, content_type) = if path == "/compliance" {
        (
            crate::report::html(&clusters, &state.policy_source, &filter),
            "text/html; charset=utf-8",
        )
    } else {
        (
            crate::report::json(&clusters, &state.policy_source, &filter),
            "application/json",
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn ready(state: &View) -> Response<Body> {
    let waiting: Vec<String> = state
        .slots
        .iter()
        .map(|s| s.load())
        .filter(|s| !s.ready())
        .map(|s| s.name.clone())
        .collect();
    if waiting.is_empty() {
        text(StatusCode::OK, "Ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "Not ready: waiting for the first complete cycle of cluster(s) {}\n",
                waiting.join(", ")
            ),
        )
    }
}

fn landing(state: &View, options: &HttpOptions) -> Response<Body> {
    let path = html_escape(&options.telemetry_path);
    let clusters: String = state
        .slots
        .iter()
        .map(|s| {
            let s = s.load();
            format!(
                "<li>{} — {}</li>",
                html_escape(&s.name),
                if s.up {
                    "up"
                } else if s.ready() {
                    "collection failing, serving last data"
                } else {
                    "waiting for first cycle"
                }
            )
        })
        .collect();
    let compat: String = state
        .compat
        .iter()
        .map(|(c, _)| {
            format!(
                "<li><a href=\"{}\">Metrics with {} names</a></li>",
                c.path(),
                c.as_str()
            )
        })
        .collect();
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kafka-slo-exporter</title></head><body>\n\
         <h1>kafka-slo-exporter</h1>\n<p>Version {version}</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li>{compat}<li><a href=\"/compliance\">ADR compliance report</a></li><li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul>\n\
         <h2>Clusters</h2><ul>{clusters}</ul>\n</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_negotiation() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0, text/plain"
        )));
    }

    #[test]
    fn gzip_negotiation() {
        assert!(!accepts_gzip(None));
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0, identity")));
        assert!(!accepts_gzip(Some("br, identity")));
    }

    #[test]
    fn escapes_html() {
        assert_eq!(html_escape("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }
}
