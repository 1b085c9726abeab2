//! Reading the records at given offsets with a short-lived assign-only consumer: the record
//! timestamps behind time lag and the replay window.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::client::RdKafkaSource;
use super::context::{creation_error, ExporterContext};
use super::ffi::{self, Polled};
use super::{RecordAt, SourceError, TopicPartition};

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

/// Partitions assigned to the reader at once. A round has a fixed cost of about 1.5 s (5,000
/// reads took 10 s in rounds of 1,000 and 4 s in one round); memory stays bounded by the
/// reader's fetch limits (`queued.max.messages.kbytes`) and about 3 KB of state a partition.
pub(super) const READ_CHUNK: usize = 5000;

impl RdKafkaSource {
    pub(super) fn create_reader(&self) -> Result<BaseConsumer<ExporterContext>, SourceError> {
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
    pub(super) fn read_round(
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
        let events = ffi::EventQueue::consumer(ffi::ClientRef::of(reader.client()))
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

/// Splits record requests into rounds in which each partition appears once, with at most `max`
/// partitions per round. Negative (logical) offsets and exact duplicates are dropped.
pub(super) fn read_rounds(requests: &[(TopicPartition, i64)], max: usize) -> Vec<Vec<(TopicPartition, i64)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
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
