//! Certificates and TLS configuration shared by every rampart service: one crypto
//! stack (rustls with aws-lc-rs), PEM loading, SNI, and the local CA behind `rampart cert`.
//!
//! Invariant: nothing here logs key material; private keys are only ever written with
//! mode 0600 (see [`pki::write_private`]).

pub mod pki;
mod server;

pub use server::{
    cert_info, client_config, load_certified_key, load_certs as server_certs, provider,
    server_config, server_config_mtls, stamp, CertInfo, ClientTls, LoadedCert, Reloading,
    SiteCerts, Stamp, RELOAD_CHECK,
};

use std::path::PathBuf;

/// Everything that can go wrong while loading or creating certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}
