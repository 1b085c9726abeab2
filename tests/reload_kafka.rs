//! Live reload against real Kafka: SIGHUP and `POST /-/reload` rewrite which clusters are
//! watched; an invalid file changes nothing; a rotated SASL password file is read again; the
//! endpoint obeys the web config's basic auth.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use common::{write_file, Exporter, Metrics};
use kafka_harness::{ClusterOptions, KafkaCluster};

const SUCCESSFUL: &str = "kafka_slo_exporter_config_last_reload_successful";
const SUCCESS_TIME: &str = "kafka_slo_exporter_config_last_reload_success_timestamp_seconds";
const WAIT: Duration = Duration::from_secs(60);

fn shared() -> &'static KafkaCluster {
    static TOPIC: OnceLock<()> = OnceLock::new();
    let kafka = KafkaCluster::shared_single();
    TOPIC.get_or_init(|| kafka.create_topic("rl.orders", 2, 1, &[]).unwrap());
    kafka
}

/// A configuration watching `names`, every one the same Kafka (only the `cluster` label
/// differs), collecting every 500ms.
fn config(kafka: &KafkaCluster, names: &[&str]) -> String {
    let clusters: String = names
        .iter()
        .map(|n| {
            format!(
                "  - name: {n}\n    bootstrap_servers: ['{}']\n    topics: {{allow: ['rl\\..*']}}\n",
                kafka.bootstrap_servers()
            )
        })
        .collect();
    format!("global:\n  interval: 500ms\n  timeout: 3s\nclusters:\n{clusters}")
}

fn cycles(m: &Metrics, cluster: &str) -> Option<f64> {
    m.value("kafka_slo_exporter_cycles_total", &[("cluster", cluster)])
}

fn up(m: &Metrics, cluster: &str) -> Option<f64> {
    m.value("kafka_slo_exporter_cluster_up", &[("cluster", cluster)])
}

fn sighup(exporter: &Exporter) {
    let status = Command::new("kill")
        .args(["-HUP", &exporter.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// POST `/-/reload`, with basic auth when given; returns status and body.
fn post_reload(exporter: &Exporter, auth: Option<(&str, &str)>) -> (u16, String) {
    let mut req = ureq::post(&exporter.url("/-/reload")).timeout(Duration::from_secs(30));
    if let Some((user, pw)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        req = req.set("Authorization", &format!("Basic {token}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST /-/reload: {e}"),
    }
}

/// Rewrites the configuration and reloads it with `POST /-/reload`, expecting success.
fn reload_to(exporter: &Exporter, text: &str) {
    std::fs::write(&exporter.config_path, text).unwrap();
    let (status, body) = post_reload(exporter, None);
    assert_eq!(status, 200, "{body}\n{}", exporter.logs());
}

#[test]
fn clusters_are_added_removed_and_kept_and_an_invalid_file_changes_nothing() {
    let kafka = shared();
    let exporter = Exporter::start(&config(kafka, &["keep"]), &[]);
    let m = exporter.wait_for(WAIT, "the first cluster collecting", |m| {
        up(m, "keep") == Some(1.0) && cycles(m, "keep") >= Some(2.0)
    });
    assert_eq!(m.value(SUCCESSFUL, &[]), Some(1.0));
    let started = m.value(SUCCESS_TIME, &[]).expect("the start-up counts as a success");
    assert!(started > 1.6e9, "{started}");

    // Added by SIGHUP: its series appear; the unchanged cluster keeps its counter.
    let before = cycles(&m, "keep").unwrap();
    std::fs::write(&exporter.config_path, config(kafka, &["keep", "added"])).unwrap();
    sighup(&exporter);
    let m = exporter.wait_for(WAIT, "the added cluster collecting", |m| {
        up(m, "added") == Some(1.0)
            && m.value(
                "kafka_topic_partitions",
                &[("cluster", "added"), ("topic", "rl.orders")],
            ) == Some(2.0)
    });
    assert!(
        cycles(&m, "keep").unwrap() >= before,
        "no reset of the unchanged cluster"
    );
    assert_eq!(m.value(SUCCESSFUL, &[]), Some(1.0));
    let added_at = m.value(SUCCESS_TIME, &[]).unwrap();
    assert!(added_at >= started);

    // A broken file: 500 naming the field, nothing else changes.
    let good = config(kafka, &["keep", "added"]);
    let broken = good.replace("interval: 500ms", "interval: often");
    std::fs::write(&exporter.config_path, &broken).unwrap();
    let before = exporter.scrape();
    let (status, body) = post_reload(&exporter, None);
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("global.interval") && body.contains("invalid duration"),
        "{body}"
    );
    let m = exporter.scrape();
    assert_eq!(m.value(SUCCESSFUL, &[]), Some(0.0));
    assert_eq!(m.value(SUCCESS_TIME, &[]), Some(added_at), "the last success is kept");
    for c in ["keep", "added"] {
        assert!(cycles(&m, c) >= cycles(&before, c), "{c} keeps running");
    }
    assert!(exporter
        .logs()
        .lines()
        .any(|l| l.contains("configuration reload failed") && l.contains("global.interval")));
    exporter.wait_for(WAIT, "both clusters still collecting", |m| {
        cycles(m, "keep") > cycles(&before, "keep") && cycles(m, "added") > cycles(&before, "added")
    });

    // Fixed, with one cluster removed: its series disappear, the other runs on.
    let before = exporter.scrape();
    reload_to(&exporter, &config(kafka, &["keep"]));
    let m = exporter.scrape();
    assert_eq!(m.value(SUCCESSFUL, &[]), Some(1.0));
    assert!(m.value(SUCCESS_TIME, &[]).unwrap() >= added_at);
    assert!(
        m.samples.iter().all(|s| s.labels.get("cluster") != Some("added")),
        "no series of the removed cluster:\n{}",
        m.text
    );
    assert!(cycles(&m, "keep") >= cycles(&before, "keep"), "served without a gap");
    assert_eq!(up(&m, "keep"), Some(1.0));
    exporter.wait_for(WAIT, "the kept cluster still collecting", |m| {
        cycles(m, "keep") > cycles(&before, "keep")
    });

    // GET is refused like Prometheus refuses it.
    let (status, _, _) = exporter.get("/-/reload", None);
    assert_eq!(status, 405);
}

#[test]
fn a_changed_cluster_restarts_and_the_series_selection_applies() {
    let kafka = shared();
    let exporter = Exporter::start(&config(kafka, &["a", "b"]), &[]);
    let m = exporter.wait_for(WAIT, "both clusters collecting", |m| {
        up(m, "a") == Some(1.0) && up(m, "b") == Some(1.0) && cycles(m, "b") >= Some(3.0)
    });
    let b_before = cycles(&m, "b").unwrap();
    // `a` gains a label: restarted (its counter starts again); `b` is untouched.
    let text = config(kafka, &["a", "b"]).replacen(
        "topics: {allow: ['rl\\..*']}\n",
        "topics: {allow: ['rl\\..*']}\n    labels: {env: reloaded}\n",
        1,
    );
    let text = text.replace("global:\n", "global:\n  metrics: {deny: ['kafka_topic_partitions']}\n");
    reload_to(&exporter, &text);
    let m = exporter.wait_for(WAIT, "the changed cluster collecting with its new label", |m| {
        m.value(
            "kafka_slo_exporter_cluster_up",
            &[("cluster", "a"), ("env", "reloaded")],
        ) == Some(1.0)
    });
    assert!(
        cycles(&m, "b").unwrap() >= b_before,
        "the unchanged cluster is not restarted"
    );
    assert!(
        m.find("kafka_topic_partitions", &[]).is_empty(),
        "the new series selection applies to the next scrape"
    );
}

#[test]
fn the_policy_applies_to_the_next_cycles_without_a_restart() {
    let kafka = shared();
    let builtin = include_str!("../policies/adr-0007.yml");
    let exempting = builtin.replacen("    - '__.*'", "    - 'rl\\..*'\n    - '__.*'", 1);
    assert_ne!(exempting, builtin);
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(dir.path(), "policy.yml", &exempting);
    let exporter = Exporter::start(&config(kafka, &["p"]), &["--policy.file", policy.to_str().unwrap()]);
    let class = |m: &Metrics| {
        m.find(
            "kafka_topic_compliance_class_info",
            &[("cluster", "p"), ("topic", "rl.orders")],
        )
        .first()
        .and_then(|s| s.labels.get("class").map(str::to_string))
    };
    let m = exporter.wait_for(WAIT, "the test topic exempt by the first policy", |m| {
        class(m).as_deref() == Some("exempt") && cycles(m, "p") >= Some(3.0)
    });
    let before = cycles(&m, "p").unwrap();
    // An invalid policy is refused like an invalid configuration.
    std::fs::write(&policy, "classes: 42\n").unwrap();
    let (status, body) = post_reload(&exporter, None);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("policy.yml"), "{body}");
    std::fs::write(&policy, builtin).unwrap();
    let (status, body) = post_reload(&exporter, None);
    assert_eq!(status, 200, "{body}");
    let m = exporter.wait_for(WAIT, "the test topic classified by the new policy", |m| {
        class(m).is_some_and(|c| c != "exempt")
    });
    assert!(
        cycles(&m, "p").unwrap() > before,
        "the cluster was not restarted for a policy change"
    );
    assert_eq!(m.value(SUCCESSFUL, &[]), Some(1.0));
}

/// The SASL-enabled Kafka of the harness, with a SCRAM user.
fn sasl_cluster() -> &'static KafkaCluster {
    static CLUSTER: OnceLock<KafkaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let opts = ClusterOptions::default().secure_listeners(&[("alice", "alice-reload-pw")]);
        let kafka = KafkaCluster::start_new(opts).expect("start Kafka with secure listeners");
        kafka.create_topic("rl.secure", 1, 1, &[]).unwrap();
        kafka
    })
}

#[test]
fn a_rotated_sasl_password_file_is_read_on_reload() {
    let kafka = sasl_cluster();
    let dir = tempfile::tempdir().unwrap();
    let pw = write_file(dir.path(), "kafka.pw", "not-the-password");
    let ca = kafka.pki().unwrap().ca.cert.display().to_string();
    let text = format!(
        "global:\n  interval: 500ms\n  timeout: 3s\nclusters:\n  - name: secure\n    bootstrap_servers: ['{}']\n    topics: {{allow: ['rl\\..*']}}\n    tls: {{ca_file: '{ca}'}}\n    sasl: {{mechanism: SCRAM-SHA-512, username: alice, password_file: '{}'}}\n",
        kafka.sasl_ssl_bootstrap_servers().unwrap(),
        pw.display()
    );
    let exporter = Exporter::start(&text, &[]);
    exporter.wait_for(WAIT, "authentication errors with the wrong password", |m| {
        up(m, "secure") == Some(0.0)
            && m.value(
                "kafka_slo_exporter_kafka_client_errors_total",
                &[("cluster", "secure"), ("kind", "authentication")],
            )
            .is_some_and(|n| n >= 1.0)
    });
    std::fs::write(&pw, "alice-reload-pw").unwrap();
    sighup(&exporter);
    let m = exporter.wait_for(WAIT, "collection with the rotated password", |m| {
        up(m, "secure") == Some(1.0)
    });
    assert_eq!(
        m.value(
            "kafka_topic_partitions",
            &[("cluster", "secure"), ("topic", "rl.secure")]
        ),
        Some(1.0)
    );
    assert_eq!(m.value(SUCCESSFUL, &[]), Some(1.0));
    assert!(
        exporter.logs().lines().all(|l| !l.contains("alice-reload-pw")),
        "no secret in the logs"
    );
}

/// Without a file, the `--kafka.*` flags are what a reload reads again: their password file.
#[test]
fn a_cluster_from_the_kafka_flags_rereads_its_password_file() {
    let kafka = sasl_cluster();
    let dir = tempfile::tempdir().unwrap();
    let pw = write_file(dir.path(), "kafka.pw", "not-the-password");
    let ca = kafka.pki().unwrap().ca.cert.display().to_string();
    let args: Vec<String> = [
        "--kafka.bootstrap-servers",
        &kafka.sasl_ssl_bootstrap_servers().unwrap(),
        "--kafka.cluster-name",
        "flags",
        "--kafka.tls-ca-file",
        &ca,
        "--kafka.sasl-mechanism",
        "SCRAM-SHA-256",
        "--kafka.sasl-username",
        "alice",
        "--kafka.sasl-password-file",
        pw.to_str().unwrap(),
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let exporter = Exporter::start_env(&args, &[]);
    let auth_errors = |m: &Metrics| {
        m.value(
            "kafka_slo_exporter_kafka_client_errors_total",
            &[("cluster", "flags"), ("kind", "authentication")],
        )
    };
    exporter.wait_for(WAIT, "authentication errors with the wrong password", |m| {
        auth_errors(m).is_some_and(|n| n >= 1.0)
    });
    // Nothing changed yet: the reload succeeds and keeps the cluster as it is.
    assert_eq!(post_reload(&exporter, None).0, 200);
    std::fs::write(&pw, "alice-reload-pw").unwrap();
    assert_eq!(post_reload(&exporter, None).0, 200);
    exporter.wait_for(WAIT, "collection with the rotated password", |m| {
        up(m, "flags") == Some(1.0)
    });
}

#[test]
fn the_reload_endpoint_obeys_basic_auth() {
    let kafka = shared();
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("reload-web-pw", 4).unwrap();
    let web = write_file(dir.path(), "web.yml", &format!("basic_auth_users:\n  ops: '{hash}'\n"));
    let exporter = Exporter::start(&config(kafka, &["one"]), &["--web.config.file", web.to_str().unwrap()]);
    std::fs::write(&exporter.config_path, config(kafka, &["one", "two"])).unwrap();
    assert_eq!(post_reload(&exporter, None).0, 401);
    assert_eq!(post_reload(&exporter, Some(("ops", "wrong"))).0, 401);
    let auth = (
        "Authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ops:reload-web-pw")
        ),
    );
    let scrape = || {
        let r = ureq::get(&exporter.url("/metrics"))
            .set(auth.0, &auth.1)
            .call()
            .expect("authorized scrape");
        Metrics::parse(&r.into_string().unwrap())
    };
    assert_eq!(up(&scrape(), "two"), None, "nothing reloaded without credentials");
    let (status, body) = post_reload(&exporter, Some(("ops", "reload-web-pw")));
    assert_eq!(status, 200, "{body}");
    assert!(scrape()
        .value("kafka_slo_exporter_cluster_up", &[("cluster", "two")])
        .is_some());
    // The web config is read again too: the new password applies as soon as the reload
    // (authorized by the old one) returns. Its own watcher (every 2 s) may rarely be first,
    // refusing the old password already.
    let hash = bcrypt::hash("rotated-web-pw", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  ops: '{hash}'\n")).unwrap();
    let (status, body) = post_reload(&exporter, Some(("ops", "reload-web-pw")));
    assert!(status == 200 || status == 401, "{status} {body}");
    assert_eq!(post_reload(&exporter, Some(("ops", "rotated-web-pw"))).0, 200);
    assert_eq!(post_reload(&exporter, Some(("ops", "reload-web-pw"))).0, 401);
}
