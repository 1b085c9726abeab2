//! Test support for running the exporter binary as a real process and reading its output with
//! real parsers (prometheus-parse for the Prometheus text format, promtool, and the reference
//! Python OpenMetrics parser).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kafka_harness::CertKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const EXPORTER: &str = env!("CARGO_BIN_EXE_kafka-slo-exporter");

/// The secrets `examples/kafka-slo-exporter.yml` reads from the environment.
pub const EXAMPLE_SECRETS: [(&str, &str); 3] = [
    ("KAFKA_PROD_EU_PASSWORD", "example-password"),
    ("KAFKA_PROD_EU_KEY_PASSWORD", "example-key-password"),
    ("KAFKA_PROD_EU_REGISTRY_PASSWORD", "example-registry-password"),
];

/// A running exporter process, killed on drop.
pub struct Exporter {
    child: Option<Child>,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Exporter {
    /// Starts the exporter with `config` (YAML) on a free port and waits until it listens.
    pub fn start(config: &str, extra_args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let mut args: Vec<String> = vec!["--config.file".into(), config_path.display().to_string()];
        args.extend(
            [
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.format",
                "json",
                "--log.level",
                "debug",
            ]
            .map(String::from),
        );
        args.extend(extra_args.iter().map(|a| a.to_string()));
        Self::spawn(dir, config_path, &args)
    }

    /// Starts the exporter with exactly `args`, which must include `--log.format=json` and a
    /// `--web.listen-address` on 127.0.0.1 (port 0 for a free one).
    pub fn start_args(args: &[String]) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = args
            .iter()
            .find_map(|a| a.strip_prefix("--config.file="))
            .map(PathBuf::from)
            .unwrap_or_default();
        Self::spawn(dir, config_path, args)
    }

    /// Starts the exporter with exactly `args` and the environment variables `env` added, for
    /// configurations without a file (the `--kafka.*` flags and `KSE_KAFKA_*` variables).
    pub fn start_env(args: &[String], env: &[(&str, &str)]) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_env(dir, PathBuf::new(), args, env)
    }

    fn spawn(dir: tempfile::TempDir, config_path: PathBuf, args: &[String]) -> Exporter {
        Self::spawn_env(dir, config_path, args, &[])
    }

    fn spawn_env(dir: tempfile::TempDir, config_path: PathBuf, args: &[String], env: &[(&str, &str)]) -> Exporter {
        let mut child = Command::new(EXPORTER)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn exporter");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"message\":\"listening\"") {
                    if let Some(addr) = json_field(&line, "address").and_then(|a| a.parse().ok()) {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "exporter did not start listening; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Exporter {
            child: Some(child),
            addr,
            logs,
            _dir: dir,
            config_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `path`; returns status, content type and body.
    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        let mut req = ureq::get(&self.url(path)).timeout(Duration::from_secs(10));
        if let Some(a) = accept {
            req = req.set("Accept", a);
        }
        match req.call() {
            Ok(r) => {
                let ct = r.content_type().to_string();
                let ct_full = r.header("content-type").unwrap_or(&ct).to_string();
                (r.status(), ct_full, r.into_string().expect("body"))
            }
            Err(ureq::Error::Status(code, r)) => {
                let ct = r.header("content-type").unwrap_or("").to_string();
                (code, ct, r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// Scrapes `/metrics` in the Prometheus text format and parses it.
    pub fn scrape(&self) -> Metrics {
        let (status, _, body) = self.get("/metrics", None);
        assert_eq!(status, 200, "scrape failed: {body}");
        Metrics::parse(&body)
    }

    /// Scrapes until `pred` holds or `timeout` passes; returns the last scrape.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.scrape();
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last scrape:\n{}\nlogs:\n{}",
                    m.text,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let exited = c.try_wait().ok().flatten();
            let _ = c.kill();
            let _ = c.wait();
            // A failing test shows how the exporter ended and its last log lines above debug
            // (and anything not in the JSON log format, such as a native library's abort).
            if std::thread::panicking() {
                let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
                let tail: Vec<&String> = logs
                    .iter()
                    .filter(|l| !l.contains("\"level\":\"DEBUG\"") && !l.contains("\"level\":\"TRACE\""))
                    .collect();
                eprintln!(
                    "exporter {} (exit status before the kill: {exited:?}); last log lines:\n{}",
                    self.addr,
                    tail[tail.len().saturating_sub(40)..]
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }
}

/// Extracts a top-level string field from one JSON log line (the exporter's own format).
fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_string())
}

/// A parsed scrape.
pub struct Metrics {
    pub text: String,
    pub samples: Vec<prometheus_parse::Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("exposition must parse");
        Metrics {
            text: text.to_string(),
            samples: scrape.samples,
        }
    }

    /// Samples of `name` whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&prometheus_parse::Sample> {
        self.samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    /// The value of the single sample of `name` matching `labels`; `None` if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(found.len() <= 1, "{name}{labels:?} matches {} series", found.len());
        found.first().map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a plain sample"),
        })
    }

    /// Sum of the samples of `name` matching `labels`, as PromQL `sum` would give it; `None`
    /// when no sample matches.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        (!found.is_empty()).then(|| {
            found
                .iter()
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => panic!("{name} is not a plain sample"),
                })
                .sum()
        })
    }

    /// Label maps of every sample of `name`.
    pub fn labels_of(&self, name: &str) -> Vec<HashMap<String, String>> {
        self.find(name, &[])
            .into_iter()
            .map(|s| s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .collect()
    }
}

/// Runs `promtool check metrics` on `text`: whether it succeeded, and what it printed.
pub fn promtool_report(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

/// Runs `promtool check metrics` on `text`; panics with promtool's output on failure.
pub fn promtool_check_metrics(text: &str) {
    let (ok, report) = promtool_report(text);
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}\non:\n{text}"
    );
}

/// Parses `text` with the reference OpenMetrics parser (Python prometheus_client), which
/// rejects anything that is not valid OpenMetrics 1.0.
pub fn openmetrics_check(text: &str) {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                  n = sum(len(f.samples) for f in p(sys.stdin.read()))\nprint(n)\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "OpenMetrics parser rejected the output:\n{}\non:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Metric names documented in `docs/metrics.md` (first column of its tables).
pub fn documented_metrics() -> std::collections::BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("docs/metrics.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .filter(|n| n.starts_with("kafka_"))
        .collect()
}

/// A child process (Prometheus, Alertmanager, ...) killed on drop; its output goes to `log`.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr in `log`.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install with scripts/setup.sh)"));
        Proc { child, log }
    }

    /// The last 30 lines of the log, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Documented metrics that describe the process rather than a cluster: their catalogue row
/// says "No `cluster` label".
pub fn process_metrics() -> std::collections::BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("docs/metrics.md");
    text.lines()
        .filter(|l| l.contains("No `cluster` label"))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .collect()
}

/// Drives a future (an rdkafka admin call) to completion on this non-async test thread; the
/// admin client's own thread does the work and wakes us.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// The cluster's bootstrap servers as a YAML flow list: `["127.0.0.1:1", "127.0.0.1:2"]`.
pub fn bootstrap_yaml(kafka: &kafka_harness::KafkaCluster) -> String {
    let quoted: Vec<String> = kafka
        .bootstrap_servers()
        .split(',')
        .map(|s| format!("\"{s}\""))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A ureq agent trusting `ca` (else the web PKI) and presenting `client` when given.
pub fn tls_agent(ca: Option<&Path>, client: Option<&CertKey>) -> ureq::Agent {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(ck) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ck.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            builder
                .with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(&ck.key).unwrap())
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    ureq::AgentBuilder::new()
        .tls_config(Arc::new(config))
        .timeout(Duration::from_secs(10))
        .build()
}

/// GET over HTTPS with optional basic auth: status and response, or the transport error's text.
pub fn https_get(agent: &ureq::Agent, url: &str, auth: Option<(&str, &str)>) -> Result<(u16, ureq::Response), String> {
    let mut req = agent.get(url);
    if let Some((u, p)) = auth {
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req = req.set("Authorization", &format!("Basic {v}"));
    }
    match req.call() {
        Ok(r) => Ok((r.status(), r)),
        Err(ureq::Error::Status(code, r)) => Ok((code, r)),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts the Prometheus `binary` with `config` (written to `dir/prometheus.yml`, data in
/// `dir/tsdb`, log in `dir/prometheus.log`) on a free port plus `extra_args`, and waits until it
/// is ready. Returns the process and its port.
pub fn start_prometheus(binary: &Path, dir: &Path, config: &str, extra_args: &[&str]) -> (Proc, u16) {
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Proc::spawn(
        Command::new(binary)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args),
        dir.join("prometheus.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    while ureq::get(&ready).timeout(Duration::from_secs(2)).call().is_err() {
        assert!(Instant::now() < deadline, "prometheus not ready:\n{}", p.tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    (p, port)
}
