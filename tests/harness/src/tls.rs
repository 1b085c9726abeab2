//! Throw-away certificate authorities for tests, made with the `openssl` command-line tool:
//! a CA, a server certificate for 127.0.0.1/localhost and client certificates, all PEM, the
//! format both librdkafka and Kafka 4.x (`ssl.keystore.type=PEM`) read.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{HarnessError, Result};

/// A certificate with its private key (unencrypted PKCS#8), as PEM files.
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA with one server and one client certificate under `dir`.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub dir: PathBuf,
    /// The CA certificate (trust anchor for both sides).
    pub ca: CertKey,
    /// Server certificate for `127.0.0.1` and `localhost`, usable as client certificate too.
    pub server: CertKey,
    /// Client certificate (CN `client`).
    pub client: CertKey,
}

impl TestPki {
    /// Creates `dir` and a new CA named `name` with a server and a client certificate.
    pub fn generate(dir: &Path, name: &str) -> Result<TestPki> {
        fs::create_dir_all(dir).map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        let ca = CertKey {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        };
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "7",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                path(&ca.key)?,
                "-out",
                path(&ca.cert)?,
            ],
        )?;
        let pki = TestPki {
            dir: dir.to_path_buf(),
            server: CertKey {
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
            },
            client: CertKey {
                cert: dir.join("client.pem"),
                key: dir.join("client.key"),
            },
            ca,
        };
        pki.issue("server", "localhost", &pki.server)?;
        pki.issue("client", "client", &pki.client)?;
        Ok(pki)
    }

    /// Issues a certificate for `cn` (with SANs 127.0.0.1 and localhost, server and client
    /// usage) signed by the CA, written to `out`.
    pub fn issue(&self, stem: &str, cn: &str, out: &CertKey) -> Result<()> {
        self.issue_with_sans(stem, cn, "IP:127.0.0.1,DNS:localhost", out)
    }

    /// Like [`TestPki::issue`], with the subject alternative names `sans` in openssl's notation
    /// (`DNS:a.example,email:a@example.com,URI:spiffe://example/a,IP:10.0.0.1`).
    pub fn issue_with_sans(&self, stem: &str, cn: &str, sans: &str, out: &CertKey) -> Result<()> {
        let csr = self.dir.join(format!("{stem}.csr"));
        let ext = self.dir.join(format!("{stem}.ext"));
        fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n"
            ),
        )
        .map_err(|e| HarnessError::io(format!("writing {}", ext.display()), e))?;
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                path(&out.key)?,
                "-out",
                path(&csr)?,
            ],
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                path(&csr)?,
                "-CA",
                path(&self.ca.cert)?,
                "-CAkey",
                path(&self.ca.key)?,
                "-CAcreateserial",
                "-days",
                "7",
                "-extfile",
                path(&ext)?,
                "-out",
                path(&out.cert)?,
            ],
        )
    }

    /// Writes `cert_key`'s key encrypted with `password` (PKCS#8) to `out` and returns it.
    pub fn encrypted_key(&self, cert_key: &CertKey, password: &str, out: &Path) -> Result<PathBuf> {
        openssl(
            &self.dir,
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                path(&cert_key.key)?,
                "-passout",
                &format!("pass:{password}"),
                "-out",
                path(out)?,
            ],
        )?;
        Ok(out.to_path_buf())
    }

    /// A PEM file with `cert_key`'s private key followed by its certificate, the layout of a
    /// Kafka PEM keystore.
    pub fn keystore(&self, cert_key: &CertKey, out: &Path) -> Result<PathBuf> {
        let read =
            |p: &Path| fs::read_to_string(p).map_err(|e| HarnessError::io(format!("reading {}", p.display()), e));
        let text = format!("{}{}", read(&cert_key.key)?, read(&cert_key.cert)?);
        fs::write(out, text).map_err(|e| HarnessError::io(format!("writing {}", out.display()), e))?;
        Ok(out.to_path_buf())
    }
}

fn path(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| HarnessError::InvalidArgument(format!("{} is not a UTF-8 path", p.display())))
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io("running openssl (is it installed?)".to_string(), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::InvalidArgument(format!(
            "openssl {} failed ({}): {}",
            args.first().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
