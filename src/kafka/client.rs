//! [`KafkaSource`] over an rdkafka admin client.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::ffi::{self, Polled};
use super::{
    ClientErrors, ClusterDescription, GroupDescription, GroupListing, GroupOffsets, GroupState, KafkaSource,
    OffsetSpec, PartitionMetadata, PartitionOffset, RecordAt, SourceError, TopicConfig, TopicMetadata, TopicPartition,
};
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

/// Properties of the record reader (see [`KafkaSource::records_at`]), set over the cluster's
/// client properties. librdkafka's `assign()` needs a `group.id`, but the reader only assigns
/// partitions: it never subscribes, joins or commits, so the group never appears on the broker.
/// Fetches are kept small because one record per partition is all it needs; `fetch.max.bytes`
/// is left alone so librdkafka derives it from `queued.max.messages.kbytes` (it must not drop
/// below a user's `message.max.bytes`). An offset below the log start resets to the oldest
/// retained record.
const READER_PROPERTIES: &[(&str, &str)] = &[
    ("group.id", "kafka-slo-exporter-reader"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "true"),
    ("auto.offset.reset", "earliest"),
    ("isolation.level", "read_uncommitted"),
    ("max.partition.fetch.bytes", "65536"),
    ("queued.max.messages.kbytes", "1024"),
    ("queued.min.messages", "1"),
    ("fetch.wait.max.ms", "100"),
];

/// Admin clients beside the main one, for the bulk requests of a cycle. A Kafka broker handles
/// the requests of one connection strictly one after another, and librdkafka keeps one
/// connection per broker and client: ListConsumerGroupOffsets costs two requests per group
/// (FindCoordinator and OffsetFetch), so on one connection thousands of groups queue up behind
/// each other, and every other request of the cycle waits behind them. Committed offsets go
/// over these clients only, ListOffsets batches over these and the main one, so that brokers
/// serve them on several connections in parallel.
const HELPER_CLIENTS: usize = 3;

/// Partitions assigned to the reader at once. A round has a fixed cost of about 1.5 s (5,000
/// reads took 10 s in rounds of 1,000 and 4 s in one round); memory stays bounded by the
/// reader's fetch limits (`queued.max.messages.kbytes`) and about 3 KB of state a partition.
const READ_CHUNK: usize = 5000;

/// Routes librdkafka's log lines and errors into `tracing`, tagged with the cluster name.
pub struct ExporterContext {
    pub(super) cluster: String,
    pub(super) errors: ClientErrors,
}

impl ExporterContext {
    pub(super) fn new(cfg: &ClusterConfig, errors: &ClientErrors) -> Self {
        Self {
            cluster: cfg.name.clone(),
            errors: errors.clone(),
        }
    }
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
        self.errors.count(error.rdkafka_error_code(), reason);
        tracing::debug!(target: "librdkafka", cluster = self.cluster.as_str(), %error, "{reason}");
    }
}

impl ConsumerContext for ExporterContext {}

/// Client properties shared by every client of a cluster: exporter defaults, bootstrap
/// servers, request timeout and the user's properties (which win). Holds secrets: never log it.
pub(super) fn base_config(cfg: &ClusterConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in DEFAULT_PROPERTIES {
        cc.set(*k, *v);
    }
    cc.set("bootstrap.servers", cfg.bootstrap_servers.join(","));
    cc.set("socket.timeout.ms", socket_timeout(cfg.timeout).as_millis().to_string());
    cc.set(
        "socket.connection.setup.timeout.ms",
        connection_setup_timeout(cfg.timeout).as_millis().to_string(),
    );
    for (k, v) in &cfg.client_properties {
        cc.set(k, v);
    }
    cc.set_log_level(RDKafkaLogLevel::Info);
    cc
}

/// librdkafka's per-request (socket) timeout for a stage `timeout`: two fifths of it.
///
/// Admin requests carry their own deadline, at least half the stage timeout for group
/// coordinator requests (see `ffi::may_start`). When a request is in flight to a hung broker
/// and the admin deadline expires first, librdkafka releases the request's completion handle
/// twice and aborts the process; with the socket timeout strictly shorter, the request always
/// fails through its normal response path first.
pub(super) fn socket_timeout(timeout: Duration) -> Duration {
    (timeout * 2 / 5).max(Duration::from_millis(10))
}

/// librdkafka's limit on setting up a broker connection (TCP connect, TLS, ApiVersion, SASL)
/// for a stage `timeout`: the timeout itself, at least librdkafka's minimum of 1 s.
///
/// librdkafka fails the requests queued on a connection that is still being set up when their
/// timeout passes, but it only gives up on the connection itself after this limit (30 s by
/// default). After a congested or cut link recovers, an attempt made during the fault stays
/// pending until the kernel's next SYN retransmission, seconds later (measured: up to 13 s after
/// a throttle was lifted, every request to the broker timing out while a new client was
/// answered at once; `tests/connection_recovery.rs`). A connection that is not up within one
/// stage timeout is of no use to the stage, so it is abandoned and redialled after the
/// reconnect backoff.
pub(super) fn connection_setup_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// The production [`KafkaSource`]: one long-lived admin client per cluster, helper admin clients
/// for bulk requests (created on first use), and a record reader for each
/// [`KafkaSource::records_at`] call.
pub struct RdKafkaSource {
    admin: AdminClient<ExporterContext>,
    /// See [`HELPER_CLIENTS`]; empty if they could not be created (the main client
    /// fetches committed offsets then). `None` until first use and after [`Self::retire_helpers`].
    helpers: Mutex<Option<Arc<Vec<AdminClient<ExporterContext>>>>>,
    cluster: String,
    /// The admin client's properties, the base of the reader's. Holds secrets: never log it.
    config: ClientConfig,
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
    fn new_context(&self) -> ExporterContext {
        let main = self.admin.inner().context();
        ExporterContext {
            cluster: main.cluster.clone(),
            errors: main.errors.clone(),
        }
    }

    /// The admin client's handle, after serving its main queue.
    fn native(&self) -> *mut rdkafka::bindings::rd_kafka_t {
        self.serve_main_queue();
        self.admin.inner().native_ptr()
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
            if let Some(events) = ffi::EventQueue::main(client.inner().native_ptr()) {
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
    fn drain(&self, events: &ffi::EventQueue, context: &ExporterContext) {
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
    fn route(&self, polled: Polled, context: &ExporterContext) {
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

    fn create_reader(&self) -> Result<BaseConsumer<ExporterContext>, SourceError> {
        let mut cc = self.config.clone();
        for (k, v) in READER_PROPERTIES {
            cc.set(*k, *v);
        }
        cc.create_with_context(self.new_context()).map_err(|e| {
            let (key, reason) = creation_error(e);
            let msg = match key {
                Some(key) => format!("creating the record reader: {key}: {reason}"),
                None => format!("creating the record reader: {reason}"),
            };
            SourceError::new("Fetch", msg)
        })
    }

    /// Reads one round (each partition at most once) with the reader; see [`ReadRound`].
    fn read_round(
        &self,
        reader: &BaseConsumer<ExporterContext>,
        round: &[(TopicPartition, i64)],
        deadline: Instant,
    ) -> Result<Vec<RecordAt>, SourceError> {
        const OP: &str = "Fetch";
        let mut tpl = TopicPartitionList::with_capacity(round.len());
        for (tp, offset) in round {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                .map_err(|e| SourceError::new(OP, e.to_string()))?;
        }
        let events = ffi::EventQueue::consumer(reader.client().native_ptr())
            .ok_or_else(|| SourceError::new(OP, "the record reader has no consumer queue"))?;
        reader
            .assign(&tpl)
            .map_err(|e| SourceError::new(OP, format!("assigning {} partitions: {e}", round.len())))?;
        // Partitions paused in an earlier call stay paused across assign(); resume them all.
        let _ = reader.resume(&tpl);
        let mut state = ReadRound::new(round);
        // Partitions that delivered what was asked for stop fetching; they are paused in batches
        // rather than one by one, each pause being an operation for librdkafka's broker thread.
        let mut finished_batch = TopicPartitionList::new();
        let mut last_pause = Instant::now();
        while !state.is_done() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let polled = events.poll(left.min(Duration::from_millis(100)));
            let idle = polled.is_none();
            let finished = match polled {
                None | Some(Polled::Other) => None,
                Some(Polled::Record {
                    topic,
                    partition,
                    offset,
                    timestamp_ms,
                }) => state
                    .on_record(&topic, partition, offset, timestamp_ms)
                    .then_some((topic, partition)),
                Some(Polled::Eof { topic, partition }) => state.on_end(&topic, partition).then_some((topic, partition)),
                Some(Polled::PartitionError {
                    topic,
                    partition,
                    message,
                }) => {
                    tracing::debug!(
                        cluster = self.cluster.as_str(),
                        topic,
                        partition,
                        "reading a record: {message}"
                    );
                    state.on_end(&topic, partition).then_some((topic, partition))
                }
                Some(Polled::Error { code, message }) => {
                    reader.context().errors.count(Some(code), &message);
                    tracing::debug!(cluster = self.cluster.as_str(), "reading records: {message}");
                    None
                }
                Some(other @ (Polled::Log { .. } | Polled::Stats(_))) => {
                    self.route(other, reader.context());
                    None
                }
            };
            if let Some((topic, partition)) = finished {
                finished_batch.add_partition(&topic, partition);
            }
            if finished_batch.count() > 0
                && (idle || finished_batch.count() >= 100 || last_pause.elapsed() >= Duration::from_millis(20))
            {
                let _ = reader.pause(&finished_batch);
                finished_batch = TopicPartitionList::new();
                last_pause = Instant::now();
            }
        }
        if let Err(e) = reader.unassign() {
            tracing::debug!(cluster = self.cluster.as_str(), "unassigning the record reader: {e}");
        }
        Ok(state.into_records())
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
                clients[0].inner().native_ptr(),
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
                        ffi::group_offsets(client.inner().native_ptr(), share, per_client, timeout, timeout / 2)
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

/// A syslog level as `rdkafka` maps it.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// Splits librdkafka's configuration errors into the property (when it names one) and the
/// reason, which never echoes secret values.
fn creation_error(e: KafkaError) -> (Option<String>, String) {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => (Some(key), desc),
        KafkaError::ClientCreation(msg) => (None, msg),
        other => (None, other.to_string()),
    }
}

/// Splits record requests into rounds in which each partition appears once, with at most `max`
/// partitions per round. Negative (logical) offsets and exact duplicates are dropped.
fn read_rounds(requests: &[(TopicPartition, i64)], max: usize) -> Vec<Vec<(TopicPartition, i64)>> {
    let max = max.max(1);
    let unique: BTreeSet<&(TopicPartition, i64)> = requests.iter().filter(|(_, o)| *o >= 0).collect();
    type Round<'a> = (HashSet<&'a TopicPartition>, Vec<(TopicPartition, i64)>);
    let mut rounds: Vec<Round<'_>> = Vec::new();
    for req in unique {
        let slot = rounds
            .iter()
            .position(|(seen, reqs)| reqs.len() < max && !seen.contains(&req.0));
        let idx = match slot {
            Some(i) => i,
            None => {
                rounds.push((HashSet::new(), Vec::new()));
                rounds.len() - 1
            }
        };
        rounds[idx].0.insert(&req.0);
        rounds[idx].1.push(req.clone());
    }
    rounds.into_iter().map(|(_, reqs)| reqs).collect()
}

/// Bookkeeping of one read round: which partitions still wait for their first record.
struct ReadRound {
    /// topic → partition → (requested offset, finished).
    pending: HashMap<String, HashMap<i32, (i64, bool)>>,
    open: usize,
    found: Vec<RecordAt>,
}

impl ReadRound {
    fn new(round: &[(TopicPartition, i64)]) -> Self {
        let mut pending: HashMap<String, HashMap<i32, (i64, bool)>> = HashMap::new();
        for (tp, offset) in round {
            pending
                .entry(tp.topic.clone())
                .or_default()
                .insert(tp.partition, (*offset, false));
        }
        let open = pending.values().map(HashMap::len).sum();
        Self {
            pending,
            open,
            found: Vec::new(),
        }
    }

    fn is_done(&self) -> bool {
        self.open == 0
    }

    /// Marks a partition finished; its requested offset if it was still open.
    fn finish(&mut self, topic: &str, partition: i32) -> Option<i64> {
        let entry = self.pending.get_mut(topic)?.get_mut(&partition)?;
        if entry.1 {
            return None;
        }
        entry.1 = true;
        self.open -= 1;
        Some(entry.0)
    }

    /// A record arrived; true if it finished its partition. The first record at or after the
    /// requested offset is the answer. A record below it can only follow an offset reset (the
    /// requested offset was beyond the log end), so the partition is given up; so is a record
    /// without a timestamp.
    fn on_record(&mut self, topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) -> bool {
        let Some(requested) = self.finish(topic, partition) else {
            return false;
        };
        if let (true, Some(timestamp_ms)) = (offset >= requested, timestamp_ms) {
            self.found.push(RecordAt {
                tp: TopicPartition::new(topic, partition),
                requested,
                offset,
                timestamp_ms,
            });
        }
        true
    }

    /// End of the partition or a partition error: nothing to read there.
    fn on_end(&mut self, topic: &str, partition: i32) -> bool {
        self.finish(topic, partition).is_some()
    }

    fn into_records(self) -> Vec<RecordAt> {
        self.found
    }
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
        let clients: Vec<*mut rdkafka::bindings::rd_kafka_t> = std::iter::once(&self.admin)
            .chain(helpers.iter())
            .map(|c| c.inner().native_ptr())
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
            let client = helpers.first().unwrap_or(&self.admin).inner().native_ptr();
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

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    #[test]
    fn socket_timeout_expires_before_any_coordinator_request_deadline() {
        assert_eq!(socket_timeout(Duration::from_secs(10)), Duration::from_secs(4));
        assert_eq!(socket_timeout(Duration::from_millis(5)), Duration::from_millis(10));
        // Coordinator requests start only with half the stage timeout left.
        for ms in [30u64, 100, 1000, 2000, 30_000] {
            let t = Duration::from_millis(ms);
            assert!(socket_timeout(t) < t / 2, "{t:?}");
        }
    }

    #[test]
    fn connection_setup_is_bounded_by_the_stage_timeout() {
        assert_eq!(
            connection_setup_timeout(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            connection_setup_timeout(Duration::from_millis(2500)),
            Duration::from_millis(2500)
        );
        // librdkafka refuses less than 1 s.
        assert_eq!(
            connection_setup_timeout(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }

    fn cluster(yaml: &str) -> ClusterConfig {
        let text = format!("clusters:\n  - {{name: a, bootstrap_servers: ['k:1'], {yaml}}}\n");
        crate::config::Config::parse(std::path::Path::new("t.yml"), &text)
            .unwrap()
            .clusters
            .remove(0)
    }

    #[test]
    fn client_timeouts_follow_the_stage_timeout_unless_overridden() {
        let cc = base_config(&cluster("timeout: 3s"));
        assert_eq!(cc.get("socket.timeout.ms"), Some("1200"));
        assert_eq!(cc.get("socket.connection.setup.timeout.ms"), Some("3000"));
        assert_eq!(cc.get("reconnect.backoff.max.ms"), Some("1000"));
        let cc = base_config(&cluster(
            "timeout: 3s, client_properties: {socket.connection.setup.timeout.ms: 20000}",
        ));
        assert_eq!(cc.get("socket.connection.setup.timeout.ms"), Some("20000"));
    }

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

    #[test]
    fn read_rounds_bound_size_and_keep_partitions_unique() {
        let mut requests = Vec::new();
        for p in 0..25 {
            requests.push((tp("a", p), 5));
        }
        requests.push((tp("a", 0), 7)); // second offset of a partition → another round
        requests.push((tp("a", 1), 5)); // exact duplicate → dropped
        requests.push((tp("b", 0), -1)); // logical offset → dropped
        let rounds = read_rounds(&requests, 10);
        assert_eq!(rounds.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 6]);
        let total: usize = rounds.iter().map(Vec::len).sum();
        assert_eq!(total, 26);
        for round in &rounds {
            let distinct: HashSet<&TopicPartition> = round.iter().map(|(tp, _)| tp).collect();
            assert_eq!(distinct.len(), round.len(), "a partition appears twice in {round:?}");
        }
        assert!(read_rounds(&[], 10).is_empty());
        assert!(read_rounds(&[(tp("a", 0), -2)], 10).is_empty());
    }

    #[test]
    fn read_round_takes_the_first_record_at_or_after_the_request() {
        let mut r = ReadRound::new(&[(tp("a", 0), 10), (tp("a", 1), 10), (tp("b", 0), 3), (tp("c", 0), 0)]);
        assert!(!r.is_done());
        // Unknown partitions are ignored.
        assert!(!r.on_record("x", 0, 10, Some(1)));
        // A control marker at 10 leaves a gap: 11 is the answer.
        assert!(r.on_record("a", 0, 11, Some(1_000)));
        // Later records of a finished partition are ignored.
        assert!(!r.on_record("a", 0, 12, Some(2_000)));
        // Below the request: only after an offset reset, so the partition is given up.
        assert!(r.on_record("a", 1, 4, Some(3_000)));
        assert!(r.on_end("b", 0));
        assert!(!r.on_end("b", 0));
        assert!(!r.is_done());
        // No timestamp: finished without a result.
        assert!(r.on_record("c", 0, 0, None));
        assert!(r.is_done());
        assert_eq!(
            r.into_records(),
            vec![RecordAt {
                tp: tp("a", 0),
                requested: 10,
                offset: 11,
                timestamp_ms: 1_000
            }]
        );
    }
}
