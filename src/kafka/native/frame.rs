//! Kafka's wire framing: a 4-byte big-endian length, then a request or response header and
//! the message body. Pure functions over bytes (the connection does the I/O), so every way a
//! broker's bytes can be wrong is unit- and property-tested here.
//!
//! A malformed frame is an error of the one request it answers. Two things keep it from
//! costing more than that: the length prefix is checked against [`MAX_FRAME`] before anything
//! is allocated, and the message codec's array pre-allocation from untrusted counts is
//! contained by the allocator (see `kafka::ffi::alloc`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};

/// The largest response the reader accepts, in bytes. The largest answers of a cycle are
/// Metadata (about 70 bytes a partition with three replicas: some 7 MiB at 100,000
/// partitions) and DescribeConfigs of a chunk of topics (about 4 KiB a topic); 64 MiB leaves
/// room for clusters ten times that size while bounding what a broken or hostile peer can make
/// the exporter buffer.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// Size of the length prefix.
pub(crate) const LENGTH_BYTES: usize = 4;

/// Why a frame could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("response length {0} is negative")]
    NegativeLength(i32),
    #[error("response of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    #[error("response of {0} bytes is too short for its header")]
    Short(usize),
    #[error("response to correlation id {got} where {expected} was expected")]
    Correlation { expected: i32, got: i32 },
    #[error("cannot decode {api} v{version} response: {reason}")]
    Decode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api} v{version} request: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
}

/// The body length a length prefix announces, checked against [`MAX_FRAME`].
pub(crate) fn body_length(prefix: [u8; LENGTH_BYTES]) -> Result<usize, FrameError> {
    let n = i32::from_be_bytes(prefix);
    let n = usize::try_from(n).map_err(|_| FrameError::NegativeLength(n))?;
    if n > MAX_FRAME {
        return Err(FrameError::TooLarge(n));
    }
    if n < 4 {
        return Err(FrameError::Short(n));
    }
    Ok(n)
}

/// The correlation id a response body starts with (every response header version does).
pub(crate) fn correlation_id(body: &[u8]) -> Result<i32, FrameError> {
    match body.get(..4) {
        Some(b) => Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(FrameError::Short(body.len())),
    }
}

/// A request of `version` with its header and length prefix, ready for the socket.
pub(crate) fn encode_request<R: Request>(
    api: &'static str,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes, FrameError> {
    let err = |reason: String| FrameError::Encode { api, version, reason };
    let header_version = R::header_version(version);
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let size = header.compute_size(header_version).map_err(|e| err(e.to_string()))?
        + request.compute_size(version).map_err(|e| err(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(LENGTH_BYTES + size);
    buf.put_i32(i32::try_from(size).map_err(|_| err(format!("{size} bytes is too large")))?);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| err(e.to_string()))?;
    request.encode(&mut buf, version).map_err(|e| err(e.to_string()))?;
    Ok(buf.freeze())
}

/// Decodes the response `body` (the frame without its length prefix) to a request of
/// `version` sent with `correlation_id`. Bytes after the message are ignored, as Kafka's own
/// clients do (a newer broker may append fields an older schema does not know).
pub(crate) fn decode_response<R: Request>(
    api: &'static str,
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, FrameError> {
    let err = |reason: String| FrameError::Decode { api, version, reason };
    if version < <R::Response as Message>::VERSIONS.min || version > <R::Response as Message>::VERSIONS.max {
        return Err(err("version not supported by the codec".into()));
    }
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut body, header_version).map_err(|e| err(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(FrameError::Correlation {
            expected: correlation_id,
            got: header.correlation_id,
        });
    }
    R::Response::decode(&mut body, version).map_err(|e| err(e.to_string()))
}

/// Reads the 4-byte length prefix from the front of `buf` without consuming it.
pub(crate) fn peek_prefix(buf: &[u8]) -> Option<[u8; LENGTH_BYTES]> {
    buf.get(..LENGTH_BYTES).map(|b| [b[0], b[1], b[2], b[3]])
}

/// Splits one whole frame body off the front of `buf` when it holds one; `Ok(None)` while
/// more bytes are needed.
pub(crate) fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = peek_prefix(buf) else {
        return Ok(None);
    };
    let n = body_length(prefix)?;
    if buf.len() < LENGTH_BYTES + n {
        buf.reserve(LENGTH_BYTES + n - buf.len());
        return Ok(None);
    }
    buf.advance(LENGTH_BYTES);
    Ok(Some(buf.split_to(n).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, MetadataResponse};
    use proptest::prelude::*;

    fn metadata_response_bytes(version: i16, correlation_id: i32) -> Bytes {
        let mut response = MetadataResponse::default();
        response.cluster_id = Some(StrBytes::from_static_str("abc"));
        response.controller_id = 1.into();
        let header_version = MetadataResponse::header_version(version);
        let mut header = ResponseHeader::default();
        header.correlation_id = correlation_id;
        let mut buf = BytesMut::new();
        header.encode(&mut buf, header_version).unwrap();
        response.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn a_request_frame_carries_its_length_header_and_body() {
        let frame = encode_request("Metadata", &MetadataRequest::default(), 12, 7, "kse").unwrap();
        let n = body_length(peek_prefix(&frame).unwrap()).unwrap();
        assert_eq!(n + LENGTH_BYTES, frame.len());
        assert_eq!(i16::from_be_bytes([frame[4], frame[5]]), 3, "api key");
        assert_eq!(i16::from_be_bytes([frame[6], frame[7]]), 12, "version");
        assert_eq!(i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]), 7);
    }

    #[test]
    fn a_response_round_trips_and_checks_its_correlation_id() {
        for version in [2, 9, 12, 13] {
            let body = metadata_response_bytes(version, 42);
            let r = decode_response::<MetadataRequest>("Metadata", body.clone(), version, 42).unwrap();
            assert_eq!(r.cluster_id.as_deref(), Some("abc"));
            assert_eq!(
                decode_response::<MetadataRequest>("Metadata", body, version, 41).unwrap_err(),
                FrameError::Correlation { expected: 41, got: 42 }
            );
        }
    }

    #[test]
    fn lengths_are_bounded_before_anything_is_read() {
        assert_eq!(body_length((-1i32).to_be_bytes()), Err(FrameError::NegativeLength(-1)));
        assert_eq!(
            body_length(((MAX_FRAME + 1) as i32).to_be_bytes()),
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
        assert_eq!(body_length(2i32.to_be_bytes()), Err(FrameError::Short(2)));
        assert_eq!(body_length(100i32.to_be_bytes()), Ok(100));
    }

    #[test]
    fn split_frame_waits_for_whole_frames() {
        let mut buf = BytesMut::new();
        assert_eq!(split_frame(&mut buf), Ok(None));
        buf.put_i32(6);
        buf.put_slice(&[0, 0, 0, 9]);
        assert_eq!(split_frame(&mut buf), Ok(None));
        buf.put_slice(&[1, 2, 0, 0]);
        let frame = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], &[0, 0, 0, 9, 1, 2]);
        assert_eq!(&buf[..], &[0, 0]);
        assert_eq!(correlation_id(&frame), Ok(9));
        assert_eq!(correlation_id(&frame[..2]), Err(FrameError::Short(2)));
    }

    #[test]
    fn unknown_versions_are_an_error_not_a_panic() {
        let body = metadata_response_bytes(12, 1);
        assert!(matches!(
            decode_response::<MetadataRequest>("Metadata", body.clone(), 99, 1),
            Err(FrameError::Decode { .. })
        ));
        assert!(matches!(
            decode_response::<MetadataRequest>("Metadata", body, -1, 1),
            Err(FrameError::Decode { .. })
        ));
        assert!(matches!(
            encode_request("ApiVersions", &ApiVersionsRequest::default(), 99, 1, "kse"),
            Err(FrameError::Encode { .. })
        ));
    }

    #[test]
    fn a_truncated_response_is_an_error_at_every_cut() {
        let body = metadata_response_bytes(12, 5);
        for cut in 0..body.len() {
            let r = decode_response::<MetadataRequest>("Metadata", body.slice(..cut), 12, 5);
            assert!(r.is_err(), "cut at {cut} of {}", body.len());
        }
    }

    /// An array count near `i32::MAX` in a few bytes: the codec reserves the whole array
    /// before it reads an element; the allocator must turn that into a decode error.
    #[test]
    fn a_huge_array_count_is_an_error_not_an_abort() {
        // Metadata v1: header (correlation id), then the brokers array count.
        let mut body = BytesMut::new();
        body.put_i32(3);
        body.put_i32(i32::MAX);
        body.put_slice(&[0; 8]);
        let r = decode_response::<MetadataRequest>("Metadata", body.freeze(), 1, 3);
        assert!(matches!(r, Err(FrameError::Decode { .. })), "{r:?}");
        // The flexible v12 encoding: an unsigned varint count of 2^32 - 2.
        let mut body = BytesMut::new();
        body.put_i32(3);
        body.put_u8(0); // header tagged fields
        body.put_i32(0); // throttle time
        body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let r = decode_response::<MetadataRequest>("Metadata", body.freeze(), 12, 3);
        assert!(matches!(r, Err(FrameError::Decode { .. })), "{r:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), version in 0i16..14) {
            let body = Bytes::from(bytes);
            let _ = decode_response::<MetadataRequest>("Metadata", body.clone(), version, 0);
            let _ = decode_response::<kafka_protocol::messages::OffsetFetchRequest>("OffsetFetch", body.clone(), version.min(9), 0);
            let _ = decode_response::<kafka_protocol::messages::ListOffsetsRequest>("ListOffsets", body.clone(), version.min(10), 0);
            let _ = decode_response::<kafka_protocol::messages::DescribeGroupsRequest>("DescribeGroups", body.clone(), version.min(6), 0);
            let _ = decode_response::<kafka_protocol::messages::DescribeConfigsRequest>("DescribeConfigs", body.clone(), version.min(4), 0);
            let _ = decode_response::<kafka_protocol::messages::ApiVersionsRequest>("ApiVersions", body.clone(), version.min(4), 0);
            let mut buf = BytesMut::from(&body[..]);
            while let Ok(Some(_)) = split_frame(&mut buf) {}
        }

        #[test]
        fn random_cuts_of_valid_responses_never_panic(version in 1i16..14, cut in 0usize..200, flip in any::<(usize, u8)>()) {
            let body = metadata_response_bytes(version, 1);
            let mut bytes = body.to_vec();
            let at = flip.0 % bytes.len();
            bytes[at] ^= flip.1;
            let cut = cut.min(bytes.len());
            let _ = decode_response::<MetadataRequest>("Metadata", Bytes::from(bytes).slice(..cut), version, 1);
        }
    }
}
