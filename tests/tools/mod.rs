//! Where the tests find Prometheus, promtool, Alertmanager and amtool.
//!
//! Debian's Prometheus 2.x is the `prometheus` package (`/usr/bin/prometheus`,
//! `/usr/bin/promtool`); Prometheus 3.x and Alertmanager are built by `scripts/setup.sh` into
//! `$KSE_TOOLS_DIR` (default `<repo>/target/tools`, as in `scripts/versions.sh`):
//! `prometheus-3/{prometheus,promtool}` and `alertmanager/{alertmanager,amtool}`.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

/// `$KSE_TOOLS_DIR`, else `<repo>/target/tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("KSE_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools"),
    }
}

/// A tool built into the tools directory; panics with the fix when it is missing.
fn built(rel: &str) -> PathBuf {
    let p = tools_dir().join(rel);
    assert!(
        p.is_file(),
        "{} is missing: run ./scripts/setup.sh (it builds Prometheus 3 and Alertmanager into \
         $KSE_TOOLS_DIR, default target/tools), or point KSE_TOOLS_DIR at a directory that has them",
        p.display()
    );
    p
}

/// Prometheus 3.x.
pub fn prometheus3() -> PathBuf {
    built("prometheus-3/prometheus")
}

/// promtool of Prometheus 3.x.
pub fn promtool3() -> PathBuf {
    built("prometheus-3/promtool")
}

/// Alertmanager (the version pinned in scripts/versions.sh).
pub fn alertmanager() -> PathBuf {
    built("alertmanager/alertmanager")
}

/// amtool of the same Alertmanager.
pub fn amtool() -> PathBuf {
    built("alertmanager/amtool")
}

/// promtool of Debian's Prometheus 2.x, from PATH.
pub fn promtool2() -> PathBuf {
    PathBuf::from("promtool")
}

/// Both promtools the rule pack must satisfy: (name for messages, binary).
pub fn promtools() -> [(&'static str, PathBuf); 2] {
    [("promtool 2.x", promtool2()), ("promtool 3.x", promtool3())]
}
