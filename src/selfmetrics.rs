//! Counters the exporter keeps about itself that no snapshot holds, created once at start-up
//! and handed both to the code that counts and to the collectors that export them.
//!
//! [`Rejections`]: the requests and connections the HTTP endpoint refused, by reason, for
//! `kafka_slo_exporter_http_rejections_total`: a burst of `unauthorized` is someone guessing
//! passwords, `tls_handshake` a client without a valid certificate, `evicted` and
//! `header_timeout` many connections that never finish a request.
//!
//! [`ReloadStatus`]: whether the most recent configuration reload succeeded and when one last
//! did, for `kafka_slo_exporter_config_last_reload_successful` and
//! `kafka_slo_exporter_config_last_reload_success_timestamp_seconds`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Why a request or connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Basic auth missing or wrong (401).
    Unauthorized,
    /// TLS handshake failed or timed out (no client certificate, untrusted one, protocol error).
    TlsHandshake,
    /// Plain HTTP sent to the HTTPS port (400).
    PlainHttp,
    /// Request head over the size or field-count limit (431).
    HeaderTooLarge,
    /// A request with a body (413).
    Body,
    /// A method other than GET and HEAD (405).
    Method,
    /// A request head that does not parse: a malformed request line or header field (400).
    Malformed,
    /// A connection that sent no complete first request head within the header read timeout.
    HeaderTimeout,
    /// A connection closed to make room for another (see `http::admission`).
    Evicted,
    /// A client that read nothing of its response for the write timeout.
    WriteTimeout,
}

impl Rejection {
    pub const ALL: [Rejection; 10] = [
        Rejection::Unauthorized,
        Rejection::TlsHandshake,
        Rejection::PlainHttp,
        Rejection::HeaderTooLarge,
        Rejection::Body,
        Rejection::Method,
        Rejection::Malformed,
        Rejection::HeaderTimeout,
        Rejection::Evicted,
        Rejection::WriteTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::TlsHandshake => "tls_handshake",
            Rejection::PlainHttp => "plain_http",
            Rejection::HeaderTooLarge => "header_too_large",
            Rejection::Body => "body",
            Rejection::Method => "method",
            Rejection::Malformed => "malformed",
            Rejection::HeaderTimeout => "header_timeout",
            Rejection::Evicted => "evicted",
            Rejection::WriteTimeout => "write_timeout",
        }
    }
}

/// The refusal counts by reason; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Rejections(Arc<[AtomicU64; Rejection::ALL.len()]>);

impl Rejections {
    pub fn count(&self, r: Rejection) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every reason with its count so far (zero included).
    pub fn counts(&self) -> Vec<(Rejection, u64)> {
        Rejection::ALL
            .iter()
            .map(|r| (*r, self.0[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// The outcome of the most recent configuration load (start-up or reload); clones share it.
/// The default is a success at the Unix epoch (fixtures); [`ReloadStatus::started`] is the
/// start-up's.
#[derive(Debug, Clone)]
pub struct ReloadStatus(Arc<ReloadState>);

#[derive(Debug)]
struct ReloadState {
    successful: AtomicBool,
    /// Unix time of the last success, as `f64` bits.
    last_success: AtomicU64,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        Self(Arc::new(ReloadState {
            successful: AtomicBool::new(true),
            last_success: AtomicU64::new(0f64.to_bits()),
        }))
    }
}

impl ReloadStatus {
    /// The status after the configuration loaded at start-up, at `at`.
    pub fn started(at: SystemTime) -> Self {
        let s = Self::default();
        s.succeeded(at);
        s
    }

    pub fn succeeded(&self, at: SystemTime) {
        let secs = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.0.last_success.store(secs.to_bits(), Ordering::Relaxed);
        self.0.successful.store(true, Ordering::Relaxed);
    }

    /// A reload was refused: the running configuration stays, the last success is kept.
    pub fn failed(&self) {
        self.0.successful.store(false, Ordering::Relaxed);
    }

    pub fn successful(&self) -> bool {
        self.0.successful.load(Ordering::Relaxed)
    }

    /// Unix time (seconds) of the last successful load.
    pub fn last_success(&self) -> f64 {
        f64::from_bits(self.0.last_success.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_keeps_the_last_success() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let s = ReloadStatus::started(at);
        let shared = s.clone();
        assert!(s.successful());
        shared.failed();
        assert!(!s.successful());
        assert_eq!(s.last_success(), 1_700_000_000.0);
        shared.succeeded(at + std::time::Duration::from_secs(5));
        assert!(s.successful());
        assert_eq!(s.last_success(), 1_700_000_005.0);
    }

    /// Counts are indexed by the reason's discriminant, so `ALL` must list reasons in
    /// declaration order.
    #[test]
    fn all_is_in_declaration_order_and_clones_share_counts() {
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let a = Rejections::default();
        let b = a.clone();
        a.count(Rejection::Evicted);
        b.count(Rejection::Evicted);
        assert!(b.counts().contains(&(Rejection::Evicted, 2)));
        assert!(Rejections::default().counts().iter().all(|(_, n)| *n == 0));
    }
}
