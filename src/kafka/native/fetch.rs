//! Record reads (the timestamps behind time lag and the replay window): one Fetch per leader
//! for all of its partitions, each asking only for the bytes that hold the record at its
//! offset, answered at once (no wait for new data). librdkafka's consumer reads the same
//! records partition by partition behind an assign/poll cycle, about 1.5 s a round plus about
//! 0.5 ms a partition; here 5,000 reads are one request or a few.
//!
//! Reading follows the librdkafka reader's semantics ([`crate::kafka::reader`]): the answer is
//! the first non-control record at or after the offset (read_uncommitted); below the log start
//! the oldest retained record answers; at or beyond the log end there is none. Partitions in a
//! format [`batch`] does not read are returned for the librdkafka reader.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::batch::{self, Found};
use super::meta::{self, join_all, ClusterState};
use super::pool::Pool;
use super::{error_name, is_retriable, NetError};
use crate::kafka::reader::read_rounds;
use crate::kafka::{OffsetSpec, RecordAt, TopicPartition};

/// v4 is the first with record batches (v2 format) only and an isolation level; v12 the newest
/// that names topics (v13 and later name them by id).
const FETCH: (i16, i16) = (4, 12);
/// Bytes first asked per partition: a batch of small records fits; a bigger one is asked again
/// at its own size.
const FIRST_BYTES: usize = 16 << 10;
/// Bytes asked per response: the broker fills partitions in order up to it (always at least one
/// whole batch), and the ones it did not reach are asked again.
const RESPONSE_BYTES: i32 = 8 << 20;
/// The largest batch read, well above the broker's default `message.max.bytes` (1 MiB) and
/// below the frame limit.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Requests per round at most: far more than any answer needs (each request settles at least
/// one partition), bounding the loop against a broker that keeps answering with nothing.
const MAX_PASSES: usize = 200;
/// Leader refreshes per round, after a leader moved.
const MAX_REFRESHES: usize = 2;

/// What one call read: the records found, and the requests left to the librdkafka reader.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    pub(crate) found: Vec<RecordAt>,
    pub(crate) unsupported: Vec<(TopicPartition, i64)>,
}

/// One requested offset still being read.
#[derive(Debug, Clone)]
struct Pending {
    tp: TopicPartition,
    requested: i64,
    /// Where the next Fetch starts (the requested offset, or the log start below it, or past
    /// batches of control records).
    at: i64,
    bytes: usize,
    /// The log start was asked already.
    reset: bool,
}

/// How one partition's answer moves its read on.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done(Option<(i64, i64)>),
    /// Asked again; true when the read moved on (another offset or more bytes).
    Again(bool),
    Leader,
    OutOfRange,
    Unsupported,
}

pub(crate) async fn records_at(
    pool: &Pool,
    state: &ClusterState,
    requests: &[(TopicPartition, i64)],
    deadline: Instant,
) -> Result<Reads, NetError> {
    let mut reads = Reads::default();
    let mut failure = None;
    let mut answered = false;
    for round in read_rounds(requests, usize::MAX) {
        if Instant::now() >= deadline {
            break;
        }
        match read_round(pool, state, round, deadline, &mut reads).await {
            Ok(()) => answered = true,
            Err(e) => failure = Some(e),
        }
    }
    if let (false, Some(e)) = (answered, failure) {
        return Err(e);
    }
    reads
        .found
        .sort_by(|a, b| (&a.tp, a.requested).cmp(&(&b.tp, b.requested)));
    Ok(reads)
}

/// Reads one round (each partition once). Fails only when no leader answered at all.
async fn read_round(
    pool: &Pool,
    state: &ClusterState,
    round: Vec<(TopicPartition, i64)>,
    deadline: Instant,
    reads: &mut Reads,
) -> Result<(), NetError> {
    let mut pending: Vec<Pending> = round
        .into_iter()
        .map(|(tp, requested)| Pending {
            tp,
            requested,
            at: requested,
            bytes: FIRST_BYTES,
            reset: false,
        })
        .collect();
    let (mut refreshes, mut answered, mut failure) = (0, false, None);
    for _ in 0..MAX_PASSES {
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        let before = pending.len();
        let (by_leader, leaderless) = by_leader(state, pending);
        let mut next = Vec::new();
        let mut moved = leaderless;
        let mut out_of_range = Vec::new();
        let mut progress = false;
        let requests = by_leader
            .into_iter()
            .map(|(leader, mut ps)| async move { (fetch(pool, leader, &mut ps, deadline).await, ps) });
        for (result, ps) in join_all(requests).await {
            let answers = match result {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(cluster = pool.cluster.as_str(), "Fetch: {e}");
                    failure = Some(e);
                    continue;
                }
            };
            answered = true;
            for (mut p, step) in ps.into_iter().zip(answers) {
                match step {
                    Step::Done(Some((offset, timestamp_ms))) => reads.found.push(RecordAt {
                        tp: p.tp,
                        requested: p.requested,
                        offset,
                        timestamp_ms,
                    }),
                    Step::Done(None) => {}
                    Step::Again(moved_on) => {
                        progress |= moved_on;
                        next.push(p);
                    }
                    Step::Leader => moved.push(p),
                    Step::OutOfRange if !p.reset => {
                        p.reset = true;
                        out_of_range.push(p);
                    }
                    Step::OutOfRange => {}
                    Step::Unsupported => reads.unsupported.push((p.tp, p.requested)),
                }
            }
        }
        // A pass in which every read was merely asked again (the broker sent nothing for any)
        // would repeat itself: the reads left have no answer.
        let stuck = !progress && next.len() == before;
        if !moved.is_empty() && refreshes < MAX_REFRESHES {
            refreshes += 1;
            let mut topics: Vec<String> = moved.iter().map(|p| p.tp.topic.clone()).collect();
            topics.sort();
            topics.dedup();
            match meta::refresh_leaders(pool, state, topics, deadline).await {
                Ok(()) => next.append(&mut moved),
                Err(e) => failure = Some(e),
            }
        }
        next.extend(from_log_start(pool, state, out_of_range, deadline).await);
        if stuck {
            break;
        }
        pending = next;
    }
    match (answered, failure) {
        (false, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

fn by_leader(state: &ClusterState, pending: Vec<Pending>) -> (BTreeMap<i32, Vec<Pending>>, Vec<Pending>) {
    let leaders = ClusterState::lock(&state.leaders);
    let mut by_leader: BTreeMap<i32, Vec<Pending>> = BTreeMap::new();
    let mut leaderless = Vec::new();
    for p in pending {
        match leaders.get(&p.tp) {
            Some(l) => by_leader.entry(*l).or_default().push(p),
            None => leaderless.push(p),
        }
    }
    (by_leader, leaderless)
}

/// Reads that fell below the log start go on from it, as librdkafka's `auto.offset.reset`
/// (earliest) does; those beyond the log end have no record.
async fn from_log_start(pool: &Pool, state: &ClusterState, reads: Vec<Pending>, deadline: Instant) -> Vec<Pending> {
    if reads.is_empty() {
        return reads;
    }
    let tps: Vec<TopicPartition> = reads.iter().map(|p| p.tp.clone()).collect();
    let earliest = match meta::list_offsets(pool, state, &tps, OffsetSpec::Earliest, deadline).await {
        Ok(offsets) => offsets,
        Err(e) => {
            tracing::debug!(cluster = pool.cluster.as_str(), "ListOffsets after Fetch: {e}");
            return Vec::new();
        }
    };
    let earliest: BTreeMap<TopicPartition, i64> = earliest
        .into_iter()
        .filter_map(|o| Some((o.tp, o.offset.ok()?)))
        .collect();
    reads
        .into_iter()
        .filter_map(|mut p| {
            let start = *earliest.get(&p.tp)?;
            (start > p.at).then(|| {
                p.at = start;
                p
            })
        })
        .collect()
}

/// One Fetch to `leader` for `ps` (each partition once): how each read goes on, in order.
async fn fetch(pool: &Pool, leader: i32, ps: &mut [Pending], deadline: Instant) -> Result<Vec<Step>, NetError> {
    let conn = pool.node(leader, deadline).await?;
    let request = |_version: i16| {
        let mut r = FetchRequest::default();
        r.replica_id = BrokerId(-1);
        r.max_wait_ms = 0;
        r.min_bytes = 0;
        r.max_bytes = RESPONSE_BYTES;
        r.isolation_level = 0;
        r.session_id = 0;
        r.session_epoch = -1;
        // Consecutive partitions of a topic share one entry; the broker reads them in order.
        let mut topics: Vec<FetchTopic> = Vec::new();
        for p in ps.iter() {
            if topics.last().is_none_or(|t| t.topic.0.as_str() != p.tp.topic) {
                let mut t = FetchTopic::default();
                t.topic = TopicName(StrBytes::from_string(p.tp.topic.clone()));
                topics.push(t);
            }
            let mut fp = FetchPartition::default();
            fp.partition = p.tp.partition;
            fp.current_leader_epoch = -1;
            fp.fetch_offset = p.at;
            fp.last_fetched_epoch = -1;
            fp.log_start_offset = -1;
            fp.partition_max_bytes = i32::try_from(p.bytes).unwrap_or(i32::MAX);
            if let Some(t) = topics.last_mut() {
                t.partitions.push(fp);
            }
        }
        r.topics = topics;
        r
    };
    let response = pool.call(conn, "Fetch", FETCH, request, deadline).await?;
    if response.error_code != 0 {
        return Err(NetError::Protocol(format!(
            "Fetch: {}",
            error_name(response.error_code)
        )));
    }
    // Answers are matched by name: a broker may order them as it likes.
    let mut answers: HashMap<(&str, i32), (i16, i64, Option<bytes::Bytes>)> = HashMap::new();
    let response_topics: Vec<(String, Vec<_>)> = response
        .responses
        .into_iter()
        .map(|t| (t.topic.0.to_string(), t.partitions))
        .collect();
    for (topic, partitions) in &response_topics {
        for p in partitions {
            answers.insert(
                (topic.as_str(), p.partition_index),
                (p.error_code, p.high_watermark, p.records.clone()),
            );
        }
    }
    // The broker fills the response in request order: what the partitions before one took is
    // what tells whether it had room for the bytes it asked.
    let mut used = 0usize;
    Ok(ps
        .iter_mut()
        .map(|p| {
            let answer = answers.get(&(p.tp.topic.as_str(), p.tp.partition)).cloned();
            match answer {
                None => Step::Done(None),
                Some((code, hw, records)) => {
                    let records = records.as_deref().unwrap_or(&[]);
                    let room = RESPONSE_BYTES as usize >= used + p.bytes;
                    used += records.len();
                    step(&pool.cluster, p, (code, hw, records), room)
                }
            }
        })
        .collect())
}

/// How one partition's answer (error code, high watermark, record data) moves its read on;
/// `room`: the response had room for all the bytes the partition asked.
fn step(cluster: &str, p: &mut Pending, (code, high_watermark, records): (i16, i64, &[u8]), room: bool) -> Step {
    const OFFSET_OUT_OF_RANGE: i16 = 1;
    match code {
        0 => {}
        OFFSET_OUT_OF_RANGE => return Step::OutOfRange,
        c if is_retriable(c) => return Step::Leader,
        c => {
            tracing::debug!(
                cluster,
                topic = p.tp.topic.as_str(),
                partition = p.tp.partition,
                "reading a record: {}",
                error_name(c)
            );
            return Step::Done(None);
        }
    }
    match batch::first_record_at(records, p.at) {
        Ok(Found::Record { offset, timestamp_ms }) => Step::Done(timestamp_ms.map(|ts| (offset, ts))),
        // Cut at the bytes asked for, or where the response was full: asked again with room
        // for the whole batch.
        Ok(Found::Truncated(n)) if n <= MAX_BATCH_BYTES => {
            let more = n > p.bytes;
            p.bytes = p.bytes.max(n);
            Step::Again(more)
        }
        Ok(Found::Truncated(n)) => {
            tracing::debug!(
                cluster,
                topic = p.tp.topic.as_str(),
                partition = p.tp.partition,
                "reading a record: a batch of {n} bytes exceeds the limit of {MAX_BATCH_BYTES}"
            );
            Step::Done(None)
        }
        // Nothing came though there are records: the batch at the offset is larger than the
        // bytes asked (a broker sends no partial batch but for the first partition of a
        // response), or the response was full before this partition. Asked again, with more
        // bytes in the first case.
        Ok(Found::Past { .. }) if records.is_empty() && p.at < high_watermark => {
            if !room {
                Step::Again(false)
            } else if p.bytes < MAX_BATCH_BYTES {
                p.bytes = (p.bytes * 4).min(MAX_BATCH_BYTES);
                Step::Again(true)
            } else {
                tracing::debug!(
                    cluster,
                    topic = p.tp.topic.as_str(),
                    partition = p.tp.partition,
                    "reading a record: no batch within {MAX_BATCH_BYTES} bytes"
                );
                Step::Done(None)
            }
        }
        Ok(Found::Past { next }) if next < high_watermark && next > p.at => {
            p.at = next;
            Step::Again(true)
        }
        Ok(Found::Past { .. }) => Step::Done(None),
        Ok(Found::Unsupported(why)) => {
            tracing::debug!(
                cluster,
                topic = p.tp.topic.as_str(),
                partition = p.tp.partition,
                "record batch left to librdkafka: {why}"
            );
            Step::Unsupported
        }
        Err(e) => {
            tracing::debug!(
                cluster,
                topic = p.tp.topic.as_str(),
                partition = p.tp.partition,
                "reading a record: {e}"
            );
            Step::Done(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(at: i64) -> Pending {
        Pending {
            tp: TopicPartition::new("t", 0),
            requested: at,
            at,
            bytes: FIRST_BYTES,
            reset: false,
        }
    }

    /// A batch of one record at `offset`, as the broker stores it (uncompressed, v2).
    fn one_record(offset: i64, ts: i64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(offset.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.push(2);
        b.extend(0u32.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.extend(ts.to_be_bytes());
        b.extend(ts.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(1i32.to_be_bytes());
        // length 6: attributes, timestamp delta 0, offset delta 0, no key, empty value, no headers
        b.extend([12, 0, 0, 0, 1, 0, 0]);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn a_record_ends_the_read() {
        let mut p = pending(5);
        assert_eq!(
            step("c", &mut p, (0, 9, &one_record(5, 77)), true),
            Step::Done(Some((5, 77)))
        );
        // Only a transaction marker: the read goes on after it, up to the high watermark.
        let mut marker = one_record(6, 77);
        marker[22] = 0x20;
        let mut p = pending(6);
        assert_eq!(step("c", &mut p, (0, 9, &marker), true), Step::Again(true));
        assert_eq!(p.at, 7);
        let mut p = pending(6);
        assert_eq!(step("c", &mut p, (0, 7, &marker), true), Step::Done(None));
        // Bytes that do not move the read on end it rather than ask the same again.
        let mut p = pending(6);
        assert_eq!(step("c", &mut p, (0, 9, &one_record(5, 77)), true), Step::Done(None));
    }

    #[test]
    fn nothing_sent_grows_the_bytes_only_where_the_response_had_room() {
        let mut p = pending(0);
        assert_eq!(step("c", &mut p, (0, 10, &[]), true), Step::Again(true));
        assert_eq!(p.bytes, FIRST_BYTES * 4);
        assert_eq!(step("c", &mut p, (0, 10, &[]), false), Step::Again(false));
        assert_eq!(p.bytes, FIRST_BYTES * 4);
        p.bytes = MAX_BATCH_BYTES;
        assert_eq!(step("c", &mut p, (0, 10, &[]), true), Step::Done(None));
        // At the log end there is nothing to read.
        let mut p = pending(10);
        assert_eq!(step("c", &mut p, (0, 10, &[]), true), Step::Done(None));
    }

    #[test]
    fn a_cut_batch_is_asked_again_at_its_size() {
        let whole = one_record(3, 1);
        let mut p = pending(3);
        assert_eq!(step("c", &mut p, (0, 10, &whole[..30]), true), Step::Again(false));
        let mut p = pending(3);
        p.bytes = 20;
        assert_eq!(step("c", &mut p, (0, 10, &whole[..20]), true), Step::Again(true));
        assert_eq!(p.bytes, whole.len());
    }

    #[test]
    fn errors_sort_into_retries_resets_and_ends() {
        let mut p = pending(0);
        assert_eq!(step("c", &mut p, (1, -1, &[]), true), Step::OutOfRange);
        assert_eq!(step("c", &mut p, (6, -1, &[]), true), Step::Leader);
        assert_eq!(step("c", &mut p, (29, -1, &[]), true), Step::Done(None));
        let mut v1 = one_record(0, 0);
        v1[16] = 1;
        assert_eq!(step("c", &mut p, (0, 5, &v1), true), Step::Unsupported);
    }
}
