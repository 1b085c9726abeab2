//! A real Schema Registry for integration tests: Apicurio Registry from Maven Central.
//!
//! `io.apicurio:apicurio-registry-app:<version>:tar.gz:all` is the Quarkus application that
//! Apicurio ships; `java -jar quarkus-run.jar` runs it with in-memory storage (the default).
//! Its Confluent-compatible API is served at `/apis/ccompat/v7`.
//!
//! Version: Apicurio 3.1.7 is not on Maven Central as a `tar.gz:all` artifact (Maven
//! reports "Could not find artifact"), so the newest one that is, 3.3.3, is the default
//! ([`DEFAULT_APICURIO_VERSION`], override with [`APICURIO_VERSION_ENV`]). Apicurio 3.3 is
//! compiled for Java 21 (class file version 65): a JDK 21 or newer is looked up in
//! [`JAVA_ENV`], `$JAVA_HOME` and `/usr/lib/jvm` (where Debian and Temurin install).
//!
//! The download shares the Kafka jar cache ([`crate::cache_dir`]): Maven copies the tarball,
//! `tar` unpacks it into `apicurio-registry-<version>/app`, and a completion marker written
//! last, under a `flock`, publishes it (the same scheme as [`crate::KafkaDist`]; see
//! `scripts/fetch-registry.sh`). The JVM runs under the same orphan-proof supervisor as the
//! brokers: it dies with the test process however that ends.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::dist::{tail_lines, FileLock};
use crate::error::{HarnessError, Result};
use crate::process::{Janitor, NodeProcess};
use crate::{cache_dir, ports, MVN_ENV};

/// The Apicurio Registry version used when none is given.
pub const DEFAULT_APICURIO_VERSION: &str = "3.3.3";

/// Environment variable overriding the Apicurio Registry version.
pub const APICURIO_VERSION_ENV: &str = "REGISTRY_HARNESS_APICURIO_VERSION";

/// Environment variable naming the `java` binary to run the registry with.
pub const JAVA_ENV: &str = "REGISTRY_HARNESS_JAVA";

/// Oldest Java that runs Apicurio Registry 3.3.
pub const MIN_JAVA: u32 = 21;

/// Path of the Confluent-compatible API below the registry's root.
pub const CCOMPAT_PATH: &str = "/apis/ccompat/v7";

const COMPLETE_MARKER: &str = ".complete";

/// A cached, unpacked Apicurio Registry.
#[derive(Debug, Clone)]
pub struct ApicurioDist {
    version: String,
    home: PathBuf,
}

impl ApicurioDist {
    /// Returns the cached registry of `version`, downloading and unpacking it first if needed.
    /// Safe to call concurrently from several threads and processes.
    pub fn ensure(version: &str) -> Result<ApicurioDist> {
        let ok = version.chars().next().is_some_and(|c| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !ok {
            return Err(HarnessError::InvalidArgument(format!(
                "Apicurio version {version:?} is not of the form 3.3.3"
            )));
        }
        let cache = cache_dir();
        let dist = ApicurioDist {
            version: version.to_owned(),
            home: cache.join(format!("apicurio-registry-{version}")),
        };
        if dist.is_complete() {
            return Ok(dist);
        }
        fs::create_dir_all(&cache).map_err(|e| HarnessError::io(format!("creating {}", cache.display()), e))?;
        let _lock = FileLock::exclusive(&cache.join(format!("apicurio-registry-{version}.lock")))?;
        if !dist.is_complete() {
            dist.download()?;
        }
        Ok(dist)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// `quarkus-run.jar`, the application's entry point.
    pub fn runner_jar(&self) -> PathBuf {
        self.home.join("app").join("quarkus-run.jar")
    }

    fn is_complete(&self) -> bool {
        self.home.join(COMPLETE_MARKER).is_file()
    }

    fn download(&self) -> Result<()> {
        if self.home.exists() {
            fs::remove_dir_all(&self.home)
                .map_err(|e| HarnessError::io(format!("removing incomplete {}", self.home.display()), e))?;
        }
        let download = self.home.join("download");
        let app = self.home.join("app");
        fs::create_dir_all(&download).map_err(|e| HarnessError::io(format!("creating {}", download.display()), e))?;
        fs::create_dir_all(&app).map_err(|e| HarnessError::io(format!("creating {}", app.display()), e))?;
        let mvn = std::env::var_os(MVN_ENV).unwrap_or_else(|| "mvn".into());
        let artifact = format!("io.apicurio:apicurio-registry-app:{}:tar.gz:all", self.version);
        let output = Command::new(&mvn)
            .args(["-q", "-B", "-Dstyle.color=never", "dependency:copy"])
            .arg(format!("-Dartifact={artifact}"))
            .arg(format!("-DoutputDirectory={}", download.display()))
            .current_dir(&download)
            .output()
            .map_err(|e| {
                HarnessError::io(
                    format!("running {} (install Maven or set {MVN_ENV})", mvn.to_string_lossy()),
                    e,
                )
            })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(HarnessError::Distribution(format!(
                "mvn dependency:copy of {artifact} failed ({}):\n{}",
                output.status,
                tail_lines(&text, 30)
            )));
        }
        let tarball = download.join(format!("apicurio-registry-app-{}-all.tar.gz", self.version));
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&app)
            .status()
            .map_err(|e| HarnessError::io("running tar", e))?;
        if !status.success() {
            return Err(HarnessError::Distribution(format!(
                "unpacking {} failed ({status})",
                tarball.display()
            )));
        }
        if !self.runner_jar().is_file() {
            return Err(HarnessError::Distribution(format!(
                "{} holds no quarkus-run.jar",
                tarball.display()
            )));
        }
        let _ = fs::remove_dir_all(&download);
        let marker = self.home.join(COMPLETE_MARKER);
        let mut f = File::create(&marker).map_err(|e| HarnessError::io(format!("creating {}", marker.display()), e))?;
        writeln!(f, "{}", self.version).map_err(|e| HarnessError::io(format!("writing {}", marker.display()), e))?;
        Ok(())
    }
}

/// Finds a `java` of at least `min` major version: `$REGISTRY_HARNESS_JAVA`, then
/// `$JAVA_HOME`, then every JDK under `/usr/lib/jvm` (newest first).
pub fn find_java(min: u32) -> Result<PathBuf> {
    if let Some(java) = std::env::var_os(JAVA_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(java));
    }
    let mut homes: Vec<PathBuf> = Vec::new();
    if let Some(h) = std::env::var_os("JAVA_HOME").filter(|v| !v.is_empty()) {
        homes.push(PathBuf::from(h));
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/jvm") {
        let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        found.sort();
        homes.extend(found);
    }
    let mut seen = Vec::new();
    let mut best: Option<(u32, PathBuf)> = None;
    for home in homes {
        let java = home.join("bin").join("java");
        let Some(major) = java_major(&home) else { continue };
        seen.push(format!("{} (Java {major})", home.display()));
        if major >= min && java.is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, java));
        }
    }
    best.map(|(_, j)| j).ok_or_else(|| {
        HarnessError::InvalidArgument(format!(
            "Apicurio Registry needs Java {min} or newer; found {}. Install a JDK {min}+ (e.g. Temurin) or set {JAVA_ENV}",
            if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
        ))
    })
}

/// The major version in a JDK's `release` file (`JAVA_VERSION="25.0.3"`, `"1.8.0_402"`).
fn java_major(home: &Path) -> Option<u32> {
    let text = fs::read_to_string(home.join("release")).ok()?;
    let line = text.lines().find(|l| l.starts_with("JAVA_VERSION="))?;
    parse_java_major(line.trim_start_matches("JAVA_VERSION=").trim_matches('"'))
}

fn parse_java_major(v: &str) -> Option<u32> {
    let mut parts = v.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// How to start the registry beyond the defaults (plain HTTP, no authentication).
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Also serve HTTPS with this certificate chain and private key (PEM files). The plain
    /// HTTP port stays open for the harness's own set-up calls. (Client certificates cannot be
    /// required: Apicurio's build fixes `quarkus.http.ssl.client-auth` to NONE.)
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require HTTP basic authentication on the APIs, for these (user, password) pairs.
    pub users: Vec<(String, String)>,
}

/// A running Apicurio Registry on loopback, killed on drop.
pub struct SchemaRegistry {
    dist: ApicurioDist,
    java: PathBuf,
    options: RegistryOptions,
    port: u16,
    management_port: u16,
    https_port: u16,
    dir: PathBuf,
    log: PathBuf,
    process: Mutex<Option<NodeProcess>>,
    janitor: Option<Janitor>,
    http: ureq::Agent,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("version", &self.dist.version)
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish()
    }
}

impl SchemaRegistry {
    /// Starts the default version (or `$REGISTRY_HARNESS_APICURIO_VERSION`) and waits until its
    /// Confluent-compatible API answers (up to `timeout`).
    pub fn start(timeout: Duration) -> Result<SchemaRegistry> {
        Self::start_with(RegistryOptions::default(), timeout)
    }

    /// [`Self::start`] with TLS and/or basic authentication.
    pub fn start_with(options: RegistryOptions, timeout: Duration) -> Result<SchemaRegistry> {
        let version = std::env::var(APICURIO_VERSION_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_APICURIO_VERSION.to_string());
        let dist = ApicurioDist::ensure(&version)?;
        let java = find_java(MIN_JAVA)?;
        let dir = crate::cluster::create_temp_dir("kafka-harness-registry")?;
        let keep = std::env::var(crate::KEEP_ENV).is_ok_and(|v| v == "1");
        let janitor = if keep { None } else { Some(Janitor::spawn(&dir)?) };
        let p = ports::allocate(3)?;
        let registry = SchemaRegistry {
            log: dir.join("registry.log"),
            dist,
            java,
            options,
            port: p[0],
            management_port: p[1],
            https_port: p[2],
            dir,
            process: Mutex::new(None),
            janitor,
            http: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
        };
        registry.spawn()?;
        registry.wait_ready(timeout)?;
        Ok(registry)
    }

    fn spawn(&self) -> Result<()> {
        let mut args: Vec<String> = vec![
            "-Xms64m".into(),
            "-Xmx512m".into(),
            "-XX:+UseSerialGC".into(),
            "-XX:TieredStopAtLevel=1".into(),
            "-Dquarkus.http.host=127.0.0.1".into(),
            format!("-Dquarkus.http.port={}", self.port),
            "-Dquarkus.management.host=127.0.0.1".into(),
            format!("-Dquarkus.management.port={}", self.management_port),
        ];
        if let Some((cert, key)) = &self.options.tls {
            args.push(format!("-Dquarkus.http.ssl-port={}", self.https_port));
            args.push("-Dquarkus.http.insecure-requests=enabled".into());
            args.push(format!("-Dquarkus.tls.key-store.pem.0.cert={}", cert.display()));
            args.push(format!("-Dquarkus.tls.key-store.pem.0.key={}", key.display()));
        }
        if !self.options.users.is_empty() {
            args.push("-Dquarkus.http.auth.basic=true".into());
            args.push("-Dquarkus.security.users.embedded.enabled=true".into());
            args.push("-Dquarkus.security.users.embedded.plain-text=true".into());
            for (user, password) in &self.options.users {
                args.push(format!("-Dquarkus.security.users.embedded.users.{user}={password}"));
            }
            args.push("-Dquarkus.http.auth.permission.apis.paths=/apis/*".into());
            args.push("-Dquarkus.http.auth.permission.apis.policy=authenticated".into());
        }
        args.push("-jar".into());
        args.push(self.dist.runner_jar().display().to_string());
        let node = NodeProcess::spawn(&self.java, &args, &self.log, &self.dir)?;
        *self.process.lock().unwrap_or_else(|e| e.into_inner()) = Some(node);
        Ok(())
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let probe = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
        loop {
            if self
                .authorize(probe.get(&format!("{}/subjects", self.url())))
                .call()
                .is_ok()
            {
                return Ok(());
            }
            if !self.is_running() {
                return Err(HarnessError::Startup {
                    message: format!("Apicurio Registry {} exited during start-up", self.dist.version),
                    log_path: self.log.display().to_string(),
                    log_tail: crate::cluster::read_tail(&self.log),
                });
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Startup {
                    message: format!("Apicurio Registry did not answer within {timeout:?}"),
                    log_path: self.log.display().to_string(),
                    log_tail: crate::cluster::read_tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The Confluent-compatible API's base URL, e.g. `http://127.0.0.1:20123/apis/ccompat/v7`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{CCOMPAT_PATH}", self.port)
    }

    /// The HTTPS base URL of the Confluent-compatible API, when started with TLS.
    pub fn https_url(&self) -> Option<String> {
        self.options
            .tls
            .as_ref()
            .map(|_| format!("https://127.0.0.1:{}{CCOMPAT_PATH}", self.https_port))
    }

    /// Adds the first configured user's credentials.
    fn authorize(&self, req: ureq::Request) -> ureq::Request {
        match self.options.users.first() {
            Some((user, password)) => req.set(
                "Authorization",
                &format!("Basic {}", BASE64.encode(format!("{user}:{password}"))),
            ),
            None => req,
        }
    }

    /// The registry's version.
    pub fn version(&self) -> &str {
        &self.dist.version
    }

    /// The registry's temporary directory (removed when it stops or this process ends).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The JVM's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|p| p.is_running())
            .map(|p| p.pid() as u32)
    }

    /// The JVM's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn is_running(&self) -> bool {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(NodeProcess::is_running)
    }

    /// SIGKILLs the registry (its in-memory data is gone with it).
    pub fn stop(&self) {
        if let Some(p) = self.process.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.kill();
        }
    }

    /// Starts a fresh registry process with the same options, ports and directory (killing
    /// the running one first, if any) and waits until it answers (up to `timeout`), so that
    /// clients configured with [`Self::url`] see the same registry come back after [`Self::stop`].
    ///
    /// Storage is in memory: the new process starts empty, and the caller registers again
    /// whatever it needs. The ports stay reserved for this registry within the test process,
    /// but another process could bind one while the registry is down; the start-up then
    /// fails with the registry's log tail.
    pub fn restart(&self, timeout: Duration) -> Result<()> {
        self.stop();
        self.spawn()?;
        self.wait_ready(timeout)
    }

    fn send(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.url());
        let req = self.authorize(
            self.http
                .request(method, &url)
                .set("Content-Type", "application/vnd.schemaregistry.v1+json"),
        );
        let resp = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        match resp {
            Ok(r) => {
                let text = r
                    .into_string()
                    .map_err(|e| HarnessError::io(format!("{method} {path}"), e))?;
                serde_json::from_str(&text).map_err(|e| {
                    HarnessError::InvalidArgument(format!("{method} {path}: answer {text:?} is not JSON: {e}"))
                })
            }
            Err(ureq::Error::Status(code, r)) => Err(HarnessError::InvalidArgument(format!(
                "{method} {path}: HTTP {code}: {}",
                r.into_string().unwrap_or_default()
            ))),
            Err(e) => Err(HarnessError::io(
                format!("{method} {path}"),
                std::io::Error::other(e.to_string()),
            )),
        }
    }

    /// Registers a schema under `subject` (a new version if it differs from the latest) and
    /// returns its id. `schema_type` `None` means AVRO.
    pub fn register(&self, subject: &str, schema: &str, schema_type: Option<&str>) -> Result<i64> {
        let mut body = serde_json::json!({ "schema": schema });
        if let Some(t) = schema_type {
            body["schemaType"] = serde_json::Value::String(t.to_string());
        }
        let answer = self.send("POST", &format!("/subjects/{subject}/versions"), Some(body))?;
        answer["id"]
            .as_i64()
            .ok_or_else(|| HarnessError::InvalidArgument(format!("register {subject}: no id in {answer}")))
    }

    /// Soft-deletes a subject (its versions stay readable with `deleted=true`).
    pub fn soft_delete_subject(&self, subject: &str) -> Result<()> {
        self.send("DELETE", &format!("/subjects/{subject}"), None).map(|_| ())
    }

    /// Sets the compatibility level of `subject`, or the global one with `None`.
    pub fn set_compatibility(&self, subject: Option<&str>, level: &str) -> Result<()> {
        let path = match subject {
            Some(s) => format!("/config/{s}"),
            None => "/config".to_string(),
        };
        self.send("PUT", &path, Some(serde_json::json!({ "compatibility": level })))
            .map(|_| ())
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut j) = self.janitor.take() {
            j.finish();
        }
        ports::release(&[self.port, self.management_port, self.https_port]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions() {
        assert_eq!(parse_java_major("25.0.3"), Some(25));
        assert_eq!(parse_java_major("17.0.15"), Some(17));
        assert_eq!(parse_java_major("21"), Some(21));
        assert_eq!(parse_java_major("1.8.0_402"), Some(8));
        assert_eq!(parse_java_major("x"), None);
    }
}
