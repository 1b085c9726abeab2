//! The command line as users meet it: exit codes and messages for bad input, `--config.check`,
//! `--version`. No Kafka needed: configuration errors are found before any connection.

mod common;

use std::process::Command;

use common::{write_file, EXPORTER};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(EXPORTER).args(args).output().expect("run exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const OK_CLUSTER: &str = "clusters:\n  - name: a\n    bootstrap_servers: ['127.0.0.1:9092']\n";

/// Each bad config: the process exits 2 without starting, and prints one line naming the file,
/// the field and the reason.
#[test]
fn bad_configs_exit_2_naming_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    let unreadable_secret = "clusters:\n  - name: a\n    bootstrap_servers: ['k:1']\n    sasl: {mechanism: PLAIN, username: u, password_file: /nonexistent/secret}\n";
    let cases: &[(&str, &str, &str, &str)] = &[
        // (case, YAML, field, reason fragment)
        ("invalid YAML", "clusters: [\n", "clusters", "line 2"),
        ("tab indentation", "clusters:\n\t- name: a\n", "clusters", "cannot start any token"),
        ("not a mapping", "- just\n- a list\n", ".", "invalid type"),
        ("unknown top-level key", "clustrs: []\n", "clustrs", "unknown field `clustrs`"),
        ("unknown cluster key", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], bootstrap: x}\n", "clusters[0].bootstrap", "unknown field"),
        ("missing clusters", "global: {interval: 10s}\n", ".", "missing field `clusters`"),
        ("no clusters", "clusters: []\n", "clusters", "at least one cluster"),
        ("empty bootstrap list", "clusters:\n  - {name: a, bootstrap_servers: []}\n", "clusters[0].bootstrap_servers", "at least one"),
        ("bootstrap without port", "clusters:\n  - {name: a, bootstrap_servers: ['kafka']}\n", "clusters[0].bootstrap_servers[0]", "host:port"),
        ("duplicate cluster name", "clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n  - {name: a, bootstrap_servers: ['k:2']}\n", "clusters[1].name", "duplicate cluster name"),
        ("bad duration", "global: {interval: often}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n", "global.interval", "invalid duration"),
        ("interval too short", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], interval: 1ms}\n", "clusters[0].interval", "too short"),
        ("bad topic regex", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], topics: {deny: ['a(b']}}\n", "clusters[0].topics.deny[0]", "regular expression"),
        ("bad group regex", "global: {groups: {allow: ['*x']}}\nclusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n", "global.groups.allow[0]", "regular expression"),
        ("reserved label", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], labels: {topic: x}}\n", "clusters[0].labels.topic", "set by the exporter"),
        ("inline secret", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {sasl.password: hunter2}}\n", "clusters[0].client_properties.sasl.password", "inline"),
        ("unreadable password file", unreadable_secret, "clusters[0].sasl.password_env/password_file", "cannot read secret file"),
        ("unknown librdkafka property", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {no.such.property: 1}}\n", "clusters[0].client_properties.no.such.property", "No such configuration property"),
        ("bad librdkafka value", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], client_properties: {security.protocol: CARRIER_PIGEON}}\n", "clusters[0].client_properties.security.protocol", "Invalid value \"CARRIER_PIGEON\""),
        ("registry without URL", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {interval: 1m}}\n", "clusters[0].schema_registry.urls", "at least one"),
        ("registry URL with credentials", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://u:pw@sr:8081']}}\n", "clusters[0].schema_registry.urls[0]", "credentials in the URL"),
        ("inline registry password", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], basic_auth: {username: u, password: hunter2}}}\n", "clusters[0].schema_registry.basic_auth.password", "unknown field `password`"),
        ("unset registry token variable", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], bearer_token: {env: KSE_CLI_UNSET_TOKEN}}}\n", "clusters[0].schema_registry.bearer_token.env/file", "not set"),
        ("unreadable registry CA", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], tls: {ca_file: /nonexistent/ca.pem}}}\n", "clusters[0].schema_registry.tls.ca_file", "cannot read"),
        ("unknown subject naming strategy", "clusters:\n  - {name: a, bootstrap_servers: ['k:1'], schema_registry: {urls: ['https://sr:8081'], cross_check: {subject_name_strategy: guess}}}\n", "clusters[0].schema_registry.cross_check.subject_name_strategy", "unknown variant"),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (i, (case, yaml, field, reason)) in cases.iter().enumerate() {
        let path = write_file(dir.path(), &format!("bad-{i}.yml"), yaml);
        let path_s = path.to_str().unwrap();
        let (code, stdout, stderr) = run(&["--config.file", path_s, "--web.listen-address", "127.0.0.1:0"]);
        let line = stderr.trim();
        let ok = code == 2
            && stdout.is_empty()
            && line.lines().count() == 1
            && line.contains(path_s)
            && line.contains(&format!("field `{field}`"))
            && line.contains(reason)
            && !line.contains("panicked");
        if !ok {
            failures.push(format!(
                "{case}: exit {code}, stderr: {line}\n  expected field `{field}` and {reason:?}"
            ));
        }
        // --config.check must agree with the daemon.
        let (code, _, stderr) = run(&["--config.file", path_s, "--config.check"]);
        if code != 2 || !stderr.contains(&format!("field `{field}`")) {
            failures.push(format!(
                "{case} (--config.check): exit {code}, stderr: {}",
                stderr.trim()
            ));
        }
    }
    // Files that cannot be read at all.
    for (case, path) in [
        ("missing file", dir.path().join("does-not-exist.yml")),
        ("directory instead of file", dir.path().join("a-directory")),
    ] {
        let (code, _, stderr) = run(&["--config.file", path.to_str().unwrap()]);
        if code != 2 || !stderr.contains(path.to_str().unwrap()) || !stderr.contains("cannot read file") {
            failures.push(format!("{case}: exit {code}, stderr: {}", stderr.trim()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn config_check_prints_summary_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "pw", "very-secret-password\n");
    let cfg = write_file(
        dir.path(),
        "c.yml",
        "global: {interval: 15s}\nclusters:\n  - name: prod\n    bootstrap_servers: ['b1:9092', 'b2:9092']\n    labels: {env: prod}\n    sasl: {mechanism: SCRAM-SHA-512, username: exporter, password_file: pw}\n    client_properties: {security.protocol: SASL_PLAINTEXT}\n    topics: {deny: ['__.*']}\n",
    );
    let (code, stdout, stderr) = run(&["--config.file", cfg.to_str().unwrap(), "--config.check"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("OK, 1 cluster(s)"), "{stdout}");
    assert!(stdout.contains("b1:9092,b2:9092"), "{stdout}");
    assert!(stdout.contains("interval: 15s"), "{stdout}");
    assert!(stdout.contains("all except [__.*]"), "{stdout}");
    assert!(stdout.contains("sasl.password=<secret>"), "{stdout}");
    assert!(!stdout.contains("very-secret-password") && !stderr.contains("very-secret-password"));
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        vec!["--no-such-flag"],
        vec!["--log.format", "xml"],
        vec!["--log.level", "chatty"],
        vec!["--web.telemetry-path", "metrics"],
        vec!["--web.max-connections", "0"],
        vec!["--web.read-header-timeout", "0s"],
        vec!["--web.max-pending-connections", "0"],
        vec!["--web.write-timeout", "0s"],
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}

#[test]
fn unusable_listen_address_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "c.yml", OK_CLUSTER);
    let (code, _, stderr) = run(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--web.listen-address",
        "not-an-address",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

#[test]
fn version_flag() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("kafka-slo-exporter "), "{stdout}");
}

#[test]
fn shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kafka-slo-exporter.yml");
    let out = Command::new(EXPORTER)
        .args(["--config.file", example, "--config.check"])
        .envs(common::EXAMPLE_SECRETS)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK, 2 cluster(s)"), "{stdout}");
    assert!(
        stdout.contains("schema registry: https://schema-registry-1.prod:8081"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("example-password")
            && !stdout.contains("example-key-password")
            && !stdout.contains("example-registry-password"),
        "{stdout}"
    );
}

#[test]
fn bad_policy_files_exit_2_naming_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "c.yml", OK_CLUSTER);
    let cases: &[(&str, &str, &str)] = &[
        ("classes: [\n", "classes", "line"),
        (
            "classes:\n  - {name: a, match: {patterns: ['(oops']}}\n",
            "classes[0].match.patterns[0]",
            "regular expression",
        ),
        (
            "classes:\n  - {name: a, match: {patterns: [x]}, require: {min_retention: 7 fortnights}}\n",
            "classes[0].require.min_retention",
            "invalid duration",
        ),
        (
            "classes:\n  - {name: a, match: {patterns: [x]}, typo: 1}\n",
            "classes[0].typo",
            "unknown field",
        ),
    ];
    for (i, (yaml, field, reason)) in cases.iter().enumerate() {
        let policy = write_file(dir.path(), &format!("p{i}.yml"), yaml);
        for extra in [&["--config.check"][..], &["--web.listen-address", "127.0.0.1:0"][..]] {
            let mut args = vec![
                "--config.file",
                cfg.to_str().unwrap(),
                "--policy.file",
                policy.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            let (code, _, stderr) = run(&args);
            assert_eq!(code, 2, "{yaml}: {stderr}");
            assert!(stderr.contains(policy.to_str().unwrap()), "{stderr}");
            assert!(
                stderr.contains(&format!("field `{field}`")) && stderr.contains(reason),
                "{yaml}: {stderr}"
            );
        }
    }
    let missing = dir.path().join("none.yml");
    let (code, _, stderr) = run(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--policy.file",
        missing.to_str().unwrap(),
        "--config.check",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read file"), "{stderr}");
}

#[test]
fn config_check_reports_the_builtin_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "c.yml", OK_CLUSTER);
    let (code, stdout, _) = run(&["--config.file", cfg.to_str().unwrap(), "--config.check"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("policy built-in:policies/adr-0007.yml: OK, classes in precedence order: audit (min retention 30days), domain_event (min retention 7days), internal (min retention 7days), cdc (min retention 7days)"),
        "{stdout}"
    );
    // The shipped policy file is the built-in one and validates as a file too.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/adr-0007.yml");
    let (code, stdout, stderr) = run(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--policy.file",
        shipped,
        "--config.check",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("audit (min retention 30days)"));
}

/// The family lists (`global.metrics`, `--metric-*`): a pattern that matches no family, a bad
/// regular expression, or an allow list beside a deny list is an error naming the field or the
/// flag (exit 2); a valid selection is summarised by `--config.check`.
#[test]
fn metric_lists_are_validated_against_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let with = |metrics: &str| format!("global:\n  metrics: {metrics}\n{OK_CLUSTER}");
    let cases: &[(&str, &[&str], &str, &str)] = &[
        // (global.metrics, flags, named field or flag, reason fragment)
        (
            "{deny: [kafka_topics, kafka_partition_leadr]}",
            &[],
            "field `global.metrics.deny[1]`",
            "matches no family",
        ),
        (
            "{opt_in: ['kafka_(x']}",
            &[],
            "field `global.metrics.opt_in[0]`",
            "regular expression",
        ),
        (
            "{allow: [kafka_brokers], deny: [kafka_topics]}",
            &[],
            "field `global.metrics`",
            "exclude each other",
        ),
        (
            "{}",
            &["--metric-opt-in-list", "kafka_partition_high_watermark,kafka_nope"],
            "flag `--metric-opt-in-list[1]`",
            "matches no family",
        ),
        (
            "{deny: [kafka_topics]}",
            &["--metric-allowlist", "kafka_brokers"],
            "flag `--metric-allowlist`",
            "exclude each other",
        ),
        (
            "{}",
            &["--metric-denylist", "kafka_slo_exporter_cluster_up"],
            "flag `--metric-denylist[0]`",
            "always served",
        ),
    ];
    for (i, (metrics, flags, field, reason)) in cases.iter().enumerate() {
        let cfg = write_file(dir.path(), &format!("m{i}.yml"), &with(metrics));
        let mut args = vec!["--config.file", cfg.to_str().unwrap(), "--config.check"];
        args.extend_from_slice(flags);
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{metrics} {flags:?}: {stdout} {stderr}");
        assert!(
            stderr.contains(field) && stderr.contains(reason),
            "{metrics} {flags:?}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // The same error when running, not only when checking.
    let cfg = write_file(dir.path(), "run.yml", &with("{deny: [kafka_nope]}"));
    let (code, _, stderr) = run(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("global.metrics.deny[0]"), "{stderr}");

    let cfg = write_file(
        dir.path(),
        "ok.yml",
        &with("{opt_in: ['kafka_partition_.*', kafka_consumergroup_status, kafka_topic_compliance, 'kafka_consumergroup_topic_(lost_records|uncommitted_partitions)']}"),
    );
    let (code, stdout, stderr) = run(&["--config.file", cfg.to_str().unwrap(), "--config.check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Kafka state families served, 0 of them for problems or the current state only"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&[
        "--config.file",
        cfg.to_str().unwrap(),
        "--config.check",
        "--metric-opt-in-list",
        "",
    ]);
    assert_eq!(code, 0);
    assert!(
        !stdout.contains(", 0 of them for problems"),
        "the flag replaces the file's list: {stdout}"
    );
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(EXPORTER)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Arguments, environment, and the flag or variable the error must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// One cluster without a file: `--config.check` prints the effective configuration with the
/// password masked; bad combinations exit 2 naming the flag; `--help` starts users off.
#[test]
fn single_cluster_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    // librdkafka loads the CA when the client is created, so it must be a real certificate.
    let ca = dir.path().join("ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
        ])
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let ca = ca.to_str().unwrap();
    let not_a_cert = write_file(
        dir.path(),
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let env = [
        ("KSE_KAFKA_BOOTSTRAP_SERVERS", "b1:9093,b2:9093"),
        ("KSE_KAFKA_CLUSTER_NAME", "prod"),
        ("KSE_KAFKA_TLS_CA_FILE", ca),
        ("KSE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KSE_KAFKA_SASL_USERNAME", "exporter"),
        ("KSE_KAFKA_SASL_PASSWORD", "very-secret-password"),
    ];
    let (code, stdout, stderr) = run_env(&["--config.check"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("configuration from command-line flags: OK, 1 cluster(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("cluster \"prod\""), "{stdout}");
    assert!(stdout.contains("b1:9093,b2:9093"), "{stdout}");
    assert!(stdout.contains("sasl.password=<secret>"), "{stdout}");
    assert!(stdout.contains("security.protocol=SASL_SSL"), "{stdout}");
    assert!(!stdout.contains("very-secret-password") && !stderr.contains("very-secret-password"));

    let bad_ca = not_a_cert.display().to_string();
    let cases: &[Case] = &[
        // (args, environment, the flag or variable named)
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--config.file",
                "x.yml",
                "--config.check",
            ],
            &[],
            "`--kafka.bootstrap-servers`",
        ),
        (
            &["--config.file", "x.yml", "--config.check"],
            &[("KSE_KAFKA_SASL_USERNAME", "u")],
            "`--kafka.sasl-username`",
        ),
        (
            &["--kafka.sasl-username", "u", "--config.check"],
            &[],
            "`--kafka.bootstrap-servers`",
        ),
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--kafka.sasl-username",
                "u",
                "--config.check",
            ],
            &[],
            "`--kafka.sasl-mechanism`",
        ),
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--kafka.sasl-mechanism",
                "SCRAM-SHA-256",
                "--kafka.sasl-username",
                "u",
                "--config.check",
            ],
            &[],
            "`--kafka.sasl-password-file`",
        ),
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--kafka.sasl-mechanism",
                "MD5",
                "--config.check",
            ],
            &[],
            "`--kafka.sasl-mechanism`",
        ),
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--kafka.sasl-mechanism",
                "PLAIN",
                "--kafka.sasl-username",
                "u",
                "--kafka.sasl-password-file",
                "/nonexistent/pw",
                "--config.check",
            ],
            &[],
            "`--kafka.sasl-password-file`",
        ),
        (
            &["--kafka.bootstrap-servers", "no-port", "--config.check"],
            &[],
            "`--kafka.bootstrap-servers`",
        ),
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--kafka.tls-ca-file",
                &bad_ca,
                "--config.check",
            ],
            &[],
            "`--kafka.tls-ca-file`",
        ),
        (
            &["--kafka.bootstrap-servers", "k:9092", "--kafka.tls", "maybe"],
            &[],
            "--kafka.tls",
        ),
        // The exporter itself, not only the check, refuses the same way.
        (
            &[
                "--kafka.bootstrap-servers",
                "k:9092",
                "--config.file",
                "x.yml",
                "--web.listen-address",
                "127.0.0.1:0",
            ],
            &[],
            "`--kafka.bootstrap-servers`",
        ),
    ];
    for (args, env, named) in cases {
        let (code, out, err) = run_env(args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {out} {err}");
        assert!(err.contains(named), "{args:?} {env:?} must name {named}: {err}");
    }

    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("Quick start") && help.contains("--kafka.bootstrap-servers broker-1:9092"),
        "{help}"
    );
    assert!(help.contains("[env: KSE_KAFKA_BOOTSTRAP_SERVERS="), "{help}");
}

/// The starter configuration: commented, every section with its default, and accepted by
/// `--config.check` unchanged.
#[test]
fn the_starter_configuration_round_trips_through_config_check() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "pw", "secret\n");
    let (code, text, stderr) = run(&[
        "--config.generate",
        "--kafka.bootstrap-servers",
        "kafka-1:9092,kafka-2:9092",
        "--kafka.cluster-name",
        "staging",
        "--kafka.tls",
        "--kafka.sasl-mechanism",
        "SCRAM-SHA-256",
        "--kafka.sasl-username",
        "exporter",
        "--kafka.sasl-password-file",
        dir.path().join("pw").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for section in [
        "global:",
        "interval:",
        "topics:",
        "groups:",
        "lag:",
        "compliance:",
        "metrics:",
        "clusters:",
        "tls:",
        "sasl:",
        "probe:",
        "schema_registry:",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    let commented = text.lines().filter(|l| l.contains('#')).count();
    assert!(commented > 20, "one line of explanation per setting:\n{text}");
    let file = write_file(dir.path(), "starter.yml", &text);
    let (code, stdout, stderr) = run(&["--config.file", file.to_str().unwrap(), "--config.check"]);
    assert_eq!(code, 0, "{stderr}\n{text}");
    assert!(
        stdout.contains("cluster \"staging\"") && stdout.contains("kafka-1:9092,kafka-2:9092"),
        "{stdout}"
    );
    assert!(stdout.contains("interval: 30s"), "{stdout}");
    // Without a cluster there is nothing to start from; with a file it is refused.
    let (code, _, err) = run(&["--config.generate"]);
    assert_eq!(code, 2);
    assert!(err.contains("--kafka.bootstrap-servers"), "{err}");
    let (code, _, err) = run(&["--config.generate", "--config.file", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("--config.file"), "{err}");
}
