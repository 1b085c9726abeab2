use std::io::Write;

use proptest::prelude::*;

use super::*;

fn put_varint(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// One record: (timestamp delta, offset delta, value).
type Rec = (i64, i64, Vec<u8>);

fn encode_records(records: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ts, off, value) in records {
        let mut body = vec![0u8];
        put_varint(*ts, &mut body);
        put_varint(*off, &mut body);
        put_varint(-1, &mut body); // no key
        put_varint(value.len() as i64, &mut body);
        body.extend_from_slice(value);
        put_varint(0, &mut body); // no headers
        put_varint(body.len() as i64, &mut out);
        out.extend(body);
    }
    out
}

#[derive(Clone, Copy)]
enum Codec {
    None,
    Gzip,
    SnappyXerial,
    SnappyRaw,
    Lz4,
    Zstd,
}

fn compress(codec: Codec, data: &[u8]) -> (i16, Vec<u8>) {
    match codec {
        Codec::None => (0, data.to_vec()),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            (1, e.finish().unwrap())
        }
        Codec::SnappyXerial => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend(1i32.to_be_bytes());
            out.extend(1i32.to_be_bytes());
            // Small blocks so that records straddle them.
            for chunk in data.chunks(7) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend((block.len() as i32).to_be_bytes());
                out.extend(block);
            }
            (2, out)
        }
        Codec::SnappyRaw => (2, snap::raw::Encoder::new().compress_vec(data).unwrap()),
        Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).unwrap();
            (3, e.finish().unwrap())
        }
        Codec::Zstd => (
            4,
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest),
        ),
    }
}

/// A v2 batch with `attributes` besides the codec's bits.
fn batch(base_offset: i64, base_ts: i64, records: &[Rec], codec: Codec, attributes: i16) -> Vec<u8> {
    let (codec_bits, body) = compress(codec, &encode_records(records));
    let last_delta = records.iter().map(|r| r.1).max().unwrap_or(0) as i32;
    let max_ts = base_ts + records.iter().map(|r| r.0).max().unwrap_or(0);
    let mut b = Vec::new();
    b.extend(base_offset.to_be_bytes());
    b.extend(0i32.to_be_bytes()); // batch length, set below
    b.extend(0i32.to_be_bytes()); // partition leader epoch
    b.push(2);
    b.extend(0u32.to_be_bytes()); // crc (not checked)
    b.extend((attributes | codec_bits).to_be_bytes());
    b.extend(last_delta.to_be_bytes());
    b.extend(base_ts.to_be_bytes());
    b.extend(max_ts.to_be_bytes());
    b.extend((-1i64).to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend((records.len() as i32).to_be_bytes());
    assert_eq!(b.len(), HEADER);
    b.extend(body);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b
}

fn five(value_len: usize) -> Vec<Rec> {
    (0..5).map(|i| (i * 1000, i, vec![b'x'; value_len])).collect()
}

fn record(offset: i64, ts: i64) -> Result<Found, BatchError> {
    Ok(Found::Record {
        offset,
        timestamp_ms: Some(ts),
    })
}

const CODECS: [Codec; 6] = [
    Codec::None,
    Codec::Gzip,
    Codec::SnappyXerial,
    Codec::SnappyRaw,
    Codec::Lz4,
    Codec::Zstd,
];

#[test]
fn every_codec_gives_the_first_record_at_or_after_the_offset() {
    for codec in CODECS {
        let b = batch(10, 1_000_000, &five(40), codec, 0);
        assert_eq!(first_record_at(&b, 10), record(10, 1_000_000));
        assert_eq!(first_record_at(&b, 13), record(13, 1_003_000));
        assert_eq!(first_record_at(&b, 14), record(14, 1_004_000));
        // The broker starts at the batch holding the offset, which may begin before it.
        assert_eq!(first_record_at(&b, 3), record(10, 1_000_000));
        assert_eq!(first_record_at(&b, 15), Ok(Found::Past { next: 15 }));
    }
}

#[test]
fn gaps_left_by_compaction_give_the_next_record() {
    let recs: Vec<Rec> = vec![(0, 0, b"a".to_vec()), (5, 4, b"b".to_vec())];
    let b = batch(100, 50, &recs, Codec::None, 0);
    assert_eq!(first_record_at(&b, 101), record(104, 55));
    // Every record of the first batch below the offset: the next batch answers.
    let only_low = batch(100, 50, &[(0, 0, b"a".to_vec()), (1, 1, b"b".to_vec())], Codec::None, 0);
    let mut with_gap = only_low.clone();
    // lastOffsetDelta says 4 (compaction removed 102..104), records stop at 101.
    with_gap[23..27].copy_from_slice(&4i32.to_be_bytes());
    with_gap.extend(batch(105, 70, &[(0, 0, b"c".to_vec())], Codec::None, 0));
    assert_eq!(first_record_at(&with_gap, 103), record(105, 70));
    assert_eq!(first_record_at(&only_low, 103), Ok(Found::Past { next: 103 }));
}

#[test]
fn log_append_time_is_the_batch_maximum() {
    let b = batch(0, 1_000, &five(1), Codec::Lz4, LOG_APPEND_TIME);
    assert_eq!(first_record_at(&b, 1), record(1, 5_000));
}

#[test]
fn records_without_a_timestamp_are_found_without_one() {
    let b = batch(0, NO_TIMESTAMP, &[(0, 0, vec![])], Codec::None, 0);
    assert_eq!(
        first_record_at(&b, 0),
        Ok(Found::Record {
            offset: 0,
            timestamp_ms: None
        })
    );
}

#[test]
fn control_batches_are_skipped() {
    let mut bytes = batch(7, 100, &[(0, 0, vec![0, 0, 0, 1])], Codec::None, CONTROL);
    assert_eq!(first_record_at(&bytes, 7), Ok(Found::Past { next: 8 }));
    bytes.extend(batch(8, 200, &[(0, 0, b"v".to_vec())], Codec::Gzip, 0));
    assert_eq!(first_record_at(&bytes, 7), record(8, 200));
}

#[test]
fn a_cut_batch_asks_for_its_whole_size() {
    let first = batch(0, 0, &five(100), Codec::None, 0);
    let size = first.len();
    assert_eq!(first_record_at(&first[..size - 1], 2), Ok(Found::Truncated(size)));
    assert_eq!(first_record_at(&first[..20], 2), Ok(Found::Truncated(size)));
    // Fewer bytes than a length field: nothing whole, nothing to say but where to go on.
    assert_eq!(first_record_at(&first[..11], 2), Ok(Found::Past { next: 2 }));
    assert_eq!(first_record_at(&[], 2), Ok(Found::Past { next: 2 }));
    // Past a whole batch below the offset, a cut one: the size counts both.
    let mut two = first.clone();
    let second = batch(5, 0, &five(100), Codec::None, 0);
    two.extend(&second[..30]);
    assert_eq!(first_record_at(&two, 6), Ok(Found::Truncated(size + second.len())));
}

#[test]
fn older_formats_and_unknown_codecs_are_left_to_librdkafka() {
    // A v1 message: offset, size, crc, magic 1, ...
    let mut v1 = Vec::new();
    v1.extend(0i64.to_be_bytes());
    v1.extend(22i32.to_be_bytes());
    v1.extend([0, 0, 0, 0, 1]);
    v1.extend([0u8; 17]);
    assert_eq!(
        first_record_at(&v1, 0),
        Ok(Found::Unsupported("message format v1".into()))
    );
    let mut b = batch(0, 0, &five(1), Codec::None, 0);
    b[22] |= 5;
    assert_eq!(
        first_record_at(&b, 0),
        Ok(Found::Unsupported("compression codec 5".into()))
    );
}

#[test]
fn malformed_batches_are_errors() {
    let good = batch(0, 0, &five(10), Codec::None, 0);
    let mut short = good.clone();
    short[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(first_record_at(&short, 0).unwrap_err().reason.contains("too small"));
    let mut negative = good.clone();
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(first_record_at(&negative, 0).is_err());
    // More records announced than there are.
    let mut count = good.clone();
    count[23..27].copy_from_slice(&8i32.to_be_bytes());
    count[57..61].copy_from_slice(&9i32.to_be_bytes());
    assert!(first_record_at(&count, 7).is_err());
    // A gzip batch whose body is not gzip.
    let mut gz = good.clone();
    gz[22] |= 1;
    assert!(first_record_at(&gz, 3).is_err());
}

#[test]
fn decompression_stops_at_the_limit() {
    // A gzip batch whose one record claims 200 MiB of zeros (it compresses to about 200 KiB).
    let mut payload = Vec::new();
    put_varint(200 << 20, &mut payload);
    payload.push(0);
    put_varint(0, &mut payload);
    put_varint(0, &mut payload);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&payload).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        e.write_all(&zeros).unwrap();
    }
    let body = e.finish().unwrap();
    let mut b = batch(0, 0, &[], Codec::None, 1);
    b[23..27].copy_from_slice(&9i32.to_be_bytes());
    b[57..61].copy_from_slice(&2i32.to_be_bytes());
    b.truncate(HEADER);
    b.extend(body);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let e = first_record_at(&b, 5).unwrap_err();
    assert!(e.reason.contains("ends early"), "{e}");
    // A snappy block announcing 4 GiB is refused before anything is allocated.
    let mut s = batch(0, 0, &[], Codec::None, 2);
    s[57..61].copy_from_slice(&1i32.to_be_bytes());
    s.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    let len = (s.len() - 12) as i32;
    s[8..12].copy_from_slice(&len.to_be_bytes());
    let e = first_record_at(&s, 0).unwrap_err();
    assert!(e.reason.contains("exceeds the limit"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), at in -5i64..20) {
        let _ = first_record_at(&bytes, at);
    }

    #[test]
    fn corrupted_batches_never_panic(
        codec in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        at in 0i64..8,
    ) {
        let mut b = batch(0, 1_000, &five(20), CODECS[codec], 0);
        for (i, v) in flips {
            let i = i % b.len();
            b[i] = v;
        }
        let cut = cut % (b.len() + 1);
        let _ = first_record_at(&b[..cut], at);
        let _ = first_record_at(&b, at);
    }

    #[test]
    fn any_offset_gives_the_record_there(codec in 0usize..6, at in 0i64..5, value_len in 0usize..300) {
        let b = batch(20, 5_000, &five(value_len), CODECS[codec], 0);
        prop_assert_eq!(first_record_at(&b, 20 + at), record(20 + at, 5_000 + at * 1000));
    }
}
