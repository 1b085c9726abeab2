//! `kse-soak`: a long run of the exporter against a churning Kafka cluster, for `bench/soak.sh`.
//!
//! Starts a one-node KRaft cluster and the exporter (with the delivery probe), then for
//! `--duration`:
//!
//! - keeps one steady topic with a producer and a slow (lagging) consumer group;
//! - every `--churn-every` creates a new topic `soak.churn.N` with a producer and a consuming
//!   group `soak-churn-N`, and once more than `--live` churn topics exist, stops the oldest
//!   group, deletes it and deletes its topic, so topic and group names keep changing;
//! - scrapes `/metrics` back to back with a pause of `--scrape-every`, counting failures and
//!   latency;
//! - every `--sample-every` writes one CSV row with the exporter's resident set size
//!   (`VmRSS` of `/proc/<pid>/status`, and its anonymous and file-backed parts) and the run's
//!   counters.
//!
//! The CSV goes to `--csv`; a one-line JSON summary is printed on stdout at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kafka_harness::{ClusterOptions, ConsumerHandle, ConsumerOptions, KafkaCluster, ProducerHandle};

const USAGE: &str = "\
usage: kse-soak --exporter PATH --csv PATH [--duration 30m] [--sample-every 10s]
                [--churn-every 15s] [--live 8] [--scrape-every 100ms] [--interval 5s]
                [--log PATH]

  --exporter PATH      kafka-slo-exporter binary
  --csv PATH           where to write the RSS samples
  --duration D         run time (default 30m)
  --sample-every D     RSS sampling period (default 10s)
  --churn-every D      period of topic/group churn (default 15s)
  --live N             churn topics alive at once (default 8)
  --scrape-every D     pause between scrapes (default 100ms)
  --interval D         exporter collection interval (default 5s)
  --log PATH           exporter log file (default: next to the CSV)
";

struct Args {
    exporter: PathBuf,
    csv: PathBuf,
    log: Option<PathBuf>,
    duration: Duration,
    sample_every: Duration,
    churn_every: Duration,
    live: usize,
    scrape_every: Duration,
    interval: Duration,
}

/// Parses `500ms`, `10s`, `30m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("invalid duration unit in {s:?}; use ms, s, m or h")),
    })
}

fn parse_args() -> Result<Args, String> {
    let mut exporter = None;
    let mut csv = None;
    let mut a = Args {
        exporter: PathBuf::new(),
        csv: PathBuf::new(),
        log: None,
        duration: Duration::from_secs(30 * 60),
        sample_every: Duration::from_secs(10),
        churn_every: Duration::from_secs(15),
        live: 8,
        scrape_every: Duration::from_millis(100),
        interval: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--exporter" => exporter = Some(PathBuf::from(value()?)),
            "--csv" => csv = Some(PathBuf::from(value()?)),
            "--log" => a.log = Some(PathBuf::from(value()?)),
            "--duration" => a.duration = parse_duration(&value()?)?,
            "--sample-every" => a.sample_every = parse_duration(&value()?)?,
            "--churn-every" => a.churn_every = parse_duration(&value()?)?,
            "--scrape-every" => a.scrape_every = parse_duration(&value()?)?,
            "--interval" => a.interval = parse_duration(&value()?)?,
            "--live" => a.live = value()?.parse().map_err(|_| "--live needs a number".to_string())?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    a.exporter = exporter.ok_or("--exporter is required")?;
    a.csv = csv.ok_or("--csv is required")?;
    Ok(a)
}

fn log(msg: &str) {
    eprintln!("[kse-soak] {msg}");
}

/// A `kB` field of `/proc/<pid>/status`: `VmRSS` (resident set), `RssAnon` (heap and stacks)
/// or `RssFile` (mapped files, mostly the binary's own pages).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Scrape results shared between the scraper thread and the sampler.
#[derive(Default)]
struct ScrapeStats {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Latencies (µs) since the last sample, drained by the sampler.
    window: Mutex<Vec<u64>>,
    /// Sample lines of the most recent good scrape.
    series: AtomicU64,
    max_us: AtomicU64,
}

fn scraper(url: String, every: Duration, stop: Arc<AtomicBool>, stats: Arc<ScrapeStats>) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let res = agent.get(&url).call().map_err(|e| e.to_string()).and_then(|r| {
            let status = r.status();
            r.into_string().map(|b| (status, b)).map_err(|e| e.to_string())
        });
        let us = t.elapsed().as_micros() as u64;
        match res {
            Ok((200, body)) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                let n = body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
                stats.series.store(n as u64, Ordering::Relaxed);
                stats.max_us.fetch_max(us, Ordering::Relaxed);
                stats.window.lock().unwrap().push(us);
            }
            Ok((status, _)) => {
                log(&format!("scrape answered {status}"));
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                log(&format!("scrape failed: {e}"));
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        thread::sleep(every);
    }
}

/// One churn topic with its producer and group.
struct Churn {
    topic: String,
    producer: ProducerHandle,
    group: ConsumerHandle,
}

fn start_churn(kafka: &KafkaCluster, n: u64) -> Result<Churn, String> {
    let topic = format!("soak.churn.{n}");
    kafka.create_topic(&topic, 4, 1, &[]).map_err(|e| e.to_string())?;
    let producer = kafka.producing_loop(&topic, 20).map_err(|e| e.to_string())?;
    let group = kafka
        .consuming_group(
            &format!("soak-churn-{n}"),
            &[topic.as_str()],
            ConsumerOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    Ok(Churn { topic, producer, group })
}

fn end_churn(kafka: &KafkaCluster, c: Churn) -> Result<(), String> {
    let group = c.group.group().to_string();
    c.group.stop();
    c.producer.stop();
    // The coordinator may still hold the departed member for a moment.
    let mut last = String::new();
    for _ in 0..10 {
        match kafka.delete_group(&group) {
            Ok(()) => {
                last.clear();
                break;
            }
            Err(e) => {
                last = e.to_string();
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
    kafka.delete_topic(&c.topic).map_err(|e| e.to_string())?;
    if last.is_empty() {
        Ok(())
    } else {
        Err(format!("deleting group {group}: {last}"))
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn run(a: Args) -> Result<String, String> {
    let kafka = KafkaCluster::start_new(ClusterOptions::with_nodes(1)).map_err(|e| e.to_string())?;
    log(&format!("kafka up at {}", kafka.bootstrap_servers()));
    kafka
        .create_topic("soak.steady", 6, 1, &[])
        .map_err(|e| e.to_string())?;
    let _steady_producer = kafka.producing_loop("soak.steady", 50).map_err(|e| e.to_string())?;
    let _steady_group = kafka
        .consuming_group(
            "soak-steady",
            &["soak.steady"],
            ConsumerOptions::default().with_delay(Duration::from_millis(30)),
        )
        .map_err(|e| e.to_string())?;

    let port = free_port();
    let interval = format!("{}ms", a.interval.as_millis());
    let config = format!(
        "global:\n  interval: {interval}\n  timeout: 4s\nclusters:\n  - name: soak\n    bootstrap_servers: [\"{}\"]\n    topics: {{allow: ['soak\\..*']}}\n    probe:\n      interval: 1s\n      replication_factor: 1\n      min_insync_replicas: 1\n",
        kafka.bootstrap_servers()
    );
    let dir = a.csv.parent().map(PathBuf::from).unwrap_or_default();
    let config_path = std::env::temp_dir().join(format!("kse-soak-{}.yml", std::process::id()));
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log_path = a.log.clone().unwrap_or_else(|| dir.join("soak-exporter.log"));
    let log_file = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut child: Child = Command::new(&a.exporter)
        .arg("--config.file")
        .arg(&config_path)
        .args([
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", a.exporter.display()))?;
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let up = Instant::now();
    while ureq::get(&url).call().is_err() {
        if up.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err("the exporter did not answer within 30s".into());
        }
        thread::sleep(Duration::from_millis(200));
    }
    log(&format!("exporter pid {pid} at {url}"));

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ScrapeStats::default());
    let scraper_thread = {
        let (url, stop, stats, every) = (url.clone(), Arc::clone(&stop), Arc::clone(&stats), a.scrape_every);
        thread::spawn(move || scraper(url, every, stop, stats))
    };

    let mut csv = BufWriter::new(File::create(&a.csv).map_err(|e| format!("{}: {e}", a.csv.display()))?);
    writeln!(
        csv,
        "elapsed_s,rss_kb,rss_anon_kb,rss_file_kb,scrapes_ok,scrapes_failed,scrape_p50_ms,scrape_p99_ms,series,live_topics,topics_created,topics_deleted,churn_errors"
    )
    .map_err(|e| e.to_string())?;

    let start = Instant::now();
    let mut live: std::collections::VecDeque<Churn> = std::collections::VecDeque::new();
    let (mut created, mut deleted, mut churn_errors) = (0u64, 0u64, 0u64);
    let mut next_churn = start;
    let mut next_sample = start;
    let mut exited = None;
    while start.elapsed() < a.duration {
        if let Ok(Some(st)) = child.try_wait() {
            exited = Some(st);
            break;
        }
        let now = Instant::now();
        if now >= next_churn {
            next_churn = now + a.churn_every;
            match start_churn(&kafka, created) {
                Ok(c) => live.push_back(c),
                Err(e) => {
                    churn_errors += 1;
                    log(&format!("churn create: {e}"));
                }
            }
            created += 1;
            while live.len() > a.live {
                let c = live.pop_front().expect("non-empty");
                if let Err(e) = end_churn(&kafka, c) {
                    churn_errors += 1;
                    log(&format!("churn delete: {e}"));
                }
                deleted += 1;
            }
        }
        if Instant::now() >= next_sample {
            next_sample += a.sample_every;
            let mut window = std::mem::take(&mut *stats.window.lock().unwrap());
            window.sort_unstable();
            let rss = status_kb(pid, "VmRSS").unwrap_or(0);
            let anon = status_kb(pid, "RssAnon").unwrap_or(0);
            let file = status_kb(pid, "RssFile").unwrap_or(0);
            writeln!(
                csv,
                "{:.1},{rss},{anon},{file},{},{},{:.2},{:.2},{},{},{created},{deleted},{churn_errors}",
                start.elapsed().as_secs_f64(),
                stats.ok.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
                percentile(&window, 0.5) as f64 / 1000.0,
                percentile(&window, 0.99) as f64 / 1000.0,
                stats.series.load(Ordering::Relaxed),
                live.len(),
            )
            .and_then(|()| csv.flush())
            .map_err(|e| e.to_string())?;
        }
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = scraper_thread.join();
    let exporter_exited = match exited {
        Some(st) => format!("\"{st}\""),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            "null".to_string()
        }
    };
    for c in live.drain(..) {
        let _ = end_churn(&kafka, c);
    }
    let _ = std::fs::remove_file(&config_path);
    Ok(format!(
        "{{\"duration_s\":{:.0},\"scrapes_ok\":{},\"scrapes_failed\":{},\"scrape_max_ms\":{:.2},\"topics_created\":{created},\"topics_deleted\":{deleted},\"churn_errors\":{churn_errors},\"exporter_exited\":{exporter_exited}}}",
        start.elapsed().as_secs_f64(),
        stats.ok.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.max_us.load(Ordering::Relaxed) as f64 / 1000.0,
    ))
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kse-soak: {e}");
            }
            eprint!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kse-soak: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
