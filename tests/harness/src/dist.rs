//! Assembling a runnable Kafka classpath from Maven Central.
//!
//! The Apache release tarballs are not reachable from every build machine,
//! but Maven Central is, and the `kafka_2.13` artifact plus its runtime
//! dependencies is everything `kafka.Kafka` and `kafka.tools.StorageTool`
//! need. Maven resolves and copies those jars once per version into a cache
//! directory shared by all test binaries of the workspace (and by
//! `scripts/fetch-kafka.sh`, which uses the same pom, layout, lock file and
//! completion marker so CI can prefetch).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{HarnessError, Result};

/// The Kafka version used when none is given: the newest release verified
/// with this harness. Equal to `KAFKA_VERSION` in `scripts/versions.sh`,
/// which set-up prefetches (a unit test below checks it).
pub const DEFAULT_KAFKA_VERSION: &str = "4.4.0";

/// Environment variable overriding the jar cache directory.
pub const CACHE_ENV: &str = "KAFKA_HARNESS_CACHE";

/// Environment variable overriding the Maven executable.
pub const MVN_ENV: &str = "KAFKA_HARNESS_MVN";

/// The dependency manifest, embedded so the harness works no matter where
/// the test binary runs from; `scripts/fetch-kafka.sh` reads the same file.
const POM: &str = include_str!("../kafka/pom.xml");

/// Name of the file whose presence means a version's `lib/` is complete.
/// Written last, under the lock, so a crashed download is never mistaken
/// for a finished one.
const COMPLETE_MARKER: &str = ".complete";

/// A locally cached Kafka distribution (a directory of jars).
#[derive(Debug, Clone)]
pub struct KafkaDist {
    version: String,
    home: PathBuf,
}

impl KafkaDist {
    /// Returns the cached distribution for `version`, downloading it with
    /// Maven first if needed.
    ///
    /// Safe to call concurrently from several threads and processes: the
    /// download runs under an exclusive `flock` on `<cache>/kafka-<v>.lock`
    /// and is published by a completion marker.
    pub fn ensure(version: &str) -> Result<KafkaDist> {
        validate_version(version)?;
        let cache = cache_dir();
        let home = cache.join(format!("kafka-{version}"));
        let dist = KafkaDist {
            version: version.to_owned(),
            home,
        };
        if dist.is_complete() {
            return Ok(dist);
        }

        fs::create_dir_all(&cache).map_err(|e| HarnessError::io(format!("creating {}", cache.display()), e))?;
        let lock_path = cache.join(format!("kafka-{version}.lock"));
        let _lock = FileLock::exclusive(&lock_path)?;
        // Another process may have finished the download while we waited.
        if dist.is_complete() {
            return Ok(dist);
        }
        dist.download()?;
        Ok(dist)
    }

    /// The Kafka version of this distribution.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The directory holding every jar of the distribution.
    pub fn lib_dir(&self) -> PathBuf {
        self.home.join("lib")
    }

    /// A JVM `-cp` value covering all jars (the JVM expands the wildcard).
    pub fn classpath(&self) -> String {
        format!("{}/*", self.lib_dir().display())
    }

    /// The major version number, used to apply version-specific settings.
    pub fn major_version(&self) -> u32 {
        major_version(&self.version)
    }

    fn is_complete(&self) -> bool {
        self.home.join(COMPLETE_MARKER).is_file()
    }

    fn download(&self) -> Result<()> {
        let lib = self.lib_dir();
        if lib.exists() {
            fs::remove_dir_all(&lib)
                .map_err(|e| HarnessError::io(format!("removing incomplete {}", lib.display()), e))?;
        }
        fs::create_dir_all(&self.home).map_err(|e| HarnessError::io(format!("creating {}", self.home.display()), e))?;
        let pom = self.home.join("pom.xml");
        fs::write(&pom, POM).map_err(|e| HarnessError::io(format!("writing {}", pom.display()), e))?;

        let mvn = std::env::var_os(MVN_ENV).unwrap_or_else(|| "mvn".into());
        let output = Command::new(&mvn)
            .arg("-q")
            .arg("-B")
            .arg("-Dstyle.color=never")
            .arg("-f")
            .arg(&pom)
            .arg("dependency:copy-dependencies")
            .arg(format!("-Dkafka.version={}", self.version))
            .arg(format!("-DoutputDirectory={}", lib.display()))
            .arg("-DincludeScope=runtime")
            .current_dir(&self.home)
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
                "mvn dependency:copy-dependencies for Kafka {} failed ({}):\n{}",
                self.version,
                output.status,
                tail_lines(&text, 40)
            )));
        }

        let main_jar = lib.join(format!("kafka_2.13-{}.jar", self.version));
        if !main_jar.is_file() {
            return Err(HarnessError::Distribution(format!(
                "Maven finished but {} is missing",
                main_jar.display()
            )));
        }

        let marker = self.home.join(COMPLETE_MARKER);
        let mut f = File::create(&marker).map_err(|e| HarnessError::io(format!("creating {}", marker.display()), e))?;
        writeln!(f, "{}", self.version).map_err(|e| HarnessError::io(format!("writing {}", marker.display()), e))?;
        Ok(())
    }
}

/// The jar cache directory: `$KAFKA_HARNESS_CACHE`, or `target/kafka-dist`
/// under the workspace root so `cargo clean` also removes it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    workspace_root().join("target").join("kafka-dist")
}

/// The workspace root, two levels above this crate's manifest.
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// Parses the leading number of a version string such as `4.1.1` or `3.9.1`.
pub(crate) fn major_version(version: &str) -> u32 {
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Rejects versions that would escape the cache directory or confuse Maven.
fn validate_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.chars().next().is_some_and(|c| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(HarnessError::InvalidArgument(format!(
            "Kafka version {version:?} is not of the form 4.1.1"
        )))
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An exclusive advisory lock held for the lifetime of the value.
///
/// `flock` locks are released by the kernel when the descriptor closes, so
/// a process that dies mid-download cannot leave the cache locked.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| HarnessError::io(format!("opening lock {}", path.display()), e))?;
        loop {
            // SAFETY: the descriptor is valid for the lifetime of `file`.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(HarnessError::io(format!("locking {}", path.display()), err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(major_version("4.1.1"), 4);
        assert_eq!(major_version("3.9.1"), 3);
        assert!(validate_version("4.1.1").is_ok());
        assert!(validate_version("4.2.0-rc1").is_ok());
        assert!(validate_version("../x").is_err());
        assert!(validate_version("").is_err());
        assert!(validate_version("4.1/1").is_err());
    }

    /// Set-up prefetches `KAFKA_VERSION` of `scripts/versions.sh`; the tests must run that one.
    #[test]
    fn default_version_is_the_one_setup_fetches() {
        let path = workspace_root().join("scripts/versions.sh");
        let text = fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("KAFKA_VERSION="))
            .unwrap_or_else(|| panic!("no KAFKA_VERSION= line in {}", path.display()));
        assert_eq!(
            line,
            format!("KAFKA_VERSION=\"${{KAFKA_VERSION:-{DEFAULT_KAFKA_VERSION}}}\"")
        );
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
