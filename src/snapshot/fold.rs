//! The poller's memory across cycles and the pure functions that fold one cycle's raw results
//! into it: per-stage outcomes, staleness, high watermark history, record timestamps read for
//! time lag and replay windows, and observed partition counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::ClusterConfig;
use crate::kafka::{
    ClusterDescription, GroupDescription, GroupListing, GroupOffsets, PartitionOffset, RecordAt, SourceError,
    TopicConfig, TopicMetadata, TopicPartition,
};
use crate::lag::{self, HwHistory, HwSample, PartitionOffsets};
use crate::shard::Shard;
use crate::status::PartitionHistory;

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
    pub status_history: HashMap<String, HashMap<TopicPartition, PartitionHistory>>,
    /// (partition, requested offset) → timestamp of the first record at or after it.
    pub record_ts: RecordTimestamps,
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
    /// The snapshot that ended the last cycle: publications within a cycle keep its views
    /// where they rebuild nothing.
    pub published: Option<std::sync::Arc<ClusterSnapshot>>,
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
pub(super) fn record_age(now: SystemTime, ts_ms: i64) -> f64 {
    let then = SystemTime::UNIX_EPOCH + Duration::from_millis(ts_ms.max(0) as u64);
    age(now, then).as_secs_f64()
}

impl Memory {
    /// Folds the request stages of a cycle into memory. Returns whether all of them succeeded
    /// (a skipped stage counts as failed: its data is not current).
    pub fn fold_io(&mut self, io: IoOutcome, cfg: &ClusterConfig) -> bool {
        let at = io.at;
        let mut ok = self.fold_cluster(io.cluster, at, cfg);
        ok &= self.fold_topics(io.topics, at, cfg);
        ok &= self.fold_configs(io.configs, at, cfg);
        ok &= self.fold_offsets(io.offsets, at, cfg);
        ok &= self.fold_groups(io.groups, at, cfg);
        ok &= self.fold_group_offsets(io.group_offsets, at, cfg);
        ok
    }

    /// Folds DescribeCluster; each `fold_*` returns whether its stage succeeded.
    pub fn fold_cluster(
        &mut self,
        outcome: StageOutcome<ClusterDescription>,
        at: SystemTime,
        cfg: &ClusterConfig,
    ) -> bool {
        let mut ok = true;
        stage_done(&mut self.stages, Stage::Cluster, &outcome, at, &mut ok);
        let value = outcome.result.ok().map(normalise_description);
        fresh(&mut self.cluster, value, at, cfg.max_staleness);
        ok
    }

    /// Folds Metadata: the selected topics and their partition counts.
    pub fn fold_topics(
        &mut self,
        outcome: StageOutcome<Vec<TopicMetadata>>,
        at: SystemTime,
        cfg: &ClusterConfig,
    ) -> bool {
        let mut ok = true;
        stage_done(&mut self.stages, Stage::Topics, &outcome, at, &mut ok);
        let topics = outcome.result.ok().map(|t| selected_topics(cfg, t));
        if let Some(t) = &topics {
            self.observe_partition_counts(t, at);
        }
        fresh(&mut self.metadata, topics, at, cfg.max_staleness);
        ok
    }

    /// Folds DescribeConfigs (`None`: skipped for want of a topic list).
    pub fn fold_configs(
        &mut self,
        outcome: Option<StageOutcome<Vec<TopicConfig>>>,
        at: SystemTime,
        cfg: &ClusterConfig,
    ) -> bool {
        let mut ok = true;
        let configs = optional_stage(&mut self.stages, Stage::TopicConfigs, outcome, at, &mut ok).map(|v| {
            v.into_iter()
                .map(|(name, cfg)| (name, TopicSettings::from_config(&cfg)))
                .collect::<HashMap<_, _>>()
        });
        fresh(&mut self.configs, configs, at, cfg.max_staleness);
        ok
    }

    /// Folds ListOffsets and adds the high watermarks to their history.
    pub fn fold_offsets(
        &mut self,
        outcome: Option<StageOutcome<OffsetsRaw>>,
        at: SystemTime,
        cfg: &ClusterConfig,
    ) -> bool {
        let mut ok = true;
        let raw = optional_stage(&mut self.stages, Stage::Offsets, outcome, at, &mut ok);
        if let Some(raw) = &raw {
            self.partition_offset_errors = partitions_with_errors(raw);
        }
        let offsets = raw.map(merge_offsets);
        if let Some(map) = &offsets {
            self.record_high_watermarks(map, at, cfg.lag.history_samples);
        }
        fresh(&mut self.offsets, offsets, at, cfg.max_staleness);
        ok
    }

    /// Folds ListConsumerGroups + DescribeConsumerGroups.
    pub fn fold_groups(
        &mut self,
        outcome: StageOutcome<(Vec<GroupListing>, Vec<GroupDescription>)>,
        at: SystemTime,
        cfg: &ClusterConfig,
    ) -> bool {
        let mut ok = true;
        stage_done(&mut self.stages, Stage::Groups, &outcome, at, &mut ok);
        let groups = outcome.result.ok().map(|(l, d)| selected_groups(cfg, l, d));
        fresh(&mut self.groups, groups, at, cfg.max_staleness);
        ok
    }

    /// Folds ListConsumerGroupOffsets (`None`: skipped for want of a group list).
    pub fn fold_group_offsets(
        &mut self,
        outcome: Option<StageOutcome<Vec<GroupOffsets>>>,
        at: SystemTime,
        cfg: &ClusterConfig,
    ) -> bool {
        let mut ok = true;
        let committed = optional_stage(&mut self.stages, Stage::GroupOffsets, outcome, at, &mut ok).map(|v| {
            v.into_iter()
                .map(|g| (g.group, g.offsets))
                .collect::<CommittedOffsets>()
        });
        fresh(&mut self.group_offsets, committed, at, cfg.max_staleness);
        ok
    }

    /// Adds this cycle's high watermarks to the history lag interpolation reads, and forgets
    /// partitions that are gone.
    fn record_high_watermarks(&mut self, offsets: &HashMap<TopicPartition, Offsets>, at: SystemTime, samples: usize) {
        for (tp, o) in offsets {
            if let Some(hw) = o.high_watermark {
                let sample = HwSample { at, high_watermark: hw };
                // A key is made only for a partition seen for the first time.
                match self.hw_history.get_mut(tp) {
                    Some(h) => h.push(sample, samples),
                    None => self.hw_history.entry(tp.clone()).or_default().push(sample, samples),
                }
            }
        }
        self.hw_history.retain(|tp, _| offsets.contains_key(tp));
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
        let positions = lag_positions(&self.groups, &self.group_offsets, &self.offsets);
        let mut wanted: HashMap<(&TopicPartition, i64), i64> = HashMap::new();
        for (tp, position, hw) in positions {
            if position < hw && !self.record_ts.contains(tp, position) {
                let e = wanted.entry((tp, position)).or_insert(0);
                *e = (*e).max(hw - position);
            }
        }
        let mut v: Vec<((&TopicPartition, i64), i64)> = wanted.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.into_iter()
            .take(limit)
            .map(|((tp, pos), _)| (tp.clone(), pos))
            .collect()
    }

    /// Folds the record reads of a cycle into the timestamp cache.
    pub fn fold_records(&mut self, outcome: StageOutcome<Vec<RecordAt>>, asked: usize, at: SystemTime) -> bool {
        let mut ok = true;
        stage_done(&mut self.stages, Stage::TimeLag, &outcome, at, &mut ok);
        self.record_reads_total += asked as u64;
        if let Ok(records) = outcome.result {
            for r in records {
                self.record_ts.insert(r.tp, r.requested, r.timestamp_ms);
            }
        }
        ok
    }
}

/// The result of a stage that is skipped when its input is missing; a skipped stage counts
/// as failed (its data is not current).
fn optional_stage<T>(
    stats: &mut BTreeMap<Stage, StageStats>,
    stage: Stage,
    outcome: Option<StageOutcome<T>>,
    at: SystemTime,
    ok: &mut bool,
) -> Option<T> {
    match outcome {
        Some(o) => {
            stage_done(stats, stage, &o, at, ok);
            o.result.ok()
        }
        None => {
            *ok = false;
            None
        }
    }
}

/// The topics the filter selects, sorted by name, each once.
fn selected_topics(cfg: &ClusterConfig, topics: Vec<TopicMetadata>) -> Vec<TopicMetadata> {
    let mut v: Vec<TopicMetadata> = topics.into_iter().filter(|t| cfg.selects_topic(&t.name)).collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.dedup_by(|a, b| a.name == b.name);
    v
}

/// The groups the filter selects, each with its description when there is one, sorted by
/// name, each once.
fn selected_groups(
    cfg: &ClusterConfig,
    listings: Vec<GroupListing>,
    descriptions: Vec<GroupDescription>,
) -> Vec<GroupInfo> {
    let mut by_id: HashMap<String, GroupDescription> = descriptions.into_iter().map(|d| (d.group.clone(), d)).collect();
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

/// Every (partition, position, high watermark) a group's lag is measured from. A function of
/// the fields it reads rather than of the whole memory, so that its borrowed answer can decide
/// what another field keeps.
pub(super) fn lag_positions<'a>(
    groups: &'a Option<Timestamped<Vec<GroupInfo>>>,
    committed: &'a Option<Timestamped<CommittedOffsets>>,
    offsets: &'a Option<Timestamped<HashMap<TopicPartition, Offsets>>>,
) -> Vec<(&'a TopicPartition, i64, i64)> {
    let (Some(groups), Some(committed), Some(offsets)) = (groups, committed, offsets) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for g in groups.value.iter() {
        for (tp, c) in group_partitions(g, committed.value.get(&g.listing.group)) {
            if let Some(o) = offsets.value.get(tp) {
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

/// The partitions a group's lag is measured on: every committed partition, plus assigned
/// partitions without a commit (`None`).
pub(super) fn group_partitions<'a>(
    g: &'a GroupInfo,
    committed: Option<&'a Result<Vec<(TopicPartition, i64)>, String>>,
) -> Vec<(&'a TopicPartition, Option<i64>)> {
    // Borrowed: this runs for every group partition several times a cycle.
    let mut map: BTreeMap<&TopicPartition, Option<i64>> = BTreeMap::new();
    if let Some(Ok(list)) = committed {
        for (tp, o) in list {
            if *o >= 0 {
                map.insert(tp, Some(*o));
            }
        }
    }
    if let Some(d) = &g.description {
        for m in &d.members {
            for tp in &m.assignment {
                map.entry(tp).or_insert(None);
            }
        }
    }
    map.into_iter().collect()
}
