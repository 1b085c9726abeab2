//! The single error type of the harness.

use std::fmt;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Everything that can go wrong while fetching Kafka, running brokers or
/// talking to them.
///
/// `Debug` renders the same text as `Display`, because tests typically call
/// `.expect()` on harness results and the derived `Debug` would escape the
/// embedded broker log tail into one unreadable line.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A file-system or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The Kafka jars could not be assembled from Maven Central.
    #[error("cannot prepare the Kafka distribution: {0}")]
    Distribution(String),

    /// A broker process exited or never became ready.
    #[error("{message}\n--- tail of {log_path} ---\n{log_tail}")]
    Startup {
        /// What went wrong.
        message: String,
        /// The log file the tail was taken from.
        log_path: String,
        /// The last lines of the broker's log, which usually name the cause.
        log_tail: String,
    },

    /// A condition was not reached in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition that was awaited.
        what: String,
        /// How long the harness waited.
        after: Duration,
    },

    /// A librdkafka client call failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What the harness was doing.
        context: String,
        /// The client error.
        #[source]
        source: KafkaError,
    },

    /// A broker answered an admin or commit request with an error code.
    #[error("{context}: broker returned {code:?} ({code})")]
    Broker {
        /// What the harness was doing.
        context: String,
        /// The Kafka protocol error code.
        code: RDKafkaErrorCode,
    },

    /// The caller asked for something the harness cannot do.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        HarnessError::Kafka {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
