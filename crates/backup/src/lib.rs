//! Backups of the database pair (issue 16): full and incremental copies taken with
//! `mariadb-backup`, the binlog archived as it is written, both kept in a store where
//! every object is compressed, encrypted and checksummed; restore to a time or a GTID
//! into a scratch server, and verify.
//!
//! - `seal.rs`: the sealed object format (deflate, then AES-256-GCM under a key derived
//!   per object, in chunks; truncation and reordering are detected).
//! - `store.rs`: the store's layout, manifests, listing, checksums and retention.
//! - `tools.rs`: the MariaDB programs it drives (`mariadb-backup`, `mbstream`,
//!   `mariadb-binlog`, `mariadbd`) and what their output files say.
//! - `backup.rs`, `archive.rs`, `restore.rs`: taking a backup, archiving the binlog,
//!   restoring and verifying.

pub mod archive;
pub mod backup;
pub mod binlog;
pub mod config;
pub mod mbstream;
pub mod restore;
pub mod seal;
pub mod service;
pub mod source;
pub mod store;
pub mod tools;
pub mod verify;

/// What went wrong, with the thing it went wrong on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {what}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A sealed object failed its authentication: a flipped bit, a wrong key, a
    /// truncated or reordered file.
    #[error("{0}: does not authenticate (damaged, truncated or sealed with another key)")]
    Damaged(String),
    /// A checksum in a manifest does not match its object.
    #[error("{path}: checksum {found} does not match the manifest's {expected}")]
    Checksum {
        path: String,
        expected: String,
        found: String,
    },
    /// Something the caller asked for is impossible or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// A program exited with an error.
    #[error("{program} {what} failed ({status}): {tail}")]
    Program {
        program: String,
        what: &'static str,
        status: String,
        tail: String,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
