//! The native reader's connections to one cluster: one per broker, kept across cycles and
//! replaced when it breaks, with a growing pause between failed attempts; the brokers' addresses
//! from the latest Metadata response; and the bootstrap servers until the first one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};

use super::conn::{self, Connection, Peer, Setup};
use super::oauth::TokenProvider;
use super::sasl::SaslClient;
use super::settings::{SaslSettings, Settings};
use super::NetError;
use crate::kafka::{ClientErrors, ReaderStats};

/// Metadata versions the reader uses: v1 is the first with a null topic list meaning "all",
/// v12 the newest whose fields it reads (v13 only adds a top-level error code).
const METADATA: (i16, i16) = (1, 12);

/// A broker slot: its live connection, or when the next attempt may start after failures.
#[derive(Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    failures: u32,
    retry_at: Option<Instant>,
}

pub(crate) struct Pool {
    pub(crate) cluster: String,
    settings: Settings,
    tls: Option<Arc<rustls::ClientConfig>>,
    tokens: Option<Arc<TokenProvider>>,
    stats: ReaderStats,
    errors: ClientErrors,
    /// Broker addresses (`host:port`) by node id, from the latest Metadata response.
    brokers: Mutex<BTreeMap<i32, String>>,
    slots: Mutex<HashMap<Peer, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl Pool {
    pub(crate) fn new(
        cluster: &str,
        settings: Settings,
        stats: ReaderStats,
        errors: ClientErrors,
    ) -> Result<Pool, String> {
        let tls = match &settings.tls {
            Some(t) => Some(super::tls::client_config(t)?),
            None => None,
        };
        let tokens = match TokenProvider::from_settings(settings.sasl.as_ref()) {
            Some(t) => {
                let ca_file = settings.tls.as_ref().and_then(|t| t.ca_file.as_deref());
                Some(Arc::new(t.with_https(super::tls::https_client_config(ca_file)?)))
            }
            None => None,
        };
        Ok(Pool {
            cluster: cluster.to_string(),
            settings,
            tls,
            tokens,
            stats,
            errors,
            brokers: Mutex::new(BTreeMap::new()),
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the known brokers with those of a Metadata response; connections to brokers
    /// that left are dropped.
    pub(crate) fn set_brokers(&self, brokers: BTreeMap<i32, String>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|peer, _| match peer {
            Peer::Node(id) => brokers.contains_key(id),
            Peer::Bootstrap(_) => true,
        });
        *self.brokers.lock().unwrap_or_else(PoisonError::into_inner) = brokers;
    }

    pub(crate) fn broker_ids(&self) -> Vec<i32> {
        self.brokers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    fn slot(&self, peer: &Peer) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(peer.clone()).or_default())
    }

    fn address(&self, id: i32) -> Option<String> {
        self.brokers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The connection to broker `id`, opened if needed; a broker not in the last metadata is
    /// looked up with a Metadata request first.
    pub(crate) async fn node(&self, id: i32, deadline: Instant) -> Result<Arc<Connection>, NetError> {
        let addr = match self.address(id) {
            Some(a) => a,
            None => {
                self.metadata(Some(Vec::new()), deadline).await?;
                self.address(id)
                    .ok_or_else(|| NetError::Protocol(format!("broker {id} is not in the cluster's metadata")))?
            }
        };
        self.open(Peer::Node(id), &addr, deadline).await
    }

    /// A Metadata request for `topics` (`None`: all; empty: brokers only), which also
    /// refreshes the known brokers.
    pub(crate) async fn metadata(
        &self,
        topics: Option<Vec<String>>,
        deadline: Instant,
    ) -> Result<MetadataResponse, NetError> {
        let conn = self.any(deadline).await?;
        let request = |_version: i16| {
            let mut r = MetadataRequest::default();
            r.topics = topics.as_ref().map(|names| {
                names
                    .iter()
                    .map(|n| {
                        let mut t = MetadataRequestTopic::default();
                        t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                        t
                    })
                    .collect()
            });
            r.allow_auto_topic_creation = false;
            r
        };
        let response = self.call(conn, "Metadata", METADATA, request, deadline).await?;
        let brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        self.set_brokers(brokers);
        Ok(response)
    }

    /// A connection to any broker: a live one if there is one, else the known brokers and then
    /// the bootstrap servers in turn. The error names the last failure.
    pub(crate) async fn any(&self, deadline: Instant) -> Result<Arc<Connection>, NetError> {
        let live = {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            slots.values().cloned().collect::<Vec<_>>()
        };
        for slot in live {
            if let Ok(s) = slot.try_lock() {
                if let Some(c) = s.conn.as_ref().filter(|c| c.is_alive()) {
                    return Ok(Arc::clone(c));
                }
            }
        }
        let known: Vec<(Peer, String)> = self
            .brokers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, a)| (Peer::Node(*id), a.clone()))
            .chain(
                self.settings
                    .bootstrap
                    .iter()
                    .map(|a| (Peer::Bootstrap(a.clone()), a.clone())),
            )
            .collect();
        let mut last = NetError::connection(crate::kafka::ClientErrorKind::AllBrokersDown, "no broker to connect to");
        for (peer, addr) in known {
            match self.open(peer, &addr, deadline).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }

    /// The live connection of `peer`, or a new one unless the previous attempt failed too
    /// recently (`reconnect.backoff.ms`, doubling up to `reconnect.backoff.max.ms`).
    async fn open(&self, peer: Peer, addr: &str, deadline: Instant) -> Result<Arc<Connection>, NetError> {
        let slot = self.slot(&peer);
        let mut slot = slot.lock().await;
        if let Some(c) = slot.conn.as_ref().filter(|c| c.is_alive()) {
            return Ok(Arc::clone(c));
        }
        slot.conn = None;
        if let Some(at) = slot.retry_at {
            let now = Instant::now();
            if at > now {
                if at >= deadline {
                    return Err(NetError::connection(
                        crate::kafka::ClientErrorKind::Transport,
                        format!("{addr}: waiting to reconnect after {} failures", slot.failures),
                    ));
                }
                tokio::time::sleep(at - now).await;
            }
        }
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(self.settings.connect_timeout);
        match self.connect(peer, addr, budget).await {
            Ok(c) => {
                let c = Arc::new(c);
                slot.conn = Some(Arc::clone(&c));
                slot.failures = 0;
                slot.retry_at = None;
                Ok(c)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                let pause = backoff(
                    self.settings.reconnect_backoff,
                    self.settings.reconnect_backoff_max,
                    slot.failures,
                );
                slot.retry_at = Some(Instant::now() + pause);
                if let Some(kind) = e.client_error_kind() {
                    self.errors.count_kind(kind);
                }
                // The first failure after a success is news; the retries that follow are not.
                if slot.failures == 1 {
                    tracing::warn!(cluster = self.cluster.as_str(), broker = addr, "native reader: {e}");
                } else {
                    tracing::debug!(cluster = self.cluster.as_str(), broker = addr, "native reader: {e}");
                }
                Err(e)
            }
        }
    }

    async fn connect(&self, peer: Peer, addr: &str, budget: Duration) -> Result<Connection, NetError> {
        let started = Instant::now();
        let tcp = conn::tcp(addr, budget).await?;
        let stream: Box<dyn conn::Io> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = super::tls::server_name(host)
                    .map_err(|e| NetError::connection(crate::kafka::ClientErrorKind::Tls, e))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let left = budget.saturating_sub(started.elapsed());
                let tls = tokio::time::timeout(left, connector.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        NetError::connection(
                            crate::kafka::ClientErrorKind::Tls,
                            format!("{addr}: TLS handshake timed out"),
                        )
                    })?
                    .map_err(|e| {
                        NetError::connection(
                            crate::kafka::ClientErrorKind::Tls,
                            format!("{addr}: TLS handshake failed: {e}"),
                        )
                    })?;
                Box::new(tls)
            }
        };
        let sasl = self.sasl_client(budget.saturating_sub(started.elapsed())).await?;
        let setup = Setup {
            client_id: &self.settings.client_id,
            sasl,
            counts: self.stats.clone(),
            timeout: budget.saturating_sub(started.elapsed()).max(Duration::from_millis(100)),
        };
        Connection::establish(peer, stream, setup)
            .await
            .map_err(|e| e.context(addr))
    }

    /// The SASL exchange for a new connection; an OAUTHBEARER token is fetched (or taken from
    /// the cache) on a blocking thread.
    async fn sasl_client(&self, budget: Duration) -> Result<Option<SaslClient>, NetError> {
        let auth = |m: String| NetError::connection(crate::kafka::ClientErrorKind::Authentication, m);
        Ok(match &self.settings.sasl {
            None => None,
            Some(SaslSettings::Plain { username, password }) => Some(SaslClient::plain(username, password)),
            Some(SaslSettings::Scram {
                sha512,
                username,
                password,
            }) => Some(SaslClient::scram(*sha512, username, password)),
            Some(SaslSettings::OauthUnsecured { .. } | SaslSettings::OauthOidc { .. }) => {
                let tokens = self.tokens.clone().ok_or_else(|| auth("no token source".into()))?;
                let fetch = Arc::clone(&tokens);
                let token = tokio::task::spawn_blocking(move || fetch.token(budget))
                    .await
                    .map_err(|e| auth(format!("fetching an OAUTHBEARER token: {e}")))?
                    .map_err(|e| auth(format!("fetching an OAUTHBEARER token: {e}")))?;
                Some(SaslClient::oauthbearer(&token, tokens.extensions()))
            }
        })
    }

    /// Sends a request built for the negotiated version to `conn`; a connection that broke
    /// under it is replaced once.
    pub(crate) async fn call<R: Request>(
        &self,
        conn: Arc<Connection>,
        api: &'static str,
        ours: (i16, i16),
        build: impl Fn(i16) -> R,
        deadline: Instant,
    ) -> Result<R::Response, NetError> {
        let version = conn.version::<R>(ours).ok_or(NetError::Unsupported(api))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let result = conn.send(api, &build(version), version, left).await;
        match result {
            Err(NetError::Connection { .. }) if !conn.is_alive() && Instant::now() < deadline => {
                let fresh = match &conn.peer {
                    Peer::Node(id) => match self.address(*id) {
                        Some(addr) => self.open(conn.peer.clone(), &addr, deadline).await?,
                        None => return Err(NetError::Protocol(format!("broker {id} left the cluster"))),
                    },
                    Peer::Bootstrap(addr) => self.open(conn.peer.clone(), addr, deadline).await?,
                };
                let version = fresh.version::<R>(ours).ok_or(NetError::Unsupported(api))?;
                let left = deadline.saturating_duration_since(Instant::now());
                fresh.send(api, &build(version), version, left).await
            }
            other => other,
        }
    }
}

/// The pause after `failures` failed attempts in a row: `base` doubled per failure up to `max`.
fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    base.saturating_mul(1 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(b, m, 1), b);
        assert_eq!(backoff(b, m, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, m, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, m, 5), m);
        assert_eq!(backoff(b, m, u32::MAX), m);
    }
}
