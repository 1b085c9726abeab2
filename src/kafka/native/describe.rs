//! DescribeGroups and ConsumerGroupDescribe, batched per coordinator: members, assignments and
//! state of each group, with coordinator moves retried like the other group reads.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::{ConsumerGroupDescribeRequest, DescribeGroupsRequest, GroupId};
use kafka_protocol::protocol::StrBytes;

use super::groups::{
    coordinators, forget, is_coordinator_error, Answer, CONSUMER_GROUP_DESCRIBE, COORDINATOR_RETRY_PAUSE,
    DESCRIBE_CHUNK, DESCRIBE_GROUPS, GROUP_ATTEMPTS, GROUP_ID_NOT_FOUND,
};
use super::meta::{join_all, ClusterState};
use super::pool::Pool;
use super::{error_name, NetError};
use crate::kafka::decode::{classic_state, consumer_assignment};
use crate::kafka::{GroupDescription, GroupMember, GroupState, GroupType, TopicPartition};

pub(crate) async fn describe_groups(
    pool: &Pool,
    state: &ClusterState,
    groups: &[String],
    deadline: Instant,
) -> Result<Vec<GroupDescription>, NetError> {
    let mut wanted: Vec<String> = groups.to_vec();
    wanted.sort();
    wanted.dedup();
    let mut done: BTreeMap<String, GroupDescription> = BTreeMap::new();
    for attempt in 0..GROUP_ATTEMPTS {
        if wanted.is_empty() || Instant::now() >= deadline {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(COORDINATOR_RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        let (by_coordinator, failed) = coordinators(pool, state, &wanted, deadline).await;
        for (g, reason) in failed {
            done.insert(g.clone(), failed_description(g, None, reason));
        }
        let types = ClusterState::lock(&state.group_types).clone();
        let asks = by_coordinator
            .into_iter()
            .map(|(id, gs)| describe_on(pool, id, gs, &types, deadline));
        let mut retry = Vec::new();
        for answers in join_all(asks).await {
            for (g, answer) in answers {
                match answer {
                    Answer::Done(d) => {
                        done.insert(g, d);
                    }
                    Answer::Moved(_) if attempt + 1 < GROUP_ATTEMPTS => retry.push(g),
                    Answer::Moved(reason) => {
                        done.insert(g.clone(), failed_description(g, None, reason));
                    }
                }
            }
        }
        forget(state, &retry);
        wanted = retry;
    }
    for g in wanted {
        done.entry(g.clone())
            .or_insert_with(|| failed_description(g, None, "not described in time".into()));
    }
    Ok(done.into_values().collect())
}

fn failed_description(group: String, coordinator: Option<i32>, reason: String) -> GroupDescription {
    GroupDescription {
        group,
        state: GroupState::Unknown,
        group_type: GroupType::Unknown,
        assignor: String::new(),
        coordinator,
        members: Vec::new(),
        error: Some(reason),
    }
}

/// Describes `groups` on coordinator `id`: KIP-848 groups with ConsumerGroupDescribe, classic
/// ones with DescribeGroups. A group of unknown type (not listed by this reader yet) is asked
/// with DescribeGroups first; a coordinator answers it for a KIP-848 group as for an unknown
/// group (dead, no members), so those are asked again with ConsumerGroupDescribe.
async fn describe_on(
    pool: &Pool,
    id: i32,
    groups: Vec<String>,
    types: &HashMap<String, GroupType>,
    deadline: Instant,
) -> Vec<(String, Answer<GroupDescription>)> {
    let (consumer, classic): (Vec<String>, Vec<String>) = groups
        .into_iter()
        .partition(|g| types.get(g) == Some(&GroupType::Consumer));
    let mut out = describe_chunks(pool, id, &classic, deadline, false).await;
    let unknown_dead: Vec<String> = out
        .iter()
        .filter(|(g, a)| {
            !types.contains_key(g)
                && matches!(a, Answer::Done(d) if d.state == GroupState::Dead && d.members.is_empty())
        })
        .map(|(g, _)| g.clone())
        .collect();
    let mut consumer_answers = describe_chunks(pool, id, &consumer, deadline, true).await;
    for (g, a) in describe_chunks(pool, id, &unknown_dead, deadline, true).await {
        if matches!(&a, Answer::Done(d) if d.state != GroupState::Dead && d.error.is_none()) {
            out.retain(|(name, _)| *name != g);
            consumer_answers.push((g, a));
        }
    }
    out.extend(consumer_answers);
    out
}

/// DescribeGroups (or ConsumerGroupDescribe when `consumer`) for `groups` in chunks.
async fn describe_chunks(
    pool: &Pool,
    id: i32,
    groups: &[String],
    deadline: Instant,
    consumer: bool,
) -> Vec<(String, Answer<GroupDescription>)> {
    let mut out = Vec::new();
    for chunk in groups.chunks(DESCRIBE_CHUNK) {
        let answers = if consumer {
            consumer_describe(pool, id, chunk, deadline).await
        } else {
            classic_describe(pool, id, chunk, deadline).await
        };
        match answers {
            Ok(answers) => out.extend(answers),
            Err(e) => out.extend(chunk.iter().map(|g| (g.clone(), Answer::Moved(e.to_string())))),
        }
    }
    out
}

async fn classic_describe(
    pool: &Pool,
    id: i32,
    groups: &[String],
    deadline: Instant,
) -> Result<Vec<(String, Answer<GroupDescription>)>, NetError> {
    let conn = pool.node(id, deadline).await?;
    let request = |_version: i16| {
        let mut r = DescribeGroupsRequest::default();
        r.groups = groups
            .iter()
            .map(|g| GroupId(StrBytes::from_string(g.clone())))
            .collect();
        r
    };
    let r = pool
        .call(conn, "DescribeGroups", DESCRIBE_GROUPS, request, deadline)
        .await?;
    Ok(r.groups
        .into_iter()
        .map(|g| {
            let name = g.group_id.0.to_string();
            if is_coordinator_error(g.error_code) {
                return (name, Answer::Moved(error_name(g.error_code)));
            }
            let is_consumer = g.protocol_type.as_str() == "consumer";
            let mut members: Vec<GroupMember> = g
                .members
                .iter()
                .map(|m| {
                    let mut assignment = if is_consumer {
                        consumer_assignment(&m.member_assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    assignment.sort();
                    GroupMember {
                        member_id: m.member_id.to_string(),
                        client_id: m.client_id.to_string(),
                        host: m.client_host.to_string(),
                        assignment,
                    }
                })
                .collect();
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            let d = GroupDescription {
                group: name.clone(),
                state: classic_state(g.group_state.as_str()),
                group_type: GroupType::Classic,
                assignor: g.protocol_data.to_string(),
                coordinator: Some(id),
                members,
                error: (g.error_code != 0 && g.error_code != GROUP_ID_NOT_FOUND).then(|| error_name(g.error_code)),
            };
            (name, Answer::Done(d))
        })
        .collect())
}

async fn consumer_describe(
    pool: &Pool,
    id: i32,
    groups: &[String],
    deadline: Instant,
) -> Result<Vec<(String, Answer<GroupDescription>)>, NetError> {
    let conn = pool.node(id, deadline).await?;
    let request = |_version: i16| {
        let mut r = ConsumerGroupDescribeRequest::default();
        r.group_ids = groups
            .iter()
            .map(|g| GroupId(StrBytes::from_string(g.clone())))
            .collect();
        r
    };
    let r = pool
        .call(
            conn,
            "ConsumerGroupDescribe",
            CONSUMER_GROUP_DESCRIBE,
            request,
            deadline,
        )
        .await?;
    Ok(r.groups
        .into_iter()
        .map(|g| {
            let name = g.group_id.0.to_string();
            if is_coordinator_error(g.error_code) {
                return (name, Answer::Moved(error_name(g.error_code)));
            }
            let mut members: Vec<GroupMember> = g
                .members
                .iter()
                .map(|m| {
                    let mut assignment: Vec<TopicPartition> = m
                        .assignment
                        .topic_partitions
                        .iter()
                        .flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(|p| TopicPartition::new(t.topic_name.0.to_string(), *p))
                        })
                        .collect();
                    assignment.sort();
                    GroupMember {
                        member_id: m.member_id.to_string(),
                        client_id: m.client_id.to_string(),
                        host: m.client_host.to_string(),
                        assignment,
                    }
                })
                .collect();
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            let d = GroupDescription {
                group: name.clone(),
                state: if g.error_code == GROUP_ID_NOT_FOUND {
                    GroupState::Dead
                } else {
                    classic_state(g.group_state.as_str())
                },
                group_type: GroupType::Consumer,
                assignor: g.assignor_name.to_string(),
                coordinator: Some(id),
                members,
                error: (g.error_code != 0 && g.error_code != GROUP_ID_NOT_FOUND).then(|| error_name(g.error_code)),
            };
            (name, Answer::Done(d))
        })
        .collect())
}
