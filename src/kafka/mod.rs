//! Access to Kafka. The rest of the exporter sees only the [`KafkaSource`] trait and the plain
//! types below, so collectors and the poller can be unit-tested without a broker.
//!
//! This module tree is the only place that imports `rdkafka`; [`ffi`] owns every `unsafe`
//! block (admin calls that the `rdkafka` crate does not wrap).

mod client;
mod ffi;

use std::time::Duration;

pub use client::RdKafkaSource;

/// A broker as reported by DescribeCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// Cluster-level facts from DescribeCluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: Vec<Broker>,
}

/// One partition from a metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub id: i32,
    /// Leader broker id; `None` when the partition has no leader (offline).
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One topic from a metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub partitions: Vec<PartitionMetadata>,
}

/// Why a call to Kafka failed. The `stage`-level caller turns it into an error counter and a log
/// line; the message never contains secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct SourceError {
    pub operation: &'static str,
    pub message: String,
}

impl SourceError {
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            operation,
            message: message.into(),
        }
    }
}

/// Blocking access to one Kafka cluster. Implementations must be cheap to call repeatedly and
/// must honour `timeout` per request. Callers run these on a blocking thread, never on the async
/// runtime's workers.
pub trait KafkaSource: Send + Sync + 'static {
    /// Cluster id, controller and live brokers (with racks).
    fn describe_cluster(&self, timeout: Duration) -> Result<ClusterDescription, SourceError>;
    /// Metadata of every topic, internal ones included.
    fn topic_metadata(&self, timeout: Duration) -> Result<Vec<TopicMetadata>, SourceError>;
}

/// Version string of the linked librdkafka.
pub fn librdkafka_version() -> String {
    rdkafka::util::get_rdkafka_version().1
}
