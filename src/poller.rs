//! One task per cluster: every interval it runs a collection cycle on a blocking thread. The
//! cycle folds each stage's outcome into memory as it arrives and publishes a new snapshot with
//! an atomic pointer swap ([`cycle`]), so a stage waiting on a dead broker never holds back the
//! others' results.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::ClusterConfig;
use crate::kafka::{KafkaSource, TopicPartition};
use crate::policy::PolicySlot;
use crate::snapshot::{ClusterSnapshot, Memory, PartitionCount, SnapshotSlot, Stage, StageOutcome};

mod cycle;
mod requests;

pub use cycle::{run_cycle, Publish};
pub use requests::collect_io;
use requests::timed;

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
            let slot = Arc::clone(&self.slot);
            let job = tokio::task::spawn_blocking(move || {
                let mut publish = |s: Arc<ClusterSnapshot>| slot.store(s);
                let snap = run_cycle(source.as_ref(), &cfg, &policy, &mut mem, &mut publish);
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
            // Publications within the cycle carry the previous cycle's health.
            let prev = self.slot.load_full();
            self.log_outcome(&snapshot, prev.up || prev.cycles_total == 0);
            self.slot.store(snapshot);
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
mod down_tests;
#[cfg(test)]
mod tests;
