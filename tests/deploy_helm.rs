//! The Helm chart rendered by the real tool (`helm lint`, `helm template`) in every variant of
//! its values: defaults, sharding, optional objects, existing secrets, impossible settings.

mod common;
mod deploy_support;

use std::process::Command;

use serde_yaml::Value;

use common::EXPORTER;
use deploy_support::*;

#[test]
fn helm_lint_passes_for_every_variant() {
    for variant in VARIANTS {
        let out = run_tool(
            Command::new(tool("helm"))
                .args(["lint", "--strict", CHART])
                .args(*variant)
                .current_dir(root()),
        );
        assert!(out.contains("0 chart(s) failed"), "{variant:?}: {out}");
    }
}

#[test]
fn helm_default_values_render_the_unsharded_exporter() {
    let objs = helm_template(&[]);
    assert_eq!(kinds(&objs), one_deployment_with_config_maps(1 + dashboards().len()));
    let w = check_objects(&objs);
    assert_eq!(w["spec"]["replicas"].as_u64(), Some(1));
    assert!(!args_of(w).iter().any(|a| a.starts_with("--shard")));
    assert!(container(w)["envFrom"].is_null());
    assert_eq!(s(container(w), &["image"]), "kafka-slo-exporter:0.1.0");
    check_config(&objs, "kafka-slo-exporter.yml", "policy.yml");
    let cm = of_kind(&objs, "ConfigMap")
        .into_iter()
        .find(|m| m["data"]["policy.yml"].is_string())
        .unwrap();
    assert_eq!(
        cm["data"]["policy.yml"].as_str().unwrap().trim_end(),
        read(POLICY).trim_end(),
        "the built-in policy by default"
    );
    assert_eq!(one(&objs, "PrometheusRule")["spec"], alert_pack_spec());
    check_dashboards(&objs);
}

#[test]
fn helm_sharding_renders_a_statefulset_deriving_the_shard_from_the_pod_ordinal() {
    let objs = helm_template(VARIANTS[1]);
    assert!(of_kind(&objs, "Deployment").is_empty());
    let w = check_objects(&objs);
    assert_eq!(s(w, &["kind"]), "StatefulSet");
    assert_eq!(w["spec"]["replicas"].as_u64(), Some(3));
    let svc = one(&objs, "Service");
    assert_eq!(w["spec"]["serviceName"], svc["metadata"]["name"]);
    assert_eq!(svc["spec"]["clusterIP"], Value::from("None"));
    let env = container(w)["env"].as_sequence().expect("env");
    let shard_env = env.iter().find(|e| e["name"] == "KSE_SHARD").expect("KSE_SHARD");
    assert_eq!(
        s(shard_env, &["valueFrom", "fieldRef", "fieldPath"]),
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let args = args_of(w);
    assert!(args.contains(&"--shard=$(KSE_SHARD)".to_string()) && args.contains(&"--total-shards=3".to_string()));

    // The arguments as the kubelet expands them for each ordinal are accepted, and one past
    // the last ordinal is not.
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_file(
        dir.path(),
        "c.yml",
        "clusters:\n  - {name: a, bootstrap_servers: ['k:1']}\n",
    );
    for (ordinal, code) in [(0, 0), (2, 0), (3, 2)] {
        let expanded: Vec<String> = args
            .iter()
            .filter(|a| a.starts_with("--shard") || a.starts_with("--total-shards"))
            .map(|a| a.replace("$(KSE_SHARD)", &ordinal.to_string()))
            .collect();
        let out = Command::new(EXPORTER)
            .args(&expanded)
            .arg("--config.file")
            .arg(&config)
            .arg("--config.check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "ordinal {ordinal}: {expanded:?}");
    }
    assert_eq!(one(&objs, "PrometheusRule")["spec"], alert_pack_spec());
}

#[test]
fn helm_optional_objects_can_be_turned_off() {
    let objs = helm_template(VARIANTS[2]);
    let k = kinds(&objs);
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(!k.contains_key(kind), "{kind} rendered: {k:?}");
    }
    assert_eq!(k.get("ConfigMap"), Some(&1), "no dashboard ConfigMaps");
    check_objects(&objs);
}

#[test]
fn helm_existing_secret_and_custom_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy_text = read(POLICY).replace("ADR-0007", "ADR-0007 (custom copy)");
    let policy = common::write_file(dir.path(), "policy.yml", &policy_text);
    let mut args: Vec<&str> = VARIANTS[3].to_vec();
    let set_file = format!("policy={}", policy.display());
    args.extend(["--set-file", &set_file]);
    let objs = helm_template(&args);
    let w = check_objects(&objs);
    let c = container(w);
    assert_eq!(s(c, &["image"]), "kafka-slo-exporter:9.9.9");
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], Value::from("kafka-credentials"));
    let spec = &w["spec"]["template"]["spec"];
    let volume = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_mapping())
        .expect("secret volume");
    assert_eq!(volume["secret"]["secretName"], Value::from("kafka-credentials"));
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("secret mount");
    assert_eq!(mount["mountPath"], Value::from("/etc/kafka-slo-exporter/secrets"));
    assert_eq!(mount["readOnly"], Value::from(true));
    let cm = of_kind(&objs, "ConfigMap")
        .into_iter()
        .find(|m| m["data"]["policy.yml"].is_string())
        .unwrap();
    assert_eq!(
        cm["data"]["policy.yml"].as_str().unwrap().trim_end(),
        policy_text.trim_end()
    );
    check_config(&objs, "kafka-slo-exporter.yml", "policy.yml");
}

/// Kerberos: the keytab Secret and the krb5.conf ConfigMap in one read-only directory, and a
/// writable /tmp for the credential cache under the read-only root filesystem.
#[test]
fn helm_kerberos_mounts_keytab_krb5_conf_and_a_writable_tmp() {
    let objs = helm_template(VARIANTS.last().unwrap());
    let w = check_objects(&objs);
    let spec = &w["spec"]["template"]["spec"];
    let volume = |name: &str| {
        spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}: {spec:?}"))
            .clone()
    };
    let mount = |name: &str| {
        container(w)["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no mount {name}"))
            .clone()
    };
    let sources = volume("kerberos")["projected"]["sources"].clone();
    assert_eq!(sources[0]["secret"]["name"], Value::from("kse-keytab"));
    assert_eq!(sources[1]["configMap"]["name"], Value::from("kse-krb5"));
    assert_eq!(volume("kerberos")["projected"]["defaultMode"].as_u64(), Some(0o440));
    assert_eq!(
        mount("kerberos")["mountPath"],
        Value::from("/etc/kafka-slo-exporter/kerberos")
    );
    assert_eq!(mount("kerberos")["readOnly"], Value::from(true));
    assert_eq!(volume("tmp")["emptyDir"]["medium"], Value::from("Memory"));
    assert_eq!(mount("tmp")["mountPath"], Value::from("/tmp"));
    assert_eq!(
        container(w)["securityContext"]["readOnlyRootFilesystem"],
        Value::from(true)
    );
    // Without Kerberos, neither volume.
    let plain = helm_template(&[]);
    let names: Vec<&Value> = check_objects(&plain)["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| &v["name"])
        .collect();
    assert!(
        !names.contains(&&Value::from("kerberos")) && !names.contains(&&Value::from("tmp")),
        "{names:?}"
    );
}

#[test]
fn helm_rejects_impossible_sharding() {
    let template = |args: &[&str]| {
        Command::new(tool("helm"))
            .args(["template", "kse", CHART])
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    };
    let zero = template(&[
        "--kube-version",
        "1.31.0",
        "--set",
        "sharding.enabled=true",
        "--set",
        "sharding.shards=0",
    ]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("sharding.shards must be at least 1"));
    // The pod-index label exists from Kubernetes 1.28; unsharded, older versions are fine.
    let old = template(&["--kube-version", "1.27.9", "--set", "sharding.enabled=true"]);
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("sharding needs Kubernetes 1.28"));
    assert!(template(&["--kube-version", "1.27.9"]).status.success());
}

/// prometheusRule.runbookBaseUrl points every alert's runbook_url at the team's copy of the
/// runbooks (a trailing slash is dropped); nothing else of the pack changes.
#[test]
fn runbook_base_url_value_rewrites_every_runbook_link() {
    let base = "https://runbooks.example.internal/kafka";
    let objs = helm_template(&["--set", &format!("prometheusRule.runbookBaseUrl={base}/")]);
    let mut expected = alert_pack_spec();
    let mut rewritten = 0;
    for g in expected["groups"].as_sequence_mut().unwrap() {
        for r in g["rules"].as_sequence_mut().unwrap() {
            if let Some(a) = r.get("alert").and_then(Value::as_str).map(str::to_string) {
                r["annotations"]["runbook_url"] = format!("{base}/{a}.md").into();
                rewritten += 1;
            }
        }
    }
    assert!(rewritten > 30, "{rewritten} alerts");
    assert_eq!(one(&objs, "PrometheusRule")["spec"], expected);
}
