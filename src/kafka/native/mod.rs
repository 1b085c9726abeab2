//! The native reader: the collection cycle's reads spoken in the Kafka protocol directly, with
//! the `kafka-protocol` codec and the exporter's own tokio transport, so that what librdkafka's
//! admin API sends one group at a time goes out batched: one FindCoordinator for every group,
//! OffsetFetch and DescribeGroups for all groups of a coordinator per request, ListOffsets per
//! leader.
//!
//! Layout: [`frame`] (wire framing, pure), [`conn`] (one broker connection, pipelined),
//! [`pool`] (connections per broker, reconnects), [`settings`] (the cluster's properties as
//! this reader reads them), [`tls`], [`sasl`], [`oauth`] (authentication), [`meta`],
//! [`groups`], [`describe`] and [`fetch`] (the reads themselves), [`batch`] (record batches,
//! pure). Record batches in a format [`batch`] does not read go to librdkafka.

mod batch;
mod conn;
mod describe;
mod fetch;
mod frame;
mod groups;
mod meta;
mod oauth;
mod pool;
mod sasl;
pub(crate) mod settings;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    ClientErrorKind, ClientErrors, ClusterDescription, GroupDescription, GroupListing, GroupOffsets, KafkaSource,
    OffsetSpec, PartitionOffset, RdKafkaSource, ReaderStats, RecordAt, SourceError, TopicConfig, TopicMetadata,
    TopicPartition,
};
use crate::config::ClusterConfig;

pub(crate) use frame::FrameError;

/// Why a request of the native reader failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NetError {
    /// The connection could not be made or broke (transport, TLS, authentication, resolution).
    #[error("{message}")]
    Connection { kind: ClientErrorKind, message: String },
    #[error("{0}: no response within the timeout")]
    Timeout(&'static str),
    #[error("{0}")]
    Frame(FrameError),
    #[error("{0}: no version in common with the broker")]
    Unsupported(&'static str),
    #[error("{0}")]
    Protocol(String),
}

impl NetError {
    pub(crate) fn connection(kind: ClientErrorKind, message: impl Into<String>) -> NetError {
        NetError::Connection {
            kind,
            message: message.into(),
        }
    }

    /// The kind counted in `kafka_slo_exporter_kafka_client_errors_total`, for connection
    /// failures.
    pub(crate) fn client_error_kind(&self) -> Option<ClientErrorKind> {
        match self {
            NetError::Connection { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The same error with the broker address in front of its message.
    pub(crate) fn context(self, addr: &str) -> NetError {
        match self {
            NetError::Connection { kind, message } if !message.contains(addr) => NetError::Connection {
                kind,
                message: format!("{addr}: {message}"),
            },
            other => other,
        }
    }
}

/// A Kafka error code by its name in the protocol, e.g. `NotCoordinator (16)`.
pub(crate) fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e} ({code})"),
        None => "no error".into(),
    }
}

/// Error codes after which a request is repeated: the leader or coordinator moved or is still
/// loading, or the metadata is not there yet.
pub(crate) fn is_retriable(code: i16) -> bool {
    kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// [`KafkaSource`] over the native reader, with librdkafka for the record batches it leaves.
pub struct NativeSource {
    /// The reader's own runtime (one worker thread): its connections' reader tasks run there,
    /// apart from the HTTP server's. `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Arc<pool::Pool>,
    state: Arc<meta::ClusterState>,
    records: RdKafkaSource,
}

impl NativeSource {
    /// Creates the reader for `cfg` (no connection is made yet) with `records` for record
    /// reads. When the settings cannot be honoured or the TLS files cannot be loaded, returns
    /// the reason and gives `records` back.
    pub fn new(
        cfg: &ClusterConfig,
        records: RdKafkaSource,
        errors: &ClientErrors,
        stats: &ReaderStats,
    ) -> Result<NativeSource, (String, Box<RdKafkaSource>)> {
        let pool = settings::Settings::from_cluster(cfg)
            .and_then(|settings| pool::Pool::new(&cfg.name, settings, stats.clone(), errors.clone()));
        let pool = match pool {
            Ok(p) => p,
            Err(reason) => return Err((reason, Box::new(records))),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kafka-native")
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(r) => r,
            Err(e) => {
                return Err((
                    format!("cannot start the native reader's runtime: {e}"),
                    Box::new(records),
                ))
            }
        };
        Ok(NativeSource {
            runtime: Some(runtime),
            pool: Arc::new(pool),
            state: Arc::new(meta::ClusterState::default()),
            records,
        })
    }

    /// Runs one read to completion on the reader's runtime, bounded by `timeout`; the error
    /// names the operation.
    fn run<T>(
        &self,
        operation: &'static str,
        timeout: Duration,
        read: impl std::future::Future<Output = Result<T, NetError>>,
    ) -> Result<T, SourceError> {
        let deadline_read = async {
            match tokio::time::timeout(timeout, read).await {
                Ok(r) => r,
                Err(_) => Err(NetError::Timeout(operation)),
            }
        };
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(SourceError::new(operation, "the reader is shutting down"));
        };
        runtime
            .block_on(deadline_read)
            .map_err(|e| SourceError::new(operation, e.to_string()))
    }

    fn deadline(timeout: Duration) -> Instant {
        Instant::now() + timeout
    }
}

impl Drop for NativeSource {
    /// The last owner may be an async task (the poller's) at shutdown, where dropping a runtime
    /// the blocking way panics: its tasks are stopped without waiting.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl KafkaSource for NativeSource {
    fn describe_cluster(&self, timeout: Duration) -> Result<ClusterDescription, SourceError> {
        // The record reader's client is otherwise idle between record reads; serving its
        // queue here keeps its logs flowing and its queue short.
        self.records.serve();
        let d = Self::deadline(timeout);
        self.run("Metadata", timeout, meta::describe_cluster(&self.pool, d))
    }

    fn topic_metadata(&self, timeout: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        let d = Self::deadline(timeout);
        self.run("Metadata", timeout, meta::topic_metadata(&self.pool, &self.state, d))
    }

    fn topic_configs(&self, topics: &[String], timeout: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        let d = Self::deadline(timeout);
        self.run("DescribeConfigs", timeout, meta::topic_configs(&self.pool, topics, d))
    }

    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timeout: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        let d = Self::deadline(timeout);
        self.run(
            "ListOffsets",
            timeout,
            meta::list_offsets(&self.pool, &self.state, partitions, spec, d),
        )
    }

    fn list_groups(&self, timeout: Duration) -> Result<Vec<GroupListing>, SourceError> {
        let d = Self::deadline(timeout);
        self.run("ListGroups", timeout, groups::list_groups(&self.pool, &self.state, d))
    }

    fn describe_groups(&self, groups: &[String], timeout: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        let d = Self::deadline(timeout);
        self.run(
            "DescribeGroups",
            timeout,
            describe::describe_groups(&self.pool, &self.state, groups, d),
        )
    }

    fn group_offsets(
        &self,
        groups: &[String],
        _concurrency: usize,
        timeout: Duration,
    ) -> Result<Vec<GroupOffsets>, SourceError> {
        let d = Self::deadline(timeout);
        self.run(
            "OffsetFetch",
            timeout,
            groups::group_offsets(&self.pool, &self.state, groups, d),
        )
    }

    fn records_at(&self, requests: &[(TopicPartition, i64)], timeout: Duration) -> Result<Vec<RecordAt>, SourceError> {
        let d = Self::deadline(timeout);
        let reads = self.run(
            "Fetch",
            timeout,
            fetch::records_at(&self.pool, &self.state, requests, d),
        )?;
        let mut found = reads.found;
        if !reads.unsupported.is_empty() {
            let left = d.saturating_duration_since(Instant::now());
            tracing::debug!(
                cluster = self.pool.cluster.as_str(),
                "{} record reads left to librdkafka (older message format or unknown codec)",
                reads.unsupported.len()
            );
            match self.records.records_at(&reads.unsupported, left) {
                Ok(more) => {
                    found.extend(more);
                    found.sort_by(|a, b| (&a.tp, a.requested).cmp(&(&b.tp, b.requested)));
                }
                Err(e) => tracing::debug!(cluster = self.pool.cluster.as_str(), "reading records: {e}"),
            }
        }
        Ok(found)
    }
}
