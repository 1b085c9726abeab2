//! The harness against one shared single-node cluster.

use std::time::Duration;

use kafka_harness::{ConsumerOptions, KafkaCluster, QuietContext, Record};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

const T0: i64 = 1_700_000_000_000;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The admin futures complete on rdkafka's own thread; a spin-parking
    // executor is all a test needs.
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct W(std::thread::Thread);
    impl Wake for W {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(W(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn shared_cluster_is_reused_and_reports_itself() {
    let a = KafkaCluster::shared_single();
    let b = KafkaCluster::shared_single();
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.broker_ids(), vec![1]);
    assert_eq!(a.metadata_broker_ids().unwrap(), vec![1]);
    assert!(a.bootstrap_servers().starts_with("127.0.0.1:"));
    assert!(a.is_running(1));
    assert!(a.broker_pid(1).is_some());
    assert_eq!(a.cluster_id().len(), 22);
}

#[test]
fn topic_configs_and_explicit_timestamps() {
    let kafka = KafkaCluster::shared_single();
    kafka
        .create_topic(
            "harness.configs",
            3,
            1,
            &[("retention.ms", "604800000"), ("compression.type", "lz4")],
        )
        .expect("create topic");

    // The configs reached the broker.
    let admin: AdminClient<QuietContext> = kafka.client_config().create_with_context(QuietContext).unwrap();
    let described =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic("harness.configs")], &AdminOptions::new())).unwrap();
    let resource = described.into_iter().next().unwrap().expect("describe");
    let get = |name: &str| resource.get(name).and_then(|e| e.value.clone()).unwrap_or_default();
    assert_eq!(get("retention.ms"), "604800000");
    assert_eq!(get("compression.type"), "lz4");

    let records: Vec<Record> = (0..5)
        .map(|i| {
            Record::new(format!("v{i}"))
                .with_key(format!("k{i}"))
                .with_timestamp(T0 + i * 1000)
        })
        .collect();
    let offsets = kafka.produce("harness.configs", 2, &records).expect("produce");
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

    // Read them back from partition 2 and check key and CreateTime.
    let consumer: BaseConsumer<QuietContext> = kafka
        .client_config()
        .set("group.id", "harness-reader")
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext)
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("harness.configs", 2, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 5 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            seen.push((
                m.offset(),
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.timestamp(),
            ));
        }
    }
    assert_eq!(seen.len(), 5, "read back {seen:?}");
    for (i, (offset, key, ts)) in seen.into_iter().enumerate() {
        let i = i as i64;
        assert_eq!(offset, i);
        assert_eq!(key.as_deref(), Some(format!("k{i}").as_str()));
        assert_eq!(ts, Timestamp::CreateTime(T0 + i * 1000));
    }

    let (low, high) = consumer
        .fetch_watermarks("harness.configs", 2, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 5));

    kafka.delete_topic("harness.configs").expect("delete topic");
    assert!(!kafka.list_topics().unwrap().contains(&"harness.configs".to_owned()));
}

#[test]
fn creating_an_existing_topic_fails_with_a_broker_error() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("harness.dup", 1, 1, &[]).unwrap();
    let err = kafka.create_topic("harness.dup", 1, 1, &[]).unwrap_err();
    assert!(err.to_string().contains("TopicAlreadyExists"), "{err}");
}

#[test]
fn standalone_commits_read_back_and_group_deletion() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("harness.commits", 2, 1, &[]).unwrap();
    let records: Vec<Record> = (0..10).map(|i| Record::new(vec![i as u8])).collect();
    kafka.produce("harness.commits", 0, &records).unwrap();
    kafka.produce("harness.commits", 1, &records[..4]).unwrap();

    kafka
        .commit_offsets(
            "harness-billing",
            &[("harness.commits", 0, 7), ("harness.commits", 1, 4)],
        )
        .expect("commit");
    let got = kafka
        .committed_offsets("harness-billing", &[("harness.commits", 0), ("harness.commits", 1)])
        .unwrap();
    assert_eq!(got, vec![Some(7), Some(4)]);

    // Moving a committed position backwards is allowed as well.
    kafka
        .commit_offsets("harness-billing", &[("harness.commits", 0, 2)])
        .unwrap();
    let got = kafka
        .committed_offsets("harness-billing", &[("harness.commits", 0)])
        .unwrap();
    assert_eq!(got, vec![Some(2)]);

    kafka.delete_group("harness-billing").expect("delete group");
    let got = kafka
        .committed_offsets("harness-billing", &[("harness.commits", 0)])
        .unwrap();
    assert_eq!(got, vec![None]);
}

#[test]
fn classic_group_consumes_and_commits_what_it_processed() {
    let kafka = KafkaCluster::shared_single();
    kafka.create_topic("harness.classic", 3, 1, &[]).unwrap();
    let producer = kafka.producing_loop("harness.classic", 50).unwrap();
    producer
        .wait_for_acked(20, Duration::from_secs(30))
        .expect("producer acks");

    let consumer = kafka
        .consuming_group("harness-classic", &["harness.classic"], ConsumerOptions::default())
        .unwrap();
    consumer
        .wait_for_assignment(Duration::from_secs(30))
        .expect("assignment");
    consumer
        .wait_for_consumed(20, Duration::from_secs(30))
        .expect("consumed");
    drop(producer);
    let processed = {
        let c = consumer;
        let n = c.consumed();
        c.stop();
        n
    };

    let parts: Vec<(&str, i32)> = (0..3).map(|p| ("harness.classic", p)).collect();
    let committed: i64 = kafka
        .committed_offsets("harness-classic", &parts)
        .unwrap()
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    // The close commits the final stored offsets, so commits equal the
    // number of processed records exactly.
    assert_eq!(committed as u64, processed);
}

#[test]
fn kip848_group_with_delay_lags_behind() {
    let kafka = KafkaCluster::shared_single();
    if kafka.version().starts_with("3.") {
        // librdkafka's KIP-848 client needs the Kafka 4.0 heartbeat API.
        eprintln!("skipped: KIP-848 groups need Kafka 4.0+, running {}", kafka.version());
        return;
    }
    kafka.create_topic("harness.kip848", 2, 1, &[]).unwrap();
    let records: Vec<Record> = (0..40).map(|i| Record::new(format!("r{i}"))).collect();
    kafka.produce("harness.kip848", 0, &records).unwrap();
    kafka.produce("harness.kip848", 1, &records).unwrap();

    let consumer = kafka
        .consuming_group(
            "harness-kip848",
            &["harness.kip848"],
            ConsumerOptions::kip848().with_delay(Duration::from_millis(100)),
        )
        .unwrap();
    consumer
        .wait_for_assignment(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; last consumer error: {:?}", consumer.last_error()));
    consumer.wait_for_consumed(5, Duration::from_secs(30)).unwrap();
    assert_eq!(consumer.assigned_partitions(), 2);
    // 80 records at 100 ms each cannot be done yet: the group lags.
    let processed = consumer.consumed();
    assert!(processed < 80, "processed {processed}");
    consumer.stop();

    let committed: i64 = kafka
        .committed_offsets("harness-kip848", &[("harness.kip848", 0), ("harness.kip848", 1)])
        .unwrap()
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    assert!(committed > 0 && committed < 80, "committed {committed}");
}
