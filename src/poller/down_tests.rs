//! A cycle against an unreachable cluster whose every request waits out most of its timeout,
//! which is longer than the interval: the cycle still ends after its own stages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::tests::{cfg, Fake};
use super::*;
use crate::kafka::{
    ClusterDescription, GroupDescription, GroupListing, GroupOffsets, OffsetSpec, PartitionOffset, RecordAt,
    SourceError, TopicConfig, TopicMetadata,
};
use crate::policy::Policy;

/// [`Fake`] whose every request takes `delay` while it is down.
struct Unreachable {
    inner: Fake,
    delay: Duration,
    describe_cluster: AtomicUsize,
    metadata: AtomicUsize,
}

impl Unreachable {
    fn wait(&self) {
        if self.inner.down.load(Ordering::SeqCst) {
            std::thread::sleep(self.delay);
        }
    }
}

impl KafkaSource for Unreachable {
    fn describe_cluster(&self, t: Duration) -> Result<ClusterDescription, SourceError> {
        self.describe_cluster.fetch_add(1, Ordering::SeqCst);
        self.wait();
        self.inner.describe_cluster(t)
    }
    fn topic_metadata(&self, t: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        self.metadata.fetch_add(1, Ordering::SeqCst);
        self.wait();
        self.inner.topic_metadata(t)
    }
    fn topic_configs(&self, topics: &[String], t: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        self.wait();
        self.inner.topic_configs(topics, t)
    }
    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        t: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        self.wait();
        self.inner.list_offsets(partitions, spec, t)
    }
    fn list_groups(&self, t: Duration) -> Result<Vec<GroupListing>, SourceError> {
        self.wait();
        self.inner.list_groups(t)
    }
    fn describe_groups(&self, groups: &[String], t: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        self.wait();
        self.inner.describe_groups(groups, t)
    }
    fn group_offsets(&self, groups: &[String], n: usize, t: Duration) -> Result<Vec<GroupOffsets>, SourceError> {
        self.wait();
        self.inner.group_offsets(groups, n, t)
    }
    fn records_at(&self, requests: &[(TopicPartition, i64)], t: Duration) -> Result<Vec<RecordAt>, SourceError> {
        self.wait();
        self.inner.records_at(requests, t)
    }
}

#[test]
fn a_cycle_against_an_unreachable_cluster_ends_after_its_own_stages() {
    let source = Unreachable {
        inner: Fake::default(),
        delay: Duration::from_millis(120),
        describe_cluster: AtomicUsize::new(0),
        metadata: AtomicUsize::new(0),
    };
    let mut cfg = cfg();
    cfg.interval = Duration::from_millis(50);
    let policy = Policy::builtin();
    let mut memory = Memory::default();
    let first = run_cycle(&source, &cfg, &policy, &mut memory, &mut |_| {});
    assert!(first.up);
    assert_eq!(source.inner.reads.load(Ordering::SeqCst), 2);
    // The next cycle would read again (no cached timestamps, the replay window due) if the
    // cluster answered.
    memory.record_ts.clear();
    memory.replay_last_run = None;
    source.inner.down.store(true, Ordering::SeqCst);
    let (c0, m0) = (
        source.describe_cluster.load(Ordering::SeqCst),
        source.metadata.load(Ordering::SeqCst),
    );
    let started = Instant::now();
    let s = run_cycle(&source, &cfg, &policy, &mut memory, &mut |_| {});
    // Metadata then ListOffsets of the last topic list: two requests in a row, about 240 ms.
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert!(!s.up);
    assert_eq!(s.cycles_total, 2);
    // A failed DescribeCluster or Metadata is not asked again within the cycle: each stage
    // fails once per cycle.
    assert_eq!(source.describe_cluster.load(Ordering::SeqCst) - c0, 1);
    assert_eq!(source.metadata.load(Ordering::SeqCst) - m0, 1);
    assert_eq!(s.stages[&Stage::Cluster].errors_total, 1);
    assert_eq!(s.stages[&Stage::Topics].errors_total, 1);
    // Nothing answered: the record reads are skipped rather than waited out.
    assert_eq!(source.inner.reads.load(Ordering::SeqCst), 2);
    assert_eq!(s.stages[&Stage::TimeLag].errors_total, 0);
    assert_eq!(
        s.stages[&Stage::TimeLag].last_success,
        first.stages[&Stage::TimeLag].last_success
    );
}
