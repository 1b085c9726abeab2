//! librdkafka plumbing: client contexts, the delivery-tracking producer and
//! the background consumer/producer workers.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

use crate::error::{HarnessError, Result};

/// Client context that routes librdkafka's own log and error callbacks to
/// the `log` crate at debug level.
///
/// Harness clients deliberately talk to brokers that were just killed or are
/// still starting; librdkafka reports every refused connection as an error,
/// which would otherwise flood the output of tests that install a logger.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log::debug!(target: "kafka_harness::librdkafka", "{level:?} {fac}: {log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log::debug!(target: "kafka_harness::librdkafka", "client error {error}: {reason}");
    }
}

impl ConsumerContext for QuietContext {}

/// A record to produce.
///
/// `timestamp_ms` becomes the record's CreateTime; `None` lets the producer
/// stamp the current time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Optional record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Vec<u8>,
    /// Explicit CreateTime in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A keyless record with the given value and a producer-assigned time.
    pub fn new(value: impl Into<Vec<u8>>) -> Record {
        Record {
            key: None,
            value: value.into(),
            timestamp_ms: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Record {
        self.key = Some(key.into());
        self
    }

    /// Sets an explicit CreateTime.
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Record {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// Outcome of one `produce` call, filled in by delivery callbacks.
#[derive(Default)]
pub(crate) struct Batch {
    state: Mutex<BatchState>,
    done: Condvar,
}

#[derive(Default)]
struct BatchState {
    pending: usize,
    offsets: Vec<i64>,
    error: Option<KafkaError>,
}

impl Batch {
    pub(crate) fn new(len: usize) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(BatchState {
                pending: len,
                offsets: vec![-1; len],
                error: None,
            }),
            done: Condvar::new(),
        })
    }

    fn complete(&self, index: usize, result: std::result::Result<i64, KafkaError>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(offset) => st.offsets[index] = offset,
            Err(e) => {
                st.error.get_or_insert(e);
            }
        }
        st.pending -= 1;
        if st.pending == 0 {
            self.done.notify_all();
        }
    }

    /// Marks a record that never reached librdkafka as failed.
    pub(crate) fn abandon(&self, index: usize, error: KafkaError) {
        self.complete(index, Err(error));
    }

    /// Blocks until every record is acknowledged or failed.
    pub(crate) fn wait(&self, timeout: Duration) -> Result<Vec<i64>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.pending > 0 {
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{} delivery report(s)", st.pending),
                    after: timeout,
                });
            }
            st = self
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match st.error.take() {
            Some(e) => Err(HarnessError::kafka("producing records", e)),
            None => Ok(std::mem::take(&mut st.offsets)),
        }
    }
}

/// Counters of a background producer.
#[derive(Debug, Default)]
pub(crate) struct LoopStats {
    acked: AtomicU64,
    failed: AtomicU64,
}

/// Where a delivery report goes.
pub(crate) enum Delivery {
    /// Record `usize` of a synchronous `produce` call.
    Batch(Arc<Batch>, usize),
    /// A record of a background producing loop.
    Loop(Arc<LoopStats>),
}

/// Producer context dispatching delivery reports to their [`Delivery`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeliveryContext;

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        QuietContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        QuietContext.error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<Delivery>) {
        let outcome = match result {
            Ok(msg) => Ok(msg.offset()),
            Err((e, _)) => Err(e.clone()),
        };
        match *opaque {
            Delivery::Batch(batch, index) => batch.complete(index, outcome),
            Delivery::Loop(stats) => {
                let counter = if outcome.is_ok() { &stats.acked } else { &stats.failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The producer type shared by all produce helpers of a cluster.
pub(crate) type HarnessProducer = ThreadedProducer<DeliveryContext>;

/// Sends one record, retrying while librdkafka's local queue is full.
pub(crate) fn send_with_backpressure(
    producer: &HarnessProducer,
    mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>>,
    give_up: Instant,
) -> std::result::Result<(), (KafkaError, Box<Delivery>)> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if Instant::now() < give_up => {
                record = r;
                thread::sleep(Duration::from_millis(5));
            }
            Err((e, r)) => return Err((e, r.delivery_opaque)),
        }
    }
}

/// Drives a future to completion on the current thread.
///
/// rdkafka's admin futures are completed by the admin client's own polling
/// thread, so no async runtime is needed; parking until woken is enough.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unparker(Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}

/// Consumer group protocol for [`ConsumerOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// The classic JoinGroup/SyncGroup protocol with client-side assignment.
    #[default]
    Classic,
    /// The KIP-848 broker-driven protocol (`group.protocol=consumer`).
    Consumer,
}

impl GroupProtocol {
    fn as_config(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// How a [`ConsumerHandle`] consumes.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Group protocol to use.
    pub protocol: GroupProtocol,
    /// Sleep after each record before marking it processed; makes the group
    /// lag behind a faster producer.
    pub per_record_delay: Option<Duration>,
    /// Start from the earliest offset when the group has no commit
    /// (otherwise from the end).
    pub from_beginning: bool,
    /// How often processed offsets are committed.
    pub commit_interval: Duration,
    /// Extra librdkafka settings, applied last.
    pub extra_config: Vec<(String, String)>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            protocol: GroupProtocol::Classic,
            per_record_delay: None,
            from_beginning: true,
            commit_interval: Duration::from_millis(500),
            extra_config: Vec::new(),
        }
    }
}

impl ConsumerOptions {
    /// Options for a KIP-848 (`group.protocol=consumer`) member.
    pub fn kip848() -> ConsumerOptions {
        ConsumerOptions {
            protocol: GroupProtocol::Consumer,
            ..ConsumerOptions::default()
        }
    }

    /// Sets a per-record processing delay.
    pub fn with_delay(mut self, delay: Duration) -> ConsumerOptions {
        self.per_record_delay = Some(delay);
        self
    }
}

/// Shared state between a [`ConsumerHandle`] and its thread.
#[derive(Debug, Default)]
struct ConsumerShared {
    stop: AtomicBool,
    consumed: AtomicU64,
    assigned: AtomicUsize,
    last_error: Mutex<Option<String>>,
    closed: Mutex<bool>,
    closed_cv: Condvar,
}

/// How long stopping a consumer waits for its close (final commit and
/// LeaveGroup). Against a live broker that takes milliseconds; against a
/// killed one librdkafka keeps retrying for tens of seconds, which a test
/// or the demo should not sit through.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A group member consuming on a background thread.
///
/// Each record counts as processed after the optional delay; its offset is
/// then stored and committed by librdkafka's auto-commit, so the committed
/// position trails exactly what was processed. Dropping the handle stops the
/// thread and closes the consumer, which commits the final offsets and
/// leaves the group.
pub struct ConsumerHandle {
    group: String,
    shared: Arc<ConsumerShared>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerHandle {
    pub(crate) fn spawn(
        group: &str,
        consumer: BaseConsumer<QuietContext>,
        delay: Option<Duration>,
    ) -> Result<ConsumerHandle> {
        let shared = Arc::new(ConsumerShared::default());
        let worker = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("consumer-{group}"))
            .spawn(move || consume_loop(consumer, delay, &worker))
            .map_err(|e| HarnessError::io("spawning a consumer thread", e))?;
        Ok(ConsumerHandle {
            group: group.to_owned(),
            shared,
            thread: Some(thread),
        })
    }

    /// The group this member belongs to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Records processed so far.
    pub fn consumed(&self) -> u64 {
        self.shared.consumed.load(Ordering::Relaxed)
    }

    /// Partitions currently assigned to this member.
    pub fn assigned_partitions(&self) -> usize {
        self.shared.assigned.load(Ordering::Relaxed)
    }

    /// The most recent consumer error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the member owns at least one partition.
    pub fn wait_for_assignment(&self, timeout: Duration) -> Result<()> {
        wait_until(timeout, "a partition assignment", || self.assigned_partitions() > 0)
    }

    /// Waits until at least `n` records were processed.
    pub fn wait_for_consumed(&self, n: u64, timeout: Duration) -> Result<()> {
        wait_until(timeout, &format!("{n} consumed records"), || self.consumed() >= n)
    }

    /// Stops consuming, commits and leaves the group.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let closed = self.shared.closed.lock().unwrap_or_else(|e| e.into_inner());
        let (closed, _) = self
            .shared
            .closed_cv
            .wait_timeout_while(closed, CONSUMER_CLOSE_TIMEOUT, |c| !*c)
            .unwrap_or_else(|e| e.into_inner());
        if *closed {
            drop(closed);
            let _ = thread.join();
        } else {
            // Leave the thread to finish the close on its own; it holds
            // nothing but the consumer.
            log::warn!(
                "consumer of group {} did not close within {CONSUMER_CLOSE_TIMEOUT:?}; detaching it",
                self.group
            );
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn consume_loop(consumer: BaseConsumer<QuietContext>, delay: Option<Duration>, shared: &ConsumerShared) {
    let mut next_assignment_check = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_assignment_check {
            if let Ok(tpl) = consumer.assignment() {
                shared.assigned.store(tpl.count(), Ordering::Relaxed);
            }
            next_assignment_check = Instant::now() + Duration::from_millis(200);
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => {
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            Some(Ok(msg)) => {
                if let Some(d) = delay {
                    if !sleep_unless_stopped(d, &shared.stop) {
                        // Stopped mid-record: it was not processed, so its
                        // offset must not be committed.
                        break;
                    }
                }
                if let Err(e) = consumer.store_offset_from_message(&msg) {
                    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
                shared.consumed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    shared.assigned.store(0, Ordering::Relaxed);
    // Dropping closes the consumer: final auto-commit, then LeaveGroup.
    drop(consumer);
    *shared.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
    shared.closed_cv.notify_all();
}

/// Sleeps for `d` in short slices; false if `stop` was raised meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the librdkafka settings of a [`ConsumerHandle`] member.
pub(crate) fn consumer_settings(group: &str, opts: &ConsumerOptions) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = vec![
        ("group.id".into(), group.into()),
        ("group.protocol".into(), opts.protocol.as_config().into()),
        ("enable.auto.commit".into(), "true".into()),
        ("enable.auto.offset.store".into(), "false".into()),
        (
            "auto.commit.interval.ms".into(),
            opts.commit_interval.as_millis().to_string(),
        ),
        (
            "auto.offset.reset".into(),
            if opts.from_beginning { "earliest" } else { "latest" }.into(),
        ),
    ];
    if opts.protocol == GroupProtocol::Classic {
        // The broker minimum; a member that dies without leaving is evicted
        // quickly. The KIP-848 protocol takes timeouts from the broker.
        s.push(("session.timeout.ms".into(), "6000".into()));
        s.push(("heartbeat.interval.ms".into(), "1000".into()));
    }
    s.extend(opts.extra_config.iter().cloned());
    s
}

/// A background producer writing at a fixed rate; stops on drop.
pub struct ProducerHandle {
    topic: String,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    stats: Arc<LoopStats>,
    thread: Option<JoinHandle<()>>,
}

impl ProducerHandle {
    pub(crate) fn spawn(producer: HarnessProducer, topic: &str, rate_per_sec: u32) -> Result<ProducerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(LoopStats::default());
        let (t_stop, t_sent, t_stats, t_topic) = (
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&stats),
            topic.to_owned(),
        );
        let thread = thread::Builder::new()
            .name(format!("producer-{topic}"))
            .spawn(move || produce_loop(&producer, &t_topic, rate_per_sec, &t_stop, &t_sent, &t_stats))
            .map_err(|e| HarnessError::io("spawning a producer thread", e))?;
        Ok(ProducerHandle {
            topic: topic.to_owned(),
            stop,
            sent,
            stats,
            thread: Some(thread),
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Records acknowledged by the brokers so far.
    pub fn acked(&self) -> u64 {
        self.stats.acked.load(Ordering::Relaxed)
    }

    /// Records that failed delivery so far.
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` records were acknowledged.
    pub fn wait_for_acked(&self, n: u64, timeout: Duration) -> Result<()> {
        wait_until(timeout, &format!("{n} acknowledged records"), || self.acked() >= n)
    }

    /// Stops producing.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn produce_loop(
    producer: &HarnessProducer,
    topic: &str,
    rate_per_sec: u32,
    stop: &AtomicBool,
    sent: &AtomicU64,
    stats: &Arc<LoopStats>,
) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate_per_sec.max(1)));
    let start = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Schedule against the start time so slow sends do not lower the rate.
        let due = start + interval.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            thread::sleep((due - now).min(Duration::from_millis(100)));
            continue;
        }
        let key = format!("key-{}", n % 64);
        let value = format!("{{\"seq\":{n},\"topic\":\"{topic}\",\"ts\":{}}}", crate::now_ms());
        let record = BaseRecord::with_opaque_to(topic, Box::new(Delivery::Loop(Arc::clone(stats))))
            .key(key.as_bytes())
            .payload(value.as_bytes())
            .timestamp(crate::now_ms());
        let give_up = Instant::now() + Duration::from_secs(1);
        match send_with_backpressure(producer, record, give_up) {
            Ok(()) => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        n += 1;
    }
}
