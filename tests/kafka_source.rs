//! [`RdKafkaSource`] (librdkafka's admin API) against the [`KafkaSource`] contract in
//! `source_contract/`, on a real single-node Kafka.
//!
//! Run with `cargo test --test kafka_source -- --test-threads=2`.

use std::path::Path;

use kafka_harness::KafkaCluster;
use kafka_slo_exporter::config::Config;
use kafka_slo_exporter::kafka::{ClientErrors, KafkaSource, RdKafkaSource};

/// The reader under test, for the few answers that differ between readers.
const READER: &str = "librdkafka";

#[path = "source_contract/mod.rs"]
mod source_contract;

fn source(kafka: &KafkaCluster) -> Box<dyn KafkaSource> {
    let yaml = format!(
        "clusters:\n  - name: test\n    bootstrap_servers: [\"{}\"]\n    reader: librdkafka\n",
        kafka.bootstrap_servers()
    );
    let cfg = Config::parse(Path::new("t.yml"), &yaml).expect("valid config");
    let source = RdKafkaSource::new(&cfg.clusters[0], &ClientErrors::new())
        .unwrap_or_else(|e| panic!("creating the source: {e:?}"));
    Box::new(source)
}
