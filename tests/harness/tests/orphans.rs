//! No broker JVM or cluster directory survives a test process that aborts.
//!
//! The parent test re-runs this test binary as a child that starts a cluster
//! and then calls `std::process::abort()`, so no destructor runs and the
//! `static` shared cluster is never dropped. Only the supervisors' stdin
//! pipes closing can clean up; the parent checks they did.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_harness::{ClusterOptions, KafkaCluster};

const CHILD_ENV: &str = "KAFKA_HARNESS_ORPHAN_CHILD";

/// Runs only inside the child process started by the test below.
#[test]
#[ignore = "helper run by aborting_process_leaves_no_broker_behind"]
fn orphan_child() {
    let Some(report) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let shared = KafkaCluster::shared_single();
    let owned = KafkaCluster::start_new(ClusterOptions::with_nodes(1)).expect("second cluster");
    let pids = [shared.broker_pid(1).unwrap(), owned.broker_pid(1).unwrap()];
    let text = format!(
        "{}\n{}\n{} {}\n",
        shared.dir().display(),
        owned.dir().display(),
        pids[0],
        pids[1]
    );
    std::fs::write(report, text).unwrap();
    std::process::abort();
}

#[test]
fn aborting_process_leaves_no_broker_behind() {
    let report = std::env::temp_dir().join(format!("kafka-harness-orphans-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "orphan_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &report)
        .status()
        .expect("run child");
    assert!(!status.success(), "the child must abort");

    let text = std::fs::read_to_string(&report).expect("child report");
    std::fs::remove_file(&report).unwrap();
    let mut lines = text.lines();
    let dirs: Vec<PathBuf> = lines.by_ref().take(2).map(PathBuf::from).collect();
    let pids: Vec<u32> = lines.next().unwrap().split(' ').map(|p| p.parse().unwrap()).collect();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jvms_alive = pids.iter().any(|&p| is_alive(p));
        let referencing: Vec<String> = dirs
            .iter()
            .filter_map(|d| {
                let out = Command::new("pgrep")
                    .arg("-f")
                    .arg(d.as_os_str())
                    .output()
                    .expect("pgrep");
                let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                (!s.is_empty()).then_some(s)
            })
            .collect();
        let dirs_left = dirs.iter().any(|d| d.exists());
        if !jvms_alive && referencing.is_empty() && !dirs_left {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftovers after abort: jvms_alive={jvms_alive} processes={referencing:?} dirs_left={dirs_left}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is a live process. Killed JVMs are reparented to PID 1,
/// which may take a while to reap them; a zombie is dead for this purpose.
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}
