//! The local certificate authority behind `rampart cert`: an ECDSA P-256 CA, site
//! certificates for the public names, and host certificates for internal (mutual) TLS.
//!
//! Leaf certificates are short-lived: 30 days by default ([`LEAF_LIFETIME`], a
//! topology's `[certificates] lifetime` changes it), renewed once two thirds of their life
//! has passed ([`renewal_due`]); the services reload renewed files without a restart
//! ([`crate::SiteCerts`], [`crate::client_config`]). The CA lives ten years.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::TlsError;

/// Days a leaf certificate is valid by default.
pub const LEAF_DAYS: i64 = 30;
/// How long a leaf certificate is valid by default ([`LEAF_DAYS`]).
pub const LEAF_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(LEAF_DAYS as u64 * 86_400);
/// The shortest leaf lifetime [`Ca::with_leaf_lifetime`] takes (tests use minutes).
pub const MIN_LEAF_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);
/// Days the CA is valid.
pub const CA_DAYS: i64 = 3650;

/// A CA that can sign certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    leaf_lifetime: std::time::Duration,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Paths of a certificate and its key.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a private key with mode 0600, created that way (never widened afterwards), and
/// replaced atomically (`rampart_telemetry::fs::write_atomic`).
pub fn write_private(path: &Path, pem: &str) -> Result<(), TlsError> {
    rampart_telemetry::fs::write_atomic(path, pem.as_bytes(), 0o600).map_err(io(path))
}

/// Writes a certificate (0644), replaced atomically like a key.
fn write_public(path: &Path, pem: &str) -> Result<(), TlsError> {
    rampart_telemetry::fs::write_atomic(path, pem.as_bytes(), 0o644).map_err(io(path))
}

/// A random positive 127-bit serial number (RFC 5280: positive, at most 20 octets).
fn serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    crate::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TlsError::Rustls(rustls::Error::FailedToGetRandomBytes))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, life: std::time::Duration) -> Result<(), TlsError> {
    params.serial_number = Some(serial()?);
    let now = OffsetDateTime::now_utc();
    let life = Duration::try_from(life).unwrap_or(Duration::days(CA_DAYS));
    // A small back-dating absorbs clock skew between hosts: an hour, or a thirtieth of
    // a short life, so that renewal at two thirds of the whole span stays meaningful.
    params.not_before = now - std::cmp::min(life / 30_i32, Duration::hours(1));
    params.not_after = now + life;
    Ok(())
}

/// Whether the certificate at `path` is due for renewal: less than a third of its
/// validity span (notBefore to notAfter) is left, or it does not parse. A missing file
/// is an error of its own.
pub fn renewal_due(path: &Path) -> Result<bool, TlsError> {
    let certs = crate::server_certs(path)?;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&certs[0]) else {
        return Ok(true);
    };
    let (from, to) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Ok((to - now) * 3 < (to - from))
}

/// Writes a self-signed ECDSA P-256 server certificate for `names` to `cert`, its key
/// to `key` (0600, written first), valid for `life`: what a load balancer serves until
/// its first ACME order succeeds. No client trusts it; it only lets the listeners start.
pub fn self_signed(
    cert: &Path,
    key: &Path,
    names: &[String],
    life: std::time::Duration,
) -> Result<(), TlsError> {
    let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "rampart placeholder (ACME order pending)",
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, life)?;
    let signed = params.self_signed(&pair)?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    write_private(key, &pair.serialize_pem())?;
    write_public(cert, &signed.pem())
}

/// The parameters every rampart CA has; `load` relies on `create` using exactly these.
fn ca_params(common_name: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "rampart");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl Ca {
    /// Creates a new CA and writes `ca.pem` and `ca.key` (0600) into `dir`.
    pub fn create(dir: &Path, common_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(common_name)?;
        validity(
            &mut params,
            std::time::Duration::from_secs(CA_DAYS as u64 * 86_400),
        )?;
        let cert = params.self_signed(&key)?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_public(&dir.join("ca.pem"), &cert.pem())?;
        write_private(&dir.join("ca.key"), &key.serialize_pem())?;
        Ok(Self {
            cert,
            key,
            leaf_lifetime: LEAF_LIFETIME,
        })
    }

    /// Loads `ca.pem`/`ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Invalid {
            path: key_path.clone(),
            what: format!("not a usable CA key: {e}"),
        })?;
        let invalid = |what: String| TlsError::Invalid {
            path: cert_path.clone(),
            what,
        };
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| invalid(format!("unparsable CA certificate: {e}")))?;
        // Rebuild the CA's parameters from its subject. (rcgen can parse a CA itself, but
        // that feature pulls in ring, a second crypto stack.) Signing needs the issuer's
        // name and key; both are checked below to be byte-for-byte the original's.
        let common_name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("rampart local CA")
            .to_owned();
        let mut params = ca_params(&common_name)?;
        params.not_before = parsed.validity().not_before.to_datetime();
        params.not_after = parsed.validity().not_after.to_datetime();
        let cert = params.self_signed(&key)?;
        let (_, rebuilt) = x509_parser::parse_x509_certificate(cert.der())
            .map_err(|e| invalid(format!("rebuilt CA unparsable: {e}")))?;
        if rebuilt.subject().as_raw() != parsed.subject().as_raw()
            || rebuilt.public_key().raw != parsed.public_key().raw
        {
            return Err(invalid(
                "not a CA made by rampart (subject or key differ); run `rampart cert` with an empty --dir".into(),
            ));
        }
        Ok(Self {
            cert,
            key,
            leaf_lifetime: LEAF_LIFETIME,
        })
    }

    /// The same CA issuing leaves valid for `life` (at least [`MIN_LEAF_LIFETIME`], at
    /// most [`CA_DAYS`]).
    pub fn with_leaf_lifetime(mut self, life: std::time::Duration) -> Self {
        self.leaf_lifetime = life.clamp(
            MIN_LEAF_LIFETIME,
            std::time::Duration::from_secs(CA_DAYS as u64 * 86_400),
        );
        self
    }

    /// Loads the CA in `dir`, creating it first when absent.
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<Self, TlsError> {
        if dir.join("ca.pem").exists() && dir.join("ca.key").exists() {
            Self::load(dir)
        } else {
            Self::create(dir, common_name)
        }
    }

    /// Issues an ECDSA P-256 leaf for `names`, written as `<stem>.pem` (the leaf alone) and
    /// `<stem>.key` (0600). `client` adds the clientAuth usage for mutual TLS.
    pub fn issue(
        &self,
        dir: &Path,
        stem: &str,
        names: &[String],
        client: bool,
    ) -> Result<Issued, TlsError> {
        let mut usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if client {
            usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        self.issue_with(dir, stem, names, usages)
    }

    /// Issues a client-only leaf (clientAuth, no serverAuth) for `names`, written like
    /// [`Ca::issue`]'s: a certificate that identifies a client (an etcd client host) and
    /// that no TLS client accepts as a server's.
    pub fn issue_client(
        &self,
        dir: &Path,
        stem: &str,
        names: &[String],
    ) -> Result<Issued, TlsError> {
        self.issue_with(dir, stem, names, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue_with(
        &self,
        dir: &Path,
        stem: &str,
        names: &[String],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        // Omit basicConstraints on leaves: an explicit cA=FALSE is a DER default, which
        // strict parsers (Python's cryptography, hence sslyze) reject.
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, self.leaf_lifetime)?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let issued = Issued {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        // The chain is the leaf alone: clients hold the anchor, and sending it is waste.
        write_public(&issued.cert, &cert.pem())?;
        write_private(&issued.key, &key.serialize_pem())?;
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn issued_keys_are_0600_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "test CA").unwrap();
        let names = vec!["www.foobar.com".to_owned(), "foobar.com".to_owned()];
        let site = ca.issue(dir.path(), "site", &names, false).unwrap();
        for key in [dir.path().join("ca.key"), site.key.clone()] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let loaded = crate::load_certified_key(&site.cert, &site.key).unwrap();
        assert_eq!(loaded.info.names, names);
        let days =
            (loaded.info.not_after_unix - OffsetDateTime::now_utc().unix_timestamp()) / 86400;
        assert!((LEAF_DAYS - 1..=LEAF_DAYS).contains(&days), "{days}");
        assert!(!renewal_due(&site.cert).unwrap());
        // A reloaded CA signs certificates that chain to the same ca.pem.
        let again = Ca::load(dir.path()).unwrap();
        let host = again
            .issue(dir.path(), "web1", &["web1".into()], true)
            .unwrap();
        let cfg = crate::client_config(&crate::ClientTls {
            ca: dir.path().join("ca.pem"),
            client_cert: Some((host.cert.clone(), host.key)),
        });
        assert!(cfg.is_ok());
        // ...and a verifier trusting only ca.pem accepts them for their name.
        let mut roots = rustls::RootCertStore::empty();
        for c in crate::server_certs(&dir.path().join("ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            crate::provider(),
        )
        .build()
        .unwrap();
        for (pem, name) in [
            (&host.cert, "web1"),
            (&site.cert, "www.foobar.com"),
            (&site.cert, "foobar.com"),
        ] {
            let chain = crate::server_certs(pem).unwrap();
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(
                    &chain[0],
                    &[],
                    &name,
                    &[],
                    rustls::pki_types::UnixTime::now(),
                )
                .unwrap();
        }
    }

    /// (usages asked for, extended key usages in the certificate).
    #[test]
    fn extended_key_usages() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "test CA").unwrap();
        let names = ["h1".to_owned()];
        let check = |issued: Issued, server: bool, client: bool| {
            let pem = std::fs::read(&issued.cert).unwrap();
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert_eq!(
                (eku.server_auth, eku.client_auth),
                (server, client),
                "{}",
                issued.cert.display()
            );
            let mode = std::fs::metadata(&issued.key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        };
        check(
            ca.issue(dir.path(), "s", &names, false).unwrap(),
            true,
            false,
        );
        check(
            ca.issue(dir.path(), "sc", &names, true).unwrap(),
            true,
            true,
        );
        check(
            ca.issue_client(dir.path(), "c", &names).unwrap(),
            false,
            true,
        );
    }

    /// Renewal is due once a third of the span is left: a leaf of 60 s (back-dated 2 s)
    /// is due after 40.7 s, and not at once.
    #[test]
    fn renewal_is_due_after_two_thirds_of_the_life() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "test CA")
            .unwrap()
            .with_leaf_lifetime(std::time::Duration::from_secs(1));
        let leaf = ca.issue(dir.path(), "h", &["h".into()], false).unwrap();
        let pem = std::fs::read(&leaf.cert).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let v = cert.validity();
        // Clamped to the minimum; back-dated by a thirtieth.
        assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 62);
        assert!(!renewal_due(&leaf.cert).unwrap());
        // A leaf issued with a day's life a third of a span ago is not due; one whose
        // remaining time is below a third of its span is.
        let span = |from: i64, to: i64| {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let mut p = CertificateParams::new(vec!["x".to_owned()]).unwrap();
            p.not_before = OffsetDateTime::from_unix_timestamp(now + from).unwrap();
            p.not_after = OffsetDateTime::from_unix_timestamp(now + to).unwrap();
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let c = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
            let path = dir.path().join("x.pem");
            std::fs::write(&path, c.pem()).unwrap();
            renewal_due(&path).unwrap()
        };
        assert!(!span(-100, 200));
        assert!(!span(-190, 110));
        assert!(span(-210, 90));
        assert!(span(-400, -10));
        assert!(renewal_due(&dir.path().join("missing.pem")).is_err());
    }

    #[test]
    fn mismatched_key_is_refused_with_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "test CA").unwrap();
        let a = ca
            .issue(dir.path(), "a", &["a.test".into()], false)
            .unwrap();
        let b = ca
            .issue(dir.path(), "b", &["b.test".into()], false)
            .unwrap();
        let err = crate::load_certified_key(&a.cert, &b.key)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.key") && err.contains("does not match"),
            "{err}"
        );
    }
    #[test]
    fn a_placeholder_is_self_signed_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("p/site.pem"), dir.path().join("p/site.key"));
        let names = vec!["www.foobar.com".to_owned(), "foobar.com".to_owned()];
        self_signed(
            &cert,
            &key,
            &names,
            std::time::Duration::from_secs(7 * 86_400),
        )
        .unwrap();
        let loaded = crate::load_certified_key(&cert, &key).unwrap();
        assert_eq!(loaded.info.names, names);
        let left = loaded.info.not_after_unix - OffsetDateTime::now_utc().unix_timestamp();
        assert!((6 * 86_400..=7 * 86_400).contains(&left), "{left}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pem = std::fs::read(&cert).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(x.issuer(), x.subject(), "self-signed");
        assert!(!renewal_due(&cert).unwrap());
    }
}
