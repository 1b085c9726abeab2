//! Kafka clients of the end-to-end delivery probe: an idempotent `acks=all` producer, a consumer
//! in the probe's own group, and topic set-up. Blocking; used from the probe's own thread.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::context::{base_config, ExporterContext};
use super::{ClientErrors, SourceError};
use crate::config::ClusterConfig;

/// A produce outcome reported by the delivery callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub partition: i32,
    pub seq: u64,
    /// Ack latency, or the error class (snake_case Kafka error code name).
    pub result: Result<Duration, String>,
}

/// A probe record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    pub partition: i32,
    pub payload: Vec<u8>,
}

/// Identifies a sent record in the delivery callback.
pub struct SentMeta {
    partition: i32,
    seq: u64,
    sent: Instant,
}

/// Collects deliveries; forwards logs like the exporter's other clients.
pub struct ProbeProducerContext {
    inner: ExporterContext,
    deliveries: Mutex<Vec<Delivery>>,
}

impl ClientContext for ProbeProducerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason)
    }
}

impl ProducerContext for ProbeProducerContext {
    type DeliveryOpaque = Box<SentMeta>;

    fn delivery(&self, result: &DeliveryResult<'_>, meta: Box<SentMeta>) {
        let outcome = match result {
            Ok(_) => Ok(meta.sent.elapsed()),
            Err((e, _)) => Err(error_class(e)),
        };
        if let Ok(mut d) = self.deliveries.lock() {
            d.push(Delivery {
                partition: meta.partition,
                seq: meta.seq,
                result: outcome,
            });
        }
    }
}

/// Consumer context: forwards logs and holds the outcomes of commits.
pub struct ProbeConsumerContext {
    inner: ExporterContext,
    /// When the commit in flight was started; `None` when no commit is in flight.
    commit_started: Mutex<Option<Instant>>,
    commits: Mutex<Vec<Result<Duration, String>>>,
}

impl ClientContext for ProbeConsumerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason)
    }
}

impl ConsumerContext for ProbeConsumerContext {}

/// A bounded, label-safe name for a produce error.
pub fn error_class(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => "timeout".into(),
        Some(code) => {
            let name = format!("{code:?}");
            let mut out = String::with_capacity(name.len() + 4);
            for (i, ch) in name.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_lowercase());
            }
            out
        }
        None => "client".into(),
    }
}

/// Producer, consumer and admin client of one cluster's probe.
pub struct ProbeClient {
    producer: BaseProducer<ProbeProducerContext>,
    consumer: std::sync::Arc<BaseConsumer<ProbeConsumerContext>>,
    admin: AdminClient<ExporterContext>,
    topic: String,
    assigned: Vec<i32>,
    /// Next offset to commit per partition: one past the last record read.
    consumed: Mutex<BTreeMap<i32, i64>>,
}

impl ProbeClient {
    /// Creates the clients (no connection yet). `message_timeout` bounds how long a record may
    /// wait for its ack before it counts as failed.
    pub fn new(
        cfg: &ClusterConfig,
        errors: &ClientErrors,
        topic: &str,
        group: &str,
        message_timeout: Duration,
    ) -> Result<Self, SourceError> {
        let ctx = || ExporterContext::new(cfg, errors);
        let base = base_config(cfg);
        let mut p: ClientConfig = base.clone();
        p.set("client.id", "kafka-slo-exporter-probe")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", message_timeout.as_millis().max(1000).to_string());
        let producer = p
            .create_with_context(ProbeProducerContext {
                inner: ctx(),
                deliveries: Mutex::new(Vec::new()),
            })
            .map_err(|e| SourceError::new("ProbeProducer", e.to_string()))?;
        let mut c: ClientConfig = base.clone();
        c.set("client.id", "kafka-slo-exporter-probe")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "50")
            .set("isolation.level", "read_committed");
        let consumer = c
            .create_with_context(ProbeConsumerContext {
                inner: ctx(),
                commit_started: Mutex::new(None),
                commits: Mutex::new(Vec::new()),
            })
            .map(std::sync::Arc::new)
            .map_err(|e| SourceError::new("ProbeConsumer", e.to_string()))?;
        let admin = base
            .create_with_context(ctx())
            .map_err(|e| SourceError::new("ProbeAdmin", e.to_string()))?;
        Ok(Self {
            producer,
            consumer,
            admin,
            topic: topic.to_string(),
            assigned: Vec::new(),
            consumed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Leader of every partition of the probe topic; `Ok(None)` when the topic does not exist.
    pub fn leaders(&self, timeout: Duration) -> Result<Option<BTreeMap<i32, Option<i32>>>, SourceError> {
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| SourceError::new("Metadata", e.to_string()))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(None);
        };
        if t.error().is_some() || t.partitions().is_empty() {
            return Ok(None);
        }
        Ok(Some(
            t.partitions()
                .iter()
                .map(|p| (p.id(), (p.leader() >= 0).then_some(p.leader())))
                .collect(),
        ))
    }

    /// Number of brokers in the cluster metadata.
    pub fn broker_count(&self, timeout: Duration) -> Result<i32, SourceError> {
        let md = self
            .producer
            .client()
            .fetch_metadata(None, timeout)
            .map_err(|e| SourceError::new("Metadata", e.to_string()))?;
        Ok(md.brokers().len() as i32)
    }

    /// Creates the probe topic: one partition per broker (Kafka's assignment gives each broker
    /// the leadership of one), replication `rf`, and configs that keep it within the policy.
    pub fn create_topic(&self, partitions: i32, rf: i32, min_isr: i32, timeout: Duration) -> Result<(), SourceError> {
        let min_isr = min_isr.to_string();
        let topic = NewTopic::new(&self.topic, partitions, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", &min_isr)
            .set("compression.type", "lz4")
            .set("cleanup.policy", "delete")
            .set("unclean.leader.election.enable", "false")
            .set("retention.ms", "86400000")
            .set("retention.bytes", "-1");
        let opts = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = block_on(self.admin.create_topics([&topic], &opts))
            .map_err(|e| SourceError::new("CreateTopics", e.to_string()))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(SourceError::new("CreateTopics", format!("{t}: {code}"))),
            }
        }
        Ok(())
    }

    /// Assigns the consumer to every partition: from the group's committed offset where there
    /// is one, else from the end (only records of this process matter).
    pub fn assign(&mut self, partitions: &[i32], timeout: Duration) -> Result<(), SourceError> {
        if self.assigned == partitions {
            return Ok(());
        }
        let mut wanted = TopicPartitionList::new();
        for p in partitions {
            wanted.add_partition(&self.topic, *p);
        }
        let committed = self
            .consumer
            .committed_offsets(wanted.clone(), timeout)
            .map_err(|e| SourceError::new("OffsetFetch", e.to_string()))?;
        let mut tpl = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::End,
            };
            tpl.add_partition_offset(&self.topic, e.partition(), offset)
                .map_err(|e| SourceError::new("Assign", e.to_string()))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| SourceError::new("Assign", e.to_string()))?;
        self.assigned = partitions.to_vec();
        Ok(())
    }

    /// Sends one probe record; the outcome arrives through [`Self::take_deliveries`].
    pub fn send(&self, partition: i32, seq: u64, payload: &[u8]) -> Result<(), String> {
        let meta = Box::new(SentMeta {
            partition,
            seq,
            sent: Instant::now(),
        });
        self.producer
            .send(
                BaseRecord::<(), [u8], Box<SentMeta>>::with_opaque_to(&self.topic, meta)
                    .partition(partition)
                    .payload(payload),
            )
            .map_err(|(e, _)| error_class(&e))
    }

    /// Serves producer callbacks and returns the deliveries since the last call.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        self.producer.poll(Duration::ZERO);
        self.producer
            .context()
            .deliveries
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    /// Reads probe records for up to `budget`.
    pub fn poll_records(&self, budget: Duration) -> Vec<ProbeRecord> {
        let deadline = Instant::now() + budget;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(left.min(Duration::from_millis(50))) {
                Some(Ok(m)) => {
                    if let Ok(mut c) = self.consumed.lock() {
                        c.insert(m.partition(), m.offset() + 1);
                    }
                    out.push(ProbeRecord {
                        partition: m.partition(),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    })
                }
                Some(Err(e)) => tracing::debug!(error = %e, "probe consumer error"),
                None => {}
            }
            if Instant::now() >= deadline {
                return out;
            }
        }
    }

    /// Commits the consumed offsets on a helper thread, unless a commit is still in flight: a
    /// synchronous commit blocks for as long as the group coordinator is unreachable, and the
    /// probe's own loop must keep running then. Outcomes arrive through [`Self::take_commits`].
    pub fn commit(&self) {
        let Ok(mut started) = self.consumer.context().commit_started.lock() else {
            return;
        };
        if started.is_some() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        if let Ok(c) = self.consumed.lock() {
            for (p, o) in c.iter() {
                let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        let t = Instant::now();
        *started = Some(t);
        drop(started);
        let consumer = std::sync::Arc::clone(&self.consumer);
        let spawned = std::thread::Builder::new()
            .name("kse-probe-commit".into())
            .spawn(move || {
                let outcome = consumer
                    .commit(&tpl, CommitMode::Sync)
                    .map(|()| t.elapsed())
                    .map_err(|e| e.to_string());
                let ctx = consumer.context();
                if let Ok(mut s) = ctx.commit_started.lock() {
                    *s = None;
                }
                if let Ok(mut c) = ctx.commits.lock() {
                    c.push(outcome);
                }
            });
        if let Err(e) = spawned {
            if let Ok(mut s) = self.consumer.context().commit_started.lock() {
                *s = None;
            }
            if let Ok(mut c) = self.consumer.context().commits.lock() {
                c.push(Err(format!("cannot start the commit thread: {e}")));
            }
        }
    }

    /// Commit outcomes (latency or error) since the last call; served by consumer polls.
    pub fn take_commits(&self) -> Vec<Result<Duration, String>> {
        self.consumer
            .context()
            .commits
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// How long the commit in flight has been waiting, if any.
    pub fn commit_pending_for(&self) -> Option<Duration> {
        self.consumer
            .context()
            .commit_started
            .lock()
            .ok()
            .and_then(|s| s.map(|t| t.elapsed()))
    }
}

/// Drives an admin future on this (blocking) thread; the admin client's thread completes it.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes_are_snake_case_names() {
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas);
        assert_eq!(error_class(&e), "not_enough_replicas");
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(error_class(&e), "timeout");
    }
}
