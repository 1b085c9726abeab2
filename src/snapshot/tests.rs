//! Unit tests of the fold from raw stage results to snapshots.

use super::*;
use crate::config::{ClusterConfig, Config};
use crate::kafka::{
    Broker, GroupDescription, GroupListing, GroupOffsets, PartitionMetadata, PartitionOffset, RecordAt, SourceError,
    TopicMetadata, TopicPartition,
};
use std::path::Path;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn cfg(extra: &str) -> ClusterConfig {
    let text = format!("clusters:\n  - name: c\n    bootstrap_servers: ['k:1']\n    interval: 10s\n{extra}");
    Config::parse(Path::new("t.yml"), &text).unwrap().clusters.remove(0)
}

fn ok<T>(v: T) -> StageOutcome<T> {
    StageOutcome {
        duration: Duration::from_millis(5),
        result: Ok(v),
    }
}

fn err<T>(op: &'static str) -> StageOutcome<T> {
    StageOutcome {
        duration: Duration::from_millis(5),
        result: Err(SourceError::new(op, "broker down")),
    }
}

fn tp(t: &str, p: i32) -> TopicPartition {
    TopicPartition::new(t, p)
}

fn meta(name: &str, parts: &[(Option<i32>, &[i32], &[i32])]) -> TopicMetadata {
    TopicMetadata {
        name: name.into(),
        partitions: parts
            .iter()
            .enumerate()
            .map(|(i, (leader, replicas, isr))| PartitionMetadata {
                id: i as i32,
                leader: *leader,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                elr: None,
                last_known_elr: None,
            })
            .collect(),
    }
}

fn po(t: &str, p: i32, o: i64) -> PartitionOffset {
    PartitionOffset {
        tp: tp(t, p),
        offset: Ok(o),
    }
}

fn listing(g: &str, state: GroupState) -> GroupListing {
    GroupListing {
        group: g.into(),
        state,
        group_type: GroupType::Classic,
        is_simple: false,
    }
}

fn description(g: &str, members: Vec<GroupMember>) -> GroupDescription {
    GroupDescription {
        group: g.into(),
        state: if members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        },
        group_type: GroupType::Classic,
        assignor: "range".into(),
        coordinator: Some(1),
        members,
        error: None,
    }
}

fn member(id: &str, assignment: Vec<TopicPartition>) -> GroupMember {
    GroupMember {
        member_id: id.into(),
        client_id: "app".into(),
        host: "/10.0.0.1".into(),
        assignment,
    }
}

/// A healthy cycle: topic `orders` with 3 partitions (RF 3, min ISR 2), one partition with a
/// shrunk ISR; group `app` committed on p0 and p1, p2 assigned without commit.
fn io(at: SystemTime, hw: [i64; 3], committed: &[(i32, i64)]) -> IoOutcome {
    let mut settings = BTreeMap::new();
    settings.insert("min.insync.replicas".to_string(), "2".to_string());
    settings.insert("retention.ms".to_string(), "3600000".to_string());
    settings.insert("cleanup.policy".to_string(), "delete".to_string());
    IoOutcome {
        at,
        cluster: ok(ClusterDescription {
            cluster_id: Some("id".into()),
            controller_id: Some(1),
            brokers: vec![Broker {
                id: 1,
                host: "h".into(),
                port: 9092,
                rack: None,
            }],
        }),
        topics: ok(vec![
            meta(
                "orders",
                &[
                    (Some(1), &[1, 2, 3], &[1, 2, 3]),
                    (Some(2), &[1, 2, 3], &[2]),
                    (None, &[3, 1, 2], &[]),
                ],
            ),
            meta("__consumer_offsets", &[(Some(1), &[1], &[1])]),
        ]),
        configs: Some(ok(vec![("orders".to_string(), settings)])),
        offsets: Some(ok(OffsetsRaw {
            earliest: (0..3).map(|p| po("orders", p, 10)).collect(),
            latest: (0..3).map(|p| po("orders", p, hw[p as usize])).collect(),
            last_stable: (0..3)
                .map(|p| po("orders", p, hw[p as usize] - if p == 1 { 4 } else { 0 }))
                .collect(),
        })),
        groups: ok((
            vec![
                listing("app", GroupState::Stable),
                listing("ignored-group", GroupState::Empty),
            ],
            vec![description(
                "app",
                vec![member("m1", vec![tp("orders", 0), tp("orders", 1), tp("orders", 2)])],
            )],
        )),
        group_offsets: Some(ok(vec![GroupOffsets {
            group: "app".into(),
            offsets: Ok(committed.iter().map(|(p, o)| (tp("orders", *p), *o)).collect()),
        }])),
    }
}

fn run(memory: &mut Memory, cfg: &ClusterConfig, io: IoOutcome) -> ClusterSnapshot {
    let at = io.at;
    let mut ok = memory.fold_io(io, cfg);
    ok &= memory.fold_records(self::ok(Vec::new()), 0, at);
    ok &= memory.fold_replay_reads(self::ok(Vec::new()), 0, at);
    memory.snapshot(
        cfg,
        &crate::policy::Policy::builtin(),
        at,
        Duration::from_millis(20),
        ok,
    )
}

const FILTERS: &str = "    topics: {deny: ['__.*']}\n    groups: {deny: ['ignored-.*']}\n";

#[test]
fn partition_health_and_offsets() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let s = run(&mut m, &cfg, io(t(0), [100, 200, 300], &[(0, 40), (1, 200)]));
    let topics = s.topics.as_ref().unwrap();
    assert_eq!(topics.len(), 1, "internal topic filtered out");
    let p = &topics[0].partitions;
    assert!(!p[0].under_replicated() && p[0].under_min_isr() == Some(false) && p[0].leader_is_preferred());
    assert!(p[1].under_replicated() && p[1].under_min_isr() == Some(true) && !p[1].leader_is_preferred());
    assert!(p[2].offline() && !p[2].leader_is_preferred());
    assert_eq!(
        (p[1].log_start, p[1].high_watermark, p[1].last_stable),
        (Some(10), Some(200), Some(196))
    );
    assert_eq!(p[1].open_transaction_gap(), Some(4));
    assert_eq!(
        topics[0].settings.as_ref().unwrap().time_retention_ms(),
        Some(3_600_000)
    );
}

#[test]
fn group_lag_sums_maxima_and_uncommitted_partitions() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let s = run(&mut m, &cfg, io(t(0), [100, 200, 300], &[(0, 40), (1, 200)]));
    let groups = s.groups.as_ref().unwrap();
    assert_eq!(groups.len(), 1, "group filter applies");
    let g = &groups[0];
    assert_eq!(
        (g.name.as_str(), g.members.len(), g.state),
        ("app", 1, GroupState::Stable)
    );
    let topic = &g.topics[0];
    let lags: Vec<(i32, Option<i64>, i64, bool)> = topic
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed, p.lag.unwrap().lag, p.assigned))
        .collect();
    // p2 is assigned but never committed: measured from log start 10.
    assert_eq!(
        lags,
        vec![(0, Some(40), 60, true), (1, Some(200), 0, true), (2, None, 290, true)]
    );
    assert_eq!(topic.lag_sum(), Some(350));
    assert_eq!(topic.lag_max(), Some(290));
    assert_eq!(topic.uncommitted(), 1);
    assert_eq!(topic.lost_sum(), Some(0));
    // p1 is caught up: time lag 0 without any read; the others have no read and one history
    // sample above their position: a lower bound of 0 s at the first observation.
    assert_eq!(topic.partitions[1].time_lag, Some((0.0, TimeLagMethod::CaughtUp)));
    assert_eq!(topic.partitions[0].time_lag.unwrap().1, TimeLagMethod::LowerBound);
}

#[test]
fn record_reads_feed_time_lag_and_cache_is_evicted() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let io0 = io(t(100), [100, 200, 300], &[(0, 40), (1, 200)]);
    m.fold_io(io0, &cfg);
    let wanted = m.reads_needed(10);
    // Most lagging first: p2 from log start 10 (lag 290), then p0 at 40 (lag 60).
    assert_eq!(wanted, vec![(tp("orders", 2), 10), (tp("orders", 0), 40)]);
    assert_eq!(m.reads_needed(1).len(), 1, "capped");
    let records = vec![
        RecordAt {
            tp: tp("orders", 0),
            requested: 40,
            offset: 40,
            timestamp_ms: 1_700_000_000_000 + 40_000,
        },
        RecordAt {
            tp: tp("orders", 2),
            requested: 10,
            offset: 11,
            timestamp_ms: 1_700_000_000_000,
        },
    ];
    assert!(m.fold_records(ok(records), 2, t(100)));
    let s = m.snapshot(&cfg, &crate::policy::Policy::builtin(), t(100), Duration::ZERO, true);
    let topic = &s.groups.as_ref().unwrap()[0].topics[0];
    assert_eq!(topic.partitions[0].time_lag, Some((60.0, TimeLagMethod::Record)));
    assert_eq!(topic.partitions[2].time_lag, Some((100.0, TimeLagMethod::Record)));
    assert_eq!(topic.time_lag_max(), Some(100.0));
    assert_eq!(topic.retention_usage(), Some(100.0 / 3600.0));
    assert!(m.reads_needed(10).is_empty(), "cached");
    assert_eq!(s.record_cache_entries, 2);

    // The group commits p0 further: the old cache entry is evicted, the new position is read.
    let s2 = run(&mut m, &cfg, io(t(110), [100, 200, 300], &[(0, 90), (1, 200)]));
    assert_eq!(s2.record_cache_entries, 1);
    assert_eq!(m.reads_needed(10), vec![(tp("orders", 0), 90)]);
}

#[test]
fn committed_below_log_start_reports_lost_records() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let s = run(&mut m, &cfg, io(t(0), [100, 200, 300], &[(0, 3), (1, 200), (2, 300)]));
    let topic = &s.groups.as_ref().unwrap()[0].topics[0];
    assert_eq!(topic.lost_sum(), Some(7), "log start 10 − committed 3");
}

#[test]
fn failed_stage_keeps_data_until_max_staleness() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let s = run(&mut m, &cfg, io(t(0), [100, 200, 300], &[(0, 40)]));
    assert!(s.up && s.ready());
    let mut failing = io(t(10), [100, 200, 300], &[(0, 40)]);
    failing.offsets = Some(err("ListOffsets"));
    failing.group_offsets = Some(err("ListConsumerGroupOffsets"));
    let s = run(&mut m, &cfg, failing);
    assert!(!s.up && s.ready());
    assert_eq!(s.data_at[&Stage::Offsets], t(0), "stale offsets still served");
    assert_eq!(s.data_at[&Stage::Topics], t(10));
    assert_eq!(s.stages[&Stage::Offsets].errors_total, 1);
    assert_eq!(s.stages[&Stage::Cluster].errors_total, 0);
    assert!(s.groups.as_ref().unwrap()[0].topics[0].partitions[0].lag.is_some());

    // Past max_staleness (5 × 10s) the stale data is dropped.
    let mut failing = io(t(51), [100, 200, 300], &[(0, 40)]);
    failing.offsets = Some(err("ListOffsets"));
    let s = run(&mut m, &cfg, failing);
    assert!(!s.data_at.contains_key(&Stage::Offsets));
    let p = &s.topics.as_ref().unwrap()[0].partitions[0];
    assert_eq!(p.high_watermark, None);
    assert!(s.groups.as_ref().unwrap()[0].topics[0].partitions[0].lag.is_none());
}

#[test]
fn skipped_stage_is_not_up_but_not_an_error() {
    let cfg = cfg("");
    let mut m = Memory::default();
    let mut first = io(t(0), [1, 1, 1], &[]);
    first.topics = err("Metadata");
    first.configs = None;
    first.offsets = None;
    let s = run(&mut m, &cfg, first);
    assert!(!s.up && s.topics.is_none());
    assert_eq!(s.stages[&Stage::Offsets].errors_total, 0);
    assert_eq!(s.stages[&Stage::Topics].errors_total, 1);
}

#[test]
fn stopped_group_becomes_stop_after_window() {
    let cfg = cfg("    lag: {status_window: 1m}\n");
    let mut m = Memory::default();
    let mut last = None;
    for i in 0..8u64 {
        let mut cycle = io(
            t(i * 10),
            [100 + i as i64 * 10, 200, 300],
            &[(0, 40), (1, 200), (2, 300)],
        );
        // The group has no members: nobody consumes, the offset of p0 stays at 40.
        cycle.groups = ok((
            vec![listing("app", GroupState::Empty)],
            vec![description("app", vec![])],
        ));
        last = Some(run(&mut m, &cfg, cycle));
    }
    let s = last.unwrap();
    assert_eq!(s.groups.as_ref().unwrap()[0].status, Some(Status::Stop));
}

#[test]
fn vanished_group_and_topic_disappear() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    run(&mut m, &cfg, io(t(0), [100, 200, 300], &[(0, 40)]));
    let mut next = io(t(10), [100, 200, 300], &[]);
    next.topics = ok(vec![]);
    next.groups = ok((vec![], vec![]));
    next.group_offsets = Some(ok(vec![]));
    let s = run(&mut m, &cfg, next);
    assert!(s.topics.as_ref().unwrap().is_empty());
    assert!(s.groups.as_ref().unwrap().is_empty());
    assert!(
        m.status_history.is_empty(),
        "histories of vanished groups are forgotten"
    );
}

#[test]
fn group_offsets_error_for_one_group_leaves_its_status_unknown() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let mut cycle = io(t(0), [100, 200, 300], &[(0, 40)]);
    cycle.group_offsets = Some(ok(vec![GroupOffsets {
        group: "app".into(),
        offsets: Err("COORDINATOR_NOT_AVAILABLE".into()),
    }]));
    let s = run(&mut m, &cfg, cycle);
    let g = &s.groups.as_ref().unwrap()[0];
    assert_eq!(g.status, None);
    // Assigned partitions are still measured from the log start.
    assert_eq!(g.topics[0].uncommitted(), 3);
}

#[test]
fn partition_level_offset_errors_are_counted_and_their_offsets_withdrawn() {
    let cfg = cfg(FILTERS);
    let mut m = Memory::default();
    let s = run(&mut m, &cfg, io(t(0), [100, 200, 300], &[(0, 40)]));
    assert_eq!(s.partition_offset_errors, 0);
    let mut next = io(t(10), [110, 210, 310], &[(0, 40)]);
    // The leader of partition 1 does not answer: its three requests fail, the others succeed.
    if let Some(o) = next.offsets.as_mut() {
        let raw = o.result.as_mut().unwrap();
        for list in [&mut raw.earliest, &mut raw.latest, &mut raw.last_stable] {
            list[1].offset = Err("Local: Timed out".into());
        }
    }
    let s = run(&mut m, &cfg, next);
    assert_eq!(s.partition_offset_errors, 1);
    let p = &s.topics.as_ref().unwrap()[0].partitions;
    assert_eq!(p[0].high_watermark, Some(110));
    assert_eq!(p[1].high_watermark, None, "not the value of the previous cycle");
    let s = run(&mut m, &cfg, io(t(20), [120, 220, 320], &[(0, 40)]));
    assert_eq!(s.partition_offset_errors, 0);
    assert_eq!(s.topics.as_ref().unwrap()[0].partitions[1].high_watermark, Some(220));
}

#[test]
fn leaders_are_counted_per_broker_in_id_order() {
    assert_eq!(
        super::leaders_per_broker([3, 1, 3, 2, 3].into_iter()),
        vec![(1, 1), (2, 1), (3, 3)]
    );
    assert!(super::leaders_per_broker(std::iter::empty()).is_empty());
}
