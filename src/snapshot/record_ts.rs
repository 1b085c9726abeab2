//! The record timestamp cache behind time lag: the timestamp of the record at a position, per
//! partition. Keyed by partition first so that a lookup borrows the partition instead of
//! building a key (it runs for every group partition several times a cycle).

use std::collections::{BTreeMap, HashMap};

use crate::kafka::TopicPartition;

#[derive(Debug, Default)]
pub struct RecordTimestamps(HashMap<TopicPartition, BTreeMap<i64, i64>>);

impl RecordTimestamps {
    /// The timestamp (ms) of the record read at `position`.
    pub fn get(&self, tp: &TopicPartition, position: i64) -> Option<i64> {
        self.0.get(tp)?.get(&position).copied()
    }

    pub fn contains(&self, tp: &TopicPartition, position: i64) -> bool {
        self.get(tp, position).is_some()
    }

    pub fn insert(&mut self, tp: TopicPartition, position: i64, timestamp_ms: i64) {
        self.0.entry(tp).or_default().insert(position, timestamp_ms);
    }

    /// Keeps the positions `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&TopicPartition, i64) -> bool) {
        self.0.retain(|tp, positions| {
            positions.retain(|position, _| keep(tp, *position));
            !positions.is_empty()
        });
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Cached positions, over all partitions.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_kept_per_partition_and_pruned_with_their_partition() {
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let mut c = RecordTimestamps::default();
        c.insert(a.clone(), 5, 1_000);
        c.insert(a.clone(), 7, 2_000);
        c.insert(b.clone(), 5, 3_000);
        assert_eq!(
            (c.get(&a, 5), c.get(&a, 7), c.get(&b, 5)),
            (Some(1_000), Some(2_000), Some(3_000))
        );
        assert!(!c.contains(&a, 6) && !c.contains(&TopicPartition::new("u", 0), 5));
        assert_eq!(c.len(), 3);
        c.retain(|tp, position| tp == &a && position == 7);
        assert_eq!((c.get(&a, 5), c.get(&a, 7), c.get(&b, 5)), (None, Some(2_000), None));
        assert_eq!(c.len(), 1);
        c.retain(|_, _| false);
        assert!(c.is_empty());
    }
}
