//! Live reload of the configuration and the policy, asked for by SIGHUP or `POST /-/reload`.
//!
//! [`Trigger`] carries a request from the HTTP endpoint to the one place that reloads (the
//! application's main loop, which also handles SIGHUP) and brings the outcome back. [`diff`]
//! is the pure comparison of the running clusters with the reloaded ones that decides which
//! clusters start, stop, restart or keep running untouched.

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};

use crate::config::ClusterConfig;

/// Where the outcome of one reload request is sent: `Err` holds the reason (file, field).
pub type Reply = oneshot::Sender<Result<(), String>>;

/// Reload requests waiting at most: more callers wait for room (reloads run one at a time).
const QUEUED_REQUESTS: usize = 16;

/// Asks the main loop for a reload and waits for its outcome; clones share the queue.
#[derive(Debug, Clone)]
pub struct Trigger(mpsc::Sender<Reply>);

impl Trigger {
    /// A trigger and the receiving end the main loop serves.
    pub fn channel() -> (Trigger, mpsc::Receiver<Reply>) {
        let (tx, rx) = mpsc::channel(QUEUED_REQUESTS);
        (Trigger(tx), rx)
    }

    /// Requests a reload and waits for it to be done.
    pub async fn request(&self) -> Result<(), String> {
        let stopping = || "the exporter is shutting down".to_string();
        let (reply, outcome) = oneshot::channel();
        self.0.send(reply).await.map_err(|_| stopping())?;
        outcome.await.map_err(|_| stopping())?
    }
}

/// How the reloaded clusters relate to the running ones, by cluster name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClusterDiff {
    /// In the new configuration only: started.
    pub added: Vec<String>,
    /// In the running configuration only: stopped, their series withdrawn.
    pub removed: Vec<String>,
    /// In both with some setting different (secrets read from files included): restarted.
    pub changed: Vec<String>,
    /// In both with every setting equal: left running with their snapshots.
    pub unchanged: Vec<String>,
}

impl ClusterDiff {
    /// Whether `name` keeps its running tasks and snapshots.
    pub fn keeps(&self, name: &str) -> bool {
        self.unchanged.iter().any(|n| n == name)
    }
}

/// Compares the running clusters `old` with the reloaded ones `new` (names are unique within
/// each, as validation requires). `added`, `changed` and `unchanged` follow `new`'s order,
/// `removed` follows `old`'s.
pub fn diff(old: &[ClusterConfig], new: &[ClusterConfig]) -> ClusterDiff {
    let running: BTreeMap<&str, &ClusterConfig> = old.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut d = ClusterDiff::default();
    for c in new {
        let list = match running.get(c.name.as_str()) {
            None => &mut d.added,
            Some(r) if *r == c => &mut d.unchanged,
            Some(_) => &mut d.changed,
        };
        list.push(c.name.clone());
    }
    d.removed = old
        .iter()
        .filter(|c| !new.iter().any(|n| n.name == c.name))
        .map(|c| c.name.clone())
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn clusters(yaml: &str) -> Vec<ClusterConfig> {
        Config::parse(Path::new("test.yml"), yaml)
            .unwrap_or_else(|e| panic!("{e}"))
            .clusters
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const TWO: &str =
        "clusters:\n  - {name: a, bootstrap_servers: ['a:9092']}\n  - {name: b, bootstrap_servers: ['b:9092']}\n";

    #[test]
    fn the_same_configuration_changes_nothing() {
        let d = diff(&clusters(TWO), &clusters(TWO));
        assert_eq!(
            d,
            ClusterDiff {
                unchanged: names(&["a", "b"]),
                ..Default::default()
            }
        );
        assert!(d.keeps("a") && !d.keeps("c"));
    }

    #[test]
    fn added_removed_and_changed_clusters_by_name() {
        let new =
            "clusters:\n  - {name: c, bootstrap_servers: ['c:9092']}\n  - {name: b, bootstrap_servers: ['b:9093']}\n";
        assert_eq!(
            diff(&clusters(TWO), &clusters(new)),
            ClusterDiff {
                added: names(&["c"]),
                removed: names(&["a"]),
                changed: names(&["b"]),
                unchanged: vec![],
            }
        );
        assert_eq!(
            diff(&[], &clusters(TWO)).added,
            names(&["a", "b"]),
            "every cluster of a first configuration is added"
        );
        assert_eq!(diff(&clusters(TWO), &[]).removed, names(&["a", "b"]));
    }

    #[test]
    fn a_global_setting_changes_the_clusters_that_inherit_it() {
        let new = format!("global: {{interval: 10s}}\n{TWO}");
        assert_eq!(diff(&clusters(TWO), &clusters(&new)).changed, names(&["a", "b"]));
        // A cluster with its own interval does not inherit the global one.
        let own = "clusters:\n  - {name: a, bootstrap_servers: ['a:9092'], interval: 10s}\n  - {name: b, bootstrap_servers: ['b:9092']}\n";
        let d = diff(&clusters(own), &clusters(&format!("global: {{interval: 10s}}\n{own}")));
        assert_eq!((d.unchanged, d.changed), (names(&["a"]), names(&["b"])));
    }

    #[test]
    fn filters_labels_and_properties_are_settings() {
        let variants = [
            "clusters:\n  - {name: a, bootstrap_servers: ['a:9092'], topics: {deny: ['x.*']}}\n",
            "clusters:\n  - {name: a, bootstrap_servers: ['a:9092'], labels: {env: prod}}\n",
            "clusters:\n  - {name: a, bootstrap_servers: ['a:9092'], client_properties: {client.id: x}}\n",
            "clusters:\n  - {name: a, bootstrap_servers: ['a:9092'], lag: {granularity: topic}}\n",
        ];
        let base = clusters("clusters:\n  - {name: a, bootstrap_servers: ['a:9092']}\n");
        for v in variants {
            assert_eq!(diff(&base, &clusters(v)).changed, names(&["a"]), "{v}");
            assert_eq!(diff(&clusters(v), &clusters(v)).unchanged, names(&["a"]), "{v}");
        }
    }

    #[test]
    fn a_rotated_secret_file_changes_its_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "old").unwrap();
        let yaml = format!(
            "clusters:\n  - name: a\n    bootstrap_servers: ['a:9092']\n    sasl: {{mechanism: PLAIN, username: u, password_file: '{}'}}\n",
            pw.display()
        );
        let before = clusters(&yaml);
        assert_eq!(diff(&before, &clusters(&yaml)).unchanged, names(&["a"]));
        std::fs::write(&pw, "new").unwrap();
        assert_eq!(diff(&before, &clusters(&yaml)).changed, names(&["a"]));
    }

    #[test]
    fn a_certificate_replaced_under_the_same_name_changes_its_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = |body: &str| format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        std::fs::write(&ca, pem("first")).unwrap();
        let yaml = format!(
            "clusters:\n  - name: a\n    bootstrap_servers: ['a:9092']\n    tls: {{ca_file: '{}'}}\n",
            ca.display()
        );
        let before = clusters(&yaml);
        assert_eq!(diff(&before, &clusters(&yaml)).unchanged, names(&["a"]));
        std::fs::write(&ca, pem("second")).unwrap();
        assert_eq!(diff(&before, &clusters(&yaml)).changed, names(&["a"]));
    }
}
