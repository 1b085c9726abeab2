//! Every `unsafe` call of the exporter lives here: librdkafka admin operations that the
//! `rdkafka` crate does not wrap. Each native handle is owned by an RAII guard so it is released
//! on every path, including early returns and panics.
#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;

use super::{Broker, ClusterDescription, SourceError};

/// A private result queue for one admin request, destroyed on drop.
struct Queue(NonNull<rd::rd_kafka_queue_t>);

impl Queue {
    fn new(rk: *mut rd::rd_kafka_t) -> Option<Self> {
        // SAFETY: `rk` is a live client handle owned by the caller for the whole call.
        NonNull::new(unsafe { rd::rd_kafka_queue_new(rk) }).map(Queue)
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
