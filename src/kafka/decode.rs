//! Pure decoding and scheduling helpers of the admin calls (no FFI): the consumer protocol's
//! assignment bytes, classic group states by name, and whether a coordinator request may still
//! start.

use std::time::Duration;

use super::{GroupState, TopicPartition};

/// A classic group state as DescribeGroups names it.
pub(super) fn classic_state(state: &str) -> GroupState {
    match state {
        "PreparingRebalance" => GroupState::PreparingRebalance,
        "CompletingRebalance" | "AwaitingSync" => GroupState::CompletingRebalance,
        "Stable" => GroupState::Stable,
        "Dead" => GroupState::Dead,
        "Empty" => GroupState::Empty,
        _ => GroupState::Unknown,
    }
}

/// Parses a member assignment of the classic `consumer` protocol (any version): int16 version,
/// then an array of (topic string, array of int32 partitions); user data after that is ignored.
/// `None` when the bytes are truncated.
pub(super) fn consumer_assignment(b: &[u8]) -> Option<Vec<TopicPartition>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take::<2>().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take::<4>().map(i32::from_be_bytes)
        }
        fn string(&mut self) -> Option<String> {
            let len = usize::try_from(self.i16()?).ok()?;
            let s = self.0.get(..len)?;
            self.0 = &self.0[len..];
            Some(String::from_utf8_lossy(s).into_owned())
        }
    }
    if b.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(b);
    r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let n = r.i32()?;
        for _ in 0..n.max(0) {
            out.push(TopicPartition::new(topic.clone(), r.i32()?));
        }
    }
    Some(out)
}

/// Whether a group-coordinator request (DescribeConsumerGroups, ListConsumerGroupOffsets) may
/// start with `left` until the caller's deadline, which becomes the request's admin deadline.
///
/// When a request is in flight to a hung group coordinator and librdkafka's admin deadline
/// expires before the connection's socket timeout, librdkafka releases the request's completion
/// handle twice and aborts the process (`rd_kafka_enq_once_del_source_return: Assertion
/// 'eonce->refcnt > 0'`). Callers pass a `min_request` longer than the socket timeout
/// (`context::socket_timeout`), so the socket timeout always fires first and the request fails
/// through its normal response path.
pub(super) fn may_start(left: Duration, min_request: Duration) -> bool {
    !left.is_zero() && left >= min_request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_assignments_parse() {
        // Version 1, two topics, trailing user data.
        let mut b = vec![0, 1, 0, 0, 0, 2];
        for (topic, parts) in [("ab", vec![0i32, 3]), ("c", vec![])] {
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(&(parts.len() as i32).to_be_bytes());
            for p in parts {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&[0, 0, 0, 2, 9, 9]);
        assert_eq!(
            consumer_assignment(&b),
            Some(vec![TopicPartition::new("ab", 0), TopicPartition::new("ab", 3)])
        );
        assert_eq!(consumer_assignment(&[]), Some(vec![]));
        assert_eq!(consumer_assignment(&b[..9]), None);
        assert_eq!(classic_state("CompletingRebalance"), GroupState::CompletingRebalance);
        assert_eq!(classic_state("Dead"), GroupState::Dead);
        assert_eq!(classic_state("Assigning"), GroupState::Unknown);
    }
}
