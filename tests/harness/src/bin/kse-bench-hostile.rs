//! `kse-bench-hostile`: honest scrapes of the real exporter while hostile clients hold
//! connections open, for `bench/hostile.sh`.
//!
//! For each mode (plain HTTP, TLS) the exporter binary is started once with its default
//! connection flags and a web config with one basic auth user (plus TLS in the TLS mode). Then,
//! for each N in `--clients`, all of these run side by side:
//!
//! * 10 honest scrapers, each scraping `/metrics` on a new connection every 100 ms with the
//!   right password, a 10 s timeout (Prometheus's default) and Prometheus's headers;
//! * N stalled clients that reconnect whenever the exporter closes them: in the plain mode
//!   they send a request line and one header field and stop; in the TLS mode half send nothing
//!   and half the first bytes of a ClientHello, so none finishes a handshake;
//! * a flood of requests with wrong passwords (16 connections, back to back, a new password
//!   each time, so no cache can help);
//! * requests with a 20 KiB header field (over the 16 KiB limit), back to back.
//!
//! The stalled clients are opened first (the ramp); the measurement window starts when all are
//! connected. Reported per run: the honest scrapes' p50/p99/max latency and errors, the
//! exporter's RSS (at rest before the first run, peak during each run) and CPU, and what the
//! exporter counted as rejections. One JSON object per run on stdout, a Markdown table on
//! stderr at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use kafka_harness::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str = "\
usage: kse-bench-hostile --exporter PATH [--modes plain,tls] [--clients 0,500,2000,10000]
                         [--duration 20] [--workdir DIR] [--exporter-arg ARG]...

  --exporter PATH   the exporter binary (a release build)
  --modes LIST      plain, tls or both (default both)
  --clients LIST    numbers of stalled clients, one run each (default 0,500,2000,10000)
  --duration S      measurement window of each run in seconds (default 20)
  --workdir DIR     where certificates and configs are written (default: a temporary dir)
  --exporter-arg A  one more exporter flag (repeat for several), e.g. --web.max-pending-connections=8192
";

const HONEST: usize = 10;
const FLOODERS: usize = 16;
const USER: &str = "prometheus";
const PASSWORD: &str = "bench-password";
const SCRAPE_INTERVAL: Duration = Duration::from_millis(100);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Source addresses of the stalled clients: one address has about 28,000 ephemeral ports,
/// and connections closed by the exporter keep theirs in TIME_WAIT for a minute.
const SOURCE_ADDRESSES: u8 = 16;
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Args {
    exporter: PathBuf,
    modes: Vec<String>,
    clients: Vec<usize>,
    duration: Duration,
    workdir: Option<PathBuf>,
    exporter_args: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        exporter: PathBuf::new(),
        modes: vec!["plain".into(), "tls".into()],
        clients: vec![0, 500, 2000, 10000],
        duration: Duration::from_secs(20),
        workdir: None,
        exporter_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--exporter" => a.exporter = PathBuf::from(value()?),
            "--modes" => a.modes = value()?.split(',').map(String::from).collect(),
            "--clients" => {
                a.clients = value()?
                    .split(',')
                    .map(|n| n.parse().map_err(|e| format!("{n}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--duration" => {
                let v = value()?;
                a.duration = Duration::from_secs(v.parse().map_err(|e| format!("{v}: {e}"))?)
            }
            "--workdir" => a.workdir = Some(PathBuf::from(value()?)),
            "--exporter-arg" => a.exporter_args.push(value()?),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.exporter.as_os_str().is_empty() {
        return Err("--exporter is required".into());
    }
    if let Some(m) = a.modes.iter().find(|m| *m != "plain" && *m != "tls") {
        return Err(format!("unknown mode {m:?}"));
    }
    Ok(a)
}

/// The exporter under test and how to reach it.
struct Target {
    child: Child,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    fn start(exporter: &Path, extra: &[String], dir: &Path, tls: bool) -> Result<Target, String> {
        let hash = bcrypt::hash(PASSWORD, 10).map_err(|e| e.to_string())?;
        let config = dir.join("config.yml");
        // A cluster nobody listens on: collection fails, the endpoint serves all the same.
        std::fs::write(
            &config,
            "clusters:\n  - name: nowhere\n    bootstrap_servers: ['127.0.0.1:1']\n",
        )
        .map_err(|e| e.to_string())?;
        let mut web = format!("basic_auth_users:\n  {USER}: '{hash}'\n");
        let mut client_tls = None;
        if tls {
            let pki = TestPki::generate(&dir.join("pki"), "kse-bench-hostile-ca").map_err(|e| e.to_string())?;
            web.push_str(&format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                pki.server.cert.display(),
                pki.server.key.display()
            ));
            client_tls = Some(client_config(&pki.ca.cert)?);
        }
        let web_file = dir.join(if tls { "web-tls.yml" } else { "web-plain.yml" });
        std::fs::write(&web_file, web).map_err(|e| e.to_string())?;
        let mut child = Command::new(exporter)
            .arg("--config.file")
            .arg(&config)
            .arg("--web.config.file")
            .arg(&web_file)
            .args(["--web.listen-address", "127.0.0.1:0", "--log.format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", exporter.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"message\":\"listening\"") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| "exporter did not start")?;
        let addr = line
            .split("\"address\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("no address in {line}"))?;
        Ok(Target {
            child,
            addr,
            tls: client_tls,
        })
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// An agent whose requests each open a new connection (`Connection: close` is sent too).
    fn agent(&self, timeout: Duration) -> ureq::Agent {
        let mut b = ureq::AgentBuilder::new().timeout(timeout).max_idle_connections(0);
        if let Some(tls) = &self.tls {
            b = b.tls_config(Arc::clone(tls));
        }
        b.build()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn basic(user: &str, password: &str) -> String {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {v}")
}

/// One honest scrape on a new connection: its latency, or why it failed.
fn scrape(target: &Target, auth: &str) -> Result<Duration, String> {
    let t0 = Instant::now();
    let r = target
        .agent(SCRAPE_TIMEOUT)
        .get(&target.url("/metrics"))
        .set("Accept", PROMETHEUS_ACCEPT)
        .set("Accept-Encoding", "gzip")
        .set("Authorization", auth)
        .set("Connection", "close")
        .call();
    match r {
        Ok(r) => {
            let mut body = Vec::new();
            r.into_reader().read_to_end(&mut body).map_err(|e| e.to_string())?;
            if body.is_empty() {
                return Err("empty body".into());
            }
            Ok(t0.elapsed())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// What the honest scrapers saw in the measurement window.
#[derive(Default)]
struct Honest {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

fn run_honest(target: &Target, window: Duration) -> Honest {
    let out = Mutex::new(Honest::default());
    let auth = basic(USER, PASSWORD);
    let end = Instant::now() + window;
    thread::scope(|s| {
        for i in 0..HONEST {
            let (out, auth) = (&out, &auth);
            s.spawn(move || {
                // Spread the scrapers over the interval, as Prometheus spreads its targets.
                thread::sleep(SCRAPE_INTERVAL * i as u32 / HONEST as u32);
                let mut next = Instant::now();
                while next < end {
                    let r = scrape(target, auth);
                    let mut o = out.lock().unwrap();
                    match r {
                        Ok(d) => o.latencies.push(d),
                        Err(e) => o.errors.push(e),
                    }
                    drop(o);
                    next += SCRAPE_INTERVAL;
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            });
        }
    });
    out.into_inner().unwrap()
}

/// Wrong passwords and oversized heads until `stop`; returns the requests sent.
fn run_abuse(target: &Target, stop: &AtomicBool) -> (usize, usize) {
    let wrong = AtomicUsize::new(0);
    let big = AtomicUsize::new(0);
    thread::scope(|s| {
        for f in 0..FLOODERS {
            let wrong = &wrong;
            s.spawn(move || {
                let agent = target.agent(SCRAPE_TIMEOUT);
                while !stop.load(Ordering::Relaxed) {
                    let n = wrong.fetch_add(1, Ordering::Relaxed);
                    let auth = basic(USER, &format!("guess-{f}-{n}"));
                    let _ = agent.get(&target.url("/metrics")).set("Authorization", &auth).call();
                }
            });
        }
        s.spawn(|| {
            let agent = target.agent(SCRAPE_TIMEOUT);
            let filler = "a".repeat(20 * 1024);
            while !stop.load(Ordering::Relaxed) {
                big.fetch_add(1, Ordering::Relaxed);
                let _ = agent.get(&target.url("/metrics")).set("X-Filler", &filler).call();
            }
        });
    });
    (wrong.into_inner(), big.into_inner())
}

/// Holds `n` stalled connections, reconnecting each one the exporter closes, until `stop`.
/// Returns when all `n` have connected once (`ready`) and keeps running in its thread.
fn start_stalled(
    addr: SocketAddr,
    n: usize,
    tls: bool,
    stop: Arc<AtomicBool>,
) -> (thread::JoinHandle<usize>, std::sync::mpsc::Receiver<()>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reconnects = Arc::new(AtomicUsize::new(0));
        let connected = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                let first: &'static [u8] = match (tls, i % 2) {
                    (false, _) => b"GET /metrics HTTP/1.1\r\nHost: bench\r\n",
                    (true, 0) => b"",
                    (true, _) => b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                };
                let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCE_ADDRESSES as usize) as u8);
                let (stop, reconnects, connected) = (stop.clone(), reconnects.clone(), connected.clone());
                tasks.push(tokio::spawn(stalled_client(
                    addr, source, first, stop, reconnects, connected,
                )));
                if i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
            }
            while connected.load(Ordering::Relaxed) < n && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = ready_tx.send(());
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for t in tasks {
                t.abort();
            }
        });
        reconnects.load(Ordering::Relaxed)
    });
    (handle, ready_rx)
}

async fn stalled_client(
    addr: SocketAddr,
    source: Ipv4Addr,
    first: &'static [u8],
    stop: Arc<AtomicBool>,
    reconnects: Arc<AtomicUsize>,
    connected: Arc<AtomicUsize>,
) {
    let mut counted = false;
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        let stream = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
            socket.connect(addr).await
        };
        let Ok(mut s) = stream.await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !counted {
            counted = true;
            connected.fetch_add(1, Ordering::Relaxed);
        } else {
            reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if s.write_all(first).await.is_err() {
            continue;
        }
        // Whatever the exporter answers, the client reads on until it is closed.
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    }
}

/// CPU time (user + system) and current RSS of a process, from /proc.
fn usage(pid: u32) -> (Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux architecture this runs on.
    (Duration::from_millis(ticks * 10), rss_kib * 1024)
}

/// `kafka_slo_exporter_http_rejections_total` by reason, from one scrape.
fn rejections(target: &Target) -> Vec<(String, f64)> {
    let Ok(r) = target
        .agent(SCRAPE_TIMEOUT)
        .get(&target.url("/metrics"))
        .set("Authorization", &basic(USER, PASSWORD))
        .call()
    else {
        return Vec::new();
    };
    let body = r.into_string().unwrap_or_default();
    body.lines()
        .filter_map(|l| l.strip_prefix("kafka_slo_exporter_http_rejections_total{reason=\""))
        .filter_map(|l| {
            let (reason, value) = l.split_once("\"} ")?;
            Some((reason.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

const MIB: f64 = 1024.0 * 1024.0;

/// One run with `n` stalled clients; the result as JSON.
fn run(target: &Target, mode: &str, n: usize, window: Duration, rest_rss: u64) -> serde_json::Value {
    let pid = target.pid();
    let before = rejections(target);
    let stop = Arc::new(AtomicBool::new(false));
    let t_ramp = Instant::now();
    let (stalled, ready) = start_stalled(target.addr, n, target.tls.is_some(), Arc::clone(&stop));
    let ramped = ready.recv_timeout(Duration::from_secs(120)).is_ok();
    let ramp = t_ramp.elapsed();
    let (cpu0, _) = usage(pid);
    let abuse_stop = AtomicBool::new(false);
    let (mut honest, (wrong, big), peak_rss) = thread::scope(|s| {
        let abuse = s.spawn(|| run_abuse(target, &abuse_stop));
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !abuse_stop.load(Ordering::Relaxed) {
                peak = peak.max(usage(pid).1);
                thread::sleep(Duration::from_millis(200));
            }
            peak
        });
        let honest = run_honest(target, window);
        abuse_stop.store(true, Ordering::Relaxed);
        (honest, abuse.join().unwrap(), sampler.join().unwrap())
    });
    let (cpu1, _) = usage(pid);
    stop.store(true, Ordering::Relaxed);
    let reconnects = stalled.join().unwrap_or(0);
    // Let the exporter close what the stalled clients left before counting and the next run.
    thread::sleep(Duration::from_secs(2));
    let after = rejections(target);
    let delta: serde_json::Map<String, serde_json::Value> = after
        .iter()
        .map(|(reason, v)| {
            let b = before.iter().find(|(r, _)| r == reason).map_or(0.0, |(_, b)| *b);
            (reason.clone(), serde_json::json!(v - b))
        })
        .collect();
    honest.latencies.sort();
    let l = &honest.latencies;
    let mut first_errors = honest.errors.clone();
    first_errors.truncate(3);
    serde_json::json!({
        "mode": mode,
        "stalled_clients": n,
        "ramp_complete": ramped,
        "ramp_s": ramp.as_secs_f64(),
        "window_s": window.as_secs_f64(),
        "honest_scrapes": l.len(),
        "honest_errors": honest.errors.len(),
        "honest_error_samples": first_errors,
        "p50_ms": percentile(l, 0.50),
        "p99_ms": percentile(l, 0.99),
        "max_ms": l.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        "rss_rest_mib": rest_rss as f64 / MIB,
        "rss_peak_mib": peak_rss as f64 / MIB,
        "cpu_percent": (cpu1 - cpu0).as_secs_f64() / window.as_secs_f64() * 100.0,
        "stalled_reconnects": reconnects,
        "wrong_password_requests": wrong,
        "oversized_requests": big,
        "rejections": delta,
    })
}

fn table_row(r: &serde_json::Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {} / {} | {:.1} | {:.1} | {:.0} | {} |",
        r["mode"].as_str().unwrap_or(""),
        r["stalled_clients"],
        f("p50_ms"),
        f("p99_ms"),
        f("max_ms"),
        r["honest_errors"],
        r["honest_scrapes"],
        f("rss_rest_mib"),
        f("rss_peak_mib"),
        f("cpu_percent"),
        r["rejections"]["evicted"].as_f64().unwrap_or(0.0),
    )
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let tmp = std::env::temp_dir().join(format!("kse-bench-hostile-{}", std::process::id()));
    let workdir = args.workdir.clone().unwrap_or(tmp);
    let mut rows = Vec::new();
    for mode in &args.modes {
        let dir = workdir.join(mode);
        std::fs::create_dir_all(&dir).expect("work directory");
        let target = match Target::start(&args.exporter, &args.exporter_args, &dir, mode == "tls") {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {mode}: {e}");
                std::process::exit(1);
            }
        };
        // The first right password costs one bcrypt; later ones hit the cache.
        let auth = basic(USER, PASSWORD);
        for _ in 0..3 {
            if let Err(e) = scrape(&target, &auth) {
                eprintln!("error: {mode}: warm-up scrape failed: {e}");
                std::process::exit(1);
            }
        }
        thread::sleep(Duration::from_secs(2));
        let rest_rss = usage(target.pid()).1;
        for &n in &args.clients {
            eprintln!("{mode}: {n} stalled clients, {:?} window", args.duration);
            let label = std::iter::once(mode.as_str())
                .chain(args.exporter_args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            let r = run(&target, &label, n, args.duration, rest_rss);
            println!("{r}");
            let _ = std::io::stdout().flush();
            rows.push(table_row(&r));
        }
    }
    if args.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    eprintln!("\n| mode | stalled clients | p50 ms | p99 ms | max ms | errors / scrapes | RSS at rest MiB | RSS peak MiB | CPU % | evicted |");
    eprintln!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        eprintln!("{r}");
    }
}
