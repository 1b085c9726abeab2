//! The Dockerfile's invariants (stages, non-root, shared libraries, the locked workspace as
//! build context) and the built-in health check.
//!
//! No image is built here: that needs a container engine and a registry for the base images,
//! neither of which the test machines have (deploy/README.md).

mod common;
mod deploy_support;

use std::process::Command;
use std::time::Duration;

use kafka_slo_exporter::app::DEFAULT_PORT;

use common::{Exporter, EXPORTER};
use deploy_support::*;

#[test]
fn dockerfile_builds_in_stages_and_runs_as_non_root() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 3, "ARGs, a build stage and a runtime stage: {stages:?}");
    let (build, runtime) = (&stages[1], stages.last().unwrap());
    assert!(build[0].ends_with(" AS build"), "{}", build[0]);

    // Reproducible: Cargo.lock is used as is.
    let runs = instruction(build, "RUN").join("\n");
    assert!(runs.contains("cargo build --release --locked"), "{runs}");
    // The librdkafka build needs what scripts/setup.sh installs for it.
    let setup = read("scripts/setup.sh");
    let needed = setup
        .lines()
        .find(|l| l.contains("bundled librdkafka build"))
        .expect("setup.sh names the librdkafka build packages");
    for pkg in needed.split('#').next().unwrap().split_whitespace() {
        assert!(runs.contains(pkg), "build stage lacks {pkg}");
    }

    // Runtime: only the binary and the default policy, a numeric non-root user, the port,
    // and a health check the image can run without an HTTP client.
    let from_build = instruction(runtime, "COPY");
    let binary = "/usr/local/bin/kafka-slo-exporter";
    assert!(
        from_build.contains(&format!("--from=build /out/kafka-slo-exporter {binary}").as_str()),
        "{from_build:?}"
    );
    assert_eq!(context_copies(runtime), vec![POLICY.to_string()]);
    let user = instruction(runtime, "USER");
    assert_eq!(user.len(), 1);
    let uid: u32 = user[0].split(':').next().unwrap().parse().expect("numeric user");
    assert!(uid > 0);
    assert_eq!(instruction(runtime, "EXPOSE"), vec![DEFAULT_PORT.to_string().as_str()]);
    let health = instruction(runtime, "HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].ends_with(&format!("CMD [\"{binary}\", \"--healthcheck\"]")),
        "{}",
        health[0]
    );
    assert_eq!(
        instruction(runtime, "ENTRYPOINT"),
        vec![format!("[\"{binary}\"]").as_str()]
    );

    // The build context keeps exactly what the build copies.
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "the context is an allow list");
    for src in context_copies(build).iter().chain(context_copies(runtime).iter()) {
        assert!(
            allowed
                .iter()
                .any(|a| src == a.trim_end_matches('/') || src.starts_with(a)),
            "{src} is copied but not in the build context"
        );
    }
}

/// Every shared library the exporter binary links is installed by the runtime stage (or is part
/// of the base image: libc and libgcc). The build machine and the runtime image are both Debian
/// bookworm, so `dpkg -S` on the host names the package the image needs.
#[test]
fn runtime_stage_installs_every_shared_library_the_binary_links() {
    let ldd = Command::new("ldd").arg(EXPORTER).output().expect("ldd");
    assert!(ldd.status.success(), "ldd: {}", String::from_utf8_lossy(&ldd.stderr));
    // Only the libraries the binary names itself (DT_NEEDED); apt brings their dependencies.
    let needed: Vec<String> = dynamic_section()
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).and_then(|r| r.split(']').next()))
        // The dynamic loader is libc6's and ldd lists it without a `=>`.
        .filter(|n| !n.starts_with("ld-linux"))
        .map(str::to_string)
        .collect();
    let libs: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(" => "))
        .filter(|(name, _)| needed.iter().any(|n| n == name))
        .filter_map(|(_, r)| r.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        libs.len(),
        needed.len(),
        "every needed library resolves: {needed:?} {libs:?}"
    );
    assert!(
        libs.iter().any(|l| l.contains("libssl")),
        "ldd output unexpected: {libs:?}"
    );
    let stages = dockerfile_stages();
    let runtime = stages.last().unwrap();
    let installed = instruction(runtime, "RUN").join(" ");
    let base = ["libc6", "libgcc-s1"];
    for lib in &libs {
        let out = Command::new("dpkg").arg("-S").arg(lib).output().expect("dpkg -S");
        let owner = String::from_utf8_lossy(&out.stdout);
        // `libssl3:amd64: /lib/x86_64-linux-gnu/libssl.so.3`; a merged-/usr path may need the
        // /usr prefix added or removed.
        let owner = if out.status.success() {
            owner.to_string()
        } else {
            let alt = lib
                .strip_prefix("/usr")
                .map(str::to_string)
                .unwrap_or(format!("/usr{lib}"));
            let out = Command::new("dpkg").arg("-S").arg(&alt).output().expect("dpkg -S");
            assert!(out.status.success(), "no package owns {lib}");
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let pkg = owner.split(':').next().unwrap().trim().to_string();
        assert!(
            base.contains(&pkg.as_str()) || installed.split_whitespace().any(|w| w == pkg),
            "the binary links {lib} from package {pkg}, which the runtime stage does not install"
        );
    }
}

/// The exporter binary's dynamic section (`readelf -d`).
fn dynamic_section() -> String {
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(EXPORTER)
        .output()
        .expect("readelf");
    assert!(
        dynamic.status.success(),
        "readelf: {}",
        String::from_utf8_lossy(&dynamic.stderr)
    );
    String::from_utf8_lossy(&dynamic.stdout).into_owned()
}

/// Kerberos needs what the binary does not link: Cyrus SASL's GSSAPI plugin, which libsasl2
/// loads at run time, and `kinit`, which librdkafka runs. The runtime stage installs the
/// packages that hold them here (the same Debian release as the runtime image).
#[test]
fn runtime_stage_installs_what_kerberos_loads_at_run_time() {
    let stages = dockerfile_stages();
    let installed = instruction(stages.last().unwrap(), "RUN").join(" ");
    let owner = |path: &str| {
        let out = Command::new("dpkg").arg("-S").arg(path).output().expect("dpkg -S");
        assert!(out.status.success(), "no package owns {path}");
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let plugin = std::fs::read_dir("/usr/lib/x86_64-linux-gnu/sasl2")
        .expect("Cyrus SASL plugins (scripts/setup.sh installs them)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libgssapiv2.so"))
        })
        .expect("the GSSAPI plugin");
    let kinit = ["/usr/bin/kinit", "/bin/kinit"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("kinit");
    for path in [plugin.display().to_string(), kinit.to_string()] {
        let pkg = owner(&path);
        assert!(
            installed.split_whitespace().any(|w| w == pkg),
            "{path} comes from {pkg}, which the runtime stage does not install"
        );
    }
    assert!(
        dynamic_section().contains("[libsasl2.so.2]"),
        "the exporter is built with Cyrus SASL (rdkafka feature gssapi)"
    );
}

/// The files the build stage copies are enough for Cargo to resolve the workspace with the
/// committed lock file (a cheap stand-in for the image build this machine cannot run). Online, as
/// the image build is: resolving reads the manifests of every target platform's crates, which a
/// host build never downloads, so `--offline` passes only on a machine that happens to hold them.
#[test]
fn docker_build_context_resolves_the_locked_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let stages = dockerfile_stages();
    for src in context_copies(&stages[1]) {
        let (from, to) = (root().join(&src), dir.path().join(&src));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let status = Command::new("cp")
            .arg("-r")
            .arg(&from)
            .arg(&to)
            .status()
            .unwrap_or_else(|e| panic!("cp {src}: {e}"));
        assert!(status.success(), "cp {src}");
    }
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let has_bin = meta["packages"].as_array().unwrap().iter().any(|p| {
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "kafka-slo-exporter" && t["kind"][0] == "bin")
    });
    assert!(has_bin);
}

#[test]
fn healthcheck_flag_reports_a_running_exporter() {
    let exporter = Exporter::start("clusters:\n  - {name: a, bootstrap_servers: ['127.0.0.1:1']}\n", &[]);
    let port = exporter.addr.port();
    // The paths the probes and the health check use are routes of the exporter.
    assert_eq!(exporter.get("/-/healthy", None).0, 200);
    assert_eq!(exporter.get("/-/ready", None).0, 503, "not ready without Kafka");
    assert_eq!(exporter.get("/-/nonexistent", None).0, 404);
    let check = |address: &str| {
        Command::new(EXPORTER)
            .args(["--healthcheck", "--web.listen-address", address])
            .output()
            .unwrap()
    };
    for address in [format!("127.0.0.1:{port}"), format!(":{port}")] {
        let out = check(&address);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{address}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(exporter);
    std::thread::sleep(Duration::from_millis(200));
    let out = check(&format!("127.0.0.1:{port}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("unhealthy: "));
}
