//! [`NativeSource`] (the exporter's own Kafka protocol reader) against the [`KafkaSource`]
//! contract in `source_contract/`, on a real single-node Kafka, and the requests it sends.
//!
//! Run with `cargo test --test kafka_source_native -- --test-threads=2`.

use std::path::Path;

use kafka_harness::KafkaCluster;
use kafka_slo_exporter::config::Config;
use kafka_slo_exporter::kafka::{ClientErrors, KafkaSource, NativeSource, RdKafkaSource, ReaderStats};

/// The reader under test, for the few answers that differ between readers.
const READER: &str = "native";

#[path = "source_contract/mod.rs"]
mod source_contract;

fn native(kafka: &KafkaCluster, stats: &ReaderStats) -> NativeSource {
    let yaml = format!(
        "clusters:\n  - name: test\n    bootstrap_servers: [\"{}\"]\n    reader: native\n",
        kafka.bootstrap_servers()
    );
    let cfg = Config::parse(Path::new("t.yml"), &yaml).expect("valid config");
    let errors = ClientErrors::new();
    let records = RdKafkaSource::new(&cfg.clusters[0], &errors).unwrap_or_else(|e| panic!("records: {e:?}"));
    NativeSource::new(&cfg.clusters[0], records, &errors, stats)
        .unwrap_or_else(|(reason, _)| panic!("creating the native reader: {reason}"))
}

fn source(kafka: &KafkaCluster) -> Box<dyn KafkaSource> {
    Box::new(native(kafka, &ReaderStats::new()))
}
