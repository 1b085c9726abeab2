//! A broker whose answers stop arriving and then arrive again, on a real single-node Kafka:
//! its client port is cut off on `lo` (everything the broker sends from it dropped, see
//! [`PortFault::cut`]) for longer than librdkafka's SYN retransmissions take to back off, then
//! repaired.
//!
//! librdkafka times out the requests queued on a connection that is still being set up, but
//! it abandons the connection attempt itself only after `socket.connection.setup.timeout.ms`,
//! 30 s by default. During the cut a new attempt's TCP handshake goes unanswered and the
//! kernel retransmits its SYN 1, 3, 7 and 15 s after the start, so after the repair the attempt
//! stays pending until its next retransmission, seconds later, while every request to the
//! broker times out. With the exporter's limit of one stage timeout it is abandoned and
//! redialled instead. Checked two ways: during the cut, no connection attempt of the exporter
//! stays unanswered (TCP state SYN-SENT) much longer than that limit; after the repair, the
//! exporter is correct by the end of the second cycle that ends (the one running at the
//! repair may still fail).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Exporter, Metrics};
use kafka_harness::{ClusterOptions, ConsumerOptions, KafkaCluster, PortFault};

const TOPIC: &str = "c.orders";
const PARTITIONS: usize = 3;
/// The exporter's stage timeout, which is also its connection set-up limit.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the port stays cut off: past the kernel's 15 s SYN retransmission.
const CUT: Duration = Duration::from_secs(20);
/// The longest an attempt may stay in SYN-SENT: the set-up limit, librdkafka's once-a-second
/// scan for expired attempts, and scheduling slack on a busy host. With librdkafka's default
/// limit an attempt stays for the whole cut.
const MAX_PENDING: Duration = Duration::from_secs(5);
/// The longest a recovery may take, to catch a stall: a cycle running at the repair (each of
/// its stages may wait the timeout), one interval and one healthy cycle, plus slack.
const RECOVERY_LIMIT: Duration = Duration::from_secs(25);

fn cycles(m: &Metrics) -> f64 {
    m.value("kafka_slo_exporter_cycles_total", &[]).unwrap_or(0.0)
}

fn healthy(m: &Metrics) -> bool {
    m.value("kafka_slo_exporter_cluster_up", &[]) == Some(1.0)
        && m.value("kafka_brokers", &[]) == Some(1.0)
        && m.find("kafka_partition_high_watermark", &[("topic", TOPIC)]).len() == PARTITIONS
        && m.value("kafka_slo_exporter_partition_offset_errors", &[]) == Some(0.0)
        && m.find("kafka_consumergroup_info", &[("group", "c-billing")]).len() == 1
}

/// The local addresses of `pid`'s TCP connection attempts to `port` still in SYN-SENT.
fn pending_attempts(pid: i32, port: u16) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "syn-sent", &format!("( dport = :{port} )")])
        .output()
        .expect("run ss (iproute2)");
    assert!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    let owner = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

#[test]
fn connection_attempts_during_a_cut_are_redialled_and_the_exporter_recovers() {
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(1)).expect("kafka");
    kafka.create_topic(TOPIC, PARTITIONS as i32, 1, &[]).unwrap();
    let _producer = kafka.producing_loop(TOPIC, 20).unwrap();
    let _group = kafka
        .consuming_group("c-billing", &[TOPIC], ConsumerOptions::default())
        .unwrap();
    let cfg = format!(
        "global:\n  interval: 1s\n  timeout: {}s\n  metrics: {{opt_in: ['.*']}}\n  topics: {{allow: ['c\\..*']}}\n  groups: {{allow: ['c-.*']}}\nclusters:\n  - name: local\n    bootstrap_servers: {}\n",
        TIMEOUT.as_secs(),
        common::bootstrap_yaml(&kafka)
    );
    let e = Exporter::start(&cfg, &[]);
    e.wait_for(Duration::from_secs(60), "healthy before the cut", healthy);

    let port = kafka.broker_port(kafka.broker_ids()[0]);
    let fault = match PortFault::cut(port) {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("[connection-recovery] SKIPPED: {reason}");
            return;
        }
    };
    // Every attempt seen in SYN-SENT, by local address: (first seen, last seen). An address
    // missing from a poll in between belongs to a new attempt when it shows again.
    let mut attempts: HashMap<String, (Instant, Instant)> = HashMap::new();
    let mut longest = Duration::ZERO;
    let cut_at = Instant::now();
    while cut_at.elapsed() < CUT {
        let now = Instant::now();
        for local in pending_attempts(e.pid(), port) {
            let seen = attempts.entry(local).or_insert((now, now));
            if now - seen.1 > Duration::from_millis(500) {
                seen.0 = now;
            }
            seen.1 = now;
            longest = longest.max(seen.1 - seen.0);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let during = e.scrape();
    drop(fault);
    let repaired = Instant::now();

    // Recovery first, so that a failure reports both findings.
    let recovery = recover(&e, repaired);

    assert_eq!(
        during.value("kafka_slo_exporter_cluster_up", &[]),
        Some(0.0),
        "the cut is visible while it lasts"
    );
    assert!(
        !attempts.is_empty(),
        "the exporter kept trying to connect during the cut"
    );
    eprintln!(
        "[connection-recovery] {} connection attempts (local addresses) during the {CUT:?} cut, the longest pending {:.1} s",
        attempts.len(),
        longest.as_secs_f64()
    );
    assert!(
        longest <= MAX_PENDING,
        "a connection attempt stayed unanswered for {:.1} s (limit {MAX_PENDING:?}): the set-up limit is not applied",
        longest.as_secs_f64()
    );
    if let Err(failure) = recovery {
        panic!("{failure}");
    }
}

/// Waits until the exporter is correct after the repair; `Err` once the second cycle ended
/// after the repair without it (or [`RECOVERY_LIMIT`] passed).
fn recover(e: &Exporter, repaired: Instant) -> Result<(), String> {
    let first = cycles(&e.scrape());
    loop {
        let m = e.scrape();
        let ended = cycles(&m) - first;
        let waited = repaired.elapsed().as_secs_f64();
        if healthy(&m) {
            eprintln!("[connection-recovery] exporter correct {waited:.2} s after the repair, {ended} cycle(s) later");
            return Ok(());
        }
        if ended >= 2.0 || repaired.elapsed() >= RECOVERY_LIMIT {
            let logs = e.logs();
            let tail: Vec<&str> = logs.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "not correct by the end of the second cycle after the repair ({ended} cycles, {waited:.1} s); logs:\n{}",
                tail.join("\n")
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
