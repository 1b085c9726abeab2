//! Error types, one per boundary, and the mapping of start-up errors to exit codes.

use std::path::PathBuf;

/// An invalid configuration. Always reported as one line naming the file, the field path and the
/// reason; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
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
    /// A field whose name starts with `--` is a command-line flag (one starting with `KSE_` an
    /// environment variable) that stands for a part of the file; the message names it instead of
    /// the file.
    fn describe(&self) -> String {
        if self.field.starts_with("--") {
            format!("command line flag `{}`: {}", self.field, self.reason)
        } else if self.field.starts_with("KSE_") {
            format!("environment variable `{}`: {}", self.field, self.reason)
        } else {
            format!(
                "config file {}: field `{}`: {}",
                self.file.display(),
                self.field,
                self.reason
            )
        }
    }

    pub fn new(file: impl Into<PathBuf>, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The error of a YAML document that did not deserialize: the field is the path where
    /// deserialization stopped, the reason is serde's message without a repeated field prefix.
    pub fn from_yaml(file: impl Into<PathBuf>, e: serde_path_to_error::Error<serde_yaml::Error>) -> Self {
        let field = field_path(e.path());
        let msg = e.inner().to_string().replace('\n', " ");
        let reason = match msg.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') && field.starts_with(prefix) => rest.to_string(),
            _ => msg,
        };
        Self::new(file, field, reason)
    }
}

/// A serde path as a field name a reader can find in the file: `clusters[0].lag.colour`,
/// `.` for the document itself, and a key that is empty or would be misread (dots, brackets,
/// blanks, control characters) in quotes, e.g. `classes[0].""`.
pub fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => push_key(&mut out, "?"),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    let plain = !key.is_empty()
        && !key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '[' | ']' | '"' | '`'));
    if plain {
        out.push_str(key);
    } else {
        out.push_str(&format!("{key:?}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> ConfigError {
        let de = serde_yaml::Deserializer::from_str(text);
        ConfigError::from_yaml("/f.yml", serde_path_to_error::deserialize::<_, T>(de).unwrap_err())
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        labels: Option<std::collections::BTreeMap<String, u8>>,
    }

    #[test]
    fn field_names_the_path_and_quotes_keys_that_would_be_misread() {
        for (text, field) in [
            ("items: [{name: a, colour: red}]", "items[0].colour"),
            ("\"\": 1", "\"\""),
            ("items: [{name: a, \"\": 1}]", "items[0].\"\""),
            (
                "items: [{name: a, labels: {app.kubernetes.io/name: x}}]",
                "items[0].labels.\"app.kubernetes.io/name\"",
            ),
            ("items: [{name: a, labels: {\"a b\": x}}]", "items[0].labels.\"a b\""),
            ("items: 3", "items"),
            ("[1]", "."),
        ] {
            let e = yaml_error::<Doc>(text);
            assert_eq!(e.field, field, "{text} -> {e}");
            assert!(!e.reason.is_empty() && !e.reason.contains('\n'), "{e}");
        }
    }

    #[test]
    fn reason_drops_the_repeated_field_prefix() {
        let e = yaml_error::<Doc>("items: [{name: a, colour: red}]");
        assert!(e.reason.starts_with("unknown field `colour`"), "{e}");
    }
}
