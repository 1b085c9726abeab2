//! Reading the first bytes of recent record values, for the Schema Registry wire-format check.
//!
//! A [`ValueSampler`] is a consumer that only assigns partitions: it never subscribes, joins a
//! group or commits. It reads one topic at a time, so that an end-of-partition event (which
//! names only the partition number) is unambiguous. Blocking; used from the registry task's
//! blocking thread.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::context::{base_config, ExporterContext};
use super::{ClientErrors, SourceError, TopicPartition};
use crate::config::ClusterConfig;

/// Bytes of each value kept: the registry wire-format header (magic byte + 4-byte schema id).
pub const VALUE_PREFIX: usize = 5;

/// The start of one record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledValue {
    pub tp: TopicPartition,
    pub offset: i64,
    /// The first [`VALUE_PREFIX`] bytes (fewer for a shorter value); `None` for a null value
    /// (a tombstone).
    pub prefix: Option<Vec<u8>>,
}

/// The values read from one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRead {
    pub values: Vec<SampledValue>,
    /// False when the deadline passed before every range was read.
    pub complete: bool,
}

/// An assign-only consumer reading ranges of offsets.
pub struct ValueSampler {
    consumer: BaseConsumer<ExporterContext>,
}

impl ValueSampler {
    /// Creates the consumer (no connection yet) from the cluster's client properties.
    pub fn new(cfg: &ClusterConfig, errors: &ClientErrors) -> Result<Self, SourceError> {
        let mut cc = base_config(cfg);
        cc.set("client.id", "kafka-slo-exporter-sampler")
            .set("group.id", "kafka-slo-exporter-sampler")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_uncommitted")
            .set("max.partition.fetch.bytes", "262144")
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.wait.max.ms", "100");
        let consumer = cc
            .create_with_context(ExporterContext::new(cfg, errors))
            .map_err(|e| SourceError::new("Fetch", format!("creating the value sampler: {e}")))?;
        Ok(Self { consumer })
    }

    /// Reads the records at offsets `[start, end)` of the given partitions of `topic`, until
    /// every range is read, its partition ends, or `deadline` passes (what was read by then is
    /// returned, marked incomplete). Sorted by partition and offset.
    pub fn read(&self, topic: &str, ranges: &[(i32, i64, i64)], deadline: Instant) -> Result<SampleRead, SourceError> {
        const OP: &str = "Fetch";
        let mut pending: HashMap<i32, (i64, i64)> = ranges
            .iter()
            .filter(|(_, start, end)| *start >= 0 && end > start)
            .map(|(p, s, e)| (*p, (*s, *e)))
            .collect();
        if pending.is_empty() {
            return Ok(SampleRead {
                values: Vec::new(),
                complete: true,
            });
        }
        let mut tpl = TopicPartitionList::with_capacity(pending.len());
        for (p, (start, _)) in &pending {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*start))
                .map_err(|e| SourceError::new(OP, e.to_string()))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| SourceError::new(OP, format!("assigning {} partitions of {topic}: {e}", pending.len())))?;
        let mut out = Vec::new();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                None => {}
                Some(Ok(m)) => {
                    if m.topic() != topic {
                        continue;
                    }
                    let p = m.partition();
                    let Some((start, end)) = pending.get(&p).copied() else {
                        continue;
                    };
                    let offset = m.offset();
                    if offset >= start && offset < end {
                        out.push(SampledValue {
                            tp: TopicPartition::new(topic, p),
                            offset,
                            prefix: m.payload().map(|v| v[..v.len().min(VALUE_PREFIX)].to_vec()),
                        });
                    }
                    // Below the start only after an offset reset: nothing more to expect.
                    if offset + 1 >= end || offset < start {
                        pending.remove(&p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(e)) => {
                    tracing::debug!(topic, "sampling record values: {e}");
                }
            }
        }
        if let Err(e) = self.consumer.unassign() {
            tracing::debug!(topic, "unassigning the value sampler: {e}");
        }
        out.sort_by_key(|v| (v.tp.partition, v.offset));
        Ok(SampleRead {
            values: out,
            complete: pending.is_empty(),
        })
    }
}
