//! The immutable per-cluster snapshot that scrapes read, and the pure function that folds one
//! collection cycle into the next snapshot.
//!
//! Each stage's data carries the time it was collected. When a stage fails, the last good data
//! is kept (and its age exported) until it is older than `max_staleness`; then it is dropped so
//! that stale values are never presented as current.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::NameFilter;
use crate::kafka::{Broker, ClusterDescription, SourceError, TopicMetadata};

/// The collection stages of a cycle, in execution order. Every stage has its own duration,
/// error counter and staleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// DescribeCluster: cluster id, controller, brokers.
    Cluster,
    /// Metadata request: topics and partitions.
    Topics,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Cluster, Stage::Topics];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Cluster => "cluster",
            Stage::Topics => "topics",
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

/// A topic as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    pub name: String,
    pub partitions: u32,
}

/// Per-stage bookkeeping that lives across cycles.
#[derive(Debug, Clone, Default)]
pub struct StageStats {
    pub last_duration: Option<Duration>,
    pub last_success: Option<SystemTime>,
    pub errors_total: u64,
    pub last_error: Option<String>,
}

/// Everything scrapes read about one cluster. Replaced as a whole after each cycle.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    pub name: String,
    /// Constant labels from the configuration.
    pub labels: Vec<(String, String)>,
    /// Whether the most recent cycle completed every stage.
    pub up: bool,
    pub cycles_total: u64,
    pub last_cycle_duration: Option<Duration>,
    /// End of the most recent cycle in which every stage succeeded.
    pub last_success: Option<SystemTime>,
    pub stages: BTreeMap<Stage, StageStats>,
    pub cluster: Option<Timestamped<ClusterDescription>>,
    pub topics: Option<Timestamped<Vec<TopicState>>>,
}

impl ClusterSnapshot {
    /// The snapshot before the first cycle: no data, not up, zeroed counters for every stage.
    pub fn empty(name: &str, labels: &[(String, String)]) -> Self {
        Self {
            name: name.to_string(),
            labels: labels.to_vec(),
            up: false,
            cycles_total: 0,
            last_cycle_duration: None,
            last_success: None,
            stages: Stage::ALL.iter().map(|s| (*s, StageStats::default())).collect(),
            cluster: None,
            topics: None,
        }
    }

    /// True once every stage has succeeded at least once.
    pub fn ready(&self) -> bool {
        self.stages.values().all(|s| s.last_success.is_some())
    }
}

/// What one stage returned, and how long it took.
#[derive(Debug)]
pub struct StageOutcome<T> {
    pub duration: Duration,
    pub result: Result<T, SourceError>,
}

/// Raw results of one collection cycle.
#[derive(Debug)]
pub struct CycleOutcome {
    pub finished_at: SystemTime,
    pub duration: Duration,
    pub cluster: StageOutcome<ClusterDescription>,
    pub topics: StageOutcome<Vec<TopicMetadata>>,
}

/// Folds a cycle into the previous snapshot. Pure: no I/O, no clock.
pub fn apply_cycle(
    prev: &ClusterSnapshot,
    outcome: CycleOutcome,
    topic_filter: &NameFilter,
    max_staleness: Duration,
) -> ClusterSnapshot {
    let now = outcome.finished_at;
    let mut next = prev.clone();
    next.cycles_total += 1;
    next.last_cycle_duration = Some(outcome.duration);

    let mut all_ok = true;
    next.cluster = fold_stage(
        &mut next.stages,
        Stage::Cluster,
        outcome.cluster.duration,
        outcome.cluster.result.map(normalise_description),
        prev.cluster.as_ref(),
        now,
        max_staleness,
        &mut all_ok,
    );
    next.topics = fold_stage(
        &mut next.stages,
        Stage::Topics,
        outcome.topics.duration,
        outcome.topics.result.map(|t| topic_states(t, topic_filter)),
        prev.topics.as_ref(),
        now,
        max_staleness,
        &mut all_ok,
    );

    next.up = all_ok;
    if all_ok {
        next.last_success = Some(now);
    }
    next
}

#[allow(clippy::too_many_arguments)]
fn fold_stage<T>(
    stages: &mut BTreeMap<Stage, StageStats>,
    stage: Stage,
    duration: Duration,
    result: Result<T, SourceError>,
    prev: Option<&Timestamped<T>>,
    now: SystemTime,
    max_staleness: Duration,
    all_ok: &mut bool,
) -> Option<Timestamped<T>> {
    let stats = stages.entry(stage).or_default();
    stats.last_duration = Some(duration);
    match result {
        Ok(value) => {
            stats.last_success = Some(now);
            stats.last_error = None;
            Some(Timestamped {
                collected_at: now,
                value: Arc::new(value),
            })
        }
        Err(e) => {
            *all_ok = false;
            stats.errors_total += 1;
            stats.last_error = Some(e.to_string());
            prev.filter(|p| age(now, p.collected_at) <= max_staleness).cloned()
        }
    }
}

/// Seconds between `then` and `now`, zero if the clock went backwards.
pub fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

fn normalise_description(mut d: ClusterDescription) -> ClusterDescription {
    d.brokers.sort_by_key(|b: &Broker| b.id);
    d.brokers.dedup_by_key(|b| b.id);
    d
}

/// Applies the topic filter and reduces metadata to what is exported.
pub fn topic_states(topics: Vec<TopicMetadata>, filter: &NameFilter) -> Vec<TopicState> {
    let mut out: Vec<TopicState> = topics
        .into_iter()
        .filter(|t| filter.matches(&t.name))
        .map(|t| TopicState {
            partitions: u32::try_from(t.partitions.len()).unwrap_or(u32::MAX),
            name: t.name,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::PartitionMetadata;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn topic(name: &str, n: i32) -> TopicMetadata {
        TopicMetadata {
            name: name.into(),
            partitions: (0..n)
                .map(|id| PartitionMetadata {
                    id,
                    leader: Some(1),
                    replicas: vec![1],
                    isr: vec![1],
                })
                .collect(),
        }
    }

    fn desc(brokers: &[i32]) -> ClusterDescription {
        ClusterDescription {
            cluster_id: Some("abc".into()),
            controller_id: Some(brokers[0]),
            brokers: brokers
                .iter()
                .map(|id| Broker {
                    id: *id,
                    host: "h".into(),
                    port: 9092,
                    rack: None,
                })
                .collect(),
        }
    }

    fn ok_cycle(at: SystemTime, topics: Vec<TopicMetadata>) -> CycleOutcome {
        CycleOutcome {
            finished_at: at,
            duration: Duration::from_millis(30),
            cluster: StageOutcome {
                duration: Duration::from_millis(10),
                result: Ok(desc(&[2, 1])),
            },
            topics: StageOutcome {
                duration: Duration::from_millis(20),
                result: Ok(topics),
            },
        }
    }

    fn failed_cycle(at: SystemTime) -> CycleOutcome {
        CycleOutcome {
            finished_at: at,
            duration: Duration::from_secs(10),
            cluster: StageOutcome {
                duration: Duration::from_secs(5),
                result: Err(SourceError::new("DescribeCluster", "timed out")),
            },
            topics: StageOutcome {
                duration: Duration::from_secs(5),
                result: Err(SourceError::new("Metadata", "all brokers down")),
            },
        }
    }

    #[test]
    fn empty_snapshot_is_not_ready_and_has_zero_counters() {
        let s = ClusterSnapshot::empty("c", &[]);
        assert!(!s.ready() && !s.up);
        assert_eq!(s.stages.len(), Stage::ALL.len());
        assert!(s.stages.values().all(|st| st.errors_total == 0));
    }

    #[test]
    fn successful_cycle_sets_up_ready_and_data() {
        let s0 = ClusterSnapshot::empty("c", &[]);
        let s1 = apply_cycle(
            &s0,
            ok_cycle(t0(), vec![topic("b", 3), topic("a", 1)]),
            &NameFilter::default(),
            Duration::from_secs(60),
        );
        assert!(s1.up && s1.ready());
        assert_eq!(s1.cycles_total, 1);
        assert_eq!(s1.last_success, Some(t0()));
        let topics = &s1.topics.as_ref().unwrap().value;
        assert_eq!(
            topics
                .iter()
                .map(|t| (t.name.as_str(), t.partitions))
                .collect::<Vec<_>>(),
            vec![("a", 1), ("b", 3)]
        );
        let brokers: Vec<i32> = s1
            .cluster
            .as_ref()
            .unwrap()
            .value
            .brokers
            .iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(brokers, vec![1, 2]);
    }

    #[test]
    fn vanished_topic_disappears_with_next_cycle() {
        let s0 = ClusterSnapshot::empty("c", &[]);
        let s1 = apply_cycle(
            &s0,
            ok_cycle(t0(), vec![topic("a", 1), topic("gone", 2)]),
            &NameFilter::default(),
            Duration::from_secs(60),
        );
        let s2 = apply_cycle(
            &s1,
            ok_cycle(t0() + Duration::from_secs(5), vec![topic("a", 1)]),
            &NameFilter::default(),
            Duration::from_secs(60),
        );
        let names: Vec<&str> = s2
            .topics
            .as_ref()
            .unwrap()
            .value
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, vec!["a"]);
    }

    #[test]
    fn failure_keeps_stale_data_until_max_staleness_then_drops_it() {
        let max = Duration::from_secs(60);
        let s0 = ClusterSnapshot::empty("c", &[]);
        let s1 = apply_cycle(&s0, ok_cycle(t0(), vec![topic("a", 1)]), &NameFilter::default(), max);
        let s2 = apply_cycle(
            &s1,
            failed_cycle(t0() + Duration::from_secs(30)),
            &NameFilter::default(),
            max,
        );
        assert!(!s2.up);
        assert!(s2.ready(), "readiness is sticky once every stage succeeded");
        assert_eq!(s2.topics.as_ref().unwrap().collected_at, t0());
        assert_eq!(s2.stages[&Stage::Topics].errors_total, 1);
        assert_eq!(s2.stages[&Stage::Cluster].errors_total, 1);
        assert_eq!(s2.last_success, Some(t0()));
        let s3 = apply_cycle(
            &s2,
            failed_cycle(t0() + Duration::from_secs(61)),
            &NameFilter::default(),
            max,
        );
        assert!(s3.topics.is_none() && s3.cluster.is_none());
        assert_eq!(s3.stages[&Stage::Topics].errors_total, 2);
        assert!(s3.stages[&Stage::Topics]
            .last_error
            .as_deref()
            .unwrap()
            .contains("all brokers down"));
    }

    #[test]
    fn partial_failure_marks_down_but_keeps_fresh_stage() {
        let s0 = ClusterSnapshot::empty("c", &[]);
        let mut cyc = ok_cycle(t0(), vec![topic("a", 2)]);
        cyc.cluster.result = Err(SourceError::new("DescribeCluster", "boom"));
        let s1 = apply_cycle(&s0, cyc, &NameFilter::default(), Duration::from_secs(60));
        assert!(!s1.up && !s1.ready());
        assert!(s1.cluster.is_none());
        assert_eq!(s1.topics.as_ref().unwrap().value.len(), 1);
        assert_eq!(s1.last_success, None);
    }

    #[test]
    fn topic_filter_applies() {
        let f = NameFilter::new(&[], &["__.*"]).unwrap();
        let t = topic_states(vec![topic("__consumer_offsets", 50), topic("x", 1)], &f);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "x");
    }

    #[test]
    fn clock_going_backwards_is_zero_age() {
        assert_eq!(age(t0(), t0() + Duration::from_secs(5)), Duration::ZERO);
    }
}
