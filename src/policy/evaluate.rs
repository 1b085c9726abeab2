//! The evaluation of one topic against its class's requirements: one function per rule, each
//! saying what it found and what is required, and `Unknown` while a fact is missing.

use std::time::{Duration, SystemTime};

use super::{
    normalise_cleanup, Classification, Policy, RetentionBytes, Rule, RuleResult, TopicCompliance, TopicFacts, Verdict,
};
use crate::model::TopicSettings;

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn human_secs(s: f64) -> String {
    human(Duration::from_secs_f64(s.max(0.0)))
}

fn result(rule: Rule, verdict: Verdict, actual: impl Into<String>, required: impl Into<String>) -> RuleResult {
    RuleResult {
        rule,
        verdict,
        actual: actual.into(),
        required: required.into(),
    }
}

fn pass_if(ok: bool) -> Verdict {
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// Evaluates a topic against the policy at time `now`.
pub fn evaluate(policy: &Policy, facts: &TopicFacts<'_>, now: SystemTime) -> TopicCompliance {
    let classification = policy.classify(facts.name);
    let class = policy.class_name(&classification).to_string();
    let req = match &classification {
        Classification::Exempt => {
            return TopicCompliance {
                topic: facts.name.to_string(),
                class,
                required_retention_seconds: None,
                replay_window_seconds: facts.replay_window,
                rules: Vec::new(),
            }
        }
        Classification::Unmatched => &policy.unmatched,
        Classification::Class(i) => &policy.classes[*i].require,
    };
    let s = facts.settings;
    let mut rules = vec![naming(policy, &classification, &class)];
    if let Some(min) = req.min_retention {
        rules.push(min_retention(min, s));
        rules.push(replay_window(min, facts));
    }
    rules.extend(req.replication_factor.map(|rf| replication_factor(rf, facts)));
    rules.extend(req.min_insync_replicas.map(|m| min_insync_replicas(m, s)));
    rules.extend(req.compression_type.as_deref().map(|a| compression_type(a, s)));
    rules.extend(req.cleanup_policy.as_deref().map(|a| cleanup_policy(a, s)));
    rules.extend(req.unclean_leader_election.map(|w| unclean_leader_election(w, s)));
    rules.extend(req.retention_bytes.map(|w| retention_bytes(w, s)));
    if req.partition_count_stable {
        rules.push(partition_count_stable(policy.partition_change_window, facts, now));
    }
    TopicCompliance {
        topic: facts.name.to_string(),
        class,
        required_retention_seconds: req.min_retention.map(|d| d.as_secs_f64()),
        replay_window_seconds: facts.replay_window,
        rules,
    }
}

fn naming(policy: &Policy, classification: &Classification, class: &str) -> RuleResult {
    let conventions: Vec<&str> = policy.classes.iter().map(|c| c.name.as_str()).collect();
    let required = format!("one of: {}", conventions.join(", "));
    match classification {
        Classification::Unmatched => result(Rule::Naming, Verdict::Fail, "matches no convention", required),
        _ => result(Rule::Naming, Verdict::Pass, format!("class {class}"), required),
    }
}

fn min_retention(min: Duration, s: Option<&TopicSettings>) -> RuleResult {
    let required = human(min);
    match s.and_then(|s| s.retention_ms) {
        None => result(Rule::MinRetention, Verdict::Unknown, "unknown", required),
        Some(r) if r < 0 => result(Rule::MinRetention, Verdict::Pass, "unlimited", required),
        Some(r) => result(
            Rule::MinRetention,
            pass_if(r as u128 >= min.as_millis()),
            human(Duration::from_millis(r as u64)),
            required,
        ),
    }
}

/// The retention as it is lived: the age of the oldest record still there, once anything has
/// been deleted.
fn replay_window(min: Duration, facts: &TopicFacts<'_>) -> RuleResult {
    let deleted = facts.partitions.iter().any(|p| p.log_start.is_some_and(|o| o > 0));
    let known = facts.partitions.iter().all(|p| p.log_start.is_some());
    let required = format!("≥ {} once records have been deleted", human(min));
    match (deleted, facts.replay_window) {
        (false, _) if known => result(Rule::ReplayWindow, Verdict::Pass, "nothing deleted yet", required),
        (false, _) => result(Rule::ReplayWindow, Verdict::Unknown, "offsets unknown", required),
        (true, None) => result(
            Rule::ReplayWindow,
            Verdict::Unknown,
            "oldest record not read yet",
            required,
        ),
        (true, Some(w)) => result(
            Rule::ReplayWindow,
            pass_if(w >= min.as_secs_f64()),
            human_secs(w),
            required,
        ),
    }
}

fn replication_factor(rf: u32, facts: &TopicFacts<'_>) -> RuleResult {
    match facts.partitions.iter().map(|p| p.replicas).min() {
        None => result(
            Rule::ReplicationFactor,
            Verdict::Unknown,
            "no partitions",
            format!("≥ {rf}"),
        ),
        Some(a) => result(
            Rule::ReplicationFactor,
            pass_if(a >= rf),
            a.to_string(),
            format!("≥ {rf}"),
        ),
    }
}

fn min_insync_replicas(m: i32, s: Option<&TopicSettings>) -> RuleResult {
    match s.and_then(|s| s.min_insync_replicas) {
        None => result(Rule::MinInsyncReplicas, Verdict::Unknown, "unknown", format!("≥ {m}")),
        Some(a) => result(
            Rule::MinInsyncReplicas,
            pass_if(a >= m),
            a.to_string(),
            format!("≥ {m}"),
        ),
    }
}

fn compression_type(allowed: &[String], s: Option<&TopicSettings>) -> RuleResult {
    let required = allowed.join(" or ");
    match s.and_then(|s| s.compression_type.clone()) {
        None => result(Rule::CompressionType, Verdict::Unknown, "unknown", required),
        Some(a) => result(Rule::CompressionType, pass_if(allowed.contains(&a)), a, required),
    }
}

fn cleanup_policy(allowed: &[String], s: Option<&TopicSettings>) -> RuleResult {
    let required = allowed.join(" or ");
    let actual = s
        .and_then(|s| s.cleanup_policy.as_deref())
        .map(|c| normalise_cleanup(c).unwrap_or(c.to_string()));
    match actual {
        None => result(Rule::CleanupPolicy, Verdict::Unknown, "unknown", required),
        Some(a) => result(Rule::CleanupPolicy, pass_if(allowed.contains(&a)), a, required),
    }
}

fn unclean_leader_election(want: bool, s: Option<&TopicSettings>) -> RuleResult {
    match s.and_then(|s| s.unclean_leader_election) {
        None => result(
            Rule::UncleanLeaderElection,
            Verdict::Unknown,
            "unknown",
            want.to_string(),
        ),
        Some(a) => result(
            Rule::UncleanLeaderElection,
            pass_if(a == want),
            a.to_string(),
            want.to_string(),
        ),
    }
}

fn retention_bytes(want: RetentionBytes, s: Option<&TopicSettings>) -> RuleResult {
    let required = match want {
        RetentionBytes::Unlimited => "unlimited (-1)".to_string(),
        RetentionBytes::AtLeast(b) => format!("unlimited or ≥ {b} bytes per partition"),
    };
    match s.and_then(|s| s.retention_bytes) {
        None => result(Rule::RetentionBytes, Verdict::Unknown, "unknown", required),
        Some(b) if b < 0 => result(Rule::RetentionBytes, Verdict::Pass, "unlimited", required),
        Some(b) => {
            let ok = match want {
                RetentionBytes::Unlimited => false,
                RetentionBytes::AtLeast(min) => b as u64 >= min,
            };
            result(Rule::RetentionBytes, pass_if(ok), format!("{b} bytes"), required)
        }
    }
}

fn partition_count_stable(window: Duration, facts: &TopicFacts<'_>, now: SystemTime) -> RuleResult {
    let required = format!("no change within {}", human(window));
    match facts.last_partition_change {
        None => result(
            Rule::PartitionCountStable,
            Verdict::Pass,
            "no change observed",
            required,
        ),
        Some(t) => {
            let ago = now.duration_since(t).unwrap_or_default();
            result(
                Rule::PartitionCountStable,
                pass_if(ago >= window),
                format!("changed {} ago", human(ago)),
                required,
            )
        }
    }
}
