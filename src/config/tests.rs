//! Unit tests of parsing and validating the configuration file.

use super::validate::check_host_port;
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.yml"), text)
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("clusters:\n  - name: a\n    bootstrap_servers: [\"k:9092\"]\n").unwrap();
    assert_eq!(c.clusters.len(), 1);
    let a = &c.clusters[0];
    assert_eq!(a.interval, DEFAULT_INTERVAL);
    assert_eq!(a.timeout, DEFAULT_TIMEOUT);
    assert_eq!(a.max_staleness, DEFAULT_INTERVAL * 5);
    assert!(a.topics.matches("anything"));
}

#[test]
fn compat_outputs_are_known_and_listed_once() {
    let cluster = "clusters:\n  - name: a\n    bootstrap_servers: [\"k:9092\"]\n";
    assert!(parse(cluster).unwrap().compat.is_empty());
    let c = parse(&format!("global: {{compat: [kafka_exporter]}}\n{cluster}")).unwrap();
    assert_eq!(c.compat, vec![Compat::KafkaExporter]);
    assert!(c
        .summary()
        .contains("compatibility output kafka_exporter: /kafka_exporter/metrics"));
    let e = parse(&format!("global: {{compat: [kafka_exporter, kminion]}}\n{cluster}")).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("test.yml")
            && e.contains("global.compat[1]")
            && e.contains("unknown compatibility output \"kminion\""),
        "{e}"
    );
    let e = parse(&format!(
        "global: {{compat: [kafka_exporter, kafka_exporter]}}\n{cluster}"
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("global.compat[1]") && e.to_string().contains("listed twice"),
        "{e}"
    );
}

#[test]
fn cluster_overrides_global() {
    let c = parse(
            "global: {interval: 10s, timeout: 3s, topics: {deny: ['__.*']}}\n\
             clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n  - {name: b, bootstrap_servers: ['k:2'], interval: 1m, topics: {allow: ['x.*']}}\n",
        )
        .unwrap();
    assert_eq!(c.clusters[0].interval, Duration::from_secs(10));
    assert!(!c.clusters[0].topics.matches("__consumer_offsets"));
    assert_eq!(c.clusters[1].interval, Duration::from_secs(60));
    assert_eq!(c.clusters[1].timeout, Duration::from_secs(3));
    assert!(c.clusters[1].topics.matches("xy"));
    assert!(!c.clusters[1].topics.matches("y"));
    assert!(!c.clusters[1].topics.matches("__consumer_offsets"));
}

#[test]
fn lag_settings_merge_per_key() {
    let c = parse(
            "global: {lag: {granularity: topic, max_record_reads: 10}}\n\
             clusters:\n  - {name: a, bootstrap_servers: ['k:1'], lag: {max_record_reads: 99}}\n  - {name: b, bootstrap_servers: ['k:2']}\n",
        )
        .unwrap();
    assert_eq!(c.clusters[0].lag.granularity, Granularity::Topic);
    assert_eq!(c.clusters[0].lag.max_record_reads, 99);
    assert_eq!(c.clusters[1].lag.max_record_reads, 10);
    assert_eq!(c.clusters[1].lag.status_window, Duration::from_secs(600));
}

#[test]
fn filters_are_anchored() {
    let f = NameFilter::new(&["order\\..*"], &[".*\\.internal\\..*"]).unwrap();
    assert!(f.matches("order.order.events"));
    assert!(!f.matches("xorder.order.events"));
    assert!(!f.matches("order.internal.retry"));
    let alt = NameFilter::new(&["a|b"], &[]).unwrap();
    assert!(alt.matches("a") && alt.matches("b") && !alt.matches("ab"));
}

#[test]
fn numbers_and_bools_pass_through_as_properties() {
    let c = parse(
            "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    client_properties: {socket.keepalive.enable: true, reconnect.backoff.ms: 50}\n",
        )
        .unwrap();
    let p = &c.clusters[0].client_properties;
    assert!(p.contains(&("socket.keepalive.enable".into(), "true".into())));
    assert!(p.contains(&("reconnect.backoff.ms".into(), "50".into())));
}

#[test]
fn secret_from_env_is_resolved_and_hidden_in_summary() {
    std::env::set_var("KSE_TEST_SECRET_A", "s3cr3t");
    let c = parse(
            "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    sasl: {mechanism: scram-sha-512, username: u, password_env: KSE_TEST_SECRET_A}\n",
        )
        .unwrap();
    let p = &c.clusters[0].client_properties;
    assert!(p.contains(&("sasl.password".into(), "s3cr3t".into())));
    assert!(p.contains(&("sasl.mechanism".into(), "SCRAM-SHA-512".into())));
    let summary = c.summary();
    assert!(!summary.contains("s3cr3t"), "{summary}");
    assert!(summary.contains("sasl.password=<secret>"));
}

#[test]
fn secret_file_relative_to_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
    let cfg = dir.path().join("c.yml");
    let text = "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    secret_properties:\n      ssl.key.password: {file: pw}\n";
    let c = Config::parse(&cfg, text).unwrap();
    assert!(c.clusters[0]
        .client_properties
        .contains(&("ssl.key.password".into(), "hunter2".into())));
}

#[test]
fn host_port_validation() {
    assert!(check_host_port("localhost:9092").is_ok());
    assert!(check_host_port("SASL_SSL://broker-1.example:9093").is_ok());
    assert!(check_host_port("[::1]:9092").is_ok());
    assert!(check_host_port("localhost").is_err());
    assert!(check_host_port("localhost:0").is_err());
    assert!(check_host_port("localhost:99999").is_err());
    assert!(check_host_port(":9092").is_err());
}

/// Each bad config must be rejected with the expected field path; the reason must mention
/// the given fragment.
#[test]
fn bad_configs_name_field_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
            ("", ".", "empty"),
            ("clusters: [", "clusters", "line 2 column 1"),
            ("clusters: []", "clusters", "at least one"),
            ("global: {}", ".", "clusters"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], colour: red}", "clusters[0].colour", "unknown field `colour`"),
            ("clusters:\n  - {name: a, bootstrap_servers: []}", "clusters[0].bootstrap_servers", "at least one"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['nohost']}", "clusters[0].bootstrap_servers[0]", "host:port"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n  - {name: a, bootstrap_servers: ['k:2']}", "clusters[1].name", "duplicate"),
            ("clusters:\n  - {name: '', bootstrap_servers: ['k:1']}", "clusters[0].name", "empty"),
            ("global: {interval: 5 parsecs}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.interval", "unknown time unit"),
            ("global: {interval: 10ms}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.interval", "too short"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], timeout: 0s}", "clusters[0].timeout", "too short"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], topics: {allow: ['(unclosed']}}", "clusters[0].topics.allow[0]", "regular expression"),
            ("global: {groups: {deny: ['[z-a]']}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.groups.deny[0]", "regular expression"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], labels: {cluster: x}}", "clusters[0].labels.cluster", "set by the exporter"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], labels: {'bad-label': x}}", "clusters[0].labels.bad-label", "label name"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {sasl.password: x}}", "clusters[0].client_properties.sasl.password", "inline"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {bootstrap.servers: 'x:1'}}", "clusters[0].client_properties.bootstrap.servers", "managed by the exporter"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {debug: [a, b]}}", "clusters[0].client_properties.debug", "a list"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], secret_properties: {sasl.password: {file: /nonexistent/pw}}}", "clusters[0].secret_properties.sasl.password", "cannot read secret file"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], secret_properties: {sasl.password: {env: KSE_TEST_UNSET_VAR_X}}}", "clusters[0].secret_properties.sasl.password", "not set"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: MD5, username: u, password_env: X}}", "clusters[0].sasl.mechanism", "unknown SASL mechanism"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: PLAIN, username: u, password: inline}}", "clusters[0].sasl.password", "unknown field `password`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], sasl: {mechanism: PLAIN, username: u}}", "clusters[0].sasl.password_env/password_file", "needs"),
            ("clusters:\n  - {name: a, bootstrap_servers: 'k:1'}", "clusters[0].bootstrap_servers", "invalid type"),
            ("clusters: {name: a}", "clusters", "invalid type"),
            ("global: {lag: {granularity: broker}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.lag.granularity", "unknown variant `broker`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], interval: 1m, lag: {status_window: 1m}}", "clusters[0].lag.status_window", "shorter than two collection intervals"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], lag: {group_offsets_concurrency: 0}}", "clusters[0].lag.group_offsets_concurrency", "between 1 and 256"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], lag: {colour: 1}}", "clusters[0].lag.colour", "unknown field"),
            ("global: {compliance: {state_dir: /nonexistent/dir}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.compliance.state_dir", "not an existing directory"),
            ("global: {compliance: {replay_window_refresh: 10ms}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.compliance.replay_window_refresh", "at least 1s"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], probe: {topic: 'bad topic'}}", "clusters[0].probe.topic", "legal Kafka topic"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: []}}", "clusters[0].schema_registry.urls", "at least one"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['sr:8081']}}", "clusters[0].schema_registry.urls[0]", "http://"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://u:pw@sr:8081']}}", "clusters[0].schema_registry.urls[0]", "credentials in the URL"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], basic_auth: {username: u, password: inline}}}", "clusters[0].schema_registry.basic_auth.password", "unknown field `password`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], basic_auth: {username: u}}}", "clusters[0].schema_registry.basic_auth.password_env/password_file", "needs"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], basic_auth: {username: u, password_env: KSE_TEST_UNSET_VAR_X}, bearer_token: {env: KSE_TEST_UNSET_VAR_X}}}", "clusters[0].schema_registry.bearer_token", "not both"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], bearer_token: {env: KSE_TEST_UNSET_VAR_X}}}", "clusters[0].schema_registry.bearer_token.env/file", "not set"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], tls: {ca_file: ca.pem}}}", "clusters[0].schema_registry.tls", "no URL uses https"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], tls: {ca_file: /nonexistent/ca.pem}}}", "clusters[0].schema_registry.tls.ca_file", "cannot read"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], tls: {cert_file: /nonexistent/c.pem}}}", "clusters[0].schema_registry.tls.key_file", "required with cert_file"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], interval: 100ms}}", "clusters[0].schema_registry.interval", "between 1s and 1h"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], cross_check: {subject_name_strategy: by_guess}}}", "clusters[0].schema_registry.cross_check.subject_name_strategy", "unknown variant `by_guess`"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], sampling: {records: 100000}}}", "clusters[0].schema_registry.sampling.records", "at most 10000"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['http://sr:8081'], colour: red}}", "clusters[0].schema_registry.colour", "unknown field"),
            ("clusters:\n  - {name: a, bootstrap_servers: ['k:1'], probe: {interval: 10s, timeout: 1s}}", "clusters[0].probe.timeout", "at least the probe interval"),
            ("global: {max_staleness: 0s}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}", "global.max_staleness", "greater than 0"),
        ];
    let mut failures = Vec::new();
    for (text, field, reason) in cases {
        match parse(text) {
            Ok(_) => failures.push(format!("accepted bad config:\n{text}")),
            Err(e) => {
                let line = e.to_string();
                if &e.field != field || !e.reason.contains(reason) {
                    failures.push(format!(
                        "config:\n{text}\nexpected field {field:?} reason ~{reason:?}\ngot: {line}"
                    ));
                }
                assert!(line.starts_with("config file test.yml: field `"), "{line}");
                assert!(!line.contains('\n'), "message must be one line: {line}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
