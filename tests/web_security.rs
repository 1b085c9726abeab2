//! The HTTP endpoint's protection with real clients: TLS and client certificates from
//! `--web.config.file` (exporter-toolkit format), basic auth, and the request limits, the
//! latter probed with raw TCP connections.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{https_get as get, tls_agent, write_file, Exporter, Metrics, EXPORTER};
use kafka_harness::{CertKey, TestPki};

/// A cluster nobody listens on: collection fails, the endpoint serves all the same.
const CONFIG: &str = "clusters:\n  - name: nowhere\n    bootstrap_servers: ['127.0.0.1:1']\n";

fn pki(dir: &Path) -> TestPki {
    TestPki::generate(&dir.join("pki"), "kse-web-test-ca").expect("generate certificates")
}

/// The start of a web config serving TLS with `server`'s certificate and key; settings of
/// `tls_server_config` may follow (indented by two), then other sections.
fn tls_server(server: &CertKey) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        server.cert.display(),
        server.key.display()
    )
}

/// Sends raw bytes and reads until the server closes or `wait` passes.
fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn tls_with_basic_auth_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let hash = bcrypt::hash("s3cret-web-pw", 10).unwrap();
    let web = write_file(
        dir.path(),
        "web.yml",
        &format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: '{hash}'\n",
            tls_server(&pki.server)
        ),
    );
    let exporter = Exporter::start(CONFIG, &["--web.config.file", web.to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{}/metrics", exporter.addr.port());
    let agent = tls_agent(Some(&pki.ca.cert), None);

    let (status, r) = get(&agent, &url, None).unwrap();
    assert_eq!(status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic"));
    assert_eq!(
        r.header("x-frame-options"),
        Some("deny"),
        "configured headers on every response"
    );
    let (status, _) = get(&agent, &url, Some(("alice", "wrong"))).unwrap();
    assert_eq!(status, 401);
    let (status, _) = get(&agent, &url, Some(("mallory", "s3cret-web-pw"))).unwrap();
    assert_eq!(status, 401, "unknown user");

    let t0 = Instant::now();
    let (status, r) = get(&agent, &url, Some(("alice", "s3cret-web-pw"))).unwrap();
    let first = t0.elapsed();
    assert_eq!(status, 200);
    assert!(r.into_string().unwrap().contains("kafka_slo_exporter_cluster_up"));
    // Verified passwords are remembered: later requests skip bcrypt.
    let t1 = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(&agent, &url, Some(("alice", "s3cret-web-pw"))).unwrap().0, 200);
    }
    let cached = t1.elapsed() / 5;
    eprintln!("basic auth: first request {first:?}, cached {cached:?} per request");
    // Basic auth covers every path, as in exporter-toolkit.
    let healthy = format!("https://127.0.0.1:{}/-/healthy", exporter.addr.port());
    assert_eq!(get(&agent, &healthy, None).unwrap().0, 401);

    // A client that does not trust the CA gets no connection.
    let untrusting = tls_agent(None, None);
    let e = get(&untrusting, &url, Some(("alice", "s3cret-web-pw"))).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // Plain HTTP on the TLS port is answered with a 400 and nothing else.
    let answer = raw(
        exporter.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request"), "{answer}");
    assert!(answer.contains("HTTPS server"), "{answer}");
    assert!(!answer.contains("kafka_"), "{answer}");
    let (_, r) = get(&agent, &url, Some(("alice", "s3cret-web-pw"))).unwrap();
    let m = Metrics::parse(&r.into_string().unwrap());
    let rejected = |reason: &str| m.value("kafka_slo_exporter_http_rejections_total", &[("reason", reason)]);
    assert_eq!(rejected("unauthorized"), Some(4.0), "three bad requests and /-/healthy");
    assert_eq!(rejected("plain_http"), Some(1.0));
    assert_eq!(rejected("tls_handshake"), Some(1.0), "the untrusting client");
    assert_eq!(rejected("body"), Some(0.0));
    let logs = exporter.logs();
    assert!(
        !logs.contains("s3cret-web-pw") && !logs.contains(&hash),
        "a secret reached the log"
    );
}

#[test]
fn client_certificates_are_required_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let other = TestPki::generate(&dir.path().join("other"), "kse-other-ca").unwrap();
    let web = write_file(
        dir.path(),
        "web.yml",
        &format!(
            "{}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  min_version: TLS13\n",
            tls_server(&pki.server),
            pki.ca.cert.display()
        ),
    );
    let exporter = Exporter::start(
        CONFIG,
        &[
            "--web.config.file",
            web.to_str().unwrap(),
            "--web.read-header-timeout",
            "1s",
        ],
    );
    let url = format!("https://127.0.0.1:{}/-/healthy", exporter.addr.port());

    // A client that never starts its handshake is cut off after the read-header timeout.
    let mut idle = TcpStream::connect(exporter.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    assert_eq!(idle.read(&mut [0u8; 16]).unwrap(), 0);
    let cut = t0.elapsed();
    assert!(
        cut >= Duration::from_millis(800) && cut < Duration::from_secs(4),
        "{cut:?}"
    );

    let e = get(&tls_agent(Some(&pki.ca.cert), None), &url, None).unwrap_err();
    assert!(!e.is_empty());
    let e = get(&tls_agent(Some(&pki.ca.cert), Some(&other.client)), &url, None).unwrap_err();
    assert!(!e.is_empty(), "a certificate from another CA is refused");
    let (status, r) = get(&tls_agent(Some(&pki.ca.cert), Some(&pki.client)), &url, None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(r.into_string().unwrap(), "Healthy\n");
    let metrics = format!("https://127.0.0.1:{}/metrics", exporter.addr.port());
    let (_, r) = get(&tls_agent(Some(&pki.ca.cert), Some(&pki.client)), &metrics, None).unwrap();
    let m = Metrics::parse(&r.into_string().unwrap());
    assert_eq!(
        m.value(
            "kafka_slo_exporter_http_rejections_total",
            &[("reason", "tls_handshake")]
        ),
        Some(3.0),
        "no handshake, no certificate and a foreign one"
    );
}

#[test]
fn invalid_web_configs_exit_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let config = write_file(dir.path(), "c.yml", CONFIG);
    let cert = pki.server.cert.display().to_string();
    let key = pki.server.key.display().to_string();
    let ca_key = pki.ca.key.display().to_string();
    let cases = [
        (format!("tls_server_config: {{cert_file: {cert}}}"), "tls_server_config.key_file", "required"),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {ca_key}}}"),
            "tls_server_config.key_file",
            "does not match",
        ),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {key}, client_auth_type: RequireAndVerifyClientCert}}"),
            "tls_server_config.client_ca_file",
            "needs client_ca_file",
        ),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {key}, min_version: TLS10}}"),
            "tls_server_config.min_version",
            "not supported",
        ),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {key}, cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}}"),
            "tls_server_config.cipher_suites[0]",
            "unsupported cipher suite",
        ),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {key}, client_auth_type: RequireAnyClientCert, client_allowed_sans: [a]}}"),
            "tls_server_config.client_allowed_sans",
            "prove nothing",
        ),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {key}, client_allowed_sans: [a]}}"),
            "tls_server_config.client_allowed_sans",
            "NoClientCert",
        ),
        (
            format!("tls_server_config: {{cert_file: {cert}, key_file: {key}, client_auth_type: RequireAndVerifyClientCert, client_ca_file: {cert}, client_allowed_sans: ['']}}"),
            "tls_server_config.client_allowed_sans[0]",
            "empty",
        ),
        ("basic_auth_users: {alice: hunter2}".to_string(), "basic_auth_users.alice", "not a bcrypt hash"),
        ("tls_server_config: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}".to_string(), "tls_server_config.cert_file", "/nonexistent.pem"),
    ];
    for (text, field, reason) in cases {
        let web = write_file(dir.path(), "web.yml", &text);
        for check in [true, false] {
            let mut cmd = std::process::Command::new(EXPORTER);
            cmd.arg("--config.file").arg(&config).arg("--web.config.file").arg(&web);
            cmd.args(["--web.listen-address", "127.0.0.1:0"]);
            if check {
                cmd.arg("--config.check");
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
            assert!(stderr.contains(&web.display().to_string()), "{text}: {stderr}");
            assert!(stderr.contains(&format!("field `{field}`")), "{text}: {stderr}");
            assert!(stderr.contains(reason), "{text}: {stderr}");
            assert!(!stderr.contains("hunter2"), "{stderr}");
        }
    }
}

#[test]
fn request_limits_hold_against_raw_clients() {
    let exporter = Exporter::start(
        CONFIG,
        &["--web.max-connections", "2", "--web.read-header-timeout", "1s"],
    );
    let addr = exporter.addr;
    let wait = Duration::from_secs(5);

    let big = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let answer = raw(addr, big.as_bytes(), wait);
    assert!(answer.starts_with("HTTP/1.1 431"), "oversized head: {answer}");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(
        addr,
        format!("GET /-/healthy HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        wait,
    );
    assert!(answer.starts_with("HTTP/1.1 431"), "too many header fields: {answer}");
    let answer = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
        wait,
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "body: {answer}");
    let answer = raw(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab",
        wait,
    );
    assert!(answer.starts_with("HTTP/1.1 405"), "POST: {answer}");
    let answer = raw(addr, b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n", wait);
    assert!(answer.starts_with("HTTP/1.1 405"), "unknown method: {answer}");
    for malformed in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n",
    ] {
        let answer = raw(addr, malformed, wait);
        assert!(answer.starts_with("HTTP/1.1 400"), "malformed head: {answer}");
    }

    // Slowloris: a head that never ends is cut off after the header read timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t0 = Instant::now();
    let mut sink = Vec::new();
    let _ = slow.read_to_end(&mut sink);
    let cut = t0.elapsed();
    eprintln!("slow head closed after {cut:?}");
    assert!(
        cut >= Duration::from_millis(800) && cut < Duration::from_secs(4),
        "closed after {cut:?}"
    );
    assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));

    // Connection limit: two connections past their first request hold both slots; a third
    // request takes over the one idle longest instead of waiting for a slot.
    let mut buf = [0u8; 256];
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    for s in [&mut a, &mut b] {
        s.set_read_timeout(Some(wait)).unwrap();
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(s.read(&mut buf).unwrap() > 0, "served");
    }
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    b.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(b.read(&mut buf).is_err(), "the newer idle connection stays open");
    assert_eq!(a.read(&mut buf).unwrap_or(0), 0, "the older idle connection gave way");
    drop((a, b, c));

    // Idle connections, before the first request and between requests, are closed after the
    // same timeout, so they cannot hold the slots.
    for request in [&b""[..], b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        if !request.is_empty() {
            assert!(s.read(&mut buf).unwrap() > 0);
        }
        let t0 = Instant::now();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "closed by the server");
        let idle = t0.elapsed();
        assert!(idle < Duration::from_secs(4), "idle connection closed after {idle:?}");
        eprintln!(
            "idle connection (request sent: {}) closed after {idle:?}",
            !request.is_empty()
        );
    }
    assert_eq!(exporter.get("/-/healthy", None).0, 200, "still serving");
    let m = exporter.scrape();
    let rejected = |reason: &str| m.value("kafka_slo_exporter_http_rejections_total", &[("reason", reason)]);
    assert_eq!(rejected("header_too_large"), Some(2.0));
    assert_eq!(rejected("body"), Some(1.0));
    assert_eq!(rejected("method"), Some(2.0));
    assert_eq!(rejected("malformed"), Some(2.0));
    assert_eq!(
        rejected("header_timeout"),
        Some(2.0),
        "the slow head and the silent connection"
    );
    assert_eq!(rejected("evicted"), Some(1.0));
    assert_eq!(rejected("unauthorized"), Some(0.0));
}

#[test]
fn certificates_and_users_reload_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki(dir.path());
    let second = TestPki::generate(&dir.path().join("second"), "kse-second-ca").unwrap();
    let web_text = |p: &TestPki, hash: &str| format!("{}basic_auth_users:\n  alice: '{hash}'\n", tls_server(&p.server));
    let web = write_file(
        dir.path(),
        "web.yml",
        &web_text(&first, &bcrypt::hash("pw-one", 4).unwrap()),
    );
    let exporter = Exporter::start(CONFIG, &["--web.config.file", web.to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{}/-/healthy", exporter.addr.port());
    let old_client = tls_agent(Some(&first.ca.cert), None);
    let new_client = tls_agent(Some(&second.ca.cert), None);
    assert_eq!(get(&old_client, &url, Some(("alice", "pw-one"))).unwrap().0, 200);

    std::fs::write(&web, web_text(&second, &bcrypt::hash("pw-two", 4).unwrap())).unwrap();
    let t0 = Instant::now();
    while get(&new_client, &url, Some(("alice", "pw-two"))).map(|r| r.0) != Ok(200) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "new certificate and user not in force"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("web config change in force after {:?}", t0.elapsed());
    // A fresh agent: the old one may still hold a connection made before the change.
    let old_ca_only = tls_agent(Some(&first.ca.cert), None);
    assert!(
        get(&old_ca_only, &url, None).is_err(),
        "old certificate no longer served"
    );
    assert_eq!(get(&new_client, &url, Some(("alice", "pw-one"))).unwrap().0, 401);

    // A broken change is reported and ignored.
    std::fs::write(&web, "basic_auth_users: {alice: not-a-hash}\n").unwrap();
    let t0 = Instant::now();
    while !exporter.logs().contains("web config changed but does not load") {
        assert!(t0.elapsed() < Duration::from_secs(10), "broken web config not reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&new_client, &url, Some(("alice", "pw-two"))).unwrap().0, 200);
    assert!(exporter
        .logs()
        .lines()
        .any(|l| l.contains("web config changed but does not load") && l.contains("basic_auth_users.alice")));
}

#[test]
fn shipped_web_config_example_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let web = format!("{root}/examples/web-config.yml");
    let out = std::process::Command::new(EXPORTER)
        .args(["--config.file", &format!("{root}/examples/kafka-slo-exporter.yml")])
        .args(["--web.config.file", &web, "--config.check"])
        .envs(common::EXAMPLE_SECRETS)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("TLS off, 1 basic auth user(s), 2 extra header(s)"),
        "{stdout}"
    );
    // The comment's claim about the example hash holds.
    let text = std::fs::read_to_string(&web).unwrap();
    let hash = text.lines().find_map(|l| l.strip_prefix("  prometheus: ")).unwrap();
    assert!(bcrypt::verify("example-password", hash).unwrap());
}

/// `--healthcheck` with the exporter's web config: exit status and what it printed.
fn healthcheck(addr: SocketAddr, web: Option<&Path>) -> (bool, String) {
    let mut cmd = std::process::Command::new(EXPORTER);
    cmd.arg("--healthcheck").arg(format!("--web.listen-address={addr}"));
    if let Some(web) = web {
        cmd.arg(format!("--web.config.file={}", web.display()));
    }
    let out = cmd.output().expect("run --healthcheck");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The container health check reaches an endpoint protected by its web config: over TLS,
/// trusting exactly the configured certificate, and taking the refusal the config prescribes
/// (401 for basic auth, the handshake for a required client certificate) as alive.
#[test]
fn healthcheck_follows_the_web_config() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let other = TestPki::generate(&dir.path().join("other"), "kse-other-ca").unwrap();
    let server_tls = tls_server(&pki.server);
    let hash = bcrypt::hash("hc-pw", 4).unwrap();
    let client_ca = format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.ca.cert.display()
    );
    let cases: Vec<(&str, String)> = vec![
        ("TLS", server_tls.clone()),
        (
            "TLS and basic auth",
            format!("{server_tls}basic_auth_users:\n  alice: '{hash}'\n"),
        ),
        (
            "TLS 1.3 client certificates",
            format!("{server_tls}{client_ca}  min_version: TLS13\n"),
        ),
        (
            "TLS 1.2 client certificates",
            format!("{server_tls}{client_ca}  max_version: TLS12\n"),
        ),
        (
            "plain HTTP with basic auth",
            format!("basic_auth_users:\n  alice: '{hash}'\n"),
        ),
    ];
    for (what, text) in cases {
        let web = write_file(dir.path(), "web.yml", &text);
        let exporter = Exporter::start(CONFIG, &["--web.config.file", web.to_str().unwrap()]);
        let (ok, err) = healthcheck(exporter.addr, Some(&web));
        assert!(ok, "{what}: {err}");
        if text.contains("tls_server_config") {
            // Without the web config the check speaks plain HTTP to a TLS port.
            let (ok, err) = healthcheck(exporter.addr, None);
            assert!(!ok && err.contains("400"), "{what}: {err}");
            // A web config naming another certificate: not this endpoint.
            let wrong = write_file(
                dir.path(),
                "wrong.yml",
                &text.replace(&server_tls, &tls_server(&other.server)),
            );
            let (ok, err) = healthcheck(exporter.addr, Some(&wrong));
            assert!(!ok && err.contains("not the one in the web config"), "{what}: {err}");
        }
        let addr = exporter.addr;
        drop(exporter);
        let (ok, err) = healthcheck(addr, Some(&web));
        assert!(!ok && err.contains("cannot connect"), "{what}: {err}");
    }
    // A web config the exporter itself would refuse makes the check fail with its reason.
    let broken = write_file(
        dir.path(),
        "broken.yml",
        "tls_server_config: {cert_file: /nonexistent}\n",
    );
    let (ok, err) = healthcheck("127.0.0.1:1".parse().unwrap(), Some(&broken));
    assert!(!ok && err.contains("web config") && err.contains("key_file"), "{err}");
}

/// `client_allowed_sans`: a verified client certificate must also carry one of the names, DNS
/// name, e-mail address, IP address or URI compared as text (as in exporter-toolkit), and with
/// the list set a certificate is required even under `VerifyClientCertIfGiven`.
#[test]
fn client_allowed_sans_admit_only_the_named_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let cert = |stem: &str, sans: &str| {
        let ck = CertKey {
            cert: pki.dir.join(format!("{stem}.pem")),
            key: pki.dir.join(format!("{stem}.key")),
        };
        pki.issue_with_sans(stem, stem, sans, &ck).unwrap();
        ck
    };
    let alice = cert("alice", "DNS:alice.example,email:alice@example.com");
    let bob = cert("bob", "URI:spiffe://example.org/ns/apps/sa/bob");
    let carol = cert("carol", "IP:10.1.2.3,IP:fd00::7");
    let clients = [
        ("alice", &alice),
        ("bob", &bob),
        ("carol", &carol),
        ("client", &pki.client),
    ];
    let cases: &[(&str, &str, &[&str])] = &[
        ("RequireAndVerifyClientCert", "[alice.example]", &["alice"]),
        (
            "RequireAndVerifyClientCert",
            "['alice@example.com', 'spiffe://example.org/ns/apps/sa/bob']",
            &["alice", "bob"],
        ),
        (
            "RequireAndVerifyClientCert",
            "['fd00::7', '127.0.0.1']",
            &["carol", "client"],
        ),
        ("VerifyClientCertIfGiven", "[localhost]", &["client"]),
    ];
    for (auth, sans, admitted) in cases {
        let web = write_file(
            dir.path(),
            "web.yml",
            &format!(
                "{}  client_auth_type: {auth}\n  client_ca_file: {}\n  client_allowed_sans: {sans}\n",
                tls_server(&pki.server),
                pki.ca.cert.display()
            ),
        );
        let exporter = Exporter::start(CONFIG, &["--web.config.file", web.to_str().unwrap()]);
        let url = format!("https://127.0.0.1:{}/-/healthy", exporter.addr.port());
        for (name, ck) in clients {
            let answer = get(&tls_agent(Some(&pki.ca.cert), Some(ck)), &url, None);
            if admitted.contains(&name) {
                assert_eq!(answer.map(|a| a.0), Ok(200), "{auth} {sans}: {name}");
            } else {
                assert!(answer.is_err(), "{auth} {sans}: {name} must be refused");
            }
        }
        let no_cert = get(&tls_agent(Some(&pki.ca.cert), None), &url, None);
        assert!(
            no_cert.is_err(),
            "{auth} {sans}: a client without certificate is refused"
        );
        // The container health check takes the refused handshake as alive.
        let (ok, err) = healthcheck(exporter.addr, Some(&web));
        assert!(ok, "{auth} {sans}: {err}");
    }
}
