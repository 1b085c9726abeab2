//! Plain data types that the snapshot builds and both the policy and the collectors read.
//!
//! This module depends on nothing else in the crate, so the policy can evaluate a topic
//! without knowing how snapshots are folded, and the snapshot can hold the policy's verdicts
//! without a cycle between the two.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// A partition as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionView {
    pub id: i32,
    pub leader: Option<i32>,
    /// First replica of the assignment, the leader Kafka prefers.
    pub preferred_leader: Option<i32>,
    pub replicas: u32,
    pub isr: u32,
    /// `None` while the topic's `min.insync.replicas` is unknown.
    pub min_isr: Option<i32>,
    /// Size of the eligible leader replica set (KIP-966); `None` where the cluster does not
    /// keep one or the reader cannot see it.
    pub elr: Option<u32>,
    /// Size of the last known ELR (KIP-966); `None` as for `elr`.
    pub last_known_elr: Option<u32>,
    pub log_start: Option<i64>,
    pub high_watermark: Option<i64>,
    pub last_stable: Option<i64>,
    /// Age in seconds of the oldest retained record (the record at the log start offset), at
    /// the time of the cycle. `None` for an empty partition or before it was read.
    pub replay_window: Option<f64>,
}

impl PartitionView {
    pub fn offline(&self) -> bool {
        self.leader.is_none()
    }
    pub fn under_replicated(&self) -> bool {
        self.isr < self.replicas
    }
    pub fn under_min_isr(&self) -> Option<bool> {
        self.min_isr.map(|m| i64::from(self.isr) < i64::from(m))
    }
    /// Whether the in-sync and eligible replicas together are fewer than
    /// `min.insync.replicas`: then no clean leader election can restore acks=all writes
    /// (KIP-966). `None` while either is unknown.
    pub fn under_min_isr_with_elr(&self) -> Option<bool> {
        let (min, elr) = (self.min_isr?, self.elr?);
        Some(i64::from(self.isr) + i64::from(elr) < i64::from(min))
    }
    pub fn leader_is_preferred(&self) -> bool {
        self.leader.is_some() && self.leader == self.preferred_leader
    }
    /// Offsets between the last stable offset and the high watermark: records of transactions
    /// still open. Grows without bound for a stuck transaction.
    pub fn open_transaction_gap(&self) -> Option<i64> {
        Some((self.high_watermark? - self.last_stable?).max(0))
    }
}

/// The topic configuration keys [`TopicSettings`] reads: the native reader asks DescribeConfigs
/// for these only, so the broker builds, sends and the exporter decodes six entries per topic
/// instead of every topic config (about forty).
pub const TOPIC_CONFIG_KEYS: [&str; 6] = [
    "min.insync.replicas",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "compression.type",
    "unclean.leader.election.enable",
];

/// Topic settings the exporter uses, from DescribeConfigs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms`; -1 means unlimited.
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub cleanup_policy: Option<String>,
    pub compression_type: Option<String>,
    pub unclean_leader_election: Option<bool>,
}

impl TopicSettings {
    /// Picks the keys the exporter uses out of a full configuration.
    pub fn from_config(cfg: &BTreeMap<String, String>) -> Self {
        let [min_isr, retention_ms, retention_bytes, cleanup, compression, unclean] = TOPIC_CONFIG_KEYS;
        let get = |k: &str| cfg.get(k).map(|v| v.trim().to_string());
        Self {
            min_insync_replicas: get(min_isr).and_then(|v| v.parse().ok()),
            retention_ms: get(retention_ms).and_then(|v| v.parse().ok()),
            retention_bytes: get(retention_bytes).and_then(|v| v.parse().ok()),
            cleanup_policy: get(cleanup),
            compression_type: get(compression),
            unclean_leader_election: get(unclean).and_then(|v| v.parse().ok()),
        }
    }

    /// Retention in ms when records are deleted by time; `None` for compact-only or unlimited.
    pub fn time_retention_ms(&self) -> Option<i64> {
        let deletes = self
            .cleanup_policy
            .as_deref()
            .is_none_or(|p| p.split(',').any(|x| x.trim() == "delete"));
        self.retention_ms.filter(|r| deletes && *r > 0)
    }
}

/// A topic as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicView {
    pub name: String,
    pub partitions: Vec<PartitionView>,
    /// `None` while the configuration is unknown.
    pub settings: Option<TopicSettings>,
    /// Partition count changes observed by this process.
    pub partition_changes: u64,
    /// When the partition count last changed, as far as observed (see `docs/policy.md`).
    pub last_partition_change: Option<SystemTime>,
}

impl TopicView {
    /// The topic's replay window: the smallest over its non-empty partitions that were read.
    pub fn replay_window(&self) -> Option<f64> {
        self.partitions.iter().filter_map(|p| p.replay_window).reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(isr: u32, min_isr: Option<i32>, elr: Option<u32>) -> PartitionView {
        PartitionView {
            id: 0,
            leader: Some(1),
            preferred_leader: Some(1),
            replicas: 3,
            isr,
            min_isr,
            elr,
            last_known_elr: elr.map(|_| 0),
            log_start: None,
            high_watermark: None,
            last_stable: None,
            replay_window: None,
        }
    }

    #[test]
    fn eligible_replicas_count_towards_min_isr_only_with_elr() {
        // ISR 1 of min 2: under min ISR either way; one eligible replica makes up for it.
        assert_eq!(partition(1, Some(2), Some(1)).under_min_isr(), Some(true));
        assert_eq!(partition(1, Some(2), Some(1)).under_min_isr_with_elr(), Some(false));
        assert_eq!(partition(1, Some(2), Some(0)).under_min_isr_with_elr(), Some(true));
        assert_eq!(partition(2, Some(2), Some(0)).under_min_isr_with_elr(), Some(false));
        // Unknown ELR (no ELR in the cluster) or unknown min ISR: unknown.
        assert_eq!(partition(1, Some(2), None).under_min_isr_with_elr(), None);
        assert_eq!(partition(1, None, Some(1)).under_min_isr_with_elr(), None);
    }
}
