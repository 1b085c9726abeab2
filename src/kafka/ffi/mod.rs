//! Every `unsafe` call of the exporter lives here: librdkafka admin operations that the
//! `rdkafka` crate does not wrap ([`cluster`], [`groups`]), polling of client queues
//! ([`events`]), the global allocator ([`alloc`]), two allocator calls ([`limit_malloc_arenas`], [`release_free_heap`]) and the
//! open files limit ([`raise_open_files_limit`]).
//! Each native handle is owned by an RAII guard so it is released on every path, including
//! early returns and panics; a client handle is only ever passed as a [`ClientRef`], which
//! borrows its live client. Pure decoding that needs no FFI lives in `kafka::decode`.
#![allow(unsafe_code)]

mod alloc;

use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;

use super::{Broker, SourceError, TopicPartition};

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
/// A librdkafka client handle borrowed from a live `rdkafka` client. The safe functions of this
/// module take it instead of a raw pointer: the borrow keeps the client, and so the handle,
/// alive for as long as they or the values made from it use it.
#[derive(Clone, Copy)]
pub(super) struct ClientRef<'a> {
    rk: *mut rd::rd_kafka_t,
    _client: PhantomData<&'a ()>,
}

impl<'a> ClientRef<'a> {
    pub(super) fn of<C: rdkafka::ClientContext>(client: &'a rdkafka::client::Client<C>) -> Self {
        Self {
            rk: client.native_ptr(),
            _client: PhantomData,
        }
    }

    fn as_ptr(self) -> *mut rd::rd_kafka_t {
        self.rk
    }
}

/// A private result queue for one admin request, destroyed on drop.
struct Queue(NonNull<rd::rd_kafka_queue_t>);

impl Queue {
    fn new(client: ClientRef<'_>) -> Option<Self> {
        // SAFETY: the handle is live: `client` borrows its client.
        NonNull::new(unsafe { rd::rd_kafka_queue_new(client.as_ptr()) }).map(Queue)
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
    fn new(client: ClientRef<'_>, op: rd::rd_kafka_admin_op_t, timeout: Duration) -> Result<Self, SourceError> {
        // SAFETY: the handle is live: `client` borrows its client.
        let ptr = unsafe { rd::rd_kafka_AdminOptions_new(client.as_ptr(), op) };
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

mod cluster;
mod events;
mod groups;

pub(super) use cluster::{describe_cluster, describe_topic_configs, list_offsets};
pub(super) use events::{EventQueue, Polled};
pub(super) use groups::{describe_classic_groups, describe_groups, group_offsets, list_groups};

#[cfg(test)]
mod tests;
