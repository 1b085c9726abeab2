//! `--healthcheck`: asks a running exporter's `/-/healthy` and turns the answer into an exit
//! code, so that a container image needs no HTTP client of its own for its `HEALTHCHECK`. Given
//! the exporter's `--web.config.file`, it speaks TLS to an endpoint that serves TLS, trusting
//! exactly the certificate that file names.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, ClientConfig, ClientConnection, StreamOwned};

use crate::http::web_config::signatures_checked_with_algorithms;
pub use crate::http::web_config::SelfCheck;

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

/// GET `/-/healthy` over HTTP/1.0, over TLS when the web config serves TLS; `Ok` when the
/// exporter answers 200, or refuses the way its web config prescribes for a client without
/// credentials (401 with basic auth, the handshake with a required client certificate): an
/// endpoint that enforces its configuration is alive.
pub fn check(addr: SocketAddr, timeout: Duration, web: &SelfCheck) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    let head = match &web.certificate {
        None => exchange(stream, addr),
        Some(certificate) => {
            let config = pinned_client(certificate.clone());
            let name = ServerName::IpAddress(addr.ip().into());
            let conn = ClientConnection::new(config, name).map_err(|e| format!("cannot start TLS to {addr}: {e}"))?;
            match exchange(StreamOwned::new(conn, stream), addr) {
                Err(e) if web.client_cert_required && refuses_missing_client_cert(&e) => {
                    return Ok(());
                }
                other => other,
            }
        }
    }
    .map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some("401") if web.basic_auth => Ok(()),
        _ => Err(format!("{addr} answered {status_line:?}")),
    }
}

/// Why an exchange failed: the I/O error (which carries a TLS error when there is one).
#[derive(Debug)]
struct ExchangeError {
    what: String,
    source: std::io::Error,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

/// Sends the request in one write and reads the head of the answer.
fn exchange(mut stream: impl Read + Write, addr: SocketAddr) -> Result<Vec<u8>, ExchangeError> {
    let request = format!("GET /-/healthy HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|source| ExchangeError {
        what: format!("cannot send to {addr}"),
        source,
    })?;
    let mut head = Vec::new();
    match stream.take(1024).read_to_end(&mut head) {
        Ok(_) => Ok(head),
        // The server closed without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !head.is_empty() => Ok(head),
        Err(source) => Err(ExchangeError {
            what: format!("no answer from {addr}"),
            source,
        }),
    }
}

/// The alerts a TLS server sends a client that shows no certificate where one is required.
fn refuses_missing_client_cert(e: &ExchangeError) -> bool {
    let tls = e
        .source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        tls,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::BadCertificate
        ))
    )
}

/// A TLS client that trusts exactly `certificate`: the health check asks its own process,
/// whose certificate it read from the same web config, whatever CA signed it and whatever
/// names it carries.
fn pinned_client(certificate: CertificateDer<'static>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertificate {
        certificate,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct PinnedCertificate {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the endpoint's certificate is not the one in the web config's cert_file".into(),
            ))
        }
    }

    signatures_checked_with_algorithms!();
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
        assert!(check(ok, Duration::from_secs(5), &SelfCheck::default()).is_ok());
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let e = check(bad, Duration::from_secs(5), &SelfCheck::default()).unwrap_err();
        assert!(e.contains("503"), "{e}");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(check(addr, Duration::from_secs(1), &SelfCheck::default())
            .unwrap_err()
            .contains("cannot connect"));
    }
}
