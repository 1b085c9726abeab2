//! Polling a client's queues: records, partition ends, errors, log lines and statistics as
//! plain values.

use std::ffi::c_char;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;

use super::*;

/// What one consumer poll returned.
#[derive(Debug)]
pub(in crate::kafka) enum Polled {
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
///
/// The queue borrows its client (`'a`), so it cannot outlive it.
pub(in crate::kafka) struct EventQueue<'a>(Queue, PhantomData<ClientRef<'a>>);

impl<'a> EventQueue<'a> {
    /// The consumer queue of a consumer with a `group.id`, which nothing else may poll
    /// meanwhile.
    pub(in crate::kafka) fn consumer(client: ClientRef<'a>) -> Option<Self> {
        // SAFETY: the handle is live for `'a`; the returned reference is released by `Queue`'s
        // drop, within `'a`.
        NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(client.as_ptr()) })
            .map(|q| EventQueue(Queue(q), PhantomData))
    }

    /// The main queue of a client.
    pub(in crate::kafka) fn main(client: ClientRef<'a>) -> Option<Self> {
        // SAFETY: the handle is live for `'a`; the returned reference is released by `Queue`'s
        // drop, within `'a`.
        NonNull::new(unsafe { rd::rd_kafka_queue_get_main(client.as_ptr()) }).map(|q| EventQueue(Queue(q), PhantomData))
    }

    /// Waits up to `timeout` for the next event.
    pub(in crate::kafka) fn poll(&self, timeout: Duration) -> Option<Polled> {
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
pub(super) unsafe fn message(m: &rd::rd_kafka_message_t) -> Polled {
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
