//! The endpoint protection of the rendered workloads (TLS, basic auth, client certificates):
//! the exporter runs with the rendered arguments and secrets, and the rendered probes pass.

mod common;
mod deploy_support;

use std::process::Command;

use common::{Exporter, EXPORTER};
use deploy_support::*;

/// The chart's `web` values protect the endpoint with TLS and basic auth, and the probes it
/// renders pass exactly as the kubelet sends them, against the exporter run with the rendered
/// arguments and files.
#[test]
fn helm_web_values_protect_the_endpoint_and_the_rendered_probes_pass() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kafka_harness::TestPki::generate(&dir.path().join("pki"), "kse-chart-web-ca").unwrap();
    let basic = |user: &str, pw: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    let values = format!(
        "config:\n  global: {{interval: 1s, timeout: 1s}}\n  clusters:\n    - name: nowhere\n      bootstrap_servers: ['127.0.0.1:1']\n\
         web:\n  config:\n    tls_server_config:\n      cert_file: /etc/kafka-slo-exporter/web-tls/tls.crt\n      key_file: /etc/kafka-slo-exporter/web-tls/tls.key\n    basic_auth_users:\n      kubelet: '{}'\n      prometheus: '{}'\n\
         \x20 tlsSecret: kse-web-tls\n  probeHeaders:\n    - {{name: Authorization, value: '{}'}}\n",
        bcrypt::hash("probe-pw", 4).unwrap(),
        bcrypt::hash("scrape-pw", 4).unwrap(),
        basic("kubelet", "probe-pw"),
    );
    let values_file = dir.path().join("values.yaml");
    std::fs::write(&values_file, values).unwrap();
    let rendered = helm_template_text(&["--values", values_file.to_str().unwrap()]);
    let (ok, out) = k8s_check(&rendered);
    assert!(ok, "{out}");
    let objects = parse_documents(&rendered);

    // The ServiceMonitor scrapes over HTTPS.
    let sm = one(&objects, "ServiceMonitor");
    assert_eq!(s(&sm["spec"]["endpoints"][0], &["scheme"]), "https");

    let tls = tls_secret(&pki);
    let pod = SimulatedPod::new(&objects, &[("kse-web-tls", tls.as_slice())]);
    assert!(
        pod.args.iter().any(|a| a.starts_with("--web.config.file=")),
        "{:?}",
        pod.args
    );
    let e = Exporter::start_args(&pod.args_on_loopback());
    let agent = common::tls_agent(Some(&pki.ca.cert), None);

    // Each probe exactly as rendered: scheme, path and headers. Not ready: the cluster is
    // unreachable; what matters is that the probe gets past TLS and authentication.
    let w = one(&objects, "Deployment");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(s(&container(w)[probe]["httpGet"], &["scheme"]), "HTTPS", "{probe}");
    }
    assert_http_probes(
        w,
        e.addr.port(),
        &pki.ca.cert,
        &[("livenessProbe", 200), ("readinessProbe", 503)],
    );
    // Without credentials, and over plain HTTP, the endpoint refuses.
    let metrics = format!("https://localhost:{}/metrics", e.addr.port());
    assert_eq!(common::https_get(&agent, &metrics, None).unwrap().0, 401);
    assert_eq!(
        common::https_get(&agent, &metrics, Some(("prometheus", "scrape-pw")))
            .unwrap()
            .0,
        200
    );
    assert!(ureq::get(&format!("http://127.0.0.1:{}/-/healthy", e.addr.port()))
        .call()
        .is_err());
}

/// The kustomize component `web-tls`, used from an overlay as documented, serves the endpoint
/// over TLS with matching probes and ServiceMonitor.
#[test]
fn kustomize_web_tls_component_protects_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kafka_harness::TestPki::generate(&dir.path().join("pki"), "kse-kustomize-web-ca").unwrap();
    // Kustomize takes the base by a relative path only: the overlay lives under target/.
    let workspace = tempfile::Builder::new()
        .prefix("kse-overlay-")
        .tempdir_in(root().join("target"))
        .unwrap();
    let overlay = workspace.path().join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("web-config.yml"),
        "tls_server_config:\n  cert_file: /etc/kafka-slo-exporter/web-tls/tls.crt\n  key_file: /etc/kafka-slo-exporter/web-tls/tls.key\n",
    )
    .unwrap();
    std::fs::write(
        overlay.join("kafka-slo-exporter.yml"),
        "clusters:\n  - name: nowhere\n    bootstrap_servers: ['127.0.0.1:1']\n",
    )
    .unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: monitoring\n\
             resources: [{base}]\ncomponents: [{base}/components/web-tls]\n\
             configMapGenerator:\n  - name: kafka-slo-exporter-config\n    behavior: replace\n    files: [kafka-slo-exporter.yml]\n\
             secretGenerator:\n  - name: kafka-slo-exporter-web\n    files: [web-config.yml]\n",
            base = format!("../../../{KUSTOMIZE_BASE}")
        ),
    )
    .unwrap();
    let text = run_tool(Command::new(tool("kustomize")).arg("build").arg(&overlay));
    let objects = parse_documents(&text);
    // The cert-manager Secret is not part of the build: the check sees the rest.
    let (ok, out) = k8s_check(&text);
    assert!(ok, "{out}");
    let sm = one(&objects, "ServiceMonitor");
    assert_eq!(s(&sm["spec"]["endpoints"][0], &["scheme"]), "https");
    assert_eq!(
        s(&sm["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"], &["name"]),
        "kafka-slo-exporter-web-tls"
    );

    let tls = tls_secret(&pki);
    let pod = SimulatedPod::new(&objects, &[("kafka-slo-exporter-web-tls", tls.as_slice())]);
    let e = Exporter::start_args(&pod.args_on_loopback());
    assert_http_probes(
        one(&objects, "Deployment"),
        e.addr.port(),
        &pki.ca.cert,
        &[("livenessProbe", 200), ("readinessProbe", 503)],
    );
    assert!(ureq::get(&format!("http://127.0.0.1:{}/-/healthy", e.addr.port()))
        .call()
        .is_err());
}

/// A client certificate requirement cannot be met by the kubelet: liveness runs the binary's
/// health check, readiness opens a TCP connection.
#[test]
fn helm_web_values_requiring_client_certificates_render_exec_and_tcp_probes() {
    let objects = helm_template(&[
        "--set-json",
        r#"web.config={"tls_server_config":{"cert_file":"/c/tls.crt","key_file":"/c/tls.key","client_ca_file":"/c/ca.crt","client_auth_type":"RequireAndVerifyClientCert"}}"#,
    ]);
    let c = container(one(&objects, "Deployment"));
    let exec: Vec<&str> = c["livenessProbe"]["exec"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        exec,
        [
            "/usr/local/bin/kafka-slo-exporter",
            "--healthcheck",
            "--web.listen-address=127.0.0.1:10077",
            "--web.config.file=/etc/kafka-slo-exporter/web/web-config.yml"
        ]
    );
    // The image's binary, as the Dockerfile's ENTRYPOINT names it.
    let stages = dockerfile_stages();
    assert_eq!(
        instruction(stages.last().unwrap(), "ENTRYPOINT"),
        vec![format!("[\"{}\"]", exec[0]).as_str()]
    );
    assert_eq!(s(&c["readinessProbe"]["tcpSocket"], &["port"]), "http");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(c[probe]["httpGet"].is_null(), "{probe}");
    }

    // The exec probe, run in the simulated pod against the exporter started from the rendered
    // arguments with certificates from a test CA: alive.
    let dir = tempfile::tempdir().unwrap();
    let pki = kafka_harness::TestPki::generate(&dir.path().join("pki"), "kse-chart-mtls-ca").unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "config:\n  clusters:\n    - name: nowhere\n      bootstrap_servers: ['127.0.0.1:1']\n\
         web:\n  tlsSecret: kse-web-tls\n  config:\n    tls_server_config:\n\
         \x20     cert_file: /etc/kafka-slo-exporter/web-tls/tls.crt\n\
         \x20     key_file: /etc/kafka-slo-exporter/web-tls/tls.key\n\
         \x20     client_ca_file: /etc/kafka-slo-exporter/web-tls/ca.crt\n\
         \x20     client_auth_type: RequireAndVerifyClientCert\n",
    )
    .unwrap();
    let objects = helm_template(&["--values", values.to_str().unwrap()]);
    let tls = tls_secret(&pki);
    let pod = SimulatedPod::new(&objects, &[("kse-web-tls", tls.as_slice())]);
    let e = Exporter::start_args(&pod.args_on_loopback());
    let exec = container(one(&objects, "Deployment"))["livenessProbe"]["exec"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| pod.remap(v.as_str().unwrap()))
        .collect::<Vec<_>>();
    let run = |args: &[String]| {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if a.starts_with("--web.listen-address=") {
                    format!("--web.listen-address={}", e.addr)
                } else {
                    a.clone()
                }
            })
            .collect();
        Command::new(EXPORTER).args(&args[1..]).output().unwrap()
    };
    let out = run(&exec);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the web config the same check fails: the probe depends on it.
    let plain: Vec<String> = exec
        .iter()
        .filter(|a| !a.starts_with("--web.config.file"))
        .cloned()
        .collect();
    assert!(!run(&plain).status.success());
    // client_allowed_sans requires a certificate under VerifyClientCertIfGiven too.
    let objects = helm_template(&[
        "--set-json",
        r#"web.config={"tls_server_config":{"cert_file":"/c/tls.crt","key_file":"/c/tls.key","client_ca_file":"/c/ca.crt","client_auth_type":"VerifyClientCertIfGiven","client_allowed_sans":["prometheus"]}}"#,
    ]);
    let c = container(one(&objects, "Deployment"));
    assert!(!c["livenessProbe"]["exec"].is_null());
    assert!(!c["readinessProbe"]["tcpSocket"].is_null());
    // An existing Secret: TLS and the client-certificate requirement are declared.
    let objects = helm_template(&["--set", "web.existingConfigSecret=my-web", "--set", "web.tls=true"]);
    assert!(objects.iter().all(|o| s(o, &["kind"]) != "Secret"));
    let c = container(one(&objects, "Deployment"));
    assert_eq!(s(&c["livenessProbe"]["httpGet"], &["scheme"]), "HTTPS");
    assert!(args_of(one(&objects, "Deployment"))
        .contains(&"--web.config.file=/etc/kafka-slo-exporter/web/web-config.yml".to_string()));
}
