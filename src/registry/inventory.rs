//! The registry's inventory, folded from paged listings and cached per-subject answers (pure).
//!
//! Listings (`/subjects`, `/schemas`, `/config`, `/mode`, `/contexts`) are read in full every
//! poll. What needs one request per subject — its compatibility level always, and its version
//! count and latest schema type on registries whose `/schemas` does not name subjects
//! (Apicurio) — is cached in [`SubjectDetail`] and refreshed a bounded number per poll.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use super::client::SchemaEntry;

/// Compatibility levels of the Confluent API; each is exported, 0 when unused.
pub const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

/// Schema types of the Confluent API; each is exported, 0 when unused.
pub const TYPES: [&str; 3] = ["AVRO", "PROTOBUF", "JSON"];

/// A subject's compatibility as its `/config/{subject}` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectCompatibility {
    /// The subject has its own level (or the registry answers with the effective level).
    Level(String),
    /// No subject-level setting (404): the global level applies.
    Global,
}

/// What the per-subject requests told about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDetail {
    pub fetched_at: SystemTime,
    pub compatibility: Option<SubjectCompatibility>,
    /// Live versions (from `/subjects/{s}/versions`; only when `/schemas` names no subjects).
    pub versions: Option<usize>,
    /// Type of the latest version (from `/subjects/{s}/versions/latest`, idem).
    pub latest_type: Option<String>,
    /// Schema id of the latest version (idem).
    pub latest_id: Option<i64>,
}

/// Everything read from the listings of one poll.
#[derive(Debug, Clone, Default)]
pub struct Listings {
    pub live_subjects: Vec<String>,
    /// Live and soft-deleted subjects.
    pub all_subjects: Vec<String>,
    /// `None` when the registry has no `GET /schemas`.
    pub schemas_live: Option<Vec<SchemaEntry>>,
    pub schemas_all: Option<Vec<SchemaEntry>>,
    pub global_compatibility: Option<String>,
    pub mode: Option<String>,
    /// `None` when the registry has no contexts.
    pub contexts: Option<usize>,
}

impl Listings {
    /// True when `/schemas` entries name their subject and version (Confluent, Karapace), so
    /// versions and latest types need no per-subject requests.
    pub fn schemas_name_subjects(&self) -> bool {
        match &self.schemas_all {
            Some(all) => all.iter().all(|e| e.subject.is_some() && e.version.is_some()),
            None => false,
        }
    }
}

/// The registry's state as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// When the listings were read.
    pub at: SystemTime,
    pub subjects_live: usize,
    pub subjects_soft_deleted: usize,
    /// Schema versions in total; `None` when the registry cannot list them.
    pub versions_live: Option<usize>,
    pub versions_soft_deleted: Option<usize>,
    /// Live versions per live subject, where known.
    pub subject_versions: BTreeMap<String, usize>,
    /// Live subjects by the type of their latest version (missing type = AVRO).
    pub latest_types: BTreeMap<String, usize>,
    pub global_compatibility: Option<String>,
    pub mode: Option<String>,
    /// Live subjects by effective compatibility level.
    pub by_compatibility: BTreeMap<String, usize>,
    /// Live subjects whose compatibility or latest version is not known yet.
    pub unresolved: usize,
    pub contexts: Option<usize>,
    /// Live subject names.
    pub subjects: BTreeSet<String>,
    /// Schema ids the listings name (soft-deleted included).
    pub ids: std::collections::HashSet<u32>,
}

/// A schema type as exported: upper case, AVRO when absent (the API's default).
pub fn schema_type(t: Option<&str>) -> String {
    match t {
        None | Some("") => "AVRO".to_string(),
        Some(t) => t.to_ascii_uppercase(),
    }
}

/// Subjects due for per-subject requests: never fetched first (in name order), then those
/// fetched longer than `refresh` ago (oldest first); at most `budget`.
pub fn subjects_due(
    live: &[String],
    cache: &HashMap<String, SubjectDetail>,
    now: SystemTime,
    refresh: Duration,
    budget: usize,
) -> Vec<String> {
    let mut fresh: Vec<&String> = Vec::new();
    let mut stale: Vec<(SystemTime, &String)> = Vec::new();
    for s in live {
        match cache.get(s) {
            None => fresh.push(s),
            Some(d) if now.duration_since(d.fetched_at).unwrap_or_default() >= refresh => stale.push((d.fetched_at, s)),
            Some(_) => {}
        }
    }
    fresh.sort();
    stale.sort();
    fresh
        .into_iter()
        .chain(stale.into_iter().map(|(_, s)| s))
        .take(budget)
        .cloned()
        .collect()
}

/// Folds the listings and the per-subject cache into the inventory.
pub fn build(listings: &Listings, cache: &HashMap<String, SubjectDetail>, at: SystemTime) -> Inventory {
    let subjects: BTreeSet<String> = listings.live_subjects.iter().cloned().collect();
    let all: BTreeSet<&String> = listings.all_subjects.iter().chain(subjects.iter()).collect();
    let subjects_soft_deleted = all.len() - subjects.len();
    let (subject_versions, latest_types, mut unresolved) = versions_and_types(listings, cache, &subjects);
    let by_compatibility = compatibility_levels(listings, cache, &subjects, &mut unresolved);
    let (versions_live, versions_soft_deleted) = match (&listings.schemas_live, &listings.schemas_all) {
        (Some(live), Some(all)) => (Some(live.len()), Some(all.len().saturating_sub(live.len()))),
        _ if unresolved.is_empty() => (Some(subject_versions.values().sum()), None),
        _ => (None, None),
    };
    let unresolved = unresolved.len();
    Inventory {
        at,
        subjects_live: subjects.len(),
        subjects_soft_deleted,
        versions_live,
        versions_soft_deleted,
        subject_versions,
        latest_types,
        global_compatibility: listings.global_compatibility.clone(),
        mode: listings.mode.clone(),
        by_compatibility,
        unresolved,
        contexts: listings.contexts,
        ids: known_ids(listings, cache),
        subjects,
    }
}

/// Versions and latest type of each live subject, from `/schemas` where it names subjects,
/// else from the per-subject look-ups; and the subjects not looked up yet.
fn versions_and_types<'s>(
    listings: &Listings,
    cache: &HashMap<String, SubjectDetail>,
    subjects: &'s BTreeSet<String>,
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>, BTreeSet<&'s String>) {
    let mut subject_versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut latest_types: BTreeMap<String, usize> = TYPES.iter().map(|t| (t.to_string(), 0)).collect();
    let mut unresolved: BTreeSet<&String> = BTreeSet::new();
    if listings.schemas_name_subjects() {
        // (subject) → (versions, latest version, its type)
        let mut per: BTreeMap<&str, (usize, i64, Option<&str>)> = BTreeMap::new();
        for e in listings.schemas_live.iter().flatten() {
            let (Some(s), Some(v)) = (e.subject.as_deref(), e.version) else {
                continue;
            };
            let entry = per.entry(s).or_insert((0, i64::MIN, None));
            entry.0 += 1;
            if v > entry.1 {
                entry.1 = v;
                entry.2 = e.schema_type.as_deref();
            }
        }
        for s in subjects {
            if let Some((n, _, t)) = per.get(s.as_str()) {
                subject_versions.insert(s.clone(), *n);
                *latest_types.entry(schema_type(*t)).or_default() += 1;
            }
        }
    } else {
        for s in subjects {
            match cache.get(s) {
                Some(SubjectDetail {
                    versions: Some(n),
                    latest_type,
                    ..
                }) => {
                    subject_versions.insert(s.clone(), *n);
                    *latest_types.entry(schema_type(latest_type.as_deref())).or_default() += 1;
                }
                _ => {
                    unresolved.insert(s);
                }
            }
        }
    }
    (subject_versions, latest_types, unresolved)
}

/// Live subjects by effective compatibility level; subjects whose level is not known yet are
/// added to `unresolved`.
fn compatibility_levels<'s>(
    listings: &Listings,
    cache: &HashMap<String, SubjectDetail>,
    subjects: &'s BTreeSet<String>,
    unresolved: &mut BTreeSet<&'s String>,
) -> BTreeMap<String, usize> {
    let mut by_compatibility: BTreeMap<String, usize> = LEVELS.iter().map(|l| (l.to_string(), 0)).collect();
    for s in subjects {
        let level = match cache.get(s).and_then(|d| d.compatibility.as_ref()) {
            Some(SubjectCompatibility::Level(l)) => Some(l.as_str()),
            Some(SubjectCompatibility::Global) => listings.global_compatibility.as_deref(),
            None => None,
        };
        match level {
            Some(l) => *by_compatibility.entry(l.to_string()).or_default() += 1,
            None => {
                unresolved.insert(s);
            }
        }
    }
    by_compatibility
}

/// Schema ids the listings or the per-subject look-ups name (soft-deleted included).
fn known_ids(listings: &Listings, cache: &HashMap<String, SubjectDetail>) -> std::collections::HashSet<u32> {
    let mut ids: std::collections::HashSet<u32> = listings
        .schemas_all
        .iter()
        .flatten()
        .filter_map(|e| e.id)
        .filter_map(|id| u32::try_from(id).ok())
        .collect();
    ids.extend(
        cache
            .values()
            .filter_map(|d| d.latest_id)
            .filter_map(|id| u32::try_from(id).ok()),
    );
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: Option<&str>, version: Option<i64>, id: Option<i64>, t: Option<&str>) -> SchemaEntry {
        SchemaEntry {
            subject: subject.map(str::to_string),
            version,
            id,
            schema_type: t.map(str::to_string),
            schema_hash: 0,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn detail(compat: Option<SubjectCompatibility>, versions: Option<usize>, t: Option<&str>) -> SubjectDetail {
        SubjectDetail {
            fetched_at: t0(),
            compatibility: compat,
            versions,
            latest_type: t.map(str::to_string),
            latest_id: None,
        }
    }

    #[test]
    fn confluent_style_listing_gives_versions_and_types() {
        let listings = Listings {
            live_subjects: names(&["a-value", "b-value", "c-value"]),
            all_subjects: names(&["a-value", "b-value", "c-value", "gone-value"]),
            schemas_live: Some(vec![
                entry(Some("a-value"), Some(1), Some(1), None),
                entry(Some("a-value"), Some(2), Some(2), Some("AVRO")),
                entry(Some("b-value"), Some(1), Some(3), Some("PROTOBUF")),
                entry(Some("c-value"), Some(3), Some(5), Some("json")),
            ]),
            schemas_all: Some(vec![
                entry(Some("a-value"), Some(1), Some(1), None),
                entry(Some("a-value"), Some(2), Some(2), Some("AVRO")),
                entry(Some("b-value"), Some(1), Some(3), Some("PROTOBUF")),
                entry(Some("c-value"), Some(3), Some(5), Some("json")),
                entry(Some("gone-value"), Some(1), Some(4), None),
                entry(Some("c-value"), Some(1), Some(6), None),
            ]),
            global_compatibility: Some("BACKWARD".into()),
            mode: Some("READWRITE".into()),
            contexts: Some(1),
        };
        assert!(listings.schemas_name_subjects());
        let mut cache = HashMap::new();
        cache.insert(
            "a-value".to_string(),
            detail(Some(SubjectCompatibility::Global), None, None),
        );
        cache.insert(
            "b-value".to_string(),
            detail(Some(SubjectCompatibility::Level("NONE".into())), None, None),
        );
        let inv = build(&listings, &cache, t0());
        assert_eq!((inv.subjects_live, inv.subjects_soft_deleted), (3, 1));
        assert_eq!((inv.versions_live, inv.versions_soft_deleted), (Some(4), Some(2)));
        assert_eq!(inv.subject_versions["a-value"], 2);
        assert_eq!(inv.subject_versions["c-value"], 1);
        assert_eq!(inv.latest_types["AVRO"], 1);
        assert_eq!(inv.latest_types["PROTOBUF"], 1);
        assert_eq!(inv.latest_types["JSON"], 1);
        assert_eq!(inv.by_compatibility["BACKWARD"], 1);
        assert_eq!(inv.by_compatibility["NONE"], 1);
        assert_eq!(inv.by_compatibility["FULL"], 0);
        // c-value's compatibility is not fetched yet.
        assert_eq!(inv.unresolved, 1);
        assert_eq!(inv.ids.len(), 6);
    }

    #[test]
    fn apicurio_style_listing_uses_the_subject_cache() {
        let listings = Listings {
            live_subjects: names(&["a-value", "b-value"]),
            all_subjects: names(&["a-value", "b-value", "gone-value"]),
            schemas_live: Some(vec![entry(None, None, None, None); 3]),
            schemas_all: Some(vec![entry(None, None, None, None); 4]),
            global_compatibility: Some("NONE".into()),
            ..Default::default()
        };
        assert!(!listings.schemas_name_subjects());
        let mut cache = HashMap::new();
        cache.insert(
            "a-value".to_string(),
            detail(Some(SubjectCompatibility::Level("FULL".into())), Some(2), None),
        );
        let inv = build(&listings, &cache, t0());
        assert_eq!((inv.versions_live, inv.versions_soft_deleted), (Some(3), Some(1)));
        assert_eq!(inv.subject_versions.get("a-value"), Some(&2));
        assert_eq!(inv.latest_types["AVRO"], 1);
        assert_eq!(inv.by_compatibility["FULL"], 1);
        assert_eq!(inv.unresolved, 1, "b-value not fetched yet");

        cache.insert(
            "b-value".to_string(),
            detail(Some(SubjectCompatibility::Global), Some(1), Some("PROTOBUF")),
        );
        let inv = build(&listings, &cache, t0());
        assert_eq!(inv.unresolved, 0);
        assert_eq!(inv.by_compatibility["NONE"], 1);
        assert_eq!(inv.latest_types["PROTOBUF"], 1);
    }

    #[test]
    fn without_schemas_listing_totals_come_from_subjects() {
        let listings = Listings {
            live_subjects: names(&["a-value"]),
            all_subjects: names(&["a-value"]),
            ..Default::default()
        };
        let mut cache = HashMap::new();
        assert_eq!(build(&listings, &cache, t0()).versions_live, None);
        cache.insert(
            "a-value".to_string(),
            detail(Some(SubjectCompatibility::Level("FULL".into())), Some(3), None),
        );
        let inv = build(&listings, &cache, t0());
        assert_eq!((inv.versions_live, inv.versions_soft_deleted), (Some(3), None));
    }

    #[test]
    fn due_subjects_new_first_then_oldest_within_budget() {
        let live = names(&["d", "c", "b", "a"]);
        let now = t0() + Duration::from_secs(1000);
        let mut cache = HashMap::new();
        let at = |secs: u64| SubjectDetail {
            fetched_at: t0() + Duration::from_secs(secs),
            ..detail(None, None, None)
        };
        cache.insert("a".to_string(), at(100)); // 900s old
        cache.insert("b".to_string(), at(0)); // 1000s old
        cache.insert("c".to_string(), at(900)); // fresh
        cache.insert("gone".to_string(), at(0)); // not live: ignored
        let refresh = Duration::from_secs(600);
        assert_eq!(subjects_due(&live, &cache, now, refresh, 10), vec!["d", "b", "a"]);
        assert_eq!(subjects_due(&live, &cache, now, refresh, 2), vec!["d", "b"]);
        assert!(subjects_due(&live, &cache, now, refresh, 0).is_empty());
    }

    #[test]
    fn types_default_to_avro() {
        assert_eq!(schema_type(None), "AVRO");
        assert_eq!(schema_type(Some("")), "AVRO");
        assert_eq!(schema_type(Some("protobuf")), "PROTOBUF");
    }
}
