//! The demo workload: topics shaped like the naming and retention rules of the topic ADR (plus
//! one that breaks them), a light produce load on each, and two consumer groups — one healthy,
//! one lagging. `kse-demo` runs it for people; tests run it to have realistic data.

use std::time::Duration;

use crate::{ConsumerHandle, ConsumerOptions, KafkaCluster, ProducerHandle};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A demo topic and how busy it is.
pub struct TopicSpec {
    pub name: &'static str,
    pub partitions: i32,
    pub configs: Vec<(&'static str, String)>,
    pub records_per_sec: u32,
}

/// The demo topics.
pub fn topics() -> Vec<TopicSpec> {
    let days = |d: i64| (d * DAY_MS).to_string();
    let compliant = |retention_days: i64| {
        vec![
            ("retention.ms", days(retention_days)),
            ("compression.type", "lz4".to_owned()),
            // A single broker cannot hold more than one in-sync replica.
            ("min.insync.replicas", "1".to_owned()),
        ]
    };
    vec![
        TopicSpec {
            name: "order.order.events",
            partitions: 6,
            configs: compliant(7),
            records_per_sec: 4,
        },
        TopicSpec {
            name: "payment.payment.events",
            partitions: 3,
            configs: compliant(7),
            records_per_sec: 2,
        },
        TopicSpec {
            name: "audit.payment.events",
            partitions: 3,
            configs: compliant(30),
            records_per_sec: 1,
        },
        TopicSpec {
            name: "dbserver1.inventory.customers",
            partitions: 1,
            configs: compliant(7),
            records_per_sec: 1,
        },
        TopicSpec {
            name: "order.internal.retry",
            partitions: 3,
            configs: compliant(7),
            records_per_sec: 1,
        },
        // Deliberately non-compliant: short retention, gzip, bad name.
        TopicSpec {
            name: "legacy_orders",
            partitions: 1,
            configs: vec![
                ("retention.ms", (60 * 60 * 1000).to_string()),
                ("compression.type", "gzip".to_owned()),
            ],
            records_per_sec: 1,
        },
    ]
}

/// The healthy group and the topics it reads.
pub const HEALTHY_GROUP: (&str, &[&str]) = ("order-service", &["order.order.events", "payment.payment.events"]);

/// The lagging group (it sleeps a second per record) and the topics it reads.
pub const LAGGING_GROUP: (&str, &[&str]) = ("analytics-batch", &["order.order.events", "audit.payment.events"]);

/// The running workload; dropping it stops the consumers (they commit and leave their groups)
/// and then the producers.
pub struct Workload {
    pub consumers: Vec<ConsumerHandle>,
    pub producers: Vec<ProducerHandle>,
}

impl Workload {
    /// Creates the demo topics on `cluster` (replication factor 1) and starts the producers and
    /// both groups.
    pub fn start(cluster: &KafkaCluster) -> Result<Workload, String> {
        let specs = topics();
        for t in &specs {
            let configs: Vec<(&str, &str)> = t.configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            cluster
                .create_topic(t.name, t.partitions, 1, &configs)
                .map_err(|e| format!("creating topic {}: {e}", t.name))?;
        }
        let mut producers = Vec::new();
        for t in &specs {
            producers.push(
                cluster
                    .producing_loop(t.name, t.records_per_sec)
                    .map_err(|e| format!("starting the producer for {}: {e}", t.name))?,
            );
        }
        let (healthy, healthy_topics) = HEALTHY_GROUP;
        let (lagging, lagging_topics) = LAGGING_GROUP;
        let consumers = vec![
            cluster
                .consuming_group(healthy, healthy_topics, ConsumerOptions::default())
                .map_err(|e| format!("starting group {healthy}: {e}"))?,
            cluster
                .consuming_group(
                    lagging,
                    lagging_topics,
                    ConsumerOptions::default().with_delay(Duration::from_secs(1)),
                )
                .map_err(|e| format!("starting group {lagging}: {e}"))?,
        ];
        Ok(Workload { consumers, producers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_set_matches_the_demo_story() {
        let t = topics();
        assert_eq!(t.len(), 6);
        let legacy = t.iter().find(|t| t.name == "legacy_orders").unwrap();
        assert!(legacy.configs.contains(&("compression.type", "gzip".to_owned())));
        let audit = t.iter().find(|t| t.name == "audit.payment.events").unwrap();
        assert!(audit.configs.contains(&("retention.ms", (30 * DAY_MS).to_string())));
        for (_, topics) in [HEALTHY_GROUP, LAGGING_GROUP] {
            for topic in topics {
                assert!(t.iter().any(|t| t.name == *topic), "{topic} is not a demo topic");
            }
        }
    }
}
