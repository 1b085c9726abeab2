//! Admin calls about the cluster and its topics: DescribeCluster, DescribeConfigs, ListOffsets.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;

use super::*;
use crate::kafka::{ClusterDescription, OffsetSpec, PartitionOffset, SourceError, TopicConfig, TopicPartition};

/// DescribeCluster: cluster id, controller and brokers with racks, in one request.
///
/// `rk` must be a live client handle for the whole call (the caller holds the client).
pub(in crate::kafka) fn describe_cluster(
    client: ClientRef<'_>,
    timeout: Duration,
) -> Result<ClusterDescription, SourceError> {
    let rk = client.as_ptr();
    const OP: &str = "DescribeCluster";
    let queue = Queue::new(client).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let options = AdminOptions::new(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
        timeout,
    )?;
    // SAFETY: rk, options and queue are valid; librdkafka copies the options.
    unsafe { rd::rd_kafka_DescribeCluster(rk, options.0.as_ptr(), queue.0.as_ptr()) };
    // librdkafka enforces the request timeout itself and then posts an error event; the extra
    // second only guards against a lost event.
    let event = queue
        .poll(timeout + Duration::from_secs(1))
        .ok_or_else(|| SourceError::new(OP, format!("no response within {timeout:?}")))?;
    if let Some(msg) = event.error() {
        return Err(SourceError::new(OP, msg));
    }
    if event.event_type() != rd::RD_KAFKA_EVENT_DESCRIBECLUSTER_RESULT {
        return Err(SourceError::new(OP, "unexpected event type on the result queue"));
    }
    // SAFETY: the event is a DescribeCluster result; all pointers read below are owned by it and
    // copied before `event` is dropped at the end of this function.
    unsafe {
        let result = rd::rd_kafka_event_DescribeCluster_result(event.0.as_ptr());
        if result.is_null() {
            return Err(SourceError::new(OP, "event carries no DescribeCluster result"));
        }
        let mut count = 0usize;
        let nodes = rd::rd_kafka_DescribeCluster_result_nodes(result, &mut count);
        let mut brokers = Vec::with_capacity(count);
        if !nodes.is_null() {
            for i in 0..count {
                if let Some(b) = node(*nodes.add(i)) {
                    brokers.push(b);
                }
            }
        }
        brokers.sort_by_key(|b| b.id);
        let controller_id = node(rd::rd_kafka_DescribeCluster_result_controller(result)).map(|b| b.id);
        let cluster_id = cstr_opt(rd::rd_kafka_DescribeCluster_result_cluster_id(result));
        Ok(ClusterDescription {
            cluster_id,
            controller_id,
            brokers,
        })
    }
}

/// Topics per DescribeConfigs call.
pub(super) const DESCRIBE_CONFIGS_CHUNK: usize = 1000;

/// DescribeConfigs of topics: one request (to any broker) per 1000 topics, all submitted at
/// once. Every key is returned, defaults included; sensitive values (which brokers never
/// return) are left out, and so are topics with a resource-level error (e.g. unknown topic,
/// authorization). Duplicates are described once; the result is sorted by topic.
pub(in crate::kafka) fn describe_topic_configs(
    client: ClientRef<'_>,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<TopicConfig>, SourceError> {
    let rk = client.as_ptr();
    const OP: &str = "DescribeConfigs";
    let unique: BTreeSet<&str> = topics.iter().map(String::as_str).collect();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + timeout;
    let queue = Queue::new(client).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let options = AdminOptions::new(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
        timeout,
    )?;
    let unique: Vec<&str> = unique.into_iter().collect();
    let mut calls = 0usize;
    for chunk in unique.chunks(DESCRIBE_CONFIGS_CHUNK) {
        let resources = chunk
            .iter()
            .map(|t| {
                ConfigResource::topic(&cstring(OP, "topic name", t)?)
                    .ok_or_else(|| SourceError::new(OP, "librdkafka returned no config resource"))
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        let mut ptrs: Vec<*mut rd::rd_kafka_ConfigResource_t> = resources.iter().map(|r| r.0.as_ptr()).collect();
        // SAFETY: rk, options and queue are valid; `ptrs` holds `ptrs.len()` live resources
        // that librdkafka copies, as it does the options.
        unsafe { rd::rd_kafka_DescribeConfigs(rk, ptrs.as_mut_ptr(), ptrs.len(), options.ptr(), queue.ptr()) };
        calls += 1;
    }
    let mut out = Vec::with_capacity(unique.len());
    for _ in 0..calls {
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let event = queue
            .poll(wait)
            .ok_or_else(|| SourceError::new(OP, format!("no response within {timeout:?}")))?
            .check(OP, rd::RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT)?;
        // SAFETY: the event is a DescribeConfigs result; everything read below is owned by it
        // and copied before `event` is dropped.
        unsafe {
            let result = rd::rd_kafka_event_DescribeConfigs_result(event.ptr());
            if result.is_null() {
                return Err(SourceError::new(OP, "event carries no DescribeConfigs result"));
            }
            let mut cnt = 0usize;
            let resources = rd::rd_kafka_DescribeConfigs_result_resources(result, &mut cnt);
            for &res in array(resources, cnt) {
                if res.is_null() || rd::rd_kafka_ConfigResource_error(res) != NO_ERROR {
                    continue;
                }
                let Some(name) = cstr_opt(rd::rd_kafka_ConfigResource_name(res)) else {
                    continue;
                };
                let mut n = 0usize;
                let entries = rd::rd_kafka_ConfigResource_configs(res, &mut n);
                let mut configs = BTreeMap::new();
                for &entry in array(entries, n) {
                    if entry.is_null() || rd::rd_kafka_ConfigEntry_is_sensitive(entry) != 0 {
                        continue;
                    }
                    if let (Some(k), Some(v)) = (
                        cstr_opt(rd::rd_kafka_ConfigEntry_name(entry)),
                        cstr_opt(rd::rd_kafka_ConfigEntry_value(entry)),
                    ) {
                        configs.insert(k, v);
                    }
                }
                out.push((name, configs));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The ListOffsets spec value and isolation level of an [`OffsetSpec`].
pub(super) fn offset_spec(spec: OffsetSpec) -> (i64, rd::rd_kafka_IsolationLevel_t) {
    use rd::rd_kafka_IsolationLevel_t::{
        RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED, RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED,
    };
    use rd::rd_kafka_OffsetSpec_t::{RD_KAFKA_OFFSET_SPEC_EARLIEST, RD_KAFKA_OFFSET_SPEC_LATEST};
    match spec {
        OffsetSpec::Earliest => (
            RD_KAFKA_OFFSET_SPEC_EARLIEST as i64,
            RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED,
        ),
        OffsetSpec::Latest => (
            RD_KAFKA_OFFSET_SPEC_LATEST as i64,
            RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED,
        ),
        // Under read_committed the broker answers LATEST with the last stable offset.
        OffsetSpec::LatestCommitted => (
            RD_KAFKA_OFFSET_SPEC_LATEST as i64,
            RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED,
        ),
    }
}

/// Partitions per ListOffsets admin call. librdkafka merges the per-leader answers of one
/// call by a linear search of the call's partition list for every partition answered, which is
/// quadratic: one call for 10,000 partitions costs 50 million topic-name comparisons (most of a
/// cycle's CPU in a profile). Calls of 1,000 keep that linear in the partition count, at the
/// price of one ListOffsets request per leader per 1,000 partitions.
pub(super) const LIST_OFFSETS_CHUNK: usize = 1000;

/// ListOffsets for many partitions: one admin call per 1,000 partitions, all in flight at once,
/// spread over `clients` (all of the same cluster) in turn so that they travel on several
/// connections; librdkafka sends one ListOffsets request per leader of each call (leaders come
/// from its metadata cache). Duplicates are listed once; the result is sorted by partition and
/// has an entry for every distinct partition asked for. `timeout` bounds the whole call.
pub(in crate::kafka) fn list_offsets(
    clients: &[ClientRef<'_>],
    partitions: &[TopicPartition],
    spec: OffsetSpec,
    timeout: Duration,
) -> Result<Vec<PartitionOffset>, SourceError> {
    const OP: &str = "ListOffsets";
    let unique: BTreeSet<&TopicPartition> = partitions.iter().collect();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(tp) = unique.iter().find(|tp| tp.partition < 0) {
        return Err(SourceError::new(
            OP,
            format!("negative partition {} of {}", tp.partition, tp.topic),
        ));
    }
    let (spec_value, isolation) = offset_spec(spec);
    let unique: Vec<&TopicPartition> = unique.into_iter().collect();
    let deadline = Instant::now() + timeout;
    // One result queue per client; the calls are spread over the clients in turn.
    let mut queues: Vec<(ClientRef<'_>, Queue, usize)> = Vec::with_capacity(clients.len());
    for &client in clients {
        let queue = Queue::new(client).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
        queues.push((client, queue, 0));
    }
    if queues.is_empty() {
        return Err(SourceError::new(OP, "no client"));
    }
    for (i, chunk) in unique.chunks(LIST_OFFSETS_CHUNK).enumerate() {
        let slot = i % queues.len();
        let client = queues[slot].0;
        let mut list =
            PartitionList::new(chunk.len()).ok_or_else(|| SourceError::new(OP, "cannot allocate a partition list"))?;
        // Partitions are sorted, so a topic's name is converted once per chunk.
        let mut topic: Option<(&str, CString)> = None;
        for tp in chunk {
            if topic.as_ref().is_none_or(|(name, _)| *name != tp.topic) {
                topic = Some((tp.topic.as_str(), cstring(OP, "topic name", &tp.topic)?));
            }
            let Some((_, name)) = &topic else { continue };
            if !list.add(name, tp.partition, spec_value) {
                return Err(SourceError::new(OP, "cannot grow the partition list"));
            }
        }
        let options = AdminOptions::new(client, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS, timeout)?;
        options.set_isolation_level(OP, isolation)?;
        let (_, queue, calls) = &mut queues[slot];
        // SAFETY: rk, list, options and queue are valid (the queue belongs to rk's client);
        // librdkafka copies the list and the options, so both may be dropped after the call.
        unsafe { rd::rd_kafka_ListOffsets(client.as_ptr(), list.0.as_ptr(), options.ptr(), queue.ptr()) };
        *calls += 1;
    }
    let mut out = Vec::with_capacity(unique.len());
    let pending = queues
        .iter()
        .flat_map(|(_, queue, calls)| std::iter::repeat_n(queue, *calls));
    for queue in pending {
        let wait = deadline.saturating_duration_since(Instant::now());
        let event = wait_result(OP, queue, wait, rd::RD_KAFKA_EVENT_LISTOFFSETS_RESULT)?;
        out.extend(list_offsets_result(&event)?);
    }
    out.sort_by(|a, b| a.tp.cmp(&b.tp));
    Ok(out)
}

/// The partitions' offsets (or errors) of one ListOffsets result event.
fn list_offsets_result(event: &Event) -> Result<Vec<PartitionOffset>, SourceError> {
    const OP: &str = "ListOffsets";
    let mut out = Vec::new();
    // SAFETY: the event is a ListOffsets result; everything read below is owned by it and
    // copied before `event` is dropped.
    unsafe {
        let result = rd::rd_kafka_event_ListOffsets_result(event.ptr());
        if result.is_null() {
            return Err(SourceError::new(OP, "event carries no ListOffsets result"));
        }
        let mut cnt = 0usize;
        let infos = rd::rd_kafka_ListOffsets_result_infos(result, &mut cnt);
        for &info in array(infos, cnt) {
            let Some(tp) = rd::rd_kafka_ListOffsetsResultInfo_topic_partition(info).as_ref() else {
                continue;
            };
            let offset = if tp.err != NO_ERROR {
                Err(code_message(tp.err))
            } else if tp.offset < 0 {
                Err("no offset in the response".to_string())
            } else {
                Ok(tp.offset)
            };
            out.push(PartitionOffset {
                tp: TopicPartition::new(cstr_opt(tp.topic).unwrap_or_default(), tp.partition),
                offset,
            });
        }
    }
    Ok(out)
}
