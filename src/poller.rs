//! One task per cluster: every interval it runs a collection cycle on a blocking thread, folds
//! the result into a new snapshot and publishes it with an atomic pointer swap.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::ClusterConfig;
use crate::kafka::{
    GroupDescription, GroupListing, GroupOffsets, KafkaSource, OffsetSpec, SourceError, TopicConfig, TopicMetadata,
    TopicPartition,
};
use crate::policy::{Policy, PolicySlot};
use crate::snapshot::{
    ClusterSnapshot, IoOutcome, Memory, OffsetsRaw, PartitionCount, SnapshotSlot, Stage, StageOutcome,
};

fn timed<T>(f: impl FnOnce() -> Result<T, SourceError>) -> StageOutcome<T> {
    let t = Instant::now();
    let result = f();
    StageOutcome {
        duration: t.elapsed(),
        result,
    }
}

/// Runs every request stage once. Blocking; call from a blocking thread.
///
/// Three independent branches run concurrently, so that a cycle against a failing cluster
/// takes about two request timeouts rather than the sum of all stages' timeouts:
/// DescribeCluster; Metadata → (DescribeConfigs ‖ ListOffsets earliest ‖ latest ‖ last
/// stable); ListConsumerGroups → (DescribeConsumerGroups ‖ ListConsumerGroupOffsets). A stage whose input is missing (no topic
/// or group data at all) is skipped.
///
/// A shard asks for the configs and offsets of its own topics and of the topics its groups
/// consume (known from the last cycle); a group that starts consuming another shard's topic
/// adds one more DescribeConfigs ‖ ListOffsets round after the groups branch.
pub fn collect_io(source: &dyn KafkaSource, cfg: &ClusterConfig, memory: &Memory) -> IoOutcome {
    let timeout = cfg.timeout;
    let shard = cfg.shard;
    std::thread::scope(|scope| {
        let cluster = scope.spawn(|| timed(|| source.describe_cluster(timeout)));
        let groups_branch = scope.spawn(|| groups_branch(source, cfg, memory));
        let topics = timed(|| source.topic_metadata(timeout));

        // Later stages work on the freshest topic list available: this cycle's, else the last.
        let selected: Option<Vec<SelectedTopic>> = match &topics.result {
            Ok(t) => Some(select_topics(t.iter().filter(|t| cfg.selects_topic(&t.name)))),
            Err(_) => memory.metadata.as_ref().map(|m| select_topics(m.value.iter())),
        };
        let consumed_before = if shard.is_sharded() {
            consumed_topics(memory)
        } else {
            HashSet::new()
        };
        let first = selected.as_ref().map(|sel| {
            let wanted: Vec<&SelectedTopic> = sel
                .iter()
                .filter(|(n, _)| shard.owns(n) || consumed_before.contains(n.as_str()))
                .collect();
            topic_requests(source, &wanted, timeout)
        });
        let (groups, group_offsets) = join(groups_branch);

        let (configs, offsets) = match (first, &selected) {
            (Some((configs, offsets)), Some(sel)) if shard.is_sharded() && offsets.result.is_ok() => {
                let consumed_now = consumed_in_cycle(&groups, group_offsets.as_ref());
                let missing: Vec<&SelectedTopic> = sel
                    .iter()
                    .filter(|(n, _)| {
                        !shard.owns(n) && !consumed_before.contains(n.as_str()) && consumed_now.contains(n.as_str())
                    })
                    .collect();
                if missing.is_empty() {
                    (Some(configs), Some(offsets))
                } else {
                    let (more_configs, more_offsets) = topic_requests(source, &missing, timeout);
                    (
                        Some(merge(configs, more_configs, |a, b| a.extend(b))),
                        Some(merge(offsets, more_offsets, OffsetsRaw::extend)),
                    )
                }
            }
            (first, _) => first.unzip(),
        };
        IoOutcome {
            at: SystemTime::now(),
            cluster: join(cluster),
            topics,
            configs,
            offsets,
            groups,
            group_offsets,
        }
    })
}

/// DescribeConfigs ‖ ListOffsets (earliest, latest, last stable) for the given topics.
fn topic_requests(
    source: &dyn KafkaSource,
    topics: &[&SelectedTopic],
    timeout: Duration,
) -> (StageOutcome<Vec<TopicConfig>>, StageOutcome<OffsetsRaw>) {
    let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
    // A partition without a leader can hold a whole ListOffsets call until its timeout; its
    // offsets stay unknown instead.
    let tps: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|(n, ps)| {
            ps.iter()
                .filter(|(_, led)| *led)
                .map(move |(p, _)| TopicPartition::new(n.clone(), *p))
        })
        .collect();
    std::thread::scope(|scope| {
        let configs = scope.spawn(move || timed(|| source.topic_configs(&names, timeout)));
        // The three listings are independent; asked together, their round trips overlap.
        let tps = &tps;
        let started = Instant::now();
        let earliest = scope.spawn(move || source.list_offsets(tps, OffsetSpec::Earliest, timeout));
        let latest = scope.spawn(move || source.list_offsets(tps, OffsetSpec::Latest, timeout));
        let last_stable = source.list_offsets(tps, OffsetSpec::LatestCommitted, timeout);
        let (earliest, latest) = (join(earliest), join(latest));
        let offsets = StageOutcome {
            result: (|| {
                Ok(OffsetsRaw {
                    earliest: earliest?,
                    latest: latest?,
                    last_stable: last_stable?,
                })
            })(),
            duration: started.elapsed(),
        };
        (join(configs), offsets)
    })
}

/// Two rounds of one stage as one: both durations, both results, or the first error.
fn merge<T>(a: StageOutcome<T>, b: StageOutcome<T>, extend: impl FnOnce(&mut T, T)) -> StageOutcome<T> {
    StageOutcome {
        duration: a.duration + b.duration,
        result: match (a.result, b.result) {
            (Ok(mut x), Ok(y)) => {
                extend(&mut x, y);
                Ok(x)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    }
}

/// Topics the remembered groups have committed offsets on or are assigned.
fn consumed_topics(memory: &Memory) -> HashSet<&str> {
    let mut out = HashSet::new();
    if let Some(groups) = &memory.groups {
        for m in groups
            .value
            .iter()
            .filter_map(|g| g.description.as_ref())
            .flat_map(|d| &d.members)
        {
            out.extend(m.assignment.iter().map(|tp| tp.topic.as_str()));
        }
    }
    if let Some(committed) = &memory.group_offsets {
        for list in committed.value.values().filter_map(|r| r.as_ref().ok()) {
            out.extend(list.iter().map(|(tp, _)| tp.topic.as_str()));
        }
    }
    out
}

/// Topics this cycle's groups have committed offsets on or are assigned.
fn consumed_in_cycle<'a>(
    groups: &'a StageOutcome<(Vec<GroupListing>, Vec<GroupDescription>)>,
    committed: Option<&'a StageOutcome<Vec<GroupOffsets>>>,
) -> HashSet<&'a str> {
    let mut out = HashSet::new();
    if let Ok((_, descriptions)) = &groups.result {
        for m in descriptions.iter().flat_map(|d| &d.members) {
            out.extend(m.assignment.iter().map(|tp| tp.topic.as_str()));
        }
    }
    if let Some(Ok(list)) = committed.map(|c| &c.result) {
        for g in list {
            if let Ok(offsets) = &g.offsets {
                out.extend(offsets.iter().map(|(tp, _)| tp.topic.as_str()));
            }
        }
    }
    out
}

type GroupsBranch = (
    StageOutcome<(Vec<GroupListing>, Vec<GroupDescription>)>,
    Option<StageOutcome<Vec<GroupOffsets>>>,
);

fn groups_branch(source: &dyn KafkaSource, cfg: &ClusterConfig, memory: &Memory) -> GroupsBranch {
    let timeout = cfg.timeout;
    let started = Instant::now();
    let selected = |listings: &[GroupListing]| -> Vec<String> {
        listings
            .iter()
            .filter(|l| cfg.selects_group(&l.group))
            .map(|l| l.group.clone())
            .collect()
    };
    let offsets_of = |ids: &[String]| timed(|| source.group_offsets(ids, cfg.lag.group_offsets_concurrency, timeout));
    match source.list_groups(timeout) {
        // Descriptions and committed offsets both need only the group names: asked together.
        Ok(listings) => {
            let ids = selected(&listings);
            std::thread::scope(|scope| {
                let offsets = scope.spawn(|| offsets_of(&ids));
                let described = source.describe_groups(&ids, timeout);
                let groups = StageOutcome {
                    duration: started.elapsed(),
                    result: described.map(|d| (listings, d)),
                };
                (groups, Some(join(offsets)))
            })
        }
        // Without a listing, the groups of the last cycle still get their offsets read.
        Err(e) => {
            let groups = StageOutcome {
                duration: started.elapsed(),
                result: Err(e),
            };
            let known: Option<Vec<String>> = memory
                .groups
                .as_ref()
                .map(|g| g.value.iter().map(|g| g.listing.group.clone()).collect());
            (groups, known.map(|ids| offsets_of(&ids)))
        }
    }
}

/// A topic to request offsets and configs for: name and (partition, has a leader).
type SelectedTopic = (String, Vec<(i32, bool)>);

fn select_topics<'a>(topics: impl Iterator<Item = &'a TopicMetadata>) -> Vec<SelectedTopic> {
    topics
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| (p.id, p.leader.is_some())).collect(),
            )
        })
        .collect()
}

/// Joins a stage thread, re-raising its panic: the poller treats a panicked cycle as failed and
/// starts the next one with fresh memory.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// One complete cycle: requests, record reads for time lag and the replay window, and the new
/// snapshot. Blocking.
pub fn run_cycle(
    source: &dyn KafkaSource,
    cfg: &ClusterConfig,
    policy: &Policy,
    memory: &mut Memory,
) -> ClusterSnapshot {
    let started = Instant::now();
    if !memory.state_loaded {
        load_state(cfg, memory);
    }
    let io = collect_io(source, cfg, memory);
    let at = io.at;
    let mut ok = memory.fold_io(io, cfg);

    let wanted = memory.reads_needed(cfg.lag.max_record_reads);
    let asked = wanted.len();
    ok &= memory.fold_records(read_records(source, &wanted, cfg), asked, at);

    let replay_limit = cfg.lag.max_record_reads.saturating_sub(asked);
    if let Some(wanted) = memory.replay_reads_needed(at, cfg.compliance.replay_window_refresh, replay_limit, cfg.shard)
    {
        ok &= memory.fold_replay_reads(read_records(source, &wanted, cfg), wanted.len(), at);
    }

    let snapshot = memory.snapshot(cfg, policy, at, started.elapsed(), ok);
    if memory.partition_counts_dirty {
        save_state(cfg, memory);
    }
    snapshot
}

/// Reads the records at the given offsets (no request when there is nothing to read).
fn read_records(
    source: &dyn KafkaSource,
    wanted: &[(TopicPartition, i64)],
    cfg: &ClusterConfig,
) -> StageOutcome<Vec<crate::kafka::RecordAt>> {
    timed(|| {
        if wanted.is_empty() {
            Ok(Vec::new())
        } else {
            source.records_at(wanted, cfg.timeout)
        }
    })
}

/// The file keeping a cluster's observed partition counts across restarts.
fn state_path(cfg: &ClusterConfig) -> Option<PathBuf> {
    let dir = cfg.compliance.state_dir.as_ref()?;
    let safe: String = cfg
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir.join(format!("{safe}.partition-counts.json")))
}

fn load_state(cfg: &ClusterConfig, memory: &mut Memory) {
    memory.state_loaded = true;
    let Some(path) = state_path(cfg) else { return };
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<HashMap<String, PartitionCount>>(&bytes) {
            Ok(counts) => memory.partition_counts = counts,
            Err(e) => {
                tracing::warn!(cluster = cfg.name.as_str(), path = %path.display(), error = %e, "ignoring unreadable state file")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(cluster = cfg.name.as_str(), path = %path.display(), error = %e, "cannot read state file")
        }
    }
}

/// Writes the state atomically (temporary file + rename) so a crash never leaves half a file;
/// the temporary file is the process's own, as shards may share a state directory.
fn save_state(cfg: &ClusterConfig, memory: &mut Memory) {
    let Some(path) = state_path(cfg) else {
        memory.partition_counts_dirty = false;
        return;
    };
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let result = serde_json::to_vec(&memory.partition_counts)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|_| std::fs::rename(&tmp, &path));
    match result {
        Ok(()) => memory.partition_counts_dirty = false,
        Err(e) => {
            tracing::warn!(cluster = cfg.name.as_str(), path = %path.display(), error = %e, "cannot write state file")
        }
    }
}

/// The collection loop of one cluster.
pub struct Poller {
    cfg: Arc<ClusterConfig>,
    policy: PolicySlot,
    source: Arc<dyn KafkaSource>,
    slot: SnapshotSlot,
}

impl Poller {
    pub fn new(cfg: ClusterConfig, policy: PolicySlot, source: Arc<dyn KafkaSource>, slot: SnapshotSlot) -> Self {
        Self {
            cfg: Arc::new(cfg),
            policy,
            source,
            slot,
        }
    }

    /// Collects every `interval` until `shutdown` turns true. A cycle that overruns the interval
    /// delays the next one instead of queueing a burst.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.cfg.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let cluster = self.cfg.name.as_str();
        let mut memory = Some(Box::<Memory>::default());
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            let Some(mut mem) = memory.take() else { break };
            let source = Arc::clone(&self.source);
            let cfg = Arc::clone(&self.cfg);
            let policy = self.policy.load_full();
            let job = tokio::task::spawn_blocking(move || {
                let snap = run_cycle(source.as_ref(), &cfg, &policy, &mut mem);
                crate::kafka::release_free_heap();
                (snap, mem)
            });
            let (snapshot, mem) = tokio::select! {
                r = job => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // The memory went with the panicked task; start afresh rather than stop.
                        tracing::error!(cluster, error = %e, "collection cycle panicked; history reset");
                        memory = Some(Box::default());
                        continue;
                    }
                },
                // Shutdown does not wait for an in-flight blocking request.
                _ = shutdown.changed() => break,
            };
            memory = Some(mem);
            let prev = self.slot.load_full();
            self.log_outcome(&snapshot, prev.up || prev.cycles_total == 0);
            self.slot.store(Arc::new(snapshot));
        }
        tracing::debug!(cluster, "poller stopped");
    }

    /// Logs failures when they start (warn) and recoveries (info); repeated failures go to
    /// debug so an outage does not flood the log — the metrics carry the ongoing state.
    fn log_outcome(&self, s: &ClusterSnapshot, was_up: bool) {
        let cluster = self.cfg.name.as_str();
        let failures: Vec<String> = Stage::ALL
            .iter()
            .filter_map(|st| {
                let e = s.stages.get(st)?.last_error.as_ref()?;
                Some(format!("{}: {e}", st.as_str()))
            })
            .collect();
        let duration_ms = s.last_cycle_duration.unwrap_or(Duration::ZERO).as_millis() as u64;
        let errors = failures.join("; ");
        match (s.up, was_up) {
            (true, true) => tracing::debug!(cluster, duration_ms, "collection cycle complete"),
            (true, false) => tracing::info!(cluster, duration_ms, "collection recovered"),
            (false, true) => tracing::warn!(cluster, duration_ms, errors, "collection cycle failed"),
            (false, false) => tracing::debug!(cluster, duration_ms, errors, "collection cycle failed again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::kafka::{
        Broker, ClusterDescription, GroupMember, GroupState, GroupType, PartitionMetadata, PartitionOffset, RecordAt,
        TopicConfig,
    };
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A scripted cluster: one topic `t` with two partitions (p1 leaderless), one group `g`
    /// with a member; can be switched to fail every call.
    #[derive(Default)]
    struct Fake {
        down: AtomicBool,
        offset_requests: std::sync::Mutex<Vec<usize>>,
        reads: AtomicUsize,
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

    fn cfg() -> ClusterConfig {
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
        let s = run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory);
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
        let s2 = run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory);
        assert_eq!(fake.reads.load(Ordering::SeqCst), 2);
        assert_eq!((s2.record_reads_total, s2.replay_reads_total), (1, 1));
        let c = &s2.compliance.as_ref().unwrap()[0];
        assert_eq!(c.class, "unmatched", "a topic named `t` follows no convention");
    }

    #[test]
    fn cluster_down_keeps_serving_last_data_and_counts_errors() {
        let fake = Fake::default();
        let mut memory = Memory::default();
        run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory);
        fake.down.store(true, Ordering::SeqCst);
        let s = run_cycle(&fake, &cfg(), &Policy::builtin(), &mut memory);
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
        let s = run_cycle(&estate, &cfg, &Policy::builtin(), &mut memory);
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
        run_cycle(&estate, &cfg, &Policy::builtin(), &mut memory);
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
        let s = run_cycle(&estate, &cfg(), &Policy::builtin(), &mut memory);
        assert_eq!(estate.configs_asked.lock().unwrap().len(), 1);
        let mut described = estate.groups_described.lock().unwrap().clone();
        described.sort();
        assert_eq!(described, vec!["kse-g0", "kse-g2"]);
        assert_eq!(s.topics.as_ref().unwrap().len(), 2);
        assert_eq!(s.totals.as_ref().unwrap().partitions, 2);
    }
}
