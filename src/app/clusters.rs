//! The clusters being watched: each runs its poller, delivery probe and Schema Registry task
//! in its own supervisor group, so that a reload can stop, start or restart one cluster and
//! leave the others (their tasks and snapshot slots) untouched.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::collectors::SideSlots;
use crate::config::{ClusterConfig, Config};
use crate::error::AppError;
use crate::kafka::{ClientErrors, KafkaSource, ReaderStats};
use crate::policy::{Policy, PolicySlot};
use crate::poller::Poller;
use crate::reload::ClusterDiff;
use crate::selfmetrics::{Rejections, ReloadStatus};
use crate::shard::Shard;
use crate::snapshot::{ClusterSnapshot, SnapshotSlot};
use crate::supervisor::Supervisor;

/// What [`super::load`] created per cluster, in configuration order.
pub struct Clients {
    pub sources: Vec<Arc<dyn KafkaSource>>,
    pub client_errors: Vec<ClientErrors>,
    pub reader_stats: Vec<ReaderStats>,
}

/// One cluster whose tasks run: what the collectors read from it.
struct Running {
    cfg: ClusterConfig,
    slot: SnapshotSlot,
    probe: Option<crate::probe::ProbeSlot>,
    registry: Option<crate::registry::RegistrySlot>,
    client_errors: ClientErrors,
    reader_stats: ReaderStats,
}

/// The running clusters, in the order of the configuration, and the policy their pollers read.
pub struct Clusters {
    running: Vec<Running>,
    policy: PolicySlot,
    shard: Shard,
}

impl Clusters {
    /// Starts every cluster of `config`, each under its group of `supervisor`.
    pub fn start(
        config: &Config,
        policy: Policy,
        clients: Clients,
        shard: Shard,
        supervisor: &mut Supervisor,
    ) -> Result<Self, AppError> {
        let mut clusters = Clusters {
            running: Vec::with_capacity(config.clusters.len()),
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            shard,
        };
        clusters.launch(config, clients, &ClusterDiff::default(), Vec::new(), supervisor)?;
        Ok(clusters)
    }

    /// Moves to a reloaded, validated configuration: the removed and changed clusters' groups
    /// are stopped (each waited for up to `limit`), then the added and changed ones start; the
    /// unchanged ones keep running. The policy applies from each poller's next cycle.
    pub async fn reload(
        &mut self,
        config: &Config,
        policy: Policy,
        clients: Clients,
        supervisor: &mut Supervisor,
        limit: Duration,
    ) -> Result<ClusterDiff, AppError> {
        let running: Vec<ClusterConfig> = self.running.iter().map(|r| r.cfg.clone()).collect();
        let diff = crate::reload::diff(&running, &config.clusters);
        for cluster in diff.removed.iter().chain(&diff.changed) {
            let left = supervisor.stop_group(cluster, limit).await;
            if left.is_empty() {
                tracing::info!(cluster = cluster.as_str(), "cluster stopped");
            } else {
                let left = left.join(", ");
                tracing::warn!(
                    cluster = cluster.as_str(),
                    running = left.as_str(),
                    "cluster stopped with tasks still finishing"
                );
            }
        }
        self.policy.store(Arc::new(policy));
        let previous = std::mem::take(&mut self.running);
        self.launch(config, clients, &diff, previous, supervisor)?;
        Ok(diff)
    }

    /// Makes `config`'s clusters the running ones: those `diff` keeps are taken from
    /// `previous`, the others started. A cluster that cannot start is left out and its error
    /// returned once the others have started.
    fn launch(
        &mut self,
        config: &Config,
        clients: Clients,
        diff: &ClusterDiff,
        mut previous: Vec<Running>,
        supervisor: &mut Supervisor,
    ) -> Result<(), AppError> {
        let mut failure = None;
        let clients = clients
            .sources
            .into_iter()
            .zip(clients.client_errors)
            .zip(clients.reader_stats);
        for (cfg, ((source, errors), stats)) in config.clusters.iter().zip(clients) {
            let kept = previous
                .iter()
                .position(|r| r.cfg.name == cfg.name && diff.keeps(&cfg.name));
            if let Some(i) = kept {
                self.running.push(previous.swap_remove(i));
                continue;
            }
            match self.start_one(cfg, source, errors, stats, supervisor.group(&cfg.name)) {
                Ok(r) => self.running.push(r),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Starts one cluster's poller and (on the shard that runs cluster-wide work) its delivery
    /// probe and Schema Registry task under `group`.
    fn start_one(
        &self,
        cfg: &ClusterConfig,
        source: Arc<dyn KafkaSource>,
        client_errors: ClientErrors,
        reader_stats: ReaderStats,
        group: &mut Supervisor,
    ) -> Result<Running, AppError> {
        let cluster_wide = self.shard.owns_cluster_wide();
        let mut probe_slot = None;
        if let Some(probe) = cfg.probe.as_ref().filter(|_| cluster_wide) {
            let slot: crate::probe::ProbeSlot = Arc::new(ArcSwap::from_pointee(crate::probe::ProbeSnapshot::default()));
            let thread = crate::probe::spawn(
                cfg.clone(),
                probe.clone(),
                client_errors.clone(),
                Arc::clone(&slot),
                group.signal(),
            )
            .map_err(|e| AppError::Runtime(format!("cannot start the probe thread: {e}")))?;
            group.adopt_thread(format!("probe {}", cfg.name), thread);
            probe_slot = Some(slot);
            tracing::info!(
                cluster = cfg.name.as_str(),
                topic = probe.topic.as_str(),
                "delivery probe started"
            );
        }
        let slot: SnapshotSlot = Arc::new(ArcSwap::from_pointee(ClusterSnapshot::empty(
            &cfg.name,
            &cfg.labels,
            cfg.lag.granularity,
        )));
        // The Schema Registry task (if configured) only reads this cluster's snapshots.
        let mut registry_slot = None;
        if cluster_wide {
            if let Some((registry, task)) =
                crate::registry::spawn(cfg, &client_errors, Arc::clone(&slot), group.signal())
            {
                registry_slot = Some(registry);
                group.adopt_task(format!("schema registry {}", cfg.name), task);
            }
        }
        let poller = Poller::new(cfg.clone(), Arc::clone(&self.policy), source, Arc::clone(&slot));
        group.task(format!("poller {}", cfg.name), poller.run(group.signal()));
        if let Some((reader, reason)) = reader_stats.reader() {
            tracing::info!(
                cluster = cfg.name.as_str(),
                reader = reader.as_str(),
                reason = reason.as_str(),
                "collection reader chosen"
            );
        }
        tracing::info!(
            cluster = cfg.name.as_str(),
            bootstrap_servers = cfg.bootstrap_servers.join(",").as_str(),
            interval = %humantime::format_duration(cfg.interval),
            shard = %self.shard,
            "watching cluster"
        );
        Ok(Running {
            cfg: cfg.clone(),
            slot,
            probe: probe_slot,
            registry: registry_slot,
            client_errors,
            reader_stats,
        })
    }

    /// This process's shard.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The snapshot slots of the running clusters, in configuration order.
    pub fn slots(&self) -> Vec<SnapshotSlot> {
        self.running.iter().map(|r| Arc::clone(&r.slot)).collect()
    }

    /// What the collectors read beside the Kafka snapshots of the running clusters.
    pub fn side(&self, rejections: &Rejections, reloads: &ReloadStatus) -> SideSlots {
        let named = |r: &Running| r.cfg.name.clone();
        SideSlots {
            probes: self
                .running
                .iter()
                .filter_map(|r| Some((named(r), Arc::clone(r.probe.as_ref()?))))
                .collect(),
            registries: self
                .running
                .iter()
                .filter_map(|r| Some((named(r), Arc::clone(r.registry.as_ref()?))))
                .collect(),
            client_errors: self
                .running
                .iter()
                .map(|r| (named(r), r.client_errors.clone()))
                .collect(),
            reader_stats: self
                .running
                .iter()
                .map(|r| (named(r), r.reader_stats.clone()))
                .collect(),
            rejections: rejections.clone(),
            reloads: reloads.clone(),
        }
    }
}
