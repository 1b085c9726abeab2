//! Unit tests of policy parsing, classification and rule evaluation.

use std::collections::BTreeMap;

use super::*;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn partition(id: i32, replicas: u32, log_start: i64) -> PartitionView {
    PartitionView {
        id,
        leader: Some(1),
        preferred_leader: Some(1),
        replicas,
        isr: replicas,
        min_isr: Some(2),
        elr: None,
        last_known_elr: None,
        log_start: Some(log_start),
        high_watermark: Some(log_start + 100),
        last_stable: Some(log_start + 100),
        replay_window: None,
    }
}

fn compliant(retention_days: i64) -> TopicSettings {
    TopicSettings {
        min_insync_replicas: Some(2),
        retention_ms: Some(retention_days * 86_400_000),
        retention_bytes: Some(-1),
        cleanup_policy: Some("delete".into()),
        compression_type: Some("lz4".into()),
        unclean_leader_election: Some(false),
    }
}

fn verdicts(c: &TopicCompliance) -> BTreeMap<Rule, Verdict> {
    c.rules.iter().map(|r| (r.rule, r.verdict)).collect()
}

fn eval(name: &str, parts: &[PartitionView], s: Option<&TopicSettings>, window: Option<f64>) -> TopicCompliance {
    evaluate(
        &Policy::builtin(),
        &TopicFacts {
            name,
            partitions: parts,
            settings: s,
            replay_window: window,
            last_partition_change: None,
        },
        t(0),
    )
}

#[test]
fn builtin_policy_classifies_adr_conventions_with_documented_precedence() {
    let p = Policy::builtin();
    let class = |name: &str| p.class_name(&p.classify(name)).to_string();
    assert_eq!(class("order.order.events"), "domain_event");
    assert_eq!(class("payment.payment.events"), "domain_event");
    assert_eq!(class("audit.payment.events"), "audit", "audit wins over domain_event");
    assert_eq!(class("billing.audit.events"), "audit");
    assert_eq!(class("order.internal.retry"), "internal", "internal wins over cdc");
    assert_eq!(class("dbserver1.inventory.customers"), "cdc");
    assert_eq!(class("legacy_orders"), "unmatched");
    assert_eq!(class("Orders"), "unmatched");
    assert_eq!(class("__consumer_offsets"), "exempt");
    assert_eq!(class("_schemas"), "exempt");
    assert_eq!(class("kafka-slo-exporter.probe"), "exempt");
}

#[test]
fn compliant_domain_event_topic_passes_every_rule() {
    let parts = [partition(0, 3, 0), partition(1, 3, 0)];
    let c = eval("order.order.events", &parts, Some(&compliant(7)), None);
    assert_eq!(c.class, "domain_event");
    assert_eq!(c.required_retention_seconds, Some(7.0 * 86_400.0));
    let v = verdicts(&c);
    assert_eq!(v.len(), 10, "{v:?}");
    assert!(v.values().all(|x| *x == Verdict::Pass), "{v:?}");
}

#[test]
fn each_config_rule_fails_on_its_own() {
    let parts = [partition(0, 3, 0)];
    type Change = Box<dyn Fn(&mut TopicSettings)>;
    let cases: Vec<(Rule, Change)> = vec![
        (Rule::MinRetention, Box::new(|s| s.retention_ms = Some(86_400_000))),
        (Rule::MinInsyncReplicas, Box::new(|s| s.min_insync_replicas = Some(1))),
        (
            Rule::CompressionType,
            Box::new(|s| s.compression_type = Some("producer".into())),
        ),
        (
            Rule::CleanupPolicy,
            Box::new(|s| s.cleanup_policy = Some("compact".into())),
        ),
        (
            Rule::UncleanLeaderElection,
            Box::new(|s| s.unclean_leader_election = Some(true)),
        ),
        (
            Rule::RetentionBytes,
            Box::new(|s| s.retention_bytes = Some(1_073_741_824)),
        ),
    ];
    for (rule, change) in cases {
        let mut s = compliant(7);
        change(&mut s);
        let c = eval("order.order.events", &parts, Some(&s), None);
        let failing: Vec<Rule> = c.failing().map(|r| r.rule).collect();
        assert_eq!(failing, vec![rule]);
    }
}

#[test]
fn audit_needs_thirty_days() {
    let parts = [partition(0, 3, 0)];
    let c = eval("audit.payment.events", &parts, Some(&compliant(7)), None);
    let r = c.rules.iter().find(|r| r.rule == Rule::MinRetention).unwrap();
    assert_eq!(
        (r.verdict, r.actual.as_str(), r.required.as_str()),
        (Verdict::Fail, "7days", "30days")
    );
    assert_eq!(
        eval("audit.payment.events", &parts, Some(&compliant(30)), None)
            .failing()
            .count(),
        0
    );
}

#[test]
fn replication_factor_uses_the_smallest_partition() {
    let parts = [partition(0, 3, 0), partition(1, 1, 0)];
    let c = eval("order.order.events", &parts, Some(&compliant(7)), None);
    let r = c.rules.iter().find(|r| r.rule == Rule::ReplicationFactor).unwrap();
    assert_eq!((r.verdict, r.actual.as_str()), (Verdict::Fail, "1"));
}

#[test]
fn replay_window_only_judged_after_deletion() {
    let young = [partition(0, 3, 0)];
    let c = eval("order.order.events", &young, Some(&compliant(7)), Some(3600.0));
    assert_eq!(
        verdicts(&c)[&Rule::ReplayWindow],
        Verdict::Pass,
        "a young topic that holds everything"
    );
    let trimmed = [partition(0, 3, 500)];
    let c = eval("order.order.events", &trimmed, Some(&compliant(7)), Some(3600.0));
    assert_eq!(verdicts(&c)[&Rule::ReplayWindow], Verdict::Fail);
    let c = eval(
        "order.order.events",
        &trimmed,
        Some(&compliant(7)),
        Some(8.0 * 86_400.0),
    );
    assert_eq!(verdicts(&c)[&Rule::ReplayWindow], Verdict::Pass);
    let c = eval("order.order.events", &trimmed, Some(&compliant(7)), None);
    assert_eq!(verdicts(&c)[&Rule::ReplayWindow], Verdict::Unknown);
}

#[test]
fn unknown_config_is_unknown_not_violation() {
    let c = eval("order.order.events", &[partition(0, 3, 0)], None, None);
    let v = verdicts(&c);
    assert_eq!(v[&Rule::MinRetention], Verdict::Unknown);
    assert_eq!(v[&Rule::CompressionType], Verdict::Unknown);
    assert_eq!(c.failing().count(), 0);
}

#[test]
fn unmatched_name_fails_naming_but_keeps_default_rules() {
    let c = eval("legacy_orders", &[partition(0, 1, 0)], Some(&compliant(7)), None);
    assert_eq!(c.class, "unmatched");
    let failing: Vec<Rule> = c.failing().map(|r| r.rule).collect();
    assert_eq!(failing, vec![Rule::Naming, Rule::ReplicationFactor]);
    assert!(!verdicts(&c).contains_key(&Rule::MinRetention));
}

#[test]
fn exempt_topics_have_no_rules() {
    let c = eval("__consumer_offsets", &[partition(0, 1, 0)], None, None);
    assert_eq!(c.class, "exempt");
    assert!(c.rules.is_empty());
}

#[test]
fn partition_change_fails_within_window() {
    let p = Policy::builtin();
    let parts = [partition(0, 3, 0)];
    let s = compliant(7);
    let facts = |changed: SystemTime| TopicFacts {
        name: "order.order.events",
        partitions: &parts,
        settings: Some(&s),
        replay_window: None,
        last_partition_change: Some(changed),
    };
    let recent = evaluate(&p, &facts(t(0)), t(3600));
    assert_eq!(verdicts(&recent)[&Rule::PartitionCountStable], Verdict::Fail);
    let old = evaluate(&p, &facts(t(0)), t(8 * 86_400));
    assert_eq!(verdicts(&old)[&Rule::PartitionCountStable], Verdict::Pass);
}

#[test]
fn a_topic_violating_two_rules_fails_each_and_passes_the_rest() {
    let bad = eval("legacy_orders", &[partition(0, 1, 0)], Some(&compliant(7)), None);
    let good = eval("order.order.events", &[partition(0, 3, 0)], Some(&compliant(7)), None);
    let bad_v = verdicts(&bad);
    assert_eq!(bad_v[&Rule::Naming], Verdict::Fail);
    assert_eq!(bad_v[&Rule::ReplicationFactor], Verdict::Fail);
    assert_eq!(bad_v[&Rule::CompressionType], Verdict::Pass);
    assert_eq!(verdicts(&good)[&Rule::Naming], Verdict::Pass);
}

#[test]
fn bad_policies_name_field_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        ("", ".", "empty"),
        ("classes: []", "classes", "at least one"),
        ("clases: []", "clases", "unknown field"),
        ("classes:\n  - {name: a, match: {patterns: ['(']}}", "classes[0].match.patterns[0]", "regular expression"),
        ("classes:\n  - {name: a, match: {}}", "classes[0].match", "at least one pattern"),
        ("classes:\n  - {name: a, match: {patterns: [x]}, require: {min_retention: forever}}", "classes[0].require.min_retention", "invalid duration"),
        ("classes:\n  - {name: a, match: {patterns: [x]}, require: {compression_type: [lzma]}}", "classes[0].require.compression_type[0]", "unknown compression type"),
        ("classes:\n  - {name: a, match: {patterns: [x]}, require: {colour: red}}", "classes[0].require.colour", "unknown field"),
        ("classes:\n  - {name: a, match: {patterns: [x]}}\n  - {name: a, match: {patterns: [y]}}", "classes[1].name", "duplicate"),
        ("classes:\n  - {name: exempt, match: {patterns: [x]}}", "classes[0].name", "reserved"),
        ("classes:\n  - {name: 'a b', match: {patterns: [x]}}", "classes[0].name", "letters"),
        ("exempt: {patterns: ['[']}\nclasses:\n  - {name: a, match: {patterns: [x]}}", "exempt.patterns[0]", "regular expression"),
        ("defaults: {require: {replication_factor: 2, min_insync_replicas: 3}}\nclasses:\n  - {name: a, match: {patterns: [x]}}", "defaults.require.min_insync_replicas", "larger than replication_factor"),
        ("classes:\n  - {name: a, match: {patterns: [x]}, require: {retention_bytes: lots}}", "classes[0].require.retention_bytes", "neither"),
        ("classes:\n  - {name: a, match: {patterns: [x]}, require: {cleanup_policy: [shred]}}", "classes[0].require.cleanup_policy[0]", "not delete"),
    ];
    let mut failures = Vec::new();
    for (text, field, reason) in cases {
        match Policy::parse(Path::new("p.yml"), text) {
            Ok(_) => failures.push(format!("accepted:\n{text}")),
            Err(e) => {
                if e.field != *field || !e.reason.contains(reason) {
                    failures.push(format!("{text}\n  expected {field} ~{reason:?}\n  got {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
