//! The `sasl.kerberos` block of a cluster that authenticates with SASL GSSAPI (Kerberos).
//!
//! librdkafka authenticates through Cyrus SASL and MIT Kerberos: it runs `kinit` with the
//! keytab and principal to put a ticket into the process's credential cache, renews it every
//! `sasl.kerberos.min.time.before.relogin`, and asks the KDC for a ticket to
//! `<service_name>/<broker host>` on each connection. The keytab and `krb5.conf` are checked
//! here, so that a wrong path is a start-up error naming the field.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::security::Properties;

/// Kerberos settings of the `sasl` block (mechanism GSSAPI).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKerberos {
    /// The exporter's principal, `name[/instance]@REALM`.
    #[serde(default)]
    principal: Option<String>,
    /// Keytab holding the principal's keys.
    #[serde(default)]
    keytab: Option<PathBuf>,
    /// Service name of the brokers' principals (`kafka` in `kafka/broker1.example.com@REALM`).
    #[serde(default)]
    service_name: Option<String>,
    /// The `krb5.conf` naming the realm's KDCs; the system's (or `$KRB5_CONFIG`) when absent.
    #[serde(default)]
    krb5_conf: Option<PathBuf>,
}

/// What a cluster that authenticates with Kerberos needs from the process: librdkafka's
/// GSSAPI reads the Kerberos configuration and the credential cache of the process, so every
/// such cluster of one exporter must agree on them (checked when the clients are created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kerberos {
    /// The field below the cluster that selects GSSAPI (for errors).
    pub field: String,
    /// The principal the cluster's clients authenticate as, when configured.
    pub principal: Option<String>,
    /// The keytab `kinit` reads, when configured.
    pub keytab: Option<PathBuf>,
    /// The `krb5.conf` to use; `None` for the system's or `$KRB5_CONFIG`.
    pub krb5_conf: Option<PathBuf>,
}

/// A rejected setting: the field path below the cluster and the reason.
type Rejection = (String, String);

/// Sets the GSSAPI properties from `raw` and returns what the process needs.
pub(super) fn apply(base_dir: &Path, raw: Option<RawKerberos>, p: &mut Properties<'_>) -> Result<Kerberos, Rejection> {
    let raw = raw.ok_or_else(|| {
        (
            "sasl.kerberos".to_string(),
            "GSSAPI needs a `kerberos` block with `principal` and `keytab`".to_string(),
        )
    })?;
    let principal = raw
        .principal
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| field("principal", "is required (the exporter's principal, name@REALM)"))?;
    check_principal(&principal).map_err(|r| field("principal", &r))?;
    let keytab = raw
        .keytab
        .ok_or_else(|| field("keytab", "is required (the keytab holding the principal's keys)"))?;
    let keytab = keytab_file(&base_dir.join(keytab)).map_err(|r| field("keytab", &r))?;
    let service_name = raw.service_name.unwrap_or_else(|| "kafka".into());
    if service_name.is_empty() || service_name.contains(['/', '@']) || service_name.contains(char::is_whitespace) {
        return Err(field(
            "service_name",
            &format!(
                "{service_name:?} is not a service name (the first part of the brokers' principals, such as kafka)"
            ),
        ));
    }
    let krb5_conf = match raw.krb5_conf {
        Some(path) => Some(readable_file(&base_dir.join(path)).map_err(|r| field("krb5_conf", &r))?),
        None => None,
    };
    p.set(
        "sasl.kerberos.principal",
        "sasl.kerberos.principal",
        principal.clone(),
        false,
    )?;
    p.set(
        "sasl.kerberos.keytab",
        "sasl.kerberos.keytab",
        keytab.display().to_string(),
        false,
    )?;
    p.set(
        "sasl.kerberos.service_name",
        "sasl.kerberos.service.name",
        service_name,
        false,
    )?;
    Ok(Kerberos {
        field: "sasl.mechanism".into(),
        principal: Some(principal),
        keytab: Some(keytab),
        krb5_conf,
    })
}

fn field(name: &str, reason: &str) -> Rejection {
    (format!("sasl.kerberos.{name}"), reason.to_string())
}

/// `name[/instance]@REALM` with no spaces or quotes (the principal is part of the `kinit`
/// command line librdkafka runs through the shell).
fn check_principal(p: &str) -> Result<(), String> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || "\"'`$\\;|&<>()".contains(c);
    match p.split_once('@') {
        _ if p.contains(bad) => Err(format!("{p:?} contains a space, quote or shell character")),
        Some((name, realm)) if !name.is_empty() && !realm.is_empty() && !realm.contains('@') => Ok(()),
        _ => Err(format!("{p:?} is not a principal of the form name@REALM")),
    }
}

/// The absolute path of a readable MIT keytab file (format version 0x0501 or 0x0502).
fn keytab_file(path: &Path) -> Result<PathBuf, String> {
    let path = readable_file(path)?;
    let mut head = [0u8; 2];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if n < 2 || head[0] != 5 || !(1..=2).contains(&head[1]) {
        return Err(format!(
            "{} is not a Kerberos keytab (it does not start with the keytab format version 0x0502)",
            path.display()
        ));
    }
    if path.to_string_lossy().contains(['"', '$', '`', '\\']) {
        return Err(format!(
            "{} contains a quote, `$` or backslash; librdkafka passes it to kinit through the shell",
            path.display()
        ));
    }
    Ok(path)
}

/// The absolute path of a readable regular file.
fn readable_file(path: &Path) -> Result<PathBuf, String> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => std::fs::File::open(&path)
            .map(|_| path.clone())
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Ok(_) => Err(format!("{} is not a file", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_in(dir: &Path, raw: RawKerberos) -> Result<(Kerberos, Vec<(String, String)>), Rejection> {
        let (mut props, mut secret_keys) = (Vec::new(), Vec::new());
        let mut p = Properties {
            props: &mut props,
            secret_keys: &mut secret_keys,
        };
        let k = apply(dir, Some(raw), &mut p)?;
        assert!(secret_keys.is_empty(), "nothing here is secret: the keytab is a path");
        Ok((k, props))
    }

    fn raw(principal: &str, keytab: &str) -> RawKerberos {
        RawKerberos {
            principal: Some(principal.into()),
            keytab: Some(keytab.into()),
            service_name: None,
            krb5_conf: None,
        }
    }

    fn dir_with_keytab() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("kse.keytab"), [5u8, 2, 0, 0, 0, 0x40]).unwrap();
        std::fs::write(d.path().join("not.keytab"), b"principal kse").unwrap();
        std::fs::write(d.path().join("krb5.conf"), b"[libdefaults]\n").unwrap();
        d
    }

    #[test]
    fn a_keytab_and_principal_set_librdkafkas_properties() {
        let d = dir_with_keytab();
        let (k, props) = apply_in(d.path(), raw("kse@KSE.TEST", "kse.keytab")).unwrap();
        assert_eq!(k.principal.as_deref(), Some("kse@KSE.TEST"));
        assert_eq!(k.krb5_conf, None);
        let get = |key: &str| props.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(get("sasl.kerberos.principal").as_deref(), Some("kse@KSE.TEST"));
        assert_eq!(get("sasl.kerberos.service.name").as_deref(), Some("kafka"));
        let keytab = get("sasl.kerberos.keytab").unwrap();
        assert!(
            Path::new(&keytab).is_absolute() && keytab.ends_with("kse.keytab"),
            "{keytab}"
        );
    }

    #[test]
    fn krb5_conf_and_service_name_are_taken() {
        let d = dir_with_keytab();
        let mut r = raw("kse/host.example.com@KSE.TEST", "kse.keytab");
        r.krb5_conf = Some("krb5.conf".into());
        r.service_name = Some("kafka-prod".into());
        let (k, props) = apply_in(d.path(), r).unwrap();
        assert_eq!(k.krb5_conf, Some(d.path().join("krb5.conf")));
        assert!(props.contains(&("sasl.kerberos.service.name".into(), "kafka-prod".into())));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let d = dir_with_keytab();
        let cases: Vec<(RawKerberos, &str, &str)> = vec![
            (
                raw("kse@KSE.TEST", "missing.keytab"),
                "sasl.kerberos.keytab",
                "No such file",
            ),
            (
                raw("kse@KSE.TEST", "not.keytab"),
                "sasl.kerberos.keytab",
                "not a Kerberos keytab",
            ),
            (raw("kse@KSE.TEST", "."), "sasl.kerberos.keytab", "is not a file"),
            (raw("kse", "kse.keytab"), "sasl.kerberos.principal", "name@REALM"),
            (raw("kse@", "kse.keytab"), "sasl.kerberos.principal", "name@REALM"),
            (raw("kse@R; rm -rf /", "kse.keytab"), "sasl.kerberos.principal", "shell"),
            (raw(" ", "kse.keytab"), "sasl.kerberos.principal", "required"),
            (
                RawKerberos {
                    keytab: None,
                    ..raw("kse@KSE.TEST", "x")
                },
                "sasl.kerberos.keytab",
                "required",
            ),
            (
                RawKerberos {
                    krb5_conf: Some("nope.conf".into()),
                    ..raw("kse@KSE.TEST", "kse.keytab")
                },
                "sasl.kerberos.krb5_conf",
                "No such file",
            ),
            (
                RawKerberos {
                    service_name: Some("kafka/x".into()),
                    ..raw("kse@KSE.TEST", "kse.keytab")
                },
                "sasl.kerberos.service_name",
                "not a service name",
            ),
        ];
        for (r, want_field, want_reason) in cases {
            let (f, reason) = apply_in(d.path(), r).unwrap_err();
            assert_eq!(f, want_field, "{reason}");
            assert!(reason.contains(want_reason), "{f}: {reason}");
        }
    }

    #[test]
    fn gssapi_without_the_block_is_rejected() {
        let (mut props, mut secret_keys) = (Vec::new(), Vec::new());
        let mut p = Properties {
            props: &mut props,
            secret_keys: &mut secret_keys,
        };
        let (f, reason) = apply(Path::new("."), None, &mut p).unwrap_err();
        assert_eq!(f, "sasl.kerberos");
        assert!(reason.contains("principal") && reason.contains("keytab"), "{reason}");
    }
}
