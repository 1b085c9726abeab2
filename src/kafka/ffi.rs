//! Every `unsafe` call of the exporter lives here: librdkafka admin operations that the
//! `rdkafka` crate does not wrap, two allocator calls ([`limit_malloc_arenas`],
//! [`release_free_heap`]) and the open files limit ([`raise_open_files_limit`]). Each native
//! handle is owned by an RAII guard so it is released on every path, including early
//! returns and panics.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;

use super::{
    Broker, ClusterDescription, GroupDescription, GroupListing, GroupMember, GroupOffsets, GroupState, GroupType,
    OffsetSpec, PartitionOffset, SourceError, TopicConfig, TopicPartition,
};

use rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR as NO_ERROR;

/// Caps glibc's malloc arenas at `n` (`M_ARENA_MAX`). Returns false where that is not possible
/// (another libc, or glibc refused).
pub(super) fn limit_malloc_arenas(n: i32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; called before other threads start.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = n;
        false
    }
}

/// Sets the soft `RLIMIT_NOFILE` to the hard one; returns the soft limit now in force.
pub(super) fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct through a pointer to a valid, owned one.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed by reference.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// Hands free heap pages back to the kernel (`malloc_trim(0)`). Returns whether any memory was
/// released; false where that is not possible (another libc).
pub(super) fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it is safe to
        // call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// A private result queue for one admin request, destroyed on drop.
struct Queue(NonNull<rd::rd_kafka_queue_t>);

impl Queue {
    fn new(rk: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: `rk` is a live client handle owned by the caller for the whole call.
        NonNull::new(unsafe { rd::rd_kafka_queue_new(rk) }).map(Queue)
    }

    fn ptr(&self) -> *mut rd::rd_kafka_queue_t {
        self.0.as_ptr()
    }

    /// Waits up to `timeout` for the next event on the queue.
    fn poll(&self, timeout: Duration) -> Option<Event> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue pointer is valid until `self` is dropped.
        NonNull::new(unsafe { rd::rd_kafka_queue_poll(self.0.as_ptr(), ms) }).map(Event)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new and destroyed exactly once.
        unsafe { rd::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// Options of one admin request, destroyed on drop.
struct AdminOptions(NonNull<rd::rd_kafka_AdminOptions_t>);

impl AdminOptions {
    fn new(rk: *mut rd::rd_kafka_t, op: rd::rd_kafka_admin_op_t, timeout: Duration) -> Result<Self, SourceError> {
        // SAFETY: `rk` is a live client handle.
        let ptr = unsafe { rd::rd_kafka_AdminOptions_new(rk, op) };
        let opts = NonNull::new(ptr)
            .map(AdminOptions)
            .ok_or_else(|| SourceError::new("admin options", "librdkafka returned no options object"))?;
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut errstr = [0 as c_char; 256];
        // SAFETY: `opts` is valid; errstr is a writable buffer of the given size.
        let err = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(opts.0.as_ptr(), ms, errstr.as_mut_ptr(), errstr.len())
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: librdkafka NUL-terminates errstr on error.
            let msg = unsafe { CStr::from_ptr(errstr.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(SourceError::new("admin options", msg));
        }
        Ok(opts)
    }

    fn ptr(&self) -> *mut rd::rd_kafka_AdminOptions_t {
        self.0.as_ptr()
    }

    fn set_isolation_level(&self, op: &'static str, level: rd::rd_kafka_IsolationLevel_t) -> Result<(), SourceError> {
        // SAFETY: the options are valid; the returned error object (if any) is ours to release,
        // which `take_error` does.
        unsafe { take_error(op, rd::rd_kafka_AdminOptions_set_isolation_level(self.ptr(), level)) }
    }

    fn set_require_stable_offsets(&self, op: &'static str, stable: bool) -> Result<(), SourceError> {
        // SAFETY: as in `set_isolation_level`.
        unsafe {
            take_error(
                op,
                rd::rd_kafka_AdminOptions_set_require_stable_offsets(self.ptr(), i32::from(stable)),
            )
        }
    }

    /// Tags the request's result event with an integer (see [`Event::opaque`]).
    fn set_opaque(&self, tag: usize) {
        // SAFETY: the options are valid; the opaque is an integer tag that librdkafka hands back
        // unchanged and never dereferences.
        unsafe { rd::rd_kafka_AdminOptions_set_opaque(self.ptr(), tag as *mut c_void) }
    }
}

impl Drop for AdminOptions {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new and destroyed exactly once.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0.as_ptr()) }
    }
}

/// An event taken from a queue, destroyed on drop. Everything borrowed from it (result objects,
/// strings) must be copied out before it goes.
struct Event(NonNull<rd::rd_kafka_event_t>);

impl Event {
    /// The request-level error of the event, if any.
    fn error(&self) -> Option<String> {
        // SAFETY: the event is valid while `self` lives.
        let err = unsafe { rd::rd_kafka_event_error(self.0.as_ptr()) };
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // SAFETY: as above; the returned string lives as long as the event.
        let msg = unsafe { cstr_opt(rd::rd_kafka_event_error_string(self.0.as_ptr())) };
        Some(msg.unwrap_or_else(|| format!("{err:?}")))
    }

    fn event_type(&self) -> rd::rd_kafka_event_type_t {
        // SAFETY: the event is valid while `self` lives.
        unsafe { rd::rd_kafka_event_type(self.0.as_ptr()) }
    }

    fn ptr(&self) -> *mut rd::rd_kafka_event_t {
        self.0.as_ptr()
    }

    /// The tag set with [`AdminOptions::set_opaque`].
    fn opaque(&self) -> usize {
        // SAFETY: the event is valid while `self` lives; the opaque is only read as an integer.
        unsafe { rd::rd_kafka_event_opaque(self.0.as_ptr()) as usize }
    }

    /// Fails unless the event carries no request-level error and has the expected type.
    fn check(self, op: &'static str, expected: rd::rd_kafka_event_type_t) -> Result<Event, SourceError> {
        if let Some(msg) = self.error() {
            return Err(SourceError::new(op, msg));
        }
        if self.event_type() != expected {
            return Err(SourceError::new(op, "unexpected event type on the result queue"));
        }
        Ok(self)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: taken from rd_kafka_queue_poll and destroyed exactly once.
        unsafe { rd::rd_kafka_event_destroy(self.0.as_ptr()) }
    }
}

/// Copies a C string owned by librdkafka; `None` for NULL.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for the duration of the call.
unsafe fn cstr_opt(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// Copies a `rd_kafka_Node_t`.
///
/// # Safety
/// `node` must be NULL or a valid node owned by a live result object.
unsafe fn node(node: *const rd::rd_kafka_Node_t) -> Option<Broker> {
    if node.is_null() {
        return None;
    }
    Some(Broker {
        id: rd::rd_kafka_Node_id(node),
        host: cstr_opt(rd::rd_kafka_Node_host(node)).unwrap_or_default(),
        port: rd::rd_kafka_Node_port(node),
        rack: cstr_opt(rd::rd_kafka_Node_rack(node)).filter(|r| !r.is_empty()),
    })
}

/// DescribeCluster: cluster id, controller and brokers with racks, in one request.
///
/// `rk` must be a live client handle for the whole call (the caller holds the client).
pub(super) fn describe_cluster(rk: *mut rd::rd_kafka_t, timeout: Duration) -> Result<ClusterDescription, SourceError> {
    const OP: &str = "DescribeCluster";
    let queue = Queue::new(rk).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let options = AdminOptions::new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER, timeout)?;
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

/// Converts and releases an error object returned by librdkafka (NULL means success).
///
/// # Safety
/// `err` must be NULL or an error object owned by the caller; it is destroyed here.
unsafe fn take_error(op: &'static str, err: *mut rd::rd_kafka_error_t) -> Result<(), SourceError> {
    if err.is_null() {
        return Ok(());
    }
    let msg = error_message(err);
    rd::rd_kafka_error_destroy(err);
    Err(SourceError::new(op, msg))
}

/// The message of an error object, with the error name (e.g. `GROUP_ID_NOT_FOUND`).
///
/// # Safety
/// `err` must be a valid error object.
unsafe fn error_message(err: *const rd::rd_kafka_error_t) -> String {
    let text = cstr_opt(rd::rd_kafka_error_string(err));
    let name = cstr_opt(rd::rd_kafka_error_name(err));
    join_error(text, name, || format!("{:?}", rd::rd_kafka_error_code(err)))
}

/// The message of an error code, with its name.
fn code_message(err: rd::rd_kafka_resp_err_t) -> String {
    // SAFETY: both functions return static strings for every code, known or not.
    let (text, name) = unsafe {
        (
            cstr_opt(rd::rd_kafka_err2str(err)),
            cstr_opt(rd::rd_kafka_err2name(err)),
        )
    };
    join_error(text, name, || format!("{err:?}"))
}

fn join_error(text: Option<String>, name: Option<String>, fallback: impl FnOnce() -> String) -> String {
    match (text.filter(|t| !t.is_empty()), name.filter(|n| !n.is_empty())) {
        (Some(t), Some(n)) if !t.contains(&n) => format!("{t} ({n})"),
        (Some(t), _) => t,
        (None, Some(n)) => n,
        (None, None) => fallback(),
    }
}

/// Views a result array returned by librdkafka.
///
/// # Safety
/// `ptr` must be NULL or point to `cnt` pointers owned by an object that outlives every use of
/// the returned slice.
unsafe fn array<'a, T>(ptr: *mut *const T, cnt: usize) -> &'a [*const T] {
    if ptr.is_null() || cnt == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, cnt)
    }
}

/// One element of a partition list, copied.
struct PartitionEntry {
    tp: TopicPartition,
    offset: i64,
    err: rd::rd_kafka_resp_err_t,
}

/// Copies a partition list owned by librdkafka.
///
/// # Safety
/// `list` must be NULL or a valid list that is not modified during the call.
unsafe fn read_partitions(list: *const rd::rd_kafka_topic_partition_list_t) -> Vec<PartitionEntry> {
    let Some(list) = list.as_ref() else {
        return Vec::new();
    };
    let cnt = usize::try_from(list.cnt).unwrap_or(0);
    if list.elems.is_null() || cnt == 0 {
        return Vec::new();
    }
    std::slice::from_raw_parts(list.elems, cnt)
        .iter()
        .map(|e| PartitionEntry {
            tp: TopicPartition::new(cstr_opt(e.topic).unwrap_or_default(), e.partition),
            offset: e.offset,
            err: e.err,
        })
        .collect()
}

/// A partition list built for a request, destroyed on drop.
struct PartitionList(NonNull<rd::rd_kafka_topic_partition_list_t>);

impl PartitionList {
    fn new(capacity: usize) -> Option<Self> {
        let capacity = i32::try_from(capacity).unwrap_or(i32::MAX);
        // SAFETY: a plain allocation, released in `Drop`.
        NonNull::new(unsafe { rd::rd_kafka_topic_partition_list_new(capacity) }).map(PartitionList)
    }

    fn add(&mut self, topic: &CStr, partition: i32, offset: i64) -> bool {
        // SAFETY: the list is valid and exclusively ours; librdkafka copies the topic name. The
        // returned element lives inside the list and is written before the list changes again.
        unsafe {
            let elem = rd::rd_kafka_topic_partition_list_add(self.0.as_ptr(), topic.as_ptr(), partition);
            match elem.as_mut() {
                Some(elem) => {
                    elem.offset = offset;
                    true
                }
                None => false,
            }
        }
    }
}

impl Drop for PartitionList {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_topic_partition_list_new and destroyed exactly once.
        unsafe { rd::rd_kafka_topic_partition_list_destroy(self.0.as_ptr()) }
    }
}

/// The request object of one ListConsumerGroupOffsets call, destroyed on drop (librdkafka keeps
/// its own copy once the call is made).
struct GroupOffsetsRequest(NonNull<rd::rd_kafka_ListConsumerGroupOffsets_t>);

impl GroupOffsetsRequest {
    /// A request for every partition the group has committed (NULL partition list).
    fn all_partitions(group: &CStr) -> Option<Self> {
        // SAFETY: `group` is NUL-terminated and copied by librdkafka; NULL partitions is allowed.
        let ptr = unsafe { rd::rd_kafka_ListConsumerGroupOffsets_new(group.as_ptr(), std::ptr::null()) };
        NonNull::new(ptr).map(GroupOffsetsRequest)
    }
}

impl Drop for GroupOffsetsRequest {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_ListConsumerGroupOffsets_new and destroyed exactly once.
        unsafe { rd::rd_kafka_ListConsumerGroupOffsets_destroy(self.0.as_ptr()) }
    }
}

fn cstring(op: &'static str, what: &str, value: &str) -> Result<CString, SourceError> {
    CString::new(value).map_err(|_| SourceError::new(op, format!("{what} {value:?} contains a NUL byte")))
}

/// Waits for the single result event of a request on a private queue.
fn wait_result(
    op: &'static str,
    queue: &Queue,
    timeout: Duration,
    expected: rd::rd_kafka_event_type_t,
) -> Result<Event, SourceError> {
    // librdkafka enforces the request timeout itself and then posts an error event; the extra
    // second only guards against a lost event.
    queue
        .poll(timeout + Duration::from_secs(1))
        .ok_or_else(|| SourceError::new(op, format!("no response within {timeout:?}")))?
        .check(op, expected)
}

/// A config resource built for a request, destroyed on drop (librdkafka copies it).
struct ConfigResource(NonNull<rd::rd_kafka_ConfigResource_t>);

impl ConfigResource {
    fn topic(name: &CStr) -> Option<Self> {
        // SAFETY: `name` is NUL-terminated and copied by librdkafka.
        let ptr = unsafe {
            rd::rd_kafka_ConfigResource_new(rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr())
        };
        NonNull::new(ptr).map(ConfigResource)
    }
}

impl Drop for ConfigResource {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_ConfigResource_new and destroyed exactly once.
        unsafe { rd::rd_kafka_ConfigResource_destroy(self.0.as_ptr()) }
    }
}

/// Topics per DescribeConfigs call.
const DESCRIBE_CONFIGS_CHUNK: usize = 1000;

/// DescribeConfigs of topics: one request (to any broker) per 1000 topics, all submitted at
/// once. Every key is returned, defaults included; sensitive values (which brokers never
/// return) are left out, and so are topics with a resource-level error (e.g. unknown topic,
/// authorization). Duplicates are described once; the result is sorted by topic.
pub(super) fn describe_topic_configs(
    rk: *mut rd::rd_kafka_t,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<TopicConfig>, SourceError> {
    const OP: &str = "DescribeConfigs";
    let unique: BTreeSet<&str> = topics.iter().map(String::as_str).collect();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + timeout;
    let queue = Queue::new(rk).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let options = AdminOptions::new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout)?;
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
fn offset_spec(spec: OffsetSpec) -> (i64, rd::rd_kafka_IsolationLevel_t) {
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

fn group_state(state: rd::rd_kafka_consumer_group_state_t) -> GroupState {
    use rd::rd_kafka_consumer_group_state_t as S;
    match state {
        S::RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE => GroupState::PreparingRebalance,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE => GroupState::CompletingRebalance,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_STABLE => GroupState::Stable,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_DEAD => GroupState::Dead,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY => GroupState::Empty,
        // KIP-848 groups also report `Assigning` and `Reconciling`, which librdkafka maps to
        // UNKNOWN.
        S::RD_KAFKA_CONSUMER_GROUP_STATE_UNKNOWN | S::RD_KAFKA_CONSUMER_GROUP_STATE__CNT => GroupState::Unknown,
    }
}

fn group_type(t: rd::rd_kafka_consumer_group_type_t) -> GroupType {
    use rd::rd_kafka_consumer_group_type_t as T;
    match t {
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => GroupType::Classic,
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => GroupType::Consumer,
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_UNKNOWN | T::RD_KAFKA_CONSUMER_GROUP_TYPE__CNT => GroupType::Unknown,
    }
}

/// Partitions per ListOffsets admin call. librdkafka merges the per-leader answers of one
/// call by a linear search of the call's partition list for every partition answered, which is
/// quadratic: one call for 10,000 partitions costs 50 million topic-name comparisons (most of a
/// cycle's CPU in a profile). Calls of 1,000 keep that linear in the partition count, at the
/// price of one ListOffsets request per leader per 1,000 partitions.
const LIST_OFFSETS_CHUNK: usize = 1000;

/// ListOffsets for many partitions: one admin call per 1,000 partitions, all in flight at once,
/// spread over `clients` (all of the same cluster) in turn so that they travel on several
/// connections; librdkafka sends one ListOffsets request per leader of each call (leaders come
/// from its metadata cache). Duplicates are listed once; the result is sorted by partition and
/// has an entry for every distinct partition asked for. `timeout` bounds the whole call.
pub(super) fn list_offsets(
    clients: &[*mut rd::rd_kafka_t],
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
    let mut queues: Vec<(*mut rd::rd_kafka_t, Queue, usize)> = Vec::with_capacity(clients.len());
    for &rk in clients {
        let queue = Queue::new(rk).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
        queues.push((rk, queue, 0));
    }
    if queues.is_empty() {
        return Err(SourceError::new(OP, "no client"));
    }
    for (i, chunk) in unique.chunks(LIST_OFFSETS_CHUNK).enumerate() {
        let slot = i % queues.len();
        let rk = queues[slot].0;
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
        let options = AdminOptions::new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS, timeout)?;
        options.set_isolation_level(OP, isolation)?;
        let (_, queue, calls) = &mut queues[slot];
        // SAFETY: rk, list, options and queue are valid (the queue belongs to rk's client);
        // librdkafka copies the list and the options, so both may be dropped after the call.
        unsafe { rd::rd_kafka_ListOffsets(rk, list.0.as_ptr(), options.ptr(), queue.ptr()) };
        *calls += 1;
    }
    let mut out = Vec::with_capacity(unique.len());
    let pending = queues
        .iter()
        .flat_map(|(_, queue, calls)| std::iter::repeat_n(queue, *calls));
    for queue in pending {
        let wait = deadline.saturating_duration_since(Instant::now());
        let event = wait_result(OP, queue, wait, rd::RD_KAFKA_EVENT_LISTOFFSETS_RESULT)?;
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
    }
    out.sort_by(|a, b| a.tp.cmp(&b.tp));
    Ok(out)
}

/// ListConsumerGroups: one ListGroups request to every broker. Returns the valid listings
/// (sorted by group) and the per-broker errors. No state or type filter is set, which means
/// every state and every type (classic and KIP-848 consumer groups). librdkafka itself drops
/// groups whose protocol type is neither empty nor `consumer` (e.g. Kafka Connect workers).
pub(super) fn list_groups(
    rk: *mut rd::rd_kafka_t,
    timeout: Duration,
) -> Result<(Vec<GroupListing>, Vec<String>), SourceError> {
    const OP: &str = "ListConsumerGroups";
    let queue = Queue::new(rk).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let options = AdminOptions::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
        timeout,
    )?;
    // SAFETY: rk, options and queue are valid; librdkafka copies the options.
    unsafe { rd::rd_kafka_ListConsumerGroups(rk, options.ptr(), queue.ptr()) };
    let event = wait_result(OP, &queue, timeout, rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT)?;
    // SAFETY: the event is a ListConsumerGroups result; everything read below is owned by it and
    // copied before `event` is dropped.
    let (mut groups, errors) = unsafe {
        let result = rd::rd_kafka_event_ListConsumerGroups_result(event.ptr());
        if result.is_null() {
            return Err(SourceError::new(OP, "event carries no ListConsumerGroups result"));
        }
        let mut cnt = 0usize;
        let valid = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut cnt);
        let groups: Vec<GroupListing> = array(valid, cnt)
            .iter()
            .filter(|l| !l.is_null())
            .map(|&l| GroupListing {
                group: cstr_opt(rd::rd_kafka_ConsumerGroupListing_group_id(l)).unwrap_or_default(),
                state: group_state(rd::rd_kafka_ConsumerGroupListing_state(l)),
                group_type: group_type(rd::rd_kafka_ConsumerGroupListing_type(l)),
                is_simple: rd::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(l) != 0,
            })
            .collect();
        let mut cnt = 0usize;
        let errs = rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut cnt);
        let errors: Vec<String> = array(errs, cnt)
            .iter()
            .filter(|e| !e.is_null())
            .map(|&e| error_message(e))
            .collect();
        (groups, errors)
    };
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    groups.dedup_by(|a, b| a.group == b.group);
    Ok((groups, errors))
}

/// Groups per DescribeConsumerGroups call.
const DESCRIBE_GROUPS_CHUNK: usize = 500;

/// DescribeConsumerGroups, one call per 500 groups, the calls one after another so a large
/// cluster does not get thousands of requests at once; `timeout` bounds the whole call and
/// groups not reached in time get an error entry. Within a call librdkafka 2.12 sends one
/// request per group to its coordinator, all in parallel (a FindCoordinator and a
/// ConsumerGroupDescribe each; classic groups answer GROUP_ID_NOT_FOUND there and get a second,
/// classic DescribeGroups request). Duplicates are described once; the result is sorted by
/// group.
pub(super) fn describe_groups(
    rk: *mut rd::rd_kafka_t,
    groups: &[String],
    timeout: Duration,
    min_request: Duration,
) -> Result<Vec<GroupDescription>, SourceError> {
    const OP: &str = "DescribeConsumerGroups";
    let unique: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let names = unique
        .iter()
        .map(|g| cstring(OP, "group id", g))
        .collect::<Result<Vec<CString>, SourceError>>()?;
    let deadline = Instant::now() + timeout;
    let queue = Queue::new(rk).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(DESCRIBE_GROUPS_CHUNK) {
        let left = deadline.saturating_duration_since(Instant::now());
        if !may_start(left, min_request) {
            // Like librdkafka's own per-group timeouts: an error entry per group left.
            out.extend(chunk.iter().map(|name| GroupDescription {
                group: name.to_string_lossy().into_owned(),
                state: GroupState::Unknown,
                group_type: GroupType::Unknown,
                assignor: String::new(),
                coordinator: None,
                members: Vec::new(),
                error: Some(format!("not described within {timeout:?}")),
            }));
            continue;
        }
        let options = AdminOptions::new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            left,
        )?;
        let mut ptrs: Vec<*const c_char> = chunk.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: rk, options and queue are valid; `ptrs` holds `ptrs.len()` NUL-terminated
        // strings that outlive the call; librdkafka copies the names and the options.
        unsafe { rd::rd_kafka_DescribeConsumerGroups(rk, ptrs.as_mut_ptr(), ptrs.len(), options.ptr(), queue.ptr()) };
        let event = wait_result(OP, &queue, left, rd::RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT)?;
        // SAFETY: the event is a DescribeConsumerGroups result; everything read below is owned
        // by it and copied before `event` is dropped.
        unsafe {
            let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event.ptr());
            if result.is_null() {
                return Err(SourceError::new(OP, "event carries no DescribeConsumerGroups result"));
            }
            let mut cnt = 0usize;
            let descs = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut cnt);
            for &d in array(descs, cnt) {
                if !d.is_null() {
                    out.push(group_description(d));
                }
            }
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(out)
}

/// Copies one group description.
///
/// # Safety
/// `d` must be a valid description owned by a live result event.
unsafe fn group_description(d: *const rd::rd_kafka_ConsumerGroupDescription_t) -> GroupDescription {
    let err = rd::rd_kafka_ConsumerGroupDescription_error(d);
    let error = (!err.is_null()).then(|| error_message(err));
    let count = rd::rd_kafka_ConsumerGroupDescription_member_count(d);
    let mut members = Vec::with_capacity(count);
    for i in 0..count {
        let m = rd::rd_kafka_ConsumerGroupDescription_member(d, i);
        if m.is_null() {
            continue;
        }
        let assignment = rd::rd_kafka_MemberDescription_assignment(m);
        let partitions = if assignment.is_null() {
            std::ptr::null()
        } else {
            rd::rd_kafka_MemberAssignment_partitions(assignment)
        };
        let mut assignment: Vec<TopicPartition> = read_partitions(partitions).into_iter().map(|e| e.tp).collect();
        assignment.sort();
        members.push(GroupMember {
            member_id: cstr_opt(rd::rd_kafka_MemberDescription_consumer_id(m)).unwrap_or_default(),
            client_id: cstr_opt(rd::rd_kafka_MemberDescription_client_id(m)).unwrap_or_default(),
            host: cstr_opt(rd::rd_kafka_MemberDescription_host(m)).unwrap_or_default(),
            assignment,
        });
    }
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    GroupDescription {
        group: cstr_opt(rd::rd_kafka_ConsumerGroupDescription_group_id(d)).unwrap_or_default(),
        state: group_state(rd::rd_kafka_ConsumerGroupDescription_state(d)),
        group_type: group_type(rd::rd_kafka_ConsumerGroupDescription_type(d)),
        assignor: cstr_opt(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(d)).unwrap_or_default(),
        coordinator: node(rd::rd_kafka_ConsumerGroupDescription_coordinator(d)).map(|b| b.id),
        members,
        error,
    }
}

/// Every classic group of the cluster, described with one ListGroups and one batched
/// DescribeGroups request per broker (librdkafka's `rd_kafka_list_groups`). The admin API's
/// DescribeConsumerGroups instead sends a FindCoordinator and a ConsumerGroupDescribe per group,
/// and for a classic group then a DescribeGroups as well; on a cluster with thousands of groups
/// that is most of a cycle's requests.
///
/// Groups that are not classic (KIP-848 `consumer` groups, share and streams groups) come back
/// `Dead` with an empty protocol type; so do groups that vanished between the two requests.
/// Callers describe those with [`describe_groups`]. `Err` when any broker did not answer.
pub(super) fn describe_classic_groups(
    rk: *mut rd::rd_kafka_t,
    timeout: Duration,
) -> Result<Vec<GroupDescription>, SourceError> {
    const OP: &str = "DescribeGroups";
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut list: *const rd::rd_kafka_group_list = std::ptr::null();
    // SAFETY: rk is a live client handle; on success (and only then) librdkafka stores a list
    // in `list` that we own and destroy below.
    let err = unsafe { rd::rd_kafka_list_groups(rk, std::ptr::null(), &mut list, ms) };
    if err != NO_ERROR {
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTIAL && !list.is_null() {
            // SAFETY: a partial result is still ours to destroy.
            unsafe { rd::rd_kafka_group_list_destroy(list) };
        }
        return Err(SourceError::new(OP, code_message(err)));
    }
    struct Owned(*const rd::rd_kafka_group_list);
    impl Drop for Owned {
        fn drop(&mut self) {
            if !self.0.is_null() {
                // SAFETY: returned by rd_kafka_list_groups and destroyed exactly once.
                unsafe { rd::rd_kafka_group_list_destroy(self.0) }
            }
        }
    }
    let list = Owned(list);
    // SAFETY: the list and everything it points to stay valid until `list` is dropped, after
    // all of it has been copied.
    let mut out: Vec<GroupDescription> = unsafe {
        let Some(l) = list.0.as_ref() else {
            return Ok(Vec::new());
        };
        let cnt = usize::try_from(l.group_cnt).unwrap_or(0);
        let groups = if l.groups.is_null() || cnt == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(l.groups, cnt)
        };
        groups.iter().map(|g| classic_group(g)).collect()
    };
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out.dedup_by(|a, b| a.group == b.group);
    Ok(out)
}

/// Copies one group of a legacy group list.
///
/// # Safety
/// `g` must be a valid entry of a live `rd_kafka_group_list`.
unsafe fn classic_group(g: &rd::rd_kafka_group_info) -> GroupDescription {
    let protocol_type = cstr_opt(g.protocol_type).unwrap_or_default();
    let cnt = usize::try_from(g.member_cnt).unwrap_or(0);
    let members = if g.members.is_null() || cnt == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(g.members, cnt)
    };
    let mut members: Vec<GroupMember> = members
        .iter()
        .map(|m| {
            let bytes = if m.member_assignment.is_null() || m.member_assignment_size <= 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(
                    m.member_assignment.cast::<u8>(),
                    usize::try_from(m.member_assignment_size).unwrap_or(0),
                )
            };
            let mut assignment = if protocol_type == "consumer" {
                consumer_assignment(bytes).unwrap_or_default()
            } else {
                Vec::new()
            };
            assignment.sort();
            GroupMember {
                member_id: cstr_opt(m.member_id).unwrap_or_default(),
                client_id: cstr_opt(m.client_id).unwrap_or_default(),
                host: cstr_opt(m.client_host).unwrap_or_default(),
                assignment,
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let state = cstr_opt(g.state).unwrap_or_default();
    GroupDescription {
        group: cstr_opt(g.group).unwrap_or_default(),
        state: classic_state(&state),
        group_type: GroupType::Classic,
        assignor: cstr_opt(g.protocol).unwrap_or_default(),
        coordinator: (g.broker.id >= 0).then_some(g.broker.id),
        members,
        error: (g.err != NO_ERROR).then(|| code_message(g.err)),
    }
}

/// A classic group state as DescribeGroups names it.
fn classic_state(state: &str) -> GroupState {
    match state {
        "PreparingRebalance" => GroupState::PreparingRebalance,
        "CompletingRebalance" | "AwaitingSync" => GroupState::CompletingRebalance,
        "Stable" => GroupState::Stable,
        "Dead" => GroupState::Dead,
        "Empty" => GroupState::Empty,
        _ => GroupState::Unknown,
    }
}

/// Parses a member assignment of the classic `consumer` protocol (any version): int16 version,
/// then an array of (topic string, array of int32 partitions); user data after that is ignored.
/// `None` when the bytes are truncated.
fn consumer_assignment(b: &[u8]) -> Option<Vec<TopicPartition>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take::<2>().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take::<4>().map(i32::from_be_bytes)
        }
        fn string(&mut self) -> Option<String> {
            let len = usize::try_from(self.i16()?).ok()?;
            let s = self.0.get(..len)?;
            self.0 = &self.0[len..];
            Some(String::from_utf8_lossy(s).into_owned())
        }
    }
    if b.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(b);
    r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let n = r.i32()?;
        for _ in 0..n.max(0) {
            out.push(TopicPartition::new(topic.clone(), r.i32()?));
        }
    }
    Some(out)
}

/// The committed offsets of one group, or why they could not be read.
type CommittedOffsets = Result<Vec<(TopicPartition, i64)>, String>;

/// Whether a group-coordinator request (DescribeConsumerGroups, ListConsumerGroupOffsets) may
/// start with `left` until the caller's deadline, which becomes the request's admin deadline.
///
/// When a request is in flight to a hung group coordinator and librdkafka's admin deadline
/// expires before the connection's socket timeout, librdkafka releases the request's completion
/// handle twice and aborts the process (`rd_kafka_enq_once_del_source_return: Assertion
/// 'eonce->refcnt > 0'`). Callers pass a `min_request` longer than the socket timeout
/// (`client::socket_timeout`), so the socket timeout always fires first and the request fails
/// through its normal response path.
fn may_start(left: Duration, min_request: Duration) -> bool {
    !left.is_zero() && left >= min_request
}

/// ListConsumerGroupOffsets for many groups. librdkafka takes one group per call, so up to
/// `concurrency` calls are kept in flight on one private queue, each tagged with its index, and
/// refilled as results arrive. `timeout` bounds the whole call: every request gets the time that
/// is left, none is started with less than `min_request` left (see
/// [`may_start`]), and groups not answered in time get an `Err`. The result has one entry per input
/// group, in input order.
pub(super) fn group_offsets(
    rk: *mut rd::rd_kafka_t,
    groups: &[String],
    concurrency: usize,
    timeout: Duration,
    min_request: Duration,
) -> Result<Vec<GroupOffsets>, SourceError> {
    const OP: &str = "ListConsumerGroupOffsets";
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + timeout;
    let queue = Queue::new(rk).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let window = concurrency.max(1);
    let mut results: Vec<Option<CommittedOffsets>> = vec![None; groups.len()];
    let mut next = 0usize;
    let mut in_flight = 0usize;
    loop {
        while in_flight < window && next < groups.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !may_start(left, min_request) {
                break;
            }
            match submit_group_offsets(rk, &queue, &groups[next], next, left) {
                Ok(()) => in_flight += 1,
                Err(e) => results[next] = Some(Err(e.message)),
            }
            next += 1;
        }
        if in_flight == 0 {
            break;
        }
        // Each request ends at its own timeout (at most the time left); the extra second only
        // guards against a lost event.
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let Some(event) = queue.poll(wait) else {
            break;
        };
        in_flight -= 1;
        let tag = event.opaque();
        if let Some(slot) = results.get_mut(tag).filter(|s| s.is_none()) {
            *slot = Some(group_offsets_result(event));
        }
    }
    Ok(groups
        .iter()
        .zip(results)
        .map(|(group, r)| GroupOffsets {
            group: group.clone(),
            offsets: r.unwrap_or_else(|| Err(format!("no response within {timeout:?}"))),
        })
        .collect())
}

fn submit_group_offsets(
    rk: *mut rd::rd_kafka_t,
    queue: &Queue,
    group: &str,
    tag: usize,
    timeout: Duration,
) -> Result<(), SourceError> {
    const OP: &str = "ListConsumerGroupOffsets";
    let name = cstring(OP, "group id", group)?;
    let options = AdminOptions::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
        timeout,
    )?;
    // require_stable would make the broker hold the answer while a transactional offset commit
    // is pending; committed-so-far is what lag needs.
    options.set_require_stable_offsets(OP, false)?;
    options.set_opaque(tag);
    let request = GroupOffsetsRequest::all_partitions(&name)
        .ok_or_else(|| SourceError::new(OP, "librdkafka returned no request object"))?;
    let mut ptr = request.0.as_ptr();
    // SAFETY: rk, options and queue are valid; `ptr` is an array of exactly one request object;
    // librdkafka copies the request and the options, so both may be dropped after the call.
    unsafe { rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut ptr, 1, options.ptr(), queue.ptr()) };
    Ok(())
}

/// The committed offsets in one ListConsumerGroupOffsets result. Partitions without a commit
/// (offset -1001) or with a partition-level error (e.g. topic authorization) are left out.
fn group_offsets_result(event: Event) -> CommittedOffsets {
    const OP: &str = "ListConsumerGroupOffsets";
    let event = event
        .check(OP, rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT)
        .map_err(|e| e.message)?;
    // SAFETY: the event is a ListConsumerGroupOffsets result; everything read below is owned by
    // it and copied before `event` is dropped.
    unsafe {
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.ptr());
        if result.is_null() {
            return Err("event carries no ListConsumerGroupOffsets result".into());
        }
        let mut cnt = 0usize;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut cnt);
        let Some(&g) = array(groups, cnt).first().filter(|g| !g.is_null()) else {
            return Err("empty ListConsumerGroupOffsets result".into());
        };
        let err = rd::rd_kafka_group_result_error(g);
        if !err.is_null() {
            return Err(error_message(err));
        }
        let mut offsets: Vec<(TopicPartition, i64)> = read_partitions(rd::rd_kafka_group_result_partitions(g))
            .into_iter()
            .filter(|e| e.err == NO_ERROR && e.offset >= 0)
            .map(|e| (e.tp, e.offset))
            .collect();
        offsets.sort();
        Ok(offsets)
    }
}

/// What one consumer poll returned.
#[derive(Debug)]
pub(super) enum Polled {
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        /// `None` when the record has no timestamp.
        timestamp_ms: Option<i64>,
    },
    /// The partition has no record at or after the fetch position (high watermark reached).
    Eof { topic: String, partition: i32 },
    /// A partition-level consumer error.
    PartitionError {
        topic: String,
        partition: i32,
        message: String,
    },
    /// A client-level error (a connection failure, rejected credentials, a consumer error).
    Error {
        code: rdkafka::types::RDKafkaErrorCode,
        message: String,
    },
    /// A librdkafka statistics report (JSON), emitted every `statistics.interval.ms`.
    Stats(String),
    /// A librdkafka log line (syslog level).
    Log {
        level: i32,
        facility: String,
        message: String,
    },
    /// Any other event (nothing to do).
    Other,
}

/// A client queue polled with the event API, destroyed on drop (it must not outlive the client).
///
/// - [`EventQueue::consumer`]: a consumer's queue, polled as `rdkafka`'s `BaseConsumer` does but
///   keeping the topic of partition EOFs and errors (the crate's `PartitionEOF` carries only the
///   partition number). Log lines arrive here too: the `rdkafka` crate routes them to the main
///   queue, which a consumer with a `group.id` forwards to this queue.
/// - [`EventQueue::main`]: a client's main queue, where librdkafka posts log lines and error
///   events. The `rdkafka` crate's `AdminClient` never polls it, so its owner must.
pub(super) struct EventQueue(Queue);

impl EventQueue {
    /// The consumer queue. `rk` must be a live consumer handle with a `group.id`, held by the
    /// caller for the lifetime of the returned value, and polled by nothing else meanwhile.
    pub(super) fn consumer(rk: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: `rk` is a live consumer; the returned reference is released by `Queue`'s drop.
        NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(rk) }).map(|q| EventQueue(Queue(q)))
    }

    /// The main queue. `rk` must be a live client handle held by the caller for the lifetime of
    /// the returned value.
    pub(super) fn main(rk: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: `rk` is a live client; the returned reference is released by `Queue`'s drop.
        NonNull::new(unsafe { rd::rd_kafka_queue_get_main(rk) }).map(|q| EventQueue(Queue(q)))
    }

    /// Waits up to `timeout` for the next event.
    pub(super) fn poll(&self, timeout: Duration) -> Option<Polled> {
        let event = self.0.poll(timeout)?;
        let polled = match event.event_type() {
            // SAFETY: a FETCH event holds one message, owned by the event; it is copied before
            // the event is dropped.
            rd::RD_KAFKA_EVENT_FETCH => unsafe {
                match rd::rd_kafka_event_message_next(event.ptr()).as_ref() {
                    Some(m) => message(m),
                    None => Polled::Other,
                }
            },
            rd::RD_KAFKA_EVENT_ERROR => {
                // SAFETY: the event is valid; rd_kafka_event_topic_partition returns a new
                // object (or NULL) that is destroyed right after it is copied.
                let (code, tp) = unsafe {
                    let code = rd::rd_kafka_event_error(event.ptr());
                    let tp = rd::rd_kafka_event_topic_partition(event.ptr());
                    let copied = tp
                        .as_ref()
                        .map(|t| (cstr_opt(t.topic).unwrap_or_default(), t.partition));
                    if !tp.is_null() {
                        rd::rd_kafka_topic_partition_destroy(tp);
                    }
                    (code, copied)
                };
                let message = event.error().unwrap_or_else(|| code_message(code));
                match tp {
                    Some((topic, partition)) if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                        Polled::Eof { topic, partition }
                    }
                    Some((topic, partition)) => Polled::PartitionError {
                        topic,
                        partition,
                        message,
                    },
                    None => Polled::Error {
                        code: code.into(),
                        message,
                    },
                }
            }
            // SAFETY: a STATS event holds a NUL-terminated JSON string owned by the event; it is
            // copied before the event is dropped.
            rd::RD_KAFKA_EVENT_STATS => match unsafe { cstr_opt(rd::rd_kafka_event_stats(event.ptr())) } {
                Some(json) => Polled::Stats(json),
                None => Polled::Other,
            },
            rd::RD_KAFKA_EVENT_LOG => {
                let mut fac: *const c_char = std::ptr::null();
                let mut text: *const c_char = std::ptr::null();
                let mut level = 0i32;
                // SAFETY: the event is a LOG event; the strings it hands out live as long as
                // the event and are copied before it is dropped.
                unsafe {
                    if rd::rd_kafka_event_log(event.ptr(), &mut fac, &mut text, &mut level) == 0 {
                        Polled::Log {
                            level,
                            facility: cstr_opt(fac).unwrap_or_default().trim().to_string(),
                            message: cstr_opt(text).unwrap_or_default().trim().to_string(),
                        }
                    } else {
                        Polled::Other
                    }
                }
            }
            _ => Polled::Other,
        };
        Some(polled)
    }
}

/// Copies a consumed message.
///
/// # Safety
/// `m` must be a valid message whose topic handle is alive.
unsafe fn message(m: &rd::rd_kafka_message_t) -> Polled {
    let topic = if m.rkt.is_null() {
        None
    } else {
        cstr_opt(rd::rd_kafka_topic_name(m.rkt))
    };
    let partition = m.partition;
    match (m.err, topic) {
        (NO_ERROR, Some(topic)) => {
            let mut tstype = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            let ts = rd::rd_kafka_message_timestamp(m, &mut tstype);
            let available = tstype != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            Polled::Record {
                topic,
                partition,
                offset: m.offset,
                timestamp_ms: (available && ts >= 0).then_some(ts),
            }
        }
        (rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF, Some(topic)) => Polled::Eof { topic, partition },
        (err, topic) => {
            let detail = cstr_opt(rd::rd_kafka_message_errstr(m));
            let message = join_error(detail, None, || code_message(err));
            match topic {
                Some(topic) => Polled::PartitionError {
                    topic,
                    partition,
                    message,
                },
                None => Polled::Error {
                    code: err.into(),
                    message,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_specs_map_to_librdkafka_values_and_isolation() {
        use rd::rd_kafka_IsolationLevel_t::*;
        assert_eq!(
            offset_spec(OffsetSpec::Earliest),
            (-2, RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED)
        );
        assert_eq!(
            offset_spec(OffsetSpec::Latest),
            (-1, RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED)
        );
        assert_eq!(
            offset_spec(OffsetSpec::LatestCommitted),
            (-1, RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED)
        );
    }

    #[test]
    fn group_states_map_one_to_one() {
        use rd::rd_kafka_consumer_group_state_t::*;
        let pairs = [
            (RD_KAFKA_CONSUMER_GROUP_STATE_UNKNOWN, GroupState::Unknown),
            (
                RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE,
                GroupState::PreparingRebalance,
            ),
            (
                RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE,
                GroupState::CompletingRebalance,
            ),
            (RD_KAFKA_CONSUMER_GROUP_STATE_STABLE, GroupState::Stable),
            (RD_KAFKA_CONSUMER_GROUP_STATE_DEAD, GroupState::Dead),
            (RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY, GroupState::Empty),
            (RD_KAFKA_CONSUMER_GROUP_STATE__CNT, GroupState::Unknown),
        ];
        for (rd_state, state) in pairs {
            assert_eq!(group_state(rd_state), state, "{rd_state:?}");
        }
        // Every exporter state is reachable.
        for state in GroupState::ALL {
            assert!(pairs.iter().any(|(_, s)| *s == state), "{state:?}");
        }
    }

    #[test]
    fn group_types_map_one_to_one() {
        use rd::rd_kafka_consumer_group_type_t::*;
        assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC), GroupType::Classic);
        assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER), GroupType::Consumer);
        assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE_UNKNOWN), GroupType::Unknown);
        assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE__CNT), GroupType::Unknown);
    }

    #[test]
    fn error_codes_carry_their_name() {
        let msg = code_message(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
        assert!(msg.contains("UNKNOWN_TOPIC_OR_PART"), "{msg}");
        assert!(msg.to_lowercase().contains("unknown topic"), "{msg}");
        assert_eq!(join_error(None, None, || "x".into()), "x");
        assert_eq!(
            join_error(Some("a (B)".into()), Some("B".into()), || "x".into()),
            "a (B)"
        );
        assert_eq!(join_error(Some("a".into()), Some("B".into()), || "x".into()), "a (B)");
    }

    #[test]
    fn partition_lists_round_trip() {
        let mut list = PartitionList::new(1).unwrap();
        let topic = CString::new("t").unwrap();
        assert!(list.add(&topic, 3, -2));
        assert!(list.add(&topic, 4, 17));
        // SAFETY: the list is valid and unchanged while it is read.
        let entries = unsafe { read_partitions(list.0.as_ptr()) };
        let got: Vec<(TopicPartition, i64)> = entries.into_iter().map(|e| (e.tp, e.offset)).collect();
        assert_eq!(
            got,
            vec![(TopicPartition::new("t", 3), -2), (TopicPartition::new("t", 4), 17)]
        );
        // SAFETY: NULL is allowed.
        assert!(unsafe { read_partitions(std::ptr::null()) }.is_empty());
    }

    #[test]
    fn consumer_assignments_parse() {
        // Version 1, two topics, trailing user data.
        let mut b = vec![0, 1, 0, 0, 0, 2];
        for (topic, parts) in [("ab", vec![0i32, 3]), ("c", vec![])] {
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(&(parts.len() as i32).to_be_bytes());
            for p in parts {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&[0, 0, 0, 2, 9, 9]);
        assert_eq!(
            consumer_assignment(&b),
            Some(vec![TopicPartition::new("ab", 0), TopicPartition::new("ab", 3)])
        );
        assert_eq!(consumer_assignment(&[]), Some(vec![]));
        assert_eq!(consumer_assignment(&b[..9]), None);
        assert_eq!(classic_state("CompletingRebalance"), GroupState::CompletingRebalance);
        assert_eq!(classic_state("Dead"), GroupState::Dead);
        assert_eq!(classic_state("Assigning"), GroupState::Unknown);
    }

    #[test]
    fn nul_bytes_in_names_are_rejected() {
        assert!(cstring("op", "group id", "a\0b").is_err());
        assert!(cstring("op", "group id", "ab").is_ok());
    }
}
