//! The request stages of a cycle as three independent branches on their own threads, each
//! sending every stage's outcome as soon as it has it:
//! DescribeCluster; Metadata → (DescribeConfigs ‖ ListOffsets earliest ‖ latest ‖ last stable);
//! ListConsumerGroups → (DescribeConsumerGroups ‖ ListConsumerGroupOffsets). A stage whose
//! input is missing (no topic or group data at all) is reported as skipped (`None`).
//!
//! A shard asks for the configs and offsets of its own topics and of the topics its groups
//! consume (known from the last cycle); a group that starts consuming another shard's topic
//! adds one more DescribeConfigs ‖ ListOffsets round once the groups branch is done, so a
//! shard's configs and offsets are sent together after that round.

use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::Scope;
use std::time::{Duration, Instant, SystemTime};

use crate::config::ClusterConfig;
use crate::kafka::{
    ClusterDescription, GroupDescription, GroupListing, GroupOffsets, KafkaSource, OffsetSpec, RecordAt, SourceError,
    TopicConfig, TopicMetadata, TopicPartition,
};
use crate::snapshot::{IoOutcome, Memory, OffsetsRaw, StageOutcome};

/// One stage's outcome, sent by the thread that ran it.
pub(super) enum Event {
    Cluster(StageOutcome<ClusterDescription>),
    Topics(StageOutcome<Vec<TopicMetadata>>),
    Configs(Option<StageOutcome<Vec<TopicConfig>>>),
    Offsets(Option<StageOutcome<OffsetsRaw>>),
    /// Groups and their committed offsets: asked together, and lag needs both.
    Groups(GroupsBranch),
    /// Record reads for time lag, and how many were asked for.
    Records(StageOutcome<Vec<RecordAt>>, usize),
    /// Record reads for the replay window, and how many were asked for.
    Replay(StageOutcome<Vec<RecordAt>>, usize),
    /// A stage thread panicked; the cycle re-raises the panic.
    Panicked(Box<dyn std::any::Any + Send>),
}

/// Runs `f` on a stage thread, turning a panic into an event so that a cycle waiting for the
/// stage's outcome learns that it will never come.
pub(super) fn guarded<'scope>(
    scope: &'scope Scope<'scope, '_>,
    tx: &Sender<Event>,
    f: impl FnOnce(&Sender<Event>) + Send + 'scope,
) {
    let tx = tx.clone();
    scope.spawn(move || {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&tx))) {
            let _ = tx.send(Event::Panicked(panic));
        }
    });
}

pub(super) type GroupsBranch = (
    StageOutcome<(Vec<GroupListing>, Vec<GroupDescription>)>,
    Option<StageOutcome<Vec<GroupOffsets>>>,
);

/// A topic to request offsets and configs for: name and (partition, has a leader).
pub(super) type SelectedTopic = (String, Vec<(i32, bool)>);

/// What the request branches need from the last cycles, copied so that memory can take the
/// new results while the branches run.
#[derive(Debug, Default)]
pub(super) struct Recall {
    /// The last topic list, for the offsets of a cycle whose Metadata fails.
    topics: Option<Vec<SelectedTopic>>,
    /// Topics the remembered groups consume (sharded only).
    consumed: HashSet<String>,
    /// The last group list, for the committed offsets of a cycle whose listing fails.
    groups: Option<Vec<String>>,
}

impl Recall {
    pub(super) fn of(memory: &Memory, cfg: &ClusterConfig) -> Self {
        Self {
            topics: memory.metadata.as_ref().map(|m| select_topics(m.value.iter())),
            consumed: if cfg.shard.is_sharded() {
                consumed_topics(memory)
            } else {
                HashSet::new()
            },
            groups: memory
                .groups
                .as_ref()
                .map(|g| g.value.iter().map(|g| g.listing.group.clone()).collect()),
        }
    }
}

/// Number of events [`spawn_requests`] sends.
pub(super) const REQUEST_EVENTS: usize = 5;

/// Starts the three branches; each sends its events to `tx`.
pub(super) fn spawn_requests<'scope>(
    scope: &'scope Scope<'scope, '_>,
    source: &'scope dyn KafkaSource,
    cfg: &'scope ClusterConfig,
    recall: Recall,
    tx: &Sender<Event>,
) {
    let timeout = cfg.timeout;
    let (consumed_tx, consumed_rx) = mpsc::channel();
    let recall_groups = recall.groups;
    guarded(scope, tx, move |t| {
        let _ = t.send(Event::Cluster(timed(|| source.describe_cluster(timeout))));
    });
    guarded(scope, tx, move |t| {
        let branch = groups_branch(source, cfg, recall_groups);
        if cfg.shard.is_sharded() {
            let now: HashSet<String> = consumed_in_cycle(&branch.0, branch.1.as_ref())
                .into_iter()
                .map(str::to_string)
                .collect();
            let _ = consumed_tx.send(now);
        }
        let _ = t.send(Event::Groups(branch));
    });
    let (recall_topics, consumed_before) = (recall.topics, recall.consumed);
    guarded(scope, tx, move |t| {
        topics_branch(source, cfg, recall_topics, &consumed_before, &consumed_rx, t)
    });
}

/// Metadata, then configs and offsets of the selected topics (this cycle's list, else the
/// last).
fn topics_branch(
    source: &dyn KafkaSource,
    cfg: &ClusterConfig,
    recall: Option<Vec<SelectedTopic>>,
    consumed_before: &HashSet<String>,
    consumed_now: &Receiver<HashSet<String>>,
    tx: &Sender<Event>,
) {
    let (timeout, shard) = (cfg.timeout, cfg.shard);
    let topics = timed(|| source.topic_metadata(timeout));
    let selected = match &topics.result {
        Ok(t) => Some(select_topics(t.iter().filter(|t| cfg.selects_topic(&t.name)))),
        Err(_) => recall,
    };
    let _ = tx.send(Event::Topics(topics));
    let Some(sel) = selected else {
        let _ = tx.send(Event::Configs(None));
        let _ = tx.send(Event::Offsets(None));
        return;
    };
    let wanted: Vec<&SelectedTopic> = sel
        .iter()
        .filter(|(n, _)| shard.owns(n) || consumed_before.contains(n.as_str()))
        .collect();
    if !shard.is_sharded() {
        let offsets = topic_requests(source, &wanted, timeout, Some(tx)).1;
        let _ = tx.send(Event::Offsets(Some(offsets)));
        return;
    }
    let (configs, offsets) = topic_requests(source, &wanted, timeout, None);
    let mut configs = configs.expect("returned when not sent");
    let mut offsets = offsets;
    if offsets.result.is_ok() {
        let consumed_now = consumed_now.recv().unwrap_or_default();
        let missing: Vec<&SelectedTopic> = sel
            .iter()
            .filter(|(n, _)| {
                !shard.owns(n) && !consumed_before.contains(n.as_str()) && consumed_now.contains(n.as_str())
            })
            .collect();
        if !missing.is_empty() {
            let (more_configs, more_offsets) = topic_requests(source, &missing, timeout, None);
            let more_configs = more_configs.expect("returned when not sent");
            configs = merge(configs, more_configs, |a, b| a.extend(b));
            offsets = merge(offsets, more_offsets, OffsetsRaw::extend);
        }
    }
    let _ = tx.send(Event::Configs(Some(configs)));
    let _ = tx.send(Event::Offsets(Some(offsets)));
}

/// Runs every request stage once and returns their outcomes together. Blocking.
pub fn collect_io(source: &dyn KafkaSource, cfg: &ClusterConfig, memory: &Memory) -> IoOutcome {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        spawn_requests(scope, source, cfg, Recall::of(memory, cfg), &tx);
        drop(tx);
        let (mut cluster, mut topics, mut configs, mut offsets, mut groups) = (None, None, None, None, None);
        for event in rx.iter() {
            match event {
                Event::Cluster(o) => cluster = Some(o),
                Event::Topics(o) => topics = Some(o),
                Event::Configs(o) => configs = o,
                Event::Offsets(o) => offsets = o,
                Event::Groups(g) => groups = Some(g),
                Event::Panicked(panic) => std::panic::resume_unwind(panic),
                Event::Records(..) | Event::Replay(..) => {}
            }
        }
        let (groups, group_offsets) = groups.unwrap_or_else(|| (missing(), None));
        IoOutcome {
            at: SystemTime::now(),
            cluster: cluster.unwrap_or_else(missing),
            topics: topics.unwrap_or_else(missing),
            configs,
            offsets,
            groups,
            group_offsets,
        }
    })
}

/// The outcome of a stage whose thread ended without one (it cannot, short of a panic, which
/// is re-raised first).
fn missing<T>() -> StageOutcome<T> {
    StageOutcome {
        duration: Duration::ZERO,
        result: Err(SourceError::new("cycle", "stage ended without a result")),
    }
}

/// DescribeConfigs ‖ ListOffsets (earliest, latest, last stable) for the given topics. With
/// `early`, the configs are sent there as soon as they are in (and `None` returned).
fn topic_requests(
    source: &dyn KafkaSource,
    topics: &[&SelectedTopic],
    timeout: Duration,
    early: Option<&Sender<Event>>,
) -> (Option<StageOutcome<Vec<TopicConfig>>>, StageOutcome<OffsetsRaw>) {
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
    let early = early.cloned();
    std::thread::scope(|scope| {
        let configs = scope.spawn(move || {
            let outcome = timed(|| source.topic_configs(&names, timeout));
            match early {
                Some(tx) => {
                    let _ = tx.send(Event::Configs(Some(outcome)));
                    None
                }
                None => Some(outcome),
            }
        });
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
fn consumed_topics(memory: &Memory) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Some(groups) = &memory.groups {
        for m in groups
            .value
            .iter()
            .filter_map(|g| g.description.as_ref())
            .flat_map(|d| &d.members)
        {
            out.extend(m.assignment.iter().map(|tp| tp.topic.clone()));
        }
    }
    if let Some(committed) = &memory.group_offsets {
        for list in committed.value.values().filter_map(|r| r.as_ref().ok()) {
            out.extend(list.iter().map(|(tp, _)| tp.topic.clone()));
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

fn groups_branch(source: &dyn KafkaSource, cfg: &ClusterConfig, known: Option<Vec<String>>) -> GroupsBranch {
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
            (groups, known.map(|ids| offsets_of(&ids)))
        }
    }
}

pub(super) fn select_topics<'a>(topics: impl Iterator<Item = &'a TopicMetadata>) -> Vec<SelectedTopic> {
    topics
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| (p.id, p.leader.is_some())).collect(),
            )
        })
        .collect()
}

pub(super) fn timed<T>(f: impl FnOnce() -> Result<T, SourceError>) -> StageOutcome<T> {
    let t = Instant::now();
    let result = f();
    StageOutcome {
        duration: t.elapsed(),
        result,
    }
}

/// Joins a stage thread, re-raising its panic: the poller treats a panicked cycle as failed and
/// starts the next one with fresh memory.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
