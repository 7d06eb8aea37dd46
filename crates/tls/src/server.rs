//! rustls server and client configurations: TLS 1.2/1.3 only, AEAD suites only (the
//! aws-lc-rs defaults, which are Mozilla "intermediate"), ALPN, and SNI over several
//! certificates whose names come from their own subjectAltName extension.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// The one crypto provider of the whole binary: aws-lc-rs, with its default suites
/// (TLS 1.3 AES-GCM/ChaCha20, TLS 1.2 ECDHE with AES-GCM/ChaCha20; no CBC, no RSA kx).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Facts about a loaded certificate that metrics and SNI need.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// DNS names from subjectAltName, lowercased; may contain `*.` wildcards.
    pub names: Vec<String>,
    /// notAfter as seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// A certificate chain with its signing key, ready to serve.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub cert_path: PathBuf,
}

impl fmt::Debug for LoadedCert {
    // Never print the key: only the path and names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert")
            .field("cert_path", &self.cert_path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(path, format!("no usable PRIVATE KEY block: {e}")))
}

/// Reads what SNI and metrics need from a DER certificate.
pub fn cert_info(path: &Path, der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| invalid(path, format!("unparsable certificate: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        names,
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

/// Loads a certificate chain and its private key and checks that they belong together.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    let chain = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let info = cert_info(cert_path, &chain[0])?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        invalid(
            key_path,
            format!("private key does not match {}", cert_path.display()),
        )
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
        cert_path: cert_path.to_owned(),
    })
}

/// The server's certificates, chosen by SNI. The first one is the default, served when
/// the client sends no SNI or a name no certificate covers.
#[derive(Debug)]
pub struct SiteCerts {
    certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl SiteCerts {
    /// Builds the SNI index; an empty list is refused by the caller's validation.
    pub fn new(certs: Vec<LoadedCert>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for n in &c.info.names {
                if let Some(rest) = n.strip_prefix("*.") {
                    wildcard.entry(rest.to_owned()).or_insert(i);
                } else {
                    exact.entry(n.clone()).or_insert(i);
                }
            }
        }
        Self {
            certs,
            exact,
            wildcard,
        }
    }

    pub fn certs(&self) -> &[LoadedCert] {
        &self.certs
    }

    /// The index of the certificate that serves `sni`.
    pub fn select(&self, sni: Option<&str>) -> Option<usize> {
        if self.certs.is_empty() {
            return None;
        }
        let Some(name) = sni else { return Some(0) };
        let name = name.to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Some(i);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(&i) = self.wildcard.get(parent) {
                return Some(i);
            }
        }
        Some(0)
    }
}

impl ResolvesServerCert for SiteCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(hello.server_name())
            .map(|i| Arc::clone(&self.certs[i].key))
    }
}

/// A server configuration: TLS 1.3 and 1.2, the given ALPN protocols, a session cache and
/// rotating ticket keys for resumption.
pub fn server_config(
    certs: Arc<SiteCerts>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    // The server picks the cipher suite, in the provider's order (AES-256-GCM, AES-128-GCM,
    // ChaCha20-Poly1305; all AEAD with forward secrecy): every suite offered is strong
    // either way, and scanners (testssl.sh) rate a server without an order of its own as
    // a finding.
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.session_storage = ServerSessionMemoryCache::new(20_000);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(cfg)
}

/// Like [`server_config`], but every client must present a certificate signed by the CA
/// in `client_ca` (mutual TLS, as between the load balancer and the web servers).
pub fn server_config_mtls(
    certs: Arc<SiteCerts>,
    alpn: &[&[u8]],
    client_ca: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(client_ca)? {
        roots
            .add(cert)
            .map_err(|e| invalid(client_ca, format!("unusable CA certificate: {e}")))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| invalid(client_ca, format!("cannot verify clients with it: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.session_storage = ServerSessionMemoryCache::new(20_000);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(cfg)
}

/// How to talk TLS to a backend: the CA that must have signed it, and optionally a
/// client certificate for mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A client configuration that trusts only `tls.ca` and speaks HTTP/1.1.
pub fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&tls.ca)? {
        roots
            .add(cert)
            .map_err(|e| invalid(&tls.ca, format!("unusable CA certificate: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut cfg = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = load_certs(cert)?;
            let key_der = load_key(key)?;
            builder.with_client_auth_cert(chain, key_der)?
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
