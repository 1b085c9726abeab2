//! One collection cycle as a stream of stage outcomes, each folded into memory and published
//! as soon as it arrives, so that a stage waiting on a dead broker holds back nothing else.
//!
//! What a publication within a cycle shows:
//! - cluster, topic and partition state, configs and offsets as soon as their stage answered
//!   (each with its own data age); the other stages' data stays the previous cycle's, as it
//!   would if this cycle's stage failed;
//! - group views (offset lag, status) only once this cycle's offsets *and* committed offsets
//!   are both in (or failed): lag always pairs a high watermark and a committed offset read
//!   within one cycle, never this cycle's watermark with the last cycle's commit;
//! - until this cycle's time-lag reads land, a position without a cached record timestamp keeps
//!   the time lag served before, so a series neither changes method nor goes absent mid-cycle;
//! - the cycle's health (cycle count and duration) changes when the cycle ends; `up` drops as
//!   soon as a stage of the cycle in flight fails, and rises only when a whole cycle succeeded.
//!
//! Consecutive outcomes that are ready together are folded into one publication, and the last
//! outcome of a cycle goes straight into the cycle's final snapshot: at most one publication per
//! stage. Once something has been served, what lands in the cycle's first [`hold`] is held
//! back and published together when the hold ends (or at once when a stage failed), so a
//! healthy cycle publishes only its final snapshot; at start-up every stage is published as it
//! lands. While a cycle runs past its interval (a stage waiting out a timeout), DescribeCluster
//! and Metadata are asked again at every interval as long as they answer, so broker and
//! replication state stay one interval fresh; one that failed is not re-asked within the cycle,
//! so a re-ask never outlives the cycle's own stages by more than one request timeout, and each
//! stage fails at most once per cycle when the cluster is down.
//!
//! When no request of the cycle got an answer (the cluster is unreachable), the record reads
//! are skipped: they would only wait out their timeout, and the cycle ends at its requests'
//! timeouts.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::Scope;
use std::time::{Duration, Instant, SystemTime};

use super::requests::{guarded, spawn_requests, timed, Event, Recall, REQUEST_EVENTS};
use super::{load_state, read_records, save_state};
use crate::config::ClusterConfig;
use crate::kafka::KafkaSource;
use crate::policy::Policy;
use crate::snapshot::{ClusterSnapshot, GroupLag, Memory, Rebuild};

/// How long a cycle holds back what its stages bring before publishing it, once something has
/// been served: a healthy cycle shorter than this publishes once, when it ends, rather than
/// rebuilding its topic and group views for each stage (which costs the CPU of several whole
/// cycles on a large cluster). A quarter of the interval, at most a second: a stage that waits
/// on a dead broker still holds nothing back for longer than that.
pub(super) fn hold(cfg: &ClusterConfig) -> Duration {
    (cfg.interval / 4).min(Duration::from_secs(1))
}

/// Receives each publication within a cycle.
pub type Publish<'a> = &'a mut dyn FnMut(Arc<ClusterSnapshot>);

/// One complete cycle: requests, record reads for time lag and the replay window, publishing
/// each stage's results through `publish` as they arrive. Returns the snapshot that ends the
/// cycle (not passed to `publish`). Blocking.
pub fn run_cycle(
    source: &dyn KafkaSource,
    cfg: &ClusterConfig,
    policy: &Policy,
    memory: &mut Memory,
    publish: Publish<'_>,
) -> Arc<ClusterSnapshot> {
    let started = Instant::now();
    if !memory.state_loaded {
        load_state(cfg, memory);
    }
    let prev = memory
        .published
        .clone()
        .unwrap_or_else(|| Arc::new(ClusterSnapshot::empty(&cfg.name, &cfg.labels, cfg.lag.granularity)));
    let mut run = Run {
        cfg,
        policy,
        memory,
        prev,
        ok: true,
        pending: 0,
        offsets: None,
        group_offsets: None,
        lag_served: false,
        observed: false,
        reads_started: false,
        answered: false,
        cluster: None,
        topics: None,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        spawn_requests(scope, source, cfg, Recall::of(run.memory, cfg), &tx);
        run.pending = REQUEST_EVENTS;
        let mut next_tick = started + cfg.interval;
        // Nothing served yet (start-up): every stage is published as it lands.
        let hold_until = match run.memory.published {
            Some(_) => started + hold(cfg),
            None => started,
        };
        let mut held: Option<Rebuild> = None;
        while run.pending > 0 {
            let wake = match held {
                Some(_) => next_tick.min(hold_until),
                None => next_tick,
            };
            let first = match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if now >= next_tick {
                        next_tick += cfg.interval;
                        run.refresh_state(scope, source, &tx);
                    }
                    if now >= hold_until {
                        if let Some(rebuild) = held.take() {
                            run.publish(rebuild, publish);
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut rebuild = held.take().unwrap_or_default();
            for event in std::iter::once(first).chain(rx.try_iter()) {
                run.pending -= 1;
                run.fold(event, &mut rebuild);
            }
            run.after_requests(scope, (source, cfg), &tx, &mut rebuild);
            // The last outcome goes into the snapshot that ends the cycle.
            if run.pending > 0 {
                if Instant::now() >= hold_until || !run.ok {
                    run.publish(rebuild, publish);
                } else {
                    held = Some(rebuild);
                }
            }
        }
    });
    let lag = GroupLag {
        observe: run.lag_fresh() && !run.observed,
        carry: None,
    };
    let snapshot = Arc::new(
        run.memory
            .finish_cycle(cfg, policy, SystemTime::now(), started.elapsed(), run.ok, lag),
    );
    if run.memory.partition_counts_dirty {
        save_state(cfg, run.memory);
    }
    run.memory.published = Some(Arc::clone(&snapshot));
    snapshot
}

/// The state of the cycle in flight.
struct Run<'a> {
    cfg: &'a ClusterConfig,
    policy: &'a Policy,
    memory: &'a mut Memory,
    /// The last publication, whose views a publication keeps where it rebuilds nothing.
    prev: Arc<ClusterSnapshot>,
    /// Every stage so far succeeded.
    ok: bool,
    /// Outcomes still to come.
    pending: usize,
    /// Whether this cycle's ListOffsets and ListConsumerGroupOffsets succeeded, once known.
    offsets: Option<bool>,
    group_offsets: Option<bool>,
    /// Group views of this cycle's lag have been published.
    lag_served: bool,
    /// The status histories took this cycle's observation.
    observed: bool,
    reads_started: bool,
    /// Some request of this cycle got an answer (the cluster is reachable).
    answered: bool,
    /// The latest DescribeCluster and Metadata of this cycle: `None` while in flight, else
    /// whether it succeeded. Only one that succeeded is asked again at an interval boundary.
    cluster: Option<bool>,
    topics: Option<bool>,
}

impl Run<'_> {
    fn fold(&mut self, event: Event, rebuild: &mut Rebuild) {
        let (cfg, at) = (self.cfg, SystemTime::now());
        let observe = self.lag_fresh() && !self.observed;
        let m = &mut *self.memory;
        let ok = match event {
            Event::Cluster(o) => {
                let ok = m.fold_cluster(o, at, cfg);
                self.cluster = Some(ok);
                ok
            }
            Event::Topics(o) => {
                rebuild.topics = true;
                let ok = m.fold_topics(o, at, cfg);
                self.topics = Some(ok);
                ok
            }
            Event::Configs(o) => {
                rebuild.topics = true;
                m.fold_configs(o, at, cfg)
            }
            Event::Offsets(o) => {
                rebuild.topics = true;
                let ok = m.fold_offsets(o, at, cfg);
                self.offsets = Some(ok);
                ok
            }
            Event::Groups((groups, committed)) => {
                let ok = m.fold_groups(groups, at, cfg);
                let committed_ok = m.fold_group_offsets(committed, at, cfg);
                self.group_offsets = Some(committed_ok);
                self.answered |= ok || committed_ok;
                ok && committed_ok
            }
            Event::Records(o, asked) => {
                rebuild.groups = Some(GroupLag { observe, carry: None });
                self.ok &= m.fold_records(o, asked, at);
                return;
            }
            Event::Replay(o, asked) => {
                rebuild.topics = true;
                self.ok &= m.fold_replay_reads(o, asked, at);
                return;
            }
            Event::Panicked(panic) => std::panic::resume_unwind(panic),
        };
        self.answered |= ok;
        self.ok &= ok;
    }

    /// This cycle's offsets and committed offsets both succeeded.
    fn lag_fresh(&self) -> bool {
        self.offsets == Some(true) && self.group_offsets == Some(true)
    }

    /// Once offsets and committed offsets are both in: publish lag and start the record reads.
    fn after_requests<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        (source, cfg): (&'scope dyn KafkaSource, &'scope ClusterConfig),
        tx: &Sender<Event>,
        rebuild: &mut Rebuild,
    ) {
        if self.offsets.is_none() || self.group_offsets.is_none() || self.reads_started {
            return;
        }
        self.reads_started = true;
        let at = SystemTime::now();
        let max = cfg.lag.max_record_reads;
        if !self.answered {
            // Nothing answered: the record reads (time lag, replay window) would only wait out
            // their timeout. They are skipped, which fails the cycle like any skipped stage.
            self.ok = false;
            if !self.lag_served {
                rebuild.groups = Some(GroupLag {
                    observe: false,
                    carry: None,
                });
            }
            return;
        }
        let wanted = self.memory.reads_needed(max);
        let asked = wanted.len();
        let replay = self.memory.replay_reads_needed(
            at,
            cfg.compliance.replay_window_refresh,
            max.saturating_sub(asked),
            cfg.shard,
        );
        self.pending += 1 + usize::from(replay.is_some());
        if !self.lag_served {
            rebuild.groups = Some(GroupLag {
                observe: self.lag_fresh(),
                carry: (asked > 0).then(|| self.prev.groups.clone()).flatten(),
            });
        }
        guarded(scope, tx, move |t| {
            let _ = t.send(Event::Records(read_records(source, &wanted, cfg), asked));
            if let Some(replay) = replay {
                let n = replay.len();
                let _ = t.send(Event::Replay(read_records(source, &replay, cfg), n));
            }
        });
    }

    /// At an interval boundary within the cycle: asks for broker and replication state again
    /// where the latest request answered (not while one is in flight or after a failure).
    fn refresh_state<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        source: &'scope dyn KafkaSource,
        tx: &Sender<Event>,
    ) {
        let timeout = self.cfg.timeout;
        if self.cluster == Some(true) {
            self.cluster = None;
            self.pending += 1;
            guarded(scope, tx, move |t| {
                let _ = t.send(Event::Cluster(timed(|| source.describe_cluster(timeout))));
            });
        }
        if self.topics == Some(true) {
            self.topics = None;
            self.pending += 1;
            guarded(scope, tx, move |t| {
                let _ = t.send(Event::Topics(timed(|| source.topic_metadata(timeout))));
            });
        }
    }

    fn publish(&mut self, rebuild: Rebuild, publish: Publish<'_>) {
        if let Some(lag) = &rebuild.groups {
            self.lag_served = true;
            self.observed |= lag.observe;
        }
        let at = SystemTime::now();
        let mut s = self.memory.publish(&self.prev, self.cfg, self.policy, at, rebuild);
        // A partition count change is on disk before it is served: a process stopped before
        // the cycle ends must not count it again when it starts from the state it left.
        if self.memory.partition_counts_dirty {
            save_state(self.cfg, self.memory);
        }
        // A cycle with a failed stage cannot complete every stage: `up` drops without waiting
        // for its slowest stage; it rises only when a whole cycle succeeded.
        s.up &= self.ok;
        let s = Arc::new(s);
        self.prev = Arc::clone(&s);
        publish(s);
    }
}
