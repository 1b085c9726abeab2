//! Consumer lag in offsets and in seconds. Pure functions: no I/O, no clock.
//!
//! ## Semantics
//! - **Offset lag** of a group on a partition = high watermark − committed offset, clamped at 0
//!   (a committed offset above the high watermark, seen briefly after truncation, is 0 lag).
//! - A partition **assigned to a member but never committed** is measured from the log start
//!   offset: every retained record is unconsumed, lag = high watermark − log start offset.
//! - **Messages lost**: committed offset < log start offset means retention (or DeleteRecords)
//!   removed records the group never read; lost = log start − committed.
//! - **Time lag** = age of the oldest unconsumed record = now − timestamp of the first record
//!   at or after the committed offset; 0 when the group is caught up (committed ≥ high
//!   watermark), which keeps it correct for idle producers. When that record could not be read
//!   this cycle, the time is interpolated from the history of high watermarks (when did the
//!   high watermark pass the committed offset?). Values are finite and never negative.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// How a time lag value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeLagMethod {
    /// The group is caught up: no unconsumed record, time lag 0.
    CaughtUp,
    /// Timestamp of the record at the committed offset, read from Kafka.
    Record,
    /// Interpolated between two high-watermark observations that bracket the committed offset.
    Interpolated,
    /// The committed offset is older than the high-watermark history: at least this old.
    LowerBound,
}

impl TimeLagMethod {
    pub const ALL: [TimeLagMethod; 4] = [
        TimeLagMethod::CaughtUp,
        TimeLagMethod::Record,
        TimeLagMethod::Interpolated,
        TimeLagMethod::LowerBound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimeLagMethod::CaughtUp => "caught_up",
            TimeLagMethod::Record => "record",
            TimeLagMethod::Interpolated => "interpolated",
            TimeLagMethod::LowerBound => "lower_bound",
        }
    }
}

/// Offsets of one partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
}

/// Lag of one group on one partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetLag {
    /// Records not yet consumed (≥ 0).
    pub lag: i64,
    /// Records deleted before the group consumed them (≥ 0).
    pub lost: i64,
    /// The offset the lag is measured from: the committed offset, or the log start offset for
    /// a partition without a commit.
    pub position: i64,
    /// Whether the group has committed an offset for the partition.
    pub committed: bool,
}

/// Offset lag for a committed offset (`Some`) or an assigned, never-committed partition (`None`).
pub fn offset_lag(committed: Option<i64>, p: PartitionOffsets) -> OffsetLag {
    let hw = p.high_watermark.max(0);
    let start = p.log_start.clamp(0, hw);
    match committed {
        Some(c) if c >= 0 => OffsetLag {
            lag: (hw - c).max(0),
            lost: (start - c).max(0),
            position: c,
            committed: true,
        },
        // Negative committed offsets are sentinels (-1 "none", -1001 "invalid"): treat as absent.
        _ => OffsetLag {
            lag: hw - start,
            lost: 0,
            position: start,
            committed: false,
        },
    }
}

/// A high-watermark observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwSample {
    pub at: SystemTime,
    pub high_watermark: i64,
}

/// Bounded history of high watermarks of one partition, oldest first.
#[derive(Debug, Clone, Default)]
pub struct HwHistory {
    samples: VecDeque<HwSample>,
}

impl HwHistory {
    /// Records an observation, keeping at most `cap` samples. Only changes are stored (plus the
    /// newest sample), so an idle partition keeps a long history cheaply.
    pub fn push(&mut self, sample: HwSample, cap: usize) {
        if let Some(last) = self.samples.back() {
            if sample.at < last.at {
                return; // clock went backwards: ignore rather than corrupt the ordering
            }
        }
        // Keep the first sample of a plateau (when the high watermark reached the value);
        // replace a trailing duplicate so the newest time is known too.
        let n = self.samples.len();
        if n >= 2
            && self.samples[n - 1].high_watermark == sample.high_watermark
            && self.samples[n - 2].high_watermark == sample.high_watermark
        {
            self.samples[n - 1] = sample;
        } else {
            self.samples.push_back(sample);
        }
        while self.samples.len() > cap.max(2) {
            self.samples.pop_front();
        }
    }

    pub fn samples(&self) -> impl Iterator<Item = &HwSample> {
        self.samples.iter()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Estimates when the record at `offset` was appended: the moment the high watermark moved
    /// past `offset`. `None` when the history does not say (empty, or `offset` not yet passed).
    /// `Some((t, LowerBound))` when `offset` was passed before the oldest sample.
    pub fn time_of_offset(&self, offset: i64) -> Option<(SystemTime, TimeLagMethod)> {
        let first = self.samples.front()?;
        if first.high_watermark > offset {
            return Some((first.at, TimeLagMethod::LowerBound));
        }
        let mut prev = first;
        for s in self.samples.iter().skip(1) {
            if s.high_watermark > offset {
                // The record `offset` was appended between prev.at and s.at; place it linearly.
                // In f64: offsets far apart (or a sentinel such as -1 in the history) must not
                // overflow i64 subtraction.
                let span_offsets = s.high_watermark as f64 - prev.high_watermark as f64;
                let frac = (offset as f64 - prev.high_watermark as f64 + 1.0) / span_offsets;
                let span = s.at.duration_since(prev.at).unwrap_or_default();
                let t = prev.at + span.mul_f64(frac.clamp(0.0, 1.0));
                return Some((t, TimeLagMethod::Interpolated));
            }
            prev = s;
        }
        None
    }
}

/// Time lag of one group on one partition.
///
/// `record_ts_ms` is the timestamp of the first record at or after `position` when it was read;
/// `history` is used otherwise. Returns `None` when no method applies (no read, no history).
pub fn time_lag(
    now: SystemTime,
    position: i64,
    high_watermark: i64,
    record_ts_ms: Option<i64>,
    history: Option<&HwHistory>,
) -> Option<(f64, TimeLagMethod)> {
    if position >= high_watermark {
        return Some((0.0, TimeLagMethod::CaughtUp));
    }
    if let Some(ts) = record_ts_ms {
        if ts >= 0 {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ts as u64);
            return Some((seconds_between(now, t), TimeLagMethod::Record));
        }
    }
    let (t, method) = history?.time_of_offset(position)?;
    Some((seconds_between(now, t), method))
}

/// `now - then` in seconds, 0 when `then` is in the future (producer clocks ahead of ours).
fn seconds_between(now: SystemTime, then: SystemTime) -> f64 {
    let s = now.duration_since(then).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    if s.is_finite() {
        s
    } else {
        0.0
    }
}

/// Fraction of the topic's retention time that the time lag has used (1.0 = unconsumed data is
/// as old as retention allows and about to be deleted). `None` for unlimited retention.
pub fn retention_usage(time_lag_seconds: f64, retention_ms: Option<i64>) -> Option<f64> {
    let r = retention_ms?;
    if r <= 0 {
        return None;
    }
    let ratio = time_lag_seconds.max(0.0) / (r as f64 / 1000.0);
    ratio.is_finite().then_some(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_of_extreme_offsets_does_not_overflow() {
        let mut h = HwHistory::default();
        let s = |secs: u64, hw: i64| HwSample {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            high_watermark: hw,
        };
        h.push(s(100, i64::MIN), 10);
        h.push(s(200, i64::MAX), 10);
        let (t, method) = h.time_of_offset(i64::MAX - 1).unwrap();
        assert_eq!(method, TimeLagMethod::Interpolated);
        assert!(t >= SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        assert!(t <= SystemTime::UNIX_EPOCH + Duration::from_secs(200));
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn po(start: i64, hw: i64) -> PartitionOffsets {
        PartitionOffsets {
            log_start: start,
            high_watermark: hw,
        }
    }

    #[test]
    fn lag_is_hw_minus_committed() {
        let l = offset_lag(Some(40), po(0, 100));
        assert_eq!((l.lag, l.lost, l.position, l.committed), (60, 0, 40, true));
    }

    #[test]
    fn lag_never_negative() {
        assert_eq!(offset_lag(Some(120), po(0, 100)).lag, 0);
        assert_eq!(offset_lag(Some(100), po(0, 100)).lag, 0);
    }

    #[test]
    fn committed_below_log_start_is_loss() {
        let l = offset_lag(Some(10), po(50, 100));
        assert_eq!((l.lag, l.lost), (90, 40));
    }

    #[test]
    fn never_committed_is_measured_from_log_start() {
        let l = offset_lag(None, po(30, 100));
        assert_eq!((l.lag, l.lost, l.position, l.committed), (70, 0, 30, false));
        // Sentinel offsets count as no commit, never as lag from -1.
        assert_eq!(offset_lag(Some(-1), po(30, 100)).lag, 70);
        assert_eq!(offset_lag(Some(-1001), po(30, 100)).lag, 70);
    }

    #[test]
    fn junk_offsets_do_not_produce_negative_values() {
        let l = offset_lag(None, po(-1, -1));
        assert_eq!((l.lag, l.lost), (0, 0));
        let l = offset_lag(Some(5), po(10, 3));
        assert!(l.lag >= 0 && l.lost >= 0);
    }

    #[test]
    fn caught_up_is_zero_time_lag_even_for_idle_producers() {
        assert_eq!(
            time_lag(t(10_000), 100, 100, None, None),
            Some((0.0, TimeLagMethod::CaughtUp))
        );
    }

    #[test]
    fn time_lag_from_record_timestamp() {
        let ts = 1_700_000_000_000i64 + 1_000 * 1000;
        let (s, m) = time_lag(t(4_600), 5, 10, Some(ts), None).unwrap();
        assert_eq!(m, TimeLagMethod::Record);
        assert!((s - 3600.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn future_record_timestamp_is_zero_not_negative() {
        let ts = 1_700_000_000_000i64 + 10_000 * 1000;
        let (s, _) = time_lag(t(0), 5, 10, Some(ts), None).unwrap();
        assert_eq!(s, 0.0);
    }

    #[test]
    fn interpolates_between_bracketing_samples() {
        let mut h = HwHistory::default();
        h.push(
            HwSample {
                at: t(0),
                high_watermark: 100,
            },
            100,
        );
        h.push(
            HwSample {
                at: t(100),
                high_watermark: 200,
            },
            100,
        );
        // Record 149 is the 50th appended in (0, 100]: appended at t=50.
        let (at, m) = h.time_of_offset(149).unwrap();
        assert_eq!(m, TimeLagMethod::Interpolated);
        assert_eq!(at, t(50));
        let (s, m) = time_lag(t(150), 149, 200, None, Some(&h)).unwrap();
        assert_eq!(m, TimeLagMethod::Interpolated);
        assert!((s - 100.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn offset_older_than_history_is_a_lower_bound() {
        let mut h = HwHistory::default();
        h.push(
            HwSample {
                at: t(100),
                high_watermark: 500,
            },
            10,
        );
        let (s, m) = time_lag(t(160), 10, 500, None, Some(&h)).unwrap();
        assert_eq!(m, TimeLagMethod::LowerBound);
        assert_eq!(s, 60.0);
    }

    #[test]
    fn no_method_without_read_or_history() {
        assert_eq!(time_lag(t(0), 5, 10, None, None), None);
        assert_eq!(time_lag(t(0), 5, 10, None, Some(&HwHistory::default())), None);
    }

    #[test]
    fn history_keeps_plateau_start_and_caps() {
        let mut h = HwHistory::default();
        h.push(
            HwSample {
                at: t(0),
                high_watermark: 10,
            },
            4,
        );
        h.push(
            HwSample {
                at: t(10),
                high_watermark: 20,
            },
            4,
        );
        for i in 2..50 {
            h.push(
                HwSample {
                    at: t(i * 10),
                    high_watermark: 20,
                },
                4,
            );
        }
        // Plateau at 20 is stored as its first and its latest sample.
        let v: Vec<(SystemTime, i64)> = h.samples().map(|s| (s.at, s.high_watermark)).collect();
        assert_eq!(v, vec![(t(0), 10), (t(10), 20), (t(490), 20)]);
        // The record at offset 15 was appended in (0, 10].
        assert_eq!(h.time_of_offset(15).unwrap().1, TimeLagMethod::Interpolated);
        for i in 0..10 {
            h.push(
                HwSample {
                    at: t(1000 + i),
                    high_watermark: 100 + i as i64,
                },
                4,
            );
        }
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn history_ignores_clock_going_backwards() {
        let mut h = HwHistory::default();
        h.push(
            HwSample {
                at: t(10),
                high_watermark: 10,
            },
            4,
        );
        h.push(
            HwSample {
                at: t(5),
                high_watermark: 20,
            },
            4,
        );
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn retention_usage_ratio() {
        assert_eq!(retention_usage(3600.0, Some(7_200_000)), Some(0.5));
        assert_eq!(retention_usage(10.0, Some(-1)), None);
        assert_eq!(retention_usage(10.0, None), None);
        assert_eq!(retention_usage(-5.0, Some(1000)), Some(0.0));
    }
}
