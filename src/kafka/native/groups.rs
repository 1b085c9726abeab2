//! Group reads, batched per coordinator: ListGroups on every broker (each answers for the
//! groups it coordinates, which also tells where each group lives), one FindCoordinator for
//! the groups whose coordinator is not known, then DescribeGroups, ConsumerGroupDescribe and
//! OffsetFetch with many groups per request. An error of one group stays with that group.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;

use super::meta::{join_all, ClusterState};
use super::pool::Pool;
use super::{error_name, NetError};
use crate::kafka::decode::classic_state;
use crate::kafka::{GroupListing, GroupOffsets, GroupType, TopicPartition};

const LIST_GROUPS: (i16, i16) = (0, 5);
/// v4 is the first that takes many keys per request.
const FIND_COORDINATOR: (i16, i16) = (4, 6);
pub(super) const DESCRIBE_GROUPS: (i16, i16) = (0, 6);
pub(super) const CONSUMER_GROUP_DESCRIBE: (i16, i16) = (0, 1);
/// v8 is the first that takes many groups per request; v10 names topics by id only.
const OFFSET_FETCH: (i16, i16) = (8, 9);

/// Groups per OffsetFetch request. A group's answer is about 20 bytes a partition, so 100
/// groups of 1,000 committed partitions each stay near 2 MiB; the broker answers one request
/// of a connection at a time, so smaller requests would only add round trips.
pub(crate) const OFFSET_FETCH_CHUNK: usize = 100;
/// Groups per DescribeGroups or ConsumerGroupDescribe request. A described group is about
/// 100 bytes plus 100 a member and its assignment, so 1,000 groups of ten members stay near
/// 1 MiB.
pub(super) const DESCRIBE_CHUNK: usize = 1000;

/// Coordinator errors after which the coordinator is looked up again and the group retried.
const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub(super) const GROUP_ID_NOT_FOUND: i16 = 69;

pub(super) fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        NOT_COORDINATOR | COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE
    )
}

/// Pause before asking a coordinator again that is still loading its groups.
pub(super) const COORDINATOR_RETRY_PAUSE: Duration = Duration::from_millis(200);

fn group_type(name: &str) -> GroupType {
    match name.to_ascii_lowercase().as_str() {
        "classic" => GroupType::Classic,
        "consumer" => GroupType::Consumer,
        _ => GroupType::Unknown,
    }
}

/// Whether a listed group is a consumer group: the classic `consumer` protocol, a group that
/// only commits offsets (empty protocol type), or a KIP-848 group. Connect workers, share and
/// streams groups are not.
fn is_consumer_group(protocol_type: &str, group_type: &str) -> bool {
    match group_type.to_ascii_lowercase().as_str() {
        "" | "classic" => protocol_type.is_empty() || protocol_type == "consumer",
        "consumer" => true,
        _ => false,
    }
}

/// ListGroups for consumer groups: from v5 on, the broker filters by type (share and streams
/// groups stay out); older brokers list every group and [`is_consumer_group`] filters.
fn list_groups_request(version: i16) -> ListGroupsRequest {
    let mut r = ListGroupsRequest::default();
    if version >= 5 {
        r.types_filter = vec![
            StrBytes::from_static_str("classic"),
            StrBytes::from_static_str("consumer"),
        ];
    }
    r
}

pub(crate) async fn list_groups(
    pool: &Pool,
    state: &ClusterState,
    deadline: Instant,
) -> Result<Vec<GroupListing>, NetError> {
    let mut brokers = pool.broker_ids();
    if brokers.is_empty() {
        super::meta::describe_cluster(pool, deadline).await?;
        brokers = pool.broker_ids();
    }
    let asks = brokers.iter().map(|&id| async move {
        let conn = pool.node(id, deadline).await?;
        let r = pool
            .call(conn, "ListGroups", LIST_GROUPS, list_groups_request, deadline)
            .await?;
        if r.error_code != 0 {
            return Err(NetError::Protocol(format!(
                "ListGroups on broker {id}: {}",
                error_name(r.error_code)
            )));
        }
        Ok((id, r.groups))
    });
    let mut listings: BTreeMap<String, GroupListing> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut coordinators = HashMap::new();
    let mut types = HashMap::new();
    for answer in join_all(asks).await {
        match answer {
            Err(e) => failures.push(e),
            Ok((broker, groups)) => {
                for g in groups {
                    if !is_consumer_group(&g.protocol_type, &g.group_type) {
                        continue;
                    }
                    let name = g.group_id.0.to_string();
                    let kind = group_type(&g.group_type);
                    coordinators.insert(name.clone(), broker);
                    types.insert(name.clone(), kind);
                    listings.insert(
                        name.clone(),
                        GroupListing {
                            group: name,
                            state: classic_state(g.group_state.as_str()),
                            group_type: kind,
                            is_simple: g.protocol_type.is_empty(),
                        },
                    );
                }
            }
        }
    }
    if let (true, Some(e)) = (failures.len() == brokers.len(), failures.first()) {
        return Err(e.clone());
    }
    for e in &failures {
        tracing::debug!(cluster = pool.cluster.as_str(), "ListGroups: {e}");
    }
    ClusterState::lock(&state.coordinators).extend(coordinators);
    ClusterState::lock(&state.group_types).extend(types);
    Ok(listings.into_values().collect())
}

/// The coordinator of each group: from the cache, the rest from one FindCoordinator request.
/// Groups whose coordinator cannot be found are returned with the reason.
pub(super) async fn coordinators(
    pool: &Pool,
    state: &ClusterState,
    groups: &[String],
    deadline: Instant,
) -> (BTreeMap<i32, Vec<String>>, Vec<(String, String)>) {
    let mut by_coordinator: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    {
        let cache = ClusterState::lock(&state.coordinators);
        for g in groups {
            match cache.get(g) {
                Some(id) => by_coordinator.entry(*id).or_default().push(g.clone()),
                None => unknown.push(g.clone()),
            }
        }
    }
    let mut failed = Vec::new();
    if unknown.is_empty() {
        return (by_coordinator, failed);
    }
    match find_coordinators(pool, &unknown, deadline).await {
        Ok(found) => {
            let mut cache = ClusterState::lock(&state.coordinators);
            for (group, answer) in found {
                match answer {
                    Ok(id) => {
                        cache.insert(group.clone(), id);
                        by_coordinator.entry(id).or_default().push(group);
                    }
                    Err(reason) => failed.push((group, reason)),
                }
            }
        }
        Err(e) => failed.extend(unknown.into_iter().map(|g| (g, e.to_string()))),
    }
    (by_coordinator, failed)
}

/// FindCoordinator (v4+, many keys) for `groups`.
async fn find_coordinators(
    pool: &Pool,
    groups: &[String],
    deadline: Instant,
) -> Result<Vec<(String, Result<i32, String>)>, NetError> {
    let conn = pool.any(deadline).await?;
    let request = |_version: i16| {
        let mut r = FindCoordinatorRequest::default();
        r.key_type = 0; // GROUP
        r.coordinator_keys = groups.iter().map(|g| StrBytes::from_string(g.clone())).collect();
        r
    };
    let r = pool
        .call(conn, "FindCoordinator", FIND_COORDINATOR, request, deadline)
        .await?;
    Ok(r.coordinators
        .into_iter()
        .map(|c| {
            let answer = if c.error_code == 0 {
                Ok(c.node_id.0)
            } else {
                Err(format!("FindCoordinator: {}", error_name(c.error_code)))
            };
            (c.key.to_string(), answer)
        })
        .collect())
}

/// Forgets where `groups` live, after their coordinator refused them.
pub(super) fn forget(state: &ClusterState, groups: &[String]) {
    let mut cache = ClusterState::lock(&state.coordinators);
    for g in groups {
        cache.remove(g);
    }
}

/// Attempts per group: coordinators move or load, and each attempt looks them up again.
pub(super) const GROUP_ATTEMPTS: usize = 3;

/// A group's answer: final, or its coordinator refused it (moved, loading) with the reason.
pub(super) enum Answer<T> {
    Done(T),
    Moved(String),
}

/// Committed offsets of one group, or why they could not be read.
type Committed = Result<Vec<(TopicPartition, i64)>, String>;

pub(crate) async fn group_offsets(
    pool: &Pool,
    state: &ClusterState,
    groups: &[String],
    deadline: Instant,
) -> Result<Vec<GroupOffsets>, NetError> {
    let mut wanted: Vec<String> = groups.to_vec();
    wanted.sort();
    wanted.dedup();
    let mut done: HashMap<String, Committed> = HashMap::with_capacity(wanted.len());
    for attempt in 0..GROUP_ATTEMPTS {
        if wanted.is_empty() || Instant::now() >= deadline {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(COORDINATOR_RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        let (by_coordinator, failed) = coordinators(pool, state, &wanted, deadline).await;
        for (g, reason) in failed {
            done.insert(g, Err(reason));
        }
        let asks = by_coordinator.into_iter().flat_map(|(id, gs)| {
            gs.chunks(OFFSET_FETCH_CHUNK)
                .map(|chunk| offsets_on(pool, id, chunk.to_vec(), deadline))
                .collect::<Vec<_>>()
        });
        let mut retry = Vec::new();
        for answers in join_all(asks).await {
            for (g, answer) in answers {
                match answer {
                    Answer::Done(offsets) => {
                        done.insert(g, offsets);
                    }
                    Answer::Moved(_) if attempt + 1 < GROUP_ATTEMPTS => retry.push(g),
                    Answer::Moved(reason) => {
                        done.insert(g, Err(reason));
                    }
                }
            }
        }
        forget(state, &retry);
        wanted = retry;
    }
    Ok(groups
        .iter()
        .map(|g| GroupOffsets {
            group: g.clone(),
            offsets: done
                .get(g)
                .cloned()
                .unwrap_or_else(|| Err("committed offsets not read in time".into())),
        })
        .collect())
}

/// One OffsetFetch request for `groups` on coordinator `id`, all partitions of each group.
async fn offsets_on(pool: &Pool, id: i32, groups: Vec<String>, deadline: Instant) -> Vec<(String, Answer<Committed>)> {
    let fetch = async {
        let conn = pool.node(id, deadline).await?;
        let request = |_version: i16| {
            let mut r = OffsetFetchRequest::default();
            r.groups = groups
                .iter()
                .map(|g| {
                    let mut rg = OffsetFetchRequestGroup::default();
                    rg.group_id = GroupId(StrBytes::from_string(g.clone()));
                    rg.member_epoch = -1;
                    rg.topics = None;
                    rg
                })
                .collect();
            r.require_stable = false;
            r
        };
        pool.call(conn, "OffsetFetch", OFFSET_FETCH, request, deadline).await
    };
    let response = match fetch.await {
        Ok(r) => r,
        Err(e) => return groups.into_iter().map(|g| (g, Answer::Moved(e.to_string()))).collect(),
    };
    response
        .groups
        .into_iter()
        .map(|g| {
            let name = g.group_id.0.to_string();
            if is_coordinator_error(g.error_code) {
                return (name, Answer::Moved(error_name(g.error_code)));
            }
            if g.error_code != 0 {
                return (name, Answer::Done(Err(error_name(g.error_code))));
            }
            let mut offsets: Vec<(TopicPartition, i64)> = g
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                        .map(|p| {
                            (
                                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            )
                        })
                })
                .collect();
            offsets.sort();
            (name, Answer::Done(Ok(offsets)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_groups_are_told_from_other_groups() {
        assert!(is_consumer_group("consumer", "classic"));
        assert!(is_consumer_group("", ""));
        assert!(is_consumer_group("consumer", ""));
        assert!(is_consumer_group("consumer", "Consumer"));
        assert!(!is_consumer_group("connect", "classic"));
        assert!(!is_consumer_group("share", "share"));
        assert!(!is_consumer_group("streams", "streams"));
    }

    #[test]
    fn coordinator_errors_are_retried_others_are_final() {
        assert!(is_coordinator_error(NOT_COORDINATOR));
        assert!(is_coordinator_error(COORDINATOR_LOAD_IN_PROGRESS));
        assert!(!is_coordinator_error(GROUP_ID_NOT_FOUND));
        assert_eq!(group_type("consumer"), GroupType::Consumer);
        assert_eq!(group_type("Classic"), GroupType::Classic);
        assert_eq!(group_type("share"), GroupType::Unknown);
    }
}
