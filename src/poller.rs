//! One task per cluster: every interval it runs a collection cycle on a blocking thread, folds
//! the result into a new snapshot and publishes it with an atomic pointer swap.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::ClusterConfig;
use crate::kafka::KafkaSource;
use crate::snapshot::{apply_cycle, ClusterSnapshot, CycleOutcome, Stage, StageOutcome};

/// Where a cluster's current snapshot lives. Scrapes `load()` it; the poller `store()`s.
pub type SnapshotSlot = Arc<ArcSwap<ClusterSnapshot>>;

/// Runs all stages once against `source`. Blocking; call from a blocking thread.
pub fn collect_cycle(source: &dyn KafkaSource, timeout: Duration) -> CycleOutcome {
    let started = Instant::now();
    let cluster = timed(|| source.describe_cluster(timeout));
    let topics = timed(|| source.topic_metadata(timeout));
    CycleOutcome {
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        cluster,
        topics,
    }
}

fn timed<T>(f: impl FnOnce() -> Result<T, crate::kafka::SourceError>) -> StageOutcome<T> {
    let t = Instant::now();
    let result = f();
    StageOutcome {
        duration: t.elapsed(),
        result,
    }
}

/// The collection loop of one cluster.
pub struct Poller {
    cfg: ClusterConfig,
    source: Arc<dyn KafkaSource>,
    slot: SnapshotSlot,
}

impl Poller {
    pub fn new(cfg: ClusterConfig, source: Arc<dyn KafkaSource>, slot: SnapshotSlot) -> Self {
        Self { cfg, source, slot }
    }

    /// Collects every `interval` until `shutdown` turns true. A cycle that overruns the interval
    /// delays the next one instead of queueing a burst.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.cfg.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let cluster = self.cfg.name.as_str();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            let source = Arc::clone(&self.source);
            let timeout = self.cfg.timeout;
            let job = tokio::task::spawn_blocking(move || collect_cycle(source.as_ref(), timeout));
            let outcome = tokio::select! {
                r = job => match r {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!(cluster, error = %e, "collection cycle panicked; keeping the previous snapshot");
                        continue;
                    }
                },
                // Shutdown does not wait for an in-flight blocking request.
                _ = shutdown.changed() => break,
            };
            let prev = self.slot.load_full();
            self.log_outcome(&outcome, prev.up || prev.cycles_total == 0);
            let next = apply_cycle(&prev, outcome, &self.cfg.topics, self.cfg.max_staleness);
            self.slot.store(Arc::new(next));
        }
        tracing::debug!(cluster, "poller stopped");
    }

    /// Logs failures when they start (warn) and recoveries (info); repeated failures go to
    /// debug so an outage does not flood the log — the metrics carry the ongoing state.
    fn log_outcome(&self, o: &CycleOutcome, was_up: bool) {
        let cluster = self.cfg.name.as_str();
        let failures: Vec<String> = [
            (Stage::Cluster, o.cluster.result.as_ref().err()),
            (Stage::Topics, o.topics.result.as_ref().err()),
        ]
        .into_iter()
        .filter_map(|(s, e)| e.map(|e| format!("{}: {e}", s.as_str())))
        .collect();
        let duration_ms = o.duration.as_millis() as u64;
        let errors = failures.join("; ");
        match (failures.is_empty(), was_up) {
            (true, true) => tracing::debug!(cluster, duration_ms, "collection cycle complete"),
            (true, false) => tracing::info!(cluster, duration_ms, "collection recovered"),
            (false, true) => tracing::warn!(cluster, duration_ms, errors, "collection cycle failed"),
            (false, false) => tracing::debug!(cluster, duration_ms, errors, "collection cycle failed again"),
        }
    }
}
