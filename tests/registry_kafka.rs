//! The Schema Registry watch against a real registry (Apicurio Registry, started by the harness
//! from Maven Central) and a real Kafka cluster: inventory, compatibility, the subject/topic
//! cross-check, sampled wire format, then the registry killed and a registry that never answers.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{openmetrics_check, promtool_check_metrics, Exporter};
use kafka_harness::{KafkaCluster, Record, SchemaRegistry};

const ORDER_V1: &str = r#"{"type":"record","name":"Order","namespace":"r6","fields":[{"name":"id","type":"string"}]}"#;
const ORDER_V2: &str = r#"{"type":"record","name":"Order","namespace":"r6","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}"#;
const LEGACY: &str = r#"{"type":"record","name":"Legacy","namespace":"r6","fields":[{"name":"x","type":"long"}]}"#;
const GONE: &str = r#"{"type":"record","name":"Gone","namespace":"r6","fields":[{"name":"y","type":"boolean"}]}"#;
const PAYMENT_JSON: &str = r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"amount":{"type":"number"}}}"#;
const CUSTOMER_PROTO: &str = "syntax = \"proto3\";\npackage r6;\nmessage Customer { string id = 1; }\n";

/// A value in the registry wire format: magic byte 0, the schema id, then the payload.
fn framed(id: i64, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&(id as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn config(bootstrap: &str, registry_url: &str, blackhole: u16) -> String {
    format!(
        r#"global:
  interval: 2s
  timeout: 3s
  topics:
    allow: ['r6.*']
clusters:
  - name: local
    bootstrap_servers: ["{bootstrap}"]
    labels: {{env: test}}
    schema_registry:
      urls: ["{registry_url}"]
      interval: 2s
      timeout: 5s
      max_staleness: 10s
      page_size: 2
      subject_labels: true
      sampling:
        records: 10
  - name: slow
    bootstrap_servers: ["{bootstrap}"]
    schema_registry:
      urls: ["http://127.0.0.1:{blackhole}"]
      interval: 2s
      timeout: 500ms
"#
    )
}

/// Metric names in the `## Schema Registry` section of docs/metrics.md.
fn documented_registry_metrics() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Schema Registry"))
        .expect("docs/metrics.md has a `## Schema Registry` section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .filter(|n| n.starts_with("kafka_"))
        .collect()
}

fn local(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("cluster", "local"), ("env", "test")];
    l.extend_from_slice(extra);
    l
}

#[test]
fn registry_inventory_cross_check_sampling_and_outage() {
    let kafka = KafkaCluster::shared_single();
    let registry = SchemaRegistry::start(Duration::from_secs(240)).expect("start Apicurio Registry");

    // Registry content: global BACKWARD; one subject with two versions, a JSON one set to NONE,
    // a PROTOBUF one, a live subject whose topic does not exist (orphan) and a soft-deleted one.
    registry.set_compatibility(None, "BACKWARD").unwrap();
    registry.register("r6order.order.events-value", ORDER_V1, None).unwrap();
    let order_id = registry.register("r6order.order.events-value", ORDER_V2, None).unwrap();
    let pay_id = registry
        .register("r6pay.payment.events-value", PAYMENT_JSON, Some("JSON"))
        .unwrap();
    registry
        .set_compatibility(Some("r6pay.payment.events-value"), "NONE")
        .unwrap();
    registry
        .register("r6db.public.customers-value", CUSTOMER_PROTO, Some("PROTOBUF"))
        .unwrap();
    registry.register("r6old.legacy.events-value", LEGACY, None).unwrap();
    registry.register("r6gone.gone.events-value", GONE, None).unwrap();
    registry.soft_delete_subject("r6gone.gone.events-value").unwrap();

    // Topics: three domain-event topics (one without a subject), a CDC topic and an internal
    // topic (no subject required).
    for (topic, partitions) in [
        ("r6order.order.events", 1),
        ("r6pay.payment.events", 1),
        ("r6ship.shipment.events", 2),
        ("r6db.public.customers", 1),
        ("r6cart.internal.retry", 1),
    ] {
        kafka.create_topic(topic, partitions, 1, &[]).unwrap();
    }
    // Order: 5 old unframed records, then the last 10 (the sample): 9 framed with the latest
    // schema's id, 1 framed with an id the registry does not know.
    let mut order: Vec<Record> = (0..5).map(|i| Record::new(format!("{{\"legacy\":{i}}}"))).collect();
    order.extend((0..9).map(|i| Record::new(framed(order_id, format!("order-{i}").as_bytes()))));
    order.push(Record::new(framed(987_654, b"mystery")));
    kafka.produce("r6order.order.events", 0, &order).unwrap();
    let pay: Vec<Record> = (0..2).map(|_| Record::new(framed(pay_id, b"{}"))).collect();
    kafka.produce("r6pay.payment.events", 0, &pay).unwrap();
    // Shipment: JSON text without framing, over both partitions.
    let text = |i: i32| Record::new(format!("{{\"shipment\":{i}}}"));
    kafka
        .produce("r6ship.shipment.events", 0, &[text(0), text(1), text(2)])
        .unwrap();
    kafka.produce("r6ship.shipment.events", 1, &[text(3), text(4)]).unwrap();

    // A registry that accepts connections and never answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let blackhole_port = blackhole.local_addr().unwrap().port();

    let exporter = Exporter::start(
        &config(&kafka.bootstrap_servers(), &registry.url(), blackhole_port),
        &[],
    );
    let order_l = local(&[("topic", "r6order.order.events")]);
    let m = exporter.wait_for(
        Duration::from_secs(180),
        "registry inventory, cross-check and samples",
        |m| {
            m.value("kafka_schema_registry_up", &local(&[])) == Some(1.0)
                && m.value("kafka_schema_registry_unresolved_subjects", &local(&[])) == Some(0.0)
                && m.value("kafka_schema_registry_topics_missing_subject", &local(&[]))
                    .is_some()
                && m.value(
                    "kafka_topic_schema_sampled_records",
                    &[&order_l[..], &[("framing", "registered")]].concat(),
                ) == Some(9.0)
                && m.value(
                    "kafka_topic_schema_sampled_records",
                    &[&order_l[..], &[("framing", "unknown_id")]].concat(),
                ) == Some(1.0)
                && m.value(
                    "kafka_topic_schema_sampled_records",
                    &local(&[("topic", "r6ship.shipment.events"), ("framing", "unframed")]),
                ) == Some(5.0)
                && m.value(
                    "kafka_topic_schema_sampled_records",
                    &local(&[("topic", "r6pay.payment.events"), ("framing", "registered")]),
                ) == Some(2.0)
        },
    );

    // Inventory.
    let l = local(&[]);
    let v = |name: &str, extra: &[(&'static str, &'static str)]| m.value(name, &local(extra));
    assert_eq!(v("kafka_schema_registry_subjects", &[("state", "live")]), Some(4.0));
    assert_eq!(
        v("kafka_schema_registry_subjects", &[("state", "soft_deleted")]),
        Some(1.0)
    );
    assert_eq!(
        v("kafka_schema_registry_schema_versions", &[("state", "live")]),
        Some(5.0)
    );
    assert_eq!(
        v("kafka_schema_registry_schema_versions", &[("state", "soft_deleted")]),
        Some(1.0)
    );
    for (subject, n) in [
        ("r6order.order.events-value", 2.0),
        ("r6pay.payment.events-value", 1.0),
        ("r6db.public.customers-value", 1.0),
        ("r6old.legacy.events-value", 1.0),
    ] {
        assert_eq!(
            m.value(
                "kafka_schema_registry_subject_versions",
                &local(&[("subject", subject)])
            ),
            Some(n),
            "{subject}"
        );
    }
    assert!(
        m.find(
            "kafka_schema_registry_subject_versions",
            &[("subject", "r6gone.gone.events-value")]
        )
        .is_empty(),
        "soft-deleted subjects have no live versions"
    );
    assert_eq!(
        v("kafka_schema_registry_latest_schemas", &[("type", "AVRO")]),
        Some(2.0)
    );
    assert_eq!(
        v("kafka_schema_registry_latest_schemas", &[("type", "JSON")]),
        Some(1.0)
    );
    assert_eq!(
        v("kafka_schema_registry_latest_schemas", &[("type", "PROTOBUF")]),
        Some(1.0)
    );
    assert_eq!(
        v("kafka_schema_registry_compatibility_info", &[("level", "BACKWARD")]),
        Some(1.0)
    );
    assert_eq!(
        v("kafka_schema_registry_mode_info", &[("mode", "READWRITE")]),
        Some(1.0)
    );
    assert_eq!(
        v("kafka_schema_registry_subjects_by_compatibility", &[("level", "NONE")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "kafka_schema_registry_subjects_by_compatibility",
            &[("level", "BACKWARD")]
        ),
        Some(3.0)
    );
    assert_eq!(
        v("kafka_schema_registry_subjects_by_compatibility", &[("level", "FULL")]),
        Some(0.0)
    );
    assert_eq!(
        v("kafka_schema_registry_contexts", &[]),
        Some(1.0),
        "Apicurio has the default context"
    );

    // Cross-check with Kafka.
    for (topic, missing) in [
        ("r6order.order.events", 0.0),
        ("r6pay.payment.events", 0.0),
        ("r6db.public.customers", 0.0),
        ("r6ship.shipment.events", 1.0),
    ] {
        assert_eq!(
            m.value("kafka_topic_schema_subject_missing", &local(&[("topic", topic)])),
            Some(missing),
            "{topic}"
        );
    }
    assert!(
        m.find(
            "kafka_topic_schema_subject_missing",
            &[("topic", "r6cart.internal.retry")]
        )
        .is_empty(),
        "internal topics need no subject"
    );
    assert_eq!(v("kafka_schema_registry_topics_missing_subject", &[]), Some(1.0));
    assert_eq!(
        v("kafka_schema_registry_orphan_subjects", &[]),
        Some(1.0),
        "r6old.legacy.events-value"
    );

    // Sampling: the last 10 records of each topic of a required class.
    let sampled = |topic: &'static str, framing: &'static str| {
        m.value(
            "kafka_topic_schema_sampled_records",
            &local(&[("topic", topic), ("framing", framing)]),
        )
    };
    assert_eq!(
        sampled("r6order.order.events", "unframed"),
        Some(0.0),
        "older records are not sampled"
    );
    assert_eq!(sampled("r6order.order.events", "unchecked"), Some(0.0));
    assert_eq!(sampled("r6pay.payment.events", "registered"), Some(2.0));
    assert_eq!(sampled("r6ship.shipment.events", "unframed"), Some(5.0));
    assert_eq!(sampled("r6db.public.customers", "registered"), Some(0.0), "empty topic");
    assert!(m
        .find(
            "kafka_topic_schema_sampled_records",
            &[("topic", "r6cart.internal.retry")]
        )
        .is_empty());
    let ratio = |topic: &'static str| m.value("kafka_topic_schema_registered_ratio", &local(&[("topic", topic)]));
    assert_eq!(ratio("r6order.order.events"), Some(0.9));
    assert_eq!(ratio("r6pay.payment.events"), Some(1.0));
    assert_eq!(ratio("r6ship.shipment.events"), Some(0.0));
    assert_eq!(ratio("r6db.public.customers"), None, "nothing sampled");

    // Requests: listings were paged (page size 2), nothing failed; the unknown id's 404 is an
    // answer, not an error.
    for op in [
        "subjects",
        "schemas",
        "config",
        "mode",
        "contexts",
        "subject_config",
        "subject_versions",
        "schema_by_id",
    ] {
        let ol = local(&[("operation", op)]);
        assert_eq!(m.value("kafka_schema_registry_errors_total", &ol), Some(0.0), "{op}");
        assert!(
            m.value("kafka_schema_registry_requests_total", &ol).unwrap() > 0.0,
            "{op}"
        );
        let d = m.value("kafka_schema_registry_request_duration_seconds", &ol).unwrap();
        assert!(d > 0.0 && d < 5.0, "{op}: {d}");
    }
    assert_eq!(
        v("kafka_schema_registry_errors_total", &[("operation", "sample")]),
        Some(0.0)
    );
    let polls = m
        .value(
            "kafka_schema_registry_requests_total",
            &local(&[("operation", "config")]),
        )
        .unwrap();
    let subject_pages = m
        .value(
            "kafka_schema_registry_requests_total",
            &local(&[("operation", "subjects")]),
        )
        .unwrap();
    assert!(
        subject_pages >= polls * 4.0,
        "4 live subjects in pages of 2 need 3 requests, 5 with deleted=true 3 more: {subject_pages} for {polls} polls"
    );
    let last = v("kafka_schema_registry_last_success_timestamp_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 30.0, "last success {last} vs now {now}");

    // The registry that never answers: down, timed out, its Kafka metrics unaffected.
    let slow = [("cluster", "slow")];
    assert_eq!(m.value("kafka_schema_registry_up", &slow), Some(0.0));
    assert!(
        m.value(
            "kafka_schema_registry_errors_total",
            &[("cluster", "slow"), ("operation", "subjects")]
        )
        .unwrap()
            >= 1.0
    );
    let d = m
        .value(
            "kafka_schema_registry_request_duration_seconds",
            &[("cluster", "slow"), ("operation", "subjects")],
        )
        .unwrap();
    assert!((0.4..3.0).contains(&d), "timed out after about 500ms: {d}");
    assert!(
        m.find("kafka_schema_registry_subjects", &slow).is_empty(),
        "no inventory"
    );
    assert_eq!(m.value("kafka_slo_exporter_cluster_up", &slow), Some(1.0));
    assert!(m
        .value(
            "kafka_topic_partitions",
            &[("cluster", "slow"), ("topic", "r6order.order.events")]
        )
        .is_some());

    // Every documented registry family is exported, every exported one documented.
    let documented = documented_registry_metrics();
    let exported: BTreeSet<String> = m
        .samples
        .iter()
        .map(|s| s.metric.clone())
        .filter(|n| n.starts_with("kafka_schema_registry_") || n.starts_with("kafka_topic_schema_"))
        .collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exported).collect();
    assert!(undocumented.is_empty(), "exported but not documented: {undocumented:?}");
    assert!(missing.is_empty(), "documented but not exported: {missing:?}");

    // Both exposition formats stay valid with the registry families.
    let (_, _, text) = exporter.get("/metrics", None);
    promtool_check_metrics(&text);
    let accept = "application/openmetrics-text;version=1.0.0";
    let (_, _, om) = exporter.get("/metrics", Some(accept));
    openmetrics_check(&om);

    // The registry goes away: up drops to 0, errors grow, the last inventory is served until
    // max_staleness (10s) and then removed; Kafka collection carries on.
    let errors_before = m
        .value(
            "kafka_schema_registry_errors_total",
            &local(&[("operation", "subjects")]),
        )
        .unwrap();
    registry.stop();
    let m = exporter.wait_for(Duration::from_secs(60), "registry down", |m| {
        m.value("kafka_schema_registry_up", &local(&[])) == Some(0.0)
    });
    assert!(
        m.value(
            "kafka_schema_registry_errors_total",
            &local(&[("operation", "subjects")])
        )
        .unwrap()
            > errors_before
    );
    let cycles = m.value("kafka_slo_exporter_cycles_total", &l).unwrap();
    let m = exporter.wait_for(Duration::from_secs(60), "stale inventory dropped", |m| {
        m.find("kafka_schema_registry_subjects", &[("cluster", "local")])
            .is_empty()
    });
    assert_eq!(m.value("kafka_schema_registry_up", &l), Some(0.0));
    assert_eq!(
        m.value("kafka_slo_exporter_cluster_up", &l),
        Some(1.0),
        "Kafka collection is unaffected"
    );
    assert!(m.value("kafka_slo_exporter_cycles_total", &l).unwrap() > cycles);
    assert_eq!(
        m.value("kafka_topic_partitions", &local(&[("topic", "r6ship.shipment.events")])),
        Some(2.0)
    );
    assert!(m
        .value("kafka_schema_registry_last_success_timestamp_seconds", &l)
        .is_some());
    drop(blackhole);
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn registry_over_tls_with_basic_auth_and_rejected_credentials() {
    let kafka = KafkaCluster::shared_single();
    let certs = tempfile::tempdir().unwrap();
    // A CA with a server certificate for 127.0.0.1 and a client certificate, and an unrelated
    // second CA.
    kafka_harness::TestPki::generate(certs.path(), "kse-test-ca").expect("test CA");
    let other = kafka_harness::TestPki::generate(&certs.path().join("other"), "kse-other-ca").expect("second CA");
    let password = "kse-registry-s3cret";
    let wrong = "kse-wrong-password";
    let registry = SchemaRegistry::start_with(
        kafka_harness::RegistryOptions {
            tls: Some((certs.path().join("server.pem"), certs.path().join("server.key"))),
            users: vec![("exporter".into(), password.into())],
        },
        Duration::from_secs(240),
    )
    .expect("start Apicurio Registry with TLS and basic auth");
    registry.register("r7order.order.events-value", ORDER_V1, None).unwrap();
    let https = registry.https_url().unwrap();
    let pw_file = certs.path().join("registry-password");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    std::env::set_var("KSE_TEST_REGISTRY_WRONG_PASSWORD", wrong);
    let p = |f: &str| certs.path().join(f).display().to_string();
    let config = format!(
        r#"global:
  interval: 2s
  topics:
    allow: ['r7.*']
clusters:
  - name: tls
    bootstrap_servers: ["{bootstrap}"]
    schema_registry:
      urls: ["{https}"]
      interval: 2s
      tls: {{ca_file: "{ca}", cert_file: "{client_cert}", key_file: "{client_key}"}}
      basic_auth: {{username: exporter, password_file: "{pw_file}"}}
  - name: wrongpw
    bootstrap_servers: ["{bootstrap}"]
    schema_registry:
      urls: ["{http}"]
      interval: 2s
      basic_auth: {{username: exporter, password_env: KSE_TEST_REGISTRY_WRONG_PASSWORD}}
  - name: wrongca
    bootstrap_servers: ["{bootstrap}"]
    schema_registry:
      urls: ["{https}"]
      interval: 2s
      tls: {{ca_file: "{other_ca}"}}
      basic_auth: {{username: exporter, password_file: "{pw_file}"}}
"#,
        bootstrap = kafka.bootstrap_servers(),
        http = registry.url(),
        ca = p("ca.pem"),
        other_ca = other.ca.cert.display(),
        client_cert = p("client.pem"),
        client_key = p("client.key"),
        pw_file = pw_file.display(),
    );
    let exporter = Exporter::start(&config, &[]);
    let errors = |m: &common::Metrics, c: &str| {
        m.value(
            "kafka_schema_registry_errors_total",
            &[("cluster", c), ("operation", "subjects")],
        )
        .unwrap_or(0.0)
    };
    let m = exporter.wait_for(Duration::from_secs(120), "TLS registry read, bad ones failing", |m| {
        m.value(
            "kafka_schema_registry_subjects",
            &[("cluster", "tls"), ("state", "live")],
        ) == Some(1.0)
            && errors(m, "wrongpw") >= 1.0
            && errors(m, "wrongca") >= 1.0
    });
    assert_eq!(m.value("kafka_schema_registry_up", &[("cluster", "tls")]), Some(1.0));
    assert_eq!(
        m.value(
            "kafka_schema_registry_errors_total",
            &[("cluster", "tls"), ("operation", "subjects")]
        ),
        Some(0.0)
    );
    for c in ["wrongpw", "wrongca"] {
        assert_eq!(m.value("kafka_schema_registry_up", &[("cluster", c)]), Some(0.0), "{c}");
        assert!(
            m.find("kafka_schema_registry_subjects", &[("cluster", c)]).is_empty(),
            "{c}"
        );
        assert_eq!(
            m.value("kafka_slo_exporter_cluster_up", &[("cluster", c)]),
            Some(1.0),
            "{c}"
        );
    }
    let logs = exporter.logs();
    assert!(logs.contains("HTTP 401"), "the rejected password is reported: {logs}");
    // Neither the passwords nor the Authorization header values (even at debug level).
    let header = |pw: &str| BASE64.encode(format!("exporter:{pw}"));
    for secret in [password.to_string(), wrong.to_string(), header(password), header(wrong)] {
        assert!(!logs.contains(&secret), "a secret reached the log: {secret}");
    }
}
