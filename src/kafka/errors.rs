//! Counts of the errors a cluster's Kafka clients (librdkafka's and the native reader) report for
//! their connections, by kind, so that a
//! rejected password or an untrusted certificate shows as its own series instead of only as
//! timed-out requests.
//!
//! Every client of a cluster (admin, helpers, record reader, probe, registry sampler) reports
//! through its context into the cluster's [`ClientErrors`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rdkafka::types::RDKafkaErrorCode;

/// What went wrong with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientErrorKind {
    /// SASL authentication failed (wrong credentials, mechanism not enabled on the broker).
    Authentication,
    /// TLS failed: broker certificate not trusted, client certificate refused, protocol error.
    Tls,
    /// A connection broke or could not be made.
    Transport,
    /// A host name did not resolve.
    Resolve,
    /// No broker of the cluster is reachable.
    AllBrokersDown,
    Other,
}

impl ClientErrorKind {
    pub const ALL: [ClientErrorKind; 6] = [
        ClientErrorKind::Authentication,
        ClientErrorKind::Tls,
        ClientErrorKind::Transport,
        ClientErrorKind::Resolve,
        ClientErrorKind::AllBrokersDown,
        ClientErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientErrorKind::Authentication => "authentication",
            ClientErrorKind::Tls => "tls",
            ClientErrorKind::Transport => "transport",
            ClientErrorKind::Resolve => "resolve",
            ClientErrorKind::AllBrokersDown => "all_brokers_down",
            ClientErrorKind::Other => "other",
        }
    }

    /// The kind of an error event with librdkafka's `code` and `message`.
    ///
    /// librdkafka reports a connection that broke during the SASL handshake as an
    /// authentication failure ("SASL PLAIN mechanism handshake failed: Local: Broker transport
    /// failure: ..."); that is a transport problem, not a credential one, so it is counted as
    /// one and an authentication alert only fires on what the broker actually refused.
    fn of(code: Option<RDKafkaErrorCode>, message: &str) -> ClientErrorKind {
        if code == Some(RDKafkaErrorCode::Authentication) && message.contains("Broker transport failure") {
            return ClientErrorKind::Transport;
        }
        match code {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                ClientErrorKind::Authentication
            }
            Some(RDKafkaErrorCode::SSL) => ClientErrorKind::Tls,
            Some(RDKafkaErrorCode::BrokerTransportFailure) => ClientErrorKind::Transport,
            Some(RDKafkaErrorCode::Resolve) => ClientErrorKind::Resolve,
            Some(RDKafkaErrorCode::AllBrokersDown) => ClientErrorKind::AllBrokersDown,
            _ => ClientErrorKind::Other,
        }
    }
}

/// The error counts of one cluster's clients, by kind. Created once per cluster at start-up,
/// cloned into every client context of that cluster (admin, helpers, record reader, probe,
/// registry sampler) and read by the collectors.
#[derive(Debug, Clone, Default)]
pub struct ClientErrors(Arc<[AtomicU64; ClientErrorKind::ALL.len()]>);

impl ClientErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn count(&self, code: Option<RDKafkaErrorCode>, message: &str) {
        let kind = ClientErrorKind::of(code, message);
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error whose kind the caller already knows (the native reader's connections).
    pub(super) fn count_kind(&self, kind: ClientErrorKind) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Errors reported so far, every kind listed (zero when none happened).
    pub fn counts(&self) -> Vec<(ClientErrorKind, u64)> {
        ClientErrorKind::ALL
            .iter()
            .map(|k| (*k, self.0[*k as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_cluster_and_kind() {
        let refused = "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";
        let (a, b) = (ClientErrors::new(), ClientErrors::new());
        let a_clone = a.clone();
        a.count(Some(RDKafkaErrorCode::Authentication), refused);
        a_clone.count(Some(RDKafkaErrorCode::Authentication), refused);
        a.count(Some(RDKafkaErrorCode::SSL), "SSL handshake failed");
        b.count(None, "");
        let a = a.counts();
        assert_eq!(a.len(), ClientErrorKind::ALL.len());
        assert!(a.contains(&(ClientErrorKind::Authentication, 2)));
        assert!(a.contains(&(ClientErrorKind::Transport, 0)));
        assert!(a.contains(&(ClientErrorKind::Tls, 1)));
        assert!(a.contains(&(ClientErrorKind::Other, 0)));
        assert!(b.counts().contains(&(ClientErrorKind::Other, 1)));
        assert!(b.counts().contains(&(ClientErrorKind::Authentication, 0)));
    }

    /// Counts are indexed by the kind's discriminant, so `ALL` must list kinds in declaration
    /// order.
    #[test]
    fn all_is_in_declaration_order() {
        for (i, k) in ClientErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
    }

    #[test]
    fn a_connection_lost_during_the_sasl_handshake_is_a_transport_error() {
        let lost = "127.0.0.1:9093/1: SASL PLAIN mechanism handshake failed: Local: Broker transport failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)";
        assert_eq!(
            ClientErrorKind::of(Some(RDKafkaErrorCode::Authentication), lost),
            ClientErrorKind::Transport
        );
        assert_eq!(
            ClientErrorKind::of(
                Some(RDKafkaErrorCode::Authentication),
                "SASL authentication error: invalid credentials"
            ),
            ClientErrorKind::Authentication
        );
    }
}
