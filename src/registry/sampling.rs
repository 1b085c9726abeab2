//! Sampling record values of the topics whose classes need registered schemas, and looking up
//! the schema ids the samples carry that the registry's listings do not name.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use super::*;

/// The topics of the required classes in the Kafka snapshot: (name, class, partitions as
/// (id, log start, high watermark)).
pub(super) type RequiredTopic<'a> = (&'a str, &'a str, Vec<(i32, Option<i64>, Option<i64>)>);

pub(super) fn kafka_topics<'a>(kafka: &'a ClusterSnapshot) -> Option<Vec<RequiredTopic<'a>>> {
    let (topics, compliance) = (kafka.topics.as_ref()?, kafka.compliance.as_ref()?);
    Some(
        topics
            .iter()
            .zip(compliance.iter())
            .map(|(t, c)| {
                (
                    t.name.as_str(),
                    c.class.as_str(),
                    t.partitions
                        .iter()
                        .map(|p| (p.id, p.log_start, p.high_watermark))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// (last sampled, topic, offset ranges to read).
type Due<'a> = (Option<SystemTime>, &'a str, Vec<(i32, i64, i64)>);

/// The topics of the required classes whose sampling plan changed since they were last
/// sampled, least recently sampled first; forgets the samples of topics no longer required.
fn topics_due<'a>(cfg: &RegistryConfig, topics: &'a [RequiredTopic<'a>], mem: &mut Memory) -> Vec<Due<'a>> {
    let required: Vec<&RequiredTopic<'_>> = topics
        .iter()
        .filter(|(_, class, _)| cfg.required_classes.iter().any(|c| c == class))
        .collect();
    let names: HashSet<&str> = required.iter().map(|(t, _, _)| *t).collect();
    mem.samples.retain(|t, _| names.contains(t.as_str()));
    let mut due: Vec<Due<'a>> = required
        .iter()
        .filter_map(|(t, _, parts)| {
            let ranges = wire::plan(parts, cfg.sample_records);
            let key: Vec<(i32, i64)> = ranges.iter().map(|(p, _, end)| (*p, *end)).collect();
            match mem.samples.get(*t) {
                Some(s) if s.key.as_ref() == Some(&key) => None,
                Some(s) => Some((Some(s.at), *t, ranges)),
                None => Some((None, *t, ranges)),
            }
        })
        .collect();
    due.sort();
    due
}

/// Reads new record values of the required topics (those whose plan changed, least recently
/// sampled first) until `deadline`.
pub(super) fn sample(
    cluster: &ClusterConfig,
    cfg: &RegistryConfig,
    topics: &[RequiredTopic<'_>],
    mem: &mut Memory,
    now: SystemTime,
    deadline: Instant,
) {
    let due = topics_due(cfg, topics, mem);
    for (_, topic, ranges) in due {
        if Instant::now() >= deadline {
            break;
        }
        let key: Vec<(i32, i64)> = ranges.iter().map(|(p, _, end)| (*p, *end)).collect();
        if ranges.is_empty() {
            mem.samples.insert(
                topic.to_string(),
                TopicSample {
                    key: Some(key),
                    framings: Vec::new(),
                    at: now,
                },
            );
            continue;
        }
        if mem.sampler.is_none() {
            match ValueSampler::new(cluster, &mem.client_errors) {
                Ok(s) => mem.sampler = Some(s),
                Err(e) => {
                    let t = Timed::<()> {
                        result: Err(ApiError::Transport(e.to_string())),
                        duration: Duration::ZERO,
                    };
                    mem.record(Operation::Sample, &t, true);
                    tracing::warn!(cluster = cluster.name.as_str(), error = %e, "cannot create the value sampler");
                    return;
                }
            }
        }
        let Some(sampler) = mem.sampler.as_ref() else { return };
        let started = Instant::now();
        let read = sampler.read(topic, &ranges, deadline.min(Instant::now() + cfg.timeout));
        let t = Timed {
            duration: started.elapsed(),
            result: read
                .as_ref()
                .map(|_| ())
                .map_err(|e| ApiError::Transport(e.to_string())),
        };
        mem.record(Operation::Sample, &t, read.is_err());
        match read {
            Ok(read) => {
                let framings = read.values.iter().map(|v| wire::framing(v.prefix.as_deref())).collect();
                let key = read.complete.then_some(key);
                mem.samples
                    .insert(topic.to_string(), TopicSample { key, framings, at: now });
            }
            Err(e) => {
                tracing::debug!(cluster = cluster.name.as_str(), topic, error = %e, "sampling record values");
            }
        }
    }
}

/// Looks up schema ids seen in samples that the listings do not name.
pub(super) fn look_up_ids(
    client: &RegistryClient,
    cfg: &RegistryConfig,
    listed: &HashSet<u32>,
    mem: &mut Memory,
    now: SystemTime,
) {
    let ids = wire::ids_to_look_up(
        mem.samples.values().flat_map(|s| s.framings.iter()),
        listed,
        &mem.ids,
        now,
        cfg.subject_refresh,
        cfg.lookups_per_poll,
    );
    for id in ids {
        match mem.optional(
            Operation::SchemaById,
            client.get::<serde::de::IgnoredAny>(&format!("/schemas/ids/{id}")),
        ) {
            Ok(found) => {
                mem.ids.insert(
                    id,
                    IdKnowledge {
                        known: found.is_some(),
                        checked_at: now,
                    },
                );
            }
            Err(ApiError::Transport(_)) => break,
            Err(e) => tracing::debug!(id, error = %e, "schema registry: schema by id"),
        }
    }
}
