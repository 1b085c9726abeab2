//! Unit tests of the mappings and handles of the FFI layer.

use super::cluster::offset_spec;
use super::groups::{group_state, group_type};
use super::*;
use crate::kafka::{GroupState, GroupType, OffsetSpec};

#[test]
fn offset_specs_map_to_librdkafka_values_and_isolation() {
    use rd::rd_kafka_IsolationLevel_t::*;
    assert_eq!(
        offset_spec(OffsetSpec::Earliest),
        (-2, RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED)
    );
    assert_eq!(
        offset_spec(OffsetSpec::Latest),
        (-1, RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED)
    );
    assert_eq!(
        offset_spec(OffsetSpec::LatestCommitted),
        (-1, RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED)
    );
}

#[test]
fn group_states_map_one_to_one() {
    use rd::rd_kafka_consumer_group_state_t::*;
    let pairs = [
        (RD_KAFKA_CONSUMER_GROUP_STATE_UNKNOWN, GroupState::Unknown),
        (
            RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE,
            GroupState::PreparingRebalance,
        ),
        (
            RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE,
            GroupState::CompletingRebalance,
        ),
        (RD_KAFKA_CONSUMER_GROUP_STATE_STABLE, GroupState::Stable),
        (RD_KAFKA_CONSUMER_GROUP_STATE_DEAD, GroupState::Dead),
        (RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY, GroupState::Empty),
        (RD_KAFKA_CONSUMER_GROUP_STATE__CNT, GroupState::Unknown),
    ];
    for (rd_state, state) in pairs {
        assert_eq!(group_state(rd_state), state, "{rd_state:?}");
    }
    // Every exporter state is reachable.
    for state in GroupState::ALL {
        assert!(pairs.iter().any(|(_, s)| *s == state), "{state:?}");
    }
}

#[test]
fn group_types_map_one_to_one() {
    use rd::rd_kafka_consumer_group_type_t::*;
    assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC), GroupType::Classic);
    assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER), GroupType::Consumer);
    assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE_UNKNOWN), GroupType::Unknown);
    assert_eq!(group_type(RD_KAFKA_CONSUMER_GROUP_TYPE__CNT), GroupType::Unknown);
}

#[test]
fn error_codes_carry_their_name() {
    let msg = code_message(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    assert!(msg.contains("UNKNOWN_TOPIC_OR_PART"), "{msg}");
    assert!(msg.to_lowercase().contains("unknown topic"), "{msg}");
    assert_eq!(join_error(None, None, || "x".into()), "x");
    assert_eq!(
        join_error(Some("a (B)".into()), Some("B".into()), || "x".into()),
        "a (B)"
    );
    assert_eq!(join_error(Some("a".into()), Some("B".into()), || "x".into()), "a (B)");
}

#[test]
fn partition_lists_round_trip() {
    let mut list = PartitionList::new(1).unwrap();
    let topic = CString::new("t").unwrap();
    assert!(list.add(&topic, 3, -2));
    assert!(list.add(&topic, 4, 17));
    // SAFETY: the list is valid and unchanged while it is read.
    let entries = unsafe { read_partitions(list.0.as_ptr()) };
    let got: Vec<(TopicPartition, i64)> = entries.into_iter().map(|e| (e.tp, e.offset)).collect();
    assert_eq!(
        got,
        vec![(TopicPartition::new("t", 3), -2), (TopicPartition::new("t", 4), 17)]
    );
    // SAFETY: NULL is allowed.
    assert!(unsafe { read_partitions(std::ptr::null()) }.is_empty());
}

#[test]
fn nul_bytes_in_names_are_rejected() {
    assert!(cstring("op", "group id", "a\0b").is_err());
    assert!(cstring("op", "group id", "ab").is_ok());
}
