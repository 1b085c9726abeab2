//! The contract of [`KafkaSource`], with exact values, against a real single-node Kafka (KRaft)
//! started by the harness: offsets, groups, committed offsets, record timestamps and topic
//! configs. Included by `kafka_source.rs` (librdkafka's admin API) and `kafka_source_native.rs`
//! (the native reader), each of which defines `source()` and gets a broker of its own.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use kafka_harness::{ConsumerHandle, ConsumerOptions, KafkaCluster, Record};
use kafka_slo_exporter::kafka::{GroupDescription, GroupState, GroupType, KafkaSource, OffsetSpec, TopicPartition};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(15);
const HOUR_MS: i64 = 3_600_000;

use super::source;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn records(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::new(format!("value-{i}"))).collect()
}

/// Offsets of `tps` (sorted input), all of which must have succeeded.
fn offsets(src: &dyn KafkaSource, tps: &[TopicPartition], spec: OffsetSpec) -> Vec<i64> {
    let got = src.list_offsets(tps, spec, T).expect("list_offsets");
    assert_eq!(got.iter().map(|o| o.tp.clone()).collect::<Vec<_>>(), tps, "{spec:?}");
    got.into_iter()
        .map(|o| o.offset.unwrap_or_else(|e| panic!("{spec:?} of {:?}: {e}", o.tp)))
        .collect()
}

/// Polls `f` until it returns `Some` or `timeout` passes.
fn eventually<R>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park_timeout(Duration::from_millis(100));
    }
}

/// Deletes the records of a partition below `before` (moves its log start offset).
fn delete_records(kafka: &KafkaCluster, topic: &str, partition: i32, before: i64) {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(before))
        .expect("partition list");
    let opts = AdminOptions::new().operation_timeout(Some(T));
    let res = block_on(admin.delete_records(&tpl, &opts)).expect("delete_records");
    for e in res.elements() {
        e.error().expect("delete_records partition result");
    }
}

fn transactional_producer(kafka: &KafkaCluster, id: &str) -> BaseProducer {
    let producer: BaseProducer = kafka
        .client_config()
        .set("transactional.id", id)
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer");
    producer.init_transactions(T).expect("init_transactions");
    producer
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, timestamp_ms: i64) {
    producer
        .send(
            BaseRecord::<(), str>::to(topic)
                .partition(partition)
                .payload("tx")
                .timestamp(timestamp_ms),
        )
        .map_err(|(e, _)| e)
        .expect("send");
}

#[test]
fn list_offsets_earliest_latest_and_last_stable() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.offsets";
    kafka.create_topic(topic, 3, 1, &[]).unwrap();
    assert_eq!(
        kafka.produce(topic, 0, &records(5)).unwrap(),
        (0..5).collect::<Vec<i64>>()
    );
    assert_eq!(
        kafka.produce(topic, 1, &records(7)).unwrap(),
        (0..7).collect::<Vec<i64>>()
    );
    let src = source(kafka);
    let tps: Vec<TopicPartition> = (0..3).map(|p| tp(topic, p)).collect();

    assert!(src.list_offsets(&[], OffsetSpec::Latest, T).unwrap().is_empty());
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::Earliest), [0, 0, 0]);
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::Latest), [5, 7, 0]);
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::LatestCommitted), [5, 7, 0]);

    // Duplicates are listed once, in partition order.
    let dup = src
        .list_offsets(&[tp(topic, 1), tp(topic, 0), tp(topic, 1)], OffsetSpec::Latest, T)
        .unwrap();
    assert_eq!(dup.len(), 2);
    assert_eq!((dup[0].tp.clone(), dup[0].offset.clone()), (tp(topic, 0), Ok(5)));
    assert_eq!((dup[1].tp.clone(), dup[1].offset.clone()), (tp(topic, 1), Ok(7)));

    // DeleteRecords moves the log start offset.
    delete_records(kafka, topic, 1, 3);
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::Earliest), [0, 3, 0]);

    // An open transaction holds the last stable offset back; the high watermark moves.
    let producer = transactional_producer(kafka, "ks-offsets-tx");
    producer.begin_transaction().unwrap();
    send(&producer, topic, 0, kafka_harness::now_ms());
    send(&producer, topic, 0, kafka_harness::now_ms());
    producer.flush(T).unwrap();
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::Latest), [7, 7, 0]);
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::LatestCommitted), [5, 7, 0]);

    // After the commit (two records plus the commit marker) both agree.
    producer.commit_transaction(T).unwrap();
    eventually("the last stable offset to pass the commit marker", T, || {
        (offsets(src.as_ref(), &tps, OffsetSpec::LatestCommitted) == [8, 7, 0]).then_some(())
    });
    assert_eq!(offsets(src.as_ref(), &tps, OffsetSpec::Latest), [8, 7, 0]);
}

#[test]
fn list_offsets_reports_unknown_partitions_per_partition() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.offsets.unknown";
    kafka.create_topic(topic, 1, 1, &[]).unwrap();
    kafka.produce(topic, 0, &records(2)).unwrap();
    let src = source(kafka);
    let got = src
        .list_offsets(
            &[tp(topic, 0), tp(topic, 5), tp("ks.no-such-topic", 0)],
            OffsetSpec::Latest,
            Duration::from_secs(5),
        )
        .expect("one unknown partition does not fail the call");
    let by_tp = |t: &TopicPartition| got.iter().find(|o| &o.tp == t).map(|o| o.offset.clone());
    assert_eq!(by_tp(&tp(topic, 0)), Some(Ok(2)));
    assert!(matches!(by_tp(&tp(topic, 5)), Some(Err(_))), "{got:?}");
    assert!(matches!(by_tp(&tp("ks.no-such-topic", 0)), Some(Err(_))), "{got:?}");
}

fn find<'a>(groups: &'a [GroupDescription], name: &str) -> &'a GroupDescription {
    groups
        .iter()
        .find(|g| g.group == name)
        .unwrap_or_else(|| panic!("group {name} not described: {groups:?}"))
}

/// A KIP-848 member of `group` on `topic`, where the broker lets librdkafka's members join.
fn kip848_member(kafka: &KafkaCluster, group: &str, topic: &str) -> Option<ConsumerHandle> {
    if !kafka.supports_kip848_consumers() {
        eprintln!(
            "Kafka {}: no KIP-848 members (before 4.0); {group} is not created",
            kafka.version()
        );
        return None;
    }
    Some(
        kafka
            .consuming_group(group, &[topic], ConsumerOptions::kip848())
            .unwrap(),
    )
}

#[test]
fn list_groups_lists_classic_kip848_and_offsets_only_groups() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.groups.list";
    kafka.create_topic(topic, 2, 1, &[]).unwrap();
    kafka.produce(topic, 0, &records(3)).unwrap();
    let classic = kafka
        .consuming_group("ks-list-classic", &[topic], ConsumerOptions::default())
        .unwrap();
    let kip848 = kip848_member(kafka, "ks-list-kip848", topic);
    kafka.commit_offsets("ks-list-simple", &[(topic, 0, 1)]).unwrap();
    classic.wait_for_assignment(T).unwrap();
    if let Some(member) = &kip848 {
        member.wait_for_assignment(T).unwrap();
    }

    let src = source(kafka);
    let listing = eventually("every active group stable", T, || {
        let groups = src.list_groups(T).expect("list_groups");
        let stable = |name: &str| groups.iter().any(|g| g.group == name && g.state == GroupState::Stable);
        (stable("ks-list-classic") && (kip848.is_none() || stable("ks-list-kip848"))).then_some(groups)
    });
    let get = |name: &str| {
        listing
            .iter()
            .find(|g| g.group == name)
            .unwrap_or_else(|| panic!("{name} not listed: {listing:?}"))
    };
    let c = get("ks-list-classic");
    assert_eq!((c.group_type, c.is_simple), (GroupType::Classic, false), "{c:?}");
    if kip848.is_some() {
        let k = get("ks-list-kip848");
        assert_eq!((k.group_type, k.is_simple), (GroupType::Consumer, false), "{k:?}");
    }
    let s = get("ks-list-simple");
    assert_eq!(
        (s.group_type, s.state, s.is_simple),
        (GroupType::Classic, GroupState::Empty, true),
        "{s:?}"
    );
    // Sorted by name, no duplicates.
    assert!(listing.windows(2).all(|w| w[0].group < w[1].group));
}

#[test]
fn describe_groups_returns_members_assignments_and_unknown_groups() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.groups.describe";
    kafka.create_topic(topic, 2, 1, &[]).unwrap();
    kafka.produce(topic, 1, &records(3)).unwrap();
    let classic = kafka
        .consuming_group("ks-desc-classic", &[topic], ConsumerOptions::default())
        .unwrap();
    let kip848 = kip848_member(kafka, "ks-desc-kip848", topic);
    kafka.commit_offsets("ks-desc-simple", &[(topic, 1, 2)]).unwrap();
    classic.wait_for_assignment(T).unwrap();
    if let Some(member) = &kip848 {
        member.wait_for_assignment(T).unwrap();
    }

    let src = source(kafka);
    assert!(src.describe_groups(&[], T).unwrap().is_empty());
    let names: Vec<String> = [
        "ks-desc-kip848",
        "ks-desc-classic",
        "ks-desc-simple",
        "ks-desc-unknown",
        "ks-desc-classic",
    ]
    .map(String::from)
    .to_vec();
    let full = vec![tp(topic, 0), tp(topic, 1)];
    let groups = eventually("every active group stable with full assignments", T, || {
        let groups = src.describe_groups(&names, T).expect("describe_groups");
        let settled = |name: &str| {
            let g = find(&groups, name);
            g.state == GroupState::Stable && g.members.len() == 1 && g.members[0].assignment == full
        };
        (settled("ks-desc-classic") && (kip848.is_none() || settled("ks-desc-kip848"))).then_some(groups)
    });
    assert_eq!(
        groups.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(),
        ["ks-desc-classic", "ks-desc-kip848", "ks-desc-simple", "ks-desc-unknown"]
    );
    let broker = kafka.broker_ids()[0];

    let c = find(&groups, "ks-desc-classic");
    assert_eq!(c.group_type, GroupType::Classic);
    assert_eq!(c.coordinator, Some(broker));
    assert_eq!(c.error, None);
    assert_eq!(
        c.assignor, "range",
        "librdkafka's default strategy list starts with range"
    );
    assert!(!c.members[0].member_id.is_empty() && !c.members[0].client_id.is_empty());
    assert!(!c.members[0].host.is_empty());

    let k = find(&groups, "ks-desc-kip848");
    if kip848.is_some() {
        assert_eq!(k.group_type, GroupType::Consumer);
        assert_eq!(k.coordinator, Some(broker));
        assert_eq!(k.error, None);
        assert!(!k.assignor.is_empty(), "server-side assignor: {k:?}");
        assert!(!k.members[0].member_id.is_empty() && !k.members[0].client_id.is_empty());
    } else {
        // Never created: described like any unknown group.
        assert!(k.state == GroupState::Dead || k.error.is_some(), "{k:?}");
        assert!(k.members.is_empty());
    }

    let s = find(&groups, "ks-desc-simple");
    assert_eq!((s.state, s.error.as_deref()), (GroupState::Empty, None), "{s:?}");
    assert!(s.members.is_empty());

    let u = find(&groups, "ks-desc-unknown");
    assert!(u.state == GroupState::Dead || u.error.is_some(), "{u:?}");
    assert!(u.members.is_empty());
}

#[test]
fn group_offsets_of_fifty_groups_with_bounded_concurrency() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.commits";
    kafka.create_topic(topic, 4, 1, &[]).unwrap();
    let mut groups = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50i64 {
        let group = format!("ks-commit-{i:02}");
        let a = (i % 4) as i32;
        let b = ((i + 1) % 4) as i32;
        kafka
            .commit_offsets(&group, &[(topic, a, i + 1), (topic, b, 1000 + i)])
            .unwrap();
        let mut want = vec![(tp(topic, a), i + 1), (tp(topic, b), 1000 + i)];
        want.sort();
        groups.push(group);
        expected.push(Ok(want));
    }
    // A group that never committed has no offsets; a group id librdkafka cannot send fails on
    // its own without affecting the others.
    groups.insert(10, "ks-commit-none".into());
    expected.insert(10, Ok(vec![]));
    // A group id with a NUL byte: librdkafka cannot pass it through its C API and fails that
    // group alone; the Kafka protocol carries it, and the broker knows no such group.
    groups.insert(20, "ks-commit-\0broken".into());
    expected.insert(
        20,
        if super::READER == "librdkafka" {
            Err(())
        } else {
            Ok(vec![])
        },
    );

    let src = source(kafka);
    assert!(src.group_offsets(&[], 8, T).unwrap().is_empty());
    let started = Instant::now();
    let got = src.group_offsets(&groups, 8, T).expect("group_offsets");
    assert!(started.elapsed() < T, "took {:?}", started.elapsed());
    assert_eq!(got.len(), groups.len());
    for ((g, want), have) in groups.iter().zip(&expected).zip(&got) {
        assert_eq!(&have.group, g);
        match want {
            Ok(want) => assert_eq!(have.offsets.as_ref(), Ok(want), "{g}"),
            Err(()) => assert!(have.offsets.is_err(), "{g}: {:?}", have.offsets),
        }
    }

    // Concurrency 1 gives the same answer.
    let serial = src.group_offsets(&groups[..5], 1, T).unwrap();
    assert_eq!(serial, got[..5]);
}

#[test]
fn records_at_returns_exact_timestamps() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.records";
    kafka.create_topic(topic, 3, 1, &[]).unwrap();
    let base = kafka_harness::now_ms() - 3 * HOUR_MS;
    let p0: Vec<Record> = (0..5)
        .map(|i| Record::new(format!("p0-{i}")).with_timestamp(base + i * 1000))
        .collect();
    kafka.produce(topic, 0, &p0).unwrap();
    kafka
        .produce(topic, 1, &[Record::new("p1").with_timestamp(base - HOUR_MS)])
        .unwrap();

    let src = source(kafka);
    assert!(src.records_at(&[], T).unwrap().is_empty());
    let requests = vec![
        (tp(topic, 0), 0),
        (tp(topic, 0), 3),
        (tp(topic, 1), 0),
        (tp(topic, 2), 0),   // empty partition: end of log
        (tp(topic, 1), 100), // beyond the end of the log
    ];
    let started = Instant::now();
    let got = src.records_at(&requests, T).expect("records_at");
    let at = |r: &kafka_slo_exporter::kafka::RecordAt| (r.tp.clone(), r.requested, r.offset, r.timestamp_ms);
    let want = vec![
        (tp(topic, 0), 0, 0, base),
        (tp(topic, 0), 3, 3, base + 3000),
        (tp(topic, 1), 0, 0, base - HOUR_MS),
    ];
    assert_eq!(got.iter().map(at).collect::<Vec<_>>(), want);
    // End-of-log partitions finish the call early rather than waiting for the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // The reader is reused: the same request gives the same answer.
    let again = src.records_at(&requests, T).expect("records_at again");
    assert_eq!(again.iter().map(at).collect::<Vec<_>>(), want);

    // The reader only assigns partitions: its group.id never shows up as a group.
    let groups = src.list_groups(T).expect("list_groups");
    assert!(
        groups.iter().all(|g| !g.group.contains("kafka-slo-exporter")),
        "{groups:?}"
    );

    // Below the log start the oldest retained record is returned.
    delete_records(kafka, topic, 0, 2);
    let got = src.records_at(&[(tp(topic, 0), 0)], T).unwrap();
    assert_eq!(
        got.iter().map(at).collect::<Vec<_>>(),
        [(tp(topic, 0), 0, 2, base + 2000)]
    );
}

#[test]
fn records_at_skips_transaction_markers() {
    let kafka = KafkaCluster::shared_single();
    let topic = "ks.records.tx";
    kafka.create_topic(topic, 1, 1, &[]).unwrap();
    let base = kafka_harness::now_ms() - 2 * HOUR_MS;
    // 0: plain record, 1: transactional record, 2: commit marker, 3: plain record.
    kafka
        .produce(topic, 0, &[Record::new("a").with_timestamp(base)])
        .unwrap();
    let producer = transactional_producer(kafka, "ks-records-tx");
    producer.begin_transaction().unwrap();
    send(&producer, topic, 0, base + 1000);
    producer.flush(T).unwrap();
    producer.commit_transaction(T).unwrap();
    let src = source(kafka);
    eventually("the commit marker", T, || {
        (src.list_offsets(&[tp(topic, 0)], OffsetSpec::LatestCommitted, T)
            .unwrap()[0]
            .offset
            == Ok(3))
        .then_some(())
    });
    assert_eq!(
        kafka
            .produce(topic, 0, &[Record::new("b").with_timestamp(base + 3000)])
            .unwrap(),
        [3]
    );

    let got = src
        .records_at(&[(tp(topic, 0), 1), (tp(topic, 0), 2)], T)
        .expect("records_at");
    let got: Vec<_> = got.iter().map(|r| (r.requested, r.offset, r.timestamp_ms)).collect();
    assert_eq!(got, [(1, 1, base + 1000), (2, 3, base + 3000)]);
}

/// Batches the broker recompressed with each codec (the topic's `compression.type`: the Java
/// encoders, xerial-framed snappy among them), read in the middle of a batch; and a topic with
/// broker-set timestamps (LogAppendTime), where the batch's timestamp is every record's.
#[test]
fn records_at_reads_compressed_batches_and_log_append_time() {
    let kafka = KafkaCluster::shared_single();
    let src = source(kafka);
    let base = kafka_harness::now_ms() - 2 * HOUR_MS;
    // The bundled librdkafka is built without zstd.
    let codecs: &[&str] = if super::READER == "native" {
        &["gzip", "snappy", "lz4", "zstd"]
    } else {
        &["gzip", "snappy", "lz4"]
    };
    for codec in codecs {
        let topic = format!("ks.records.{codec}");
        kafka
            .create_topic(&topic, 1, 1, &[("compression.type", codec)])
            .unwrap();
        let batch: Vec<Record> = (0..20)
            .map(|i| Record::new(format!("{codec}-{i}-{}", "v".repeat(200))).with_timestamp(base + i * 1000))
            .collect();
        kafka.produce(&topic, 0, &batch).unwrap();
        let requests = [
            (tp(&topic, 0), 0),
            (tp(&topic, 0), 7),
            (tp(&topic, 0), 19),
            (tp(&topic, 0), 20),
        ];
        let got = src.records_at(&requests, T).expect("records_at");
        let got: Vec<_> = got.iter().map(|r| (r.requested, r.offset, r.timestamp_ms)).collect();
        assert_eq!(
            got,
            [(0, 0, base), (7, 7, base + 7000), (19, 19, base + 19000)],
            "{codec}"
        );
    }

    let topic = "ks.records.append-time";
    kafka
        .create_topic(topic, 1, 1, &[("message.timestamp.type", "LogAppendTime")])
        .unwrap();
    let before = kafka_harness::now_ms();
    kafka
        .produce(
            topic,
            0,
            &[
                Record::new("a").with_timestamp(base),
                Record::new("b").with_timestamp(base),
            ],
        )
        .unwrap();
    let after = kafka_harness::now_ms();
    let got = src.records_at(&[(tp(topic, 0), 1)], T).expect("records_at");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        (before - 1000..=after + 1000).contains(&got[0].timestamp_ms),
        "{} not within [{before}, {after}]",
        got[0].timestamp_ms
    );
}

#[test]
fn topic_configs_returns_effective_configs() {
    let kafka = KafkaCluster::shared_single();
    kafka
        .create_topic(
            "ks.configs.explicit",
            1,
            1,
            &[
                ("retention.ms", "3600000"),
                ("min.insync.replicas", "1"),
                ("compression.type", "zstd"),
            ],
        )
        .unwrap();
    kafka.create_topic("ks.configs.default", 1, 1, &[]).unwrap();
    let src = source(kafka);
    assert!(src.topic_configs(&[], T).unwrap().is_empty());
    let got = src
        .topic_configs(
            &[
                "ks.configs.explicit".into(),
                "ks.configs.missing".into(),
                "ks.configs.default".into(),
            ],
            T,
        )
        .expect("topic_configs");
    assert_eq!(
        got.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["ks.configs.default", "ks.configs.explicit"],
        "the missing topic is left out"
    );
    let explicit = &got[1].1;
    assert_eq!(explicit.get("retention.ms").map(String::as_str), Some("3600000"));
    assert_eq!(explicit.get("min.insync.replicas").map(String::as_str), Some("1"));
    assert_eq!(explicit.get("compression.type").map(String::as_str), Some("zstd"));
    let default = &got[0].1;
    assert_eq!(default.get("retention.ms").map(String::as_str), Some("604800000"));
    assert_eq!(default.get("compression.type").map(String::as_str), Some("producer"));
    // Effective defaults are included for every key the exporter reads (the native reader asks
    // for those keys only; librdkafka's admin API returns every config).
    for key in kafka_slo_exporter::model::TOPIC_CONFIG_KEYS {
        assert!(default.contains_key(key), "{key} is missing: {default:?}");
    }
}
