//! Unit tests of the kafka_exporter mapping: which group partitions are reported and with what
//! current offset, lag and sums.

use super::*;
use crate::lag::{offset_lag, PartitionOffsets};
use crate::snapshot::{GroupPartitionView, GroupTopicView};

fn partition(id: i32, log_start: i64, hw: Option<i64>) -> PartitionView {
    PartitionView {
        id,
        leader: Some(1),
        preferred_leader: Some(1),
        replicas: 3,
        isr: 3,
        min_isr: Some(2),
        elr: None,
        last_known_elr: None,
        log_start: Some(log_start),
        high_watermark: hw,
        last_stable: hw,
        replay_window: None,
    }
}

fn topic(name: &str, partitions: Vec<PartitionView>) -> TopicView {
    TopicView {
        name: name.into(),
        partitions,
        settings: None,
        partition_changes: 0,
        last_partition_change: None,
    }
}

/// A group partition as the snapshot holds it, its lag computed the snapshot's way.
fn gp(partition: i32, committed: Option<i64>, offsets: Option<(i64, i64)>) -> GroupPartitionView {
    GroupPartitionView {
        partition,
        committed,
        assigned: false,
        lag: offsets.map(|(log_start, high_watermark)| {
            offset_lag(
                committed,
                PartitionOffsets {
                    log_start,
                    high_watermark,
                },
            )
        }),
        time_lag: None,
    }
}

fn group(topics: Vec<(&str, Vec<GroupPartitionView>)>) -> GroupView {
    GroupView {
        name: "billing".into(),
        state: crate::kafka::GroupState::Stable,
        group_type: crate::kafka::GroupType::Classic,
        assignor: String::new(),
        coordinator: Some(1),
        members: Vec::new(),
        status: None,
        topics: topics
            .into_iter()
            .map(|(t, partitions)| GroupTopicView {
                topic: t.into(),
                partitions,
                retention_ms: None,
            })
            .collect(),
    }
}

fn r(partition: i32, current_offset: i64, lag: Option<i64>) -> GroupPartitionRow {
    GroupPartitionRow {
        partition,
        current_offset,
        lag,
    }
}

#[test]
fn every_partition_of_a_committed_topic_is_reported_with_minus_one_without_a_commit() {
    let t = topic(
        "orders",
        vec![
            partition(0, 0, Some(100)),
            partition(1, 0, Some(50)),
            partition(2, 0, Some(7)),
        ],
    );
    let topics = HashMap::from([("orders", &t)]);
    // Committed on 0 and 1 only; partition 2 is not even in the group's view.
    let g = group(vec![(
        "orders",
        vec![gp(0, Some(40), Some((0, 100))), gp(1, Some(50), Some((0, 50)))],
    )]);
    let rows = group_rows(&g, &topics);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].group, rows[0].topic), ("billing", "orders"));
    assert_eq!(
        rows[0].partitions,
        vec![r(0, 40, Some(60)), r(1, 50, Some(0)), r(2, -1, Some(-1))]
    );
    // The lag sum leaves out partition 2; the offset sum adds its -1, as kafka_exporter does.
    assert_eq!(rows[0].lag_sum(), 60);
    assert_eq!(rows[0].current_offset_sum(), 89);
}

#[test]
fn topics_without_any_commit_are_left_out() {
    let t = topic("orders", vec![partition(0, 0, Some(100))]);
    let topics = HashMap::from([("orders", &t)]);
    // Assigned but never committed: kafka_exporter's OffsetFetch answers -1 everywhere.
    let g = group(vec![("orders", vec![gp(0, None, Some((0, 100)))])]);
    assert!(group_rows(&g, &topics).is_empty());
}

#[test]
fn lag_is_not_clamped_and_negative_commits_are_no_commit() {
    // A commit beyond the high watermark (the topic was recreated): negative lag, as reported.
    let t = topic("orders", vec![partition(0, 0, Some(10)), partition(1, 0, Some(10))]);
    let topics = HashMap::from([("orders", &t)]);
    let g = group(vec![(
        "orders",
        vec![gp(0, Some(25), Some((0, 10))), gp(1, Some(-1001), Some((0, 10)))],
    )]);
    let rows = group_rows(&g, &topics);
    assert_eq!(rows[0].partitions, vec![r(0, 25, Some(-15)), r(1, -1, Some(-1))]);
    assert_eq!(rows[0].lag_sum(), -15);
    assert_eq!(rows[0].current_offset_sum(), 24);
}

#[test]
fn unknown_high_watermark_leaves_the_lag_out() {
    let t = topic("orders", vec![partition(0, 0, None), partition(1, 0, None)]);
    let topics = HashMap::from([("orders", &t)]);
    let g = group(vec![("orders", vec![gp(0, Some(5), None)])]);
    let rows = group_rows(&g, &topics);
    assert_eq!(rows[0].partitions, vec![r(0, 5, None), r(1, -1, None)]);
    assert_eq!(rows[0].lag_sum(), 0);
}

#[test]
fn another_shards_topic_uses_the_groups_own_view() {
    // The topic is not in this shard's topics: only the partitions the group knows of, with
    // the lag the snapshot computed.
    let topics = HashMap::new();
    let g = group(vec![(
        "payments",
        vec![
            gp(0, Some(30), Some((0, 100))),
            gp(1, None, Some((0, 100))),
            gp(2, None, None),
        ],
    )]);
    let rows = group_rows(&g, &topics);
    assert_eq!(
        rows[0].partitions,
        vec![r(0, 30, Some(70)), r(1, -1, Some(-1)), r(2, -1, None)]
    );
}

#[test]
fn broker_addresses_bracket_ipv6_hosts() {
    assert_eq!(address("kafka-1.prod", 9092), "kafka-1.prod:9092");
    assert_eq!(address("::1", 9092), "[::1]:9092");
}
