//! Cardinality guard: a ceiling on the series of the snapshot areas (`global.max_series`).
//!
//! For each new set of snapshots the areas that are cached per cycle (Kafka state: cluster,
//! partitions, groups, compliance) are encoded once more into a counter of samples per family.
//! When the total exceeds the limit, whole families are dropped, largest first (ties by name),
//! until the rest fits: a family is either complete or absent, so `sum()` or `count()` over a
//! family is never silently partial, and the families dropped first are the most granular ones
//! (per partition, per group and partition) while topic and cluster aggregates stay. The
//! exporter's own families (`kafka_slo_exporter_*`), the probe's and the registry's are encoded
//! per scrape, are not counted and are never dropped.
//!
//! The plan is applied while encoding ([`FamilyFilter`]), in both formats, and published as
//! self-metrics by [`GuardArea`]; a warning is logged at most once per [`WARN_EVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter_family, gauge_family, Area, NO_LABELS};
use crate::snapshot::ClusterSnapshot;

/// Minimum time between two warnings about dropped series.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Families that are never counted nor dropped.
const EXEMPT_PREFIX: &str = "kafka_slo_exporter_";

/// Which families of one set of snapshots are left out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Families dropped by the limit (name as in OpenMetrics, without `_total`/`_info`) and
    /// their series.
    pub dropped: BTreeMap<String, usize>,
    /// Series left in the output of the snapshot areas.
    pub kept: usize,
    /// Families the selection (`global.metrics`) does not serve, by family key.
    pub hidden: BTreeSet<&'static str>,
}

impl Plan {
    /// Leaves out only what the selection does not serve.
    pub fn hiding(hidden: &BTreeSet<&'static str>) -> Plan {
        Plan {
            hidden: hidden.clone(),
            ..Plan::default()
        }
    }

    /// Leaves out `hidden`, then drops whole families, largest first (ties by name), until at
    /// most `limit` series remain.
    pub fn new(counts: &BTreeMap<String, usize>, limit: usize, hidden: &BTreeSet<&'static str>) -> Plan {
        let counts: BTreeMap<&String, &usize> = counts.iter().filter(|(f, _)| !hidden.contains(f.as_str())).collect();
        let mut kept: usize = counts.values().copied().sum();
        let mut dropped = BTreeMap::new();
        if kept > limit {
            let mut by_size: Vec<(&String, &usize)> = counts
                .iter()
                .map(|(k, v)| (*k, *v))
                .filter(|(name, _)| !name.starts_with(EXEMPT_PREFIX))
                .collect();
            by_size.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            for (name, n) in by_size {
                if kept <= limit {
                    break;
                }
                kept -= n;
                dropped.insert(name.clone(), *n);
            }
        }
        Plan {
            dropped,
            kept,
            hidden: hidden.clone(),
        }
    }

    fn drops(&self, family: &str) -> bool {
        self.dropped.contains_key(family) || self.hidden.contains(family)
    }

    /// True when the plan leaves nothing out.
    pub fn is_empty(&self) -> bool {
        self.dropped.is_empty() && self.hidden.is_empty()
    }

    pub fn dropped_series(&self) -> usize {
        self.dropped.values().sum()
    }
}

/// The family a metadata line (`# HELP name ...`, `# TYPE`, `# UNIT`) is about, with the
/// suffixes only one of the two formats puts there removed; `None` for other lines.
fn family_of(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .or_else(|| line.strip_prefix("# UNIT "))?;
    let name = rest.split(' ').next().unwrap_or(rest);
    Some(
        name.strip_suffix("_total")
            .or_else(|| name.strip_suffix("_info"))
            .unwrap_or(name),
    )
}

/// A writer between the encoder and the output that follows the exposition line by line:
/// it counts samples per family and, with a plan, leaves out the lines of dropped families.
pub struct FamilyFilter<'a, W> {
    inner: W,
    plan: Option<&'a Plan>,
    line: String,
    family: String,
    dropping: bool,
    counts: BTreeMap<String, usize>,
}

impl<'a, W: std::fmt::Write> FamilyFilter<'a, W> {
    pub fn new(inner: W, plan: Option<&'a Plan>) -> Self {
        Self {
            inner,
            plan,
            line: String::new(),
            family: String::new(),
            dropping: false,
            counts: BTreeMap::new(),
        }
    }

    /// Samples seen per family, and the inner writer.
    pub fn finish(mut self) -> Result<(BTreeMap<String, usize>, W), std::fmt::Error> {
        if !self.line.is_empty() {
            self.end_line()?;
        }
        Ok((self.counts, self.inner))
    }

    fn end_line(&mut self) -> std::fmt::Result {
        if let Some(family) = family_of(&self.line) {
            if family != self.family {
                self.family = family.to_string();
                self.dropping = self.plan.is_some_and(|p| p.drops(family));
            }
        } else if !self.line.starts_with('#') && !self.line.trim().is_empty() {
            *self.counts.entry(self.family.clone()).or_default() += 1;
        }
        if !self.dropping {
            self.inner.write_str(&self.line)?;
        }
        self.line.clear();
        Ok(())
    }
}

impl<W: std::fmt::Write> std::fmt::Write for FamilyFilter<'_, W> {
    fn write_str(&mut self, mut s: &str) -> std::fmt::Result {
        while let Some(i) = s.find('\n') {
            self.line.push_str(&s[..=i]);
            self.end_line()?;
            s = &s[i + 1..];
        }
        self.line.push_str(s);
        Ok(())
    }
}

/// Drops the output, for counting.
pub struct Sink;

impl std::fmt::Write for Sink {
    fn write_str(&mut self, _: &str) -> std::fmt::Result {
        Ok(())
    }
}

/// The limit, the plan of the newest set of snapshots and the counters of the self-metrics.
#[derive(Debug)]
pub struct SeriesGuard {
    limit: usize,
    state: Mutex<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    /// The snapshots the plan was made for.
    key: Vec<Arc<ClusterSnapshot>>,
    plan: Arc<Plan>,
    dropped_total: BTreeMap<String, u64>,
    last_warning: Option<Instant>,
}

impl SeriesGuard {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            state: Mutex::new(GuardState::default()),
        }
    }

    /// The plan for `clusters`, made with `count` (which encodes the snapshot areas and returns
    /// samples per family) the first time this set of snapshots is seen.
    pub fn plan(
        &self,
        clusters: &[Arc<ClusterSnapshot>],
        hidden: &BTreeSet<&'static str>,
        count: impl FnOnce() -> Result<BTreeMap<String, usize>, String>,
    ) -> Result<Arc<Plan>, String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let same = state.key.len() == clusters.len() && state.key.iter().zip(clusters).all(|(a, b)| Arc::ptr_eq(a, b));
        if same && !state.key.is_empty() {
            return Ok(Arc::clone(&state.plan));
        }
        let plan = Arc::new(Plan::new(&count()?, self.limit, hidden));
        for (family, n) in &plan.dropped {
            *state.dropped_total.entry(family.clone()).or_default() += *n as u64;
        }
        if !plan.dropped.is_empty() && state.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            state.last_warning = Some(Instant::now());
            tracing::warn!(
                limit = self.limit,
                dropped_series = plan.dropped_series(),
                families = plan.dropped.keys().cloned().collect::<Vec<_>>().join(","),
                "series over global.max_series: whole families left out of /metrics, largest first"
            );
        }
        state.key = clusters.to_vec();
        state.plan = Arc::clone(&plan);
        Ok(plan)
    }
}

/// Self-metrics of the guard.
#[derive(Debug)]
pub struct GuardArea(pub Arc<SeriesGuard>);

impl Area for GuardArea {
    /// Reads the plan the cached areas were encoded with, which changes with each cycle.
    fn scrape_time(&self) -> bool {
        true
    }

    fn encode(&self, _: &[Arc<ClusterSnapshot>], _: SystemTime, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let (plan, totals) = {
            let state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
            (Arc::clone(&state.plan), state.dropped_total.clone())
        };
        let limit = std::iter::once((NO_LABELS, self.0.limit as f64));
        gauge_family(
            enc,
            "kafka_slo_exporter_series_limit",
            "Ceiling on the series of the Kafka state families (global.max_series).",
            None,
            limit,
        )?;
        let kept = std::iter::once((NO_LABELS, plan.kept as f64));
        gauge_family(
            enc,
            "kafka_slo_exporter_series",
            "Series of the Kafka state families in the current output, after the limit.",
            None,
            kept,
        )?;
        let dropped = plan.dropped.iter().map(|(f, n)| ([("family", f.as_str())], *n as f64));
        gauge_family(
            enc,
            "kafka_slo_exporter_dropped_series",
            "Series of the family left out of the current output by the limit.",
            None,
            dropped,
        )?;
        let totals = totals.iter().map(|(f, n)| ([("family", f.as_str())], *n));
        counter_family(
            enc,
            "kafka_slo_exporter_series_dropped",
            "Series left out by the limit, summed over the collection cycles (each set of snapshots counts once).",
            None,
            totals,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn under_the_limit_nothing_is_dropped() {
        let c = counts(&[("kafka_partition_leader", 10), ("kafka_brokers", 1)]);
        assert_eq!(
            Plan::new(&c, 11, &BTreeSet::new()),
            Plan {
                dropped: BTreeMap::new(),
                kept: 11,
                hidden: BTreeSet::new(),
            }
        );
    }

    #[test]
    fn largest_families_go_first_ties_by_name() {
        let c = counts(&[
            ("kafka_partition_leader", 100),
            ("kafka_partition_replicas", 100),
            ("kafka_topic_partitions", 10),
            ("kafka_brokers", 1),
        ]);
        let p = Plan::new(&c, 150, &BTreeSet::new());
        assert_eq!(p.dropped, counts(&[("kafka_partition_leader", 100)]));
        assert_eq!(p.kept, 111);
        let p = Plan::new(&c, 50, &BTreeSet::new());
        assert_eq!(
            p.dropped,
            counts(&[("kafka_partition_leader", 100), ("kafka_partition_replicas", 100)])
        );
        assert_eq!(p.kept, 11);
        // Deterministic: the same input gives the same plan.
        assert_eq!(Plan::new(&c, 50, &BTreeSet::new()), p);
    }

    #[test]
    fn hidden_families_are_left_out_before_the_limit_counts() {
        let c = counts(&[
            ("kafka_partition_high_watermark", 100),
            ("kafka_partition_leader", 50),
            ("kafka_brokers", 1),
        ]);
        let hidden: BTreeSet<&'static str> = ["kafka_partition_high_watermark"].into();
        let p = Plan::new(&c, 60, &hidden);
        assert!(p.dropped.is_empty(), "{p:?}");
        assert_eq!(p.kept, 51);
        assert!(p.drops("kafka_partition_high_watermark") && !p.drops("kafka_partition_leader"));
        let p = Plan::new(&c, 10, &hidden);
        assert_eq!(p.dropped, counts(&[("kafka_partition_leader", 50)]));
        assert_eq!(p.kept, 1);
    }

    #[test]
    fn self_metrics_are_never_dropped() {
        let c = counts(&[("kafka_slo_exporter_x", 1000), ("kafka_brokers", 1)]);
        let p = Plan::new(&c, 10, &BTreeSet::new());
        assert_eq!(p.dropped, counts(&[("kafka_brokers", 1)]));
        assert_eq!(p.kept, 1000);
    }

    const TEXT: &str = "# HELP kafka_brokers Brokers.\n# TYPE kafka_brokers gauge\nkafka_brokers{cluster=\"a\"} 3\n\
# HELP kafka_partition_leader Leader.\n# TYPE kafka_partition_leader gauge\n\
kafka_partition_leader{cluster=\"a\",topic=\"t\",partition=\"0\"} 1\n\
kafka_partition_leader{cluster=\"a\",topic=\"t\",partition=\"1\"} 2\n\
# HELP kafka_broker_info Broker.\n# TYPE kafka_broker_info gauge\nkafka_broker_info{broker_id=\"1\"} 1\n\
# HELP kafka_slo_exporter_record_reads_total Reads.\n# TYPE kafka_slo_exporter_record_reads_total counter\n\
kafka_slo_exporter_record_reads_total 4\n";

    /// Feeds `text` in uneven pieces, as the encoder does.
    fn feed(f: &mut impl std::fmt::Write, text: &str) {
        let mut rest = text;
        let mut n = 1;
        while !rest.is_empty() {
            let cut = rest.char_indices().nth(n).map(|(i, _)| i).unwrap_or(rest.len());
            f.write_str(&rest[..cut]).unwrap();
            rest = &rest[cut..];
            n = n % 7 + 3;
        }
    }

    #[test]
    fn counting_sees_samples_per_family_in_both_formats() {
        let mut f = FamilyFilter::new(Sink, None);
        feed(&mut f, TEXT);
        let (c, _) = f.finish().unwrap();
        assert_eq!(
            c,
            counts(&[
                ("kafka_broker", 1),
                ("kafka_brokers", 1),
                ("kafka_partition_leader", 2),
                ("kafka_slo_exporter_record_reads", 1)
            ])
        );
        // OpenMetrics names counters and infos without the suffix in the metadata.
        let om = "# HELP kafka_broker Broker.\n# TYPE kafka_broker info\nkafka_broker_info{broker_id=\"1\"} 1\n";
        let mut f = FamilyFilter::new(Sink, None);
        feed(&mut f, om);
        assert_eq!(f.finish().unwrap().0, counts(&[("kafka_broker", 1)]));
    }

    #[test]
    fn a_dropped_family_leaves_no_line_behind() {
        let plan = Plan::new(
            &counts(&[("kafka_partition_leader", 2), ("kafka_brokers", 1)]),
            1,
            &BTreeSet::new(),
        );
        let mut f = FamilyFilter::new(String::new(), Some(&plan));
        feed(&mut f, TEXT);
        let (_, out) = f.finish().unwrap();
        assert!(!out.contains("kafka_partition_leader"), "{out}");
        let mut expected = String::new();
        for l in TEXT.lines().filter(|l| !l.contains("kafka_partition_leader")) {
            writeln!(expected, "{l}").unwrap();
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn the_plan_is_made_once_per_set_of_snapshots_and_counted_once() {
        let guard = SeriesGuard::new(1);
        let snap = Arc::new(ClusterSnapshot::empty("a", &[], crate::config::Granularity::Partition));
        let set = vec![Arc::clone(&snap)];
        let c = counts(&[("kafka_partition_leader", 5), ("kafka_brokers", 1)]);
        let p1 = guard.plan(&set, &BTreeSet::new(), || Ok(c.clone())).unwrap();
        let p2 = guard
            .plan(&set, &BTreeSet::new(), || panic!("must not recount the same snapshots"))
            .unwrap();
        assert!(Arc::ptr_eq(&p1, &p2));
        let set2 = vec![Arc::new(ClusterSnapshot::empty(
            "a",
            &[],
            crate::config::Granularity::Partition,
        ))];
        guard.plan(&set2, &BTreeSet::new(), || Ok(c.clone())).unwrap();
        let state = guard.state.lock().unwrap();
        assert_eq!(state.dropped_total.get("kafka_partition_leader"), Some(&10));
    }
}
