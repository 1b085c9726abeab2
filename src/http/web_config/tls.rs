//! The TLS side of the web config: the server configuration from `tls_server_config` (the
//! endpoint's certificate, protocol versions, cipher suites, curves) and the client
//! certificate verifiers for exporter-toolkit's `client_auth_type` values.

use super::*;

/// A rejected setting: the field below `tls_server_config` and the reason.
pub(super) type FieldError = (String, String);

/// Resolves a configured path against the config file's directory and records the file's
/// stamp, so that a change to it triggers a reload.
struct Files<'a> {
    base_dir: &'a Path,
    stamps: &'a mut Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl Files<'_> {
    fn resolve(&mut self, p: &Path) -> PathBuf {
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        };
        self.stamps.push((full.clone(), file_stamp(&full)));
        full
    }
}

fn rej(f: &str, r: String) -> FieldError {
    (f.to_string(), r)
}

/// The server configuration, the endpoint's certificate and whether a client certificate is
/// required.
pub(super) fn tls_config(
    base_dir: &Path,
    t: RawTlsServer,
    stamps: &mut Vec<(PathBuf, Option<(SystemTime, u64)>)>,
) -> Result<(ServerConfig, CertificateDer<'static>, bool), FieldError> {
    let mut files = Files { base_dir, stamps };
    let (certs, key) = identity(&mut files, &t)?;
    let versions = protocol_versions(&t)?;
    let provider = Arc::new(crypto_provider(&t)?);
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verifier = client_verifier(&mut files, &t, auth_type, &provider)?;
    let required = verifier.as_ref().is_some_and(|v| v.client_auth_mandatory());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| rej("min_version", e.to_string()))?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let leaf = certs[0].clone();
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| rej("key_file", format!("does not match cert_file: {e}")))?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, leaf, required))
}

/// The endpoint's certificate chain (at least one certificate) and private key.
fn identity(
    files: &mut Files<'_>,
    t: &RawTlsServer,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FieldError> {
    let cert_file = t
        .cert_file
        .as_deref()
        .ok_or_else(|| rej("cert_file", "required for TLS".into()))?;
    let cert_file = files.resolve(cert_file);
    let key_file = t
        .key_file
        .as_deref()
        .ok_or_else(|| rej("key_file", "required for TLS".into()))?;
    let key_file = files.resolve(key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| rej("cert_file", format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(rej(
            "cert_file",
            format!("{} holds no certificate", cert_file.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|e| {
        rej(
            "key_file",
            format!("{}: no usable private key: {e}", key_file.display()),
        )
    })?;
    Ok((certs, key))
}

/// The protocol versions from `min_version` and `max_version` (TLS 1.2 and 1.3 by default).
fn protocol_versions(t: &RawTlsServer) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, FieldError> {
    let version = |f: &str, v: &Option<String>, default: &'static rustls::SupportedProtocolVersion| match v.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(&rustls::version::TLS12),
        Some("TLS13") => Ok(&rustls::version::TLS13),
        Some(other @ ("TLS10" | "TLS11")) => Err(rej(f, format!("{other} is not supported; use TLS12 or TLS13"))),
        Some(other) => Err(rej(f, format!("unknown version {other:?}; expected TLS12 or TLS13"))),
    };
    let min = version("min_version", &t.min_version, &rustls::version::TLS12)?;
    let max = version("max_version", &t.max_version, &rustls::version::TLS13)?;
    match (min.version, max.version) {
        (rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2) => {
            Err(rej("min_version", "is above max_version".into()))
        }
        (a, b) if a == b => Ok(vec![min]),
        _ => Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]),
    }
}

/// The crypto provider with the configured TLS 1.2 cipher suites and curves.
fn crypto_provider(t: &RawTlsServer) -> Result<rustls::crypto::CryptoProvider, FieldError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        let known: Vec<String> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        let mut chosen = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let wanted = match name.as_str() {
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                    format!("{name}_SHA256")
                }
                _ => name.clone(),
            };
            let Some(suite) = provider
                .cipher_suites
                .iter()
                .find(|s| s.version() == &rustls::version::TLS12 && format!("{:?}", s.suite()) == wanted)
            else {
                return Err(rej(
                    &format!("cipher_suites[{i}]"),
                    format!("unsupported cipher suite {name:?}; supported: {}", known.join(", ")),
                ));
            };
            chosen.push(*suite);
        }
        // The list applies to TLS 1.2; TLS 1.3 suites are not configurable (as in Go).
        let tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied();
        provider.cipher_suites = tls13.chain(chosen).collect();
    }
    if let Some(curves) = &t.curve_preferences {
        use rustls::crypto::ring::kx_group;
        let mut groups = Vec::new();
        for (i, c) in curves.iter().enumerate() {
            groups.push(match c.as_str() {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                other => {
                    return Err(rej(
                        &format!("curve_preferences[{i}]"),
                        format!("unsupported curve {other:?}; supported: X25519, CurveP256, CurveP384"),
                    ))
                }
            });
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

/// The client CA store from `client_ca_file`, if set.
fn client_roots(files: &mut Files<'_>, t: &RawTlsServer) -> Result<Option<Arc<RootCertStore>>, FieldError> {
    let Some(ca) = &t.client_ca_file else {
        return Ok(None);
    };
    let ca = files.resolve(ca);
    let mut store = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| rej("client_ca_file", format!("{}: {e}", ca.display())))?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(rej(
            "client_ca_file",
            format!("{} holds no usable CA certificate", ca.display()),
        ));
    }
    Ok(Some(Arc::new(store)))
}

/// The client certificate verifier for `auth_type` (exporter-toolkit's values), checked
/// against the CA file and the allowed SANs; `None` when no client certificate is asked for.
fn client_verifier(
    files: &mut Files<'_>,
    t: &RawTlsServer,
    auth_type: &str,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, FieldError> {
    let roots = client_roots(files, t)?;
    let verifying = matches!(auth_type, "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert");
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match (auth_type, roots) {
        ("NoClientCert" | "RequestClientCert" | "RequireAnyClientCert", Some(_)) => {
            return Err(rej(
                "client_ca_file",
                format!("set, but client_auth_type {auth_type} does not verify client certificates; use RequireAndVerifyClientCert"),
            ))
        }
        (_, None) if verifying => {
            return Err(rej(
                "client_ca_file",
                format!("client_auth_type {auth_type} needs client_ca_file"),
            ))
        }
        ("NoClientCert", None) => None,
        ("RequestClientCert" | "RequireAnyClientCert", None) => Some(Arc::new(UnverifiedClientCert {
            mandatory: auth_type == "RequireAnyClientCert",
            algorithms: provider.signature_verification_algorithms,
        })),
        ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert", Some(roots)) => {
            let b = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider));
            let b = if auth_type == "VerifyClientCertIfGiven" {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(b.build().map_err(|e| rej("client_ca_file", e.to_string()))?)
        }
        (other, _) => {
            return Err(rej(
                "client_auth_type",
                format!("unknown value {other:?}; expected NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    let allowed_sans = t.client_allowed_sans.clone().unwrap_or_default();
    if let Some(i) = allowed_sans.iter().position(|s| s.trim().is_empty()) {
        return Err(rej(&format!("client_allowed_sans[{i}]"), "empty name".into()));
    }
    match verifier {
        Some(inner) if !allowed_sans.is_empty() && verifying => Ok(Some(Arc::new(AllowedSans {
            inner,
            allowed: allowed_sans,
            algorithms: provider.signature_verification_algorithms,
        }))),
        _ if !allowed_sans.is_empty() => Err(rej(
            "client_allowed_sans",
            format!("client_auth_type {auth_type} does not verify client certificates, so their names prove nothing; use RequireAndVerifyClientCert"),
        )),
        v => Ok(v),
    }
}

/// The handshake-signature methods of a rustls certificate verifier, the same in the client-
/// and the server-side traits: signatures are checked with the provider's algorithms in
/// `self.algorithms`. Used by every verifier here and by the health check's.
macro_rules! signatures_checked_with_algorithms {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}
pub(crate) use signatures_checked_with_algorithms;

/// `RequestClientCert` / `RequireAnyClientCert`: a client certificate is asked for (and for
/// the latter required), its handshake signature checked, but its issuer is not; such
/// certificates identify nobody, as exporter-toolkit warns.
#[derive(Debug)]
struct UnverifiedClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for UnverifiedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    signatures_checked_with_algorithms!();
}

/// `client_allowed_sans`: after the configured verification, the client certificate must carry
/// one of these subject alternative names. DNS names, e-mail addresses, IP addresses and URIs are
/// compared as text, as exporter-toolkit compares them; a certificate is then required even with
/// `VerifyClientCertIfGiven`, as there.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(verified)
        } else {
            tracing::debug!(names = ?names, "client certificate carries none of client_allowed_sans");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    signatures_checked_with_algorithms!();
}

/// The subject alternative names of a certificate as text: DNS names, e-mail addresses, IP
/// addresses (in their usual notation) and URIs.
fn subject_alt_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => names.push(s.to_string()),
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    names.push(std::net::Ipv4Addr::from(v4).to_string());
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    names.push(std::net::Ipv6Addr::from(v6).to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}
