//! Schema Registry watch: the ADR's "all messages use Avro with Schema Registry" measured.
//!
//! Each cluster with a `schema_registry` section gets its own task ([`spawn`]) that polls the
//! registry's Confluent-compatible REST API on its own interval, on a blocking thread,
//! independent of the Kafka collection cycle, and publishes an immutable [`RegistrySnapshot`]
//! with an atomic pointer swap. A registry that is down or slow only affects its own series:
//! `kafka_schema_registry_up` drops to 0, error counters grow, and the last inventory is served
//! until `max_staleness`; the Kafka snapshot is only ever read.
//!
//! A poll reads the listings in full, paged with `offset`/`limit` ([`client::paged`]), then
//! a bounded number of per-subject requests (compatibility; versions and latest type where
//! `/schemas` does not name subjects) and per-id look-ups, cached between polls
//! ([`inventory`]). It cross-checks subjects with the latest Kafka snapshot's topics and
//! policy classes ([`crosscheck`]) and, when enabled, samples the newest record values of
//! those topics for the registry wire format ([`wire`]).
//!
//! Each task publishes to the slot [`spawn`] returns; start-up wiring hands the slots to the
//! registry collector area, which reads them at scrape time.

pub mod client;
pub mod crosscheck;
pub mod inventory;
mod sampling;
pub mod wire;

use sampling::{kafka_topics, look_up_ids, sample};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use self::client::{paged, path_segment, ApiError, RegistryClient, SchemaEntry, SubjectVersion, Timed, MAX_PAGES};
use self::crosscheck::CrossCheck;
use self::inventory::{Inventory, Listings, SubjectCompatibility, SubjectDetail};
use self::wire::{Framing, IdKnowledge, SampleCounts};
use crate::config::registry::RegistryConfig;
use crate::config::ClusterConfig;
use crate::kafka::{ClientErrors, ValueSampler};
use crate::snapshot::ClusterSnapshot;
use crate::snapshot::SnapshotSlot;

/// Where a cluster's registry snapshot lives. Scrapes `load()` it; the registry task `store()`s.
pub type RegistrySlot = Arc<ArcSwap<RegistrySnapshot>>;

/// The registry requests (and the Kafka read for sampling), the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `GET /subjects` (live, and with `deleted=true`), paged.
    Subjects,
    /// `GET /schemas` (live, and with `deleted=true`), paged.
    Schemas,
    /// `GET /config`: the global compatibility level.
    Config,
    /// `GET /mode`.
    Mode,
    /// `GET /contexts`.
    Contexts,
    /// `GET /config/{subject}?defaultToGlobal=true`: the effective level (Apicurio answers
    /// `NONE` without the parameter when the subject has no level of its own).
    SubjectConfig,
    /// `GET /subjects/{subject}/versions` and `.../versions/latest`.
    SubjectVersions,
    /// `GET /schemas/ids/{id}`.
    SchemaById,
    /// Reading record values from Kafka for the wire-format check.
    Sample,
}

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::Subjects,
        Operation::Schemas,
        Operation::Config,
        Operation::Mode,
        Operation::Contexts,
        Operation::SubjectConfig,
        Operation::SubjectVersions,
        Operation::SchemaById,
        Operation::Sample,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Subjects => "subjects",
            Operation::Schemas => "schemas",
            Operation::Config => "config",
            Operation::Mode => "mode",
            Operation::Contexts => "contexts",
            Operation::SubjectConfig => "subject_config",
            Operation::SubjectVersions => "subject_versions",
            Operation::SchemaById => "schema_by_id",
            Operation::Sample => "sample",
        }
    }
}

/// Counters and the latest latency of one operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationStats {
    pub requests_total: u64,
    pub errors_total: u64,
    /// The slowest request of the operation in the most recent poll that made one.
    pub last_duration: Option<Duration>,
}

/// What the registry collector area encodes for one cluster.
#[derive(Debug, Clone)]
pub struct RegistrySnapshot {
    /// Whether the most recent poll read every listing.
    pub up: bool,
    /// When the most recent successful poll ended.
    pub last_success: Option<SystemTime>,
    pub operations: BTreeMap<Operation, OperationStats>,
    /// The inventory of the most recent successful poll, while younger than `max_staleness`.
    pub inventory: Option<Arc<Inventory>>,
    /// `None` before both the inventory and the Kafka topics are known, or under the
    /// RecordNameStrategy.
    pub cross_check: Option<Arc<CrossCheck>>,
    /// Sampled record values by topic; `None` when sampling is off.
    pub samples: Option<Arc<BTreeMap<String, SampleCounts>>>,
    pub subject_labels: bool,
}

impl RegistrySnapshot {
    /// Before the first poll: not up, every operation at zero.
    pub fn empty(subject_labels: bool) -> Self {
        Self {
            up: false,
            last_success: None,
            operations: Operation::ALL.iter().map(|o| (*o, OperationStats::default())).collect(),
            inventory: None,
            cross_check: None,
            samples: None,
            subject_labels,
        }
    }
}

/// The sampled values of one topic and the partition ends they were read up to.
#[derive(Debug, Clone)]
struct TopicSample {
    /// (partition, high watermark) of the plan; a new plan re-reads the topic. `None` after a
    /// read cut short by the deadline: read again next poll.
    key: Option<Vec<(i32, i64)>>,
    framings: Vec<Framing>,
    at: SystemTime,
}

/// What a registry task keeps between polls.
#[derive(Default)]
pub struct Memory {
    last_success: Option<SystemTime>,
    /// Whether the most recent poll failed (failures are logged when they start).
    failing: bool,
    operations: BTreeMap<Operation, OperationStats>,
    /// Per-poll slowest request per operation (folded into `operations` at the end).
    slowest: BTreeMap<Operation, Duration>,
    inventory: Option<Arc<Inventory>>,
    subjects: HashMap<String, SubjectDetail>,
    ids: HashMap<u32, IdKnowledge>,
    samples: HashMap<String, TopicSample>,
    sampler: Option<ValueSampler>,
    /// The cluster's Kafka client error counts, which the sampler's consumer reports into.
    client_errors: ClientErrors,
}

impl Memory {
    /// Every operation's counters (all listed), with this poll's slowest request as the last
    /// duration of the operations that made one.
    fn take_operations(&mut self) -> BTreeMap<Operation, OperationStats> {
        for (op, d) in std::mem::take(&mut self.slowest) {
            self.operations.entry(op).or_default().last_duration = Some(d);
        }
        let mut operations: BTreeMap<Operation, OperationStats> =
            Operation::ALL.iter().map(|o| (*o, OperationStats::default())).collect();
        operations.extend(self.operations.iter().map(|(k, v)| (*k, v.clone())));
        operations
    }

    /// Counts one request of `op`.
    fn record<T>(&mut self, op: Operation, t: &Timed<T>, failed: bool) {
        let s = self.operations.entry(op).or_default();
        s.requests_total += 1;
        if failed {
            s.errors_total += 1;
        }
        let slowest = self.slowest.entry(op).or_default();
        *slowest = (*slowest).max(t.duration);
    }

    /// A request whose 404 means "not supported / not there" rather than an error.
    fn optional<T>(&mut self, op: Operation, t: Timed<T>) -> Result<Option<T>, ApiError> {
        let failed = matches!(&t.result, Err(e) if !e.is_not_found());
        self.record(op, &t, failed);
        match t.result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn required<T>(&mut self, op: Operation, t: Timed<T>) -> Result<T, ApiError> {
        self.record(op, &t, t.result.is_err());
        t.result
    }

    /// A paged listing; every page is one request.
    fn listing<T: serde::de::DeserializeOwned + PartialEq + Clone>(
        &mut self,
        client: &RegistryClient,
        op: Operation,
        path: &str,
        page_size: usize,
        optional: bool,
    ) -> Result<Option<Vec<T>>, ApiError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let listing = paged(page_size, MAX_PAGES, |offset, limit| {
            let t = client.get::<Vec<T>>(&format!("{path}{sep}offset={offset}&limit={limit}"));
            let failed = matches!(&t.result, Err(e) if !(optional && e.is_not_found()));
            self.record(op, &t, failed);
            t
        });
        match listing.result {
            Ok(l) => {
                if l.truncated {
                    tracing::warn!(
                        path,
                        pages = l.pages,
                        "listing truncated after the maximum number of pages"
                    );
                }
                Ok(Some(l.entries))
            }
            Err(e) if optional && e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Reads every listing; the first failure ends the poll (the inventory is only ever built
/// from a complete set).
fn read_listings(client: &RegistryClient, cfg: &RegistryConfig, mem: &mut Memory) -> Result<Listings, ApiError> {
    let page = cfg.page_size;
    let live_subjects: Vec<String> = mem
        .listing(client, Operation::Subjects, "/subjects", page, false)?
        .unwrap_or_default();
    let all_subjects: Vec<String> = mem
        .listing(client, Operation::Subjects, "/subjects?deleted=true", page, false)?
        .unwrap_or_default();
    let schemas_live: Option<Vec<SchemaEntry>> = mem.listing(client, Operation::Schemas, "/schemas", page, true)?;
    let schemas_all: Option<Vec<SchemaEntry>> = match schemas_live {
        Some(_) => mem.listing(client, Operation::Schemas, "/schemas?deleted=true", page, true)?,
        None => None,
    };
    let global_compatibility = Some(mem.required(Operation::Config, client.compatibility("/config"))?);
    let mode = mem.optional(Operation::Mode, client.mode())?;
    let contexts = mem
        .optional(Operation::Contexts, client.get::<Vec<String>>("/contexts"))?
        .map(|c| c.len());
    Ok(Listings {
        live_subjects,
        all_subjects,
        schemas_live,
        schemas_all,
        global_compatibility,
        mode,
        contexts,
    })
}

/// Per-subject requests for the subjects due, within the budget and `deadline`. A transport
/// error stops them (the registry is unreachable); other errors skip the subject.
fn look_up_subjects(
    client: &RegistryClient,
    cfg: &RegistryConfig,
    listings: &Listings,
    mem: &mut Memory,
    now: SystemTime,
    deadline: Instant,
) {
    let live: HashSet<&String> = listings.live_subjects.iter().collect();
    mem.subjects.retain(|s, _| live.contains(s));
    let with_versions = !listings.schemas_name_subjects();
    let cost = if with_versions { 3 } else { 1 };
    let due = inventory::subjects_due(
        &listings.live_subjects,
        &mem.subjects,
        now,
        cfg.subject_refresh,
        cfg.lookups_per_poll / cost,
    );
    for subject in due {
        if Instant::now() >= deadline {
            break;
        }
        let seg = path_segment(&subject);
        let compatibility = match mem.optional(
            Operation::SubjectConfig,
            client.compatibility(&format!("/config/{seg}?defaultToGlobal=true")),
        ) {
            Ok(Some(level)) => SubjectCompatibility::Level(level),
            Ok(None) => SubjectCompatibility::Global,
            Err(ApiError::Transport(_)) => break,
            Err(e) => {
                tracing::debug!(subject, error = %e, "schema registry: subject compatibility");
                continue;
            }
        };
        let mut detail = SubjectDetail {
            fetched_at: now,
            compatibility: Some(compatibility),
            versions: None,
            latest_type: None,
            latest_id: None,
        };
        if with_versions {
            let versions = mem.optional(
                Operation::SubjectVersions,
                client.get::<Vec<i64>>(&format!("/subjects/{seg}/versions")),
            );
            let latest = mem.optional(
                Operation::SubjectVersions,
                client.get::<SubjectVersion>(&format!("/subjects/{seg}/versions/latest")),
            );
            match (versions, latest) {
                (Ok(Some(v)), Ok(Some(l))) => {
                    detail.versions = Some(v.len());
                    detail.latest_type = Some(inventory::schema_type(l.schema_type.as_deref()));
                    detail.latest_id = l.id;
                }
                // Deleted between the listing and now: the next listing drops it.
                (Ok(None), _) | (_, Ok(None)) => continue,
                (Err(ApiError::Transport(_)), _) | (_, Err(ApiError::Transport(_))) => break,
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(subject, error = %e, "schema registry: subject versions");
                    continue;
                }
            }
        }
        mem.subjects.insert(subject, detail);
    }
}

/// One poll: listings, per-subject look-ups, cross-check, sampling. Blocking.
pub fn poll(
    client: &RegistryClient,
    cluster: &ClusterConfig,
    cfg: &RegistryConfig,
    kafka: &ClusterSnapshot,
    mem: &mut Memory,
) -> RegistrySnapshot {
    let started = Instant::now();
    let now = SystemTime::now();
    // Look-ups and sampling stop starting new requests after one interval, so that a slow
    // registry or cluster delays the next poll by at most about one request timeout.
    let deadline = started + cfg.interval;
    mem.slowest.clear();

    let listed = read_listings(client, cfg, mem);
    let up = match listed {
        Ok(listings) => {
            look_up_subjects(client, cfg, &listings, mem, now, deadline);
            mem.inventory = Some(Arc::new(inventory::build(&listings, &mem.subjects, now)));
            mem.last_success = Some(SystemTime::now());
            if mem.failing {
                tracing::info!(cluster = cluster.name.as_str(), "schema registry recovered");
            }
            true
        }
        Err(e) => {
            if !mem.failing {
                tracing::warn!(cluster = cluster.name.as_str(), error = %e, "schema registry poll failed");
            } else {
                tracing::debug!(cluster = cluster.name.as_str(), error = %e, "schema registry poll failed again");
            }
            let stale = mem
                .inventory
                .as_ref()
                .is_some_and(|inv| now.duration_since(inv.at).unwrap_or_default() > cfg.max_staleness);
            if stale {
                mem.inventory = None;
            }
            false
        }
    };

    let topics = kafka_topics(kafka);
    let cross_check = match (&mem.inventory, &topics) {
        (Some(inv), Some(topics)) => {
            let pairs: Vec<(&str, &str)> = topics.iter().map(|(t, c, _)| (*t, *c)).collect();
            crosscheck::cross_check(&pairs, &inv.subjects, &cfg.required_classes, cfg.strategy, |t| {
                cluster.topics.matches(t)
            })
            .map(Arc::new)
        }
        _ => None,
    };

    let samples = (cfg.sample_records > 0).then(|| {
        if let Some(topics) = &topics {
            sample(cluster, cfg, topics, mem, now, deadline);
        }
        Arc::new(classify_samples(client, cfg, mem, now, up))
    });

    mem.failing = !up;
    RegistrySnapshot {
        up,
        last_success: mem.last_success,
        operations: mem.take_operations(),
        inventory: mem.inventory.clone(),
        cross_check,
        samples,
        subject_labels: cfg.subject_labels,
    }
}

/// The framing of each topic's sampled records, after looking up (when the registry is up)
/// the schema ids the listings do not name.
fn classify_samples(
    client: &RegistryClient,
    cfg: &RegistryConfig,
    mem: &mut Memory,
    now: SystemTime,
    up: bool,
) -> BTreeMap<String, SampleCounts> {
    let listed: HashSet<u32> = mem.inventory.as_ref().map(|i| i.ids.clone()).unwrap_or_default();
    if up {
        look_up_ids(client, cfg, &listed, mem, now);
    }
    let known = |id: u32| {
        if listed.contains(&id) {
            Some(true)
        } else {
            mem.ids.get(&id).map(|k| k.known)
        }
    };
    mem.samples
        .iter()
        .map(|(t, s)| (t.clone(), wire::classify(s.framings.iter(), known)))
        .collect()
}

/// Starts the registry task of a cluster (when it has a `schema_registry` section), reading
/// the cluster's Kafka snapshots from `kafka`. Returns the slot it publishes to, which the
/// collectors read, and the task, which stops when `shutdown` turns true.
pub fn spawn(
    cluster: &ClusterConfig,
    client_errors: &ClientErrors,
    kafka: SnapshotSlot,
    shutdown: watch::Receiver<bool>,
) -> Option<(RegistrySlot, tokio::task::JoinHandle<()>)> {
    let cfg = cluster.schema_registry.clone()?;
    let slot: RegistrySlot = Arc::new(ArcSwap::from_pointee(RegistrySnapshot::empty(cfg.subject_labels)));
    tracing::info!(
        cluster = cluster.name.as_str(),
        urls = cfg.urls.join(",").as_str(),
        interval = %humantime::format_duration(cfg.interval),
        "watching schema registry"
    );
    let task = tokio::spawn(run(
        Arc::new(cluster.clone()),
        client_errors.clone(),
        Arc::new(cfg),
        kafka,
        Arc::clone(&slot),
        shutdown,
    ));
    Some((slot, task))
}

async fn run(
    cluster: Arc<ClusterConfig>,
    client_errors: ClientErrors,
    cfg: Arc<RegistryConfig>,
    kafka: SnapshotSlot,
    slot: RegistrySlot,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let client = Arc::new(RegistryClient::new(&cfg));
    let fresh = || {
        Box::new(Memory {
            client_errors: client_errors.clone(),
            ..Memory::default()
        })
    };
    let mut memory = Some(fresh());
    let name = cluster.name.as_str();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let Some(mut mem) = memory.take() else { break };
        let (client, cluster, cfg) = (Arc::clone(&client), Arc::clone(&cluster), Arc::clone(&cfg));
        let kafka_snapshot = kafka.load_full();
        let job = tokio::task::spawn_blocking(move || {
            let snap = poll(&client, &cluster, &cfg, &kafka_snapshot, &mut mem);
            (snap, mem)
        });
        let (snapshot, mem) = tokio::select! {
            r = job => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(cluster = name, error = %e, "schema registry poll panicked; caches reset");
                    memory = Some(fresh());
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        memory = Some(mem);
        slot.store(Arc::new(snapshot));
    }
    tracing::debug!(cluster = name, "schema registry task stopped");
}
