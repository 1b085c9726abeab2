//! Counts of the errors librdkafka reports for a cluster's connections, by kind, so that a
//! rejected password or an untrusted certificate shows as its own series instead of only as
//! timed-out requests.
//!
//! Every client of a cluster (admin, helpers, record reader, probe) reports here through its
//! context, keyed by the cluster name.

use std::collections::BTreeMap;
use std::sync::Mutex;

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

static COUNTS: Mutex<BTreeMap<(String, ClientErrorKind), u64>> = Mutex::new(BTreeMap::new());

pub(super) fn count(cluster: &str, code: Option<RDKafkaErrorCode>, message: &str) {
    let kind = ClientErrorKind::of(code, message);
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry((cluster.to_string(), kind)).or_insert(0) += 1;
}

/// Errors reported so far for `cluster`, every kind listed (zero when none happened).
pub fn client_errors(cluster: &str) -> Vec<(ClientErrorKind, u64)> {
    let counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    ClientErrorKind::ALL
        .iter()
        .map(|k| (*k, counts.get(&(cluster.to_string(), *k)).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_cluster_and_kind() {
        let refused = "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";
        count("errors-test-a", Some(RDKafkaErrorCode::Authentication), refused);
        count("errors-test-a", Some(RDKafkaErrorCode::Authentication), refused);
        count("errors-test-a", Some(RDKafkaErrorCode::SSL), "SSL handshake failed");
        count("errors-test-b", None, "");
        let a = client_errors("errors-test-a");
        assert_eq!(a.len(), ClientErrorKind::ALL.len());
        assert!(a.contains(&(ClientErrorKind::Authentication, 2)));
        assert!(a.contains(&(ClientErrorKind::Transport, 0)));
        assert!(a.contains(&(ClientErrorKind::Tls, 1)));
        assert!(a.contains(&(ClientErrorKind::Other, 0)));
        assert!(client_errors("errors-test-b").contains(&(ClientErrorKind::Other, 1)));
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
