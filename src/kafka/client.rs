//! [`KafkaSource`] over an rdkafka admin client.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;

use super::context::{base_config, creation_error, log_level, ExporterContext};
use super::ffi::{self, Polled};
use super::reader::{read_rounds, READ_CHUNK};
use super::{
    ClientErrors, ClusterDescription, GroupDescription, GroupListing, GroupOffsets, GroupState, KafkaSource,
    OffsetSpec, PartitionMetadata, PartitionOffset, RecordAt, SourceError, TopicConfig, TopicMetadata, TopicPartition,
};
use crate::config::ClusterConfig;

/// Admin clients beside the main one, for the bulk requests of a cycle. A Kafka broker handles
/// the requests of one connection strictly one after another, and librdkafka keeps one
/// connection per broker and client: ListConsumerGroupOffsets costs two requests per group
/// (FindCoordinator and OffsetFetch), so on one connection thousands of groups queue up behind
/// each other, and every other request of the cycle waits behind them. Committed offsets go
/// over these clients only, ListOffsets batches over these and the main one, so that brokers
/// serve them on several connections in parallel.
const HELPER_CLIENTS: usize = 3;

/// The production [`KafkaSource`]: one long-lived admin client per cluster, helper admin clients
/// for bulk requests (created on first use), and a record reader for each
/// [`KafkaSource::records_at`] call.
pub struct RdKafkaSource {
    admin: AdminClient<ExporterContext>,
    /// See [`HELPER_CLIENTS`]; empty if they could not be created (the main client
    /// fetches committed offsets then). `None` until first use and after [`Self::retire_helpers`].
    helpers: Mutex<Option<Arc<Vec<AdminClient<ExporterContext>>>>>,
    pub(super) cluster: String,
    /// The admin client's properties, the base of the reader's. Holds secrets: never log it.
    pub(super) config: ClientConfig,
    /// Held while a reader reads, so that reads of concurrent callers do not interleave.
    reading: Mutex<()>,
}

impl RdKafkaSource {
    /// Creates the client. Does not connect yet; fails only on properties librdkafka rejects,
    /// returning the property (when librdkafka names one) and its reason, which never echoes
    /// secret values.
    ///
    /// Every client of the source reports its connection errors into `errors`.
    pub fn new(cfg: &ClusterConfig, errors: &ClientErrors) -> Result<Self, (Option<String>, String)> {
        let cc = base_config(cfg);
        let context = ExporterContext::new(cfg, errors);
        let admin = cc.create_with_context(context).map_err(creation_error)?;
        Ok(Self {
            admin,
            helpers: Mutex::new(None),
            cluster: cfg.name.clone(),
            config: cc,
            reading: Mutex::new(()),
        })
    }

    /// A context for another client of this cluster, counting into the same errors.
    pub(super) fn new_context(&self) -> ExporterContext {
        let main = self.admin.inner().context();
        ExporterContext {
            cluster: main.cluster.clone(),
            errors: main.errors.clone(),
        }
    }

    /// Serves the clients' main queues (see `serve_main_queue`) for a caller that uses this
    /// source only for record reads.
    pub(crate) fn serve(&self) {
        self.serve_main_queue();
    }

    /// The admin client's handle, after serving its main queue.
    fn native(&self) -> ffi::ClientRef<'_> {
        self.serve_main_queue();
        ffi::ClientRef::of(self.admin.inner())
    }

    /// Serves the admin client's main queue. librdkafka posts log lines and error events there
    /// (the `rdkafka` crate sets `log.queue`), but the crate's `AdminClient` never polls that
    /// queue: without this, the client's logs would never reach `tracing` and the queue would
    /// grow for as long as the process runs (e.g. one error per reconnect attempt while a broker
    /// is down). Every call serves it, so logs lag by up to one collection interval.
    fn serve_main_queue(&self) {
        let extra = self.helpers.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let extra = extra.as_deref().map(Vec::as_slice).unwrap_or_default();
        for client in std::iter::once(&self.admin).chain(extra) {
            if let Some(events) = ffi::EventQueue::main(ffi::ClientRef::of(client.inner())) {
                self.drain(&events, client.inner().context());
            }
        }
    }

    /// The helper admin clients ([`HELPER_CLIENTS`]), created on first use.
    fn helpers(&self) -> Arc<Vec<AdminClient<ExporterContext>>> {
        let mut slot = self.helpers.lock().unwrap_or_else(PoisonError::into_inner);
        let clients = slot.get_or_insert_with(|| {
            let mut clients = Vec::with_capacity(HELPER_CLIENTS);
            for _ in 0..HELPER_CLIENTS {
                match self.config.create_with_context(self.new_context()) {
                    Ok(c) => clients.push(c),
                    Err(e) => {
                        tracing::warn!(
                            cluster = self.cluster.as_str(),
                            "creating a helper admin client failed, using the main one: {}",
                            creation_error(e).1
                        );
                        break;
                    }
                }
            }
            Arc::new(clients)
        });
        Arc::clone(clients)
    }

    /// Replaces the helper clients (the old ones are destroyed once their last call returns)
    /// after a coordinator request through them timed out. The new ones are made at once, so
    /// they connect during the wait for the next cycle: made on first use instead, a loaded or
    /// slow cluster can time out their first requests again, and every cycle would then retire
    /// clients that never got to finish bootstrapping.
    ///
    /// librdkafka keeps a timed-out DescribeConsumerGroups or ListConsumerGroupOffsets
    /// request waiting for its group coordinator; when that coordinator comes up later (a
    /// restarted broker, a coordinator failover), librdkafka releases the request's
    /// bookkeeping twice and aborts the process on an assertion. Destroying the client fails
    /// such waiting requests cleanly, so the clients that made them are not kept.
    fn retire_helpers(&self) {
        let retired = self.helpers.lock().unwrap_or_else(PoisonError::into_inner).take();
        if retired.is_some_and(|c| !c.is_empty()) {
            tracing::debug!(
                cluster = self.cluster.as_str(),
                "replacing the helper admin clients after a timed-out coordinator request"
            );
            self.helpers();
        }
    }

    /// Routes the events waiting on a client queue to `tracing`. Bounded so a flood cannot
    /// stall a call; the rest waits for the next one.
    fn drain(&self, events: &ffi::EventQueue<'_>, context: &ExporterContext) {
        for _ in 0..10_000 {
            match events.poll(Duration::ZERO) {
                None => break,
                Some(polled) => self.route(polled, context),
            }
        }
    }

    /// Logs an event that is not part of a request's answer: log lines at their level, errors
    /// at debug, and statistics (only emitted when `statistics.interval.ms` is set) at debug
    /// under the target `librdkafka::statistics`, one JSON document per line.
    pub(super) fn route(&self, polled: Polled, context: &ExporterContext) {
        let cluster = self.cluster.as_str();
        match polled {
            Polled::Log {
                level,
                facility,
                message,
            } => context.log(log_level(level), &facility, &message),
            Polled::Error { code, message } => {
                context.errors.count(Some(code), &message);
                tracing::debug!(target: "librdkafka", cluster, "{message}")
            }
            Polled::PartitionError { message, .. } => tracing::debug!(target: "librdkafka", cluster, "{message}"),
            Polled::Stats(json) => tracing::debug!(target: "librdkafka::statistics", cluster, "{json}"),
            Polled::Record { .. } | Polled::Eof { .. } | Polled::Other => {}
        }
    }
}

impl RdKafkaSource {
    /// ListConsumerGroupOffsets spread over `helpers` (or the main client without them).
    fn group_offsets_on(
        &self,
        helpers: &[AdminClient<ExporterContext>],
        groups: &[String],
        concurrency: usize,
        timeout: Duration,
    ) -> Result<Vec<GroupOffsets>, SourceError> {
        let clients: Vec<&AdminClient<ExporterContext>> = match helpers {
            [] => vec![&self.admin],
            extra => extra.iter().collect(),
        };
        let k = clients.len().min(groups.len()).max(1);
        if k == 1 {
            return ffi::group_offsets(
                ffi::ClientRef::of(clients[0].inner()),
                groups,
                concurrency,
                timeout,
                timeout / 2,
            );
        }
        // Group i goes to client i mod k; `concurrency` is shared out between the clients.
        let shares: Vec<Vec<String>> = (0..k)
            .map(|j| groups.iter().skip(j).step_by(k).cloned().collect())
            .collect();
        let per_client = concurrency.div_ceil(k).max(1);
        let results: Vec<Result<Vec<GroupOffsets>, SourceError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter()
                .zip(&shares)
                .map(|(client, share)| {
                    scope.spawn(move || {
                        ffi::group_offsets(
                            ffi::ClientRef::of(client.inner()),
                            share,
                            per_client,
                            timeout,
                            timeout / 2,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(SourceError::new("ListConsumerGroupOffsets", "worker panicked")))
                })
                .collect()
        });
        let mut per_share = Vec::with_capacity(k);
        for r in results {
            per_share.push(r?.into_iter());
        }
        // Back into input order: entry i is the (i / k)-th of share i mod k.
        let mut out = Vec::with_capacity(groups.len());
        for i in 0..groups.len() {
            if let Some(g) = per_share[i % k].next() {
                out.push(g);
            }
        }
        Ok(out)
    }
}

/// Whether a request error is a timeout (librdkafka's "Local: Timed out", or no answer at all).
fn is_timeout(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("timed out") || m.contains("no response within")
}

impl KafkaSource for RdKafkaSource {
    fn describe_cluster(&self, timeout: Duration) -> Result<ClusterDescription, SourceError> {
        ffi::describe_cluster(self.native(), timeout)
    }

    fn topic_metadata(&self, timeout: Duration) -> Result<Vec<TopicMetadata>, SourceError> {
        self.serve_main_queue();
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
                        elr: None,
                        last_known_elr: None,
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

    fn topic_configs(&self, topics: &[String], timeout: Duration) -> Result<Vec<TopicConfig>, SourceError> {
        ffi::describe_topic_configs(self.native(), topics, timeout)
    }

    fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timeout: Duration,
    ) -> Result<Vec<PartitionOffset>, SourceError> {
        self.serve_main_queue();
        let helpers = self.helpers();
        let clients: Vec<ffi::ClientRef<'_>> = std::iter::once(&self.admin)
            .chain(helpers.iter())
            .map(|c| ffi::ClientRef::of(c.inner()))
            .collect();
        ffi::list_offsets(&clients, partitions, spec, timeout)
    }

    fn list_groups(&self, timeout: Duration) -> Result<Vec<GroupListing>, SourceError> {
        let (groups, errors) = ffi::list_groups(self.native(), timeout)?;
        if groups.is_empty() && !errors.is_empty() {
            return Err(SourceError::new("ListConsumerGroups", errors.join("; ")));
        }
        for error in &errors {
            tracing::warn!(
                cluster = self.cluster.as_str(),
                "ListConsumerGroups: partial result: {error}"
            );
        }
        Ok(groups)
    }

    /// Classic groups are described in one batched request per broker; the rest (KIP-848
    /// groups, or every group when that request fails) with DescribeConsumerGroups. The first
    /// gets half of `timeout`, the second what is left, so a broker that does not answer costs
    /// the classic groups their batch but not their description.
    fn describe_groups(&self, groups: &[String], timeout: Duration) -> Result<Vec<GroupDescription>, SourceError> {
        let started = Instant::now();
        let wanted: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<GroupDescription> = match ffi::describe_classic_groups(self.native(), timeout / 2) {
            Ok(all) => all
                .into_iter()
                .filter(|d| wanted.contains(d.group.as_str()) && d.state != GroupState::Dead && d.error.is_none())
                .collect(),
            Err(e) => {
                tracing::debug!(
                    cluster = self.cluster.as_str(),
                    "describing classic groups in batches failed, describing them one by one: {e}"
                );
                Vec::new()
            }
        };
        let described: HashSet<&str> = out.iter().map(|d| d.group.as_str()).collect();
        let rest: Vec<String> = wanted
            .iter()
            .filter(|g| !described.contains(**g))
            .map(|g| g.to_string())
            .collect();
        if !rest.is_empty() {
            let left = timeout.saturating_sub(started.elapsed()).max(timeout / 2);
            // On a helper client: see `retire_helpers`.
            self.serve_main_queue();
            let helpers = self.helpers();
            let client = ffi::ClientRef::of(helpers.first().unwrap_or(&self.admin).inner());
            let described = ffi::describe_groups(client, &rest, left, timeout / 2);
            let timed_out = match &described {
                Err(e) => is_timeout(&e.message),
                Ok(d) => d.iter().any(|d| d.error.as_deref().is_some_and(is_timeout)),
            };
            if timed_out {
                self.retire_helpers();
            }
            out.extend(described?);
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    fn group_offsets(
        &self,
        groups: &[String],
        concurrency: usize,
        timeout: Duration,
    ) -> Result<Vec<GroupOffsets>, SourceError> {
        self.serve_main_queue();
        let helpers = self.helpers();
        let result = self.group_offsets_on(&helpers, groups, concurrency, timeout);
        let timed_out = match &result {
            Err(e) => is_timeout(&e.message),
            Ok(g) => g.iter().any(|g| g.offsets.as_ref().is_err_and(|e| is_timeout(e))),
        };
        if timed_out {
            self.retire_helpers();
        }
        result
    }

    fn records_at(&self, requests: &[(TopicPartition, i64)], timeout: Duration) -> Result<Vec<RecordAt>, SourceError> {
        self.serve_main_queue();
        let rounds = read_rounds(requests, READ_CHUNK);
        if rounds.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + timeout;
        let _reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        // A reader per call: librdkafka keeps a topic handle and the state of every partition a
        // consumer was ever assigned until the consumer is destroyed (about 3 KB a partition,
        // 30 MB for 10,000), while reads are rare once timestamps are cached. Creating one
        // costs a connection and a Metadata request.
        let reader = self.create_reader()?;
        let mut out = Vec::new();
        for round in &rounds {
            if Instant::now() >= deadline {
                break;
            }
            out.extend(self.read_round(&reader, round, deadline)?);
        }
        out.sort_by(|a, b| (&a.tp, a.requested).cmp(&(&b.tp, b.requested)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_told_apart_from_other_request_errors() {
        assert!(is_timeout(
            "Failed while waiting for response from broker: Local: Timed out"
        ));
        assert!(is_timeout("Local: Timed out"));
        assert!(is_timeout("no response within 2s"));
        assert!(!is_timeout("Broker: Coordinator not available"));
        assert!(!is_timeout("Broker: Group authorization failed"));
    }
}
