//! The rendered `/metrics` body.
//!
//! Prometheus asks for gzip. Compressing the text of a large cluster (hundreds of thousands of
//! series) costs far more than encoding or sending it, and the data only changes once per
//! collection cycle. So the gzip form of the areas is made once per new set of snapshots and
//! format, and every gzip scrape until the next cycle gets those bytes. Areas that depend on the
//! scrape time ([`Area::scrape_time`], e.g. data ages) are encoded and compressed on every
//! scrape, from the same snapshots as the cached part, and spliced in at their place in the
//! area order: every part is compressed on its own as a raw deflate stream that ends on a byte
//! boundary without a final block (a full flush), so the parts can be concatenated between one
//! gzip header and one trailer, with a CRC-32 combined from the parts'. A fresh compressor per
//! part means no back-reference crosses a part boundary.
//!
//! The uncompressed text is encoded for each request straight into the response (tens of
//! milliseconds for 200,000 series): caching it would keep as many bytes again resident for
//! clients other than Prometheus.
//!
//! While one scrape compresses a new set of snapshots, concurrent scrapes of the same format
//! get the previous complete rendering instead of waiting; a response always renders one
//! whole publication of each cluster's snapshot (within a cycle a publication may carry some
//! stages' results before the others'), never parts of two.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use flate2::{Compress, Compression, Crc, FlushCompress};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, text, DescriptorEncoder};
use prometheus_client::registry::Registry;

use super::guard::{FamilyFilter, Plan, SeriesGuard, Sink};
use super::Area;
use crate::snapshot::ClusterSnapshot;
use crate::snapshot::SnapshotSlot;

/// Exposition format of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text 1.0.0 (ends with `# EOF`).
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Prometheus,
}

/// Compression level of the gzip form, redone once per snapshot. On the benchmark's 34,000
/// series (3.1 MB of text) level 4 is where this deflate implementation switches to its lazy
/// matcher: 124 KB in 8 ms, against 139 KB in 10 ms at level 3 and 123 KB in 25 ms at level 6.
const GZIP_LEVEL: u32 = 4;

/// The `/metrics` output of every cluster, rendered from the current snapshots.
#[derive(Debug)]
pub struct Exposition {
    slots: Vec<SnapshotSlot>,
    areas: Arc<[Box<dyn Area>]>,
    /// Runs of consecutive areas, in output order, with whether they are encoded per scrape.
    runs: Vec<(Range<usize>, bool)>,
    cache: Mutex<Cache>,
    /// The series limit, when one is configured.
    guard: Option<Arc<SeriesGuard>>,
    /// The families the selection does not serve; `None` when it serves every one.
    hiding: Option<Arc<Plan>>,
}

#[derive(Debug, Default)]
struct Cache {
    /// The rendering of the newest snapshots seen (its formats are filled on demand).
    current: Option<Arc<Rendering>>,
    /// The one before, served while `current` is being filled.
    previous: Option<Arc<Rendering>>,
}

/// The cached gzip parts of one set of snapshots, per format.
#[derive(Debug)]
struct Rendering {
    clusters: Arc<[Arc<ClusterSnapshot>]>,
    variants: [Variant; 2],
}

#[derive(Debug, Default)]
struct Variant {
    parts: OnceLock<Result<Vec<Part>, String>>,
    /// Set by the scrape that fills `parts`.
    claimed: AtomicBool,
}

/// One run of areas: cached compressed bytes, or areas encoded per scrape.
#[derive(Debug)]
enum Part {
    Cached(Chunk),
    Live(Range<usize>),
}

/// Raw-deflate text with the CRC and length of the text.
#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    crc: Crc,
}

impl Rendering {
    fn new(clusters: Arc<[Arc<ClusterSnapshot>]>) -> Self {
        Self {
            clusters,
            variants: Default::default(),
        }
    }

    fn is_of(&self, clusters: &[Arc<ClusterSnapshot>]) -> bool {
        self.clusters.len() == clusters.len() && self.clusters.iter().zip(clusters).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

fn variant_index(format: Format) -> usize {
    match format {
        Format::OpenMetrics => 0,
        Format::Prometheus => 1,
    }
}

impl Exposition {
    pub fn new(slots: Vec<SnapshotSlot>, areas: Vec<Box<dyn Area>>) -> Self {
        let mut runs: Vec<(Range<usize>, bool)> = Vec::new();
        for (i, area) in areas.iter().enumerate() {
            let live = area.scrape_time();
            match runs.last_mut() {
                Some((range, l)) if *l == live => range.end = i + 1,
                _ => runs.push((i..i + 1, live)),
            }
        }
        Self {
            slots,
            areas: areas.into(),
            runs,
            cache: Mutex::new(Cache::default()),
            guard: None,
            hiding: None,
        }
    }

    /// Leaves out the families `selection` does not serve, from every area. The areas with
    /// many series skip them while encoding already; this also covers the others.
    pub fn with_selection(mut self, selection: &crate::families::Selection) -> Self {
        let plan = Plan::hiding(selection.hidden());
        self.hiding = Some(Arc::new(plan)).filter(|p| !p.is_empty());
        self
    }

    /// Applies `guard`'s series limit to the areas that are cached per set of snapshots.
    pub fn with_guard(mut self, guard: Arc<SeriesGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// What to leave out of the cached areas of `clusters`: the hidden families and the
    /// guard's drops (`None` when nothing is left out).
    fn plan(&self, clusters: &Arc<[Arc<ClusterSnapshot>]>) -> Result<Option<Arc<Plan>>, String> {
        let Some(guard) = &self.guard else {
            return Ok(self.hiding.clone());
        };
        let hidden = self.hiding.as_ref().map(|p| p.hidden.clone()).unwrap_or_default();
        let plan = guard.plan(clusters, &hidden, || {
            let now = SystemTime::now();
            let mut counter = FamilyFilter::new(Sink, None);
            for (range, live) in &self.runs {
                if !*live {
                    let registry = self.registry(clusters, range.clone(), now);
                    encode_registry(&mut counter, &registry, Format::Prometheus)
                        .map_err(|e| format!("counting series: {e}"))?;
                }
            }
            counter
                .finish()
                .map(|(counts, _)| counts)
                .map_err(|e| format!("counting series: {e}"))
        })?;
        Ok(Some(plan).filter(|p| !p.is_empty()))
    }

    /// The gzip response body when the current snapshots are already compressed in `format`
    /// (only the scrape-time areas are encoded then, which is quick); `None` when
    /// [`Self::render`] has work to do.
    pub fn cached(&self, format: Format, gzip: bool) -> Option<Result<Vec<u8>, String>> {
        if !gzip {
            return None;
        }
        let clusters: Vec<Arc<ClusterSnapshot>> = self.slots.iter().map(|s| s.load_full()).collect();
        let rendering = {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.current.clone().filter(|r| r.is_of(&clusters))?
        };
        match rendering.variants[variant_index(format)].parts.get()? {
            Ok(parts) => Some(self.assemble(&rendering, parts, format)),
            Err(e) => Some(Err(e.clone())),
        }
    }

    /// The complete response body in `format`, gzip-compressed when `gzip` is set.
    pub fn render(&self, format: Format, gzip: bool) -> Result<Vec<u8>, String> {
        let clusters: Vec<Arc<ClusterSnapshot>> = self.slots.iter().map(|s| s.load_full()).collect();
        if !gzip {
            return self.plain(clusters.into(), format, SystemTime::now());
        }
        let (rendering, previous) = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if !cache.current.as_ref().is_some_and(|r| r.is_of(&clusters)) {
                let fresh = Arc::new(Rendering::new(clusters.into()));
                cache.previous = cache.current.replace(fresh);
            }
            (cache.current.clone(), cache.previous.clone())
        };
        let Some(rendering) = rendering else {
            return Err("no rendering".into());
        };
        let idx = variant_index(format);
        let variant = &rendering.variants[idx];
        if variant.parts.get().is_none() && variant.claimed.swap(true, Ordering::AcqRel) {
            // Another scrape is encoding this cycle: serve the previous one if it is ready.
            if let Some(prev) = previous.as_ref() {
                if let Some(Ok(parts)) = prev.variants[idx].parts.get() {
                    return self.assemble(prev, parts, format);
                }
            }
        }
        let parts = variant.parts.get_or_init(|| {
            let parts = self.encode_parts(&rendering.clusters, format);
            // The previous rendering has served its purpose once this variant is ready.
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &rendering)) {
                cache.previous = None;
            }
            parts
        });
        match parts {
            Ok(parts) => self.assemble(&rendering, parts, format),
            Err(e) => Err(e.clone()),
        }
    }

    /// The uncompressed body as a scrape at `now` would get it. Data ages depend on the scrape
    /// time, so output that must not change between runs (the golden `/metrics` fixtures)
    /// fixes it.
    pub fn render_plain_at(&self, format: Format, now: SystemTime) -> Result<Vec<u8>, String> {
        let clusters: Vec<Arc<ClusterSnapshot>> = self.slots.iter().map(|s| s.load_full()).collect();
        self.plain(clusters.into(), format, now)
    }

    /// Every area encoded from `clusters` into one uncompressed body.
    fn plain(&self, clusters: Arc<[Arc<ClusterSnapshot>]>, format: Format, now: SystemTime) -> Result<Vec<u8>, String> {
        let plan = self.plan(&clusters)?;
        let registry = self.registry(&clusters, 0..self.areas.len(), now);
        let mut out = String::with_capacity(64 * 1024);
        let fail = |e: std::fmt::Error| format!("encoding metrics: {e}");
        match plan.as_deref() {
            None => encode_registry(&mut out, &registry, format).map_err(fail)?,
            Some(plan) => {
                // The guard only drops families of the cached areas, and hidden families are
                // hidden in every area, so the whole body can be filtered with one plan.
                let mut filter = FamilyFilter::new(&mut out, Some(plan));
                encode_registry(&mut filter, &registry, format).map_err(fail)?;
                filter.finish().map_err(fail)?;
            }
        }
        if format == Format::OpenMetrics {
            text::encode_eof(&mut out).map_err(fail)?;
        }
        Ok(out.into_bytes())
    }

    fn encode_parts(&self, clusters: &Arc<[Arc<ClusterSnapshot>]>, format: Format) -> Result<Vec<Part>, String> {
        // The scrape time only matters to live areas, which are not cached.
        let now = SystemTime::now();
        let plan = self.plan(clusters)?;
        self.runs
            .iter()
            .map(|(range, live)| {
                if *live {
                    Ok(Part::Live(range.clone()))
                } else {
                    self.compress(clusters, range.clone(), now, format, plan.as_deref())
                        .map(Part::Cached)
                }
            })
            .collect()
    }

    /// Encodes `range` of the areas and compresses the text as it is written, leaving out the
    /// families `plan` drops.
    fn compress(
        &self,
        clusters: &Arc<[Arc<ClusterSnapshot>]>,
        range: Range<usize>,
        now: SystemTime,
        format: Format,
        plan: Option<&Plan>,
    ) -> Result<Chunk, String> {
        let registry = self.registry(clusters, range, now);
        let fail = |e: std::fmt::Error| format!("encoding metrics: {e}");
        let mut w = DeflateWriter::new();
        match plan {
            None => encode_registry(&mut w, &registry, format).map_err(fail)?,
            Some(plan) => {
                let mut filter = FamilyFilter::new(&mut w, Some(plan));
                encode_registry(&mut filter, &registry, format).map_err(fail)?;
                filter.finish().map_err(fail)?;
            }
        }
        Ok(w.finish())
    }

    /// A registry whose one collector encodes `range` of the areas from `clusters`.
    fn registry(&self, clusters: &Arc<[Arc<ClusterSnapshot>]>, range: Range<usize>, now: SystemTime) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(AreasCollector {
            clusters: Arc::clone(clusters),
            areas: Arc::clone(&self.areas),
            range,
            now,
        }));
        registry
    }

    /// Joins the cached parts with freshly encoded live parts into one gzip body.
    fn assemble(&self, rendering: &Rendering, parts: &[Part], format: Format) -> Result<Vec<u8>, String> {
        let now = SystemTime::now();
        let cached: usize = parts
            .iter()
            .map(|p| match p {
                Part::Cached(c) => c.bytes.len(),
                Part::Live(_) => 0,
            })
            .sum();
        let mut live: Vec<Chunk> = Vec::new();
        for p in parts {
            if let Part::Live(range) = p {
                live.push(self.compress(&rendering.clusters, range.clone(), now, format, self.hiding.as_deref())?);
            }
        }
        let mut eof = String::new();
        if format == Format::OpenMetrics {
            text::encode_eof(&mut eof).map_err(|e| format!("encoding metrics: {e}"))?;
        }
        let mut live = live.into_iter();
        let chunks = parts.iter().map(|p| match p {
            Part::Cached(c) => Some(c),
            Part::Live(_) => None,
        });
        let mut out = Vec::with_capacity(cached + 8 * 1024);
        // Gzip header: deflate, no name, mtime 0, unknown OS.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        let mut crc = Crc::new();
        for c in chunks {
            let owned;
            let c = match c {
                Some(c) => c,
                None => {
                    owned = live.next().ok_or("missing live part")?;
                    &owned
                }
            };
            out.extend_from_slice(&c.bytes);
            crc.combine(&c.crc);
        }
        let mut tail = DeflateWriter::new();
        tail.write_str(&eof).map_err(|e| format!("compressing metrics: {e}"))?;
        let tail = tail.finish();
        out.extend_from_slice(&tail.bytes);
        crc.combine(&tail.crc);
        // A final empty block with fixed Huffman codes ends the deflate stream.
        out.extend_from_slice(&[0x03, 0x00]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        Ok(out)
    }
}

fn encode_registry(w: &mut impl std::fmt::Write, registry: &Registry, format: Format) -> std::fmt::Result {
    match format {
        Format::OpenMetrics => text::encode_registry(w, registry),
        Format::Prometheus => prometheus_text::encode(w, registry),
    }
}

/// Encodes a run of areas from one set of snapshots.
#[derive(Debug)]
struct AreasCollector {
    clusters: Arc<[Arc<ClusterSnapshot>]>,
    areas: Arc<[Box<dyn Area>]>,
    range: Range<usize>,
    now: SystemTime,
}

impl Collector for AreasCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for area in &self.areas[self.range.clone()] {
            area.encode(&self.clusters, self.now, &mut encoder)?;
        }
        Ok(())
    }
}

/// Compresses text as it is written into a raw deflate stream that ends with a full flush
/// (byte-aligned, no final block), so that it can be concatenated with others.
struct DeflateWriter {
    compress: Compress,
    out: Vec<u8>,
    crc: Crc,
}

impl DeflateWriter {
    fn new() -> Self {
        Self {
            compress: Compress::new(Compression::new(GZIP_LEVEL), false),
            out: Vec::with_capacity(16 * 1024),
            crc: Crc::new(),
        }
    }

    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> std::fmt::Result {
        loop {
            if self.out.capacity() - self.out.len() < 8 * 1024 {
                self.out.reserve(self.out.capacity().max(16 * 1024));
            }
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.out, flush)
                .map_err(|_| std::fmt::Error)?;
            let consumed = (self.compress.total_in() - before) as usize;
            input = &input[consumed..];
            let room_left = self.out.len() < self.out.capacity();
            match status {
                // Without a flush, done once all input is taken; with one, once the compressor
                // stops filling the whole output space.
                flate2::Status::Ok | flate2::Status::BufError if input.is_empty() && room_left => return Ok(()),
                flate2::Status::StreamEnd => return Ok(()),
                _ => {}
            }
        }
    }

    fn finish(mut self) -> Chunk {
        // A full flush cannot fail on a valid stream; an error would surface as a corrupt body,
        // so it is checked in the tests rather than handled here.
        let _ = self.run(&[], FlushCompress::Full);
        Chunk {
            bytes: self.out,
            crc: self.crc,
        }
    }
}

impl std::fmt::Write for DeflateWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.crc.update(s.as_bytes());
        self.run(s.as_bytes(), FlushCompress::None)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::atomic::AtomicU64;

    use arc_swap::ArcSwap;
    use prometheus_client::encoding::DescriptorEncoder;

    use super::*;
    use crate::collectors::{base_labels, gauge_family};
    use crate::config::Granularity;

    /// Encodes one gauge per cluster whose value is the cycle count, plus many series so that
    /// the compressed parts span several deflate blocks.
    #[derive(Debug)]
    struct Cycles;

    impl Area for Cycles {
        fn encode(
            &self,
            clusters: &[Arc<ClusterSnapshot>],
            _: SystemTime,
            enc: &mut DescriptorEncoder,
        ) -> std::fmt::Result {
            let bases: Vec<_> = clusters.iter().map(|c| (base_labels(c), c.cycles_total)).collect();
            gauge_family(
                enc,
                "cycles",
                "Cycles.",
                None,
                bases.iter().map(|(b, n)| (b.as_slice(), *n as f64)),
            )?;
            gauge_family(
                enc,
                "filler",
                "Many series.",
                None,
                (0..5000).map(|i| ([("i", i)], f64::from(i) * 1.5)),
            )
        }
    }

    /// A scrape-time area: counts how often it is encoded.
    #[derive(Debug, Default)]
    struct Live(Arc<AtomicU64>);

    impl Area for Live {
        fn scrape_time(&self) -> bool {
            true
        }
        fn encode(&self, _: &[Arc<ClusterSnapshot>], _: SystemTime, enc: &mut DescriptorEncoder) -> std::fmt::Result {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            gauge_family(
                enc,
                "live",
                "Encoded per scrape.",
                None,
                std::iter::once(([("x", "y")], n as f64)),
            )
        }
    }

    fn slot(cycles: u64) -> SnapshotSlot {
        let mut s = ClusterSnapshot::empty("c", &[("env".into(), "t\"1".into())], Granularity::Partition);
        s.cycles_total = cycles;
        Arc::new(ArcSwap::from_pointee(s))
    }

    fn gunzip(b: &[u8]) -> String {
        let mut out = String::new();
        flate2::read::GzDecoder::new(b).read_to_string(&mut out).unwrap();
        out
    }

    fn exposition(live: &Arc<AtomicU64>, slot: &SnapshotSlot) -> Exposition {
        let areas: Vec<Box<dyn Area>> = vec![
            Box::new(Live(Arc::clone(live))),
            Box::new(Cycles),
            Box::new(Live(Arc::clone(live))),
        ];
        Exposition::new(vec![Arc::clone(slot)], areas)
    }

    #[test]
    fn gzip_form_is_the_text_form_compressed() {
        let live = Arc::new(AtomicU64::new(0));
        let s = slot(7);
        let e = exposition(&live, &s);
        for format in [Format::OpenMetrics, Format::Prometheus] {
            let plain = String::from_utf8(e.render(format, false).unwrap()).unwrap();
            let zipped = gunzip(&e.render(format, true).unwrap());
            // The live gauges differ by their encode count; the rest is identical.
            let strip = |t: &str| {
                t.lines()
                    .filter(|l| !l.starts_with("live{"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(strip(&plain), strip(&zipped));
            assert!(plain.contains("cycles{cluster=\"c\",env=\"t\\\"1\"} 7"), "{plain}");
            assert_eq!(plain.ends_with("# EOF\n"), format == Format::OpenMetrics);
            assert_eq!(zipped.ends_with("# EOF\n"), format == Format::OpenMetrics);
            assert_eq!(plain.matches("# HELP live").count(), 2);
        }
    }

    #[test]
    fn gzip_cached_until_the_snapshot_changes_live_areas_every_scrape() {
        let live = Arc::new(AtomicU64::new(0));
        let s = slot(1);
        let e = exposition(&live, &s);
        assert!(e.cached(Format::Prometheus, true).is_none());
        let a = gunzip(&e.render(Format::Prometheus, true).unwrap());
        let b = gunzip(&e.cached(Format::Prometheus, true).unwrap().unwrap());
        assert!(
            e.cached(Format::OpenMetrics, true).is_none(),
            "each format is compressed on demand"
        );
        assert!(
            e.cached(Format::Prometheus, false).is_none(),
            "plain text is never cached"
        );
        // Two live areas per scrape, two scrapes; the cached part was encoded once.
        assert_eq!(live.load(Ordering::SeqCst), 4);
        assert!(
            a.contains("live{x=\"y\"} 1") && b.contains("live{x=\"y\"} 3"),
            "{a}\n{b}"
        );
        let first = e.cache.lock().unwrap().current.clone().unwrap();
        assert!(b.contains("cycles{cluster=\"c\",env=\"t\\\"1\"} 1"));

        let mut next = ClusterSnapshot::clone(&s.load());
        next.cycles_total = 2;
        s.store(Arc::new(next));
        assert!(
            e.cached(Format::Prometheus, true).is_none(),
            "a new cycle is not cached yet"
        );
        let c = gunzip(&e.render(Format::Prometheus, true).unwrap());
        assert!(c.contains("cycles{cluster=\"c\",env=\"t\\\"1\"} 2"), "{c}");
        let second = e.cache.lock().unwrap().current.clone().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(
            e.cache.lock().unwrap().previous.is_none(),
            "dropped once the new one is ready"
        );
        let plain = String::from_utf8(e.render(Format::Prometheus, false).unwrap()).unwrap();
        assert!(plain.contains("cycles{cluster=\"c\",env=\"t\\\"1\"} 2"), "{plain}");
    }

    #[test]
    fn deflate_writer_survives_large_and_empty_inputs() {
        let mut w = DeflateWriter::new();
        let big: String = (0..200_000)
            .map(|i| format!("line {i} {}\n", i * 7919 % 1000))
            .collect();
        w.write_str(&big).unwrap();
        w.write_str("").unwrap();
        let c = w.finish();
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        gz.extend_from_slice(&c.bytes);
        gz.extend_from_slice(&[0x03, 0x00]);
        gz.extend_from_slice(&c.crc.sum().to_le_bytes());
        gz.extend_from_slice(&c.crc.amount().to_le_bytes());
        assert_eq!(gunzip(&gz), big);
        assert!(c.bytes.len() < big.len() / 3);
    }
}
