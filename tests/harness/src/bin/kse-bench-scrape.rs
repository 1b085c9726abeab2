//! `kse-bench-scrape`: `/metrics` latency under concurrent scrapers, for the benchmark in
//! `bench/`.
//!
//! Each scraper thread keeps one HTTP/1.1 connection open (as Prometheus does per target) and
//! sends GET requests back to back with Prometheus's `Accept` and `Accept-Encoding: gzip`
//! headers, timing each from the first byte sent to the last body byte received. The body is
//! not decompressed or parsed. Stops after `--duration` or `--requests` requests in total,
//! whichever comes first, and prints one JSON object with the latency distribution.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: kse-bench-scrape --url http://HOST:PORT/PATH [--concurrency 10] [--duration 20]
                        [--requests N] [--timeout 60] [--no-gzip] [--text]

  --concurrency N   scrapers (default 10)
  --duration S      stop starting requests after S seconds (default 20)
  --requests N      stop after N requests in total (default unlimited)
  --timeout S       per-request timeout (default 60)
  --no-gzip         do not send Accept-Encoding: gzip
  --text            ask for the Prometheus text format instead of OpenMetrics
";

/// The Accept header Prometheus sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Args {
    host: String,
    port: u16,
    path: String,
    concurrency: usize,
    duration: Duration,
    requests: usize,
    timeout: Duration,
    gzip: bool,
    text: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut a = Args {
        host: String::new(),
        port: 80,
        path: String::new(),
        concurrency: 10,
        duration: Duration::from_secs(20),
        requests: usize::MAX,
        timeout: Duration::from_secs(60),
        gzip: true,
        text: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--concurrency" => a.concurrency = num(value()?)? as usize,
            "--duration" => a.duration = Duration::from_secs_f64(num(value()?)?),
            "--requests" => a.requests = num(value()?)? as usize,
            "--timeout" => a.timeout = Duration::from_secs_f64(num(value()?)?),
            "--no-gzip" => a.gzip = false,
            "--text" => a.text = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority.rsplit_once(':').ok_or("the URL needs a port")?;
    a.host = host.to_string();
    a.port = port.parse().map_err(|e| format!("port: {e}"))?;
    a.path = path.to_string();
    a.concurrency = a.concurrency.max(1);
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kse-bench-scrape: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let issued = AtomicUsize::new(0);
    let latencies: Mutex<Vec<f64>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let bytes = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..args.concurrency {
            s.spawn(|| {
                let mut conn: Option<BufReader<TcpStream>> = None;
                loop {
                    if started.elapsed() >= args.duration || issued.fetch_add(1, Ordering::Relaxed) >= args.requests {
                        break;
                    }
                    let t = Instant::now();
                    match request(&args, &mut conn) {
                        Ok(n) => {
                            latencies
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(t.elapsed().as_secs_f64());
                            bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            conn = None;
                            errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                            thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            });
        }
    });
    let mut l = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
    l.sort_by(f64::total_cmp);
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    let q = |p: f64| -> String {
        if l.is_empty() {
            return "null".into();
        }
        // Nearest rank.
        let rank = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len());
        format!("{:.6}", l[rank - 1])
    };
    let mean = if l.is_empty() {
        "null".to_string()
    } else {
        format!("{:.6}", l.iter().sum::<f64>() / l.len() as f64)
    };
    let first_error = errors.first().map(|e| json_string(e)).unwrap_or_else(|| "null".into());
    println!(
        "{{\"requests\":{},\"errors\":{},\"first_error\":{first_error},\"elapsed_s\":{:.3},\"mean_s\":{mean},\"p50_s\":{},\"p90_s\":{},\"p99_s\":{},\"max_s\":{},\"mean_body_bytes\":{}}}",
        l.len(),
        errors.len(),
        started.elapsed().as_secs_f64(),
        q(0.50),
        q(0.90),
        q(0.99),
        q(1.0),
        if l.is_empty() { 0 } else { bytes.load(Ordering::Relaxed) / l.len() },
    );
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One GET on the kept-alive connection (opened if needed); returns the body size.
fn request(args: &Args, conn: &mut Option<BufReader<TcpStream>>) -> Result<usize, String> {
    if conn.is_none() {
        let addr = (args.host.as_str(), args.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving: {e}"))?
            .next()
            .ok_or("no address")?;
        let stream = TcpStream::connect_timeout(&addr, args.timeout).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(args.timeout)).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        *conn = Some(BufReader::with_capacity(256 * 1024, stream));
    }
    let reader = conn.as_mut().ok_or("no connection")?;
    let accept = if args.text {
        "text/plain;version=0.0.4"
    } else {
        PROMETHEUS_ACCEPT
    };
    let encoding = if args.gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: kse-bench-scrape\r\nAccept: {accept}\r\n{encoding}\r\n",
        args.path, args.host, args.port
    );
    reader
        .get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| format!("status line: {e}"))?;
    let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
    if line.is_empty() {
        return Err("connection closed".into());
    }
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| format!("headers: {e}"))?;
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => length = v.parse().ok(),
            "transfer-encoding" => chunked = v.contains("chunked"),
            "connection" => close = v.contains("close"),
            _ => {}
        }
    }
    let mut sink = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| format!("chunk size: {e}"))?;
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16).map_err(|e| format!("chunk size {size_hex:?}: {e}"))?;
            if size == 0 {
                // Trailers, then the final empty line.
                loop {
                    line.clear();
                    reader.read_line(&mut line).map_err(|e| format!("trailer: {e}"))?;
                    if line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            read_exact_into(reader, size, &mut sink)?;
            total += size;
            line.clear();
            reader.read_line(&mut line).map_err(|e| format!("chunk end: {e}"))?;
        }
    } else if let Some(n) = length {
        read_exact_into(reader, n, &mut sink)?;
        total = n;
    } else {
        // Body until the connection closes.
        loop {
            let n = reader.read(&mut sink).map_err(|e| format!("body: {e}"))?;
            if n == 0 {
                break;
            }
            total += n;
        }
        close = true;
    }
    if close {
        *conn = None;
    }
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
    Ok(total)
}

fn read_exact_into(reader: &mut BufReader<TcpStream>, mut n: usize, sink: &mut [u8]) -> Result<(), String> {
    while n > 0 {
        let want = n.min(sink.len());
        reader.read_exact(&mut sink[..want]).map_err(|e| format!("body: {e}"))?;
        n -= want;
    }
    Ok(())
}
