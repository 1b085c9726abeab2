//! Cluster, topic and offset reads: Metadata, DescribeConfigs in chunks, ListOffsets per
//! leader. Partitions whose leader moved are asked again after a metadata refresh, within the
//! call's deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_topic_partitions_request;
use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponsePartition;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, DescribeConfigsRequest, DescribeTopicPartitionsRequest, ListOffsetsRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::pool::Pool;
use super::{error_name, is_retriable, NetError};
use crate::kafka::{
    Broker, ClusterDescription, GroupType, OffsetSpec, PartitionMetadata, PartitionOffset, TopicConfig, TopicMetadata,
    TopicPartition,
};

/// What one read learns that a later one of the same cycle or the next cycle needs: partition
/// leaders (ListOffsets goes to them) and group coordinators and types (from ListGroups, which
/// every coordinator answers for its own groups).
#[derive(Debug, Default)]
pub(crate) struct ClusterState {
    pub(crate) leaders: Mutex<HashMap<TopicPartition, i32>>,
    pub(crate) coordinators: Mutex<HashMap<String, i32>>,
    pub(crate) group_types: Mutex<HashMap<String, GroupType>>,
}

impl ClusterState {
    pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const DESCRIBE_CONFIGS: (i16, i16) = (1, 4);
/// v2 is the first with an isolation level (read_committed); v9 the newest with the same fields.
const LIST_OFFSETS: (i16, i16) = (2, 9);
/// Topics per DescribeConfigs request: a topic's full configuration is about 4 KiB and the six
/// keys asked for (`model::TOPIC_CONFIG_KEYS`) a fraction of that, so a chunk stays well under
/// the frame limit (`frame::MAX_FRAME`) even from a broker that ignores the key filter, and
/// clusters of up to 2,000 topics need one request a cycle.
pub(crate) const DESCRIBE_CONFIGS_CHUNK: usize = 2000;

pub(crate) async fn describe_cluster(pool: &Pool, deadline: Instant) -> Result<ClusterDescription, NetError> {
    let r = pool.metadata(Some(Vec::new()), deadline).await?;
    let mut brokers: Vec<Broker> = r
        .brokers
        .iter()
        .map(|b| Broker {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: u16::try_from(b.port).unwrap_or(0),
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(ClusterDescription {
        cluster_id: r.cluster_id.map(|c| c.to_string()),
        controller_id: (r.controller_id.0 >= 0).then_some(r.controller_id.0),
        brokers,
    })
}

pub(crate) async fn topic_metadata(
    pool: &Pool,
    state: &ClusterState,
    deadline: Instant,
) -> Result<Vec<TopicMetadata>, NetError> {
    let mut topics = topics_of(&pool.metadata(None, deadline).await?);
    if elr_enabled(pool, deadline).await {
        add_elr(pool, &mut topics, deadline).await;
    }
    let mut leaders = ClusterState::lock(&state.leaders);
    leaders.clear();
    remember_leaders(&mut leaders, &topics);
    Ok(topics)
}

fn remember_leaders(leaders: &mut HashMap<TopicPartition, i32>, topics: &[TopicMetadata]) {
    for t in topics {
        for p in &t.partitions {
            match p.leader {
                Some(l) => leaders.insert(TopicPartition::new(t.name.clone(), p.id), l),
                None => leaders.remove(&TopicPartition::new(t.name.clone(), p.id)),
            };
        }
    }
}

/// Reads the leaders of `topics` again (after a leader moved, or for partitions not seen in
/// this process's last full metadata).
pub(super) async fn refresh_leaders(
    pool: &Pool,
    state: &ClusterState,
    topics: Vec<String>,
    deadline: Instant,
) -> Result<(), NetError> {
    let r = pool.metadata(Some(topics), deadline).await?;
    remember_leaders(&mut ClusterState::lock(&state.leaders), &topics_of(&r));
    Ok(())
}

/// The cluster feature that turns on eligible leader replicas (KIP-966).
const ELR_FEATURE: &str = "eligible.leader.replicas.version";
/// Partitions per DescribeTopicPartitions page: the broker's default cap
/// (`max.request.partition.size.limit`).
const DESCRIBE_TOPIC_PARTITIONS_PAGE: i32 = 2000;
/// Pages read per call at most: 10 million partitions, far beyond any cluster; it only bounds
/// the loop against a broker whose cursor never ends.
const MAX_PAGES: usize = 5000;

/// Whether the cluster keeps eligible leader replicas, which DescribeTopicPartitions reports
/// (Metadata does not).
async fn elr_enabled(pool: &Pool, deadline: Instant) -> bool {
    match pool.any(deadline).await {
        Ok(conn) => conn.feature(ELR_FEATURE) >= 1 && conn.version::<DescribeTopicPartitionsRequest>((0, 0)).is_some(),
        Err(_) => false,
    }
}

/// Fills in the ELR of `topics` (from Metadata). A partition whose ISR holds every replica has
/// an empty ELR and last known ELR (KIP-966 keeps ELR disjoint from the ISR and clears both
/// once a leader is elected cleanly), so only topics with a partition out of sync or without a
/// leader are asked, with DescribeTopicPartitions: a healthy cluster costs no request. When
/// that request fails, their ELR stays unknown (no series) and the cycle goes on.
async fn add_elr(pool: &Pool, topics: &mut [TopicMetadata], deadline: Instant) {
    let degraded: Vec<String> = topics
        .iter()
        .filter(|t| {
            t.partitions
                .iter()
                .any(|p| p.leader.is_none() || p.isr.len() < p.replicas.len())
        })
        .map(|t| t.name.clone())
        .collect();
    let described = if degraded.is_empty() {
        Ok(HashMap::new())
    } else {
        described_partitions(pool, &degraded, deadline).await
    };
    let described = described.unwrap_or_else(|e| {
        tracing::debug!(cluster = pool.cluster.as_str(), "DescribeTopicPartitions: {e}");
        HashMap::new()
    });
    apply_elr(topics, &described);
}

/// ELR by partition, as DescribeTopicPartitions reports it: (ELR, last known ELR).
type Described = HashMap<TopicPartition, (Vec<i32>, Vec<i32>)>;

/// Sets the ELR of each partition: as described, or empty for a partition in sync with a
/// leader, or unknown.
fn apply_elr(topics: &mut [TopicMetadata], described: &Described) {
    for t in topics.iter_mut() {
        for p in &mut t.partitions {
            let in_sync = p.leader.is_some() && p.isr.len() >= p.replicas.len();
            match described.get(&TopicPartition::new(t.name.clone(), p.id)) {
                Some((elr, last_known)) => {
                    p.elr = Some(elr.clone());
                    p.last_known_elr = Some(last_known.clone());
                }
                None if in_sync => {
                    p.elr = Some(Vec::new());
                    p.last_known_elr = Some(Vec::new());
                }
                None => {}
            }
        }
    }
}

/// The ELR and last known ELR of every partition of `names`, from DescribeTopicPartitions pages
/// of [`DESCRIBE_TOPIC_PARTITIONS_PAGE`] partitions.
async fn described_partitions(pool: &Pool, names: &[String], deadline: Instant) -> Result<Described, NetError> {
    let mut out = HashMap::new();
    let mut cursor: Option<(String, i32)> = None;
    for _ in 0..MAX_PAGES {
        let conn = pool.any(deadline).await?;
        let request = |_version: i16| {
            let mut r = DescribeTopicPartitionsRequest::default();
            r.topics = names
                .iter()
                .map(|n| {
                    let mut t = describe_topic_partitions_request::TopicRequest::default();
                    t.name = TopicName(StrBytes::from_string(n.clone()));
                    t
                })
                .collect();
            r.response_partition_limit = DESCRIBE_TOPIC_PARTITIONS_PAGE;
            r.cursor = cursor.as_ref().map(|(topic, partition)| {
                let mut c = describe_topic_partitions_request::Cursor::default();
                c.topic_name = TopicName(StrBytes::from_string(topic.clone()));
                c.partition_index = *partition;
                c
            });
            r
        };
        let page = pool
            .call(conn, "DescribeTopicPartitions", (0, 0), request, deadline)
            .await?;
        for t in page.topics.iter().filter(|t| t.error_code == 0) {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            for p in &t.partitions {
                let d = described_partition(p);
                let elr = (d.elr.unwrap_or_default(), d.last_known_elr.unwrap_or_default());
                out.insert(TopicPartition::new(name.clone(), p.partition_index), elr);
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some((c.topic_name.0.to_string(), c.partition_index)),
            None => break,
        }
    }
    Ok(out)
}

fn described_partition(p: &DescribeTopicPartitionsResponsePartition) -> PartitionMetadata {
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    PartitionMetadata {
        id: p.partition_index,
        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
        replicas: ids(&p.replica_nodes),
        isr: ids(&p.isr_nodes),
        elr: Some(p.eligible_leader_replicas.as_deref().map(ids).unwrap_or_default()),
        last_known_elr: Some(p.last_known_elr.as_deref().map(ids).unwrap_or_default()),
    }
}

/// The topics of a Metadata response, sorted. A topic-level error (being deleted, not
/// authorized) means the entry holds no usable partitions; it is left out.
pub(crate) fn topics_of(r: &MetadataResponse) -> Vec<TopicMetadata> {
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    let mut topics: Vec<TopicMetadata> = r
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| {
            let name = t.name.as_ref()?.0.to_string();
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    id: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                    elr: None,
                    last_known_elr: None,
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            Some(TopicMetadata { name, partitions })
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics
}

pub(crate) async fn topic_configs(
    pool: &Pool,
    topics: &[String],
    deadline: Instant,
) -> Result<Vec<TopicConfig>, NetError> {
    let mut out = Vec::with_capacity(topics.len());
    for chunk in topics.chunks(DESCRIBE_CONFIGS_CHUNK) {
        let conn = pool.any(deadline).await?;
        let request = |_version: i16| {
            let mut r = DescribeConfigsRequest::default();
            r.resources = chunk
                .iter()
                .map(|t| {
                    let mut res = DescribeConfigsResource::default();
                    res.resource_type = 2; // TOPIC
                    res.resource_name = StrBytes::from_string(t.clone());
                    res.configuration_keys = Some(
                        crate::model::TOPIC_CONFIG_KEYS
                            .iter()
                            .map(|k| StrBytes::from_static_str(k))
                            .collect(),
                    );
                    res
                })
                .collect();
            r
        };
        let response = pool
            .call(conn, "DescribeConfigs", DESCRIBE_CONFIGS, request, deadline)
            .await?;
        for result in response.results {
            if result.error_code != 0 {
                tracing::debug!(
                    cluster = pool.cluster.as_str(),
                    topic = result.resource_name.as_str(),
                    "DescribeConfigs: {}",
                    error_name(result.error_code)
                );
                continue;
            }
            let configs: BTreeMap<String, String> = result
                .configs
                .into_iter()
                .filter(|c| !c.is_sensitive)
                .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                .collect();
            out.push((result.resource_name.to_string(), configs));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The timestamp ListOffsets takes for `spec`, and its isolation level.
fn offset_query(spec: OffsetSpec) -> (i64, i8) {
    match spec {
        OffsetSpec::Earliest => (-2, 0),
        OffsetSpec::Latest => (-1, 0),
        OffsetSpec::LatestCommitted => (-1, 1),
    }
}

/// Attempts per partition: the first, and after each leader move a metadata refresh and one
/// more.
const LIST_OFFSETS_ATTEMPTS: usize = 3;

pub(crate) async fn list_offsets(
    pool: &Pool,
    state: &ClusterState,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
    deadline: Instant,
) -> Result<Vec<PartitionOffset>, NetError> {
    let mut wanted: Vec<TopicPartition> = partitions.to_vec();
    wanted.sort();
    wanted.dedup();
    let mut done: BTreeMap<TopicPartition, Result<i64, String>> = BTreeMap::new();
    let mut last_failure: Option<NetError> = None;
    for attempt in 0..LIST_OFFSETS_ATTEMPTS {
        if wanted.is_empty() || Instant::now() >= deadline {
            break;
        }
        let (mut by_leader, mut leaderless) = group_by_leader(state, &wanted);
        if attempt > 0 || !leaderless.is_empty() {
            let mut topics: Vec<String> = (if attempt > 0 { &wanted } else { &leaderless })
                .iter()
                .map(|tp| tp.topic.clone())
                .collect();
            topics.dedup();
            refresh_leaders(pool, state, topics, deadline).await?;
            (by_leader, leaderless) = group_by_leader(state, &wanted);
        }
        for tp in leaderless {
            done.insert(tp, Err("leader not available".into()));
        }
        let mut retry = Vec::new();
        let requests = by_leader
            .into_iter()
            .map(|(leader, tps)| async move { (leader_offsets(pool, leader, &tps, spec, deadline).await, tps) });
        for (result, tps) in join_all(requests).await {
            match result {
                Ok(answers) => {
                    for (tp, answer) in answers {
                        match answer {
                            Err(code) if is_retriable(code) && attempt + 1 < LIST_OFFSETS_ATTEMPTS => retry.push(tp),
                            Err(code) => {
                                done.insert(tp, Err(error_name(code)));
                            }
                            Ok(offset) => {
                                done.insert(tp, Ok(offset));
                            }
                        }
                    }
                }
                Err(e) => {
                    for tp in tps {
                        done.insert(tp, Err(e.to_string()));
                    }
                    last_failure = Some(e);
                }
            }
        }
        wanted = retry;
    }
    for tp in wanted {
        done.entry(tp)
            .or_insert_with(|| Err("leader moved and was not found again in time".into()));
    }
    if !done.is_empty() && done.values().all(Result::is_err) {
        if let Some(e) = last_failure {
            return Err(e);
        }
    }
    Ok(done
        .into_iter()
        .map(|(tp, offset)| PartitionOffset { tp, offset })
        .collect())
}

type ByLeader = BTreeMap<i32, Vec<TopicPartition>>;

fn group_by_leader(state: &ClusterState, wanted: &[TopicPartition]) -> (ByLeader, Vec<TopicPartition>) {
    let leaders = ClusterState::lock(&state.leaders);
    let mut by_leader: ByLeader = BTreeMap::new();
    let mut leaderless = Vec::new();
    for tp in wanted {
        match leaders.get(tp) {
            Some(l) => by_leader.entry(*l).or_default().push(tp.clone()),
            None => leaderless.push(tp.clone()),
        }
    }
    (by_leader, leaderless)
}

/// One ListOffsets request to `leader` for `tps`: each partition's offset or error code.
async fn leader_offsets(
    pool: &Pool,
    leader: i32,
    tps: &[TopicPartition],
    spec: OffsetSpec,
    deadline: Instant,
) -> Result<Vec<(TopicPartition, Result<i64, i16>)>, NetError> {
    let conn = pool.node(leader, deadline).await?;
    let (timestamp, isolation) = offset_query(spec);
    let request = |_version: i16| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in tps {
            by_topic.entry(tp.topic.as_str()).or_default().push(tp.partition);
        }
        let mut r = ListOffsetsRequest::default();
        r.replica_id = BrokerId(-1);
        r.isolation_level = isolation;
        r.topics = by_topic
            .into_iter()
            .map(|(topic, parts)| {
                let mut t = ListOffsetsTopic::default();
                t.name = TopicName(StrBytes::from_string(topic.to_string()));
                t.partitions = parts
                    .into_iter()
                    .map(|p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = p;
                        lp.current_leader_epoch = -1;
                        lp.timestamp = timestamp;
                        lp
                    })
                    .collect();
                t
            })
            .collect();
        r
    };
    let response = pool.call(conn, "ListOffsets", LIST_OFFSETS, request, deadline).await?;
    let mut out = Vec::with_capacity(tps.len());
    for t in response.topics {
        for p in t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            out.push((
                tp,
                if p.error_code == 0 {
                    Ok(p.offset)
                } else {
                    Err(p.error_code)
                },
            ));
        }
    }
    Ok(out)
}

/// Runs futures concurrently on the current task and returns their outputs in order.
pub(crate) async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(id: i32, leader: Option<i32>, isr: Vec<i32>) -> PartitionMetadata {
        PartitionMetadata {
            id,
            leader,
            replicas: vec![1, 2, 3],
            isr,
            elr: None,
            last_known_elr: None,
        }
    }

    #[test]
    fn elr_is_empty_in_sync_described_out_of_sync_and_unknown_otherwise() {
        let mut topics = vec![TopicMetadata {
            name: "t".into(),
            partitions: vec![
                partition(0, Some(1), vec![1, 2, 3]),
                partition(1, Some(1), vec![1]),
                partition(2, None, vec![]),
                partition(3, Some(2), vec![2]),
            ],
        }];
        let described = Described::from([
            (TopicPartition::new("t", 1), (vec![2], vec![])),
            (TopicPartition::new("t", 2), (vec![], vec![3])),
        ]);
        apply_elr(&mut topics, &described);
        let got: Vec<_> = topics[0]
            .partitions
            .iter()
            .map(|p| (p.elr.clone(), p.last_known_elr.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(vec![]), Some(vec![])),
                (Some(vec![2]), Some(vec![])),
                (Some(vec![]), Some(vec![3])),
                (None, None),
            ]
        );
    }
}
