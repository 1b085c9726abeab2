//! The exporter against a real Kafka with authenticated listeners: SASL_SSL with SCRAM-SHA-256,
//! SCRAM-SHA-512, PLAIN and OAUTHBEARER (Kafka's unsecured JWT validator), and mutual TLS.
//! Certificates are generated for the test cluster; SCRAM credentials are created when its
//! storage is formatted.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use common::{write_file, Exporter, Metrics};
use kafka_harness::{ClusterOptions, KafkaCluster, TestPki};

const ALICE_PASSWORD: &str = "alice-pw-7f3c1e";
const BOB_PASSWORD: &str = "bob-pw-92ab4d";
const KEY_PASSWORD: &str = "key-pw-5d8e0a";
const WRONG_PASSWORD: &str = "wrong-pw-c41d77";

fn cluster() -> &'static KafkaCluster {
    static CLUSTER: OnceLock<KafkaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let opts = ClusterOptions::default().secure_listeners(&[("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)]);
        let kafka = KafkaCluster::start_new(opts).expect("start Kafka with secure listeners");
        kafka.create_topic("sec.orders", 2, 1, &[]).unwrap();
        let records: Vec<kafka_harness::Record> =
            (0..10).map(|i| kafka_harness::Record::new(format!("r{i}"))).collect();
        kafka.produce("sec.orders", 0, &records).unwrap();
        kafka.commit_offsets("sec-billing", &[("sec.orders", 0, 3)]).unwrap();
        kafka
    })
}

fn servers(list: &str) -> String {
    let quoted: Vec<String> = list.split(',').map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A cluster entry of the exporter config, watching only the test topic and group.
fn entry(name: &str, bootstrap: &str, security: &str) -> String {
    format!(
        "  - name: {name}\n    bootstrap_servers: {}\n    topics: {{allow: ['sec\\..*']}}\n    groups: {{allow: ['sec-.*']}}\n{security}",
        servers(bootstrap)
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

/// No log line may contain a secret, at any level.
fn assert_no_secrets(exporter: &Exporter, secrets: &[&str]) {
    let logs = exporter.logs();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        for s in secrets {
            assert!(!line.contains(s), "log line leaks a secret: {line}");
        }
    }
}

#[test]
fn every_mechanism_collects_real_metrics() {
    let kafka = cluster();
    let pki = kafka.pki().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_file(d, "alice.pw", ALICE_PASSWORD);
    write_file(d, "bob.pw", &format!("{BOB_PASSWORD}\n"));
    write_file(d, "key.pw", KEY_PASSWORD);
    let enc_key = pki
        .encrypted_key(&pki.client, KEY_PASSWORD, &d.join("client.enc.key"))
        .unwrap();
    let ca = pki.ca.cert.display().to_string();
    let sasl_ssl = kafka.sasl_ssl_bootstrap_servers().unwrap();
    let pw = |f: &str| d.join(f).display().to_string();
    let entries = [
        entry(
            "scram256",
            &sasl_ssl,
            &format!("    tls: {{ca_file: '{ca}'}}\n    sasl: {{mechanism: SCRAM-SHA-256, username: alice, password_file: '{}'}}\n", pw("alice.pw")),
        ),
        entry(
            "scram512",
            &sasl_ssl,
            &format!(
                "    tls: {{ca_file: '{ca}'}}\n    sasl: {{mechanism: SCRAM-SHA-512, username: bob, password_file: '{}'}}\n    probe: {{topic: sec.probe, group: sec-probe}}\n",
                pw("bob.pw")
            ),
        ),
        entry(
            "plain",
            &sasl_ssl,
            &format!("    tls: {{ca_file: '{ca}'}}\n    sasl: {{mechanism: PLAIN, username: alice, password_file: '{}'}}\n", pw("alice.pw")),
        ),
        entry(
            "oauth",
            &sasl_ssl,
            &format!("    tls: {{ca_file: '{ca}'}}\n    sasl:\n      mechanism: OAUTHBEARER\n      oauthbearer: {{method: unsecured_jwt, principal: alice, lifetime: 1h}}\n"),
        ),
        entry(
            "mtls",
            &kafka.mtls_bootstrap_servers().unwrap(),
            &format!(
                "    tls: {{ca_file: '{ca}', cert_file: '{}', key_file: '{}', key_password_file: '{}'}}\n",
                pki.client.cert.display(),
                enc_key.display(),
                pw("key.pw")
            ),
        ),
    ];
    let exporter = Exporter::start(&config(&entries), &[]);
    let names = ["scram256", "scram512", "plain", "oauth", "mtls"];
    let m = exporter.wait_for(Duration::from_secs(60), "every cluster up with lag", |m| {
        names.iter().all(|c| {
            up(m, c) == Some(1.0)
                && m.value(
                    "kafka_consumergroup_lag",
                    &[("cluster", c), ("group", "sec-billing"), ("partition", "0")],
                )
                .is_some()
        })
    });
    for c in names {
        assert_eq!(
            m.value(
                "kafka_slo_exporter_kafka_reader_info",
                &[("cluster", c), ("reader", "native"), ("reason", "default")]
            ),
            Some(1.0),
            "{c}: the native reader authenticates with these settings itself"
        );
        for kind in ["authentication", "tls"] {
            assert_eq!(
                m.value(
                    "kafka_slo_exporter_kafka_client_errors_total",
                    &[("cluster", c), ("kind", kind)]
                ),
                Some(0.0),
                "{c}: {kind} errors; logs:\n{}",
                exporter.logs()
            );
        }
        assert_eq!(m.value("kafka_brokers", &[("cluster", c)]), Some(1.0), "{c}");
        assert_eq!(
            m.value("kafka_topic_partitions", &[("cluster", c), ("topic", "sec.orders")]),
            Some(2.0),
            "{c}"
        );
        assert_eq!(
            m.value(
                "kafka_consumergroup_lag",
                &[
                    ("cluster", c),
                    ("group", "sec-billing"),
                    ("topic", "sec.orders"),
                    ("partition", "0")
                ]
            ),
            Some(7.0),
            "{c}"
        );
    }
    // The delivery probe builds its own producer and consumer from the same settings.
    exporter.wait_for(Duration::from_secs(60), "probe delivering over SCRAM-SHA-512", |m| {
        m.value("kafka_probe_up", &[("cluster", "scram512")]) == Some(1.0)
    });
    // "eyJ" starts every base64url-encoded JSON object, i.e. every JWT such as the OAUTHBEARER token.
    assert_no_secrets(&exporter, &[ALICE_PASSWORD, BOB_PASSWORD, KEY_PASSWORD, "eyJ"]);
}

/// `Authorization` header and body of each request to the token endpoint.
type TokenRequests = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal OAuth token endpoint: answers every client-credentials request with an unsigned
/// JWT for `oidc-user` (which the cluster's unsecured validator accepts) and records each
/// request's `Authorization` header and body.
fn token_endpoint() -> (String, TokenRequests) {
    token_endpoint_issuing(3600)
}

/// [`token_endpoint`] issuing tokens that expire `lifetime_secs` after they are made (a
/// negative lifetime: tokens that have already expired).
fn token_endpoint_issuing(lifetime_secs: i64) -> (String, TokenRequests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut auth, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            log.lock()
                .unwrap()
                .push((auth, String::from_utf8_lossy(&body).into_owned()));
            let now = kafka_harness::now_ms() / 1000;
            let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            let token = format!(
                "{}.{}.",
                b64(r#"{"alg":"none"}"#.to_string()),
                b64(format!(
                    r#"{{"sub":"oidc-user","iat":{now},"exp":{}}}"#,
                    now + lifetime_secs
                ))
            );
            let json = format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn oauthbearer_oidc_gets_tokens_from_the_token_endpoint() {
    const CLIENT_SECRET: &str = "oidc-secret-3b9f0c";
    let kafka = cluster();
    let pki = kafka.pki().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "client.secret", CLIENT_SECRET);
    let (url, seen) = token_endpoint();
    let security = format!(
        "    tls: {{ca_file: '{}'}}\n    sasl:\n      mechanism: OAUTHBEARER\n      oauthbearer:\n        method: oidc\n        token_endpoint_url: '{url}'\n        client_id: kse-client\n        client_secret_file: '{}'\n        scope: kafka\n",
        pki.ca.cert.display(),
        dir.path().join("client.secret").display()
    );
    let entries = [entry("oidc", &kafka.sasl_ssl_bootstrap_servers().unwrap(), &security)];
    let exporter = Exporter::start(&config(&entries), &[]);
    let m = exporter.wait_for(Duration::from_secs(60), "OIDC cluster up", |m| {
        up(m, "oidc") == Some(1.0)
            && m.value(
                "kafka_consumergroup_lag",
                &[("cluster", "oidc"), ("group", "sec-billing"), ("partition", "0")],
            )
            .is_some()
    });
    assert_eq!(m.value("kafka_brokers", &[("cluster", "oidc")]), Some(1.0));
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "the token endpoint was not called");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("kse-client:{CLIENT_SECRET}"))
    );
    for (auth, body) in &requests {
        assert_eq!(auth, &expected, "client credentials sent to the token endpoint");
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(body.contains("scope=kafka"), "{body}");
    }
    assert_no_secrets(&exporter, &[CLIENT_SECRET, "eyJ"]);
}

#[test]
fn failed_authentication_is_explicit_and_leaks_nothing() {
    let kafka = cluster();
    let pki = kafka.pki().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_file(d, "wrong.pw", WRONG_PASSWORD);
    let other = TestPki::generate(&d.join("other-ca"), "some-other-ca").unwrap();
    let ca = pki.ca.cert.display().to_string();
    let sasl_ssl = kafka.sasl_ssl_bootstrap_servers().unwrap();
    let wrong = d.join("wrong.pw").display().to_string();
    let entries = [
        entry(
            "badscram",
            &sasl_ssl,
            &format!("    tls: {{ca_file: '{ca}'}}\n    sasl: {{mechanism: SCRAM-SHA-256, username: alice, password_file: '{wrong}'}}\n"),
        ),
        entry(
            "badplain",
            &sasl_ssl,
            &format!("    tls: {{ca_file: '{ca}'}}\n    sasl: {{mechanism: PLAIN, username: alice, password_file: '{wrong}'}}\n"),
        ),
        entry(
            "wrongca",
            &sasl_ssl,
            &format!(
                "    tls: {{ca_file: '{}'}}\n    sasl: {{mechanism: SCRAM-SHA-512, username: alice, password_file: '{wrong}'}}\n",
                other.ca.cert.display()
            ),
        ),
        entry("nocert", &kafka.mtls_bootstrap_servers().unwrap(), &format!("    tls: {{ca_file: '{ca}'}}\n")),
    ];
    let exporter = Exporter::start(&config(&entries), &[]);
    let names = ["badscram", "badplain", "wrongca", "nocert"];
    let m = exporter.wait_for(Duration::from_secs(60), "errors counted for every cluster", |m| {
        names.iter().all(|c| {
            up(m, c) == Some(0.0)
                && m.find("kafka_slo_exporter_errors_total", &[("cluster", c)])
                    .iter()
                    .any(|s| matches!(s.value, prometheus_parse::Value::Counter(v) if v >= 2.0))
        })
    });
    for c in names {
        assert_eq!(
            m.value("kafka_brokers", &[("cluster", c)]),
            None,
            "{c}: no data without a connection"
        );
    }
    let m = exporter.wait_for(Duration::from_secs(30), "authentication and TLS errors counted", |m| {
        let v = |c: &str, k: &str| {
            m.value(
                "kafka_slo_exporter_kafka_client_errors_total",
                &[("cluster", c), ("kind", k)],
            )
            .unwrap_or(0.0)
        };
        v("badscram", "authentication") > 0.0
            && v("badplain", "authentication") > 0.0
            && v("wrongca", "tls") > 0.0
            && v("nocert", "tls") + v("nocert", "transport") > 0.0
    });
    let kind_errors = |c: &str, kind: &str| {
        m.value(
            "kafka_slo_exporter_kafka_client_errors_total",
            &[("cluster", c), ("kind", kind)],
        )
        .unwrap_or_else(|| panic!("{c}: no client error series of kind {kind}"))
    };
    assert_eq!(
        kind_errors("badscram", "tls"),
        0.0,
        "the TLS layer of the SCRAM cluster works"
    );
    assert_eq!(
        kind_errors("wrongca", "authentication"),
        0.0,
        "no SASL without a trusted broker"
    );
    // Still serving, and the reason is in the log.
    assert_eq!(exporter.get("/-/healthy", None).0, 200);
    let logs = exporter.logs();
    let reason_for = |cluster: &str, needles: &[&str]| {
        let found = logs.lines().any(|l| {
            l.contains("\"level\":\"WARN\"")
                && l.contains(&format!("\"cluster\":\"{cluster}\""))
                && needles.iter().any(|n| l.contains(n))
        });
        assert!(
            found,
            "no log line for {cluster} containing any of {needles:?}; logs:\n{logs}"
        );
    };
    reason_for("badscram", &["Authentication failed", "authentication failed"]);
    reason_for("badplain", &["Authentication failed", "authentication failed"]);
    reason_for("wrongca", &["certificate verify failed", "SSL handshake failed"]);
    reason_for("nocert", &["bad certificate", "SSL handshake failed"]);
    // The native reader's own reasons, beside those of librdkafka's record reader.
    reason_for("badscram", &["SASL SCRAM-SHA-256 authentication failed"]);
    reason_for("badplain", &["SASL PLAIN authentication failed"]);
    reason_for("wrongca", &["TLS handshake failed: invalid peer certificate"]);
    reason_for(
        "nocert",
        &["TLS handshake failed", "received fatal alert: BadCertificate"],
    );
    assert_no_secrets(&exporter, &[WRONG_PASSWORD, ALICE_PASSWORD]);
}

#[test]
fn config_check_rejects_insecure_or_unsupported_combinations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_file(d, "pw", "x");
    let missing = d.join("missing-ca.pem").display().to_string();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: GSSAPI, username: u, password_file: pw}}\n".into(),
            "clusters[0].sasl",
            "GSSAPI takes no username",
        ),
        (
            "  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: GSSAPI, kerberos: {principal: kse@R, keytab: missing.keytab}}}\n".into(),
            "clusters[0].sasl.kerberos.keytab",
            "cannot read",
        ),
        (
            format!("  - {{name: a, bootstrap_servers: ['k:1'], tls: {{ca_file: '{missing}'}}}}\n"),
            "clusters[0].tls.ca_file",
            "cannot read",
        ),
        (
            "  - {name: a, bootstrap_servers: ['k:1'], tls: {cert_file: pw}}\n".into(),
            "clusters[0].tls.key_file",
            "cert_file needs key_file",
        ),
        (
            "  - {name: a, bootstrap_servers: ['k:1'], client_properties: {security.protocol: PLAINTEXT}, tls: {}}\n".into(),
            "clusters[0].client_properties.security.protocol",
            "need SSL",
        ),
        (
            "  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: OAUTHBEARER, oauthbearer: {method: oidc, client_id: c, client_secret_file: pw}}}\n".into(),
            "clusters[0].sasl.oauthbearer.token_endpoint_url",
            "needs the token endpoint URL",
        ),
        (
            "  - {name: a, bootstrap_servers: ['k:1'], client_properties: {ssl.key.password: x}}\n".into(),
            "clusters[0].client_properties.ssl.key.password",
            "inline",
        ),
    ];
    for (cluster, field, reason) in cases {
        let path = write_file(d, "c.yml", &format!("clusters:\n{cluster}"));
        let out = std::process::Command::new(common::EXPORTER)
            .args(["--config.check", "--config.file"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cluster}: {stderr}");
        assert!(stderr.contains(&format!("field `{field}`")), "{cluster}: {stderr}");
        assert!(stderr.contains(reason), "{cluster}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    }
}

/// A token the broker refuses because it has expired: the cluster is down with authentication
/// errors, the reason is logged, the token never is, and the exporter keeps serving.
#[test]
fn an_expired_oauthbearer_token_is_an_explicit_authentication_error() {
    let kafka = cluster();
    let pki = kafka.pki().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "client.secret", "expired-secret-77a1");
    let (url, seen) = token_endpoint_issuing(-60);
    let security = format!(
        "    tls: {{ca_file: '{}'}}\n    sasl:\n      mechanism: OAUTHBEARER\n      oauthbearer:\n        method: oidc\n        token_endpoint_url: '{url}'\n        client_id: kse-client\n        client_secret_file: '{}'\n",
        pki.ca.cert.display(),
        dir.path().join("client.secret").display()
    );
    let entries = [entry(
        "expired",
        &kafka.sasl_ssl_bootstrap_servers().unwrap(),
        &security,
    )];
    let exporter = Exporter::start(&config(&entries), &[]);
    exporter.wait_for(
        Duration::from_secs(60),
        "authentication errors for the expired token",
        |m| {
            up(m, "expired") == Some(0.0)
                && m.value(
                    "kafka_slo_exporter_kafka_client_errors_total",
                    &[("cluster", "expired"), ("kind", "authentication")],
                )
                .unwrap_or(0.0)
                    > 0.0
        },
    );
    assert!(!seen.lock().unwrap().is_empty(), "the token endpoint was not called");
    assert_eq!(exporter.get("/-/healthy", None).0, 200);
    let logs = exporter.logs();
    assert!(
        logs.lines().any(|l| l.contains("\"level\":\"WARN\"")
            && l.contains("\"cluster\":\"expired\"")
            && l.contains("SASL OAUTHBEARER authentication failed")),
        "no warning naming the failed OAUTHBEARER authentication; logs:\n{logs}"
    );
    assert_no_secrets(&exporter, &["expired-secret-77a1", "eyJ"]);
}

/// One cluster from environment variables only, as a container would start: SCRAM-SHA-512 over
/// TLS with the CA and the password from `KSE_KAFKA_*`; the password appears in no log line.
#[test]
fn scram_over_tls_from_environment_variables_without_a_file() {
    let kafka = cluster();
    let pki = kafka.pki().unwrap();
    let ca = pki.ca.cert.display().to_string();
    let sasl_ssl = kafka.sasl_ssl_bootstrap_servers().unwrap();
    let env = [
        ("KSE_KAFKA_BOOTSTRAP_SERVERS", sasl_ssl.as_str()),
        ("KSE_KAFKA_CLUSTER_NAME", "envscram"),
        ("KSE_KAFKA_TLS_CA_FILE", ca.as_str()),
        ("KSE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KSE_KAFKA_SASL_USERNAME", "bob"),
        ("KSE_KAFKA_SASL_PASSWORD", BOB_PASSWORD),
    ];
    let args: Vec<String> = [
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
        "--log.level",
        "debug",
    ]
    .map(String::from)
    .to_vec();
    let exporter = Exporter::start_env(&args, &env);
    let lag = |m: &Metrics| {
        m.value(
            "kafka_consumergroup_lag",
            &[
                ("cluster", "envscram"),
                ("group", "sec-billing"),
                ("topic", "sec.orders"),
                ("partition", "0"),
            ],
        )
    };
    // Lag is published within the first cycle; the cluster is up once a whole cycle succeeded.
    let m = exporter.wait_for(
        Duration::from_secs(60),
        "lag over SCRAM-SHA-512 from the environment",
        |m| lag(m).is_some() && up(m, "envscram") == Some(1.0),
    );
    assert_eq!(lag(&m), Some(7.0));
    assert_eq!(up(&m, "envscram"), Some(1.0));
    assert_no_secrets(&exporter, &[BOB_PASSWORD]);

    // The wrong password: a clear error for the cluster, the exporter keeps serving.
    let env_wrong: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| {
            if *k == "KSE_KAFKA_SASL_PASSWORD" {
                (*k, WRONG_PASSWORD)
            } else {
                (*k, *v)
            }
        })
        .collect();
    let exporter = Exporter::start_env(&args, &env_wrong);
    let m = exporter.wait_for(Duration::from_secs(60), "authentication errors counted", |m| {
        m.value(
            "kafka_slo_exporter_kafka_client_errors_total",
            &[("cluster", "envscram"), ("kind", "authentication")],
        )
        .is_some_and(|v| v > 0.0)
    });
    assert_eq!(up(&m, "envscram"), Some(0.0));
    assert_no_secrets(&exporter, &[WRONG_PASSWORD]);
}
