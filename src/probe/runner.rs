//! The probe's thread: sends a round of records every interval, reads them back, commits, and
//! publishes a [`ProbeSnapshot`] after each round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::{encode_payload, ProbeSnapshot, Tracker};
use tokio::sync::watch;

use crate::config::{ClusterConfig, ProbeConfig};
use crate::kafka::{ClientErrors, ProbeClient};

/// Where the probe of a cluster publishes; scrapes `load()` it.
pub type ProbeSlot = Arc<ArcSwap<ProbeSnapshot>>;

/// Starts the probe of one cluster on its own thread. It stops within about 100 ms of
/// `shutdown` turning true.
pub fn spawn(
    cluster: ClusterConfig,
    probe: ProbeConfig,
    client_errors: ClientErrors,
    slot: ProbeSlot,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("kse-probe-{}", cluster.name))
        .spawn(move || run(&cluster, &probe, &client_errors, &slot, &shutdown))
}

/// A run id distinguishing this process's records from an earlier one's.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn run(
    cluster: &ClusterConfig,
    probe: &ProbeConfig,
    errors: &ClientErrors,
    slot: &ProbeSlot,
    shutdown: &watch::Receiver<bool>,
) {
    let name = cluster.name.as_str();
    let mut tracker = Tracker::new(run_id(), &probe.topic, probe.timeout);
    let mut client = loop {
        match ProbeClient::new(cluster, errors, &probe.topic, &probe.group, probe.timeout) {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(cluster = name, error = %e, "probe clients cannot be created; retrying");
                tracker.error("client");
                slot.store(Arc::new(tracker.snapshot.clone()));
                if sleep_until(Instant::now() + probe.interval, shutdown) {
                    return;
                }
            }
        }
    };
    let request_timeout = cluster.timeout.min(probe.interval);
    let mut leaders: BTreeMap<i32, Option<i32>> = BTreeMap::new();
    let mut seq: u64 = 0;
    let mut next = Instant::now();
    let mut was_up = true;
    while !*shutdown.borrow() {
        let round_end = next + probe.interval;
        let mut ok = refresh_leaders(&client, cluster, probe, request_timeout, &mut tracker, &mut leaders);
        let partitions: Vec<i32> = leaders.keys().copied().collect();
        if !partitions.is_empty() {
            if let Err(e) = client.assign(&partitions, request_timeout) {
                tracing::debug!(cluster = name, error = %e, "probe consumer assignment failed");
                tracker.error("consume");
                ok = false;
            }
        }

        // Send to every known partition, also while the cluster is unreachable: those records
        // fail or get lost, which is exactly what the availability SLI must see.
        let now = SystemTime::now();
        for (p, leader) in &leaders {
            seq += 1;
            tracker.sent(*p, seq, now, leader.unwrap_or(-1));
            if let Err(class) = client.send(*p, seq, &encode_payload(tracker.run(), seq, now)) {
                tracker.failed(*p, seq, &class);
                tracker.error("produce");
            }
        }

        read_back(&client, &mut tracker, round_end, shutdown);
        ok &= take_commits(&client, &mut tracker, name);
        // A commit still unanswered after the probe timeout means the coordinator is not
        // reachable: the round is not healthy.
        if client.commit_pending_for().is_some_and(|d| d > probe.timeout) {
            ok = false;
        }
        if !partitions.is_empty() {
            client.commit();
        }
        let now = SystemTime::now();
        tracker.sweep(now);
        tracker.snapshot.rounds_total += 1;
        tracker.snapshot.up = ok && !leaders.is_empty();
        tracker.snapshot.leaders = leaders.clone();
        if tracker.snapshot.up {
            tracker.snapshot.last_success = Some(now);
        }
        if tracker.snapshot.up != was_up {
            if tracker.snapshot.up {
                tracing::info!(cluster = name, "probe recovered");
            } else {
                tracing::warn!(cluster = name, "probe round failed");
            }
            was_up = tracker.snapshot.up;
        }
        slot.store(Arc::new(tracker.snapshot.clone()));
        next = round_end.max(Instant::now());
    }
}

/// Refreshes the probe partitions' leaders, creating the probe topic when it does not exist;
/// returns false when that failed.
fn refresh_leaders(
    client: &ProbeClient,
    cluster: &ClusterConfig,
    probe: &ProbeConfig,
    timeout: Duration,
    tracker: &mut Tracker,
    leaders: &mut BTreeMap<i32, Option<i32>>,
) -> bool {
    let name = cluster.name.as_str();
    match client.leaders(timeout) {
        Ok(Some(l)) => {
            *leaders = l;
            true
        }
        Ok(None) => match create_topic(client, cluster, probe, timeout) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(cluster = name, error = %e, "probe topic cannot be created");
                tracker.error("topic");
                false
            }
        },
        Err(e) => {
            tracing::debug!(cluster = name, error = %e, "probe metadata failed");
            tracker.error("topic");
            false
        }
    }
}

/// Collects acknowledgements and reads the records back until the round ends.
fn read_back(client: &ProbeClient, tracker: &mut Tracker, round_end: Instant, shutdown: &watch::Receiver<bool>) {
    while Instant::now() < round_end && !*shutdown.borrow() {
        for d in client.take_deliveries() {
            match d.result {
                Ok(latency) => tracker.acknowledged(d.partition, d.seq, latency),
                Err(class) => tracker.failed(d.partition, d.seq, &class),
            }
        }
        let budget = round_end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        for r in client.poll_records(budget) {
            tracker.received(r.partition, &r.payload, SystemTime::now());
        }
    }
}

/// Records the outcomes of the offset commits answered since the last round; returns false
/// when one failed.
fn take_commits(client: &ProbeClient, tracker: &mut Tracker, cluster: &str) -> bool {
    let mut ok = true;
    for outcome in client.take_commits() {
        match outcome {
            Ok(latency) => tracker.snapshot.commit_latency.observe(latency.as_secs_f64()),
            Err(e) => {
                tracing::debug!(cluster, error = %e, "probe commit failed");
                tracker.error("commit");
                ok = false;
            }
        }
    }
    ok
}

/// Creates the probe topic with one partition per broker, RF capped at the broker count.
fn create_topic(
    client: &ProbeClient,
    cluster: &ClusterConfig,
    probe: &ProbeConfig,
    timeout: Duration,
) -> Result<(), crate::kafka::SourceError> {
    let brokers = client.broker_count(timeout)?.max(1);
    let rf = probe.replication_factor.min(brokers);
    let min_isr = probe.min_insync_replicas.min(rf);
    tracing::info!(
        cluster = cluster.name.as_str(),
        topic = probe.topic.as_str(),
        partitions = brokers,
        replication_factor = rf,
        "creating the probe topic"
    );
    client.create_topic(brokers, rf, min_isr, timeout)
}

/// Sleeps until `until` in short steps; returns true if shutdown was requested.
fn sleep_until(until: Instant, shutdown: &watch::Receiver<bool>) -> bool {
    while Instant::now() < until {
        if *shutdown.borrow() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    *shutdown.borrow()
}
