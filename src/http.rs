//! The HTTP endpoint: telemetry path, landing page, health and readiness.
//!
//! Every response is computed from the current snapshots; no request waits on Kafka.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::collectors::{Exposition, Format};
use crate::poller::SnapshotSlot;

/// Content type of OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// HTTP settings from the command line.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub telemetry_path: String,
    /// Connections served at once; further connections wait in the kernel backlog.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
}

/// What request handlers share.
pub struct HttpState {
    /// The `/metrics` output, cached per collection cycle.
    pub registry: Exposition,
    pub slots: Vec<SnapshotSlot>,
    /// Where the compliance policy came from, for the report.
    pub policy_source: String,
    pub options: HttpOptions,
}

type Body = Full<Bytes>;

/// Serves until `shutdown` turns true, then lets open connections finish for at most `grace`.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(state.options.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let header_timeout = state.options.header_read_timeout;
        let state = Arc::clone(&state);
        let svc = service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(handle(&state, req, peer)) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all HTTP connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("HTTP connections still open after {grace:?}; closing them"),
    }
}

fn handle(state: &HttpState, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == state.options.telemetry_path {
        return metrics(state, &req);
    }
    match path {
        "/" => landing(state),
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" => ready(state),
        "/api/v1/compliance" | "/compliance" => compliance(state, path, req.uri().query()),
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

fn metrics(state: &HttpState, req: &Request<Incoming>) -> Response<Body> {
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
    let rendered = match state.registry.cached(format, gzip) {
        Some(r) => r,
        None => tokio::task::block_in_place(|| state.registry.render(format, gzip)),
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

fn compliance(state: &HttpState, path: &str, query: Option<&str>) -> Response<Body> {
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

fn ready(state: &HttpState) -> Response<Body> {
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

fn landing(state: &HttpState) -> Response<Body> {
    let path = html_escape(&state.options.telemetry_path);
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
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kafka-slo-exporter</title></head><body>\n\
         <h1>kafka-slo-exporter</h1>\n<p>Version {version}</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/compliance\">ADR compliance report</a></li><li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul>\n\
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
