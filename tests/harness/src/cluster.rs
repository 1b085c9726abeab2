//! KRaft clusters of real broker JVMs.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{
    block_on, consumer_settings, send_with_backpressure, wait_until, Batch, ConsumerHandle, ConsumerOptions, Delivery,
    DeliveryContext, HarnessProducer, ProducerHandle, QuietContext, Record,
};
use crate::dist::{self, KafkaDist, DEFAULT_KAFKA_VERSION};
use crate::error::{HarnessError, Result};
use crate::kdc::{Kdc, KerberosListener};
use crate::ports;
use crate::process::{with_clean_signal_mask, Janitor, NodeProcess};
use crate::tls::TestPki;

/// Environment variable overriding the default Kafka version.
pub const VERSION_ENV: &str = "KAFKA_HARNESS_KAFKA_VERSION";

/// Environment variable choosing the parent of cluster temp directories.
pub const TMP_ENV: &str = "KAFKA_HARNESS_TMP";

/// Environment variable that, when set to `1`, keeps cluster directories
/// (configs, data and broker logs) after the cluster is gone, for debugging.
pub const KEEP_ENV: &str = "KAFKA_HARNESS_KEEP";

/// JVM flags tuned for a fast start on small CI machines: the serial
/// collector and the C1-only JIT each cut roughly half a second off a
/// broker's ~2 s start on 2 cores. Peak throughput is lower with C1 only;
/// benchmarks that push the broker hard can pass their own flags.
pub const DEFAULT_JVM_ARGS: &[&str] = &[
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    // No hsperfdata files, which SIGKILLed JVMs would leave behind in /tmp.
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

/// How long admin operations and metadata waits may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of nodes; every node is a broker.
    pub nodes: usize,
    /// How many of the nodes (the first ones) are also KRaft controllers; `None` for all.
    /// Fewer voters than nodes lets tests kill brokers without losing the controller quorum,
    /// as in production clusters with dedicated controllers.
    pub controllers: Option<usize>,
    /// Kafka version to download and run.
    pub version: String,
    /// Broker settings applied on top of (and overriding) the harness's.
    pub broker_props: Vec<(String, String)>,
    /// JVM flags for the broker processes.
    pub jvm_args: Vec<String>,
    /// How long `start` waits for all brokers to become ready.
    pub startup_timeout: Duration,
    /// Authenticated client listeners besides PLAINTEXT; `None` for PLAINTEXT only.
    pub secure_listeners: Option<SecureListeners>,
    /// A `SASL_PLAINTEXT` listener authenticating with Kerberos (GSSAPI); `None` for none.
    pub kerberos: Option<KerberosListener>,
}

/// Two more client listeners on every broker, with certificates from a CA generated for the
/// cluster ([`KafkaCluster::pki`]); inter-broker and controller traffic stays PLAINTEXT.
///
/// - `SASL_SSL`: TLS (server certificate only) with SASL mechanisms SCRAM-SHA-256 and
///   SCRAM-SHA-512 (credentials created when the storage is formatted), PLAIN, and OAUTHBEARER
///   checked by Kafka's unsecured JWT validator, which accepts any unsigned token and is only
///   fit for tests.
/// - `MTLS`: TLS with `ssl.client.auth=required`; clients need a certificate from the CA.
#[derive(Debug, Clone, Default)]
pub struct SecureListeners {
    /// User names and passwords accepted by SCRAM (both hashes) and PLAIN.
    pub users: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    /// One node of `$KAFKA_HARNESS_KAFKA_VERSION`, or of
    /// [`DEFAULT_KAFKA_VERSION`] if unset.
    fn default() -> Self {
        let version = std::env::var(VERSION_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_KAFKA_VERSION.to_owned());
        ClusterOptions {
            nodes: 1,
            controllers: None,
            version,
            broker_props: Vec::new(),
            jvm_args: DEFAULT_JVM_ARGS.iter().map(|s| s.to_string()).collect(),
            startup_timeout: Duration::from_secs(90),
            secure_listeners: None,
            kerberos: None,
        }
    }
}

impl ClusterOptions {
    /// Default options with `nodes` nodes.
    pub fn with_nodes(nodes: usize) -> ClusterOptions {
        ClusterOptions {
            nodes,
            ..ClusterOptions::default()
        }
    }

    /// Makes only the first `n` nodes KRaft controllers (the rest are brokers only).
    pub fn controllers(mut self, n: usize) -> ClusterOptions {
        self.controllers = Some(n);
        self
    }

    /// Sets the Kafka version.
    pub fn version(mut self, version: impl Into<String>) -> ClusterOptions {
        self.version = version.into();
        self
    }

    /// Adds the `SASL_SSL` and `MTLS` listeners of [`SecureListeners`] with these users.
    pub fn secure_listeners(mut self, users: &[(&str, &str)]) -> ClusterOptions {
        self.secure_listeners = Some(SecureListeners {
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
        });
        self
    }

    /// Adds the Kerberos listener of [`KerberosListener`] for `kdc`'s realm: every broker
    /// authenticates as `kafka/localhost` (added to the KDC here) and is advertised as
    /// `localhost` on that listener.
    pub fn kerberos_listener(mut self, kdc: &Kdc) -> Result<ClusterOptions> {
        let keytab = kdc.add_principal(crate::kdc::BROKER_SERVICE_PRINCIPAL)?;
        self.kerberos = Some(KerberosListener {
            krb5_conf: kdc.krb5_conf(),
            keytab,
            principal: Kdc::principal(crate::kdc::BROKER_SERVICE_PRINCIPAL),
        });
        Ok(self)
    }

    /// Adds a broker setting.
    pub fn broker_prop(mut self, key: impl Into<String>, value: impl Into<String>) -> ClusterOptions {
        self.broker_props.push((key.into(), value.into()));
        self
    }
}

/// One broker node, also a KRaft controller when it is among the voters.
struct Node {
    id: i32,
    broker_port: u16,
    controller_port: u16,
    /// Ports of the `SASL_SSL` and `MTLS` listeners, when the cluster has them.
    secure_ports: Option<(u16, u16)>,
    /// Port of the Kerberos listener, when the cluster has one.
    kerberos_port: Option<u16>,
    dir: PathBuf,
    process: Mutex<Option<NodeProcess>>,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("node.properties")
    }

    fn log_config_path(&self) -> PathBuf {
        self.dir.join("log4j2.properties")
    }

    fn server_log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn stdout_log(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    fn process(&self) -> MutexGuard<'_, Option<NodeProcess>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_running(&self) -> bool {
        self.process().as_ref().is_some_and(NodeProcess::is_running)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// The recent output of the JVM and its broker log, for error messages.
    fn log_tail(&self) -> String {
        let mut tail = read_tail(&self.server_log());
        let out = read_tail(&self.stdout_log());
        if !out.trim().is_empty() {
            tail.push_str("\n--- tail of ");
            tail.push_str(&self.stdout_log().display().to_string());
            tail.push_str(" ---\n");
            tail.push_str(&out);
        }
        tail
    }

    fn startup_error(&self, message: String) -> HarnessError {
        HarnessError::Startup {
            message,
            log_path: self.server_log().display().to_string(),
            log_tail: self.log_tail(),
        }
    }
}

/// A KRaft cluster of real Kafka broker JVMs on 127.0.0.1.
///
/// Every node runs as combined broker and controller with a static voter
/// set. The cluster owns a fresh temporary directory for configs, data and
/// broker logs; dropping the cluster kills the JVMs and removes it, and
/// should the process die first, the brokers' supervisors do the same.
pub struct KafkaCluster {
    dist: KafkaDist,
    dir: PathBuf,
    cluster_id: String,
    nodes: Vec<Node>,
    /// The first `voters` nodes are KRaft controllers as well as brokers.
    voters: usize,
    jvm_args: Vec<String>,
    startup_timeout: Duration,
    janitor: Option<Janitor>,
    admin: OnceLock<AdminClient<QuietContext>>,
    producer: OnceLock<HarnessProducer>,
    secure: Option<SecureListeners>,
    pki: Option<TestPki>,
    kerberos: Option<KerberosListener>,
}

impl std::fmt::Debug for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster")
            .field("version", &self.dist.version())
            .field("dir", &self.dir)
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

impl KafkaCluster {
    /// Fetches the distribution if needed, reserves ports, creates the
    /// cluster directory, writes every node's configuration and formats its
    /// storage — without starting any broker.
    pub fn prepare(opts: ClusterOptions) -> Result<KafkaCluster> {
        if opts.nodes == 0 || opts.nodes > 9 {
            return Err(HarnessError::InvalidArgument(format!(
                "a cluster needs 1 to 9 nodes, not {}",
                opts.nodes
            )));
        }
        let dist = KafkaDist::ensure(&opts.version)?;
        let dir = create_cluster_dir()?;
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        // Started before anything is written so that even a panic further
        // down leaves no directory behind.
        let janitor = if keep { None } else { Some(Janitor::spawn(&dir)?) };

        let pki = match opts.secure_listeners {
            Some(_) => Some(TestPki::generate(&dir.join("pki"), "kafka-harness-ca")?),
            None => None,
        };
        let secure_slots = if opts.secure_listeners.is_some() { 2 } else { 0 };
        let per_node = 2 + secure_slots + usize::from(opts.kerberos.is_some());
        let port_list = ports::allocate(opts.nodes * per_node)?;
        let nodes: Vec<Node> = (0..opts.nodes)
            .map(|i| Node {
                id: i as i32 + 1,
                broker_port: port_list[per_node * i],
                controller_port: port_list[per_node * i + 1],
                secure_ports: (secure_slots == 2).then(|| (port_list[per_node * i + 2], port_list[per_node * i + 3])),
                kerberos_port: opts
                    .kerberos
                    .as_ref()
                    .map(|_| port_list[per_node * i + 2 + secure_slots]),
                dir: dir.join(format!("node-{}", i + 1)),
                process: Mutex::new(None),
            })
            .collect();

        let cluster = KafkaCluster {
            dist,
            dir,
            cluster_id: ports::random_cluster_id(),
            voters: opts.controllers.unwrap_or(opts.nodes).clamp(1, opts.nodes),
            nodes,
            jvm_args: opts.jvm_args.clone(),
            startup_timeout: opts.startup_timeout,
            janitor,
            admin: OnceLock::new(),
            producer: OnceLock::new(),
            secure: opts.secure_listeners.clone(),
            pki,
            kerberos: opts.kerberos.clone(),
        };
        for node in &cluster.nodes {
            cluster.write_node_files(node, &opts.broker_props)?;
        }
        cluster.format_storage()?;
        Ok(cluster)
    }

    /// Starts every node that is not running and waits until each broker
    /// serves requests and the cluster metadata lists all of them.
    pub fn start(&self) -> Result<()> {
        let mut started = Vec::new();
        for node in &self.nodes {
            let mut slot = node.process();
            if slot.as_ref().is_some_and(NodeProcess::is_running) {
                continue;
            }
            *slot = Some(self.spawn_node(node)?);
            started.push(node.id);
        }
        let all: Vec<i32> = self.broker_ids();
        self.wait_ready(&started, &all, self.startup_timeout)
    }

    /// [`prepare`](Self::prepare) followed by [`start`](Self::start).
    ///
    /// Ports are picked some seconds before the brokers bind them, so another
    /// process can occasionally grab one first; such attempts are retried
    /// with fresh ports.
    pub fn start_new(opts: ClusterOptions) -> Result<KafkaCluster> {
        let mut attempt = 1;
        loop {
            let cluster = KafkaCluster::prepare(opts.clone())?;
            match cluster.start() {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < 3 && e.to_string().contains("Address already in use") => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A single-node cluster shared by all tests of the current process.
    ///
    /// It is started on first use and never dropped; its brokers die and its
    /// directory is removed when the process exits. Tests sharing it should
    /// use unique topic and group names.
    ///
    /// # Panics
    /// If the cluster cannot be started.
    pub fn shared_single() -> &'static KafkaCluster {
        static SHARED: OnceLock<KafkaCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            KafkaCluster::start_new(ClusterOptions::default())
                .unwrap_or_else(|e| panic!("starting the shared Kafka cluster failed: {e}"))
        })
    }

    /// `127.0.0.1:port` of every broker, comma-separated.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes.iter().map(Node::address).collect::<Vec<_>>().join(",")
    }

    /// The node ids, `1..=nodes`.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The broker (client) port of a node.
    pub fn broker_port(&self, id: i32) -> u16 {
        self.node(id).broker_port
    }

    /// The Kafka version running.
    pub fn version(&self) -> &str {
        self.dist.version()
    }

    /// Whether librdkafka's KIP-848 members (`group.protocol=consumer`) can join a group here:
    /// from Kafka 4.0, where the protocol is generally available. 3.9 has only a preview speaking
    /// ConsumerGroupHeartbeat v0, and librdkafka requires v1, so its members never get an
    /// assignment there.
    pub fn supports_kip848_consumers(&self) -> bool {
        self.dist.major_version() >= 4
    }

    /// The KRaft cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The cluster's temporary directory (removed with the cluster).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker log of a node, useful when a test fails.
    pub fn log_path(&self, id: i32) -> PathBuf {
        self.node(id).server_log()
    }

    /// Whether a node's JVM is alive.
    pub fn is_running(&self, id: i32) -> bool {
        self.node(id).is_running()
    }

    /// The pid of a node's JVM, if it is running.
    pub fn broker_pid(&self, id: i32) -> Option<u32> {
        self.node(id)
            .process()
            .as_ref()
            .filter(|p| p.is_running())
            .map(|p| p.pid() as u32)
    }

    /// `127.0.0.1:port` of every broker's `SASL_SSL` listener; `None` without
    /// [`SecureListeners`].
    pub fn sasl_ssl_bootstrap_servers(&self) -> Option<String> {
        self.secure_bootstrap(|(sasl, _)| sasl)
    }

    /// `127.0.0.1:port` of every broker's `MTLS` listener; `None` without [`SecureListeners`].
    pub fn mtls_bootstrap_servers(&self) -> Option<String> {
        self.secure_bootstrap(|(_, mtls)| mtls)
    }

    fn secure_bootstrap(&self, pick: fn((u16, u16)) -> u16) -> Option<String> {
        self.nodes
            .iter()
            .map(|n| n.secure_ports.map(|p| format!("127.0.0.1:{}", pick(p))))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(","))
    }

    /// `localhost:port` of every broker's Kerberos listener; `None` without a
    /// [`KerberosListener`].
    pub fn kerberos_bootstrap_servers(&self) -> Option<String> {
        self.nodes
            .iter()
            .map(|n| n.kerberos_port.map(|p| format!("localhost:{p}")))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(","))
    }

    /// The CA and certificates of the secure listeners; `None` without [`SecureListeners`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// A client configuration with `bootstrap.servers` set, for tests that
    /// build their own clients.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers());
        c
    }

    /// A client configuration bootstrapped with broker `id` alone, for tests that need one
    /// broker's own answer (its metadata cache, say) rather than any broker's.
    ///
    /// # Panics
    /// If `id` is not a node of this cluster.
    pub fn broker_client_config(&self, id: i32) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.node(id).address());
        c
    }

    /// SIGKILLs a node's JVM, as a crash would. No-op if it is not running.
    ///
    /// # Panics
    /// If `id` is not a node of this cluster.
    pub fn kill_broker(&self, id: i32) {
        if let Some(p) = self.node(id).process().take() {
            p.kill();
        }
    }

    /// Starts a node again with its old ports and data (killing it first if
    /// it is running) and waits until it serves requests and is back in the
    /// cluster metadata.
    pub fn restart_broker(&self, id: i32) -> Result<()> {
        let node = self.node_checked(id)?;
        {
            let mut slot = node.process();
            if let Some(p) = slot.take() {
                p.kill();
            }
            *slot = Some(self.spawn_node(node)?);
        }
        let expected: Vec<i32> = self
            .nodes
            .iter()
            .filter(|n| n.id == id || n.is_running())
            .map(|n| n.id)
            .collect();
        self.wait_ready(&[id], &expected, self.startup_timeout)
    }

    /// SIGKILLs every node. Fast, and safe for the KRaft log: a stopped
    /// cluster's directory is thrown away, and a restart recovers as after
    /// a power loss.
    pub fn stop_all(&self) {
        for node in &self.nodes {
            if let Some(p) = node.process().take() {
                p.kill();
            }
        }
    }

    /// Waits until the cluster metadata lists exactly `n` brokers, e.g. to
    /// see a killed broker fenced after `broker.session.timeout.ms`.
    pub fn wait_for_brokers(&self, n: usize, timeout: Duration) -> Result<()> {
        let mut last = None;
        let res = wait_until(timeout, &format!("{n} brokers in the metadata"), || {
            match self.metadata_broker_ids() {
                Ok(ids) => {
                    let ok = ids.len() == n;
                    last = Some(ids);
                    ok
                }
                Err(_) => false,
            }
        });
        res.map_err(|e| match (e, last) {
            (HarnessError::Timeout { what, after }, Some(ids)) => HarnessError::Timeout {
                what: format!("{what} (last seen: {ids:?})"),
                after,
            },
            (e, _) => e,
        })
    }

    /// The ids of the brokers in the current cluster metadata, sorted.
    pub fn metadata_broker_ids(&self) -> Result<Vec<i32>> {
        let md = self.fetch_metadata(None)?;
        let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Creates a topic and waits until every partition has a leader.
    pub fn create_topic(&self, name: &str, partitions: i32, replication: i32, configs: &[(&str, &str)]) -> Result<()> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let results = block_on(self.admin()?.create_topics([&topic], &admin_options()))
            .map_err(|e| HarnessError::kafka(format!("creating topic {name}"), e))?;
        check_admin_results(results, "creating topic")?;

        let ctx = format!("topic {name} with leaders for {partitions} partitions");
        wait_until(ADMIN_TIMEOUT, &ctx, || {
            self.fetch_metadata(Some(name)).is_ok_and(|md| {
                md.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
        })
    }

    /// Deletes a topic and waits until it is gone from the metadata.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let results = block_on(self.admin()?.delete_topics(&[name], &admin_options()))
            .map_err(|e| HarnessError::kafka(format!("deleting topic {name}"), e))?;
        check_admin_results(results, "deleting topic")?;
        wait_until(ADMIN_TIMEOUT, &format!("topic {name} to disappear"), || {
            self.fetch_metadata(None)
                .is_ok_and(|md| md.topics().iter().all(|t| t.name() != name))
        })
    }

    /// The names of all topics, sorted (internal ones included).
    pub fn list_topics(&self) -> Result<Vec<String>> {
        let md = self.fetch_metadata(None)?;
        let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_owned()).collect();
        names.sort();
        Ok(names)
    }

    /// Produces `records` to one partition with `acks=all` and returns their
    /// offsets once every record is acknowledged.
    pub fn produce(&self, topic: &str, partition: i32, records: &[Record]) -> Result<Vec<i64>> {
        let producer = self.producer()?;
        let batch = Batch::new(records.len());
        let give_up = Instant::now() + ADMIN_TIMEOUT;
        for (i, r) in records.iter().enumerate() {
            let mut rec = BaseRecord::<[u8], [u8], Box<Delivery>>::with_opaque_to(
                topic,
                Box::new(Delivery::Batch(Arc::clone(&batch), i)),
            )
            .partition(partition)
            .payload(r.value.as_slice());
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(ts) = r.timestamp_ms {
                rec = rec.timestamp(ts);
            }
            if let Err((e, _)) = send_with_backpressure(producer, rec, give_up) {
                batch.abandon(i, e);
            }
        }
        batch.wait(ADMIN_TIMEOUT + Duration::from_secs(5))
    }

    /// Commits offsets for `group` as a standalone (non-member) client.
    ///
    /// Brokers accept such commits only while the group has no active
    /// members, which is what tests that stage a group's position need.
    pub fn commit_offsets(&self, group: &str, offsets: &[(&str, i32, i64)]) -> Result<()> {
        let consumer = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| HarnessError::kafka("building the commit list", e))?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| HarnessError::kafka(format!("committing offsets for group {group}"), e))?;
        for elem in tpl.elements() {
            if let Err(e) = elem.error() {
                return Err(HarnessError::kafka(
                    format!("committing {}/{} for group {group}", elem.topic(), elem.partition()),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// The committed offsets of `group` for the given partitions, in order
    /// (`None` where nothing is committed).
    pub fn committed_offsets(&self, group: &str, partitions: &[(&str, i32)]) -> Result<Vec<Option<i64>>> {
        let consumer = self.group_client(group)?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let got = consumer
            .committed_offsets(tpl, ADMIN_TIMEOUT)
            .map_err(|e| HarnessError::kafka(format!("reading offsets of group {group}"), e))?;
        Ok(partitions
            .iter()
            .map(|(topic, partition)| {
                got.find_partition(topic, *partition).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
            })
            .collect())
    }

    /// Deletes a consumer group (it must have no active members).
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let results = block_on(self.admin()?.delete_groups(&[group], &admin_options()))
            .map_err(|e| HarnessError::kafka(format!("deleting group {group}"), e))?;
        check_admin_results(results, "deleting group")
    }

    /// Starts a group member consuming `topics` on a background thread.
    pub fn consuming_group(&self, group: &str, topics: &[&str], opts: ConsumerOptions) -> Result<ConsumerHandle> {
        let mut config = self.client_config();
        for (k, v) in consumer_settings(group, &opts) {
            config.set(k, v);
        }
        let consumer: BaseConsumer<QuietContext> = config
            .create_with_context(QuietContext)
            .map_err(|e| HarnessError::kafka(format!("creating a consumer for group {group}"), e))?;
        consumer
            .subscribe(topics)
            .map_err(|e| HarnessError::kafka(format!("subscribing group {group}"), e))?;
        ConsumerHandle::spawn(group, consumer, opts.per_record_delay)
    }

    /// Starts a background producer writing `rate_per_sec` keyed JSON
    /// records per second to `topic`, spread over its partitions by key.
    pub fn producing_loop(&self, topic: &str, rate_per_sec: u32) -> Result<ProducerHandle> {
        ProducerHandle::spawn(self.producer()?.clone(), topic, rate_per_sec)
    }

    fn node(&self, id: i32) -> &Node {
        self.node_checked(id).unwrap_or_else(|e| panic!("{e}"))
    }

    fn node_checked(&self, id: i32) -> Result<&Node> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            HarnessError::InvalidArgument(format!("no broker {id}; this cluster has {:?}", self.broker_ids()))
        })
    }

    fn admin(&self) -> Result<&AdminClient<QuietContext>> {
        if let Some(a) = self.admin.get() {
            return Ok(a);
        }
        let admin: AdminClient<QuietContext> = self
            .client_config()
            .create_with_context(QuietContext)
            .map_err(|e| HarnessError::kafka("creating the admin client", e))?;
        // A concurrent caller may have won the race; either client works.
        let _ = self.admin.set(admin);
        Ok(self.admin.get().expect("admin client was just set"))
    }

    fn producer(&self) -> Result<&HarnessProducer> {
        if let Some(p) = self.producer.get() {
            return Ok(p);
        }
        let producer: HarnessProducer = self
            .client_config()
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create_with_context(DeliveryContext)
            .map_err(|e| HarnessError::kafka("creating the producer", e))?;
        let _ = self.producer.set(producer);
        Ok(self.producer.get().expect("producer was just set"))
    }

    /// A non-subscribing consumer of `group`, for offset commits and reads.
    fn group_client(&self, group: &str) -> Result<BaseConsumer<QuietContext>> {
        self.client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create_with_context(QuietContext)
            .map_err(|e| HarnessError::kafka(format!("creating a client for group {group}"), e))
    }

    fn fetch_metadata(&self, topic: Option<&str>) -> Result<Metadata> {
        self.admin()?
            .inner()
            .fetch_metadata(topic, Duration::from_secs(5))
            .map_err(|e| HarnessError::kafka("fetching metadata", e))
    }

    fn write_node_files(&self, node: &Node, user_props: &[(String, String)]) -> Result<()> {
        fs::create_dir_all(node.dir.join("data"))
            .map_err(|e| HarnessError::io(format!("creating {}", node.dir.display()), e))?;
        let mut props = self.node_properties(node);
        self.add_secure_listeners(node, &mut props)?;
        if let (Some(k), Some(port)) = (&self.kerberos, node.kerberos_port) {
            k.add_to(port, &mut props);
        }
        for (k, v) in user_props {
            match props.iter_mut().find(|(pk, _)| pk == k) {
                Some(slot) => slot.1.clone_from(v),
                None => props.push((k.clone(), v.clone())),
            }
        }
        let mut text = String::from("# Generated by kafka-harness.\n");
        for (k, v) in &props {
            text.push_str(&format!("{k}={}\n", escape_property(v)));
        }
        write_file(&node.config_path(), &text)?;
        write_file(&node.log_config_path(), &log4j2_config(&node.server_log()))
    }

    fn node_properties(&self, node: &Node) -> Vec<(String, String)> {
        let n = self.nodes.len();
        let is_voter = (node.id as usize) <= self.voters;
        let voters = self
            .nodes
            .iter()
            .take(self.voters)
            .map(|v| format!("{}@127.0.0.1:{}", v.id, v.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let rf = n.min(3);
        let min_isr = if rf >= 3 { 2 } else { 1 };
        // Kafka 4.x enables the KIP-848 `consumer` protocol by default
        // (`group.coordinator.rebalance.protocols = classic,consumer,streams`).
        // 3.9 only has a preview speaking ConsumerGroupHeartbeat v0, while
        // librdkafka 2.10+ requires v1 (client-generated member ids), so it
        // is left at its stock `classic`-only default there.
        [
            (
                "process.roles",
                if is_voter { "broker,controller" } else { "broker" }.to_owned(),
            ),
            ("node.id", node.id.to_string()),
            ("controller.quorum.voters", voters),
            (
                "listeners",
                if is_voter {
                    format!(
                        "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                        node.broker_port, node.controller_port
                    )
                } else {
                    format!("PLAINTEXT://127.0.0.1:{}", node.broker_port)
                },
            ),
            (
                "advertised.listeners",
                format!("PLAINTEXT://127.0.0.1:{}", node.broker_port),
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned(),
            ),
            ("controller.listener.names", "CONTROLLER".to_owned()),
            ("inter.broker.listener.name", "PLAINTEXT".to_owned()),
            ("log.dirs", node.dir.join("data").display().to_string()),
            ("num.partitions", "1".to_owned()),
            ("auto.create.topics.enable", "false".to_owned()),
            ("offsets.topic.replication.factor", rf.to_string()),
            ("offsets.topic.num.partitions", "1".to_owned()),
            ("transaction.state.log.replication.factor", rf.to_string()),
            ("transaction.state.log.min.isr", min_isr.to_string()),
            ("transaction.state.log.num.partitions", "1".to_owned()),
            ("group.initial.rebalance.delay.ms", "0".to_owned()),
            // Apply retention within a second instead of every 5 minutes, so tests can watch
            // size- and time-based deletion happen.
            ("log.retention.check.interval.ms", "1000".to_owned()),
            // Fence a dead broker within seconds rather than the default 9 s.
            ("broker.session.timeout.ms", "6000".to_owned()),
            ("broker.heartbeat.interval.ms", "1000".to_owned()),
            // KIP-848 groups: the defaults (5 s heartbeat, 45 s session) make
            // assignment and member expiry take many seconds per test.
            ("group.consumer.min.heartbeat.interval.ms", "1000".to_owned()),
            ("group.consumer.heartbeat.interval.ms", "1000".to_owned()),
            ("group.consumer.min.session.timeout.ms", "6000".to_owned()),
            ("group.consumer.session.timeout.ms", "10000".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Adds the `SASL_SSL` and `MTLS` listeners and their TLS and SASL settings.
    fn add_secure_listeners(&self, node: &Node, props: &mut Vec<(String, String)>) -> Result<()> {
        let (Some(secure), Some(pki), Some((sasl_port, mtls_port))) = (&self.secure, &self.pki, node.secure_ports)
        else {
            return Ok(());
        };
        let extra = format!("SASL_SSL://127.0.0.1:{sasl_port},MTLS://127.0.0.1:{mtls_port}");
        for (k, v) in props.iter_mut() {
            match k.as_str() {
                "listeners" | "advertised.listeners" => *v = format!("{v},{extra}"),
                "listener.security.protocol.map" => v.push_str(",SASL_SSL:SASL_SSL,MTLS:SSL"),
                _ => {}
            }
        }
        let keystore = pki.keystore(&pki.server, &node.dir.join("keystore.pem"))?;
        let plain_users: String = secure.users.iter().map(|(u, p)| format!(" user_{u}=\"{p}\"")).collect();
        let set = [
            ("ssl.keystore.type", "PEM".to_owned()),
            ("ssl.keystore.location", keystore.display().to_string()),
            ("ssl.truststore.type", "PEM".to_owned()),
            ("ssl.truststore.location", pki.ca.cert.display().to_string()),
            ("listener.name.mtls.ssl.client.auth", "required".to_owned()),
            (
                "listener.name.sasl_ssl.sasl.enabled.mechanisms",
                "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN,OAUTHBEARER".to_owned(),
            ),
            (
                "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
            ),
            (
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
            ),
            (
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
                format!("org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};"),
            ),
            // Without a server callback handler, OAUTHBEARER tokens are checked by Kafka's
            // unsecured validator: unsigned JWTs are accepted. Test clusters only.
            (
                "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"broker\";".to_owned(),
            ),
        ];
        props.extend(set.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Ok(())
    }

    fn java_command(&self, node: &Node, jvm_args: &[String], main: &str) -> (PathBuf, Vec<String>) {
        let mut args: Vec<String> = jvm_args.to_vec();
        if let Some(k) = &self.kerberos {
            args.push(format!("-Djava.security.krb5.conf={}", k.krb5_conf.display()));
        }
        args.push(format!(
            "-Dlog4j2.configurationFile={}",
            node.log_config_path().display()
        ));
        args.push("-cp".to_owned());
        args.push(self.dist.classpath());
        args.push(main.to_owned());
        (java_binary(), args)
    }

    /// Runs `source`, a single-file Java program (source-file mode), with the cluster's Kafka
    /// jars on the class path and returns its standard output: a way to ask Kafka's own Java
    /// clients what they see. `tests/harness/java/` holds the programs.
    pub fn run_java_source(&self, source: &Path, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new(java_binary())
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(self.dist.classpath())
            .arg(source)
            .args(args)
            .output()
            .map_err(|e| HarnessError::io(format!("running {}", source.display()), e))?;
        if !out.status.success() {
            return Err(HarnessError::InvalidArgument(format!(
                "{} exited with {}: {}",
                source.display(),
                out.status,
                dist::tail_lines(&String::from_utf8_lossy(&out.stderr), 20)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Formats all nodes' storage concurrently (each JVM start costs about a
    /// second of CPU, and nodes are independent here).
    fn format_storage(&self) -> Result<()> {
        let tool_jvm: Vec<String> = [
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut children = Vec::new();
        for node in &self.nodes {
            let (java, mut args) = self.java_command(node, &tool_jvm, "kafka.tools.StorageTool");
            args.extend(
                [
                    "format",
                    "-t",
                    &self.cluster_id,
                    "-c",
                    &node.config_path().display().to_string(),
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            for (user, password) in self.secure.iter().flat_map(|s| &s.users) {
                for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                    args.push("--add-scram".to_owned());
                    args.push(format!("{mechanism}=[name={user},password={password}]"));
                }
            }
            let child = with_clean_signal_mask(&mut Command::new(&java))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .current_dir(&node.dir)
                .spawn()
                .map_err(|e| HarnessError::io(format!("running {} (is Java installed?)", java.display()), e))?;
            children.push((node, child));
        }
        let mut first_error = None;
        for (node, child) in children {
            let result: std::io::Result<Output> = child.wait_with_output();
            let err = match result {
                Ok(out) if out.status.success() => continue,
                Ok(out) => format!(
                    "formatting node {} failed ({}):\n{}{}",
                    node.id,
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => format!("waiting for the storage tool of node {}: {e}", node.id),
            };
            first_error.get_or_insert_with(|| node.startup_error(err));
        }
        first_error.map_or(Ok(()), Err)
    }

    fn spawn_node(&self, node: &Node) -> Result<NodeProcess> {
        let (java, mut args) = self.java_command(node, &self.jvm_args, "kafka.Kafka");
        args.push(node.config_path().display().to_string());
        NodeProcess::spawn(&java, &args, &node.stdout_log(), &node.dir)
    }

    /// Waits until each of `probe` serves metadata requests itself, and the
    /// cluster-wide metadata lists all of `expected`.
    ///
    /// A broker's port accepts TCP connections (into the backlog) well
    /// before it processes requests, and the cluster metadata may still list
    /// a just-killed broker until it is fenced, so only an answer from the
    /// broker itself proves a (re)started broker is up.
    fn wait_ready(&self, probe: &[i32], expected: &[i32], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<&Node> = probe.iter().map(|&id| self.node(id)).collect();
        loop {
            for node in &pending {
                if !node.is_running() {
                    return Err(node.startup_error(format!(
                        "Kafka {} broker {} exited during startup",
                        self.version(),
                        node.id
                    )));
                }
            }
            pending.retain(|node| !probe_broker(node));
            if pending.is_empty() {
                let listed: BTreeSet<i32> = self
                    .metadata_broker_ids()
                    .map(|ids| ids.into_iter().collect())
                    .unwrap_or_default();
                if expected.iter().all(|id| listed.contains(id)) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let node = pending.first().copied().unwrap_or(&self.nodes[0]);
                return Err(node.startup_error(format!(
                    "Kafka {} brokers {:?} not ready after {timeout:?}",
                    self.version(),
                    pending.iter().map(|n| n.id).collect::<Vec<_>>()
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Faults short of a crash, for fault-injection tests.
impl KafkaCluster {
    /// Freezes a node's JVM with SIGSTOP, as a hung broker (a long GC pause, a stuck disk):
    /// its sockets stay open but nothing answers. Returns false if it is not running.
    pub fn pause_broker(&self, id: i32) -> bool {
        self.signal_broker(id, libc::SIGSTOP)
    }

    /// Lets a node paused by [`Self::pause_broker`] run again.
    pub fn resume_broker(&self, id: i32) -> bool {
        self.signal_broker(id, libc::SIGCONT)
    }

    fn signal_broker(&self, id: i32, signal: libc::c_int) -> bool {
        let slot = self.node(id).process();
        match slot.as_ref().filter(|p| p.is_running()) {
            Some(p) => {
                // SAFETY: plain syscall; `is_running` just confirmed the pid is the supervisor's
                // live child, so the signal cannot reach a reused pid.
                unsafe { libc::kill(p.pid(), signal) == 0 }
            }
            None => false,
        }
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        // Clients first, so they do not spend their shutdown retrying dead
        // brokers.
        drop(self.producer.take());
        drop(self.admin.take());
        self.stop_all();
        let used: Vec<u16> = self
            .nodes
            .iter()
            .flat_map(|n| {
                let (a, b) = n.secure_ports.unzip();
                [Some(n.broker_port), Some(n.controller_port), a, b]
            })
            .flatten()
            .collect();
        ports::release(&used);
        match self.janitor.as_mut() {
            Some(j) => j.finish(),
            None => eprintln!("kafka-harness: keeping {}", self.dir.display()),
        }
    }
}

/// Whether a broker answers a metadata request listing itself.
fn probe_broker(node: &Node) -> bool {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, node.broker_port));
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        return false;
    }
    let client: BaseConsumer<QuietContext> = match ClientConfig::new()
        .set("bootstrap.servers", node.address())
        .create_with_context(QuietContext)
    {
        Ok(c) => c,
        Err(_) => return false,
    };
    client
        .fetch_metadata(None, Duration::from_secs(2))
        .is_ok_and(|md| md.brokers().iter().any(|b| b.id() == node.id))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT))
}

fn check_admin_results(
    results: Vec<std::result::Result<String, (String, RDKafkaErrorCode)>>,
    what: &str,
) -> Result<()> {
    for r in results {
        if let Err((name, code)) = r {
            return Err(HarnessError::Broker {
                context: format!("{what} {name}"),
                code,
            });
        }
    }
    Ok(())
}

/// `$JAVA_HOME/bin/java` if set, else `java` from `PATH`.
fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// Creates `kafka-harness-XXXXXXXX` under `$KAFKA_HARNESS_TMP` or the
/// system temp dir.
fn create_cluster_dir() -> Result<PathBuf> {
    create_temp_dir("kafka-harness")
}

/// Creates `<prefix>-XXXXXXXX` (a fresh name) under `$KAFKA_HARNESS_TMP` or the system temp
/// dir: the directory of a cluster, a registry or a KDC.
pub(crate) fn create_temp_dir(prefix: &str) -> Result<PathBuf> {
    let parent = std::env::var_os(TMP_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&parent).map_err(|e| HarnessError::io(format!("creating {}", parent.display()), e))?;
    loop {
        let dir = parent.join(format!("{prefix}-{:08x}", ports::random_u32()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(HarnessError::io(format!("creating {}", dir.display()), e)),
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

/// Escapes a value for a Java properties file.
fn escape_property(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out
}

/// log4j2 configuration sending all broker logging to one file at INFO.
///
/// Kafka 4 logs through log4j2 (3.9 through SLF4J, bound to log4j2 by the
/// jar set), so this one file covers both; nothing reaches the test's
/// stdout. The request logger is noisy at INFO and only useful at DEBUG.
fn log4j2_config(log_file: &Path) -> String {
    format!(
        "status = warn\n\
         appender.file.type = File\n\
         appender.file.name = file\n\
         appender.file.fileName = {}\n\
         appender.file.layout.type = PatternLayout\n\
         appender.file.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = info\n\
         rootLogger.appenderRef.file.ref = file\n\
         logger.request.name = kafka.request.logger\n\
         logger.request.level = warn\n",
        escape_property(&log_file.display().to_string())
    )
}

/// The last lines of a possibly large log file.
pub(crate) fn read_tail(path: &Path) -> String {
    const MAX: u64 = 16 * 1024;
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(cannot read {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX {
        let _ = f.seek(SeekFrom::Start(len - MAX));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    dist::tail_lines(&String::from_utf8_lossy(&buf), 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_escaping() {
        assert_eq!(escape_property("a\\b"), "a\\\\b");
        assert_eq!(escape_property("x\ny"), "x\\ny");
    }

    #[test]
    fn default_options() {
        let o = ClusterOptions::with_nodes(3).broker_prop("a", "b");
        assert_eq!(o.nodes, 3);
        assert_eq!(o.broker_props, vec![("a".to_owned(), "b".to_owned())]);
        assert!(!o.version.is_empty());
    }
}
