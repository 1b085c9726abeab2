//! The kustomize base rendered by the real tool and checked object by object, the copies of the
//! policy, the alert pack and the dashboards it needs inside its directory, and the Kubernetes
//! type and rule check (`kse-k8s-check`) of every rendering.

mod common;
mod deploy_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;

use deploy_support::*;

/// Compares the copies with their sources; `UPDATE_DEPLOY=1` rewrites them instead
/// (`scripts/sync-deploy.sh`).
#[test]
fn synced_files_are_current() {
    let update = std::env::var_os("UPDATE_DEPLOY").is_some_and(|v| v == "1");
    let expected = synced_files();
    let mut stale = Vec::new();
    for (rel, bytes) in &expected {
        let path = root().join(rel);
        if std::fs::read(&path).ok().as_ref() != Some(bytes) {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes).unwrap();
            } else {
                stale.push(rel.clone());
            }
        }
    }
    // No copy of a dashboard that is gone.
    let wanted: BTreeSet<PathBuf> = expected.iter().map(|(r, _)| root().join(r)).collect();
    for dir in [
        format!("{KUSTOMIZE_BASE}/dashboards"),
        format!("{CHART}/files/dashboards"),
    ] {
        for e in std::fs::read_dir(root().join(&dir))
            .into_iter()
            .flatten()
            .map_while(Result::ok)
        {
            if !wanted.contains(&e.path()) {
                if update {
                    std::fs::remove_file(e.path()).unwrap();
                } else {
                    stale.push(format!("{} (no source)", e.path().display()));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "copies are stale: {stale:?}; run ./scripts/sync-deploy.sh and commit the result"
    );
}

#[test]
fn kustomize_base_builds_complete_consistent_objects() {
    let objs = kustomize_build();
    assert_eq!(kinds(&objs), one_deployment_with_config_maps(2 + dashboards().len()));
    let w = check_objects(&objs);
    assert_eq!(w["spec"]["replicas"].as_u64(), Some(1));
    // Generated ConfigMap names carry a content hash, and the Deployment refers to them.
    let volumes = map(&Value::Mapping(
        w["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|v| v["configMap"].is_mapping())
            .map(|v| (v["name"].clone(), v["configMap"]["name"].clone()))
            .collect(),
    ));
    assert!(volumes["config"].starts_with("kafka-slo-exporter-config-") && volumes["config"].len() > 26);
    check_config(&objs, "kafka-slo-exporter.yml", "adr-0007.yml");
    assert_eq!(one(&objs, "PrometheusRule")["spec"], alert_pack_spec());
    check_dashboards(&objs);
    for o in &objs {
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/part-of"],
            Value::from("kafka-slo-exporter"),
            "common labels on {}",
            s(o, &["metadata", "name"])
        );
    }
}

#[test]
fn every_rendering_passes_the_kubernetes_type_and_rule_check() {
    let mut renders = vec![("kustomize build".to_string(), kustomize_build_text())];
    for v in VARIANTS {
        renders.push((format!("helm template {v:?}"), helm_template_text(v)));
    }
    for (name, text) in renders {
        let (ok, out) = k8s_check(&text);
        assert!(ok, "{name}:\n{out}");
        let objects = parse_documents(&text).len();
        assert!(out.contains(&format!("{objects} objects valid")), "{name}: {out}");
        eprintln!("{name}: {}", out.trim());
    }
}

/// Each break is one an API server or a controller would refuse or act wrongly on; the
/// check must name it.
#[test]
fn the_kubernetes_check_reports_what_an_api_server_would_refuse() {
    type Break = fn(&mut Value);
    fn kind<'a>(docs: &'a mut [Value], k: &str) -> &'a mut Value {
        docs.iter_mut().find(|d| d["kind"].as_str() == Some(k)).unwrap()
    }
    fn ctr(d: &mut Value) -> &mut serde_yaml::Mapping {
        d["spec"]["template"]["spec"]["containers"][0].as_mapping_mut().unwrap()
    }
    let cases: &[(&str, &str, Break, &str)] = &[
        (
            "misspelt field",
            "Deployment",
            |d| {
                ctr(d).insert("imagePulPolicy".into(), "Always".into());
            },
            "unknown field \"spec.template.spec.containers[0].imagePulPolicy\"",
        ),
        (
            "wrong type",
            "Deployment",
            |d| d["spec"]["replicas"] = Value::from("two"),
            "does not decode",
        ),
        (
            "unknown kind",
            "Deployment",
            |d| d["kind"] = Value::from("Deploymnt"),
            "does not decode",
        ),
        (
            "probe on an undeclared port",
            "Deployment",
            |d| {
                ctr(d)["readinessProbe"]["httpGet"]["port"] = Value::from("metricz");
            },
            "port \"metricz\" is not a port of container",
        ),
        (
            "selector not matching the template",
            "Deployment",
            |d| {
                d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = Value::from("other");
            },
            "does not match the pod template's labels",
        ),
        (
            "request above limit",
            "Deployment",
            |d| {
                ctr(d)["resources"]["requests"]["memory"] = Value::from("1Gi");
            },
            "exceeds the limit",
        ),
        (
            "mount of an undeclared volume",
            "Deployment",
            |d| {
                ctr(d)["volumeMounts"][0]["name"] = Value::from("nope");
            },
            "mounts volume \"nope\"",
        ),
        (
            "mount of a missing ConfigMap",
            "Deployment",
            |d| {
                d["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = Value::from("gone");
            },
            "mounts ConfigMap \"gone\"",
        ),
        (
            "invalid label",
            "Service",
            |d| {
                d["metadata"]["labels"]["team"] = Value::from("sre team!");
            },
            "metadata.labels",
        ),
        (
            "Service selecting nothing",
            "Service",
            |d| {
                d["spec"]["selector"]["app.kubernetes.io/component"] = Value::from("nothing");
            },
            "selects no pod template",
        ),
        (
            "Service target port not declared",
            "Service",
            |d| {
                d["spec"]["ports"][0]["targetPort"] = Value::from("metrics");
            },
            "\"metrics\" is not a named container port",
        ),
        (
            "ServiceMonitor on an unknown port",
            "ServiceMonitor",
            |d| {
                d["spec"]["endpoints"][0]["port"] = Value::from("web");
            },
            "\"web\" is not a named port",
        ),
        (
            "ServiceMonitor selecting nothing",
            "ServiceMonitor",
            |d| {
                d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = Value::from("x");
            },
            "selects no Service",
        ),
        (
            "rule without alert or record",
            "PrometheusRule",
            |d| {
                let r = d["spec"]["groups"][0]["rules"][0].as_mapping_mut().unwrap();
                r.remove("alert");
                r.remove("record");
            },
            "needs exactly one of record and alert",
        ),
        (
            "ConfigMap too large to kubectl apply",
            "ConfigMap",
            |d| {
                d["data"]["big.json"] = Value::from("x".repeat(300 * 1024));
            },
            "last-applied-configuration",
        ),
        (
            "invalid name",
            "ConfigMap",
            |d| d["metadata"]["name"] = Value::from("Bad_Name"),
            "metadata.name",
        ),
    ];
    let good = kustomize_build();
    assert!(k8s_check(&to_stream(&good)).0, "the unbroken base passes");
    for (what, k, brk, expected) in cases {
        let mut docs = good.clone();
        brk(kind(&mut docs, k));
        let (ok, out) = k8s_check(&to_stream(&docs));
        assert!(!ok, "{what}: not reported:\n{out}");
        assert!(out.contains(expected), "{what}: expected {expected:?} in:\n{out}");
    }
}
