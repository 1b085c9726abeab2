//! The context every librdkafka client of a cluster runs with (log lines and errors into
//! `tracing` and the cluster's error counters) and the properties they share.

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use super::ClientErrors;
use crate::config::ClusterConfig;

/// Client properties the exporter sets unless the user overrides them. A monitoring client
/// should notice a recovered broker within about a second, and must not pretend to be an
/// application in broker logs.
const DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    ("client.id", "kafka-slo-exporter"),
    ("reconnect.backoff.ms", "100"),
    ("reconnect.backoff.max.ms", "1000"),
    ("log.connection.close", "false"),
];

/// Routes librdkafka's log lines and errors into `tracing`, tagged with the cluster name.
pub struct ExporterContext {
    pub(super) cluster: String,
    pub(super) errors: ClientErrors,
}

impl ExporterContext {
    pub(super) fn new(cfg: &ClusterConfig, errors: &ClientErrors) -> Self {
        Self {
            cluster: cfg.name.clone(),
            errors: errors.clone(),
        }
    }
}

impl ClientContext for ExporterContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let cluster = self.cluster.as_str();
        // librdkafka reports every failed connection attempt; the exporter reports the outcome of
        // each cycle itself, so client chatter is kept one level lower than its own.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Info => tracing::debug!(target: "librdkafka", cluster, facility = fac, "{message}"),
            RDKafkaLogLevel::Debug => tracing::trace!(target: "librdkafka", cluster, facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.count(error.rdkafka_error_code(), reason);
        tracing::debug!(target: "librdkafka", cluster = self.cluster.as_str(), %error, "{reason}");
    }
}

impl ConsumerContext for ExporterContext {}

/// Client properties shared by every client of a cluster: exporter defaults, bootstrap
/// servers, request timeout and the user's properties (which win). Holds secrets: never log it.
pub(super) fn base_config(cfg: &ClusterConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in DEFAULT_PROPERTIES {
        cc.set(*k, *v);
    }
    cc.set("bootstrap.servers", cfg.bootstrap_servers.join(","));
    cc.set("socket.timeout.ms", socket_timeout(cfg.timeout).as_millis().to_string());
    cc.set(
        "socket.connection.setup.timeout.ms",
        connection_setup_timeout(cfg.timeout).as_millis().to_string(),
    );
    for (k, v) in &cfg.client_properties {
        cc.set(k, v);
    }
    cc.set_log_level(RDKafkaLogLevel::Info);
    cc
}

/// librdkafka's per-request (socket) timeout for a stage `timeout`: two fifths of it.
///
/// Admin requests carry their own deadline, at least half the stage timeout for group
/// coordinator requests (see `ffi::may_start`). When a request is in flight to a hung broker
/// and the admin deadline expires first, librdkafka releases the request's completion handle
/// twice and aborts the process; with the socket timeout strictly shorter, the request always
/// fails through its normal response path first.
pub(super) fn socket_timeout(timeout: Duration) -> Duration {
    (timeout * 2 / 5).max(Duration::from_millis(10))
}

/// librdkafka's limit on setting up a broker connection (TCP connect, TLS, ApiVersion, SASL)
/// for a stage `timeout`: the timeout itself, at least librdkafka's minimum of 1 s.
///
/// librdkafka fails the requests queued on a connection that is still being set up when their
/// timeout passes, but it only gives up on the connection itself after this limit (30 s by
/// default). After a congested or cut link recovers, an attempt made during the fault stays
/// pending until the kernel's next SYN retransmission, seconds later (measured: up to 13 s after
/// a throttle was lifted, every request to the broker timing out while a new client was
/// answered at once; `tests/connection_recovery.rs`). A connection that is not up within one
/// stage timeout is of no use to the stage, so it is abandoned and redialled after the
/// reconnect backoff.
pub(super) fn connection_setup_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// A syslog level as `rdkafka` maps it.
pub(super) fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// Splits librdkafka's configuration errors into the property (when it names one) and the
/// reason, which never echoes secret values.
pub(super) fn creation_error(e: KafkaError) -> (Option<String>, String) {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => (Some(key), desc),
        KafkaError::ClientCreation(msg) => (None, msg),
        other => (None, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_timeout_expires_before_any_coordinator_request_deadline() {
        assert_eq!(socket_timeout(Duration::from_secs(10)), Duration::from_secs(4));
        assert_eq!(socket_timeout(Duration::from_millis(5)), Duration::from_millis(10));
        // Coordinator requests start only with half the stage timeout left.
        for ms in [30u64, 100, 1000, 2000, 30_000] {
            let t = Duration::from_millis(ms);
            assert!(socket_timeout(t) < t / 2, "{t:?}");
        }
    }

    #[test]
    fn connection_setup_is_bounded_by_the_stage_timeout() {
        assert_eq!(
            connection_setup_timeout(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            connection_setup_timeout(Duration::from_millis(2500)),
            Duration::from_millis(2500)
        );
        // librdkafka refuses less than 1 s.
        assert_eq!(
            connection_setup_timeout(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }

    fn cluster(yaml: &str) -> ClusterConfig {
        let text = format!("clusters:\n  - {{name: a, bootstrap_servers: ['k:1'], {yaml}}}\n");
        crate::config::Config::parse(std::path::Path::new("t.yml"), &text)
            .unwrap()
            .clusters
            .remove(0)
    }

    #[test]
    fn client_timeouts_follow_the_stage_timeout_unless_overridden() {
        let cc = base_config(&cluster("timeout: 3s"));
        assert_eq!(cc.get("socket.timeout.ms"), Some("1200"));
        assert_eq!(cc.get("socket.connection.setup.timeout.ms"), Some("3000"));
        assert_eq!(cc.get("reconnect.backoff.max.ms"), Some("1000"));
        let cc = base_config(&cluster(
            "timeout: 3s, client_properties: {socket.connection.setup.timeout.ms: 20000}",
        ));
        assert_eq!(cc.get("socket.connection.setup.timeout.ms"), Some("20000"));
    }
}
