//! The immutable per-cluster snapshot that scrapes read, the poller's memory across cycles, and
//! the pure functions that fold one cycle's raw results into both.
//!
//! Each stage's data carries the time it was collected. When a stage fails, its last good data
//! is kept (and its age exported) until it is older than `max_staleness`; then it is dropped so
//! that stale values are never presented as current. Derived histories (high watermarks, group
//! status observations) only advance on fresh data.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::{Duration, SystemTime};

use crate::config::Granularity;
use crate::kafka::{ClusterDescription, GroupMember, GroupState, GroupType};
use crate::lag::{self, OffsetLag, TimeLagMethod};
pub use crate::model::{PartitionView, TopicSettings, TopicView};
use crate::policy::TopicCompliance;
use crate::shard::Shard;
use crate::status::Status;

/// Where a cluster's current snapshot lives. Scrapes `load()` it; the poller `store()`s.
pub type SnapshotSlot = Arc<ArcSwap<ClusterSnapshot>>;

/// The collection stages of a cycle, in execution order. Every stage has its own duration,
/// error counter and staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// DescribeCluster: cluster id, controller, brokers.
    Cluster,
    /// Metadata: topics, partitions, leaders, replicas, ISR.
    Topics,
    /// DescribeConfigs of the exported topics.
    TopicConfigs,
    /// ListOffsets: log start, high watermark, last stable offset.
    Offsets,
    /// ListConsumerGroups + DescribeConsumerGroups.
    Groups,
    /// ListConsumerGroupOffsets of every exported group.
    GroupOffsets,
    /// Reads of the records at committed offsets, for time lag.
    TimeLag,
    /// Reads of the records at log start offsets, for the replay window (slower cadence).
    ReplayWindow,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Cluster,
        Stage::Topics,
        Stage::TopicConfigs,
        Stage::Offsets,
        Stage::Groups,
        Stage::GroupOffsets,
        Stage::TimeLag,
        Stage::ReplayWindow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Cluster => "cluster",
            Stage::Topics => "topics",
            Stage::TopicConfigs => "topic_configs",
            Stage::Offsets => "offsets",
            Stage::Groups => "groups",
            Stage::GroupOffsets => "group_offsets",
            Stage::TimeLag => "time_lag",
            Stage::ReplayWindow => "replay_window",
        }
    }
}

/// Data of one stage plus the wall-clock time it was collected. Cloning shares the data.
#[derive(Debug)]
pub struct Timestamped<T> {
    pub collected_at: SystemTime,
    pub value: Arc<T>,
}

impl<T> Clone for Timestamped<T> {
    fn clone(&self) -> Self {
        Self {
            collected_at: self.collected_at,
            value: Arc::clone(&self.value),
        }
    }
}

impl<T> Timestamped<T> {
    fn new(collected_at: SystemTime, value: T) -> Self {
        Self {
            collected_at,
            value: Arc::new(value),
        }
    }
}

/// Per-stage bookkeeping that lives across cycles.
#[derive(Debug, Clone, Default)]
pub struct StageStats {
    pub last_duration: Option<Duration>,
    pub last_success: Option<SystemTime>,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// What scrapes read
// ---------------------------------------------------------------------------------------------

/// Lag of a group on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPartitionView {
    pub partition: i32,
    pub committed: Option<i64>,
    /// Assigned to a current member.
    pub assigned: bool,
    /// `None` when the partition's offsets are unknown.
    pub lag: Option<OffsetLag>,
    pub time_lag: Option<(f64, TimeLagMethod)>,
}

/// Lag of a group on one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTopicView {
    pub topic: String,
    pub partitions: Vec<GroupPartitionView>,
    /// Time-based retention of the topic, for the retention usage ratio.
    pub retention_ms: Option<i64>,
}

impl GroupTopicView {
    pub fn lag_sum(&self) -> Option<i64> {
        self.lags().map(|l| l.lag).reduce(|a, b| a.saturating_add(b))
    }
    pub fn lag_max(&self) -> Option<i64> {
        self.lags().map(|l| l.lag).max()
    }
    pub fn lost_sum(&self) -> Option<i64> {
        self.lags().map(|l| l.lost).reduce(|a, b| a.saturating_add(b))
    }
    pub fn time_lag_max(&self) -> Option<f64> {
        self.partitions
            .iter()
            .filter_map(|p| p.time_lag.map(|t| t.0))
            .reduce(f64::max)
    }
    pub fn uncommitted(&self) -> usize {
        self.partitions.iter().filter(|p| p.committed.is_none()).count()
    }
    pub fn retention_usage(&self) -> Option<f64> {
        lag::retention_usage(self.time_lag_max()?, self.retention_ms)
    }
    fn lags(&self) -> impl Iterator<Item = &OffsetLag> {
        self.partitions.iter().filter_map(|p| p.lag.as_ref())
    }
}

/// A consumer group as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub name: String,
    pub state: GroupState,
    pub group_type: GroupType,
    pub assignor: String,
    pub coordinator: Option<i32>,
    pub members: Vec<GroupMember>,
    /// `None` while the committed offsets are unknown.
    pub status: Option<Status>,
    pub topics: Vec<GroupTopicView>,
}

/// Everything scrapes read about one cluster. Replaced as a whole whenever a stage of the cycle
/// in flight has new results, and at the end of each cycle.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub name: String,
    /// Constant labels from the configuration.
    pub labels: Vec<(String, String)>,
    pub granularity: Granularity,
    /// Whether the most recent cycle completed every stage.
    pub up: bool,
    pub cycles_total: u64,
    pub last_cycle_duration: Option<Duration>,
    /// End of the most recent cycle in which every stage succeeded.
    pub last_success: Option<SystemTime>,
    pub stages: BTreeMap<Stage, StageStats>,
    /// When the data each stage contributed was collected (absent: no data served).
    pub data_at: BTreeMap<Stage, SystemTime>,
    pub record_reads_total: u64,
    pub replay_reads_total: u64,
    pub record_cache_entries: usize,
    /// Partitions whose ListOffsets failed in the most recent cycle that ran the stage (their
    /// offsets are unknown, not carried over).
    pub partition_offset_errors: usize,
    pub cluster: Option<Arc<ClusterDescription>>,
    pub topics: Option<Arc<Vec<TopicView>>>,
    pub groups: Option<Arc<Vec<GroupView>>>,
    /// Compliance of every exported topic with the policy, in topic order.
    pub compliance: Option<Arc<Vec<TopicCompliance>>>,
    /// When the topic views and their compliance were built.
    pub built_at: Option<SystemTime>,
    /// The share of topics and groups this snapshot covers: `topics`, `compliance` and
    /// `groups` hold only this shard's.
    pub shard: Shard,
    /// Counts over every selected topic of the cluster, whichever shard owns it.
    pub totals: Option<ClusterTotals>,
}

/// Partition counts over every selected topic of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTotals {
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: usize,
    pub offline: usize,
    pub non_preferred_leader: usize,
    /// Partitions led by each broker, by broker id (brokers leading none are absent).
    pub leaders: Vec<(i32, usize)>,
}

/// Counts per broker id, in id order.
fn leaders_per_broker(leaders: impl Iterator<Item = i32>) -> Vec<(i32, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for id in leaders {
        *counts.entry(id).or_insert(0usize) += 1;
    }
    counts.into_iter().collect()
}

impl ClusterTotals {
    fn of(topics: &[TopicView]) -> Self {
        let partitions = || topics.iter().flat_map(|t| t.partitions.iter());
        let count = |f: &dyn Fn(&PartitionView) -> bool| partitions().filter(|p| f(p)).count();
        Self {
            topics: topics.len(),
            partitions: partitions().count(),
            under_replicated: count(&|p| p.under_replicated()),
            offline: count(&|p| p.offline()),
            non_preferred_leader: count(&|p| !p.offline() && !p.leader_is_preferred()),
            leaders: leaders_per_broker(partitions().filter_map(|p| p.leader)),
        }
    }
}

impl ClusterSnapshot {
    /// The snapshot before the first cycle: no data, not up, zeroed counters for every stage.
    pub fn empty(name: &str, labels: &[(String, String)], granularity: Granularity) -> Self {
        Self {
            name: name.to_string(),
            labels: labels.to_vec(),
            granularity,
            up: false,
            cycles_total: 0,
            last_cycle_duration: None,
            last_success: None,
            stages: Stage::ALL.iter().map(|s| (*s, StageStats::default())).collect(),
            data_at: BTreeMap::new(),
            record_reads_total: 0,
            replay_reads_total: 0,
            record_cache_entries: 0,
            partition_offset_errors: 0,
            cluster: None,
            topics: None,
            groups: None,
            compliance: None,
            built_at: None,
            shard: Shard::default(),
            totals: None,
        }
    }

    /// True once every stage has succeeded at least once.
    pub fn ready(&self) -> bool {
        self.stages.values().all(|s| s.last_success.is_some())
    }
}

/// Seconds between `then` and `now`, zero if the clock went backwards.
pub fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

mod fold;
mod record_ts;
mod views;

pub use fold::{CommittedOffsets, GroupInfo, IoOutcome, Memory, Offsets, OffsetsRaw, PartitionCount, StageOutcome};
pub use record_ts::RecordTimestamps;
pub use views::{GroupLag, Rebuild};

#[cfg(test)]
mod tests;
