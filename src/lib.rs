//! # kafka-slo-exporter
//!
//! A Prometheus exporter that turns a Kafka architecture decision into measured SLOs.
//!
//! ## Layout
//! Data flows one way: **config → source → poller → snapshot → collectors → http**.
//!
//! - [`config`] reads and validates the YAML file; no network I/O. Errors name file, field and
//!   reason and end the process with exit code 2 ([`error`]). Its `security` part maps the
//!   `tls` and `sasl` blocks to librdkafka properties shared by every client of a cluster.
//! - [`kafka`] is the only module that talks to Kafka. It exposes the blocking
//!   [`kafka::KafkaSource`] trait returning plain types, served by the native reader (its own
//!   Kafka protocol client over tokio, `kafka::native`) or by librdkafka's admin API; its `ffi`
//!   submodule owns every `unsafe` block (librdkafka admin calls the `rdkafka` crate does not
//!   wrap, and the global allocator).
//! - [`poller`] runs one task per cluster. Every interval it runs a cycle on a blocking thread
//!   whose request branches run on their own threads; each stage's outcome is folded and
//!   published as a new snapshot (an atomic pointer swap) as soon as it arrives, so a stage
//!   waiting on a dead broker holds back no other stage's results.
//! - [`model`] holds the plain view types (partitions, topic settings, topics) that the
//!   snapshot builds and the policy and collectors read; it depends on no other module.
//! - [`snapshot`] holds the immutable per-cluster snapshot and the pure function that folds a
//!   cycle into the next snapshot (staleness, error counters); most unit tests live there.
//! - [`lag`] and [`status`] are pure calculations over observed offsets: offset and time lag,
//!   data loss, retention usage, and Burrow-style group status rules.
//! - [`families`] is the catalog of Kafka state families with what each serves by default, and
//!   the user's selection over it (allow, deny and opt-in lists); pure, read by [`config`] to
//!   validate and by [`collectors`] to encode.
//! - [`collectors`] encode snapshots into Prometheus families, one file per area, one
//!   registration list. A scrape only reads snapshots. Its `compat` area encodes the same
//!   snapshots under danielqsj/kafka_exporter's names for a separate path (`global.compat`).
//! - [`policy`] holds the ADR compliance policy (classes by naming convention, requirements)
//!   and the pure evaluation of a topic; [`report`] renders it for on-call as JSON and HTML.
//! - [`probe`] is the end-to-end delivery probe: its own thread per cluster sends records through
//!   Kafka and reads them back, publishing counters and latency histograms for the SLOs.
//! - [`registry`] watches each cluster's Schema Registry on its own task and interval: subject
//!   inventory, compatibility, the subject/topic cross-check and sampled wire format, published
//!   as its own snapshot that a registry failure never mixes into the Kafka one.
//! - [`http`] serves the telemetry path (OpenMetrics or Prometheus text) and any compatibility
//!   path, a landing page, `/-/healthy` and `/-/ready`, with bounded connections and requests;
//!   its `web_config` adds TLS, client certificates and basic auth from an exporter-toolkit web
//!   config file.
//! - [`selfmetrics`] holds counters about the exporter itself that no snapshot carries (the
//!   HTTP endpoint's refusals), created at start-up and passed to [`http`] and [`collectors`].
//! - [`shard`] splits topics and groups between exporter processes by a stable hash of their
//!   name; the poller asks Kafka only about its own share.
//! - [`app`] wires it together; [`supervisor`] holds the one shutdown signal of every
//!   poller, registry task, probe and the server, and waits for them on exit; each cluster's
//!   tasks form a group of their own that can be stopped alone.
//! - [`reload`] carries SIGHUP and `POST /-/reload` to `app`, which validates the files as at
//!   start-up, then starts, stops or restarts only the clusters whose settings [`reload::diff`]
//!   finds added, removed or changed, and swaps what [`http`] serves.
#![deny(unsafe_code)]

pub mod app;
pub mod collectors;
pub mod config;
pub mod error;
pub mod families;
pub mod healthcheck;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod model;
pub mod policy;
pub mod poller;
pub mod probe;
pub mod registry;
pub mod reload;
pub mod report;
pub mod selfmetrics;
pub mod shard;
pub mod snapshot;
pub mod status;
pub mod supervisor;
