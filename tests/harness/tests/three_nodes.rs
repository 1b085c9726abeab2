//! Broker failure and recovery in a three-node cluster.

use std::time::{Duration, Instant};

use kafka_harness::{ClusterOptions, KafkaCluster, Record};

#[test]
fn killed_broker_is_fenced_and_rejoins_after_restart() {
    let started = Instant::now();
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(3)).expect("start 3 nodes");
    eprintln!("3-node cluster ready in {:?}", started.elapsed());
    assert_eq!(kafka.broker_ids(), vec![1, 2, 3]);
    assert_eq!(kafka.metadata_broker_ids().unwrap(), vec![1, 2, 3]);
    assert_eq!(kafka.bootstrap_servers().split(',').count(), 3);

    kafka
        .create_topic("replicated", 3, 3, &[("min.insync.replicas", "2")])
        .expect("create rf=3 topic");
    let batch: Vec<Record> = (0..10).map(|i| Record::new(format!("a{i}"))).collect();
    kafka.produce("replicated", 0, &batch).expect("produce");

    let pid = kafka.broker_pid(2).expect("broker 2 runs");
    kafka.kill_broker(2);
    assert!(!kafka.is_running(2));
    // kill_broker returns after the supervisor reaped the JVM.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the JVM itself must be gone after kill_broker"
    );
    let killed = Instant::now();
    kafka
        .wait_for_brokers(2, Duration::from_secs(30))
        .expect("broker 2 fenced");
    eprintln!("broker 2 left the metadata after {:?}", killed.elapsed());
    assert_eq!(kafka.metadata_broker_ids().unwrap(), vec![1, 3]);

    // Two of three replicas satisfy min.insync.replicas=2.
    let offsets = kafka.produce("replicated", 0, &batch).expect("produce degraded");
    assert_eq!(offsets.first(), Some(&10));

    let restarting = Instant::now();
    kafka.restart_broker(2).expect("restart broker 2");
    eprintln!("broker 2 back after {:?}", restarting.elapsed());
    assert!(kafka.is_running(2));
    kafka
        .wait_for_brokers(3, Duration::from_secs(30))
        .expect("3 brokers again");
    kafka.produce("replicated", 1, &batch).expect("produce after restart");

    let dir = kafka.dir().to_path_buf();
    drop(kafka);
    assert!(!dir.exists(), "cluster dir {} not removed", dir.display());
}
