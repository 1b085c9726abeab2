//! Admin calls about consumer groups: listing, describing (KIP-848 and classic groups) and
//! their committed offsets.

use std::collections::BTreeSet;
use std::ffi::{c_char, CString};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;

use super::*;
use crate::kafka::decode::{classic_state, consumer_assignment, may_start};
use crate::kafka::{
    GroupDescription, GroupListing, GroupMember, GroupOffsets, GroupState, GroupType, SourceError, TopicPartition,
};

pub(super) fn group_state(state: rd::rd_kafka_consumer_group_state_t) -> GroupState {
    use rd::rd_kafka_consumer_group_state_t as S;
    match state {
        S::RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE => GroupState::PreparingRebalance,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE => GroupState::CompletingRebalance,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_STABLE => GroupState::Stable,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_DEAD => GroupState::Dead,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY => GroupState::Empty,
        // KIP-848 groups also report `Assigning` and `Reconciling`, which librdkafka maps to
        // UNKNOWN.
        S::RD_KAFKA_CONSUMER_GROUP_STATE_UNKNOWN | S::RD_KAFKA_CONSUMER_GROUP_STATE__CNT => GroupState::Unknown,
    }
}

pub(super) fn group_type(t: rd::rd_kafka_consumer_group_type_t) -> GroupType {
    use rd::rd_kafka_consumer_group_type_t as T;
    match t {
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => GroupType::Classic,
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => GroupType::Consumer,
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_UNKNOWN | T::RD_KAFKA_CONSUMER_GROUP_TYPE__CNT => GroupType::Unknown,
    }
}

/// ListConsumerGroups: one ListGroups request to every broker. Returns the valid listings
/// (sorted by group) and the per-broker errors. No state or type filter is set, which means
/// every state and every type (classic and KIP-848 consumer groups). librdkafka itself drops
/// groups whose protocol type is neither empty nor `consumer` (e.g. Kafka Connect workers).
pub(in crate::kafka) fn list_groups(
    client: ClientRef<'_>,
    timeout: Duration,
) -> Result<(Vec<GroupListing>, Vec<String>), SourceError> {
    let rk = client.as_ptr();
    const OP: &str = "ListConsumerGroups";
    let queue = Queue::new(client).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let options = AdminOptions::new(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
        timeout,
    )?;
    // SAFETY: rk, options and queue are valid; librdkafka copies the options.
    unsafe { rd::rd_kafka_ListConsumerGroups(rk, options.ptr(), queue.ptr()) };
    let event = wait_result(OP, &queue, timeout, rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT)?;
    // SAFETY: the event is a ListConsumerGroups result; everything read below is owned by it and
    // copied before `event` is dropped.
    let (mut groups, errors) = unsafe {
        let result = rd::rd_kafka_event_ListConsumerGroups_result(event.ptr());
        if result.is_null() {
            return Err(SourceError::new(OP, "event carries no ListConsumerGroups result"));
        }
        let mut cnt = 0usize;
        let valid = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut cnt);
        let groups: Vec<GroupListing> = array(valid, cnt)
            .iter()
            .filter(|l| !l.is_null())
            .map(|&l| GroupListing {
                group: cstr_opt(rd::rd_kafka_ConsumerGroupListing_group_id(l)).unwrap_or_default(),
                state: group_state(rd::rd_kafka_ConsumerGroupListing_state(l)),
                group_type: group_type(rd::rd_kafka_ConsumerGroupListing_type(l)),
                is_simple: rd::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(l) != 0,
            })
            .collect();
        let mut cnt = 0usize;
        let errs = rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut cnt);
        let errors: Vec<String> = array(errs, cnt)
            .iter()
            .filter(|e| !e.is_null())
            .map(|&e| error_message(e))
            .collect();
        (groups, errors)
    };
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    groups.dedup_by(|a, b| a.group == b.group);
    Ok((groups, errors))
}

/// Groups per DescribeConsumerGroups call.
pub(super) const DESCRIBE_GROUPS_CHUNK: usize = 500;

/// DescribeConsumerGroups, one call per 500 groups, the calls one after another so a large
/// cluster does not get thousands of requests at once; `timeout` bounds the whole call and
/// groups not reached in time get an error entry. Within a call librdkafka 2.12 sends one
/// request per group to its coordinator, all in parallel (a FindCoordinator and a
/// ConsumerGroupDescribe each; classic groups answer GROUP_ID_NOT_FOUND there and get a second,
/// classic DescribeGroups request). Duplicates are described once; the result is sorted by
/// group.
pub(in crate::kafka) fn describe_groups(
    client: ClientRef<'_>,
    groups: &[String],
    timeout: Duration,
    min_request: Duration,
) -> Result<Vec<GroupDescription>, SourceError> {
    let rk = client.as_ptr();
    const OP: &str = "DescribeConsumerGroups";
    let unique: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let names = unique
        .iter()
        .map(|g| cstring(OP, "group id", g))
        .collect::<Result<Vec<CString>, SourceError>>()?;
    let deadline = Instant::now() + timeout;
    let queue = Queue::new(client).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(DESCRIBE_GROUPS_CHUNK) {
        let left = deadline.saturating_duration_since(Instant::now());
        if !may_start(left, min_request) {
            // Like librdkafka's own per-group timeouts: an error entry per group left.
            out.extend(chunk.iter().map(|name| GroupDescription {
                group: name.to_string_lossy().into_owned(),
                state: GroupState::Unknown,
                group_type: GroupType::Unknown,
                assignor: String::new(),
                coordinator: None,
                members: Vec::new(),
                error: Some(format!("not described within {timeout:?}")),
            }));
            continue;
        }
        let options = AdminOptions::new(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            left,
        )?;
        let mut ptrs: Vec<*const c_char> = chunk.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: rk, options and queue are valid; `ptrs` holds `ptrs.len()` NUL-terminated
        // strings that outlive the call; librdkafka copies the names and the options.
        unsafe { rd::rd_kafka_DescribeConsumerGroups(rk, ptrs.as_mut_ptr(), ptrs.len(), options.ptr(), queue.ptr()) };
        let event = wait_result(OP, &queue, left, rd::RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT)?;
        // SAFETY: the event is a DescribeConsumerGroups result; everything read below is owned
        // by it and copied before `event` is dropped.
        unsafe {
            let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event.ptr());
            if result.is_null() {
                return Err(SourceError::new(OP, "event carries no DescribeConsumerGroups result"));
            }
            let mut cnt = 0usize;
            let descs = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut cnt);
            for &d in array(descs, cnt) {
                if !d.is_null() {
                    out.push(group_description(d));
                }
            }
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(out)
}

/// Copies one group description.
///
/// # Safety
/// `d` must be a valid description owned by a live result event.
pub(super) unsafe fn group_description(d: *const rd::rd_kafka_ConsumerGroupDescription_t) -> GroupDescription {
    let err = rd::rd_kafka_ConsumerGroupDescription_error(d);
    let error = (!err.is_null()).then(|| error_message(err));
    let count = rd::rd_kafka_ConsumerGroupDescription_member_count(d);
    let mut members = Vec::with_capacity(count);
    for i in 0..count {
        let m = rd::rd_kafka_ConsumerGroupDescription_member(d, i);
        if m.is_null() {
            continue;
        }
        let assignment = rd::rd_kafka_MemberDescription_assignment(m);
        let partitions = if assignment.is_null() {
            std::ptr::null()
        } else {
            rd::rd_kafka_MemberAssignment_partitions(assignment)
        };
        let mut assignment: Vec<TopicPartition> = read_partitions(partitions).into_iter().map(|e| e.tp).collect();
        assignment.sort();
        members.push(GroupMember {
            member_id: cstr_opt(rd::rd_kafka_MemberDescription_consumer_id(m)).unwrap_or_default(),
            client_id: cstr_opt(rd::rd_kafka_MemberDescription_client_id(m)).unwrap_or_default(),
            host: cstr_opt(rd::rd_kafka_MemberDescription_host(m)).unwrap_or_default(),
            assignment,
        });
    }
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    GroupDescription {
        group: cstr_opt(rd::rd_kafka_ConsumerGroupDescription_group_id(d)).unwrap_or_default(),
        state: group_state(rd::rd_kafka_ConsumerGroupDescription_state(d)),
        group_type: group_type(rd::rd_kafka_ConsumerGroupDescription_type(d)),
        assignor: cstr_opt(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(d)).unwrap_or_default(),
        coordinator: node(rd::rd_kafka_ConsumerGroupDescription_coordinator(d)).map(|b| b.id),
        members,
        error,
    }
}

/// Every classic group of the cluster, described with one ListGroups and one batched
/// DescribeGroups request per broker (librdkafka's `rd_kafka_list_groups`). The admin API's
/// DescribeConsumerGroups instead sends a FindCoordinator and a ConsumerGroupDescribe per group,
/// and for a classic group then a DescribeGroups as well; on a cluster with thousands of groups
/// that is most of a cycle's requests.
///
/// Groups that are not classic (KIP-848 `consumer` groups, share and streams groups) come back
/// `Dead` with an empty protocol type; so do groups that vanished between the two requests.
/// Callers describe those with [`describe_groups`]. `Err` when any broker did not answer.
pub(in crate::kafka) fn describe_classic_groups(
    client: ClientRef<'_>,
    timeout: Duration,
) -> Result<Vec<GroupDescription>, SourceError> {
    let rk = client.as_ptr();
    const OP: &str = "DescribeGroups";
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut list: *const rd::rd_kafka_group_list = std::ptr::null();
    // SAFETY: rk is a live client handle; on success (and only then) librdkafka stores a list
    // in `list` that we own and destroy below.
    let err = unsafe { rd::rd_kafka_list_groups(rk, std::ptr::null(), &mut list, ms) };
    if err != NO_ERROR {
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTIAL && !list.is_null() {
            // SAFETY: a partial result is still ours to destroy.
            unsafe { rd::rd_kafka_group_list_destroy(list) };
        }
        return Err(SourceError::new(OP, code_message(err)));
    }
    struct Owned(*const rd::rd_kafka_group_list);
    impl Drop for Owned {
        fn drop(&mut self) {
            if !self.0.is_null() {
                // SAFETY: returned by rd_kafka_list_groups and destroyed exactly once.
                unsafe { rd::rd_kafka_group_list_destroy(self.0) }
            }
        }
    }
    let list = Owned(list);
    // SAFETY: the list and everything it points to stay valid until `list` is dropped, after
    // all of it has been copied.
    let mut out: Vec<GroupDescription> = unsafe {
        let Some(l) = list.0.as_ref() else {
            return Ok(Vec::new());
        };
        let cnt = usize::try_from(l.group_cnt).unwrap_or(0);
        let groups = if l.groups.is_null() || cnt == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(l.groups, cnt)
        };
        groups.iter().map(|g| classic_group(g)).collect()
    };
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out.dedup_by(|a, b| a.group == b.group);
    Ok(out)
}

/// Copies one group of a legacy group list.
///
/// # Safety
/// `g` must be a valid entry of a live `rd_kafka_group_list`.
pub(super) unsafe fn classic_group(g: &rd::rd_kafka_group_info) -> GroupDescription {
    let protocol_type = cstr_opt(g.protocol_type).unwrap_or_default();
    let cnt = usize::try_from(g.member_cnt).unwrap_or(0);
    let members = if g.members.is_null() || cnt == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(g.members, cnt)
    };
    let mut members: Vec<GroupMember> = members
        .iter()
        .map(|m| {
            let bytes = if m.member_assignment.is_null() || m.member_assignment_size <= 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(
                    m.member_assignment.cast::<u8>(),
                    usize::try_from(m.member_assignment_size).unwrap_or(0),
                )
            };
            let mut assignment = if protocol_type == "consumer" {
                consumer_assignment(bytes).unwrap_or_default()
            } else {
                Vec::new()
            };
            assignment.sort();
            GroupMember {
                member_id: cstr_opt(m.member_id).unwrap_or_default(),
                client_id: cstr_opt(m.client_id).unwrap_or_default(),
                host: cstr_opt(m.client_host).unwrap_or_default(),
                assignment,
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let state = cstr_opt(g.state).unwrap_or_default();
    GroupDescription {
        group: cstr_opt(g.group).unwrap_or_default(),
        state: classic_state(&state),
        group_type: GroupType::Classic,
        assignor: cstr_opt(g.protocol).unwrap_or_default(),
        coordinator: (g.broker.id >= 0).then_some(g.broker.id),
        members,
        error: (g.err != NO_ERROR).then(|| code_message(g.err)),
    }
}

/// The committed offsets of one group, or why they could not be read.
pub(super) type CommittedOffsets = Result<Vec<(TopicPartition, i64)>, String>;

/// ListConsumerGroupOffsets for many groups. librdkafka takes one group per call, so up to
/// `concurrency` calls are kept in flight on one private queue, each tagged with its index, and
/// refilled as results arrive. `timeout` bounds the whole call: every request gets the time that
/// is left, none is started with less than `min_request` left (see
/// [`may_start`]), and groups not answered in time get an `Err`. The result has one entry per input
/// group, in input order.
pub(in crate::kafka) fn group_offsets(
    client: ClientRef<'_>,
    groups: &[String],
    concurrency: usize,
    timeout: Duration,
    min_request: Duration,
) -> Result<Vec<GroupOffsets>, SourceError> {
    const OP: &str = "ListConsumerGroupOffsets";
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + timeout;
    let queue = Queue::new(client).ok_or_else(|| SourceError::new(OP, "cannot create a result queue"))?;
    let window = concurrency.max(1);
    let mut results: Vec<Option<CommittedOffsets>> = vec![None; groups.len()];
    let mut next = 0usize;
    let mut in_flight = 0usize;
    loop {
        while in_flight < window && next < groups.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !may_start(left, min_request) {
                break;
            }
            match submit_group_offsets(client, &queue, &groups[next], next, left) {
                Ok(()) => in_flight += 1,
                Err(e) => results[next] = Some(Err(e.message)),
            }
            next += 1;
        }
        if in_flight == 0 {
            break;
        }
        // Each request ends at its own timeout (at most the time left); the extra second only
        // guards against a lost event.
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let Some(event) = queue.poll(wait) else {
            break;
        };
        in_flight -= 1;
        let tag = event.opaque();
        if let Some(slot) = results.get_mut(tag).filter(|s| s.is_none()) {
            *slot = Some(group_offsets_result(event));
        }
    }
    Ok(groups
        .iter()
        .zip(results)
        .map(|(group, r)| GroupOffsets {
            group: group.clone(),
            offsets: r.unwrap_or_else(|| Err(format!("no response within {timeout:?}"))),
        })
        .collect())
}

pub(super) fn submit_group_offsets(
    client: ClientRef<'_>,
    queue: &Queue,
    group: &str,
    tag: usize,
    timeout: Duration,
) -> Result<(), SourceError> {
    let rk = client.as_ptr();
    const OP: &str = "ListConsumerGroupOffsets";
    let name = cstring(OP, "group id", group)?;
    let options = AdminOptions::new(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
        timeout,
    )?;
    // require_stable would make the broker hold the answer while a transactional offset commit
    // is pending; committed-so-far is what lag needs.
    options.set_require_stable_offsets(OP, false)?;
    options.set_opaque(tag);
    let request = GroupOffsetsRequest::all_partitions(&name)
        .ok_or_else(|| SourceError::new(OP, "librdkafka returned no request object"))?;
    let mut ptr = request.0.as_ptr();
    // SAFETY: rk, options and queue are valid; `ptr` is an array of exactly one request object;
    // librdkafka copies the request and the options, so both may be dropped after the call.
    unsafe { rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut ptr, 1, options.ptr(), queue.ptr()) };
    Ok(())
}

/// The committed offsets in one ListConsumerGroupOffsets result. Partitions without a commit
/// (offset -1001) or with a partition-level error (e.g. topic authorization) are left out.
pub(super) fn group_offsets_result(event: Event) -> CommittedOffsets {
    const OP: &str = "ListConsumerGroupOffsets";
    let event = event
        .check(OP, rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT)
        .map_err(|e| e.message)?;
    // SAFETY: the event is a ListConsumerGroupOffsets result; everything read below is owned by
    // it and copied before `event` is dropped.
    unsafe {
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.ptr());
        if result.is_null() {
            return Err("event carries no ListConsumerGroupOffsets result".into());
        }
        let mut cnt = 0usize;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut cnt);
        let Some(&g) = array(groups, cnt).first().filter(|g| !g.is_null()) else {
            return Err("empty ListConsumerGroupOffsets result".into());
        };
        let err = rd::rd_kafka_group_result_error(g);
        if !err.is_null() {
            return Err(error_message(err));
        }
        let mut offsets: Vec<(TopicPartition, i64)> = read_partitions(rd::rd_kafka_group_result_partitions(g))
            .into_iter()
            .filter(|e| e.err == NO_ERROR && e.offset >= 0)
            .map(|e| (e.tp, e.offset))
            .collect();
        offsets.sort();
        Ok(offsets)
    }
}
