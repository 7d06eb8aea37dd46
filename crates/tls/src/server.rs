//! rustls server and client configurations: TLS 1.2/1.3 only, AEAD suites only (the
//! aws-lc-rs defaults, which are Mozilla "intermediate"), ALPN, and SNI over several
//! certificates whose names come from their own subjectAltName extension.
//!
//! Every certificate a configuration serves or presents is [`Reloading`]: at most once
//! per [`RELOAD_CHECK`], a handshake that needs it looks at its two files (inode, size,
//! modification time) and, when either changed, loads the pair again. A renewed
//! certificate therefore reaches the next handshake without a restart, and connections
//! already open keep theirs. A pair that does not load (the key renamed into place before
//! its certificate, a broken file) leaves the previous one in use until it does.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::client::ResolvesClientCert;
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
    pub key_path: PathBuf,
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
        key_path: key_path.to_owned(),
    })
}

/// How often, at most, a handshake looks at a certificate's files for a renewal.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What identifies a file's contents cheaply: inode, size and modification time. A
/// file replaced atomically (a renewal) gets a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(u64, u64, i64, i64);

/// The [`Stamp`] of the file at `path`, `None` when it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp(m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// A certificate and key, loaded from their files and loaded again when the files
/// change (see the module documentation).
pub struct Reloading {
    current: RwLock<LoadedCert>,
    /// The files' stamps the current pair was loaded from (or last failed to load
    /// from), and when they were last looked at.
    seen: Mutex<([Option<Stamp>; 2], Instant)>,
    reloads: AtomicU64,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field(
                "current",
                &*self.current.read().unwrap_or_else(|e| e.into_inner()),
            )
            .finish_non_exhaustive()
    }
}

impl Reloading {
    /// Watches the files `loaded` came from, starting with `loaded`.
    pub fn new(loaded: LoadedCert) -> Self {
        let stamps = [stamp(&loaded.cert_path), stamp(&loaded.key_path)];
        Self {
            current: RwLock::new(loaded),
            seen: Mutex::new((stamps, Instant::now())),
            reloads: AtomicU64::new(0),
        }
    }

    /// The pair to use now, after looking at the files when [`RELOAD_CHECK`] has
    /// passed since the last look.
    pub fn current(&self) -> LoadedCert {
        self.refresh(false);
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times a changed pair was loaded.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Looks at the files (now, with `force`) and loads a changed pair. Handshakes
    /// never wait for each other here: a look already under way is not repeated.
    pub fn refresh(&self, force: bool) {
        let Ok(mut seen) = self.seen.try_lock() else {
            return;
        };
        if !force && seen.1.elapsed() < RELOAD_CHECK {
            return;
        }
        seen.1 = Instant::now();
        let (cert_path, key_path) = {
            let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
            (cur.cert_path.clone(), cur.key_path.clone())
        };
        let stamps = [stamp(&cert_path), stamp(&key_path)];
        if stamps == seen.0 {
            return;
        }
        match load_certified_key(&cert_path, &key_path) {
            Ok(fresh) => {
                tracing::info!(
                    cert = %cert_path.display(),
                    not_after = fresh.info.not_after_unix,
                    "certificate reloaded"
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                seen.0 = stamps;
            }
            // Half-renewed (the key already replaced, the certificate not yet) or
            // broken: keep serving the previous pair and look again next time, without
            // recording these stamps, so the completed pair is picked up.
            Err(e) => tracing::debug!(error = %e, "certificate files changed but do not load yet"),
        }
    }
}

/// The server's certificates, chosen by SNI. The first one is the default, served when
/// the client sends no SNI or a name no certificate covers.
#[derive(Debug)]
pub struct SiteCerts {
    certs: Vec<Reloading>,
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
            certs: certs.into_iter().map(Reloading::new).collect(),
            exact,
            wildcard,
        }
    }

    /// The certificates as they are now. SNI keeps choosing by the names each had
    /// when it was first loaded.
    pub fn certs(&self) -> Vec<LoadedCert> {
        self.certs.iter().map(Reloading::current).collect()
    }

    /// How many renewed pairs were loaded, over every certificate.
    pub fn reloads(&self) -> u64 {
        self.certs.iter().map(Reloading::reloads).sum()
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
            .map(|i| self.certs[i].current().key)
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

/// A client certificate that follows renewals of its files.
#[derive(Debug)]
struct ClientCert(Reloading);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key)
    }

    fn has_certs(&self) -> bool {
        true
    }
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
        Some((cert, key)) => builder.with_client_cert_resolver(Arc::new(ClientCert(
            Reloading::new(load_certified_key(cert, key)?),
        ))),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;
    use crate::pki::Ca;
    use rustls::pki_types::ServerName;

    /// A full handshake in memory: (the client certificate the server saw, the server
    /// certificate the client saw).
    fn handshake(
        server: &Arc<rustls::ServerConfig>,
        client: &Arc<rustls::ClientConfig>,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut c = rustls::ClientConnection::new(
            Arc::clone(client),
            ServerName::try_from("www.foobar.com").unwrap(),
        )
        .unwrap();
        let mut s = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        (
            s.peer_certificates().unwrap()[0].to_vec(),
            c.peer_certificates().unwrap()[0].to_vec(),
        )
    }

    fn der(path: &Path) -> Vec<u8> {
        load_certs(path).unwrap()[0].to_vec()
    }

    /// Renewed files reach the next handshake on both sides, without a new
    /// configuration; a half-renewed pair leaves the previous one in use.
    #[test]
    fn renewed_certificates_reach_the_next_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Ca::create(d, "test CA").unwrap();
        let site_names = ["www.foobar.com".to_owned()];
        let site = ca.issue(d, "site", &site_names, false).unwrap();
        let host = ca.issue_client(d, "web1", &["web1".to_owned()]).unwrap();
        let certs = Arc::new(SiteCerts::new(vec![load_certified_key(
            &site.cert, &site.key,
        )
        .unwrap()]));
        let server =
            Arc::new(server_config_mtls(Arc::clone(&certs), &[], &d.join("ca.pem")).unwrap());
        let mut client = client_config(&ClientTls {
            ca: d.join("ca.pem"),
            client_cert: Some((host.cert.clone(), host.key.clone())),
        })
        .unwrap();
        // Every handshake a full one, so each shows the certificates in use.
        client.resumption = rustls::client::Resumption::disabled();
        client.alpn_protocols.clear();
        let client = Arc::new(client);
        let first = (der(&host.cert), der(&site.cert));
        assert_eq!(handshake(&server, &client), first);

        ca.issue(d, "site", &site_names, false).unwrap();
        ca.issue_client(d, "web1", &["web1".to_owned()]).unwrap();
        let second = (der(&host.cert), der(&site.cert));
        assert_ne!(second.0, first.0);
        assert_ne!(second.1, first.1);
        std::thread::sleep(RELOAD_CHECK + Duration::from_millis(100));
        assert_eq!(handshake(&server, &client), second);
        assert_eq!(certs.reloads(), 1);

        // Only the key replaced: the previous pair stays in use, and the whole new pair
        // is taken once its certificate follows.
        let other = tempfile::tempdir().unwrap();
        let next = ca.issue(other.path(), "site", &site_names, false).unwrap();
        std::fs::copy(&next.key, &site.key).unwrap();
        std::thread::sleep(RELOAD_CHECK + Duration::from_millis(100));
        assert_eq!(handshake(&server, &client).1, second.1);
        std::fs::copy(&next.cert, &site.cert).unwrap();
        std::thread::sleep(RELOAD_CHECK + Duration::from_millis(100));
        assert_eq!(handshake(&server, &client).1, der(&next.cert));
        assert_eq!(certs.reloads(), 2);
        assert_eq!(certs.certs()[0].info.names, site_names);
    }
}
