//! A real MIT Kerberos KDC for tests of SASL GSSAPI: Debian's `krb5-kdc` and
//! `krb5-admin-server` programs (`krb5kdc`, `kdb5_util`, `kadmin.local`), with a fresh realm in
//! a temporary directory and a KDC on a free port of 127.0.0.1.
//!
//! The KDC listens on TCP only and the generated `krb5.conf` makes every client (MIT's
//! library, `kinit`, Java) use TCP (`udp_preference_limit = 1`); host names are not
//! canonicalised through DNS, so a service principal `kafka/localhost` is what a client
//! connecting to `localhost` asks for. The KDC runs under the same orphan-proof supervisor as
//! the brokers and its directory is removed when the test process ends.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::ports;
use crate::process::{Janitor, NodeProcess};

/// The realm every harness KDC serves.
pub const REALM: &str = "KSE.TEST";

/// The service principal (without realm) brokers with a [`KerberosListener`] authenticate as;
/// clients ask for it with `sasl.kerberos.service.name` `kafka`.
pub const BROKER_SERVICE_PRINCIPAL: &str = "kafka/localhost";

/// A `SASL_PLAINTEXT` listener named `KERBEROS` on every broker, with GSSAPI as its only
/// mechanism, advertised as `localhost:port`; inter-broker and controller traffic stays
/// PLAINTEXT. Built by [`crate::ClusterOptions::kerberos_listener`].
#[derive(Debug, Clone)]
pub struct KerberosListener {
    /// The realm's `krb5.conf`, given to the broker JVMs as `java.security.krb5.conf`.
    pub krb5_conf: PathBuf,
    /// Keytab holding the brokers' service key.
    pub keytab: PathBuf,
    /// The brokers' service principal, `kafka/localhost@REALM`.
    pub principal: String,
}

impl KerberosListener {
    /// Adds the listener on `port` and its SASL settings to a broker's properties.
    pub(crate) fn add_to(&self, port: u16, props: &mut Vec<(String, String)>) {
        for (k, v) in props.iter_mut() {
            match k.as_str() {
                "listeners" => v.push_str(&format!(",KERBEROS://127.0.0.1:{port}")),
                "advertised.listeners" => v.push_str(&format!(",KERBEROS://localhost:{port}")),
                "listener.security.protocol.map" => v.push_str(",KERBEROS:SASL_PLAINTEXT"),
                _ => {}
            }
        }
        let jaas = format!(
            "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true storeKey=true \
             keyTab=\"{}\" principal=\"{}\";",
            self.keytab.display(),
            self.principal
        );
        props.extend([
            (
                "listener.name.kerberos.sasl.enabled.mechanisms".to_owned(),
                "GSSAPI".to_owned(),
            ),
            ("listener.name.kerberos.gssapi.sasl.jaas.config".to_owned(), jaas),
            ("sasl.kerberos.service.name".to_owned(), "kafka".to_owned()),
        ]);
    }
}

/// A running KDC with its realm database.
pub struct Kdc {
    dir: PathBuf,
    port: u16,
    process: Option<NodeProcess>,
    _janitor: Option<Janitor>,
}

impl std::fmt::Debug for Kdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kdc")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish()
    }
}

impl Kdc {
    /// Creates the realm database and starts the KDC; returns once it accepts connections.
    pub fn start() -> Result<Kdc> {
        let dir = crate::cluster::create_temp_dir("kafka-harness-kdc")?;
        let keep = std::env::var(crate::KEEP_ENV).is_ok_and(|v| v == "1");
        let janitor = if keep { None } else { Some(Janitor::spawn(&dir)?) };
        let port = ports::allocate(1)?[0];
        let mut kdc = Kdc {
            dir,
            port,
            process: None,
            _janitor: janitor,
        };
        kdc.write_configs()?;
        kdc.run(
            "kdb5_util",
            &["create", "-s", "-r", REALM, "-P", "harness-master-password"],
        )?;
        let log = kdc.dir.join("krb5kdc.out");
        let args: Vec<String> = kdc
            .env()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", v.display()))
            .chain(["krb5kdc".into(), "-n".into(), "-r".into(), REALM.into()])
            .collect();
        kdc.process = Some(NodeProcess::spawn(Path::new("env"), &args, &log, &kdc.dir)?);
        kdc.wait_ready(Duration::from_secs(20))?;
        Ok(kdc)
    }

    /// The `krb5.conf` clients of this realm use (`KRB5_CONFIG`, `-Djava.security.krb5.conf`).
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.join("krb5.conf")
    }

    /// The directory of the realm's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name@REALM`.
    pub fn principal(name: &str) -> String {
        format!("{name}@{REALM}")
    }

    /// Adds principal `name` (for example `kafka/localhost` or `exporter`) with a random key
    /// and writes its keys to a new keytab, whose path is returned.
    pub fn add_principal(&self, name: &str) -> Result<PathBuf> {
        self.kadmin(&format!("addprinc -randkey {}", Kdc::principal(name)))?;
        self.export_keytab(name)
    }

    /// Gives `name` new random keys and writes them to a new keytab, whose path is returned:
    /// keytabs written before hold keys the KDC no longer accepts.
    pub fn rotate_keys(&self, name: &str) -> Result<PathBuf> {
        self.kadmin(&format!("cpw -randkey {}", Kdc::principal(name)))?;
        self.export_keytab(name)
    }

    fn export_keytab(&self, name: &str) -> Result<PathBuf> {
        let file = name.replace(['/', '@'], "_");
        let mut path = self.dir.join(format!("{file}.keytab"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = self.dir.join(format!("{file}-{n}.keytab"));
        }
        // -norandkey keeps the current keys (the default, -randkey on export, would change them).
        self.kadmin(&format!(
            "ktadd -norandkey -k {} {}",
            path.display(),
            Kdc::principal(name)
        ))?;
        Ok(path)
    }

    fn kadmin(&self, query: &str) -> Result<()> {
        self.run("kadmin.local", &["-r", REALM, "-q", query])
    }

    /// Runs a Kerberos administration program against this realm's files.
    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let out = Command::new(program)
            .args(args)
            .envs(self.env())
            .current_dir(&self.dir)
            .output()
            .map_err(|e| {
                HarnessError::io(
                    format!("running {program} (Debian packages krb5-kdc and krb5-admin-server; scripts/setup.sh installs them)"),
                    e,
                )
            })?;
        // kadmin.local reports a failed query on stderr but exits 0.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed = stderr
            .lines()
            .any(|l| l.contains("while ") || l.starts_with("kadmin.local:") && !l.contains("No policy"));
        if !out.status.success() || failed {
            return Err(HarnessError::Startup {
                message: format!("{program} {} failed: {}", args.join(" "), stderr.trim()),
                log_path: self.dir.join("kdc.log").display().to_string(),
                log_tail: crate::cluster::read_tail(&self.dir.join("kdc.log")),
            });
        }
        Ok(())
    }

    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("KRB5_CONFIG", self.krb5_conf()),
            ("KRB5_KDC_PROFILE", self.dir.join("kdc.conf")),
        ]
    }

    fn write_configs(&self) -> Result<()> {
        let (d, p) = (self.dir.display(), self.port);
        let krb5 = format!(
            "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_kdc = false\n  dns_lookup_realm = false\n  \
             dns_canonicalize_hostname = false\n  rdns = false\n  udp_preference_limit = 1\n  \
             ticket_lifetime = 1h\n  forwardable = false\n\
             [realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{p}\n  }}\n\
             [domain_realm]\n  localhost = {REALM}\n  127.0.0.1 = {REALM}\n"
        );
        let kdc = format!(
            "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{p}\n  kdc_tcp_listen = 127.0.0.1:{p}\n\
             [realms]\n  {REALM} = {{\n    database_name = {d}/principal\n    key_stash_file = {d}/stash\n    \
             acl_file = {d}/kadm5.acl\n    kdc_listen = 127.0.0.1:{p}\n    kdc_tcp_listen = 127.0.0.1:{p}\n  }}\n\
             [logging]\n  kdc = FILE:{d}/kdc.log\n  default = FILE:{d}/kdc.log\n"
        );
        for (name, text) in [("krb5.conf", krb5), ("kdc.conf", kdc), ("kadm5.acl", String::new())] {
            let path = self.dir.join(name);
            fs::write(&path, text).map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let running = self.process.as_ref().is_some_and(NodeProcess::is_running);
            if !running || Instant::now() >= deadline {
                let log = self.dir.join("krb5kdc.out");
                return Err(HarnessError::Startup {
                    message: format!(
                        "the KDC {} on 127.0.0.1:{}",
                        if running {
                            "did not listen"
                        } else {
                            "exited before listening"
                        },
                        self.port
                    ),
                    log_path: log.display().to_string(),
                    log_tail: crate::cluster::read_tail(&log),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        drop(self.process.take());
        ports::release(&[self.port]);
    }
}
