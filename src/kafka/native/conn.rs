//! One connection to one broker: TCP, then TLS and SASL when configured, then ApiVersions.
//! Requests are pipelined: each gets a correlation id and waits for its own response, which a
//! reader task matches by that id, so several requests can be in flight on the connection.
//! A broken connection fails every request waiting on it and is replaced by the pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::frame::{self, FrameError};
use super::sasl::SaslClient;
use super::NetError;
use crate::kafka::stats::ReaderStats as RequestCounts;
use crate::kafka::ClientErrorKind;

/// A byte stream to a broker: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Waiting = HashMap<i32, oneshot::Sender<Result<Bytes, NetError>>>;

/// Requests waiting for their responses, or why the connection is closed.
#[derive(Default)]
struct Pending {
    waiting: Waiting,
    closed: Option<String>,
}

/// The version range the broker supports for each API key (from ApiVersions).
pub(crate) type Versions = HashMap<i16, (i16, i16)>;

/// How the broker is named in logs and request counts: its node id, or `bootstrap`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    Bootstrap(String),
    Node(i32),
}

impl Peer {
    pub(crate) fn label(&self) -> String {
        match self {
            Peer::Bootstrap(_) => "bootstrap".into(),
            Peer::Node(id) => id.to_string(),
        }
    }
}

pub(crate) struct Connection {
    pub(crate) peer: Peer,
    writer: tokio::sync::Mutex<WriteHalf<Box<dyn Io>>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicI32,
    versions: Versions,
    /// Cluster features the broker reported as finalized (ApiVersions v3+), by name, with their
    /// level.
    features: HashMap<String, i16>,
    client_id: String,
    counts: RequestCounts,
    alive: Arc<AtomicBool>,
    /// Wakes the reader task when the connection is dropped, so the socket closes with it.
    closing: Arc<tokio::sync::Notify>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// What a connection needs besides its socket.
pub(crate) struct Setup<'a> {
    pub client_id: &'a str,
    pub sasl: Option<SaslClient>,
    pub counts: RequestCounts,
    pub timeout: Duration,
}

impl Connection {
    /// Takes over an open stream: starts the reader task, negotiates API versions and
    /// authenticates.
    pub(crate) async fn establish(peer: Peer, stream: Box<dyn Io>, setup: Setup<'_>) -> Result<Connection, NetError> {
        let (read, write) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let alive = Arc::new(AtomicBool::new(true));
        let closing = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(read_loop(
            read,
            Arc::clone(&pending),
            Arc::clone(&alive),
            Arc::clone(&closing),
        ));
        let mut conn = Connection {
            peer,
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_id: AtomicI32::new(1),
            versions: Versions::new(),
            features: HashMap::new(),
            client_id: setup.client_id.to_string(),
            counts: setup.counts,
            alive,
            closing,
        };
        (conn.versions, conn.features) = conn.api_versions(setup.timeout).await?;
        if let Some(sasl) = setup.sasl {
            conn.authenticate(sasl, setup.timeout).await?;
        }
        Ok(conn)
    }

    /// Marks the connection broken and stops its reader task, which fails every request still
    /// waiting on it.
    fn close(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.closing.notify_one();
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// The finalized level of cluster feature `name` (e.g. `eligible.leader.replicas.version`),
    /// 0 when the broker did not report it.
    pub(crate) fn feature(&self, name: &str) -> i16 {
        self.features.get(name).copied().unwrap_or(0)
    }

    /// The highest version of `R` both the codec and the broker speak within `ours`, or
    /// `None` when there is none.
    pub(crate) fn version<R: Request>(&self, ours: (i16, i16)) -> Option<i16> {
        let (broker_min, broker_max) = *self.versions.get(&R::KEY)?;
        let max = ours.1.min(broker_max).min(R::VERSIONS.max);
        let min = ours.0.max(broker_min).max(R::VERSIONS.min);
        (min <= max).then_some(max)
    }

    /// Sends `request` at `version` and waits up to `timeout` for its response.
    pub(crate) async fn send<R: Request>(
        &self,
        api: &'static str,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, NetError> {
        if !self.is_alive() {
            return Err(NetError::connection(ClientErrorKind::Transport, "connection closed"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let bytes = frame::encode_request(api, request, version, id, &self.client_id).map_err(NetError::Frame)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(reason) = &p.closed {
                return Err(NetError::connection(ClientErrorKind::Transport, reason.clone()));
            }
            p.waiting.insert(id, tx);
        }
        self.counts.count(api, &self.peer.label());
        let outcome = tokio::time::timeout(timeout, async {
            {
                let mut w = self.writer.lock().await;
                if let Err(e) = w.write_all(&bytes).await {
                    self.alive.store(false, Ordering::Relaxed);
                    return Err(NetError::connection(io_kind(&e), format!("sending {api}: {e}")));
                }
            }
            rx.await
                .unwrap_or_else(|_| Err(NetError::connection(ClientErrorKind::Transport, "connection closed")))
        })
        .await;
        let body = match outcome {
            Ok(result) => result?,
            Err(_) => {
                // A request that got no answer in time leaves the connection in doubt (a cut
                // link, a hung broker): it is closed, as Kafka's own clients do, so the next
                // request dials again instead of queueing behind it on a dead socket.
                self.forget(id);
                self.close();
                return Err(NetError::Timeout(api));
            }
        };
        frame::decode_response::<R>(api, body, version, id).map_err(NetError::Frame)
    }

    fn forget(&self, id: i32) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&id);
    }

    /// ApiVersions at the highest version the codec knows; a broker that does not know it
    /// answers with error 35 and its own range, and the request is repeated at version 0.
    async fn api_versions(&self, timeout: Duration) -> Result<(Versions, HashMap<String, i16>), NetError> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("kafka-slo-exporter");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut version = 3;
        loop {
            let response = self.send("ApiVersions", &request, version, timeout).await;
            match response {
                Ok(r) if r.error_code == 0 => {
                    let versions = r
                        .api_keys
                        .iter()
                        .map(|k| (k.api_key, (k.min_version, k.max_version)))
                        .collect();
                    let features = r
                        .finalized_features
                        .iter()
                        .map(|f| (f.name.to_string(), f.max_version_level))
                        .collect();
                    return Ok((versions, features));
                }
                Ok(r) if r.error_code == 35 && version > 0 => version = 0,
                Ok(r) => {
                    return Err(NetError::Protocol(format!(
                        "ApiVersions: {}",
                        super::error_name(r.error_code)
                    )))
                }
                Err(NetError::Frame(FrameError::Decode { .. })) if version > 0 => version = 0,
                Err(e) => return Err(e),
            }
        }
    }

    /// SaslHandshake, then SaslAuthenticate round trips until the mechanism is satisfied.
    async fn authenticate(&self, mut sasl: SaslClient, timeout: Duration) -> Result<(), NetError> {
        let auth = |m: String| NetError::connection(ClientErrorKind::Authentication, m);
        let mechanism = sasl.mechanism();
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_static_str(mechanism);
        let r = self.send("SaslHandshake", &handshake, 1, timeout).await?;
        if r.error_code != 0 {
            let enabled: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(auth(format!(
                "SASL mechanism {mechanism} is not enabled on the broker (it offers {})",
                enabled.join(", ")
            )));
        }
        let version = self
            .version::<SaslAuthenticateRequest>((0, 2))
            .ok_or_else(|| NetError::Protocol("the broker does not support SaslAuthenticate".into()))?;
        let mut message = sasl
            .initial()
            .map_err(|e| auth(format!("SASL {mechanism} authentication failed: {e}")))?;
        loop {
            let mut request = SaslAuthenticateRequest::default();
            request.auth_bytes = Bytes::from(message);
            let r = self.send("SaslAuthenticate", &request, version, timeout).await?;
            if r.error_code != 0 {
                let detail = r.error_message.as_deref().unwrap_or("");
                return Err(auth(format!(
                    "SASL {mechanism} authentication failed: {} {detail}",
                    super::error_name(r.error_code)
                )));
            }
            let next = sasl
                .respond(&r.auth_bytes)
                .map_err(|e| auth(format!("SASL {mechanism} authentication failed: {e}")))?;
            match next {
                Some(next) => message = next,
                None => return Ok(()),
            }
        }
    }
}

/// Reads frames until the socket fails, handing each to the request with its correlation id.
/// A frame that cannot be split off (an impossible length) ends the connection, since the
/// stream can no longer be followed; a response nobody waits for (timed out) is dropped.
async fn read_loop(
    mut read: ReadHalf<Box<dyn Io>>,
    pending: Arc<Mutex<Pending>>,
    alive: Arc<AtomicBool>,
    closing: Arc<tokio::sync::Notify>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut kind = ClientErrorKind::Transport;
    let reason = loop {
        match frame::split_frame(&mut buf) {
            Ok(Some(body)) => {
                let Ok(id) = frame::correlation_id(&body) else {
                    break "a response without a header".to_string();
                };
                let waiter = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .waiting
                    .remove(&id);
                if let Some(tx) = waiter {
                    let _ = tx.send(Ok(body));
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break e.to_string(),
        }
        tokio::select! {
            read = read.read_buf(&mut buf) => match read {
                Ok(0) => break "the broker closed the connection".to_string(),
                Ok(_) => {}
                Err(e) => {
                    kind = io_kind(&e);
                    break format!("reading: {e}");
                }
            },
            _ = closing.notified() => break "connection closed".to_string(),
        }
    };
    alive.store(false, Ordering::Relaxed);
    let waiting = {
        let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.closed = Some(reason.clone());
        std::mem::take(&mut p.waiting)
    };
    for (_, tx) in waiting {
        let _ = tx.send(Err(NetError::connection(kind, reason.clone())));
    }
}

/// The kind of a socket error: TLS when rustls raised it (e.g. the broker's alert that it
/// refused the client certificate, which TLS 1.3 delivers on the first read), else transport.
fn io_kind(e: &std::io::Error) -> ClientErrorKind {
    match e.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => ClientErrorKind::Tls,
        _ => ClientErrorKind::Transport,
    }
}

/// Opens a TCP connection to `addr` (`host:port`) within `timeout`.
pub(crate) async fn tcp(addr: &str, timeout: Duration) -> Result<TcpStream, NetError> {
    let connect = async {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| NetError::connection(ClientErrorKind::Resolve, format!("resolving {addr}: {e}")))?
            .collect();
        let mut last = format!("{addr} resolves to no address");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = format!("connecting to {addr} ({a}): {e}"),
            }
        }
        Err(NetError::connection(ClientErrorKind::Transport, last))
    };
    tokio::time::timeout(timeout, connect).await.unwrap_or_else(|_| {
        Err(NetError::connection(
            ClientErrorKind::Transport,
            format!(
                "connecting to {addr}: timed out after {}",
                humantime::format_duration(timeout)
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    //! The transport against a scripted peer on an in-memory stream: every way a peer's bytes
    //! can be wrong fails only the request they answer (or, when the stream can no longer be
    //! followed, the connection), never the process.

    use super::*;
    use bytes::{Buf, BufMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse, ResponseHeader};
    use kafka_protocol::protocol::{Encodable, HeaderVersion};
    use tokio::io::DuplexStream;

    const T: Duration = Duration::from_secs(2);

    /// Reads one request frame: (api key, version, correlation id).
    async fn read_request(peer: &mut DuplexStream) -> Option<(i16, i16, i32)> {
        let mut len = [0u8; 4];
        peer.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        peer.read_exact(&mut body).await.ok()?;
        let mut b = &body[..];
        Some((b.get_i16(), b.get_i16(), b.get_i32()))
    }

    fn response<M: Encodable + HeaderVersion>(m: &M, version: i16, correlation_id: i32) -> Vec<u8> {
        let mut header = ResponseHeader::default();
        header.correlation_id = correlation_id;
        let mut body = BytesMut::new();
        header.encode(&mut body, M::header_version(version)).unwrap();
        m.encode(&mut body, version).unwrap();
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Answers ApiVersions (Metadata 0–12 supported), then hands the stream to the test.
    async fn handshake(mut peer: DuplexStream) -> DuplexStream {
        let (key, version, id) = read_request(&mut peer).await.unwrap();
        assert_eq!(key, 18);
        let mut r = ApiVersionsResponse::default();
        let mut metadata = ApiVersion::default();
        metadata.api_key = 3;
        metadata.max_version = 12;
        r.api_keys = vec![metadata];
        peer.write_all(&response(&r, version, id)).await.unwrap();
        peer
    }

    async fn connect() -> (Connection, tokio::task::JoinHandle<DuplexStream>) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let broker = tokio::spawn(handshake(theirs));
        let setup = Setup {
            client_id: "test",
            sasl: None,
            counts: RequestCounts::new(),
            timeout: T,
        };
        let conn = Connection::establish(Peer::Node(1), Box::new(ours), setup)
            .await
            .unwrap();
        (conn, broker)
    }

    async fn metadata(conn: &Connection) -> Result<MetadataResponse, NetError> {
        let version = conn.version::<MetadataRequest>((1, 12)).unwrap();
        conn.send("Metadata", &MetadataRequest::default(), version, T).await
    }

    #[tokio::test]
    async fn versions_are_negotiated_and_requests_answered() {
        let (conn, broker) = connect().await;
        assert_eq!(conn.version::<MetadataRequest>((1, 12)), Some(12));
        assert_eq!(conn.version::<MetadataRequest>((13, 13)), None);
        assert_eq!(
            conn.version::<ListGroupsProbe>((0, 5)),
            None,
            "not offered by the broker"
        );
        let mut peer = broker.await.unwrap();
        let answer = tokio::spawn(async move {
            let (_, version, id) = read_request(&mut peer).await.unwrap();
            let mut r = MetadataResponse::default();
            r.cluster_id = Some(StrBytes::from_static_str("c1"));
            peer.write_all(&response(&r, version, id)).await.unwrap();
            peer
        });
        let r = metadata(&conn).await.unwrap();
        assert_eq!(r.cluster_id.as_deref(), Some("c1"));
        drop(answer.await.unwrap());
    }

    type ListGroupsProbe = kafka_protocol::messages::ListGroupsRequest;

    #[tokio::test]
    async fn a_garbled_response_fails_its_request_and_the_connection_stays_usable() {
        let (conn, broker) = connect().await;
        let mut peer = broker.await.unwrap();
        let script = tokio::spawn(async move {
            let (_, version, id) = read_request(&mut peer).await.unwrap();
            // A header with the right id, then an array count of two billion and nothing else.
            let mut body = BytesMut::new();
            body.put_i32(id);
            body.put_u8(0);
            body.put_i32(0);
            body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
            let mut frame = (body.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            peer.write_all(&frame).await.unwrap();
            let (_, _, id) = read_request(&mut peer).await.unwrap();
            let r = MetadataResponse::default();
            peer.write_all(&response(&r, version, id)).await.unwrap();
            peer
        });
        assert!(matches!(
            metadata(&conn).await,
            Err(NetError::Frame(FrameError::Decode { .. }))
        ));
        assert!(metadata(&conn).await.is_ok(), "the next request on the same connection");
        drop(script.await.unwrap());
    }

    #[tokio::test]
    async fn an_oversized_or_short_frame_closes_the_connection_with_an_error() {
        for prefix in [i32::MAX, -5, 2] {
            let (conn, broker) = connect().await;
            let mut peer = broker.await.unwrap();
            let script = tokio::spawn(async move {
                read_request(&mut peer).await.unwrap();
                peer.write_all(&prefix.to_be_bytes()).await.unwrap();
                peer.write_all(&[0; 16]).await.unwrap();
                peer
            });
            let err = metadata(&conn).await.unwrap_err();
            assert!(matches!(err, NetError::Connection { .. }), "{prefix}: {err}");
            assert!(!conn.is_alive());
            assert!(metadata(&conn).await.is_err(), "a closed connection fails at once");
            drop(script.await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_the_connection_is_closed() {
        let (conn, broker) = connect().await;
        let mut peer = broker.await.unwrap();
        let req = tokio::spawn(async move {
            read_request(&mut peer).await.unwrap();
            peer
        });
        let version = conn.version::<MetadataRequest>((1, 12)).unwrap();
        let sent = conn
            .send(
                "Metadata",
                &MetadataRequest::default(),
                version,
                Duration::from_millis(100),
            )
            .await;
        assert!(matches!(sent, Err(NetError::Timeout("Metadata"))));
        let _peer = req.await.unwrap();
        // Closed, so the pool dials a new connection instead of queueing on this one.
        assert!(!conn.is_alive());
        assert!(matches!(metadata(&conn).await, Err(NetError::Connection { .. })));
    }

    #[tokio::test]
    async fn requests_are_counted_by_api_and_broker() {
        let (conn, broker) = connect().await;
        drop(broker.await.unwrap());
        let _ = metadata(&conn).await;
        let counted: Vec<(&str, String, u64)> = conn.counts.requests();
        assert_eq!(
            counted,
            vec![("ApiVersions", "1".to_string(), 1), ("Metadata", "1".to_string(), 1)]
        );
        assert_eq!(Peer::Bootstrap("h:1".into()).label(), "bootstrap");
    }
}
