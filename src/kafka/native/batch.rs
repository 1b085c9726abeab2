//! Record batches (Kafka's v2 log format) as a Fetch response carries them: the first record at
//! or after an offset, and its timestamp. Pure functions over bytes.
//!
//! Only the few fields the exporter needs are read: a batch header (61 bytes) and, inside the
//! batch, each record's length, timestamp delta and offset delta up to the answer; keys, values
//! and headers are skipped unread. Compressed batches (gzip, snappy, lz4, zstd) are read as a
//! stream and only as far as the answer.
//!
//! Nothing a broker sends can make this panic or allocate without bound: lengths are checked
//! against the bytes at hand, decompressed output is capped at [`MAX_DECOMPRESSED`] a batch,
//! snappy blocks are checked against the same cap before they are allocated, and the zstd
//! window at [`MAX_ZSTD_WINDOW`].

use std::io::{self, Read};

/// Bytes before a batch's length field ends: base offset (8) and batch length (4).
const LOG_OVERHEAD: usize = 12;
/// The v2 batch header, up to the first record.
pub(crate) const HEADER: usize = 61;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
const CONTROL: i16 = 0x20;
/// Kafka's "no timestamp".
const NO_TIMESTAMP: i64 = -1;

/// Decompressed bytes read from one batch at most. A batch is at most the topic's
/// `max.message.bytes` (1 MiB by default) compressed; 64 MiB leaves room for high ratios while
/// bounding what a broken or hostile batch can cost.
pub(crate) const MAX_DECOMPRESSED: u64 = 64 << 20;
/// The largest zstd window accepted: Kafka's producers use levels whose window is at most 8 MiB.
pub(crate) const MAX_ZSTD_WINDOW: u64 = 32 << 20;

/// What the bytes of one partition say about a requested offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// The first record at or after the offset: its offset and timestamp (`None` when the
    /// record has none).
    Record { offset: i64, timestamp_ms: Option<i64> },
    /// The bytes end inside the batch to read next; the first `n` bytes would hold it whole.
    Truncated(usize),
    /// Every whole batch here ends before the offset or holds only control records; reading
    /// goes on at `next`.
    Past { next: i64 },
    /// A batch in a format this reader does not read (older message formats, an unknown
    /// codec): the partition is left to the librdkafka reader.
    Unsupported(String),
}

/// Why a partition's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record batch at offset {base_offset}: {reason}")]
pub(crate) struct BatchError {
    pub(crate) base_offset: i64,
    pub(crate) reason: String,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// The first record at or after `requested` in `records` (a partition's record data from a
/// Fetch response, which starts with the batch holding the fetch offset).
pub(crate) fn first_record_at(records: &[u8], requested: i64) -> Result<Found, BatchError> {
    let mut pos = 0usize;
    let mut next = requested;
    while records.len() - pos >= LOG_OVERHEAD {
        let b = &records[pos..];
        let base_offset = be_i64(b, 0);
        let err = |reason: String| BatchError { base_offset, reason };
        let length = be_i32(b, 8);
        // The magic byte sits at the same place in the older message formats.
        if let Some(&magic) = b.get(MAGIC_AT).filter(|m| **m != 2) {
            return Ok(Found::Unsupported(format!("message format v{magic}")));
        }
        let size = usize::try_from(length)
            .ok()
            .filter(|l| *l >= HEADER - LOG_OVERHEAD)
            .map(|l| l + LOG_OVERHEAD)
            .ok_or_else(|| err(format!("batch length {length} is too small")))?;
        if b.len() < size {
            // A broker cuts a partition's data at the bytes asked for, mid-batch.
            return Ok(Found::Truncated(pos + size));
        }
        let batch = &b[..size];
        let attributes = be_i16(batch, ATTRIBUTES_AT);
        let last_offset = base_offset.saturating_add(i64::from(be_i32(batch, LAST_OFFSET_DELTA_AT)));
        pos += size;
        next = next.max(last_offset.saturating_add(1));
        if attributes & CONTROL != 0 || last_offset < requested {
            continue;
        }
        if let Some(found) = record_in_batch(batch, base_offset, attributes, requested).map_err(err)? {
            return Ok(found);
        }
    }
    Ok(Found::Past { next })
}

/// The first record at or after `requested` in one whole batch (`None`: every record is below
/// it, which compaction can leave).
fn record_in_batch(batch: &[u8], base_offset: i64, attributes: i16, requested: i64) -> Result<Option<Found>, String> {
    let base_ts = be_i64(batch, BASE_TIMESTAMP_AT);
    let max_ts = be_i64(batch, MAX_TIMESTAMP_AT);
    let count = be_i32(batch, RECORDS_COUNT_AT);
    let body = &batch[HEADER..];
    let mut stream: Box<dyn Read + '_> = match attributes & COMPRESSION_MASK {
        0 => Box::new(body),
        1 => Box::new(flate2::read::GzDecoder::new(body)),
        2 => Box::new(SnappyReader::new(body)),
        3 => Box::new(lz4_flex::frame::FrameDecoder::new(body)),
        4 => Box::new(
            ruzstd::decoding::StreamingDecoder::new_with_max_window_size(body, MAX_ZSTD_WINDOW)
                .map_err(|e| format!("zstd: {e}"))?,
        ),
        codec => return Ok(Some(Found::Unsupported(format!("compression codec {codec}")))),
    };
    let mut stream = (&mut stream).take(MAX_DECOMPRESSED);
    for _ in 0..count.max(0) {
        let (length, _) = varint(&mut stream).map_err(|e| format!("record length: {e}"))?;
        let length = u64::try_from(length).map_err(|_| format!("record length {length} is negative"))?;
        let mut attr = [0u8; 1];
        stream.read_exact(&mut attr).map_err(|e| format!("record: {e}"))?;
        let (ts_delta, a) = varint(&mut stream).map_err(|e| format!("timestamp delta: {e}"))?;
        let (offset_delta, b) = varint(&mut stream).map_err(|e| format!("offset delta: {e}"))?;
        let offset = base_offset.saturating_add(offset_delta);
        if offset >= requested {
            let ts = if attributes & LOG_APPEND_TIME != 0 {
                max_ts
            } else {
                base_ts.saturating_add(ts_delta)
            };
            return Ok(Some(Found::Record {
                offset,
                timestamp_ms: (base_ts != NO_TIMESTAMP && ts >= 0).then_some(ts),
            }));
        }
        let rest = length
            .checked_sub(1 + a + b)
            .ok_or_else(|| format!("record length {length} is shorter than its fields"))?;
        let skipped = io::copy(&mut (&mut stream).take(rest), &mut io::sink()).map_err(|e| format!("record: {e}"))?;
        if skipped < rest {
            return Err(format!("record of {length} bytes ends early"));
        }
    }
    Ok(None)
}

/// A zig-zag varint (as records encode their lengths and deltas) and its size in bytes.
fn varint(r: &mut impl Read) -> io::Result<(i64, u64)> {
    let mut value: u64 = 0;
    for i in 0..10u32 {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            let signed = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Ok((signed, u64::from(i) + 1));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint longer than 10 bytes",
    ))
}

/// The xerial framing the Java client writes snappy in: a magic header, then blocks of a 4-byte
/// length and a raw snappy block.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER: usize = 16;

/// Snappy data, xerial-framed (Java clients) or one raw block (librdkafka), as a stream.
struct SnappyReader<'a> {
    /// Input still to decompress.
    input: &'a [u8],
    xerial: bool,
    block: Vec<u8>,
    at: usize,
    failed: bool,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        let xerial = input.len() >= XERIAL_HEADER && input[..8] == XERIAL_MAGIC;
        Self {
            input: if xerial { &input[XERIAL_HEADER..] } else { input },
            xerial,
            block: Vec::new(),
            at: 0,
            failed: false,
        }
    }

    /// Decompresses the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, format!("snappy: {m}"));
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.xerial {
            if self.input.len() < 4 {
                return Err(invalid("block length cut short".into()));
            }
            let n = usize::try_from(be_i32(self.input, 0)).map_err(|_| invalid("negative block length".into()))?;
            let block = self
                .input
                .get(4..4 + n)
                .ok_or_else(|| invalid(format!("block of {n} bytes cut short")))?;
            self.input = &self.input[4 + n..];
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let len = snap::raw::decompress_len(compressed).map_err(|e| invalid(e.to_string()))?;
        if len as u64 > MAX_DECOMPRESSED {
            return Err(invalid(format!("block of {len} bytes exceeds the limit")));
        }
        self.block.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(|e| invalid(e.to_string()))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if self.failed || !self.next_block().inspect_err(|_| self.failed = true)? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
