//! End-to-end delivery probe: the ADR's "reliably delivers events" measured as an SLO.
//!
//! Every interval the probe sends one small record to every partition of its own topic (a
//! partition led by each broker) with an idempotent `acks=all` producer, and reads them back
//! with a consumer in its own group that commits. The [`Tracker`] (pure) turns sends,
//! acknowledgements and receipts into counters and latency histograms:
//!
//! - **produced**: send attempts; **acknowledged** / **failed** (by error class): producer acks;
//! - **received**: first receipt of a record; **delivered in time**: received within `timeout`
//!   of being sent (the availability SLI's numerator, produced being its denominator);
//! - **lost**: sent, not failed, and not received within `timeout` — counted exactly once;
//!   a record received after that counts as **late**, not as received or duplicated;
//! - **duplicated**: a record received again (at-least-once allows it; counted).
//!
//! Records carry a run id, so records of an earlier exporter process are ignored.

mod runner;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

pub use runner::{spawn, ProbeSlot};

/// Upper bounds of the latency histograms, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram: non-cumulative counts per bucket of [`LATENCY_BUCKETS`] plus +Inf.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let s = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    /// (upper bound, non-cumulative count) pairs ending with +Inf.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// Counters of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionCounters {
    pub produced: u64,
    pub acknowledged: u64,
    pub failed: BTreeMap<String, u64>,
    pub received: u64,
    pub delivered_in_time: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicated: u64,
}

/// What the probe publishes after each round; scrapes encode it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeSnapshot {
    pub topic: String,
    /// The last round reached Kafka: topic known, records sent and polled, commit worked.
    pub up: bool,
    pub rounds_total: u64,
    pub last_success: Option<SystemTime>,
    pub errors: BTreeMap<&'static str, u64>,
    /// Current leader of each probe partition (`None`: offline).
    pub leaders: BTreeMap<i32, Option<i32>>,
    pub partitions: BTreeMap<i32, PartitionCounters>,
    /// Keyed by (partition, leader broker at send time).
    pub produce_latency: BTreeMap<(i32, i32), Histogram>,
    pub end_to_end_latency: BTreeMap<(i32, i32), Histogram>,
    pub commit_latency: Histogram,
}

/// The probe's error stages, all exported from the start.
pub const ERROR_STAGES: [&str; 5] = ["topic", "produce", "consume", "commit", "client"];

#[derive(Debug, Clone, Copy)]
struct Pending {
    sent_at: SystemTime,
    leader: i32,
    failed: bool,
}

/// Record payload: `kse-probe <run> <seq> <send unix ms>`.
pub fn encode_payload(run: u64, seq: u64, sent_at: SystemTime) -> Vec<u8> {
    let ms = sent_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("kse-probe {run:016x} {seq} {ms}").into_bytes()
}

/// Parses a payload; `None` for anything that is not a probe record.
pub fn decode_payload(p: &[u8]) -> Option<(u64, u64, SystemTime)> {
    let s = std::str::from_utf8(p).ok()?;
    let mut it = s.split(' ');
    if it.next()? != "kse-probe" {
        return None;
    }
    let run = u64::from_str_radix(it.next()?, 16).ok()?;
    let seq = it.next()?.parse().ok()?;
    let ms: u64 = it.next()?.parse().ok()?;
    Some((run, seq, SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

/// Pure bookkeeping of sent and received probe records.
#[derive(Debug)]
pub struct Tracker {
    run: u64,
    timeout: Duration,
    pending: HashMap<(i32, u64), Pending>,
    /// Received records, remembered for duplicate detection for 2 × timeout.
    received: HashMap<(i32, u64), SystemTime>,
    /// Records already counted lost, remembered so a late arrival is not a duplicate.
    lost: HashMap<(i32, u64), SystemTime>,
    pub snapshot: ProbeSnapshot,
}

impl Tracker {
    pub fn new(run: u64, topic: &str, timeout: Duration) -> Self {
        Tracker {
            run,
            timeout,
            pending: HashMap::new(),
            received: HashMap::new(),
            lost: HashMap::new(),
            snapshot: ProbeSnapshot {
                topic: topic.to_string(),
                errors: ERROR_STAGES.iter().map(|s| (*s, 0)).collect(),
                ..ProbeSnapshot::default()
            },
        }
    }

    pub fn run(&self) -> u64 {
        self.run
    }

    fn counters(&mut self, partition: i32) -> &mut PartitionCounters {
        self.snapshot.partitions.entry(partition).or_default()
    }

    /// A record was handed to the producer (or refused by it: then also `failed`).
    pub fn sent(&mut self, partition: i32, seq: u64, at: SystemTime, leader: i32) {
        self.counters(partition).produced += 1;
        self.pending.insert(
            (partition, seq),
            Pending {
                sent_at: at,
                leader,
                failed: false,
            },
        );
    }

    /// The producer acknowledged the record after `latency`.
    pub fn acknowledged(&mut self, partition: i32, seq: u64, latency: Duration) {
        let leader = self.pending.get(&(partition, seq)).map(|p| p.leader).unwrap_or(-1);
        self.counters(partition).acknowledged += 1;
        self.snapshot
            .produce_latency
            .entry((partition, leader))
            .or_default()
            .observe(latency.as_secs_f64());
    }

    /// The producer gave up on the record: it cannot be delivered, and is not counted lost.
    pub fn failed(&mut self, partition: i32, seq: u64, class: &str) {
        *self.counters(partition).failed.entry(class.to_string()).or_default() += 1;
        if let Some(p) = self.pending.get_mut(&(partition, seq)) {
            p.failed = true;
        }
    }

    /// A record was read back at `at`. Records of other runs are ignored.
    pub fn received(&mut self, partition: i32, payload: &[u8], at: SystemTime) {
        let Some((run, seq, sent_at)) = decode_payload(payload) else {
            return;
        };
        if run != self.run {
            return;
        }
        let key = (partition, seq);
        if self.received.contains_key(&key) {
            self.counters(partition).duplicated += 1;
            return;
        }
        if self.lost.contains_key(&key) {
            self.counters(partition).late += 1;
            self.received.insert(key, at);
            return;
        }
        let pending = self.pending.remove(&key);
        self.received.insert(key, at);
        let latency = at.duration_since(sent_at).unwrap_or_default();
        let leader = pending.map(|p| p.leader).unwrap_or(-1);
        let in_time = latency <= self.timeout;
        let c = self.counters(partition);
        c.received += 1;
        if in_time {
            c.delivered_in_time += 1;
        }
        self.snapshot
            .end_to_end_latency
            .entry((partition, leader))
            .or_default()
            .observe(latency.as_secs_f64());
    }

    /// Counts records not received within the timeout as lost (once), and forgets old state.
    pub fn sweep(&mut self, now: SystemTime) {
        let timeout = self.timeout;
        let expired: Vec<((i32, u64), Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.sent_at).unwrap_or_default() > timeout)
            .map(|(k, p)| (*k, *p))
            .collect();
        for (key, p) in expired {
            self.pending.remove(&key);
            if !p.failed {
                self.counters(key.0).lost += 1;
                self.lost.insert(key, now);
            }
        }
        let keep = timeout * 2;
        self.received
            .retain(|_, t| now.duration_since(*t).unwrap_or_default() <= keep);
        self.lost
            .retain(|_, t| now.duration_since(*t).unwrap_or_default() <= keep);
    }

    pub fn error(&mut self, stage: &'static str) {
        *self.snapshot.errors.entry(stage).or_default() += 1;
    }

    /// Records still waiting for their receipt.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn tracker() -> Tracker {
        Tracker::new(7, "probe", Duration::from_secs(10))
    }

    #[test]
    fn payload_round_trip() {
        let p = encode_payload(0xabc, 42, t(5));
        assert_eq!(decode_payload(&p), Some((0xabc, 42, t(5))));
        assert_eq!(decode_payload(b"hello"), None);
        assert_eq!(decode_payload(b"kse-probe zz 1 2"), None);
    }

    #[test]
    fn delivered_record_counts_once_with_latencies() {
        let mut tr = tracker();
        tr.sent(0, 1, t(0), 3);
        tr.acknowledged(0, 1, Duration::from_millis(4));
        tr.received(0, &encode_payload(7, 1, t(0)), t(20));
        tr.sweep(t(60_000));
        let c = &tr.snapshot.partitions[&0];
        assert_eq!(
            (c.produced, c.acknowledged, c.received, c.delivered_in_time, c.lost),
            (1, 1, 1, 1, 0)
        );
        assert_eq!(tr.snapshot.produce_latency[&(0, 3)].count, 1);
        let e2e = &tr.snapshot.end_to_end_latency[&(0, 3)];
        assert_eq!(e2e.count, 1);
        assert!((e2e.sum - 0.02).abs() < 1e-9);
        assert_eq!(e2e.counts[LATENCY_BUCKETS.iter().position(|b| *b == 0.025).unwrap()], 1);
    }

    #[test]
    fn missing_record_is_lost_exactly_once_and_late_arrival_is_not_a_duplicate() {
        let mut tr = tracker();
        tr.sent(1, 9, t(0), 2);
        tr.sweep(t(5_000));
        assert_eq!(tr.snapshot.partitions[&1].lost, 0, "not yet");
        tr.sweep(t(10_001));
        tr.sweep(t(12_000));
        assert_eq!(tr.snapshot.partitions[&1].lost, 1);
        tr.received(1, &encode_payload(7, 9, t(0)), t(13_000));
        let c = &tr.snapshot.partitions[&1];
        assert_eq!((c.lost, c.late, c.received, c.duplicated), (1, 1, 0, 0));
        assert_eq!(tr.pending(), 0);
    }

    #[test]
    fn duplicates_are_counted() {
        let mut tr = tracker();
        tr.sent(0, 1, t(0), 1);
        let p = encode_payload(7, 1, t(0));
        tr.received(0, &p, t(10));
        tr.received(0, &p, t(30));
        let c = &tr.snapshot.partitions[&0];
        assert_eq!((c.received, c.duplicated), (1, 1));
    }

    #[test]
    fn failed_sends_are_not_lost() {
        let mut tr = tracker();
        tr.sent(0, 1, t(0), 1);
        tr.failed(0, 1, "not_enough_replicas");
        tr.sweep(t(60_000));
        let c = &tr.snapshot.partitions[&0];
        assert_eq!((c.produced, c.lost, c.failed["not_enough_replicas"]), (1, 0, 1));
    }

    #[test]
    fn slow_delivery_is_received_but_not_in_time() {
        let mut tr = tracker();
        tr.sent(0, 1, t(0), 1);
        tr.received(0, &encode_payload(7, 1, t(0)), t(10_500));
        let c = &tr.snapshot.partitions[&0];
        assert_eq!((c.received, c.delivered_in_time), (1, 0));
    }

    #[test]
    fn other_runs_and_foreign_records_are_ignored() {
        let mut tr = tracker();
        tr.received(0, &encode_payload(8, 1, t(0)), t(10));
        tr.received(0, b"not a probe record", t(10));
        assert!(tr.snapshot.partitions.is_empty());
    }

    #[test]
    fn histogram_buckets_end_with_inf() {
        let mut h = Histogram::default();
        h.observe(100.0);
        h.observe(f64::NAN);
        let b = h.buckets();
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, 1));
        assert_eq!(b[0], (0.001, 1), "NaN is recorded as 0");
        assert_eq!(h.count, 2);
    }
}
