//! Access to Kafka. The rest of the exporter sees only the [`KafkaSource`] trait and the plain
//! types below, so collectors and the poller can be unit-tested without a broker.
//!
//! Two readers implement the trait: [`NativeSource`] speaks the Kafka protocol itself (the
//! default wherever it can honour the cluster's settings) and [`RdKafkaSource`] uses
//! librdkafka's admin API; record reads, the delivery probe and the registry sampler always use
//! librdkafka. This module tree is the only place that imports `rdkafka`; [`ffi`] owns every
//! `unsafe` block (admin calls that the `rdkafka` crate does not wrap, and the allocator).

mod client;
mod context;
mod decode;
mod errors;
mod ffi;
pub mod kerberos;
mod native;
mod probe;
mod reader;
mod sample;
mod stats;

use std::collections::BTreeMap;
use std::time::Duration;

pub use client::RdKafkaSource;
pub use errors::{ClientErrorKind, ClientErrors};
pub use native::NativeSource;
pub use probe::{Delivery, ProbeClient, ProbeRecord};
pub use sample::{SampleRead, SampledValue, ValueSampler};
pub use stats::{ReaderKind, ReaderStats};

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
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was below
    /// `min.insync.replicas` and can still be elected without losing acknowledged writes.
    /// `None` where the reader cannot tell (librdkafka, brokers without ELR).
    pub elr: Option<Vec<i32>>,
    /// The ELR last known before the partition lost every eligible replica (KIP-966); `None`
    /// as for `elr`.
    pub last_known_elr: Option<Vec<i32>>,
}

/// One topic from a metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub partitions: Vec<PartitionMetadata>,
}

/// Which offset of a partition to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Log start offset (the oldest retained record).
    Earliest,
    /// High watermark (read_uncommitted).
    Latest,
    /// Last stable offset (read_committed): below the first open transaction.
    LatestCommitted,
}

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// The state of a consumer group as the coordinator reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    Unknown,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
    Empty,
}

impl GroupState {
    pub const ALL: [GroupState; 6] = [
        GroupState::Unknown,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
        GroupState::Empty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Unknown => "unknown",
            GroupState::PreparingRebalance => "preparing_rebalance",
            GroupState::CompletingRebalance => "completing_rebalance",
            GroupState::Stable => "stable",
            GroupState::Dead => "dead",
            GroupState::Empty => "empty",
        }
    }
}

/// The rebalance protocol of a group: `classic` (JoinGroup/SyncGroup) or `consumer` (KIP-848).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupType {
    Unknown,
    Classic,
    Consumer,
}

impl GroupType {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupType::Unknown => "unknown",
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
        }
    }
}

/// One entry of ListConsumerGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: GroupState,
    pub group_type: GroupType,
    /// A "simple" group: offsets committed without group membership (protocol type empty).
    pub is_simple: bool,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

/// One group from DescribeConsumerGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    pub group_type: GroupType,
    /// Partition assignor, e.g. `range`, `cooperative-sticky`, `uniform`.
    pub assignor: String,
    pub coordinator: Option<i32>,
    pub members: Vec<GroupMember>,
    /// Group-level error (e.g. GROUP_ID_NOT_FOUND); members are empty then.
    pub error: Option<String>,
}

/// Committed offsets of one group (ListConsumerGroupOffsets). Partitions without a committed
/// offset are not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group: String,
    /// `Err` when the request for this group failed; other groups are unaffected.
    pub offsets: Result<Vec<(TopicPartition, i64)>, String>,
}

/// An offset of one partition from ListOffsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    pub tp: TopicPartition,
    /// `Err` for a partition-level error (e.g. leader not available).
    pub offset: Result<i64, String>,
}

/// The first record at or after a requested offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAt {
    pub tp: TopicPartition,
    /// The offset asked for.
    pub requested: i64,
    /// The offset of the record found (≥ requested: control records and compaction leave gaps).
    pub offset: i64,
    /// Its timestamp in milliseconds since the epoch (CreateTime or LogAppendTime).
    pub timestamp_ms: i64,
}

/// The effective configuration of one topic: its name and every config key with its value
/// (defaults included, sensitive values left out).
pub type TopicConfig = (String, BTreeMap<String, String>);

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
    /// Effective configuration (every key, defaults included) of each topic, in one
    /// DescribeConfigs request. Topics that fail individually are left out.
    fn topic_configs(&self, topics: &[String], timeout: Duration) -> Result<Vec<TopicConfig>, SourceError>;
    /// ListOffsets for many partitions in batched admin calls of up to 1,000 partitions
    /// (librdkafka groups each call's requests per leader). One entry per distinct partition,
    /// sorted; partition-level errors (e.g. an unknown partition) are `Err` entries, but when no
    /// partition of a batch has a known leader the call fails ("No leaders found"). A partition whose leader is unknown can make the whole
    /// call wait for `timeout`, so callers should pass only partitions that have one.
    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timeout: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError>;
    /// Every consumer group with its state and type, sorted by name.
    fn list_groups(&self, timeout: Duration) -> Result<Vec<GroupListing>, SourceError>;
    /// Members, assignments and state of the given groups (batched), sorted by name. Unknown
    /// groups come back with state `Dead` (or a group-level error), not as a failed call.
    fn describe_groups(&self, groups: &[String], timeout: Duration) -> Result<Vec<GroupDescription>, SourceError>;
    /// Committed offsets of each group, one entry per input group in input order; at most
    /// `concurrency` requests in flight. `timeout` bounds the whole call.
    fn group_offsets(
        &self,
        groups: &[String],
        concurrency: usize,
        timeout: Duration,
    ) -> Result<Vec<GroupOffsets>, SourceError>;
    /// Reads the first record at or after each requested offset and returns its offset and
    /// timestamp. Partitions where nothing could be read within `timeout` are left out, and so
    /// are offsets at or beyond the end of the log. An offset below the log start yields the
    /// oldest retained record. Sorted by partition and requested offset.
    fn records_at(&self, requests: &[(TopicPartition, i64)], timeout: Duration) -> Result<Vec<RecordAt>, SourceError>;
}

/// Arenas glibc's malloc may use. Every collection cycle runs its stages on fresh threads and
/// each record read creates a librdkafka client with threads of its own; with glibc's default
/// (8 per core) each new thread can land on another arena, and memory freed in one arena is
/// not reused by the others, so the resident set creeps up for hours under topic and group
/// churn. Two arenas cut that creep to a sixth (`bench/soak.sh`); allocation is not the
/// exporter's bottleneck.
pub const MALLOC_ARENAS: i32 = 2;

/// Applies [`MALLOC_ARENAS`] unless the operator set `MALLOC_ARENA_MAX` (which glibc reads
/// itself). Call first thing in `main`, before any thread starts.
pub fn limit_malloc_arenas() -> bool {
    std::env::var_os("MALLOC_ARENA_MAX").is_none() && ffi::limit_malloc_arenas(MALLOC_ARENAS)
}

/// Raises this process's soft limit of open files to its hard limit; returns the limit now in
/// force, `None` if it cannot be read or set.
pub fn raise_open_files_limit() -> Option<u64> {
    ffi::raise_open_files_limit()
}

/// Returns heap pages that are free but still resident to the kernel. glibc gives back only
/// the free top of an arena; pages freed in its middle (a record reader's buffers and threads,
/// the previous cycle's metadata) stay resident and the RSS steps up after each large cycle
/// (`bench/soak.sh`). Called at the end of every collection cycle, on its blocking thread.
pub fn release_free_heap() -> bool {
    ffi::release_free_heap()
}

/// Version string of the linked librdkafka.
pub fn librdkafka_version() -> String {
    rdkafka::util::get_rdkafka_version().1
}

/// Whether the linked librdkafka can authenticate with SASL `mechanism`: it builds (but never
/// connects) a client using it, and returns librdkafka's reason when that fails. Its
/// `builtin.features` list is no guide: it names GSSAPI even when no Kerberos provider is built.
pub fn check_sasl_mechanism(mechanism: &str) -> Result<(), String> {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", mechanism);
    if mechanism.eq_ignore_ascii_case("GSSAPI") {
        // No kinit for this throw-away client (its command line would need a keytab).
        config.set("sasl.kerberos.min.time.before.relogin", "0");
    }
    config
        .create::<rdkafka::producer::BaseProducer>()
        .map(drop)
        .map_err(|e| match e {
            rdkafka::error::KafkaError::ClientCreation(msg) => msg,
            other => other.to_string(),
        })
}
