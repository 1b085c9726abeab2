//! Property tests of the lag and status maths (pure functions): no panic on any input, offset
//! lag and lost records never negative, time lag finite and never negative, and the monotonic
//! relations that hold by definition.

use std::time::{Duration, SystemTime};

use kafka_slo_exporter::lag::{self, HwHistory, HwSample, PartitionOffsets, TimeLagMethod};
use kafka_slo_exporter::status::{self, PartitionHistory, Status, StatusRules};
use proptest::prelude::*;

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Offsets as Kafka reports them, plus the sentinels and garbage a broker or a bug could give.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..1_000_000,
        1 => Just(-1i64),
        1 => Just(-1001i64),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
    ]
}

/// A high-watermark history: (milliseconds since the epoch, high watermark) in any order.
fn history() -> impl Strategy<Value = Vec<(u64, i64)>> {
    prop::collection::vec((0u64..4_000_000_000_000, offset()), 0..40)
}

fn build(samples: &[(u64, i64)], cap: usize) -> HwHistory {
    let mut h = HwHistory::default();
    for (ms, hw) in samples {
        h.push(
            HwSample {
                at: at(*ms),
                high_watermark: *hw,
            },
            cap,
        );
    }
    h
}

/// `PROPTEST_CASES` raises the number of cases for a deeper local search; CI runs `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), .. ProptestConfig::default() })]

    #[test]
    fn offset_lag_is_never_negative(committed in prop::option::of(offset()), log_start in offset(), hw in offset()) {
        let l = lag::offset_lag(committed, PartitionOffsets { log_start, high_watermark: hw });
        prop_assert!(l.lag >= 0, "{l:?}");
        prop_assert!(l.lost >= 0, "{l:?}");
        // Never more lag than records in the log up to the high watermark from the position.
        if l.committed {
            prop_assert_eq!(l.position, committed.unwrap());
        }
    }

    #[test]
    fn offset_lag_falls_as_the_commit_advances(c in 0i64..1_000_000, step in 0i64..1_000_000, log_start in 0i64..1_000_000, extra in 0i64..1_000_000) {
        let p = PartitionOffsets { log_start, high_watermark: log_start + extra };
        let before = lag::offset_lag(Some(c), p);
        let after = lag::offset_lag(Some(c + step), p);
        prop_assert!(after.lag <= before.lag);
        prop_assert!(after.lost <= before.lost);
    }

    #[test]
    fn history_is_bounded_and_ordered(samples in history(), cap in 0usize..50) {
        let h = build(&samples, cap);
        prop_assert!(h.len() <= cap.max(2));
        let times: Vec<SystemTime> = h.samples().map(|s| s.at).collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn time_lag_is_finite_and_never_negative(
        now_ms in 0u64..4_000_000_000_000,
        position in offset(),
        hw in offset(),
        record_ts in prop::option::of(any::<i64>()),
        samples in history(),
    ) {
        let h = build(&samples, 720);
        for hist in [None, Some(&h)] {
            if let Some((secs, method)) = lag::time_lag(at(now_ms), position, hw, record_ts, hist) {
                prop_assert!(secs.is_finite() && secs >= 0.0, "{secs} by {method:?}");
                if position >= hw {
                    prop_assert_eq!((secs, method), (0.0, TimeLagMethod::CaughtUp));
                }
            } else {
                prop_assert!(position < hw);
            }
        }
    }

    #[test]
    fn time_lag_grows_with_the_clock(
        now_ms in 0u64..2_000_000_000_000,
        later in 0u64..1_000_000_000,
        position in 0i64..1000,
        hw in 0i64..1000,
        record_ts in prop::option::of(0i64..2_000_000_000_000),
        samples in prop::collection::vec((0u64..2_000_000_000_000, 0i64..1000), 0..30),
    ) {
        let mut sorted = samples;
        sorted.sort();
        let h = build(&sorted, 720);
        let a = lag::time_lag(at(now_ms), position, hw, record_ts, Some(&h));
        let b = lag::time_lag(at(now_ms + later), position, hw, record_ts, Some(&h));
        match (a, b) {
            (Some((x, m1)), Some((y, m2))) => {
                prop_assert_eq!(m1, m2);
                prop_assert!(y >= x, "{x} then {y}");
            }
            (None, None) => {}
            other => prop_assert!(false, "same inputs, different outcome: {other:?}"),
        }
    }

    #[test]
    fn retention_usage_is_finite_and_never_negative(secs in any::<f64>(), retention in prop::option::of(any::<i64>())) {
        if let Some(r) = lag::retention_usage(secs, retention) {
            prop_assert!(r.is_finite() && r >= 0.0, "{r}");
        }
    }

    #[test]
    fn status_rules_are_total(
        obs in prop::collection::vec((0u64..10_000_000, prop::option::of(offset()), any::<i64>()), 0..30),
        now_extra in 0u64..10_000_000,
        has_members in any::<bool>(),
        window_s in 0u64..100_000,
        min_obs in 0usize..10,
    ) {
        let rules = StatusRules { window: Duration::from_secs(window_s), min_observations: min_obs };
        // Any order: observations that go back in time are ignored, never a panic.
        let mut h = PartitionHistory::default();
        let mut last = 0;
        for (ms, committed, lag) in &obs {
            h.observe(at(*ms), *committed, *lag, rules.window);
            last = last.max(*ms);
        }
        let s = status::evaluate(&h, at(last + now_extra), has_members, rules);
        prop_assert!(Status::ALL.contains(&s));
        prop_assert!(h.len() <= obs.len());

        // In time order (as the poller observes):
        let mut obs = obs;
        obs.sort_by_key(|o| o.0);
        let mut h = PartitionHistory::default();
        for (ms, committed, lag) in &obs {
            h.observe(at(*ms), *committed, *lag, rules.window);
        }
        let s = status::evaluate(&h, at(last + now_extra), has_members, rules);
        // Without lag there is nothing to be late on, unless the commits went backwards.
        if obs.last().is_some_and(|(_, _, lag)| *lag <= 0) && s != Status::Rewind {
            prop_assert_eq!(s, Status::Ok);
        }
        // Stall is for groups with members, stop for groups without.
        if s == Status::Stall { prop_assert!(has_members); }
        if s == Status::Stop { prop_assert!(!has_members); }
    }

    #[test]
    fn worst_is_the_maximum(statuses in prop::collection::vec(prop::sample::select(Status::ALL.to_vec()), 0..10)) {
        let w = status::worst(statuses.clone());
        prop_assert!(statuses.iter().all(|s| *s <= w));
        prop_assert!(statuses.is_empty() && w == Status::Ok || statuses.contains(&w));
    }
}
