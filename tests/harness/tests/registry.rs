//! The Apicurio Schema Registry of the harness: it answers the Confluent-compatible API, stops
//! on request, restarts on the same port, and never outlives a test process that aborts.

use std::process::Command;
use std::time::{Duration, Instant};

use kafka_harness::SchemaRegistry;

const CHILD_ENV: &str = "KAFKA_HARNESS_REGISTRY_ORPHAN_CHILD";
const STARTUP: Duration = Duration::from_secs(240);

#[test]
fn registry_answers_and_stops() {
    let registry = SchemaRegistry::start(STARTUP).expect("start the registry");
    let schema = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}"#;
    let id = registry.register("harness-value", schema, None).unwrap();
    assert!(id > 0);
    let body = ureq::get(&format!("{}/subjects", registry.url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(body, r#"["harness-value"]"#);
    registry.soft_delete_subject("harness-value").unwrap();
    registry.stop();
    assert!(!registry.is_running());
    assert!(ureq::get(&format!("{}/subjects", registry.url())).call().is_err());
}

#[test]
fn registry_restarts_on_its_port() {
    let registry = SchemaRegistry::start(STARTUP).expect("start the registry");
    let url = registry.url();
    let first_pid = registry.pid().unwrap();
    registry.register("before-value", r#"{"type":"string"}"#, None).unwrap();
    registry.stop();
    assert!(ureq::get(&format!("{url}/subjects")).call().is_err());

    registry.restart(STARTUP).expect("restart the registry");
    assert_eq!(registry.url(), url, "same port");
    assert!(registry.is_running());
    assert_ne!(registry.pid(), Some(first_pid), "a new process");
    let subjects = |registry: &SchemaRegistry| {
        ureq::get(&format!("{}/subjects", registry.url()))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    assert_eq!(subjects(&registry), "[]", "in-memory storage starts empty");
    registry.register("after-value", r#"{"type":"string"}"#, None).unwrap();
    assert_eq!(subjects(&registry), r#"["after-value"]"#);

    // Restarting a running registry replaces its process too.
    let second_pid = registry.pid().unwrap();
    registry.restart(STARTUP).expect("restart a running registry");
    assert_eq!(registry.url(), url);
    assert_ne!(registry.pid(), Some(second_pid));
    assert_eq!(subjects(&registry), "[]");
}

/// Runs only inside the child process started by the test below.
#[test]
#[ignore = "helper run by aborting_process_leaves_no_registry_behind"]
fn registry_orphan_child() {
    let Some(report) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let registry = SchemaRegistry::start(STARTUP).expect("start the registry");
    let text = format!("{}\n{}\n", registry.dir().display(), registry.pid().unwrap());
    std::fs::write(report, text).unwrap();
    std::process::abort();
}

#[test]
fn aborting_process_leaves_no_registry_behind() {
    let report = std::env::temp_dir().join(format!("kafka-harness-registry-orphan-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "registry_orphan_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &report)
        .status()
        .expect("run child");
    assert!(!status.success(), "the child must abort");
    let text = std::fs::read_to_string(&report).expect("child report");
    std::fs::remove_file(&report).unwrap();
    let mut lines = text.lines();
    let dir = std::path::PathBuf::from(lines.next().unwrap());
    let pid: u32 = lines.next().unwrap().parse().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
            .is_some_and(|state| state != 'Z' && state != 'X');
        if !alive && !dir.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftovers after abort: jvm alive={alive} dir left={}",
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
