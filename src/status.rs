//! Consumer group status in the spirit of Burrow, evaluated from the exporter's own history of
//! committed offsets and lag. Pure functions: no I/O, no clock.
//!
//! ## Rules (per partition, over the sliding `window`)
//! Evaluated in this order; the first that applies wins:
//! 1. **REWIND** — the committed offset went backwards between two consecutive observations
//!    inside the window (a reset, or a consumer committing stale offsets).
//! 2. **OK** — the latest lag is 0 (caught up), or there are fewer than `min_observations`
//!    observations (not enough evidence yet).
//! 3. **STOP** — lag > 0, the committed offset has not changed for at least `window`, and the
//!    group has no active members: nobody is consuming.
//! 4. **STALL** — the same, but the group has active members: consumers are alive and still
//!    not committing progress (stuck processing, poison message, commit failures).
//! 5. **WARN** — offsets move, but the lag grew across the window: every observation's lag is
//!    ≥ the previous one and the last is greater than the first.
//! 6. **OK** — otherwise.
//!
//! The group's status is the worst status of its partitions, ranked
//! OK < WARN < STALL < STOP < REWIND.
//!
//! Kafka's OffsetFetch does not return commit times, so "no commits" is inferred from the
//! committed offset not changing; membership separates a dead consumer (STOP) from a stuck one
//! (STALL).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// Status of a partition or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Warn,
    Stall,
    Stop,
    Rewind,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Ok, Status::Warn, Status::Stall, Status::Stop, Status::Rewind];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Stall => "stall",
            Status::Stop => "stop",
            Status::Rewind => "rewind",
        }
    }
}

/// Settings of the evaluation.
#[derive(Debug, Clone, Copy)]
pub struct StatusRules {
    pub window: Duration,
    pub min_observations: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Observation {
    at: SystemTime,
    committed: Option<i64>,
    lag: i64,
}

/// What the exporter has seen of one group on one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionHistory {
    obs: VecDeque<Observation>,
    /// When the committed offset took its current value (first seen).
    committed_since: Option<SystemTime>,
}

impl PartitionHistory {
    /// Adds an observation and forgets those older than the window (keeping the newest one
    /// before it, so a window boundary never hides a REWIND).
    pub fn observe(&mut self, at: SystemTime, committed: Option<i64>, lag: i64, window: Duration) {
        if let Some(last) = self.obs.back() {
            if at < last.at {
                return;
            }
            if last.committed != committed {
                self.committed_since = Some(at);
            }
        } else {
            self.committed_since = Some(at);
        }
        self.obs.push_back(Observation {
            at,
            committed,
            lag: lag.max(0),
        });
        let horizon = at.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        while self.obs.len() > 2 && self.obs[1].at < horizon {
            self.obs.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.obs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }

    /// How long the committed offset has kept its current value, as far as observed.
    pub fn committed_unchanged_for(&self, now: SystemTime) -> Duration {
        self.committed_since
            .and_then(|s| now.duration_since(s).ok())
            .unwrap_or_default()
    }
}

/// Evaluates the rules for one partition.
pub fn evaluate(h: &PartitionHistory, now: SystemTime, has_members: bool, rules: StatusRules) -> Status {
    let Some(latest) = h.obs.back() else {
        return Status::Ok;
    };
    let horizon = now.checked_sub(rules.window).unwrap_or(SystemTime::UNIX_EPOCH);

    let rewound = h
        .obs
        .iter()
        .zip(h.obs.iter().skip(1))
        .any(|(a, b)| b.at >= horizon && matches!((a.committed, b.committed), (Some(x), Some(y)) if y < x));
    if rewound {
        return Status::Rewind;
    }
    if latest.lag == 0 || h.obs.len() < rules.min_observations {
        return Status::Ok;
    }
    if h.committed_unchanged_for(now) >= rules.window {
        return if has_members { Status::Stall } else { Status::Stop };
    }
    let in_window: Vec<&Observation> = h.obs.iter().filter(|o| o.at >= horizon).collect();
    if in_window.len() >= rules.min_observations {
        let non_decreasing = in_window.windows(2).all(|w| w[1].lag >= w[0].lag);
        let first = in_window.first().map(|o| o.lag).unwrap_or(0);
        if non_decreasing && latest.lag > first {
            return Status::Warn;
        }
    }
    Status::Ok
}

/// The worst of the statuses (OK for none).
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: StatusRules = StatusRules {
        window: Duration::from_secs(60),
        min_observations: 3,
    };

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    /// Feeds (second, committed, lag) observations and evaluates at the last one.
    fn run(obs: &[(u64, Option<i64>, i64)], has_members: bool) -> Status {
        let mut h = PartitionHistory::default();
        for (s, c, l) in obs {
            h.observe(t(*s), *c, *l, RULES.window);
        }
        evaluate(&h, t(obs.last().unwrap().0), has_members, RULES)
    }

    #[test]
    fn ok_when_keeping_up() {
        let s = run(
            &[
                (0, Some(10), 5),
                (10, Some(20), 4),
                (20, Some(30), 6),
                (30, Some(40), 5),
            ],
            true,
        );
        assert_eq!(s, Status::Ok);
    }

    #[test]
    fn ok_when_caught_up_even_if_offset_unchanged() {
        let s = run(&[(0, Some(10), 0), (50, Some(10), 0), (100, Some(10), 0)], false);
        assert_eq!(s, Status::Ok);
    }

    #[test]
    fn ok_with_too_few_observations() {
        assert_eq!(run(&[(0, Some(10), 50), (100, Some(10), 60)], false), Status::Ok);
    }

    #[test]
    fn warn_when_lag_grows_while_committing() {
        let s = run(
            &[
                (0, Some(10), 5),
                (10, Some(12), 8),
                (20, Some(14), 8),
                (30, Some(16), 12),
            ],
            true,
        );
        assert_eq!(s, Status::Warn);
    }

    #[test]
    fn not_warn_when_lag_dips_inside_window() {
        let s = run(
            &[
                (0, Some(10), 5),
                (10, Some(12), 9),
                (20, Some(20), 3),
                (30, Some(22), 12),
            ],
            true,
        );
        assert_eq!(s, Status::Ok);
    }

    #[test]
    fn stall_when_members_present_but_offset_stuck_with_lag() {
        let s = run(
            &[
                (0, Some(10), 5),
                (30, Some(10), 8),
                (60, Some(10), 9),
                (70, Some(10), 9),
            ],
            true,
        );
        assert_eq!(s, Status::Stall);
    }

    #[test]
    fn stop_when_no_members_and_offset_stuck_with_lag() {
        let s = run(
            &[
                (0, Some(10), 5),
                (30, Some(10), 8),
                (60, Some(10), 9),
                (70, Some(10), 9),
            ],
            false,
        );
        assert_eq!(s, Status::Stop);
    }

    #[test]
    fn not_stopped_before_a_full_window_without_progress() {
        let s = run(
            &[(0, Some(5), 5), (30, Some(10), 8), (60, Some(10), 9), (80, Some(10), 9)],
            false,
        );
        // Offset changed at t=30; 50s < 60s window.
        assert_eq!(s, Status::Warn);
    }

    #[test]
    fn rewind_when_committed_offset_goes_back() {
        let s = run(&[(0, Some(100), 0), (10, Some(120), 0), (20, Some(50), 70)], true);
        assert_eq!(s, Status::Rewind);
    }

    #[test]
    fn rewind_ages_out_of_the_window() {
        let s = run(
            &[
                (0, Some(100), 0),
                (10, Some(50), 0),
                (80, Some(60), 0),
                (90, Some(70), 0),
                (100, Some(80), 0),
            ],
            true,
        );
        assert_eq!(s, Status::Ok);
    }

    #[test]
    fn commit_after_no_commit_is_not_rewind() {
        let s = run(&[(0, None, 10), (10, Some(5), 5), (20, Some(6), 4)], true);
        assert_eq!(s, Status::Ok);
    }

    #[test]
    fn group_status_is_worst_partition() {
        assert_eq!(worst([Status::Ok, Status::Warn, Status::Stall]), Status::Stall);
        assert_eq!(worst([Status::Stop, Status::Rewind]), Status::Rewind);
        assert_eq!(worst([]), Status::Ok);
    }

    #[test]
    fn history_is_pruned_to_the_window() {
        let mut h = PartitionHistory::default();
        for s in 0..1000 {
            h.observe(t(s), Some(s as i64), 1, RULES.window);
        }
        assert!(h.len() <= 62, "{}", h.len());
    }

    #[test]
    fn clock_going_backwards_is_ignored() {
        let mut h = PartitionHistory::default();
        h.observe(t(10), Some(5), 1, RULES.window);
        h.observe(t(5), Some(1), 1, RULES.window);
        assert_eq!(h.len(), 1);
    }
}
