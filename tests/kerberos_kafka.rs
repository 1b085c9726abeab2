//! The exporter against a real Kafka broker that authenticates clients with Kerberos (SASL
//! GSSAPI): an MIT Kerberos KDC from Debian's packages, started by the harness with a fresh
//! realm on a free port, principals and keytabs for the broker (`kafka/localhost`) and the
//! exporter, and a broker with a `SASL_PLAINTEXT` GSSAPI listener.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Exporter, Metrics};
use kafka_harness::{ClusterOptions, KafkaCluster, Kdc, Record};

/// The exporter's principal (without realm) in the good case.
const EXPORTER: &str = "kse-exporter";

struct Realm {
    kdc: Kdc,
    kafka: KafkaCluster,
    /// The exporter's keytab.
    keytab: PathBuf,
}

fn realm() -> &'static Realm {
    static REALM: OnceLock<Realm> = OnceLock::new();
    REALM.get_or_init(|| {
        let kdc = Kdc::start().expect("start the KDC");
        let keytab = kdc.add_principal(EXPORTER).unwrap();
        let opts = ClusterOptions::default().kerberos_listener(&kdc).unwrap();
        let kafka = KafkaCluster::start_new(opts).expect("start Kafka with a Kerberos listener");
        kafka.create_topic("krb.orders", 2, 1, &[]).unwrap();
        let records: Vec<Record> = (0..10).map(|i| Record::new(format!("r{i}"))).collect();
        kafka.produce("krb.orders", 0, &records).unwrap();
        kafka.commit_offsets("krb-billing", &[("krb.orders", 0, 3)]).unwrap();
        Realm { kdc, kafka, keytab }
    })
}

/// A cluster entry authenticating as `principal` with `keytab` on the Kerberos listener.
fn kerberos_entry(name: &str, realm: &Realm, principal: &str, keytab: &Path, extra: &str) -> String {
    format!(
        "  - name: {name}\n    bootstrap_servers: ['{}']\n    topics: {{allow: ['krb\\..*']}}\n    groups: {{allow: ['krb-.*']}}\n    \
         sasl:\n      mechanism: GSSAPI\n      kerberos:\n        principal: {principal}\n        keytab: '{}'\n        \
         service_name: kafka\n        krb5_conf: '{}'\n{extra}",
        realm.kafka.kerberos_bootstrap_servers().unwrap(),
        keytab.display(),
        realm.kdc.krb5_conf().display()
    )
}

fn config(entries: &[String]) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 3s\nclusters:\n{}",
        entries.concat()
    )
}

fn up(m: &Metrics, cluster: &str) -> Option<f64> {
    m.value("kafka_slo_exporter_cluster_up", &[("cluster", cluster)])
}

fn lag(m: &Metrics, cluster: &str) -> Option<f64> {
    m.value(
        "kafka_consumergroup_lag",
        &[
            ("cluster", cluster),
            ("group", "krb-billing"),
            ("topic", "krb.orders"),
            ("partition", "0"),
        ],
    )
}

#[test]
fn lag_is_collected_through_kerberos() {
    let realm = realm();
    let principal = Kdc::principal(EXPORTER);
    let entries = [kerberos_entry(
        "krb",
        realm,
        &principal,
        &realm.keytab,
        "    probe: {topic: krb.probe, group: krb-probe}\n",
    )];
    let mut exporter = Exporter::start(&config(&entries), &[]);
    let m = exporter.wait_for(Duration::from_secs(60), "the Kerberos cluster up with lag", |m| {
        up(m, "krb") == Some(1.0) && lag(m, "krb").is_some()
    });
    assert_eq!(lag(&m, "krb"), Some(7.0));
    assert_eq!(m.value("kafka_brokers", &[("cluster", "krb")]), Some(1.0));
    assert_eq!(
        m.value("kafka_topic_partitions", &[("cluster", "krb"), ("topic", "krb.orders")]),
        Some(2.0)
    );
    // The native reader has no Kerberos: librdkafka serves the cycle, and says why.
    let reader = m.labels_of("kafka_slo_exporter_kafka_reader_info");
    assert_eq!(reader.len(), 1, "{reader:?}");
    assert_eq!(reader[0]["reader"], "librdkafka");
    assert!(reader[0]["reason"].contains("GSSAPI"), "{reader:?}");
    assert_eq!(
        m.value(
            "kafka_slo_exporter_kafka_client_errors_total",
            &[("cluster", "krb"), ("kind", "authentication")]
        ),
        Some(0.0),
        "logs:\n{}",
        exporter.logs()
    );
    // The delivery probe's producer and consumer authenticate the same way.
    exporter.wait_for(Duration::from_secs(60), "probe delivering over Kerberos", |m| {
        m.value("kafka_probe_up", &[("cluster", "krb")]) == Some(1.0)
    });
    // The KDC issued the exporter a ticket for the brokers' service principal: this was
    // Kerberos, not some other way in.
    let kdc_log = std::fs::read_to_string(realm.kdc.dir().join("kdc.log")).unwrap();
    let service = Kdc::principal(kafka_harness::BROKER_SERVICE_PRINCIPAL);
    assert!(
        kdc_log
            .lines()
            .any(|l| l.contains("TGS_REQ") && l.contains("ISSUE") && l.contains(&principal) && l.contains(&service)),
        "no service ticket for {principal} to {service} in the KDC log:\n{kdc_log}"
    );
    // The tickets live in a credential cache of the exporter's own, removed when it stops.
    let cache = std::env::temp_dir().join(format!("kafka-slo-exporter-{}.krb5cc", exporter.pid()));
    assert!(cache.is_file(), "no credential cache at {}", cache.display());
    assert!(exporter.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert!(!cache.exists(), "{} left behind", cache.display());
}

#[test]
fn a_wrong_keytab_is_an_error_of_its_cluster_and_the_exporter_keeps_serving() {
    let realm = realm();
    // A keytab whose keys the KDC replaced after it was written.
    let stale = realm.kdc.add_principal("kse-stale").unwrap();
    realm.kdc.rotate_keys("kse-stale").unwrap();
    let plain = format!(
        "  - name: plain\n    bootstrap_servers: ['{}']\n    topics: {{allow: ['krb\\..*']}}\n    groups: {{allow: ['krb-.*']}}\n",
        realm.kafka.bootstrap_servers()
    );
    let entries = [
        kerberos_entry("badkrb", realm, &Kdc::principal("kse-stale"), &stale, ""),
        plain,
    ];
    let exporter = Exporter::start(&config(&entries), &[]);
    let m = exporter.wait_for(Duration::from_secs(60), "the bad cluster failing, the other up", |m| {
        up(m, "badkrb") == Some(0.0)
            && up(m, "plain") == Some(1.0)
            && lag(m, "plain").is_some()
            && m.value(
                "kafka_slo_exporter_kafka_client_errors_total",
                &[("cluster", "badkrb"), ("kind", "authentication")],
            )
            .is_some_and(|v| v > 0.0)
    });
    assert_eq!(lag(&m, "plain"), Some(7.0));
    assert_eq!(m.value("kafka_brokers", &[("cluster", "badkrb")]), None);
    assert_eq!(exporter.get("/-/healthy", None).0, 200);
    // The reason is logged for that cluster: kinit refused the keytab, and the broker
    // connection found no Kerberos credentials.
    let logs = exporter.logs();
    let for_cluster = |needle: &str| {
        logs.lines()
            .any(|l| l.contains("\"cluster\":\"badkrb\"") && l.contains(needle))
    };
    assert!(
        for_cluster("Kerberos ticket refresh failed"),
        "no kinit failure logged for badkrb:\n{logs}"
    );
    assert!(
        for_cluster("Failed to initialize SASL authentication")
            && for_cluster("GSSAPI Error")
            && for_cluster("No Kerberos credentials available"),
        "no GSSAPI authentication error logged for badkrb:\n{logs}"
    );
}

#[test]
fn kerberos_settings_are_checked_at_start_up() {
    let realm = realm();
    let dir = tempfile::tempdir().unwrap();
    let not_a_keytab = common::write_file(dir.path(), "not.keytab", "kse-exporter secret");
    let missing = dir.path().join("missing.keytab");
    let principal = Kdc::principal(EXPORTER);
    let cases = [
        (
            config(&[kerberos_entry("k", realm, &principal, &missing, "")]),
            "clusters[0].sasl.kerberos.keytab",
            "No such file",
        ),
        (
            config(&[kerberos_entry("k", realm, &principal, &not_a_keytab, "")]),
            "clusters[0].sasl.kerberos.keytab",
            "is not a Kerberos keytab",
        ),
        (
            config(&[
                kerberos_entry("k", realm, &principal, &realm.keytab, ""),
                kerberos_entry("k2", realm, "other@KSE.TEST", &realm.keytab, ""),
            ]),
            "clusters[1].sasl.kerberos.principal",
            "one exporter process has one Kerberos identity",
        ),
        (
            config(&[kerberos_entry(
                "k",
                realm,
                &principal,
                &realm.keytab,
                "    reader: native\n",
            )]),
            "clusters[0].reader",
            "GSSAPI",
        ),
    ];
    for (config, field, reason) in cases {
        let path = common::write_file(dir.path(), "config.yml", &config);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-slo-exporter"))
            .arg("--config.file")
            .arg(&path)
            .arg("--config.check")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(field) && stderr.contains(reason),
            "expected {field}: {reason}; got: {stderr}"
        );
    }
}
