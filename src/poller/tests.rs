use super::*;
use crate::config::Config;
use crate::kafka::{
    Broker, ClusterDescription, GroupDescription, GroupListing, GroupMember, GroupOffsets, GroupState, GroupType,
    OffsetSpec, PartitionMetadata, PartitionOffset, RecordAt, SourceError, TopicConfig, TopicMetadata,
};
use crate::policy::Policy;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A scripted cluster: one topic `t` with two partitions (p1 leaderless), one group `g`
/// with a member; can be switched to fail every call.
#[derive(Default)]
pub(super) struct Fake {
    pub(super) down: AtomicBool,
    offset_requests: std::sync::Mutex<Vec<usize>>,
    pub(super) reads: AtomicUsize,
}

fn down(op: &'static str) -> SourceError {
    SourceError::new(op, "all brokers down")
}

impl KafkaSource for Fake {
    fn describe_cluster(&self, _: Duration) -> Result<ClusterDescription, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down("DescribeCluster"));
        }
        Ok(ClusterDescription {
            cluster_id: Some("x".into()),
            controller_id: Some(1),
            brokers: vec![Broker {
                id: 1,
                host: "h".into(),
                port: 1,
                rack: Some("r1".into()),
            }],
        })
    }
    fn topic_metadata(&self, _: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down("Metadata"));
        }
        Ok(vec![TopicMetadata {
            name: "t".into(),
            partitions: vec![
                PartitionMetadata {
                    id: 0,
                    leader: Some(1),
                    replicas: vec![1],
                    isr: vec![1],
                    elr: None,
                    last_known_elr: None,
                },
                PartitionMetadata {
                    id: 1,
                    leader: None,
                    replicas: vec![2],
                    isr: vec![],
                    elr: None,
                    last_known_elr: None,
                },
            ],
        }])
    }
    fn topic_configs(&self, topics: &[String], _: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down("DescribeConfigs"));
        }
        Ok(topics.iter().map(|t| (t.clone(), BTreeMap::new())).collect())
    }
    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        _: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down("ListOffsets"));
        }
        self.offset_requests.lock().unwrap().push(partitions.len());
        let o = if spec == OffsetSpec::Earliest { 0 } else { 10 };
        Ok(partitions
            .iter()
            .map(|tp| PartitionOffset {
                tp: tp.clone(),
                offset: Ok(o),
            })
            .collect())
    }
    fn list_groups(&self, _: Duration) -> Result<Vec<GroupListing>, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down("ListConsumerGroups"));
        }
        Ok(vec![GroupListing {
            group: "g".into(),
            state: GroupState::Stable,
            group_type: GroupType::Consumer,
            is_simple: false,
        }])
    }
    fn describe_groups(&self, groups: &[String], _: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        Ok(groups
            .iter()
            .map(|g| GroupDescription {
                group: g.clone(),
                state: GroupState::Stable,
                group_type: GroupType::Consumer,
                assignor: "uniform".into(),
                coordinator: Some(1),
                members: vec![GroupMember {
                    member_id: "m".into(),
                    client_id: "c".into(),
                    host: "h".into(),
                    assignment: vec![TopicPartition::new("t", 0)],
                }],
                error: None,
            })
            .collect())
    }
    fn group_offsets(&self, groups: &[String], _: usize, _: Duration) -> Result<Vec<GroupOffsets>, SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down("ListConsumerGroupOffsets"));
        }
        Ok(groups
            .iter()
            .map(|g| GroupOffsets {
                group: g.clone(),
                offsets: Ok(vec![(TopicPartition::new("t", 0), 4)]),
            })
            .collect())
    }
    fn records_at(&self, requests: &[(TopicPartition, i64)], _: Duration) -> Result<Vec<RecordAt>, SourceError> {
        self.reads.fetch_add(requests.len(), Ordering::SeqCst);
        Ok(requests
            .iter()
            .map(|(tp, o)| RecordAt {
                tp: tp.clone(),
                requested: *o,
                offset: *o,
                timestamp_ms: 1_000,
            })
            .collect())
    }
}

pub(super) fn cfg() -> ClusterConfig {
    Config::parse(
        Path::new("t.yml"),
        "clusters:\n  - {name: c, bootstrap_servers: ['k:1']}\n",
    )
    .unwrap()
    .clusters
    .remove(0)
}

#[test]
fn full_cycle_against_a_source() {
    let fake = Fake::default();
    let mut memory = Memory::default();
    let s = run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    assert!(s.up && s.ready(), "{:?}", s.stages);
    // Only the partition with a leader is asked for, once per offset spec.
    assert_eq!(*fake.offset_requests.lock().unwrap(), vec![1, 1, 1]);
    let g = &s.groups.as_ref().unwrap()[0];
    assert_eq!(g.group_type, GroupType::Consumer);
    let p = &g.topics[0].partitions[0];
    assert_eq!(p.lag.unwrap().lag, 6);
    assert_eq!(p.time_lag.unwrap().1, crate::lag::TimeLagMethod::Record);
    // One read at the committed offset (time lag), one at the log start (replay window).
    assert_eq!(fake.reads.load(Ordering::SeqCst), 2);
    // The leaderless partition is exported with unknown offsets.
    let t = &s.topics.as_ref().unwrap()[0];
    assert!(t.partitions[1].offline() && t.partitions[1].high_watermark.is_none());

    // Second cycle: both reads are cached.
    let s2 = run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    assert_eq!(fake.reads.load(Ordering::SeqCst), 2);
    assert_eq!((s2.record_reads_total, s2.replay_reads_total), (1, 1));
    let c = &s2.compliance.as_ref().unwrap()[0];
    assert_eq!(c.class, "unmatched", "a topic named `t` follows no convention");
}

#[test]
fn cluster_down_keeps_serving_last_data_and_counts_errors() {
    let fake = Fake::default();
    let mut memory = Memory::default();
    run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    fake.down.store(true, Ordering::SeqCst);
    let s = run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    assert!(!s.up);
    for stage in [
        Stage::Cluster,
        Stage::Topics,
        Stage::TopicConfigs,
        Stage::Offsets,
        Stage::Groups,
        Stage::GroupOffsets,
    ] {
        assert_eq!(s.stages[&stage].errors_total, 1, "{stage:?}");
    }
    assert!(
        s.topics.is_some() && s.groups.is_some(),
        "last data served within max_staleness"
    );
    assert_eq!(s.cycles_total, 2);
}

/// An estate of one-partition topics and groups each consuming one topic, recording which
/// names every request asked about.
struct Estate {
    topics: Vec<&'static str>,
    /// (group, topic it consumes)
    groups: Vec<(&'static str, &'static str)>,
    configs_asked: std::sync::Mutex<Vec<Vec<String>>>,
    offsets_asked: std::sync::Mutex<Vec<String>>,
    groups_described: std::sync::Mutex<Vec<String>>,
    groups_fetched: std::sync::Mutex<Vec<String>>,
    reads: std::sync::Mutex<Vec<String>>,
}

impl Estate {
    fn new(topics: Vec<&'static str>, groups: Vec<(&'static str, &'static str)>) -> Self {
        Self {
            topics,
            groups,
            configs_asked: Default::default(),
            offsets_asked: Default::default(),
            groups_described: Default::default(),
            groups_fetched: Default::default(),
            reads: Default::default(),
        }
    }
    fn consumed_by(&self, group: &str) -> &'static str {
        self.groups.iter().find(|(g, _)| *g == group).unwrap().1
    }
}

impl KafkaSource for Estate {
    fn describe_cluster(&self, _: Duration) -> Result<ClusterDescription, SourceError> {
        Ok(ClusterDescription {
            cluster_id: Some("x".into()),
            controller_id: Some(1),
            brokers: vec![],
        })
    }
    fn topic_metadata(&self, _: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        Ok(self
            .topics
            .iter()
            .map(|t| TopicMetadata {
                name: t.to_string(),
                partitions: vec![PartitionMetadata {
                    id: 0,
                    leader: Some(1),
                    replicas: vec![1],
                    isr: vec![1],
                    elr: None,
                    last_known_elr: None,
                }],
            })
            .collect())
    }
    fn topic_configs(&self, topics: &[String], _: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        self.configs_asked.lock().unwrap().push(topics.to_vec());
        let retention = BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]);
        Ok(topics.iter().map(|t| (t.clone(), retention.clone())).collect())
    }
    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        _: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        if spec == OffsetSpec::Latest {
            self.offsets_asked
                .lock()
                .unwrap()
                .extend(partitions.iter().map(|tp| tp.topic.clone()));
        }
        let o = if spec == OffsetSpec::Earliest { 0 } else { 10 };
        Ok(partitions
            .iter()
            .map(|tp| PartitionOffset {
                tp: tp.clone(),
                offset: Ok(o),
            })
            .collect())
    }
    fn list_groups(&self, _: Duration) -> Result<Vec<GroupListing>, SourceError> {
        Ok(self
            .groups
            .iter()
            .map(|(g, _)| GroupListing {
                group: g.to_string(),
                state: GroupState::Empty,
                group_type: GroupType::Consumer,
                is_simple: false,
            })
            .collect())
    }
    fn describe_groups(&self, groups: &[String], _: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        self.groups_described.lock().unwrap().extend(groups.iter().cloned());
        Ok(groups
            .iter()
            .map(|g| GroupDescription {
                group: g.clone(),
                state: GroupState::Empty,
                group_type: GroupType::Consumer,
                assignor: String::new(),
                coordinator: Some(1),
                members: vec![],
                error: None,
            })
            .collect())
    }
    fn group_offsets(&self, groups: &[String], _: usize, _: Duration) -> Result<Vec<GroupOffsets>, SourceError> {
        self.groups_fetched.lock().unwrap().extend(groups.iter().cloned());
        Ok(groups
            .iter()
            .map(|g| GroupOffsets {
                group: g.clone(),
                offsets: Ok(vec![(TopicPartition::new(self.consumed_by(g), 0), 4)]),
            })
            .collect())
    }
    fn records_at(&self, requests: &[(TopicPartition, i64)], _: Duration) -> Result<Vec<RecordAt>, SourceError> {
        self.reads
            .lock()
            .unwrap()
            .extend(requests.iter().map(|(tp, o)| format!("{}@{o}", tp.topic)));
        Ok(requests
            .iter()
            .map(|(tp, o)| RecordAt {
                tp: tp.clone(),
                requested: *o,
                offset: *o,
                timestamp_ms: 1_000,
            })
            .collect())
    }
}

#[test]
fn a_shard_asks_only_about_its_groups_and_the_topics_they_need() {
    use crate::shard::{owner, Shard};
    // kse-t3 and kse-g2 belong to shard 0 of 2, kse-t0 and kse-g0 to shard 1; each group
    // consumes the other shard's topic.
    assert_eq!(
        [
            owner("kse-t3", 2),
            owner("kse-g2", 2),
            owner("kse-t0", 2),
            owner("kse-g0", 2)
        ],
        [0, 0, 1, 1]
    );
    let estate = Estate::new(
        vec!["kse-t0", "kse-t3"],
        vec![("kse-g0", "kse-t3"), ("kse-g2", "kse-t0")],
    );
    let mut cfg = cfg();
    cfg.shard = Shard::new(0, 2).unwrap();
    let mut memory = Memory::default();
    let s = run_cycle(&estate, &cfg, &Policy::builtin(), &mut memory, &mut |_| {});
    assert!(s.up, "{:?}", s.stages);

    assert_eq!(*estate.groups_described.lock().unwrap(), vec!["kse-g2"]);
    assert_eq!(*estate.groups_fetched.lock().unwrap(), vec!["kse-g2"]);
    // The first cycle learns what kse-g2 consumes only from its offsets: a second round
    // asks for the other shard's topic.
    assert_eq!(
        *estate.configs_asked.lock().unwrap(),
        vec![vec!["kse-t3".to_string()], vec!["kse-t0".to_string()]]
    );
    let topics: Vec<&str> = s.topics.as_ref().unwrap().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(topics, vec!["kse-t3"]);
    assert_eq!(s.compliance.as_ref().unwrap().len(), 1);
    let totals = s.totals.clone().unwrap();
    assert_eq!((totals.topics, totals.partitions), (2, 2));
    let groups = s.groups.as_ref().unwrap();
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!((g.name.as_str(), g.topics[0].topic.as_str()), ("kse-g2", "kse-t0"));
    assert_eq!(g.topics[0].partitions[0].lag.unwrap().lag, 6);
    assert_eq!(
        g.topics[0].retention_ms,
        Some(60_000),
        "retention of the consumed topic is known"
    );
    // Time lag reads the consumed topic; the replay window only this shard's topic.
    assert_eq!(*estate.reads.lock().unwrap(), vec!["kse-t0@4", "kse-t3@0"]);

    // From the second cycle on, one round covers both.
    estate.configs_asked.lock().unwrap().clear();
    estate.offsets_asked.lock().unwrap().clear();
    run_cycle(&estate, &cfg, &Policy::builtin(), &mut memory, &mut |_| {});
    let asked = estate.configs_asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    let mut one: Vec<String> = asked[0].clone();
    one.sort();
    assert_eq!(one, vec!["kse-t0", "kse-t3"]);
    let mut offsets = estate.offsets_asked.lock().unwrap().clone();
    offsets.sort();
    assert_eq!(offsets, vec!["kse-t0", "kse-t3"]);
}

#[test]
fn the_unsharded_cycle_asks_once_for_everything() {
    let estate = Estate::new(
        vec!["kse-t0", "kse-t3"],
        vec![("kse-g0", "kse-t3"), ("kse-g2", "kse-t0")],
    );
    let mut memory = Memory::default();
    let s = run_cycle(&estate, &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    assert_eq!(estate.configs_asked.lock().unwrap().len(), 1);
    let mut described = estate.groups_described.lock().unwrap().clone();
    described.sort();
    assert_eq!(described, vec!["kse-g0", "kse-g2"]);
    assert_eq!(s.topics.as_ref().unwrap().len(), 2);
    assert_eq!(s.totals.as_ref().unwrap().partitions, 2);
}

/// A gate a stage waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.cv.notify_all();
    }
}

/// [`Fake`] with ListOffsets and record reads held at gates (a broker that does not answer),
/// and a settable committed offset for group `g`.
struct Slow {
    inner: Fake,
    offsets: Gate,
    reads: Gate,
    committed: std::sync::atomic::AtomicI64,
}

impl Slow {
    fn new() -> Self {
        Self {
            inner: Fake::default(),
            offsets: Gate::default(),
            reads: Gate::default(),
            committed: 4.into(),
        }
    }

    /// A source whose gates start open (every stage answers at once).
    fn answering() -> Arc<Self> {
        let source = Arc::new(Self::new());
        source.offsets.set(true);
        source.reads.set(true);
        source
    }
}

impl KafkaSource for Slow {
    fn describe_cluster(&self, t: Duration) -> Result<ClusterDescription, SourceError> {
        self.inner.describe_cluster(t)
    }
    fn topic_metadata(&self, t: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        self.inner.topic_metadata(t)
    }
    fn topic_configs(&self, topics: &[String], t: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        self.inner.topic_configs(topics, t)
    }
    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        t: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        self.offsets.wait();
        self.inner.list_offsets(partitions, spec, t)
    }
    fn list_groups(&self, t: Duration) -> Result<Vec<GroupListing>, SourceError> {
        self.inner.list_groups(t)
    }
    fn describe_groups(&self, groups: &[String], t: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        self.inner.describe_groups(groups, t)
    }
    fn group_offsets(&self, groups: &[String], _: usize, _: Duration) -> Result<Vec<GroupOffsets>, SourceError> {
        let c = self.committed.load(Ordering::SeqCst);
        Ok(groups
            .iter()
            .map(|g| GroupOffsets {
                group: g.clone(),
                offsets: Ok(vec![(TopicPartition::new("t", 0), c)]),
            })
            .collect())
    }
    fn records_at(&self, requests: &[(TopicPartition, i64)], t: Duration) -> Result<Vec<RecordAt>, SourceError> {
        self.reads.wait();
        self.inner.records_at(requests, t)
    }
}

/// Runs one cycle on its own thread; returns its publications as they come and the final
/// snapshot with the memory.
type Background = (
    std::sync::mpsc::Receiver<Arc<ClusterSnapshot>>,
    std::thread::JoinHandle<(Arc<ClusterSnapshot>, Memory)>,
);

fn cycle_in_background(source: Arc<Slow>, mut memory: Memory) -> Background {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut publish = |s: Arc<ClusterSnapshot>| tx.send(s).unwrap();
        let s = run_cycle(source.as_ref(), &cfg(), &Policy::builtin(), &mut memory, &mut publish);
        (s, memory)
    });
    (rx, handle)
}

fn next(rx: &std::sync::mpsc::Receiver<Arc<ClusterSnapshot>>) -> Arc<ClusterSnapshot> {
    rx.recv_timeout(Duration::from_secs(10)).expect("a publication")
}

#[test]
fn a_blocked_offsets_stage_does_not_hold_back_cluster_metadata_and_groups() {
    let source = Arc::new(Slow::new());
    source.reads.set(true);
    let (rx, handle) = cycle_in_background(Arc::clone(&source), Memory::default());
    // Everything but ListOffsets answers: cluster, partition state, configs and groups are
    // published while the offsets stage still waits.
    let mut s = next(&rx);
    while !(s.cluster.is_some() && s.topics.is_some() && s.stages[&Stage::Groups].last_success.is_some()) {
        s = next(&rx);
    }
    let t = &s.topics.as_ref().unwrap()[0];
    assert!(t.partitions[1].offline(), "replication state is served");
    assert_eq!(t.partitions[0].high_watermark, None, "offsets are not known yet");
    assert!(s.groups.is_none(), "no lag without this cycle's high watermarks");
    assert!(
        !s.up && s.cycles_total == 0,
        "the cycle's health changes only when it ends"
    );
    assert!(s.stages[&Stage::Offsets].last_success.is_none());

    source.offsets.set(true);
    let (end, _) = handle.join().unwrap();
    assert!(end.up && end.cycles_total == 1);
    assert_eq!(
        end.groups.as_ref().unwrap()[0].topics[0].partitions[0].lag.unwrap().lag,
        6
    );
}

#[test]
fn offset_lag_is_published_before_the_record_reads_and_time_lag_is_carried_meanwhile() {
    let source = Slow::answering();
    let mut memory = Memory::default();
    let first = run_cycle(source.as_ref(), &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    let p = |s: &ClusterSnapshot| s.groups.as_ref().unwrap()[0].topics[0].partitions[0].clone();
    let served = p(&first).time_lag.expect("time lag after the first cycle");
    assert_eq!(served.1, crate::lag::TimeLagMethod::Record);

    // The group moves on: its new position needs a record read, which hangs.
    source.committed.store(5, Ordering::SeqCst);
    source.reads.set(false);
    let (rx, handle) = cycle_in_background(Arc::clone(&source), memory);
    let mut s = next(&rx);
    while p(&s).lag.unwrap().lag != 5 {
        s = next(&rx);
    }
    // Offset lag is this cycle's; time lag is the one served before, same method, present.
    assert_eq!(p(&s).committed, Some(5));
    assert_eq!(p(&s).time_lag, Some(served));
    assert_eq!(
        s.stages[&Stage::TimeLag].last_success,
        first.stages[&Stage::TimeLag].last_success
    );

    source.reads.set(true);
    let (end, memory) = handle.join().unwrap();
    assert!(end.up && end.cycles_total == 2);
    assert_eq!(p(&end).time_lag.unwrap().1, crate::lag::TimeLagMethod::Record);
    assert!(memory.record_ts.contains(&TopicPartition::new("t", 0), 5));
}

#[test]
fn every_stage_is_published_at_most_once_per_cycle() {
    let source = Slow::answering();
    let (rx, handle) = cycle_in_background(Arc::clone(&source), Memory::default());
    let (end, _) = handle.join().unwrap();
    let publications = rx.try_iter().count();
    // Cluster, topics, configs, offsets, groups, time lag, replay window; the last one ends
    // the cycle instead.
    assert!(publications < Stage::ALL.len() - 1, "{publications} publications");
    assert!(end.up);
}

#[test]
fn a_healthy_cycle_publishes_once_it_has_served_and_progressively_at_start_up() {
    let source = Slow::answering();
    // At start-up nothing is served: stages are published as they land.
    let (rx, handle) = cycle_in_background(Arc::clone(&source), Memory::default());
    let (_, memory) = handle.join().unwrap();
    assert!(rx.try_iter().count() > 0, "start-up publishes before the cycle ends");
    // Afterwards a cycle shorter than the hold publishes only the snapshot that ends it.
    let (rx, handle) = cycle_in_background(Arc::clone(&source), memory);
    let (end, _) = handle.join().unwrap();
    assert_eq!(rx.try_iter().count(), 0);
    assert!(end.up && end.cycles_total == 2);
}

#[test]
fn a_stage_held_past_the_hold_is_published_while_another_still_waits() {
    let source = Slow::answering();
    let mut memory = Memory::default();
    run_cycle(source.as_ref(), &cfg(), &Policy::builtin(), &mut memory, &mut |_| {});
    // ListOffsets hangs: what the other stages brought is published when the hold ends.
    source.offsets.set(false);
    let started = std::time::Instant::now();
    let (rx, handle) = cycle_in_background(Arc::clone(&source), memory);
    let s = next(&rx);
    let waited = started.elapsed();
    assert!(waited >= super::cycle::hold(&cfg()), "published after {waited:?}");
    assert_eq!(s.cycles_total, 1, "published within the second cycle");
    assert!(s.stages[&Stage::Groups].last_success > s.stages[&Stage::Offsets].last_success);
    source.offsets.set(true);
    let (end, _) = handle.join().unwrap();
    assert!(end.up && end.cycles_total == 2);
}
