//! The registry wire format and the sampling of record values (pure functions).
//!
//! Confluent-compatible serializers frame every value as a magic byte `0`, the schema id as a
//! 4-byte big-endian integer, then the encoded data. A value framed that way whose id the
//! registry knows was (in all likelihood) written with a registered schema; anything else was
//! not. Apicurio's own serializers frame with an 8-byte global id by default unless configured
//! for Confluent compatibility: such values count as `unframed` or `unknown_id`.

use std::collections::HashMap;

/// How one record value is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// A null value (a tombstone of a compacted topic): nothing to check.
    Tombstone,
    /// Not in the registry wire format.
    Unframed,
    /// Magic byte 0 and this schema id.
    Framed(u32),
}

/// Detects the wire format from the first bytes of a value (`None`: a null value).
pub fn framing(value: Option<&[u8]>) -> Framing {
    match value {
        None => Framing::Tombstone,
        Some([0, a, b, c, d, ..]) => Framing::Framed(u32::from_be_bytes([*a, *b, *c, *d])),
        Some(_) => Framing::Unframed,
    }
}

/// The outcome of a sampled record, the `framing` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Framed with an id the registry knows.
    Registered,
    /// Framed, but the registry does not know the id.
    UnknownId,
    /// Not framed.
    Unframed,
    /// A null value.
    Tombstone,
    /// Framed with an id not looked up yet (the per-poll look-up budget ran out).
    Unchecked,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Registered,
        Outcome::UnknownId,
        Outcome::Unframed,
        Outcome::Tombstone,
        Outcome::Unchecked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Registered => "registered",
            Outcome::UnknownId => "unknown_id",
            Outcome::Unframed => "unframed",
            Outcome::Tombstone => "tombstone",
            Outcome::Unchecked => "unchecked",
        }
    }
}

/// Sampled records of a topic by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleCounts {
    pub counts: [u64; 5],
}

impl SampleCounts {
    pub fn get(&self, o: Outcome) -> u64 {
        self.counts[o as usize]
    }

    /// Registered ÷ (registered + unknown id + unframed): tombstones carry no value and
    /// unchecked ids are not decided yet. `None` when no record counts.
    pub fn registered_ratio(&self) -> Option<f64> {
        let r = self.get(Outcome::Registered);
        let decided = r + self.get(Outcome::UnknownId) + self.get(Outcome::Unframed);
        (decided > 0).then(|| r as f64 / decided as f64)
    }
}

/// Counts the outcomes of sampled values. `known(id)` says whether the registry knows a schema
/// id: `Some(true)`/`Some(false)`, or `None` when not looked up yet.
pub fn classify<'a>(framings: impl Iterator<Item = &'a Framing>, known: impl Fn(u32) -> Option<bool>) -> SampleCounts {
    let mut c = SampleCounts::default();
    for f in framings {
        let o = match *f {
            Framing::Tombstone => Outcome::Tombstone,
            Framing::Unframed => Outcome::Unframed,
            Framing::Framed(id) => match known(id) {
                Some(true) => Outcome::Registered,
                Some(false) => Outcome::UnknownId,
                None => Outcome::Unchecked,
            },
        };
        c.counts[o as usize] += 1;
    }
    c
}

/// The offsets to read for the last `n` records of a topic: `n` is spread over the non-empty
/// partitions (rounded up, so about `n` and at most `n + partitions - 1` records), each read
/// from `max(log start, high watermark - share)` to the high watermark. Partitions whose
/// offsets are unknown are skipped. Input: (partition, log start, high watermark).
pub fn plan(partitions: &[(i32, Option<i64>, Option<i64>)], n: usize) -> Vec<(i32, i64, i64)> {
    let nonempty: Vec<(i32, i64, i64)> = partitions
        .iter()
        .filter_map(|(p, start, hw)| match (start, hw) {
            (Some(s), Some(h)) if h > s && *s >= 0 => Some((*p, *s, *h)),
            _ => None,
        })
        .collect();
    if nonempty.is_empty() || n == 0 {
        return Vec::new();
    }
    let share = n.div_ceil(nonempty.len()) as i64;
    nonempty.into_iter().map(|(p, s, h)| (p, s.max(h - share), h)).collect()
}

/// What is remembered of a schema id: whether the registry knows it, and when that was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdKnowledge {
    pub known: bool,
    pub checked_at: std::time::SystemTime,
}

/// Ids in `framings` that need a look-up: not known from the listings, never asked, or asked
/// with a negative answer longer than `recheck` ago (a schema may have been registered since).
/// Sorted, unique, at most `budget`.
pub fn ids_to_look_up<'a>(
    framings: impl Iterator<Item = &'a Framing>,
    listed: &std::collections::HashSet<u32>,
    cache: &HashMap<u32, IdKnowledge>,
    now: std::time::SystemTime,
    recheck: std::time::Duration,
    budget: usize,
) -> Vec<u32> {
    let mut ids: Vec<u32> = framings
        .filter_map(|f| match f {
            Framing::Framed(id) => Some(*id),
            _ => None,
        })
        .filter(|id| !listed.contains(id))
        .filter(|id| match cache.get(id) {
            None => true,
            Some(k) => !k.known && now.duration_since(k.checked_at).unwrap_or_default() >= recheck,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(budget);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::{Duration, SystemTime};

    #[test]
    fn framing_detection() {
        assert_eq!(framing(None), Framing::Tombstone);
        assert_eq!(framing(Some(&[0, 0, 0, 0, 7, 1, 2])), Framing::Framed(7));
        assert_eq!(framing(Some(&[0, 0, 0, 1, 0])), Framing::Framed(256));
        assert_eq!(framing(Some(&[0, 0xff, 0xff, 0xff, 0xff])), Framing::Framed(u32::MAX));
        // Too short for an id, wrong magic byte, JSON text, empty.
        assert_eq!(framing(Some(&[0, 0, 0, 7])), Framing::Unframed);
        assert_eq!(framing(Some(&[1, 0, 0, 0, 7])), Framing::Unframed);
        assert_eq!(framing(Some(b"{\"id\":1}")), Framing::Unframed);
        assert_eq!(framing(Some(&[])), Framing::Unframed);
    }

    #[test]
    fn classification_and_ratio() {
        let f = [
            Framing::Framed(1),
            Framing::Framed(1),
            Framing::Framed(2),
            Framing::Framed(3),
            Framing::Unframed,
            Framing::Tombstone,
        ];
        let known = |id: u32| match id {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        };
        let c = classify(f.iter(), known);
        assert_eq!(c.get(Outcome::Registered), 2);
        assert_eq!(c.get(Outcome::UnknownId), 1);
        assert_eq!(c.get(Outcome::Unchecked), 1);
        assert_eq!(c.get(Outcome::Unframed), 1);
        assert_eq!(c.get(Outcome::Tombstone), 1);
        assert_eq!(c.registered_ratio(), Some(0.5));
        assert_eq!(classify([Framing::Tombstone].iter(), known).registered_ratio(), None);
        assert_eq!(SampleCounts::default().registered_ratio(), None);
    }

    #[test]
    fn plan_spreads_n_over_nonempty_partitions() {
        let parts = [
            (0, Some(0), Some(100)),
            (1, Some(0), Some(3)),
            (2, Some(5), Some(5)), // empty
            (3, None, Some(9)),    // unknown log start
            (4, Some(90), Some(95)),
        ];
        // 10 over 3 non-empty partitions: 4 each, clipped at the log start.
        assert_eq!(plan(&parts, 10), vec![(0, 96, 100), (1, 0, 3), (4, 91, 95)]);
        assert_eq!(plan(&parts, 1), vec![(0, 99, 100), (1, 2, 3), (4, 94, 95)]);
        assert!(plan(&parts, 0).is_empty());
        assert!(plan(&[(0, Some(4), Some(4))], 10).is_empty());
    }

    #[test]
    fn id_lookups_are_bounded_and_cached() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let f = [
            Framing::Framed(5),
            Framing::Framed(4),
            Framing::Framed(4),
            Framing::Framed(3),
            Framing::Framed(2),
            Framing::Framed(1),
            Framing::Unframed,
        ];
        let listed: HashSet<u32> = [1].into();
        let mut cache = HashMap::new();
        cache.insert(
            2,
            IdKnowledge {
                known: true,
                checked_at: now - Duration::from_secs(9_000),
            },
        );
        cache.insert(
            3,
            IdKnowledge {
                known: false,
                checked_at: now - Duration::from_secs(10),
            },
        );
        cache.insert(
            5,
            IdKnowledge {
                known: false,
                checked_at: now - Duration::from_secs(600),
            },
        );
        let recheck = Duration::from_secs(300);
        // 1 listed, 2 known (never asked again), 3 negative but fresh; 4 new, 5 negative and due.
        assert_eq!(ids_to_look_up(f.iter(), &listed, &cache, now, recheck, 10), vec![4, 5]);
        assert_eq!(ids_to_look_up(f.iter(), &listed, &cache, now, recheck, 1), vec![4]);
    }
}
