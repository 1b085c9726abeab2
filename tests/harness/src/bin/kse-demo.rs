//! `kse-demo`: a local playground for kafka-slo-exporter.
//!
//! Starts a one-node Kafka cluster with topics shaped like the naming and
//! retention rules of the topic ADR (plus one topic that breaks them), keeps
//! a light produce load and two consumer groups running — one healthy, one
//! lagging — and runs the exporter against it until Ctrl-C.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use kafka_harness::demo::{self, Workload};
use kafka_harness::{ClusterOptions, KafkaCluster, DEFAULT_KAFKA_VERSION};

const USAGE: &str = "\
usage: kse-demo [--exporter-bin PATH] [--listen ADDR] [--kafka-version VERSION]

Starts a local one-node Kafka cluster with demo topics, producers and consumer
groups, then runs kafka-slo-exporter against it until Ctrl-C.

  --exporter-bin PATH      exporter executable
                           (default: kafka-slo-exporter next to kse-demo)
  --listen ADDR            exporter listen address (default: 127.0.0.1:10077)
  --kafka-version VERSION  Kafka version to run (default: {DEFAULT_KAFKA_VERSION})
";

fn usage() -> String {
    USAGE.replace("{DEFAULT_KAFKA_VERSION}", DEFAULT_KAFKA_VERSION)
}

struct Args {
    exporter_bin: PathBuf,
    listen: String,
    kafka_version: String,
}

fn main() -> ExitCode {
    // Block the termination signals before any thread exists, so every
    // thread inherits the mask and they are only ever received through
    // `sigtimedwait` in the main loop. Children are given a clean mask.
    let signals = TerminationSignals::block();
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("kse-demo: {msg}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match run(&args, &signals) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("kse-demo: {msg}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut exporter_bin = None;
    let mut listen = "127.0.0.1:10077".to_owned();
    let mut kafka_version = DEFAULT_KAFKA_VERSION.to_owned();
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<OsString, String> {
            match &inline {
                Some(v) => Ok(v.into()),
                None => it.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "--exporter-bin" => exporter_bin = Some(PathBuf::from(value("--exporter-bin")?)),
            "--listen" => listen = value("--listen")?.to_string_lossy().into_owned(),
            "--kafka-version" => kafka_version = value("--kafka-version")?.to_string_lossy().into_owned(),
            "-h" | "--help" => {
                print!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let exporter_bin = match exporter_bin {
        Some(p) => p,
        None => default_exporter_bin()?,
    };
    Ok(Args {
        exporter_bin,
        listen,
        kafka_version,
    })
}

/// `kafka-slo-exporter` in the same directory as this executable, which is
/// where cargo puts both binaries of the workspace.
fn default_exporter_bin() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot locate kse-demo itself: {e}"))?;
    let dir = me
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", me.display()))?;
    Ok(dir.join("kafka-slo-exporter"))
}

/// What ended the demo.
enum Ending {
    Signal(i32),
    ExporterExited(ExitStatus),
}

fn run(args: &Args, signals: &TerminationSignals) -> Result<ExitCode, String> {
    if !args.exporter_bin.is_file() {
        return Err(format!(
            "exporter binary {} not found (build it with `cargo build --bin kafka-slo-exporter` \
             or pass --exporter-bin)",
            args.exporter_bin.display()
        ));
    }

    eprintln!("kse-demo: starting Kafka {} ...", args.kafka_version);
    let started = Instant::now();
    let cluster = KafkaCluster::start_new(ClusterOptions::default().version(&args.kafka_version))
        .map_err(|e| format!("starting Kafka: {e}"))?;
    eprintln!(
        "kse-demo: Kafka ready at {} in {:.1?}",
        cluster.bootstrap_servers(),
        started.elapsed()
    );
    if let Some(sig) = signals.poll(Duration::ZERO) {
        return Ok(finish(Ending::Signal(sig), None, None, cluster));
    }

    let workload = Workload::start(&cluster)?;
    eprintln!(
        "kse-demo: topics {}; groups {} (healthy) and {} (lagging)",
        demo::topics().iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
        demo::HEALTHY_GROUP.0,
        demo::LAGGING_GROUP.0
    );

    let config = cluster.dir().join("exporter.yaml");
    std::fs::write(&config, exporter_config(&cluster.bootstrap_servers()))
        .map_err(|e| format!("writing {}: {e}", config.display()))?;

    let mut exporter = spawn_exporter(&args.exporter_bin, &config, &args.listen)
        .map_err(|e| format!("starting {}: {e}", args.exporter_bin.display()))?;
    println!(
        "kafka-slo-exporter demo: http://{}/metrics (Kafka at {}); Ctrl-C to stop",
        args.listen,
        cluster.bootstrap_servers()
    );

    let ending = loop {
        if let Some(sig) = signals.poll(Duration::from_millis(250)) {
            break Ending::Signal(sig);
        }
        match exporter.try_wait() {
            Ok(Some(status)) => break Ending::ExporterExited(status),
            Ok(None) => {}
            Err(e) => {
                eprintln!("kse-demo: cannot check the exporter: {e}");
                break Ending::Signal(libc::SIGTERM);
            }
        }
    };
    Ok(finish(ending, Some(exporter), Some(workload), cluster))
}

/// Stops everything in dependency order and picks the exit code: 0 after a
/// signal, the exporter's own code if it exited by itself.
fn finish(ending: Ending, exporter: Option<Child>, workload: Option<Workload>, cluster: KafkaCluster) -> ExitCode {
    let code = match ending {
        Ending::Signal(sig) => {
            eprintln!("kse-demo: got signal {sig}, shutting down");
            if let Some(child) = exporter {
                stop_exporter(child);
            }
            ExitCode::SUCCESS
        }
        Ending::ExporterExited(status) => {
            eprintln!("kse-demo: exporter exited ({status}), shutting down");
            let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    };
    // Consumers commit and leave their groups while the broker still runs.
    drop(workload);
    drop(cluster);
    code
}

fn exporter_config(bootstrap: &str) -> String {
    format!(
        "global:\n  interval: 5s\n  timeout: 10s\nclusters:\n  - name: demo\n    \
         bootstrap_servers: [\"{bootstrap}\"]\n    labels:\n      env: demo\n    \
         probe:\n      interval: 1s\n"
    )
}

fn spawn_exporter(bin: &Path, config: &Path, listen: &str) -> std::io::Result<Child> {
    let mut cmd = Command::new(bin);
    cmd.arg("--config.file")
        .arg(config)
        .arg("--web.listen-address")
        .arg(listen)
        // Its own process group: a terminal Ctrl-C reaches only the demo,
        // which then stops the exporter in order instead of racing it.
        .process_group(0);
    // SAFETY: pthread_sigmask and prctl are async-signal-safe and touch no
    // Rust state.
    unsafe {
        cmd.pre_exec(|| {
            // The demo blocks the termination signals; a blocked mask is
            // inherited across exec, and the exporter must see SIGTERM.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The main thread, which spawns the exporter, lives as long as
            // the demo, so this fires exactly when the demo dies unexpectedly.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// SIGTERM, then SIGKILL if the exporter has not exited within 10 s.
fn stop_exporter(mut child: Child) {
    // SAFETY: the child has not been waited for, so its pid is still ours.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!("kse-demo: exporter ignored SIGTERM, killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, blocked and consumed synchronously.
struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    fn block() -> TerminationSignals {
        // SAFETY: plain libc signal-set manipulation on a local value.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            TerminationSignals { set }
        }
    }

    /// Waits up to `timeout` for a termination signal.
    fn poll(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `set` is initialised and `ts` outlives the call.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        let a = parse(&[
            "--exporter-bin",
            "/x/exp",
            "--listen=0.0.0.0:1",
            "--kafka-version",
            "3.9.1",
        ])
        .unwrap();
        assert_eq!(a.exporter_bin, PathBuf::from("/x/exp"));
        assert_eq!(a.listen, "0.0.0.0:1");
        assert_eq!(a.kafka_version, "3.9.1");
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--listen"]).is_err());
        let d = parse(&[]).unwrap();
        assert_eq!(d.listen, "127.0.0.1:10077");
        assert!(d.exporter_bin.ends_with("kafka-slo-exporter"));
    }

    #[test]
    fn config_file_shape() {
        let c = exporter_config("127.0.0.1:1234");
        assert!(c.contains("bootstrap_servers: [\"127.0.0.1:1234\"]"));
        assert!(c.contains("  interval: 5s\n"));
        assert!(c.contains("      env: demo\n"));
        assert!(c.contains("    probe:\n      interval: 1s\n"));
    }
}
