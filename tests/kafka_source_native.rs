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

/// Record reads are Fetch requests of the native reader, a few for many partitions: here 100
/// partitions whose one record is a 100 KiB batch, larger than the bytes first asked for a
/// partition (so each is asked again at its size) and, together, than one response (so the
/// partitions a response did not reach are asked once more).
#[test]
fn records_at_reads_many_large_batches_in_a_few_fetches() {
    let kafka = kafka_harness::KafkaCluster::shared_single();
    let topic = "ks.native.large";
    kafka.create_topic(topic, 100, 1, &[]).unwrap();
    let base = kafka_harness::now_ms() - 3_600_000;
    for p in 0..100 {
        let record = kafka_harness::Record::new(vec![b'x'; 100 << 10]).with_timestamp(base + i64::from(p));
        kafka.produce(topic, p, &[record]).unwrap();
    }
    let stats = ReaderStats::new();
    let src = native(kafka, &stats);
    let requests: Vec<_> = (0..100)
        .map(|p| (kafka_slo_exporter::kafka::TopicPartition::new(topic, p), 0))
        .collect();
    let got = src
        .records_at(&requests, std::time::Duration::from_secs(30))
        .expect("records_at");
    let got: Vec<_> = got.iter().map(|r| (r.tp.partition, r.offset, r.timestamp_ms)).collect();
    let want: Vec<_> = (0..100).map(|p| (p, 0, base + i64::from(p))).collect();
    assert_eq!(got, want);
    let fetches: u64 = stats
        .requests()
        .iter()
        .filter(|(api, _, _)| *api == "Fetch")
        .map(|(_, _, n)| n)
        .sum();
    assert!(
        (3..=6).contains(&fetches),
        "{fetches} Fetch requests: {:?}",
        stats.requests()
    );
}
