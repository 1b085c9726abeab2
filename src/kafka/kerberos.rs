//! What SASL GSSAPI (Kerberos) needs from the process.
//!
//! librdkafka authenticates with Kerberos through Cyrus SASL and MIT Kerberos, which read
//! their configuration (`KRB5_CONFIG`) and credential cache (`KRB5CCNAME`) from the process
//! environment; `kinit`, which librdkafka runs to obtain and renew tickets from the keytab,
//! inherits both. So one exporter process has one Kerberos configuration and one credential
//! cache, holding the tickets of one principal: every cluster that authenticates with GSSAPI
//! must use the same principal, keytab and `krb5.conf`.
//!
//! Both variables are set once, on the first load at start-up, before any Kafka client
//! exists (setting environment variables while other threads may read them is not safe), even
//! when no cluster uses Kerberos yet. The exporter keeps its tickets in a credential cache of
//! its own, unless `KRB5CCNAME` is set. A reload that would change the process's `krb5.conf`
//! is refused: that takes a restart.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::{ClusterConfig, Kerberos};

/// A rejected setting: the field path (from `clusters[i]`) and the reason.
type Rejection = (String, String);

/// The `krb5.conf` this process uses, set on the first load of a configuration that has a
/// Kerberos cluster (written once, never read at scrape time).
static PROCESS_KRB5_CONF: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The credential cache file this process chose for itself (removed at exit).
static OWN_CREDENTIAL_CACHE: OnceLock<PathBuf> = OnceLock::new();

/// Checks that the GSSAPI clusters of a configuration agree on what the process provides
/// ([`agreed`]) and that `kinit` can be run. The first call (the start-up load, before any
/// Kafka client exists) sets up the process environment, whether or not a cluster uses
/// Kerberos yet: a reload that adds the first Kerberos cluster must not set environment
/// variables while other clusters' client threads run.
pub fn prepare(clusters: &[ClusterConfig]) -> Result<(), Rejection> {
    let wanted = agreed(clusters)?;
    for (i, c) in clusters.iter().enumerate() {
        let own_kinit = c.client_properties.iter().any(|(k, _)| k == "sasl.kerberos.kinit.cmd");
        if let (Some(k), false) = (&c.kerberos, own_kinit) {
            if find_on_path("kinit").is_none() {
                return Err((
                    format!("clusters[{i}].{}", k.field),
                    "GSSAPI needs the `kinit` program on PATH: librdkafka runs it to get tickets from the keytab (Debian and Ubuntu: krb5-user; RHEL: krb5-workstation)".into(),
                ));
            }
        }
    }
    let krb5_conf = wanted.clone().flatten();
    let mut first = false;
    let in_use = PROCESS_KRB5_CONF.get_or_init(|| {
        first = true;
        set_environment(krb5_conf.as_deref(), wanted.is_some());
        krb5_conf.clone()
    });
    if wanted.is_some() && !first && *in_use != krb5_conf {
        let (i, _) = kerberos_clusters(clusters)
            .next()
            .expect("agreed found a Kerberos cluster");
        let shown = |p: &Option<PathBuf>| match p {
            Some(p) => p.display().to_string(),
            None => "the system's (or $KRB5_CONFIG)".into(),
        };
        return Err((
            format!("clusters[{i}].sasl.kerberos.krb5_conf"),
            format!(
                "is {}, but this process uses {}; a new krb5.conf takes a restart",
                shown(&krb5_conf),
                shown(in_use)
            ),
        ));
    }
    Ok(())
}

/// The `krb5.conf` of the configuration's GSSAPI clusters: `None` when there are none,
/// `Some(None)` when they use the system's. Clusters that disagree on it, the principal or the
/// keytab are rejected, naming the later cluster.
pub fn agreed(clusters: &[ClusterConfig]) -> Result<Option<Option<PathBuf>>, Rejection> {
    let mut found: Option<(usize, &Kerberos)> = None;
    for (i, k) in kerberos_clusters(clusters) {
        let Some((first, f)) = found else {
            found = Some((i, k));
            continue;
        };
        let differs = |what: &str, a: String, b: String| {
            (
                format!("clusters[{i}].sasl.kerberos.{what}"),
                format!(
                    "is {b}, but clusters[{first}] uses {a}; one exporter process has one Kerberos {}: run another exporter for clusters that need a different one",
                    if what == "principal" { "identity (its credential cache holds one principal's tickets)" } else { "configuration" }
                ),
            )
        };
        if f.principal != k.principal {
            let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "librdkafka's default principal".into());
            return Err(differs("principal", show(&f.principal), show(&k.principal)));
        }
        if f.keytab != k.keytab {
            let show = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "no keytab".into())
            };
            return Err(differs("keytab", show(&f.keytab), show(&k.keytab)));
        }
        if f.krb5_conf != k.krb5_conf {
            let show = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the system's krb5.conf".into())
            };
            return Err(differs("krb5_conf", show(&f.krb5_conf), show(&k.krb5_conf)));
        }
    }
    Ok(found.map(|(_, k)| k.krb5_conf.clone()))
}

fn kerberos_clusters(clusters: &[ClusterConfig]) -> impl Iterator<Item = (usize, &Kerberos)> {
    clusters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.kerberos.as_ref().map(|k| (i, k)))
}

/// Sets `KRB5_CONFIG` (when a `krb5.conf` is configured) and `KRB5CCNAME` (unless set): runs
/// once, from the first load, before any Kafka client exists. `KRB5CCNAME` names a file only
/// `kinit` creates, so it costs nothing where no cluster uses Kerberos.
fn set_environment(krb5_conf: Option<&Path>, used: bool) {
    if let Some(path) = krb5_conf {
        std::env::set_var("KRB5_CONFIG", path);
    }
    if std::env::var_os("KRB5CCNAME").is_none() {
        let cache = std::env::temp_dir().join(format!("kafka-slo-exporter-{}.krb5cc", std::process::id()));
        std::env::set_var("KRB5CCNAME", format!("FILE:{}", cache.display()));
        let _ = OWN_CREDENTIAL_CACHE.set(cache);
    }
    if !used {
        return;
    }
    tracing::info!(
        krb5_config = std::env::var("KRB5_CONFIG").unwrap_or_else(|_| "/etc/krb5.conf".into()),
        credential_cache = std::env::var("KRB5CCNAME").unwrap_or_default(),
        "Kerberos set up for SASL GSSAPI"
    );
}

/// Removes the credential cache the exporter chose for itself, if it did: its tickets are of
/// no use to anyone after the process ends.
pub fn remove_own_credential_cache() {
    if let Some(cache) = OWN_CREDENTIAL_CACHE.get() {
        let _ = std::fs::remove_file(cache);
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(kerberos: Option<(&str, Option<&str>)>) -> ClusterConfig {
        let mut c = crate::config::Config::parse(
            Path::new("t.yml"),
            "clusters: [{name: a, bootstrap_servers: ['k:9092']}]\n",
        )
        .unwrap()
        .clusters
        .remove(0);
        c.kerberos = kerberos.map(|(principal, krb5)| Kerberos {
            field: "sasl.mechanism".into(),
            principal: Some(principal.into()),
            keytab: Some(PathBuf::from("/k/kse.keytab")),
            krb5_conf: krb5.map(PathBuf::from),
        });
        c
    }

    #[test]
    fn clusters_without_kerberos_need_nothing() {
        assert_eq!(agreed(&[cluster(None), cluster(None)]).unwrap(), None);
    }

    #[test]
    fn kerberos_clusters_must_share_principal_and_krb5_conf() {
        let a = cluster(Some(("kse@R", Some("/k/krb5.conf"))));
        assert_eq!(
            agreed(&[cluster(None), a.clone(), a.clone()]).unwrap(),
            Some(Some(PathBuf::from("/k/krb5.conf")))
        );
        let (field, reason) = agreed(&[
            a.clone(),
            cluster(None),
            cluster(Some(("other@R", Some("/k/krb5.conf")))),
        ])
        .unwrap_err();
        assert_eq!(field, "clusters[2].sasl.kerberos.principal");
        assert!(
            reason.contains("other@R") && reason.contains("clusters[0] uses kse@R"),
            "{reason}"
        );
        let (field, reason) = agreed(&[a, cluster(Some(("kse@R", None)))]).unwrap_err();
        assert_eq!(field, "clusters[1].sasl.kerberos.krb5_conf");
        assert!(reason.contains("the system's krb5.conf"), "{reason}");
    }
}
