//! Building the immutable snapshot from the poller's memory: topic and group views, lag and
//! status, and the topics' compliance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::ClusterConfig;
use crate::kafka::{GroupType, TopicMetadata, TopicPartition};
use crate::lag::{self, PartitionOffsets};
use crate::policy::{Policy, TopicFacts};
use crate::status::{self, PartitionHistory, StatusRules};

use super::fold::*;

/// How a publication computes group lag.
#[derive(Debug, Clone, Default)]
pub struct GroupLag {
    /// Advance the status histories: once per cycle, when offsets and committed offsets are
    /// both this cycle's.
    pub observe: bool,
    /// The previous publication's groups, while this cycle's record reads are pending: a
    /// position without a cached record timestamp keeps the time lag served before rather than
    /// changing method or going absent until the read lands.
    pub carry: Option<Arc<Vec<GroupView>>>,
}

/// What a publication in the middle of a cycle rebuilds; the rest is shared with the previous
/// publication.
#[derive(Debug, Clone, Default)]
pub struct Rebuild {
    /// Topic views, totals and compliance.
    pub topics: bool,
    /// Group views (lag, status), or `None` to keep the previous ones.
    pub groups: Option<GroupLag>,
}

/// The topic-derived parts of a snapshot.
type TopicParts = (
    Option<Arc<Vec<TopicView>>>,
    Option<Arc<Vec<TopicCompliance>>>,
    Option<ClusterTotals>,
);

impl Memory {
    /// Builds the snapshot that ends a cycle from memory, advances the group status histories
    /// when the lag inputs were collected at `at`, and evicts cache entries no group needs any
    /// more.
    pub fn snapshot(
        &mut self,
        cfg: &ClusterConfig,
        policy: &Policy,
        at: SystemTime,
        duration: Duration,
        all_ok: bool,
    ) -> ClusterSnapshot {
        let observe = [
            &self.group_offsets.as_ref().map(|d| d.collected_at),
            &self.offsets.as_ref().map(|d| d.collected_at),
        ]
        .iter()
        .all(|t| **t == Some(at));
        let lag = GroupLag { observe, carry: None };
        self.finish_cycle(cfg, policy, at, duration, all_ok, lag)
    }

    /// The snapshot that ends a cycle: every view rebuilt, the cycle counted.
    pub fn finish_cycle(
        &mut self,
        cfg: &ClusterConfig,
        policy: &Policy,
        at: SystemTime,
        duration: Duration,
        all_ok: bool,
        lag: GroupLag,
    ) -> ClusterSnapshot {
        self.cycles_total += 1;
        if all_ok {
            self.last_success = Some(at);
        }
        let topic_parts = self.topic_parts(cfg, policy, at);
        let groups = self
            .groups
            .clone()
            .map(|g| Arc::new(self.group_views(&g.value, cfg, at, &lag)));
        // Keep only cache entries for positions still being measured.
        let live: HashSet<(&TopicPartition, i64)> = lag_positions(&self.groups, &self.group_offsets, &self.offsets)
            .into_iter()
            .map(|(tp, pos, _)| (tp, pos))
            .collect();
        self.record_ts.retain(|tp, pos| live.contains(&(tp, pos)));
        let mut s = self.assemble(cfg, topic_parts, groups, Some(at));
        s.up = all_ok;
        s.last_cycle_duration = Some(duration);
        s
    }

    /// A snapshot within a cycle: what `rebuild` names is rebuilt from memory, the other views
    /// and the cycle's health (`up`, cycle count and duration) are the previous publication's;
    /// stage statistics and data ages are always current.
    pub fn publish(
        &mut self,
        prev: &ClusterSnapshot,
        cfg: &ClusterConfig,
        policy: &Policy,
        at: SystemTime,
        rebuild: Rebuild,
    ) -> ClusterSnapshot {
        let (topic_parts, built_at) = if rebuild.topics {
            (self.topic_parts(cfg, policy, at), Some(at))
        } else {
            (
                (prev.topics.clone(), prev.compliance.clone(), prev.totals.clone()),
                prev.built_at,
            )
        };
        let groups = match &rebuild.groups {
            Some(lag) => self
                .groups
                .clone()
                .map(|g| Arc::new(self.group_views(&g.value, cfg, at, lag))),
            None => prev.groups.clone(),
        };
        let mut s = self.assemble(cfg, topic_parts, groups, built_at);
        s.up = prev.up;
        s.last_cycle_duration = prev.last_cycle_duration;
        s
    }

    fn topic_parts(&self, cfg: &ClusterConfig, policy: &Policy, at: SystemTime) -> TopicParts {
        let all_topics = self.metadata.as_ref().map(|md| self.topic_views(&md.value, at));
        let totals = all_topics.as_deref().map(ClusterTotals::of);
        let topics = all_topics.map(|mut t| {
            t.retain(|t| cfg.shard.owns(&t.name));
            Arc::new(t)
        });
        let compliance = topics.as_ref().map(|topics| Arc::new(compliance(policy, topics, at)));
        (topics, compliance, totals)
    }

    /// A snapshot of the given views with the current stage statistics and data ages.
    fn assemble(
        &self,
        cfg: &ClusterConfig,
        (topics, compliance, totals): TopicParts,
        groups: Option<Arc<Vec<GroupView>>>,
        built_at: Option<SystemTime>,
    ) -> ClusterSnapshot {
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
            up: false,
            cycles_total: self.cycles_total,
            last_cycle_duration: None,
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
            built_at,
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
                            elr: p.elr.as_ref().map(|v| v.len() as u32),
                            last_known_elr: p.last_known_elr.as_ref().map(|v| v.len() as u32),
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

    /// Offset lag and time lag of a committed (or, without a commit, assigned) position.
    fn partition_lag(
        &self,
        tp: &TopicPartition,
        committed: Option<i64>,
        at: SystemTime,
    ) -> (Option<OffsetLag>, Option<(f64, TimeLagMethod)>) {
        let o = self
            .offsets
            .as_ref()
            .and_then(|m| m.value.get(tp))
            .copied()
            .unwrap_or_default();
        let lag = match (o.log_start, o.high_watermark) {
            (Some(s), Some(hw)) => Some(lag::offset_lag(
                committed,
                PartitionOffsets {
                    log_start: s,
                    high_watermark: hw,
                },
            )),
            _ => None,
        };
        let time_lag = lag.and_then(|l| {
            let hw = o.high_watermark?;
            let ts = self.record_ts.get(tp, l.position);
            lag::time_lag(at, l.position, hw, ts, self.hw_history.get(tp))
        });
        (lag, time_lag)
    }

    /// A group's partitions by topic, sorted, with each topic's time-based retention.
    fn group_topics(&self, by_topic: BTreeMap<String, Vec<GroupPartitionView>>) -> Vec<GroupTopicView> {
        by_topic
            .into_iter()
            .map(|(topic, mut partitions)| {
                partitions.sort_by_key(|p| p.partition);
                let retention_ms = self
                    .configs
                    .as_ref()
                    .and_then(|c| c.value.get(&topic))
                    .and_then(|s| s.time_retention_ms());
                GroupTopicView {
                    topic,
                    partitions,
                    retention_ms,
                }
            })
            .collect()
    }

    fn group_views(
        &mut self,
        groups: &[GroupInfo],
        cfg: &ClusterConfig,
        at: SystemTime,
        lag: &GroupLag,
    ) -> Vec<GroupView> {
        let fresh = lag.observe;
        let carried = carried_time_lags(lag.carry.as_deref());
        let rules = StatusRules {
            window: cfg.lag.status_window,
            min_observations: cfg.lag.status_min_observations,
        };
        let committed_all = self.group_offsets.clone();
        let known_topics: HashSet<&str> = self
            .metadata
            .as_ref()
            .map(|m| m.value.iter().map(|t| t.name.as_str()).collect())
            .unwrap_or_default();
        // Borrowed keys, and owned ones made only for a new history: this runs for every
        // group partition of every cycle.
        let mut seen_history: HashSet<(&str, &TopicPartition)> = HashSet::new();

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
                let (lag, mut time_lag) = self.partition_lag(tp, c, at);
                let unread = lag.filter(|l| l.lag > 0 && !self.record_ts.contains(tp, l.position));
                if unread.is_some() {
                    let key = (g.listing.group.as_str(), tp.topic.as_str(), tp.partition);
                    if let Some(prev) = carried.get(&key) {
                        time_lag = Some(*prev);
                    }
                }
                if let Some(l) = lag {
                    let group = g.listing.group.as_str();
                    if !self.status_history.contains_key(group) {
                        self.status_history.insert(group.to_string(), HashMap::new());
                    }
                    let histories = self.status_history.get_mut(group).expect("inserted above");
                    if !histories.contains_key(tp) {
                        histories.insert(tp.clone(), PartitionHistory::default());
                    }
                    let h = histories.get_mut(tp).expect("inserted above");
                    if fresh {
                        h.observe(at, c, l.lag, rules.window);
                    }
                    statuses.push(status::evaluate(h, at, !members.is_empty(), rules));
                    seen_history.insert((group, tp));
                }
                let view = GroupPartitionView {
                    partition: tp.partition,
                    committed: c,
                    assigned: members.iter().any(|m| m.assignment.contains(tp)),
                    lag,
                    time_lag,
                };
                match by_topic.get_mut(tp.topic.as_str()) {
                    Some(v) => v.push(view),
                    None => {
                        by_topic.insert(tp.topic.clone(), vec![view]);
                    }
                }
            }
            let topics = self.group_topics(by_topic);
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
            self.status_history.retain(|group, histories| {
                histories.retain(|tp, _| seen_history.contains(&(group.as_str(), tp)));
                !histories.is_empty()
            });
        }
        views
    }
}

/// Time lag served per (group, topic, partition) in `groups`.
fn carried_time_lags(groups: Option<&Vec<GroupView>>) -> HashMap<(&str, &str, i32), (f64, TimeLagMethod)> {
    let mut out = HashMap::new();
    for g in groups.into_iter().flatten() {
        for t in &g.topics {
            for p in &t.partitions {
                if let Some(tl) = p.time_lag {
                    out.insert((g.name.as_str(), t.topic.as_str(), p.partition), tl);
                }
            }
        }
    }
    out
}

/// Each topic's compliance with the policy at `at`.
fn compliance(policy: &Policy, topics: &[TopicView], at: SystemTime) -> Vec<TopicCompliance> {
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
        .collect()
}
