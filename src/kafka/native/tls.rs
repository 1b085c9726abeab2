//! TLS towards the brokers for the native reader, with rustls: the cluster's CA bundle (or the
//! system's), an optional client certificate with its key (plain or encrypted PKCS#8), and the
//! two relaxations the `tls` block allows: no hostname check (`verify_hostname: false`, the
//! chain is still verified) and no verification at all (`insecure_skip_verify`, tests only).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::settings::TlsFiles;
use crate::config::SYSTEM_CA_BUNDLES;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for `s`; errors name the file and the reason.
pub(crate) fn client_config(s: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if s.verify_certificates {
        let roots = Arc::new(roots(s.ca_file.as_deref())?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
        if s.verify_hostname {
            webpki
        } else {
            Arc::new(AnyName(webpki))
        }
    } else {
        Arc::new(AcceptAny(provider))
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match (&s.cert_file, &s.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = private_key(key, s.key_password.as_deref())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// TLS for an `https` token endpoint (OAUTHBEARER with OIDC): the system CA bundle, as
/// librdkafka's token fetch uses, plus the cluster's `ca_file` when there is one, so an
/// endpoint signed by a private CA is trusted the same way by both readers.
pub(crate) fn https_client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = RootCertStore::empty();
    for path in SYSTEM_CA_BUNDLES.iter().map(Path::new).filter(|p| p.exists()).take(1) {
        store.add_parsable_certificates(certificates(path)?);
    }
    if let Some(ca) = ca_file {
        store.add_parsable_certificates(certificates(ca)?);
    }
    if store.is_empty() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the broker's certificate must carry: a DNS name or an IP address.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let path = match ca_file {
        Some(p) => p.to_path_buf(),
        None => SYSTEM_CA_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or("no ca_file given and no system CA bundle found")?
            .to_path_buf(),
    };
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates(&path)?);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", path.display()));
    }
    Ok(store)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key of `path`: PKCS#8, PKCS#1 or SEC1 PEM, or encrypted PKCS#8 with `password`.
fn private_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let password =
            password.ok_or_else(|| format!("{}: the key is encrypted and no password is given", path.display()))?;
        let (_, doc) = pkcs8::der::Document::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let encrypted =
            pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        let plain = encrypted
            .decrypt(password)
            .map_err(|_| format!("{}: cannot decrypt the key (wrong key password?)", path.display()))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| format!("{}: no private key in it ({e})", path.display()))
}

/// Verifies the chain like [`WebPkiServerVerifier`] but accepts any name in it.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`insecure_skip_verify`), still checking that the handshake is
/// signed by the key of the certificate presented.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA, a server certificate for `localhost` and a client key, plain and encrypted.
    fn pki(dir: &Path) {
        let run = |args: &str| openssl(dir, &args.split_whitespace().collect::<Vec<_>>());
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("client.cnf", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
        write(
            "server.cnf",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:broker.example\n",
        );
        run("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca");
        for (name, cn) in [("client", "client"), ("server", "broker.example")] {
            run(&format!(
                "req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={cn}"
            ));
            run(&format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.cnf"
            ));
        }
        run("pkcs8 -topk8 -v2 aes-256-cbc -in client.key -passout pass:k3y -out client.enc.key");
    }

    fn files(dir: &Path, key: &str, password: Option<&str>) -> TlsFiles {
        TlsFiles {
            ca_file: Some(dir.join("ca.pem")),
            cert_file: Some(dir.join("client.pem")),
            key_file: Some(dir.join(key)),
            key_password: password.map(String::from),
            verify_certificates: true,
            verify_hostname: true,
        }
    }

    #[test]
    fn certificates_and_keys_load_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pki(d);
        client_config(&files(d, "client.key", None)).unwrap();
        client_config(&files(d, "client.enc.key", Some("k3y"))).unwrap();
        let wrong = client_config(&files(d, "client.enc.key", Some("nope"))).unwrap_err();
        assert!(
            wrong.contains("wrong key password") && !wrong.contains("nope"),
            "{wrong}"
        );
        let none = client_config(&files(d, "client.enc.key", None)).unwrap_err();
        assert!(none.contains("no password"), "{none}");
        let mut missing = files(d, "client.key", None);
        missing.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        assert!(client_config(&missing).unwrap_err().contains("/nonexistent/ca.pem"));
        let mut not_a_cert = files(d, "client.key", None);
        not_a_cert.ca_file = Some(d.join("client.key"));
        assert!(client_config(&not_a_cert).unwrap_err().contains("no certificate"));
        let mut insecure = files(d, "client.key", None);
        insecure.verify_certificates = false;
        insecure.ca_file = None;
        client_config(&insecure).unwrap();
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        assert!(server_name("broker-1.kafka.svc").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("bad name").is_err());
    }

    /// One handshake with a broker stand-in (certificate for `broker.example`, client
    /// certificates required) reached as `localhost`, reading two bytes it sends.
    async fn handshake(dir: &Path, client: &TlsFiles) -> Result<(), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let roots = Arc::new(roots(Some(&dir.join("ca.pem"))).unwrap());
        let client_auth = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(client_auth)
            .with_single_cert(
                certificates(&dir.join("server.pem")).unwrap(),
                private_key(&dir.join("server.key"), None).unwrap(),
            )
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"ok").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(client_config(client)?);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let result = async {
            let mut tls = connector
                .connect(server_name("localhost")?, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        accept.abort();
        result
    }

    #[tokio::test]
    async fn the_hostname_is_verified_unless_turned_off_and_the_chain_always() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        pki(d);
        let mtls = files(d, "client.enc.key", Some("k3y"));
        let e = handshake(d, &mtls).await.unwrap_err();
        assert!(e.contains("NotValidForName") || e.contains("not valid for name"), "{e}");
        let no_hostname = TlsFiles {
            verify_hostname: false,
            ..mtls.clone()
        };
        handshake(d, &no_hostname).await.unwrap();
        // Roots of another issuer: the chain fails even without the hostname check.
        let other_roots = TlsFiles {
            ca_file: Some(d.join("client.pem")),
            ..no_hostname
        };
        let e = handshake(d, &other_roots).await.unwrap_err();
        assert!(e.contains("UnknownIssuer") || e.contains("unknown issuer"), "{e}");
        let insecure = TlsFiles {
            verify_certificates: false,
            ..mtls
        };
        handshake(d, &insecure).await.unwrap();
    }
}
