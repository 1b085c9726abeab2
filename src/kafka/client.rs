//! [`KafkaSource`] over an rdkafka admin client.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use super::{ffi, ClusterDescription, KafkaSource, PartitionMetadata, SourceError, TopicMetadata};
use crate::config::ClusterConfig;

/// Client properties the exporter sets unless the user overrides them. A monitoring client
/// should notice a recovered broker within about a second, and must not pretend to be an
/// application in broker logs.
const DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    ("client.id", "kafka-slo-exporter"),
    ("reconnect.backoff.ms", "100"),
    ("reconnect.backoff.max.ms", "1000"),
    ("log.connection.close", "false"),
];

/// Routes librdkafka's log lines and errors into `tracing`, tagged with the cluster name.
pub struct ExporterContext {
    cluster: String,
}

impl ClientContext for ExporterContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let cluster = self.cluster.as_str();
        // librdkafka reports every failed connection attempt; the exporter reports the outcome of
        // each cycle itself, so client chatter is kept one level lower than its own.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Info => tracing::debug!(target: "librdkafka", cluster, facility = fac, "{message}"),
            RDKafkaLogLevel::Debug => tracing::trace!(target: "librdkafka", cluster, facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", cluster = self.cluster.as_str(), %error, "{reason}");
    }
}

/// The production [`KafkaSource`]: one long-lived admin client per cluster.
pub struct RdKafkaSource {
    admin: AdminClient<ExporterContext>,
}

impl RdKafkaSource {
    /// Creates the client. Does not connect yet; fails only on properties librdkafka rejects,
    /// returning the property (when librdkafka names one) and its reason, which never echoes
    /// secret values.
    pub fn new(cfg: &ClusterConfig) -> Result<Self, (Option<String>, String)> {
        let mut cc = ClientConfig::new();
        for (k, v) in DEFAULT_PROPERTIES {
            cc.set(*k, *v);
        }
        cc.set("bootstrap.servers", cfg.bootstrap_servers.join(","));
        cc.set("socket.timeout.ms", cfg.timeout.as_millis().max(10).to_string());
        for (k, v) in &cfg.client_properties {
            cc.set(k, v);
        }
        cc.set_log_level(RDKafkaLogLevel::Info);
        let context = ExporterContext {
            cluster: cfg.name.clone(),
        };
        let admin = cc.create_with_context(context).map_err(|e| match e {
            KafkaError::ClientConfig(_, desc, key, _) => (Some(key), desc),
            KafkaError::ClientCreation(msg) => (None, msg),
            other => (None, other.to_string()),
        })?;
        Ok(Self { admin })
    }
}

impl KafkaSource for RdKafkaSource {
    fn describe_cluster(&self, timeout: Duration) -> Result<ClusterDescription, SourceError> {
        ffi::describe_cluster(self.admin.inner().native_ptr(), timeout)
    }

    fn topic_metadata(&self, timeout: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        let md = self
            .admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|e| SourceError::new("Metadata", e.to_string()))?;
        let mut topics: Vec<TopicMetadata> = md
            .topics()
            .iter()
            // A topic-level error (e.g. being deleted, authorization) means the entry holds no
            // usable partitions; it is left out rather than reported with zero partitions.
            .filter(|t| t.error().is_none())
            .map(|t| {
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions()
                    .iter()
                    .map(|p| PartitionMetadata {
                        id: p.id(),
                        leader: (p.leader() >= 0).then_some(p.leader()),
                        replicas: p.replicas().to_vec(),
                        isr: p.isr().to_vec(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.id);
                TopicMetadata {
                    name: t.name().to_string(),
                    partitions,
                }
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }
}
