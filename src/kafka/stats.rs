//! Which client reads a cluster's state, and the Kafka requests the native reader sent, for
//! `kafka_slo_exporter_kafka_reader_info` and `kafka_slo_exporter_kafka_requests_total`.
//! Created once per cluster at start-up, handed to the cluster's source and to the collectors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The client serving a cluster's collection cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderKind {
    Native,
    Librdkafka,
}

impl ReaderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReaderKind::Native => "native",
            ReaderKind::Librdkafka => "librdkafka",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The reader and why it was chosen; `None` until the source is created.
    reader: Option<(ReaderKind, String)>,
    /// Requests sent, by API name and broker (`bootstrap` or the node id).
    requests: BTreeMap<(&'static str, String), u64>,
}

/// See the module documentation. Cheap to clone; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct ReaderStats(Arc<Mutex<Inner>>);

impl ReaderStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records which reader serves the cluster and why (once, when the source is created).
    pub fn set_reader(&self, kind: ReaderKind, reason: impl Into<String>) {
        self.lock().reader = Some((kind, reason.into()));
    }

    /// The reader and the reason it serves the cluster.
    pub fn reader(&self) -> Option<(ReaderKind, String)> {
        self.lock().reader.clone()
    }

    /// Counts one request of `api` sent to `broker`.
    pub fn count(&self, api: &'static str, broker: &str) {
        let mut inner = self.lock();
        match inner.requests.get_mut(&(api, broker.to_string())) {
            Some(n) => *n += 1,
            None => {
                inner.requests.insert((api, broker.to_string()), 1);
            }
        }
    }

    /// Requests sent so far, by API and broker, sorted.
    pub fn requests(&self) -> Vec<(&'static str, String, u64)> {
        self.lock()
            .requests
            .iter()
            .map(|((api, broker), n)| (*api, broker.clone(), *n))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_api_and_broker_are_shared_by_clones() {
        let s = ReaderStats::new();
        assert_eq!(s.reader(), None);
        s.set_reader(ReaderKind::Native, "default");
        let c = s.clone();
        c.count("Metadata", "bootstrap");
        c.count("Metadata", "1");
        s.count("Metadata", "1");
        assert_eq!(
            s.requests(),
            vec![
                ("Metadata", "1".to_string(), 2),
                ("Metadata", "bootstrap".to_string(), 1)
            ]
        );
        assert_eq!(c.reader(), Some((ReaderKind::Native, "default".to_string())));
    }
}
