//! `backup.toml`: the backup host's store, schedule, retention, the database servers it
//! follows and how it logs in to them. Validated through the shared [`ConfigFile`]
//! toolkit, every error naming the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

/// A database server the backup host follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    /// Its MariaDB address (binlog archiving, verify's snapshot).
    pub mysql: SocketAddr,
    /// Its keeper's status listener (`GET /status`: who leads, who follows and how far).
    pub keeper: SocketAddr,
    /// Its backup source (mutual TLS).
    pub source: SocketAddr,
}

/// A validated backup configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub host: String,
    pub status: SocketAddr,
    pub allow_from: AllowList,
    pub store: PathBuf,
    pub key_file: PathBuf,
    /// The archiver's plaintext staging (a tmpfs).
    pub staging: PathBuf,
    /// Where verify restores (short: a unix socket lives there).
    pub scratch: PathBuf,
    pub keep_full: usize,
    pub max_age: Duration,
    pub full_every: Duration,
    pub incremental_every: Duration,
    pub verify_every: Duration,
    pub user: String,
    pub password_file: PathBuf,
    /// The CA of the database servers' certificates (TLS to MariaDB when set).
    pub mysql_ca: Option<PathBuf>,
    pub tick: Duration,
    /// This host's client certificate for the sources, and their CA.
    pub tls_ca: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub servers: Vec<Server>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    host: Option<String>,
    #[serde(default)]
    listen: FileListen,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    schedule: FileSchedule,
    #[serde(default)]
    archive: FileArchive,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    servers: Vec<FileServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListen {
    status: Option<String>,
    allow_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    dir: Option<String>,
    key_file: Option<String>,
    staging: Option<String>,
    scratch: Option<String>,
    keep_full: Option<usize>,
    max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    full_every: Option<String>,
    incremental_every: Option<String>,
    verify_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArchive {
    user: Option<String>,
    password_file: Option<String>,
    ca: Option<String>,
    tick: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    host: Option<String>,
    mysql: Option<String>,
    keeper: Option<String>,
    source: Option<String>,
}

fn name_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn path(c: &mut Checker<'_>, key: &str, v: Option<&String>, what: &str) -> PathBuf {
    match v.map(String::as_str) {
        Some(s) if !s.is_empty() => c.resolve(Path::new(s)),
        _ => {
            c.err(key, format!("missing; expected {what}"));
            PathBuf::new()
        }
    }
}

fn addr(c: &mut Checker<'_>, key: &str, v: Option<&String>, what: &str) -> SocketAddr {
    match v {
        Some(s) => c.addr(key, s),
        None => {
            c.err(key, format!("missing; expected {what}"));
            None
        }
    }
    .unwrap_or_else(|| ([0, 0, 0, 0], 0).into())
}

impl ConfigFile for Config {
    type File = FileConfig;

    fn validate(file: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(file);
        let host = f.host.clone().unwrap_or_else(|| "backup".into());
        if !name_like(&host) {
            c.err("host", format!("`{host}` is not a host name"));
        }
        let status = listen::addr(
            &mut c,
            "listen.status",
            f.listen.status.as_deref(),
            "127.0.0.1:9107",
        );
        let allow_from =
            listen::allow_list(&mut c, "listen.allow_from", f.listen.allow_from.as_deref());
        let s = &f.store;
        let store = path(&mut c, "store.dir", s.dir.as_ref(), "the store's directory");
        let key_file = path(
            &mut c,
            "store.key_file",
            s.key_file.as_ref(),
            "the store key's file (created 0600 if missing), outside the store",
        );
        if !key_file.as_os_str().is_empty() && key_file.starts_with(&store) {
            c.err(
                "store.key_file",
                "must not be inside store.dir: a copy of the store alone must be unreadable",
            );
        }
        let staging = s.staging.as_ref().map_or_else(
            || PathBuf::from("/run/rampart-backup"),
            |p| c.resolve(Path::new(p)),
        );
        let scratch = s.scratch.as_ref().map_or_else(
            || store.with_file_name("scratch"),
            |p| c.resolve(Path::new(p)),
        );
        let keep_full = c.range("store.keep_full", s.keep_full, 7, 1, 1000);
        let day = Duration::from_secs(86_400);
        let max_age = c.duration(
            "store.max_age",
            s.max_age.as_ref(),
            14 * day,
            day,
            3650 * day,
        );
        let sc = &f.schedule;
        let hour = Duration::from_secs(3600);
        let full_every = c.duration(
            "schedule.full_every",
            sc.full_every.as_ref(),
            day,
            Duration::from_secs(60),
            365 * day,
        );
        let incremental_every = c.duration(
            "schedule.incremental_every",
            sc.incremental_every.as_ref(),
            hour,
            Duration::from_secs(30),
            365 * day,
        );
        let verify_every = c.duration(
            "schedule.verify_every",
            sc.verify_every.as_ref(),
            day,
            Duration::from_secs(60),
            365 * day,
        );
        let a = &f.archive;
        let user = a.user.clone().unwrap_or_else(|| "rampart_backup".into());
        if !name_like(&user) {
            c.err("archive.user", format!("`{user}` is not an account name"));
        }
        let password_file = path(
            &mut c,
            "archive.password_file",
            a.password_file.as_ref(),
            "a file holding the account's password",
        );
        let mysql_ca = a.ca.as_ref().map(|p| c.resolve(Path::new(p)));
        let tick = c.duration(
            "archive.tick",
            a.tick.as_ref(),
            Duration::from_secs(1),
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let t = &f.tls;
        let tls_ca = path(
            &mut c,
            "tls.ca",
            t.ca.as_ref(),
            "the CA file of the sources' certificates",
        );
        let tls_cert = path(
            &mut c,
            "tls.cert",
            t.cert.as_ref(),
            "this host's client certificate",
        );
        let tls_key = path(&mut c, "tls.key", t.key.as_ref(), "its private key");
        let mut servers = Vec::new();
        if f.servers.is_empty() {
            c.err("servers", "missing; expected [[servers]] with host, mysql, keeper and source for each database host");
        }
        for (i, s) in f.servers.iter().enumerate() {
            let k = |n: &str| format!("servers[{i}].{n}");
            let host = s.host.clone().unwrap_or_default();
            if !name_like(&host) {
                c.err(k("host"), format!("`{host}` is not a host name"));
            }
            servers.push(Server {
                host,
                mysql: addr(&mut c, &k("mysql"), s.mysql.as_ref(), "its MariaDB IP:PORT"),
                keeper: addr(
                    &mut c,
                    &k("keeper"),
                    s.keeper.as_ref(),
                    "its keeper's status IP:PORT",
                ),
                source: addr(
                    &mut c,
                    &k("source"),
                    s.source.as_ref(),
                    "its backup source IP:PORT",
                ),
            });
        }
        c.finish(Config {
            file: file.to_owned(),
            host,
            status,
            allow_from,
            store,
            key_file,
            staging,
            scratch,
            keep_full,
            max_age,
            full_every,
            incremental_every,
            verify_every,
            user,
            password_file,
            mysql_ca,
            tick,
            tls_ca,
            tls_cert,
            tls_key,
            servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, String> {
        let f: FileConfig =
            rampart_telemetry::config::parse_toml(Path::new("/etc/backup.toml"), text)
                .map_err(|e| e.to_string())?;
        Config::validate(Path::new("/etc/backup.toml"), &f).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[store]
dir = "/var/lib/rampart/backup/store"
key_file = "/etc/rampart/backup.key"
[archive]
password_file = "db-backup.password"
[tls]
ca = "ca.pem"
cert = "backup.pem"
key = "backup.key"
[[servers]]
host = "db1"
mysql = "198.18.2.21:3306"
keeper = "198.18.3.21:9104"
source = "198.18.2.21:9108"
"#;

    #[test]
    fn defaults_and_resolution() {
        let c = check(GOOD).unwrap();
        assert_eq!(c.host, "backup");
        assert_eq!(c.keep_full, 7);
        assert_eq!(c.full_every, Duration::from_secs(86_400));
        assert_eq!(c.incremental_every, Duration::from_secs(3600));
        assert_eq!(c.password_file, PathBuf::from("/etc/db-backup.password"));
        assert_eq!(c.scratch, PathBuf::from("/var/lib/rampart/backup/scratch"));
        assert_eq!(c.staging, PathBuf::from("/run/rampart-backup"));
        assert_eq!(c.servers[0].source, "198.18.2.21:9108".parse().unwrap());
    }

    #[test]
    fn every_error_names_file_and_key() {
        let bad = GOOD
            .replace(
                "key_file = \"/etc/rampart/backup.key\"",
                "key_file = \"/var/lib/rampart/backup/store/k\"\nkeep_full = 0",
            )
            .replace("mysql = \"198.18.2.21:3306\"", "mysql = \"nowhere\"")
            + "[schedule]\nfull_every = \"sometimes\"\n";
        let err = check(&bad).unwrap_err();
        for want in [
            "store.key_file",
            "must not be inside store.dir",
            "store.keep_full",
            "servers[0].mysql",
            "schedule.full_every",
            "/etc/backup.toml",
        ] {
            assert!(err.contains(want), "{want} not in: {err}");
        }
        let err = check("[store]\nsize = 3\n").unwrap_err();
        assert!(err.contains("size"), "{err}");
    }
}
