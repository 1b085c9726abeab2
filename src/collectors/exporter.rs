//! Self-metrics: build, per-cluster health of collection, per-stage duration, errors and age.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{cluster_labels, counters, gauges, infos, unix_seconds, with, Area, Labels};
use crate::kafka::{ClientErrorKind, ClientErrors};
use crate::selfmetrics::Rejections;
use crate::shard::Shard;
use crate::snapshot::{age, ClusterSnapshot};

#[derive(Debug)]
pub struct ExporterArea {
    /// This process's shard, exported as `kafka_slo_exporter_shard_info`.
    pub shard: Shard,
    /// Each cluster's Kafka client error counts, by cluster name.
    pub client_errors: Vec<(String, ClientErrors)>,
    /// The HTTP endpoint's refusals.
    pub rejections: Rejections,
}

impl ExporterArea {
    /// The client errors of `cluster`, every kind listed (all zero for a cluster without
    /// clients yet).
    fn client_errors(&self, cluster: &str) -> Vec<(ClientErrorKind, u64)> {
        self.client_errors
            .iter()
            .find(|(n, _)| n == cluster)
            .map_or_else(|| ClientErrors::new().counts(), |(_, e)| e.counts())
    }
}

impl Area for ExporterArea {
    /// Data ages grow with the scrape time.
    fn scrape_time(&self) -> bool {
        true
    }

    fn encode(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        now: SystemTime,
        enc: &mut DescriptorEncoder,
    ) -> std::fmt::Result {
        let build: Vec<(Labels, Labels)> = vec![(
            Vec::new(),
            vec![
                ("version", Cow::Borrowed(env!("CARGO_PKG_VERSION"))),
                (
                    "revision",
                    Cow::Borrowed(option_env!("KSE_GIT_REVISION").unwrap_or("unknown")),
                ),
                ("rdkafka_version", Cow::Owned(crate::kafka::librdkafka_version())),
            ],
        )];
        infos(
            enc,
            "kafka_slo_exporter_build",
            "Build of the running exporter (value 1).",
            &build,
        )?;
        let rejected: Vec<(Labels, u64)> = self
            .rejections
            .counts()
            .into_iter()
            .map(|(r, n)| (vec![("reason", Cow::Borrowed(r.as_str()))], n))
            .collect();
        counters(
            enc,
            "kafka_slo_exporter_http_rejections",
            "Requests and connections the HTTP endpoint refused, by reason: unauthorized, tls_handshake, plain_http, header_too_large, body, method, malformed, header_timeout, evicted, write_timeout.",
            None,
            &rejected,
        )?;
        let shard: Vec<(Labels, Labels)> = vec![(
            Vec::new(),
            vec![
                ("shard", Cow::Owned(self.shard.index().to_string())),
                ("total_shards", Cow::Owned(self.shard.total().to_string())),
            ],
        )];
        infos(
            enc,
            "kafka_slo_exporter_shard",
            "This process's shard of the topics and consumer groups, and the number of shards (value 1).",
            &shard,
        )?;

        let mut up = Vec::new();
        let mut cycles = Vec::new();
        let mut cycle_duration = Vec::new();
        let mut last_success = Vec::new();
        let mut stage_duration = Vec::new();
        let mut stage_errors = Vec::new();
        let mut stage_success = Vec::new();
        let mut data_age = Vec::new();
        let mut reads = Vec::new();
        let mut cache = Vec::new();
        let mut client_errors = Vec::new();
        let mut offset_errors = Vec::new();

        for c in clusters {
            let base = cluster_labels(c);
            up.push((base.clone(), if c.up { 1.0 } else { 0.0 }));
            cycles.push((base.clone(), c.cycles_total));
            if let Some(d) = c.last_cycle_duration {
                cycle_duration.push((base.clone(), d.as_secs_f64()));
            }
            if let Some(t) = c.last_success {
                last_success.push((base.clone(), unix_seconds(t)));
            }
            reads.push((
                with(&base, [("purpose", Cow::Borrowed("time_lag"))]),
                c.record_reads_total,
            ));
            reads.push((
                with(&base, [("purpose", Cow::Borrowed("replay_window"))]),
                c.replay_reads_total,
            ));
            cache.push((base.clone(), c.record_cache_entries as f64));
            for (kind, n) in self.client_errors(&c.name) {
                client_errors.push((with(&base, [("kind", Cow::Borrowed(kind.as_str()))]), n));
            }
            offset_errors.push((base.clone(), c.partition_offset_errors as f64));
            for (stage, st) in &c.stages {
                let l = with(&base, [("stage", Cow::Borrowed(stage.as_str()))]);
                stage_errors.push((l.clone(), st.errors_total));
                if let Some(d) = st.last_duration {
                    stage_duration.push((l.clone(), d.as_secs_f64()));
                }
                if let Some(t) = st.last_success {
                    stage_success.push((l.clone(), unix_seconds(t)));
                }
                if let Some(t) = c.data_at.get(stage) {
                    data_age.push((l, age(now, *t).as_secs_f64()));
                }
            }
        }

        gauges(
            enc,
            "kafka_slo_exporter_cluster_up",
            "1 if the most recent collection cycle of the cluster completed every stage, else 0.",
            None,
            &up,
        )?;
        counters(
            enc,
            "kafka_slo_exporter_cycles",
            "Collection cycles run for the cluster.",
            None,
            &cycles,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_cycle_duration",
            "Duration of the most recent collection cycle.",
            Some(Unit::Seconds),
            &cycle_duration,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_last_success_timestamp",
            "Unix time at which the most recent fully successful cycle ended.",
            Some(Unit::Seconds),
            &last_success,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_stage_duration",
            "Duration of the stage in the most recent cycle.",
            Some(Unit::Seconds),
            &stage_duration,
        )?;
        counters(
            enc,
            "kafka_slo_exporter_errors",
            "Failed runs of a collection stage, by cluster and stage.",
            None,
            &stage_errors,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_stage_last_success_timestamp",
            "Unix time of the most recent successful run of the stage.",
            Some(Unit::Seconds),
            &stage_success,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_data_age",
            "Age of the stage's data being served; grows while collection fails, series vanish after max_staleness.",
            Some(Unit::Seconds),
            &data_age,
        )?;
        counters(
            enc,
            "kafka_slo_exporter_kafka_client_errors",
            "Errors librdkafka reported for the cluster's connections, by kind: authentication, tls, transport, resolve, all_brokers_down, other.",
            None,
            &client_errors,
        )?;
        counters(
            enc,
            "kafka_slo_exporter_record_reads",
            "Records read (cache misses) to timestamp committed offsets (purpose time_lag) or log start offsets (purpose replay_window).",
            None,
            &reads,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_record_cache_entries",
            "Cached timestamps of records at committed offsets.",
            None,
            &cache,
        )?;
        gauges(
            enc,
            "kafka_slo_exporter_partition_offset_errors",
            "Partitions whose ListOffsets failed in the most recent cycle; their offset series are withdrawn.",
            None,
            &offset_errors,
        )
    }
}
