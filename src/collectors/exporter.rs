//! Self-metrics: build, per-cluster health of collection, per-stage duration, errors and age.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{base_labels, counter_family, gauge_family, info_family, unix_seconds, Area, Base, NO_LABELS};
use crate::kafka::{ClientErrorKind, ClientErrors, ReaderStats};
use crate::selfmetrics::{Rejections, ReloadStatus};
use crate::shard::Shard;
use crate::snapshot::{age, ClusterSnapshot, StageStats};

type GaugeFn = fn(&ClusterSnapshot) -> Option<f64>;

/// Per-cluster health of collection: name, help, unit, value.
const CLUSTER_HEALTH: &[(&str, &str, Option<Unit>, GaugeFn)] = &[
    (
        "kafka_slo_exporter_cycle_duration",
        "Duration of the most recent collection cycle.",
        Some(Unit::Seconds),
        |c| c.last_cycle_duration.map(|d| d.as_secs_f64()),
    ),
    (
        "kafka_slo_exporter_last_success_timestamp",
        "Unix time at which the most recent fully successful cycle ended.",
        Some(Unit::Seconds),
        |c| c.last_success.map(unix_seconds),
    ),
];

type StageFn = fn(&StageStats) -> Option<f64>;

/// Per-stage gauges from the stage's statistics.
const STAGE_GAUGES: &[(&str, &str, StageFn)] = &[(
    "kafka_slo_exporter_stage_duration",
    "Duration of the stage in the most recent cycle.",
    |s| s.last_duration.map(|d| d.as_secs_f64()),
)];

/// Per-cluster gauges of the record reads and offsets.
const READ_GAUGES: &[(&str, &str, GaugeFn)] = &[
    (
        "kafka_slo_exporter_record_cache_entries",
        "Cached timestamps of records at committed offsets.",
        |c| Some(c.record_cache_entries as f64),
    ),
    (
        "kafka_slo_exporter_partition_offset_errors",
        "Partitions whose ListOffsets failed in the most recent cycle; their offset series are withdrawn.",
        |c| Some(c.partition_offset_errors as f64),
    ),
];

#[derive(Debug)]
pub struct ExporterArea {
    /// This process's shard, exported as `kafka_slo_exporter_shard_info`.
    pub shard: Shard,
    /// Each cluster's Kafka client error counts, by cluster name.
    pub client_errors: Vec<(String, ClientErrors)>,
    /// Each cluster's reader and the requests the native reader sent, by cluster name.
    pub reader_stats: Vec<(String, ReaderStats)>,
    /// The HTTP endpoint's refusals.
    pub rejections: Rejections,
    /// The outcome of the most recent configuration reload.
    pub reloads: ReloadStatus,
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
        self.encode_process(enc)?;
        let bases: Vec<(Base, &ClusterSnapshot)> = clusters.iter().map(|c| (base_labels(c), c.as_ref())).collect();
        encode_cycles(&bases, now, enc)?;
        let client_errors = bases.iter().flat_map(|(b, c)| {
            self.client_errors(&c.name)
                .into_iter()
                .map(move |(kind, n)| ((b.as_slice(), [("kind", kind.as_str())]), n))
        });
        counter_family(enc, "kafka_slo_exporter_kafka_client_errors", "Errors the cluster's Kafka clients reported for their connections, by kind: authentication, tls, transport, resolve, all_brokers_down, other.", None, client_errors)?;
        self.encode_readers(&bases, enc)?;
        let reads = bases.iter().flat_map(|(b, c)| {
            [
                ("time_lag", c.record_reads_total),
                ("replay_window", c.replay_reads_total),
            ]
            .map(|(purpose, n)| ((b.as_slice(), [("purpose", purpose)]), n))
        });
        counter_family(enc, "kafka_slo_exporter_record_reads", "Records read (cache misses) to timestamp committed offsets (purpose time_lag) or log start offsets (purpose replay_window).", None, reads)?;
        for (name, help, f) in READ_GAUGES {
            let samples = bases.iter().filter_map(|(b, c)| f(c).map(|v| (b.as_slice(), v)));
            gauge_family(enc, name, help, None, samples)?;
        }
        Ok(())
    }
}

impl ExporterArea {
    fn reader_stats(&self, cluster: &str) -> Option<&ReaderStats> {
        self.reader_stats.iter().find(|(n, _)| n == cluster).map(|(_, s)| s)
    }

    /// Which reader serves each cluster, and the requests the native reader sent.
    fn encode_readers(&self, bases: &[(Base, &ClusterSnapshot)], enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let readers: Vec<(&Base, String, String)> = bases
            .iter()
            .filter_map(|(b, c)| {
                let (kind, reason) = self.reader_stats(&c.name)?.reader()?;
                Some((b, kind.as_str().to_string(), reason))
            })
            .collect();
        let info = readers
            .iter()
            .map(|(b, kind, reason)| (b.as_slice(), [("reader", kind.as_str()), ("reason", reason.as_str())]));
        info_family(
            enc,
            "kafka_slo_exporter_kafka_reader",
            "The client that reads the cluster's state in the collection cycle (reader native or librdkafka) and why it was chosen (value 1).",
            info,
        )?;
        let requests: Vec<(&Base, &'static str, String, u64)> = bases
            .iter()
            .flat_map(|(b, c)| {
                self.reader_stats(&c.name)
                    .map(|s| s.requests())
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |(api, broker, n)| (b, api, broker, n))
            })
            .collect();
        let requests = requests
            .iter()
            .map(|(b, api, broker, n)| ((b.as_slice(), [("api", *api), ("broker", broker.as_str())]), *n));
        counter_family(enc, "kafka_slo_exporter_kafka_requests", "Kafka requests the native reader sent, by API and broker (node id, or bootstrap before the first metadata).", None, requests)
    }

    /// The process's own families: build, HTTP refusals, configuration reloads, shard.
    fn encode_process(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let rdkafka = crate::kafka::librdkafka_version();
        let build = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", option_env!("KSE_GIT_REVISION").unwrap_or("unknown")),
            ("rdkafka_version", rdkafka.as_str()),
        ];
        let build = std::iter::once((NO_LABELS, build));
        info_family(
            enc,
            "kafka_slo_exporter_build",
            "Build of the running exporter (value 1).",
            build,
        )?;
        let rejected = self
            .rejections
            .counts()
            .into_iter()
            .map(|(r, n)| ([("reason", r.as_str())], n));
        counter_family(enc, "kafka_slo_exporter_http_rejections", "Requests and connections the HTTP endpoint refused, by reason: unauthorized, tls_handshake, plain_http, header_too_large, body, method, malformed, header_timeout, evicted, write_timeout.", None, rejected)?;
        let successful = if self.reloads.successful() { 1.0 } else { 0.0 };
        gauge_family(
            enc,
            "kafka_slo_exporter_config_last_reload_successful",
            "1 if the most recent configuration reload (SIGHUP or POST /-/reload) succeeded or none was asked for, 0 if it failed and the previous configuration still runs.",
            None,
            std::iter::once((NO_LABELS, successful)),
        )?;
        gauge_family(
            enc,
            "kafka_slo_exporter_config_last_reload_success_timestamp",
            "Unix time of the most recent successful configuration load (start-up or reload).",
            Some(&Unit::Seconds),
            std::iter::once((NO_LABELS, self.reloads.last_success())),
        )?;
        let shard = [("shard", self.shard.index()), ("total_shards", self.shard.total())];
        let shard = std::iter::once((NO_LABELS, shard));
        info_family(
            enc,
            "kafka_slo_exporter_shard",
            "This process's shard of the topics and consumer groups, and the number of shards (value 1).",
            shard,
        )
    }
}

/// Health of each cluster's collection cycles and of their stages.
fn encode_cycles(bases: &[(Base, &ClusterSnapshot)], now: SystemTime, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let up = bases.iter().map(|(b, c)| (b.as_slice(), if c.up { 1.0 } else { 0.0 }));
    gauge_family(
        enc,
        "kafka_slo_exporter_cluster_up",
        "1 if the most recent collection cycle of the cluster completed every stage, else 0.",
        None,
        up,
    )?;
    let cycles = bases.iter().map(|(b, c)| (b.as_slice(), c.cycles_total));
    counter_family(
        enc,
        "kafka_slo_exporter_cycles",
        "Collection cycles run for the cluster.",
        None,
        cycles,
    )?;
    for (name, help, unit, f) in CLUSTER_HEALTH {
        let samples = bases.iter().filter_map(|(b, c)| f(c).map(|v| (b.as_slice(), v)));
        gauge_family(enc, name, help, unit.as_ref(), samples)?;
    }
    let stages = || {
        bases.iter().flat_map(|(b, c)| {
            c.stages
                .iter()
                .map(move |(stage, st)| ((b.as_slice(), [("stage", stage.as_str())]), *c, *stage, st))
        })
    };
    for (name, help, f) in STAGE_GAUGES {
        let samples = stages().filter_map(|(l, _, _, st)| f(st).map(|v| (l, v)));
        gauge_family(enc, name, help, Some(&Unit::Seconds), samples)?;
    }
    let errors = stages().map(|(l, _, _, st)| (l, st.errors_total));
    counter_family(
        enc,
        "kafka_slo_exporter_errors",
        "Failed runs of a collection stage, by cluster and stage.",
        None,
        errors,
    )?;
    let success = stages().filter_map(|(l, _, _, st)| st.last_success.map(|t| (l, unix_seconds(t))));
    gauge_family(
        enc,
        "kafka_slo_exporter_stage_last_success_timestamp",
        "Unix time of the most recent successful run of the stage.",
        Some(&Unit::Seconds),
        success,
    )?;
    let data_age =
        stages().filter_map(|(l, c, stage, _)| c.data_at.get(&stage).map(|t| (l, age(now, *t).as_secs_f64())));
    gauge_family(
        enc,
        "kafka_slo_exporter_data_age",
        "Age of the stage's data being served; grows while collection fails, series vanish after max_staleness.",
        Some(&Unit::Seconds),
        data_age,
    )
}
