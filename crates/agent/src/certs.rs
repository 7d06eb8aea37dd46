//! The expiry of every certificate file the host's services use, so one alert
//! (CertificateExpiringSoon) covers them all: the host's own, its mutual-TLS client
//! certificates, MariaDB's, etcd's, the monitoring plane's and the CAs.
//!
//! One series per configured file, `rampart_certificate_expiry_timestamp_seconds{path}`:
//! the earliest notAfter of the certificates in it (a chain stops working when its first
//! member expires). The files come from the config, so the label set is bounded.

use std::path::PathBuf;

use crate::{Family, Kind, Sample};

/// The earliest notAfter (Unix seconds) of the certificates in `path`.
pub fn earliest_expiry(path: &std::path::Path) -> Result<i64, String> {
    let certs = rampart_tls::server_certs(path).map_err(|e| e.to_string())?;
    let mut earliest: Option<i64> = None;
    for der in &certs {
        let info = rampart_tls::cert_info(path, der).map_err(|e| e.to_string())?;
        earliest = Some(earliest.map_or(info.not_after_unix, |e| e.min(info.not_after_unix)));
    }
    // `load_certs` refuses a file without a certificate.
    earliest.ok_or_else(|| format!("{}: no certificate", path.display()))
}

/// The expiry family of `files`, and the problems of those that could not be read (each
/// naming its file); an unreadable file has no sample, so its absence shows.
pub fn families(files: &[PathBuf]) -> (Vec<Family>, Vec<String>) {
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        match earliest_expiry(path) {
            Ok(t) => samples.push(Sample {
                labels: vec![("path".to_owned(), path.display().to_string())],
                value: t as f64,
                suffix: "",
            }),
            Err(e) => errors.push(e),
        }
    }
    let family = Family {
        name: "rampart_certificate_expiry_timestamp_seconds".into(),
        help: "The earliest notAfter of the certificates in each file the host's services use."
            .into(),
        kind: Kind::Gauge,
        samples,
    };
    (vec![family], errors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn one_series_per_file_with_the_earliest_expiry_of_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rampart_tls::pki::Ca::create(dir.path(), "test CA").unwrap();
        let leaf = ca
            .issue(dir.path(), "web1", &["web1".into()], true)
            .unwrap()
            .cert;
        let ca_pem = dir.path().join("ca.pem");
        // A chain file with the CA first and the shorter-lived leaf after it.
        let chain = dir.path().join("chain.pem");
        let text =
            std::fs::read_to_string(&ca_pem).unwrap() + &std::fs::read_to_string(&leaf).unwrap();
        std::fs::write(&chain, text).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as f64;
        let (f, errors) = families(&[leaf.clone(), ca_pem.clone(), chain]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].samples.len(), 3);
        let days = |i: usize| ((f[0].samples[i].value - now) / 86400.0).round();
        let path = |i: usize| f[0].samples[i].labels[0].1.clone();
        assert_eq!(path(0), leaf.display().to_string());
        assert_eq!(path(1), ca_pem.display().to_string());
        assert_eq!(days(0), rampart_tls::pki::LEAF_DAYS as f64);
        assert_eq!(days(1), rampart_tls::pki::CA_DAYS as f64);
        assert_eq!(days(2), days(0), "a chain expires with its first member");
    }

    #[test]
    fn a_missing_or_garbled_file_is_named_and_has_no_sample() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.pem");
        let garbled = dir.path().join("garbled.pem");
        std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let key_only = dir.path().join("key.pem");
        std::fs::write(&key_only, "no pem blocks at all\n").unwrap();
        let (f, errors) = families(&[missing.clone(), garbled.clone(), key_only.clone()]);
        assert!(f[0].samples.is_empty());
        assert_eq!(errors.len(), 3, "{errors:?}");
        for (e, p) in errors.iter().zip([&missing, &garbled, &key_only]) {
            assert!(e.contains(&p.display().to_string()), "{e}");
        }
    }
}
