//! Cross-check of the registry's subjects against the cluster's topics (pure functions).
//!
//! Under the TopicNameStrategy the value schema of topic `t` is subject `t-value` (keys:
//! `t-key`); under the TopicRecordNameStrategy it is `t-<record name>`. Topics of the classes
//! that carry events (by default `domain_event` and `cdc`) must have one; a subject named after
//! a topic that does not exist is an orphan. The RecordNameStrategy names subjects after the
//! record type alone, so no topic can be matched to a subject and nothing is checked.

use std::collections::BTreeSet;

use crate::config::registry::SubjectNameStrategy;

/// The result of a cross-check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossCheck {
    /// Every topic of a required class, with whether its value subject is missing.
    pub topics: Vec<(String, bool)>,
    /// Live subjects named after a topic that does not exist, sorted.
    pub orphans: Vec<String>,
}

impl CrossCheck {
    pub fn missing(&self) -> usize {
        self.topics.iter().filter(|(_, m)| *m).count()
    }
}

/// Cross-checks `topics` (name, policy class) with the `subjects` that are live. `selected`
/// is the cluster's topic filter: a subject whose topic the exporter does not watch is not an
/// orphan (the topic may exist). `None` under the RecordNameStrategy.
pub fn cross_check(
    topics: &[(&str, &str)],
    subjects: &BTreeSet<String>,
    required_classes: &[String],
    strategy: SubjectNameStrategy,
    selected: impl Fn(&str) -> bool,
) -> Option<CrossCheck> {
    let names: BTreeSet<&str> = topics.iter().map(|(t, _)| *t).collect();
    let required = topics
        .iter()
        .filter(|(_, class)| required_classes.iter().any(|c| c == class));
    match strategy {
        SubjectNameStrategy::RecordName => None,
        SubjectNameStrategy::TopicName => {
            let missing = required
                .map(|(t, _)| (t.to_string(), !subjects.contains(&format!("{t}-value"))))
                .collect();
            let orphans = subjects
                .iter()
                .filter(|s| {
                    let topic = s.strip_suffix("-value").or_else(|| s.strip_suffix("-key"));
                    matches!(topic, Some(t) if selected(t) && !names.contains(t))
                })
                .cloned()
                .collect();
            Some(CrossCheck {
                topics: missing,
                orphans,
            })
        }
        SubjectNameStrategy::TopicRecordName => {
            // Topic names may contain '-', so every '-' of a subject is a candidate split.
            let candidates = |s: &str| -> Vec<String> {
                s.match_indices('-')
                    .map(|(i, _)| s[..i].to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            };
            let mut covered: BTreeSet<String> = BTreeSet::new();
            let mut orphans = Vec::new();
            for s in subjects {
                let cands = candidates(s);
                let existing: Vec<&String> = cands.iter().filter(|t| names.contains(t.as_str())).collect();
                if existing.is_empty() {
                    if cands.iter().any(|t| selected(t)) {
                        orphans.push(s.clone());
                    }
                } else {
                    covered.extend(existing.into_iter().cloned());
                }
            }
            let missing = required.map(|(t, _)| (t.to_string(), !covered.contains(*t))).collect();
            Some(CrossCheck {
                topics: missing,
                orphans,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn classes() -> Vec<String> {
        vec!["domain_event".into(), "cdc".into()]
    }

    const TOPICS: &[(&str, &str)] = &[
        ("order.order.events", "domain_event"),
        ("pay.payment.events", "domain_event"),
        ("db1.public.customers", "cdc"),
        ("order.internal.retry", "internal"),
        ("audit.login", "audit"),
    ];

    #[test]
    fn topic_name_strategy() {
        let s = subjects(&[
            "order.order.events-value",
            "order.order.events-key",
            "db1.public.customers-value",
            "gone.topic.events-value",
            "gone.topic.events-key",
            "ignored.topic-value",
            "com.example.Record",
            "order.internal.retry-value",
        ]);
        let selected = |t: &str| !t.starts_with("ignored.");
        let c = cross_check(TOPICS, &s, &classes(), SubjectNameStrategy::TopicName, selected).unwrap();
        assert_eq!(
            c.topics,
            vec![
                ("order.order.events".to_string(), false),
                ("pay.payment.events".to_string(), true),
                ("db1.public.customers".to_string(), false),
            ]
        );
        assert_eq!(c.missing(), 1);
        // Subjects of unwatched topics and subjects not named after a topic are not orphans.
        assert_eq!(c.orphans, vec!["gone.topic.events-key", "gone.topic.events-value"]);
    }

    #[test]
    fn a_key_subject_alone_does_not_count() {
        let s = subjects(&["pay.payment.events-key"]);
        let c = cross_check(TOPICS, &s, &classes(), SubjectNameStrategy::TopicName, |_| true).unwrap();
        assert!(c.topics.contains(&("pay.payment.events".to_string(), true)));
        assert!(c.orphans.is_empty());
    }

    #[test]
    fn required_classes_are_configurable() {
        let only_audit = vec!["audit".to_string()];
        let c = cross_check(
            TOPICS,
            &subjects(&[]),
            &only_audit,
            SubjectNameStrategy::TopicName,
            |_| true,
        )
        .unwrap();
        assert_eq!(c.topics, vec![("audit.login".to_string(), true)]);
    }

    #[test]
    fn topic_record_name_strategy() {
        let s = subjects(&[
            "order.order.events-com.shop.OrderPlaced",
            "order.order.events-com.shop.OrderShipped",
            "my-topic-com.shop.X",
            "gone.topic.events-com.shop.Gone",
        ]);
        let topics = [
            ("order.order.events", "domain_event"),
            ("my-topic", "domain_event"),
            ("pay.payment.events", "domain_event"),
        ];
        let c = cross_check(&topics, &s, &classes(), SubjectNameStrategy::TopicRecordName, |_| true).unwrap();
        assert_eq!(
            c.topics,
            vec![
                ("order.order.events".to_string(), false),
                ("my-topic".to_string(), false),
                ("pay.payment.events".to_string(), true),
            ]
        );
        assert_eq!(c.orphans, vec!["gone.topic.events-com.shop.Gone"]);
    }

    #[test]
    fn record_name_strategy_checks_nothing() {
        let s = subjects(&["com.shop.OrderPlaced"]);
        assert!(cross_check(TOPICS, &s, &classes(), SubjectNameStrategy::RecordName, |_| true).is_none());
    }
}
