//! `kse-bench-workload`: a Kafka cluster with a scaled workload, for the benchmark in `bench/`.
//!
//! Starts a KRaft cluster (one node unless `--brokers` says otherwise), prints its facts as
//! `key=value` lines on stdout, then reads commands from stdin, one per line:
//!
//! - `grow TOPICS PARTITIONS GROUPS RECORDS`: brings the workload up to `TOPICS` topics
//!   `bench.tNNNNN` of `PARTITIONS` partitions with `RECORDS` records each, and `GROUPS`
//!   groups `bench-gNNNNN`; group `i` commits on every partition of topic `i mod TOPICS`, a
//!   few records behind the end (lag 0 to 5, varying by group and partition). Only what is
//!   missing is created, so a scaling run grows one cluster step by step. Answers `ok` with
//!   the time taken, or `error ...`.
//! - `quit`, or the end of stdin: stops the cluster and exits.
//!
//! Topic creation is batched (100 topics per CreateTopics request, several requests in
//! flight), records are produced by one multi-partition producer that batches per partition,
//! and offsets are committed by parallel workers. Progress goes to stderr.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use kafka_harness::{now_ms, ClusterOptions, KafkaCluster, QuietContext, DEFAULT_KAFKA_VERSION};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const USAGE: &str = "\
usage: kse-bench-workload [--brokers N] [--heap SIZE] [--kafka-version VERSION]

Starts a Kafka cluster for the benchmark, prints bootstrap_servers=..., then reads
commands on stdin: `grow TOPICS PARTITIONS GROUPS RECORDS`, `quit`.

  --brokers N              nodes of the cluster (default 1)
  --heap SIZE              broker JVM heap, e.g. 2g (default 2g)
  --kafka-version VERSION  Kafka version (default: the harness default)
";

/// Topics per CreateTopics request.
const CREATE_BATCH: usize = 100;
/// CreateTopics requests in flight.
const CREATE_PARALLEL: usize = 4;
/// Threads committing offsets, one group at a time each.
const COMMIT_WORKERS: usize = 16;

struct Args {
    brokers: usize,
    heap: String,
    kafka_version: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        brokers: 1,
        heap: "2g".into(),
        kafka_version: std::env::var(kafka_harness::VERSION_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_KAFKA_VERSION.to_owned()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => args.brokers = value()?.parse().map_err(|e| format!("--brokers: {e}"))?,
            "--heap" => args.heap = value()?,
            "--kafka-version" => args.kafka_version = value()?,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kse-bench-workload: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    // A larger heap and the full JIT: the broker serves thousands of partitions and groups.
    let jvm_args: Vec<String> = [
        format!("-Xms{}", args.heap),
        format!("-Xmx{}", args.heap),
        "-XX:+UseG1GC".into(),
        "-XX:-UsePerfData".into(),
        "-XX:+ExitOnOutOfMemoryError".into(),
        "-Djava.awt.headless=true".into(),
    ]
    .into();
    let opts = ClusterOptions {
        jvm_args,
        startup_timeout: Duration::from_secs(180),
        ..ClusterOptions::with_nodes(args.brokers).version(args.kafka_version.clone())
    }
    // Like a production cluster: offsets spread over many coordinator partitions.
    .broker_prop("offsets.topic.num.partitions", "50");
    let cluster = match KafkaCluster::start_new(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kse-bench-workload: starting Kafka failed: {e}");
            std::process::exit(1);
        }
    };
    println!("bootstrap_servers={}", cluster.bootstrap_servers());
    println!("kafka_version={}", cluster.version());
    println!("brokers={}", args.brokers);
    println!(
        "broker_pids={}",
        cluster
            .broker_ids()
            .iter()
            .filter_map(|id| cluster.broker_pid(*id))
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    println!("started_in_s={:.1}", started.elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();

    let mut workload = Workload::default();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => continue,
            ["quit"] => break,
            ["grow", t, p, g, r] => {
                let parsed = (t.parse(), p.parse(), g.parse(), r.parse());
                let (Ok(t), Ok(p), Ok(g), Ok(r)) = parsed else {
                    println!("error: grow needs four numbers");
                    continue;
                };
                let t0 = Instant::now();
                match workload.grow(&cluster, t, p, g, r) {
                    Ok(()) => println!("ok seconds={:.1}", t0.elapsed().as_secs_f64()),
                    Err(e) => println!("error {e}"),
                }
            }
            _ => println!("error: unknown command {line:?}"),
        }
        let _ = std::io::stdout().flush();
    }
    eprintln!("kse-bench-workload: stopping Kafka");
    drop(cluster);
}

fn topic_name(i: usize) -> String {
    format!("bench.t{i:05}")
}

fn group_name(i: usize) -> String {
    format!("bench-g{i:05}")
}

/// Offset lag of group `g` on partition `p`: 0 to 5.
fn lag_of(g: usize, p: usize) -> i64 {
    ((g * 7 + p * 3) % 6) as i64
}

/// What exists so far.
#[derive(Default)]
struct Workload {
    topics: usize,
    partitions: usize,
    records: usize,
    groups: usize,
}

impl Workload {
    fn grow(
        &mut self,
        cluster: &KafkaCluster,
        topics: usize,
        partitions: usize,
        groups: usize,
        records: usize,
    ) -> Result<(), String> {
        if self.topics > 0 && (partitions != self.partitions || records != self.records) {
            return Err("partitions and records per topic cannot change between steps".into());
        }
        if topics == 0 || partitions == 0 || records < 6 {
            return Err("need at least one topic and partition, and 6 records per partition".into());
        }
        let new_topics: Vec<usize> = (self.topics..topics).collect();
        if !new_topics.is_empty() {
            create_topics(cluster, &new_topics, partitions)?;
            produce(cluster, &new_topics, partitions, records)?;
        }
        self.topics = self.topics.max(topics);
        self.partitions = partitions;
        self.records = records;
        let new_groups: Vec<usize> = (self.groups..groups).collect();
        if !new_groups.is_empty() {
            commit(cluster, &new_groups, self.topics, partitions, records)?;
        }
        self.groups = self.groups.max(groups);
        Ok(())
    }
}

/// Prints `what done/total` to stderr at most every second, and once at the end.
struct Progress {
    what: &'static str,
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last: Mutex<Instant>,
}

impl Progress {
    fn new(what: &'static str, total: usize) -> Self {
        let now = Instant::now();
        Self {
            what,
            total,
            done: AtomicUsize::new(0),
            started: now,
            last: Mutex::new(now),
        }
    }

    fn add(&self, n: usize) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(1) || done >= self.total {
            *last = Instant::now();
            eprintln!(
                "kse-bench-workload: {} {done}/{} ({:.1}s)",
                self.what,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

fn create_topics(cluster: &KafkaCluster, indexes: &[usize], partitions: usize) -> Result<(), String> {
    let admin: AdminClient<QuietContext> = cluster
        .client_config()
        .create_with_context(QuietContext)
        .map_err(|e| format!("admin client: {e}"))?;
    let opts = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(120)))
        .operation_timeout(Some(Duration::from_secs(120)));
    let progress = Progress::new("topics created", indexes.len());
    let batches: Vec<&[usize]> = indexes.chunks(CREATE_BATCH).collect();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    thread::scope(|s| {
        for _ in 0..CREATE_PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                let names: Vec<String> = batch.iter().map(|i| topic_name(*i)).collect();
                let new: Vec<NewTopic> = names
                    .iter()
                    .map(|n| NewTopic::new(n, partitions as i32, TopicReplication::Fixed(1)))
                    .collect();
                let result = block_on(admin.create_topics(new.iter(), &opts));
                let err = match result {
                    Err(e) => Some(format!("CreateTopics: {e}")),
                    Ok(rs) => rs.into_iter().find_map(|r| match r {
                        Err((t, code)) if code != rdkafka::error::RDKafkaErrorCode::TopicAlreadyExists => {
                            Some(format!("creating {t}: {code}"))
                        }
                        _ => None,
                    }),
                };
                if let Some(e) = err {
                    failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    break;
                }
                progress.add(batch.len());
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // Wait until every new partition has a leader.
    let expected = indexes.len() * partitions;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(30))
            .map_err(|e| format!("metadata: {e}"))?;
        let wanted: std::collections::HashSet<String> = indexes.iter().map(|i| topic_name(*i)).collect();
        let led: usize = md
            .topics()
            .iter()
            .filter(|t| wanted.contains(t.name()))
            .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0).count())
            .sum();
        eprintln!("kse-bench-workload: partitions with a leader {led}/{expected}");
        if led >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {led} of {expected} partitions have a leader"));
        }
        thread::sleep(Duration::from_secs(1));
    }
}

fn produce(cluster: &KafkaCluster, indexes: &[usize], partitions: usize, records: usize) -> Result<(), String> {
    let producer: ThreadedProducer<DefaultProducerContext> = cluster
        .client_config()
        .set("acks", "1")
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000")
        .set("compression.type", "lz4")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let total = indexes.len() * partitions * records;
    let progress = Progress::new("records queued", total);
    // Records of a partition one second apart, the last one now: the groups' time lag is a
    // few seconds.
    let now = now_ms();
    let value = [b'x'; 100];
    for &t in indexes {
        let topic = topic_name(t);
        for p in 0..partitions {
            for r in 0..records {
                let ts = now - ((records - r) as i64) * 1000;
                let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
                    .partition(p as i32)
                    .payload(&value[..])
                    .timestamp(ts);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((
                            rdkafka::error::KafkaError::MessageProduction(rdkafka::error::RDKafkaErrorCode::QueueFull),
                            back,
                        )) => {
                            rec = back;
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(format!("producing to {topic}: {e}")),
                    }
                }
            }
        }
        progress.add(partitions * records);
    }
    eprintln!("kse-bench-workload: flushing the producer");
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| format!("flushing: {e}"))?;
    if producer.in_flight_count() > 0 {
        return Err(format!("{} records not delivered", producer.in_flight_count()));
    }
    Ok(())
}

fn commit(
    cluster: &KafkaCluster,
    groups: &[usize],
    topics: usize,
    partitions: usize,
    records: usize,
) -> Result<(), String> {
    let progress = Progress::new("groups committed", groups.len());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    thread::scope(|s| {
        for _ in 0..COMMIT_WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&g) = groups.get(i) else { break };
                if let Err(e) = commit_group(cluster, g, topics, partitions, records) {
                    failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    break;
                }
                progress.add(1);
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn commit_group(
    cluster: &KafkaCluster,
    g: usize,
    topics: usize,
    partitions: usize,
    records: usize,
) -> Result<(), String> {
    let group = group_name(g);
    let topic = topic_name(g % topics);
    let consumer: BaseConsumer<QuietContext> = cluster
        .client_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext)
        .map_err(|e| format!("consumer for {group}: {e}"))?;
    let mut tpl = TopicPartitionList::with_capacity(partitions);
    for p in 0..partitions {
        let offset = records as i64 - lag_of(g, p);
        tpl.add_partition_offset(&topic, p as i32, Offset::Offset(offset))
            .map_err(|e| format!("{group}: {e}"))?;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => return Ok(()),
            // The coordinator may still be loading right after start-up.
            Err(_) if attempt < 10 => thread::sleep(Duration::from_millis(500)),
            Err(e) => return Err(format!("committing for {group}: {e}")),
        }
    }
}

/// Drives an rdkafka admin future on this thread (the admin client's own thread completes it).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unparker(thread::Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}
