//! Slow clients against the real exporter, with raw sockets. Hundreds of connections that never
//! finish their request head or TLS handshake must not delay a scrape, whose new connection
//! takes the place of the one waiting longest; the header timeout is set far beyond the time
//! bounds, so a scrape admitted only when a slow client times out fails. A client that stops
//! reading its responses is disconnected after the write timeout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{https_get, tls_agent, write_file, Exporter, Metrics};
use kafka_harness::TestPki;

/// A cluster nobody listens on: collection fails, the endpoint serves all the same.
const CONFIG: &str = "clusters:\n  - name: nowhere\n    bootstrap_servers: ['127.0.0.1:1']\n";
/// Slow clients opened before the scrapes.
const SLOW: usize = 300;
/// `--web.max-pending-connections` of these tests.
const MAX_PENDING: usize = 100;
/// Scrapes, each on a new connection, made while the slow clients hold their sockets.
const SCRAPES: usize = 20;
/// Far below the 60 s header timeout, far above a scrape on an idle loopback.
const SCRAPE_BOUND: Duration = Duration::from_secs(5);

fn args() -> Vec<&'static str> {
    vec![
        "--web.max-connections",
        "4",
        "--web.max-pending-connections",
        "100",
        "--web.read-header-timeout",
        "60s",
    ]
}

/// Opens `n` connections that each send `first` and then nothing.
fn stalled(addr: SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            if !first.is_empty() {
                s.write_all(first).unwrap();
            }
            s
        })
        .collect()
}

/// True when the exporter closed `s` within `wait`; false when it is still open then.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or an alert would be data; the eviction sends none, but tolerate it.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

/// Slow clients closed: those beyond the pending cap, and the one the first scrape's connection
/// displaced (it left the pending ones when its head was complete, so the next scrape found
/// room).
const EVICTED: usize = SLOW - MAX_PENDING + 1;

/// Checks which slow clients were closed: the oldest ones; the newest ones are still open.
fn assert_oldest_evicted(slow: &mut [TcpStream]) {
    let evicted = EVICTED;
    for (i, s) in slow.iter_mut().enumerate().take(evicted) {
        assert!(
            closed_by_server(s, Duration::from_secs(10)),
            "slow client {i} still open"
        );
    }
    for (i, s) in slow.iter_mut().enumerate().skip(evicted + 5) {
        assert!(
            !closed_by_server(s, Duration::from_millis(50)),
            "slow client {i} closed"
        );
    }
}

#[test]
fn slow_request_heads_do_not_delay_scrapes() {
    let exporter = Exporter::start(CONFIG, &args());
    let addr = exporter.addr;
    let mut slow = stalled(addr, SLOW, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    let mut slowest = Duration::ZERO;
    for _ in 0..SCRAPES {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let took = t0.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("kafka_slo_exporter_cluster_up"));
        assert!(took < SCRAPE_BOUND, "scrape took {took:?} behind {SLOW} slow clients");
        slowest = slowest.max(took);
    }
    eprintln!("{SCRAPES} scrapes behind {SLOW} slow request heads: slowest {slowest:?}");
    assert_oldest_evicted(&mut slow);
    let m = exporter.scrape();
    let rejected = |reason: &str| m.value("kafka_slo_exporter_http_rejections_total", &[("reason", reason)]);
    assert_eq!(rejected("evicted"), Some(EVICTED as f64));
    assert_eq!(rejected("header_timeout"), Some(0.0), "nobody reached the timeout");
}

#[test]
fn unfinished_tls_handshakes_do_not_delay_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&dir.path().join("pki"), "kse-admission-ca").unwrap();
    let web = write_file(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.server.cert.display(),
            pki.server.key.display()
        ),
    );
    let mut a = args();
    a.extend(["--web.config.file", web.to_str().unwrap()]);
    let exporter = Exporter::start(CONFIG, &a);
    let addr = exporter.addr;
    // Half send nothing, half the start of a TLS record (a ClientHello that never completes).
    let mut slow = stalled(addr, SLOW / 2, b"");
    slow.extend(stalled(addr, SLOW - SLOW / 2, b"\x16\x03\x01\x02\x00\x01"));
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());
    let mut slowest = Duration::ZERO;
    for _ in 0..SCRAPES {
        // A new agent, so a new connection and handshake for each scrape.
        let agent = tls_agent(Some(&pki.ca.cert), None);
        let t0 = Instant::now();
        let (status, r) = https_get(&agent, &url, None).unwrap();
        let body = r.into_string().unwrap();
        let took = t0.elapsed();
        assert_eq!(status, 200);
        assert!(body.contains("kafka_slo_exporter_cluster_up"));
        assert!(
            took < SCRAPE_BOUND,
            "scrape took {took:?} behind {SLOW} slow handshakes"
        );
        slowest = slowest.max(took);
    }
    eprintln!("{SCRAPES} scrapes behind {SLOW} unfinished TLS handshakes: slowest {slowest:?}");
    assert_oldest_evicted(&mut slow);
    let agent = tls_agent(Some(&pki.ca.cert), None);
    let (_, r) = https_get(&agent, &url, None).unwrap();
    let m = Metrics::parse(&r.into_string().unwrap());
    let rejected = |reason: &str| m.value("kafka_slo_exporter_http_rejections_total", &[("reason", reason)]);
    assert_eq!(rejected("evicted"), Some(EVICTED as f64));
    assert_eq!(
        rejected("tls_handshake"),
        Some(0.0),
        "an eviction is not a failed handshake"
    );
}

#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let exporter = Exporter::start(CONFIG, &["--web.write-timeout", "1s"]);
    let addr = exporter.addr;
    // A small receive buffer, so that unread responses soon fill what the kernels hold.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    let mut writer = stream.try_clone().unwrap();
    // Pipelined scrapes whose responses are never read, from a thread: once the exporter stops
    // reading, this write blocks until the connection is closed.
    let sender = std::thread::spawn(move || {
        let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
        let _ = writer.write_all(requests.as_bytes());
    });
    let t0 = Instant::now();
    let m = exporter.wait_for(Duration::from_secs(30), "write_timeout counted", |m| {
        m.value(
            "kafka_slo_exporter_http_rejections_total",
            &[("reason", "write_timeout")],
        ) == Some(1.0)
    });
    eprintln!("non-reading client disconnected after {:?}", t0.elapsed());
    assert!(m
        .value("kafka_slo_exporter_cluster_up", &[("cluster", "nowhere")])
        .is_some());
    sender.join().unwrap();
    drop(stream);
}

#[test]
fn clients_that_never_finish_a_request_do_not_hold_up_shutdown() {
    let mut exporter = Exporter::start(
        CONFIG,
        &["--web.read-header-timeout", "60s", "--shutdown.timeout", "10s"],
    );
    let mut slow = stalled(exporter.addr, 3, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    slow.extend(stalled(exporter.addr, 3, b""));
    assert_eq!(exporter.get("/-/healthy", None).0, 200, "all accepted by now");
    let t0 = Instant::now();
    let status = exporter
        .terminate(Duration::from_secs(20))
        .expect("exporter exits after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with stalled clients open"
    );
    for s in &mut slow {
        assert!(closed_by_server(s, Duration::from_secs(1)));
    }
}
