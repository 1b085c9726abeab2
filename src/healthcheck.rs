//! `--healthcheck`: asks a running exporter's `/-/healthy` and turns the answer into an exit
//! code, so that a container image needs no HTTP client of its own for its `HEALTHCHECK`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Where to reach an exporter listening on `listen`: a wildcard address is reached on the
/// loopback address of its family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GET `/-/healthy` over plain HTTP/1.0; `Ok` when the exporter answers 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    // One write: a request in pieces is needlessly many segments.
    let request = format!("GET /-/healthy HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = Vec::new();
    stream
        .take(1024)
        .read_to_end(&mut head)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let status_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{addr} answered {status_line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn wildcard_addresses_are_reached_on_loopback() {
        assert_eq!(
            target("0.0.0.0:10077".parse().unwrap()),
            "127.0.0.1:10077".parse().unwrap()
        );
        assert_eq!(target("[::]:9".parse().unwrap()), "[::1]:9".parse().unwrap());
        assert_eq!(target("10.1.2.3:9".parse().unwrap()), "10.1.2.3:9".parse().unwrap());
    }

    fn serve_once(answer: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request, so that closing the socket after the answer resets nothing.
            let mut request = Vec::new();
            let mut buf = [0u8; 256];
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            let answer = if request.starts_with(b"GET /-/healthy HTTP/1.0\r\n") {
                answer
            } else {
                "HTTP/1.1 400 Bad Request\r\n\r\n"
            };
            s.write_all(answer.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn only_200_is_healthy() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(check(ok, Duration::from_secs(5)).is_ok());
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let e = check(bad, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("503"), "{e}");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(check(addr, Duration::from_secs(1))
            .unwrap_err()
            .contains("cannot connect"));
    }
}
