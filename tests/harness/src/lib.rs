//! Real Apache Kafka clusters for integration tests, the demo and benchmarks, and a real
//! Schema Registry ([`SchemaRegistry`], Apicurio Registry from Maven Central).
//!
//! The harness runs genuine Kafka brokers in KRaft mode as local JVM
//! processes — no Docker and no mocks — from jars that Maven fetches once
//! from Maven Central into a shared cache (see [`KafkaDist`]). A cluster
//! lives in its own temporary directory with ports on 127.0.0.1 and is torn
//! down when dropped, or when the test process dies.
//!
//! ```no_run
//! use kafka_harness::{KafkaCluster, Record};
//!
//! let kafka = KafkaCluster::shared_single();
//! kafka
//!     .create_topic("orders", 3, 1, &[("retention.ms", "604800000")])
//!     .expect("create topic");
//! kafka
//!     .produce("orders", 0, &[Record::new("hello").with_timestamp(1_700_000_000_000)])
//!     .expect("produce");
//! kafka.commit_offsets("billing", &[("orders", 0, 1)]).expect("commit");
//! ```
//!
//! Requirements: a Java 17+ runtime (`$JAVA_HOME/bin/java` or `java` on
//! `PATH`) and, unless the cache is already filled, Maven (`mvn`).
//!
//! Environment variables:
//! - `KAFKA_HARNESS_KAFKA_VERSION`: default Kafka version (otherwise
//!   [`DEFAULT_KAFKA_VERSION`]).
//! - `KAFKA_HARNESS_CACHE`: jar cache (default `<workspace>/target/kafka-dist`).
//! - `KAFKA_HARNESS_MVN`: Maven executable.
//! - `KAFKA_HARNESS_TMP`: parent of cluster directories.
//! - `KAFKA_HARNESS_KEEP=1`: keep cluster directories and broker logs.

mod client;
mod cluster;
pub mod demo;
mod dist;
mod error;
mod kdc;
mod netfault;
mod ports;
mod process;
mod registry;
mod tls;

pub use client::{ConsumerHandle, ConsumerOptions, GroupProtocol, ProducerHandle, QuietContext, Record};
pub use cluster::{ClusterOptions, KafkaCluster, SecureListeners, DEFAULT_JVM_ARGS, KEEP_ENV, TMP_ENV, VERSION_ENV};
pub use dist::{cache_dir, KafkaDist, CACHE_ENV, DEFAULT_KAFKA_VERSION, MVN_ENV};
pub use error::HarnessError;
pub use kdc::{Kdc, KerberosListener, BROKER_SERVICE_PRINCIPAL, REALM as KERBEROS_REALM};
pub use netfault::PortFault;
pub use registry::{
    find_java, ApicurioDist, RegistryOptions, SchemaRegistry, APICURIO_VERSION_ENV, CCOMPAT_PATH,
    DEFAULT_APICURIO_VERSION, JAVA_ENV, MIN_JAVA,
};
pub use tls::{CertKey, TestPki};

/// Milliseconds since the Unix epoch, the unit of Kafka timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
