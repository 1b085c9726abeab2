//! Error types, one per boundary, and the mapping of start-up errors to exit codes.

use std::path::PathBuf;

/// An invalid configuration. Always reported as one line naming the file, the field path and the
/// reason; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("config file {file}: field `{field}`: {reason}")]
pub struct ConfigError {
    /// The file being loaded.
    pub file: PathBuf,
    /// Dotted path of the offending field, e.g. `clusters[1].bootstrap_servers`; `.` for the
    /// document as a whole.
    pub field: String,
    /// Why the value is rejected.
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: impl Into<PathBuf>, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Errors that stop the exporter before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("cannot create the Kafka client for cluster {cluster}: {reason}")]
    KafkaClient { cluster: String, reason: String },
    #[error("runtime error: {0}")]
    Runtime(String),
}

impl AppError {
    /// Exit code of the process for this error: 2 for anything the user must fix in the
    /// configuration or flags, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::KafkaClient { .. } => 2,
            AppError::Listen { .. } | AppError::Runtime(_) => 1,
        }
    }
}
