//! The immutable per-cluster snapshot that scrapes read, the poller's memory across cycles, and
//! the pure functions that fold one cycle's raw results into both.
//!
//! Each stage's data carries the time it was collected. When a stage fails, its last good data
//! is kept (and its age exported) until it is older than `max_staleness`; then it is dropped so
//! that stale values are never presented as current. Derived histories (high watermarks, group
//! status observations) only advance on fresh data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::{Duration, SystemTime};

use crate::config::{ClusterConfig, Granularity};
use crate::kafka::{
    ClusterDescription, GroupDescription, GroupListing, GroupMember, GroupOffsets, GroupState, GroupType,
    PartitionOffset, RecordAt, SourceError, TopicConfig, TopicMetadata, TopicPartition,
};
use crate::lag::{self, HwHistory, HwSample, OffsetLag, PartitionOffsets, TimeLagMethod};
pub use crate::model::{PartitionView, TopicSettings, TopicView};
use crate::policy::{Policy, TopicCompliance, TopicFacts};
use crate::shard::Shard;
use crate::status::{self, PartitionHistory, Status, StatusRules};

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

/// Everything scrapes read about one cluster. Replaced as a whole after each cycle.
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
    /// When the cycle that built this snapshot ended.
    pub built_at: Option<SystemTime>,
    /// The share of topics and groups this snapshot covers: `topics`, `compliance` and
    /// `groups` hold only this shard's.
    pub shard: Shard,
    /// Counts over every selected topic of the cluster, whichever shard owns it.
    pub totals: Option<ClusterTotals>,
}

/// Partition counts over every selected topic of a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterTotals {
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: usize,
    pub offline: usize,
    pub non_preferred_leader: usize,
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

// ---------------------------------------------------------------------------------------------
// Raw cycle results and the poller's memory
// ---------------------------------------------------------------------------------------------

/// What one stage returned, and how long it took.
#[derive(Debug)]
pub struct StageOutcome<T> {
    pub duration: Duration,
    pub result: Result<T, SourceError>,
}

/// The three offsets of every partition, as listed.
#[derive(Debug, Default)]
pub struct OffsetsRaw {
    pub earliest: Vec<PartitionOffset>,
    pub latest: Vec<PartitionOffset>,
    pub last_stable: Vec<PartitionOffset>,
}

impl OffsetsRaw {
    /// Adds the offsets of another request round.
    pub fn extend(&mut self, other: OffsetsRaw) {
        self.earliest.extend(other.earliest);
        self.latest.extend(other.latest);
        self.last_stable.extend(other.last_stable);
    }
}

/// Raw results of the request stages of one cycle. `None` means the stage was skipped because
/// a stage it depends on has no data.
#[derive(Debug)]
pub struct IoOutcome {
    pub at: SystemTime,
    pub cluster: StageOutcome<ClusterDescription>,
    pub topics: StageOutcome<Vec<TopicMetadata>>,
    pub configs: Option<StageOutcome<Vec<TopicConfig>>>,
    pub offsets: Option<StageOutcome<OffsetsRaw>>,
    pub groups: StageOutcome<(Vec<GroupListing>, Vec<GroupDescription>)>,
    pub group_offsets: Option<StageOutcome<Vec<GroupOffsets>>>,
}

/// Offsets of one partition; each may be unknown on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: Option<i64>,
    pub high_watermark: Option<i64>,
    pub last_stable: Option<i64>,
}

/// A listed group with its description (when DescribeConsumerGroups answered for it).
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub listing: GroupListing,
    pub description: Option<GroupDescription>,
}

/// Group id → committed offsets (or the error of that group's request).
pub type CommittedOffsets = HashMap<String, Result<Vec<(TopicPartition, i64)>, String>>;

/// The partition count of a topic as observed, and its changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionCount {
    pub count: usize,
    /// Changes seen by this process (not persisted: a counter restarts with the process).
    #[serde(skip)]
    pub changes: u64,
    /// Unix seconds of the last observed change, persisted when a state directory is set.
    pub last_change_unix: Option<u64>,
}

impl PartitionCount {
    pub fn last_change(&self) -> Option<SystemTime> {
        self.last_change_unix
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }
}

/// What the poller of one cluster remembers between cycles.
#[derive(Debug, Default)]
pub struct Memory {
    pub cluster: Option<Timestamped<ClusterDescription>>,
    /// Metadata of the topics selected by the topic filter.
    pub metadata: Option<Timestamped<Vec<TopicMetadata>>>,
    pub configs: Option<Timestamped<HashMap<String, TopicSettings>>>,
    pub offsets: Option<Timestamped<HashMap<TopicPartition, Offsets>>>,
    /// Groups selected by the group filter.
    pub groups: Option<Timestamped<Vec<GroupInfo>>>,
    pub group_offsets: Option<Timestamped<CommittedOffsets>>,
    pub hw_history: HashMap<TopicPartition, HwHistory>,
    pub status_history: HashMap<(String, TopicPartition), PartitionHistory>,
    /// (partition, requested offset) → timestamp of the first record at or after it.
    pub record_ts: HashMap<(TopicPartition, i64), i64>,
    pub record_reads_total: u64,
    pub replay_reads_total: u64,
    /// Partition → (log start offset read, timestamp of the record there). Kept until the next
    /// refresh even when the log start moves on, so the window is at most one refresh old.
    pub log_start_ts: HashMap<TopicPartition, (i64, i64)>,
    /// When the replay-window reads last ran.
    pub replay_last_run: Option<SystemTime>,
    /// Observed partition count per topic.
    pub partition_counts: HashMap<String, PartitionCount>,
    /// `partition_counts` changed since it was last saved.
    pub partition_counts_dirty: bool,
    /// The state file (if any) has been read.
    pub state_loaded: bool,
    pub stages: BTreeMap<Stage, StageStats>,
    pub cycles_total: u64,
    pub last_success: Option<SystemTime>,
    /// See [`ClusterSnapshot::partition_offset_errors`].
    pub partition_offset_errors: usize,
}

fn stage_done<T>(
    stats: &mut BTreeMap<Stage, StageStats>,
    stage: Stage,
    outcome: &StageOutcome<T>,
    at: SystemTime,
    ok: &mut bool,
) {
    let s = stats.entry(stage).or_default();
    s.last_duration = Some(outcome.duration);
    match &outcome.result {
        Ok(_) => {
            s.last_success = Some(at);
            s.last_error = None;
        }
        Err(e) => {
            *ok = false;
            s.errors_total += 1;
            s.last_error = Some(e.to_string());
        }
    }
}

fn fresh<T>(slot: &mut Option<Timestamped<T>>, value: Option<T>, at: SystemTime, max_staleness: Duration) {
    match value {
        Some(v) => *slot = Some(Timestamped::new(at, v)),
        None => {
            if slot.as_ref().is_some_and(|d| age(at, d.collected_at) > max_staleness) {
                *slot = None;
            }
        }
    }
}

/// Age in seconds at `now` of a record with timestamp `ts_ms`; 0 for future timestamps.
fn record_age(now: SystemTime, ts_ms: i64) -> f64 {
    let then = SystemTime::UNIX_EPOCH + Duration::from_millis(ts_ms.max(0) as u64);
    age(now, then).as_secs_f64()
}

/// Seconds between `then` and `now`, zero if the clock went backwards.
pub fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

impl Memory {
    /// Folds the request stages of a cycle into memory. Returns whether all of them succeeded
    /// (a skipped stage counts as failed: its data is not current).
    pub fn fold_io(&mut self, io: IoOutcome, cfg: &ClusterConfig) -> bool {
        let at = io.at;
        let max = cfg.max_staleness;
        let mut ok = true;

        stage_done(&mut self.stages, Stage::Cluster, &io.cluster, at, &mut ok);
        fresh(
            &mut self.cluster,
            io.cluster.result.ok().map(normalise_description),
            at,
            max,
        );

        stage_done(&mut self.stages, Stage::Topics, &io.topics, at, &mut ok);
        let topics = io.topics.result.ok().map(|t| {
            let mut v: Vec<TopicMetadata> = t.into_iter().filter(|t| cfg.selects_topic(&t.name)).collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v.dedup_by(|a, b| a.name == b.name);
            v
        });
        if let Some(t) = &topics {
            self.observe_partition_counts(t, at);
        }
        fresh(&mut self.metadata, topics, at, max);

        let configs = match io.configs {
            Some(o) => {
                stage_done(&mut self.stages, Stage::TopicConfigs, &o, at, &mut ok);
                o.result.ok().map(|v| {
                    v.into_iter()
                        .map(|(name, cfg)| (name, TopicSettings::from_config(&cfg)))
                        .collect::<HashMap<_, _>>()
                })
            }
            None => {
                ok = false;
                None
            }
        };
        fresh(&mut self.configs, configs, at, max);

        let offsets = match io.offsets {
            Some(o) => {
                stage_done(&mut self.stages, Stage::Offsets, &o, at, &mut ok);
                if let Ok(raw) = &o.result {
                    self.partition_offset_errors = partitions_with_errors(raw);
                }
                o.result.ok().map(merge_offsets)
            }
            None => {
                ok = false;
                None
            }
        };
        if let Some(map) = &offsets {
            for (tp, o) in map {
                if let Some(hw) = o.high_watermark {
                    self.hw_history
                        .entry(tp.clone())
                        .or_default()
                        .push(HwSample { at, high_watermark: hw }, cfg.lag.history_samples);
                }
            }
            self.hw_history.retain(|tp, _| map.contains_key(tp));
        }
        fresh(&mut self.offsets, offsets, at, max);

        stage_done(&mut self.stages, Stage::Groups, &io.groups, at, &mut ok);
        let groups = io.groups.result.ok().map(|(listings, descriptions)| {
            let mut by_id: HashMap<String, GroupDescription> =
                descriptions.into_iter().map(|d| (d.group.clone(), d)).collect();
            let mut v: Vec<GroupInfo> = listings
                .into_iter()
                .filter(|l| cfg.selects_group(&l.group))
                .map(|l| GroupInfo {
                    description: by_id.remove(&l.group),
                    listing: l,
                })
                .collect();
            v.sort_by(|a, b| a.listing.group.cmp(&b.listing.group));
            v.dedup_by(|a, b| a.listing.group == b.listing.group);
            v
        });
        fresh(&mut self.groups, groups, at, max);

        let committed = match io.group_offsets {
            Some(o) => {
                stage_done(&mut self.stages, Stage::GroupOffsets, &o, at, &mut ok);
                o.result.ok().map(|v| {
                    v.into_iter()
                        .map(|g| (g.group, g.offsets))
                        .collect::<CommittedOffsets>()
                })
            }
            None => {
                ok = false;
                None
            }
        };
        fresh(&mut self.group_offsets, committed, at, max);
        ok
    }

    /// Compares partition counts with the last observation. A topic seen for the first time
    /// (and not in the loaded state) is a baseline, not a change.
    fn observe_partition_counts(&mut self, topics: &[TopicMetadata], at: SystemTime) {
        let unix = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for t in topics {
            let n = t.partitions.len();
            match self.partition_counts.get_mut(&t.name) {
                Some(pc) if pc.count != n => {
                    pc.count = n;
                    pc.changes += 1;
                    pc.last_change_unix = Some(unix);
                    self.partition_counts_dirty = true;
                }
                Some(_) => {}
                None => {
                    self.partition_counts.insert(
                        t.name.clone(),
                        PartitionCount {
                            count: n,
                            changes: 0,
                            last_change_unix: None,
                        },
                    );
                    self.partition_counts_dirty = true;
                }
            }
        }
        let before = self.partition_counts.len();
        let names: HashSet<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        self.partition_counts.retain(|k, _| names.contains(k.as_str()));
        self.partition_counts_dirty |= self.partition_counts.len() != before;
    }

    /// Log start offsets of the shard's topics whose record has not been read yet, at most
    /// `limit`, if the refresh interval has passed. Empty partitions (log start = high
    /// watermark) have nothing to read.
    pub fn replay_reads_needed(
        &self,
        now: SystemTime,
        refresh: Duration,
        limit: usize,
        shard: Shard,
    ) -> Option<Vec<(TopicPartition, i64)>> {
        if self.replay_last_run.is_some_and(|t| age(now, t) < refresh) {
            return None;
        }
        let offsets = self.offsets.as_ref()?;
        let mut v: Vec<(TopicPartition, i64)> = offsets
            .value
            .iter()
            .filter(|(tp, _)| shard.owns(&tp.topic))
            .filter_map(|(tp, o)| match (o.log_start, o.high_watermark) {
                (Some(s), Some(hw)) if s < hw && self.log_start_ts.get(tp).map(|x| x.0) != Some(s) => {
                    Some((tp.clone(), s))
                }
                _ => None,
            })
            .collect();
        v.sort();
        v.truncate(limit);
        Some(v)
    }

    /// Folds the replay-window reads into the cache and evicts entries for log start offsets
    /// that have moved on.
    pub fn fold_replay_reads(&mut self, outcome: StageOutcome<Vec<RecordAt>>, asked: usize, at: SystemTime) -> bool {
        let mut ok = true;
        stage_done(&mut self.stages, Stage::ReplayWindow, &outcome, at, &mut ok);
        self.replay_reads_total += asked as u64;
        self.replay_last_run = Some(at);
        if let Ok(records) = outcome.result {
            for r in records {
                self.log_start_ts.insert(r.tp, (r.requested, r.timestamp_ms));
            }
        }
        if let Some(offsets) = &self.offsets {
            // Partitions that vanished, or became empty, have no oldest record.
            let current = &offsets.value;
            self.log_start_ts.retain(|tp, _| {
                current
                    .get(tp)
                    .is_some_and(|o| matches!((o.log_start, o.high_watermark), (Some(s), Some(hw)) if s < hw))
            });
        }
        ok
    }

    /// The (partition, offset) pairs whose record timestamp is needed for time lag and not
    /// cached, most lagging first, at most `limit`.
    pub fn reads_needed(&self, limit: usize) -> Vec<(TopicPartition, i64)> {
        let mut wanted: HashMap<(TopicPartition, i64), i64> = HashMap::new();
        for (tp, position, hw) in self.lag_positions() {
            if position < hw && !self.record_ts.contains_key(&(tp.clone(), position)) {
                let e = wanted.entry((tp, position)).or_insert(0);
                *e = (*e).max(hw - position);
            }
        }
        let mut v: Vec<((TopicPartition, i64), i64)> = wanted.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.into_iter().take(limit).map(|(k, _)| k).collect()
    }

    /// Every (partition, position, high watermark) a group's lag is measured from.
    fn lag_positions(&self) -> Vec<(TopicPartition, i64, i64)> {
        let (Some(groups), Some(committed), Some(offsets)) = (&self.groups, &self.group_offsets, &self.offsets) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in groups.value.iter() {
            for (tp, c) in group_partitions(g, committed.value.get(&g.listing.group)) {
                if let Some(o) = offsets.value.get(&tp) {
                    if let (Some(hw), Some(start)) = (o.high_watermark, o.log_start) {
                        let l = lag::offset_lag(
                            c,
                            PartitionOffsets {
                                log_start: start,
                                high_watermark: hw,
                            },
                        );
                        out.push((tp, l.position, hw));
                    }
                }
            }
        }
        out
    }

    /// Folds the record reads of a cycle into the timestamp cache.
    pub fn fold_records(&mut self, outcome: StageOutcome<Vec<RecordAt>>, asked: usize, at: SystemTime) -> bool {
        let mut ok = true;
        stage_done(&mut self.stages, Stage::TimeLag, &outcome, at, &mut ok);
        self.record_reads_total += asked as u64;
        if let Ok(records) = outcome.result {
            for r in records {
                self.record_ts.insert((r.tp, r.requested), r.timestamp_ms);
            }
        }
        ok
    }

    /// Builds the snapshot from memory, advances the group status histories when the lag
    /// inputs are fresh, and evicts cache entries no group needs any more.
    pub fn snapshot(
        &mut self,
        cfg: &ClusterConfig,
        policy: &Policy,
        at: SystemTime,
        duration: Duration,
        all_ok: bool,
    ) -> ClusterSnapshot {
        self.cycles_total += 1;
        if all_ok {
            self.last_success = Some(at);
        }
        let all_topics = self.metadata.as_ref().map(|md| self.topic_views(&md.value, at));
        let totals = all_topics.as_deref().map(ClusterTotals::of);
        let topics = all_topics.map(|mut t| {
            t.retain(|t| cfg.shard.owns(&t.name));
            Arc::new(t)
        });
        let compliance = topics.as_ref().map(|topics| {
            Arc::new(
                topics
                    .iter()
                    .map(|t| {
                        let facts = TopicFacts {
                            name: &t.name,
                            partitions: &t.partitions,
                            settings: t.settings.as_ref(),
                            replay_window: t.replay_window(),
                            last_partition_change: t.last_partition_change,
                        };
                        crate::policy::evaluate(policy, &facts, at)
                    })
                    .collect::<Vec<_>>(),
            )
        });
        let groups_fresh = [
            &self.group_offsets.as_ref().map(|d| d.collected_at),
            &self.offsets.as_ref().map(|d| d.collected_at),
        ]
        .iter()
        .all(|t| **t == Some(at));
        let groups = self
            .groups
            .clone()
            .map(|g| Arc::new(self.group_views(&g.value, cfg, at, groups_fresh)));

        // Keep only cache entries for positions still being measured.
        let live: HashSet<(TopicPartition, i64)> =
            self.lag_positions().into_iter().map(|(tp, pos, _)| (tp, pos)).collect();
        self.record_ts.retain(|k, _| live.contains(k));

        let mut data_at = BTreeMap::new();
        let mut mark = |stage: Stage, t: Option<SystemTime>| {
            if let Some(t) = t {
                data_at.insert(stage, t);
            }
        };
        mark(Stage::Cluster, self.cluster.as_ref().map(|d| d.collected_at));
        mark(Stage::Topics, self.metadata.as_ref().map(|d| d.collected_at));
        mark(Stage::TopicConfigs, self.configs.as_ref().map(|d| d.collected_at));
        mark(Stage::Offsets, self.offsets.as_ref().map(|d| d.collected_at));
        mark(Stage::Groups, self.groups.as_ref().map(|d| d.collected_at));
        mark(Stage::GroupOffsets, self.group_offsets.as_ref().map(|d| d.collected_at));
        mark(
            Stage::TimeLag,
            self.stages.get(&Stage::TimeLag).and_then(|s| s.last_success),
        );

        ClusterSnapshot {
            name: cfg.name.clone(),
            labels: cfg.labels.clone(),
            granularity: cfg.lag.granularity,
            up: all_ok,
            cycles_total: self.cycles_total,
            last_cycle_duration: Some(duration),
            last_success: self.last_success,
            stages: Stage::ALL
                .iter()
                .map(|s| (*s, self.stages.get(s).cloned().unwrap_or_default()))
                .collect(),
            data_at,
            record_reads_total: self.record_reads_total,
            replay_reads_total: self.replay_reads_total,
            record_cache_entries: self.record_ts.len(),
            partition_offset_errors: self.partition_offset_errors,
            cluster: self.cluster.as_ref().map(|d| Arc::clone(&d.value)),
            topics,
            groups,
            compliance,
            built_at: Some(at),
            shard: cfg.shard,
            totals,
        }
    }

    fn topic_views(&self, metadata: &[TopicMetadata], at: SystemTime) -> Vec<TopicView> {
        let configs = self.configs.as_ref().map(|c| &c.value);
        let offsets = self.offsets.as_ref().map(|o| &o.value);
        metadata
            .iter()
            .map(|t| {
                let settings = configs.and_then(|c| c.get(&t.name)).cloned();
                let min_isr = settings.as_ref().and_then(|s| s.min_insync_replicas);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let o = offsets
                            .and_then(|m| m.get(&TopicPartition::new(t.name.clone(), p.id)))
                            .copied()
                            .unwrap_or_default();
                        let tp = TopicPartition::new(t.name.clone(), p.id);
                        let replay_window = self.log_start_ts.get(&tp).map(|(_, ts)| record_age(at, *ts));
                        PartitionView {
                            id: p.id,
                            leader: p.leader,
                            preferred_leader: p.replicas.first().copied(),
                            replicas: p.replicas.len() as u32,
                            // Kafka keeps the leader in the ISR; a leaderless partition's ISR is
                            // reported as Kafka lists it.
                            isr: p.isr.len() as u32,
                            min_isr,
                            log_start: o.log_start,
                            high_watermark: o.high_watermark,
                            last_stable: o.last_stable,
                            replay_window,
                        }
                    })
                    .collect();
                let pc = self.partition_counts.get(&t.name);
                TopicView {
                    name: t.name.clone(),
                    partitions,
                    settings,
                    partition_changes: pc.map(|p| p.changes).unwrap_or(0),
                    last_partition_change: pc.and_then(|p| p.last_change()),
                }
            })
            .collect()
    }

    fn group_views(
        &mut self,
        groups: &[GroupInfo],
        cfg: &ClusterConfig,
        at: SystemTime,
        fresh: bool,
    ) -> Vec<GroupView> {
        let rules = StatusRules {
            window: cfg.lag.status_window,
            min_observations: cfg.lag.status_min_observations,
        };
        let committed_all = self.group_offsets.clone();
        let offsets = self.offsets.clone();
        let configs = self.configs.clone();
        let known_topics: HashSet<&str> = self
            .metadata
            .as_ref()
            .map(|m| m.value.iter().map(|t| t.name.as_str()).collect())
            .unwrap_or_default();
        let mut seen_history: HashSet<(String, TopicPartition)> = HashSet::new();

        let mut views = Vec::with_capacity(groups.len());
        for g in groups {
            let d = g.description.as_ref();
            let members = d.map(|d| d.members.clone()).unwrap_or_default();
            let committed = committed_all.as_ref().map(|c| c.value.get(&g.listing.group));
            let has_offsets = matches!(committed, Some(Some(Ok(_))));
            let parts = group_partitions(g, committed.flatten());

            let mut by_topic: BTreeMap<String, Vec<GroupPartitionView>> = BTreeMap::new();
            let mut statuses = Vec::new();
            for (tp, c) in parts {
                if !known_topics.contains(tp.topic.as_str()) {
                    continue; // filtered out or deleted topic
                }
                let o = offsets
                    .as_ref()
                    .and_then(|m| m.value.get(&tp))
                    .copied()
                    .unwrap_or_default();
                let lag = match (o.log_start, o.high_watermark) {
                    (Some(s), Some(hw)) => Some(lag::offset_lag(
                        c,
                        PartitionOffsets {
                            log_start: s,
                            high_watermark: hw,
                        },
                    )),
                    _ => None,
                };
                let time_lag = lag.and_then(|l| {
                    let hw = o.high_watermark?;
                    let ts = self.record_ts.get(&(tp.clone(), l.position)).copied();
                    lag::time_lag(at, l.position, hw, ts, self.hw_history.get(&tp))
                });
                if let Some(l) = lag {
                    let key = (g.listing.group.clone(), tp.clone());
                    let h = self.status_history.entry(key.clone()).or_default();
                    if fresh {
                        h.observe(at, c, l.lag, rules.window);
                    }
                    statuses.push(status::evaluate(h, at, !members.is_empty(), rules));
                    seen_history.insert(key);
                }
                by_topic.entry(tp.topic.clone()).or_default().push(GroupPartitionView {
                    partition: tp.partition,
                    committed: c,
                    assigned: members.iter().any(|m| m.assignment.contains(&tp)),
                    lag,
                    time_lag,
                });
            }
            let topics = by_topic
                .into_iter()
                .map(|(topic, mut partitions)| {
                    partitions.sort_by_key(|p| p.partition);
                    let retention_ms = configs
                        .as_ref()
                        .and_then(|c| c.value.get(&topic))
                        .and_then(|s| s.time_retention_ms());
                    GroupTopicView {
                        topic,
                        partitions,
                        retention_ms,
                    }
                })
                .collect();
            views.push(GroupView {
                name: g.listing.group.clone(),
                state: d.map(|d| d.state).unwrap_or(g.listing.state),
                group_type: match d.map(|d| d.group_type) {
                    Some(t) if t != GroupType::Unknown => t,
                    _ => g.listing.group_type,
                },
                assignor: d.map(|d| d.assignor.clone()).unwrap_or_default(),
                coordinator: d.and_then(|d| d.coordinator),
                members,
                status: has_offsets.then(|| status::worst(statuses)),
                topics,
            });
        }
        // Histories of vanished groups or partitions are forgotten, so a recreated group starts
        // clean. Only pruned on fresh data: a failed cycle must not erase history.
        if fresh {
            self.status_history.retain(|k, _| seen_history.contains(k));
        }
        views
    }
}

/// The partitions a group's lag is measured on: every committed partition, plus assigned
/// partitions without a commit (`None`).
fn group_partitions(
    g: &GroupInfo,
    committed: Option<&Result<Vec<(TopicPartition, i64)>, String>>,
) -> Vec<(TopicPartition, Option<i64>)> {
    let mut map: BTreeMap<TopicPartition, Option<i64>> = BTreeMap::new();
    if let Some(Ok(list)) = committed {
        for (tp, o) in list {
            if *o >= 0 {
                map.insert(tp.clone(), Some(*o));
            }
        }
    }
    if let Some(d) = &g.description {
        for m in &d.members {
            for tp in &m.assignment {
                map.entry(tp.clone()).or_insert(None);
            }
        }
    }
    map.into_iter().collect()
}

fn normalise_description(mut d: ClusterDescription) -> ClusterDescription {
    d.brokers.sort_by_key(|b| b.id);
    d.brokers.dedup_by_key(|b| b.id);
    d
}

/// Joins the three ListOffsets results per partition; partition-level errors leave that
/// offset unknown.
/// Partitions with a partition-level error in any of the three ListOffsets calls.
fn partitions_with_errors(raw: &OffsetsRaw) -> usize {
    raw.earliest
        .iter()
        .chain(&raw.latest)
        .chain(&raw.last_stable)
        .filter(|p| p.offset.is_err())
        .map(|p| &p.tp)
        .collect::<HashSet<_>>()
        .len()
}

fn merge_offsets(raw: OffsetsRaw) -> HashMap<TopicPartition, Offsets> {
    let mut map: HashMap<TopicPartition, Offsets> = HashMap::new();
    for p in raw.earliest {
        map.entry(p.tp).or_default().log_start = p.offset.ok().filter(|o| *o >= 0);
    }
    for p in raw.latest {
        map.entry(p.tp).or_default().high_watermark = p.offset.ok().filter(|o| *o >= 0);
    }
    for p in raw.last_stable {
        map.entry(p.tp).or_default().last_stable = p.offset.ok().filter(|o| *o >= 0);
    }
    map
}

#[cfg(test)]
mod tests;
