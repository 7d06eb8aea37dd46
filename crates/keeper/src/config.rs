//! `keeper.toml`: which host this keeper runs on, its database server and peers, the
//! etcd cluster it coordinates through, and the failover timings. Validated through the
//! shared [`ConfigFile`] toolkit, every error naming the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

/// The defaults an operator would otherwise have to know.
pub mod defaults {
    use std::time::Duration;
    /// The leader lease: the longest a dead primary keeps the key.
    pub const LEASE_TTL: Duration = Duration::from_secs(6);
    /// How often the lease is renewed: several tries fit in the 4 s a leader has before
    /// it fences itself (the TTL less 2 s), so an etcd election (about 2 s) is ridden
    /// out.
    pub const RENEW_EVERY: Duration = Duration::from_secs(1);
    /// The keeper's loop period: how fast it notices a change.
    pub const TICK: Duration = Duration::from_millis(250);
    /// How long after a failover another automatic one is refused.
    pub const QUIET_PERIOD: Duration = Duration::from_secs(300);
    /// How long a named sync standby may be disconnected before the primary clears the
    /// standby and stops waiting for it (degrades to asynchronous replication).
    pub const DEGRADE_AFTER: Duration = Duration::from_secs(5);
    /// How long the keeper's own server may not answer before the keeper kills it.
    pub const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(3);
    /// One etcd request, one SQL statement.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
}

/// Another database server of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    pub server_id: u32,
    pub addr: SocketAddr,
}

/// A validated keeper configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    /// This host's name, as the leader key and member keys carry it.
    pub host: String,
    pub server_id: u32,
    /// The plan's initial primary: the one keeper that may create leadership in an etcd
    /// that has never had any.
    pub bootstrap: bool,
    /// The status and metrics listener.
    pub status: SocketAddr,
    pub allow_from: AllowList,
    /// This server's address, as clients and replicas dial it (TLS names it).
    pub addr: SocketAddr,
    pub user: String,
    pub password_file: PathBuf,
    pub repl_user: String,
    pub repl_password_file: PathBuf,
    /// The CA of every database server's certificate: all SQL is TLS, verified.
    pub ca: PathBuf,
    /// The application's accounts: their sessions are killed on demotion.
    pub app_users: Vec<String>,
    pub peers: Vec<Peer>,
    pub etcd_endpoints: Vec<String>,
    pub etcd_ca: PathBuf,
    pub etcd_cert: PathBuf,
    pub etcd_key: PathBuf,
    /// Every key lives under this prefix (ends with `/`).
    pub prefix: String,
    pub lease_ttl: Duration,
    pub renew_every: Duration,
    pub tick: Duration,
    pub quiet_period: Duration,
    pub degrade_after: Duration,
    pub unresponsive_after: Duration,
    pub request_timeout: Duration,
    /// Test only: the primary's semi-sync timeout. `None` (the default): wait for the
    /// standby forever (no silent fallback to asynchronous). `Some(t)` restores the
    /// classic fallback after `t`, which can lose acknowledged writes: the negative
    /// control of the failover test.
    pub semi_sync_fallback: Option<Duration>,
    /// The backup source this host serves the backup host, if the site has one.
    pub backup: Option<BackupSource>,
}

/// `[backup]`: the listener the backup host pulls `mariadb-backup` streams from
/// (mutual TLS; only the named client certificates), and where the server's files are.
#[derive(Clone, Debug)]
pub struct BackupSource {
    pub listen: SocketAddr,
    pub allow_from: AllowList,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA the backup host's client certificate must chain to.
    pub ca: PathBuf,
    /// The client certificate names allowed to pull (the backup host's).
    pub clients: Vec<String>,
    /// The local server's socket and data directory, and a private work directory.
    pub socket: PathBuf,
    pub datadir: PathBuf,
    pub workdir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    host: Option<String>,
    server_id: Option<u32>,
    bootstrap: Option<bool>,
    #[serde(default)]
    listen: FileListen,
    #[serde(default)]
    mariadb: FileMariadb,
    #[serde(default)]
    peers: Vec<FilePeer>,
    #[serde(default)]
    etcd: FileEtcd,
    #[serde(default)]
    failover: FileFailover,
    backup: Option<FileBackup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackup {
    listen: Option<String>,
    allow_from: Option<Vec<String>>,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    clients: Option<Vec<String>>,
    socket: Option<String>,
    datadir: Option<String>,
    workdir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListen {
    status: Option<String>,
    allow_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMariadb {
    addr: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
    repl_user: Option<String>,
    repl_password_file: Option<String>,
    ca: Option<String>,
    app_users: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    host: String,
    server_id: u32,
    addr: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEtcd {
    endpoints: Option<Vec<String>>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFailover {
    lease_ttl: Option<String>,
    renew_every: Option<String>,
    tick: Option<String>,
    quiet_period: Option<String>,
    degrade_after: Option<String>,
    unresponsive_after: Option<String>,
    request_timeout: Option<String>,
    semi_sync_fallback: Option<String>,
}

fn name_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn required<'a>(c: &mut Checker<'_>, key: &str, v: Option<&'a String>, what: &str) -> &'a str {
    match v.map(String::as_str) {
        Some(s) if !s.is_empty() => s,
        _ => {
            c.err(key, format!("missing; expected {what}"));
            ""
        }
    }
}

fn path(c: &mut Checker<'_>, key: &str, v: Option<&String>, what: &str) -> PathBuf {
    let s = required(c, key, v, what);
    c.resolve(Path::new(s))
}

impl ConfigFile for Config {
    type File = FileConfig;

    fn validate(file: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(file);
        let host = required(
            &mut c,
            "host",
            f.host.as_ref(),
            "this host's name, such as \"db1\"",
        );
        if !host.is_empty() && !name_like(host) {
            c.err(
                "host",
                format!(
                    "`{host}` is not a host name; expected 1-64 letters, digits, `-`, `_` or `.`"
                ),
            );
        }
        let server_id = match f.server_id {
            Some(id) if id >= 1 => id,
            Some(id) => {
                c.err(
                    "server_id",
                    format!("{id} is out of range; expected 1 to 4294967295"),
                );
                0
            }
            None => {
                c.err("server_id", "missing; expected this server's `--server-id`");
                0
            }
        };
        let status = listen::addr(
            &mut c,
            "status",
            f.listen.status.as_deref(),
            "127.0.0.1:9104",
        );
        let allow_from = listen::allow_list(&mut c, "allow_from", f.listen.allow_from.as_deref());
        let m = &f.mariadb;
        let addr_s = required(
            &mut c,
            "mariadb.addr",
            m.addr.as_ref(),
            "this server's IP:PORT",
        );
        let addr = c
            .addr("mariadb.addr", addr_s)
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        let user = required(
            &mut c,
            "mariadb.user",
            m.user.as_ref(),
            "the keeper's database account",
        )
        .to_owned();
        let password_file = path(
            &mut c,
            "mariadb.password_file",
            m.password_file.as_ref(),
            "a file holding its password",
        );
        let repl_user = required(
            &mut c,
            "mariadb.repl_user",
            m.repl_user.as_ref(),
            "the replication account",
        )
        .to_owned();
        let repl_password_file = path(
            &mut c,
            "mariadb.repl_password_file",
            m.repl_password_file.as_ref(),
            "a file holding its password",
        );
        let ca = path(
            &mut c,
            "mariadb.ca",
            m.ca.as_ref(),
            "the CA file of the database servers' certificates",
        );
        let app_users = m.app_users.clone().unwrap_or_default();
        for (i, u) in app_users.iter().enumerate() {
            if !name_like(u) {
                c.err(
                    format!("mariadb.app_users[{i}]"),
                    format!("`{u}` is not an account name"),
                );
            }
        }
        let mut peers = Vec::new();
        for (i, p) in f.peers.iter().enumerate() {
            if !name_like(&p.host) || p.host == host {
                c.err(
                    format!("peers[{i}].host"),
                    format!("`{}` must be another database host's name", p.host),
                );
            }
            if p.server_id == 0 || p.server_id == server_id {
                c.err(
                    format!("peers[{i}].server_id"),
                    format!(
                        "{} must be a server id other than 0 and this server's",
                        p.server_id
                    ),
                );
            }
            if let Some(a) = c.addr(&format!("peers[{i}].addr"), &p.addr) {
                peers.push(Peer {
                    host: p.host.clone(),
                    server_id: p.server_id,
                    addr: a,
                });
            }
        }
        let e = &f.etcd;
        let etcd_endpoints = e.endpoints.clone().unwrap_or_default();
        if etcd_endpoints.is_empty() {
            c.err("etcd.endpoints", "missing; expected the etcd members' client URLs, such as [\"https://198.18.9.2:2379\"]");
        }
        for (i, ep) in etcd_endpoints.iter().enumerate() {
            if !ep.starts_with("https://") {
                c.err(
                    format!("etcd.endpoints[{i}]"),
                    format!(
                        "`{ep}` must be an https:// URL (etcd is reached over mutual TLS only)"
                    ),
                );
            }
        }
        let etcd_ca = path(
            &mut c,
            "etcd.ca",
            e.ca.as_ref(),
            "the CA file of the etcd members' certificates",
        );
        let etcd_cert = path(
            &mut c,
            "etcd.cert",
            e.cert.as_ref(),
            "this host's etcd client certificate",
        );
        let etcd_key = path(&mut c, "etcd.key", e.key.as_ref(), "its private key");
        let prefix = e
            .prefix
            .clone()
            .unwrap_or_else(|| "/rampart/db/".to_owned());
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() > 200 {
            c.err(
                "etcd.prefix",
                format!("`{prefix}` must start and end with `/`, such as \"/rampart/db/\""),
            );
        }
        let fo = &f.failover;
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let lease_ttl = c.duration(
            "failover.lease_ttl",
            fo.lease_ttl.as_ref(),
            defaults::LEASE_TTL,
            s(2),
            s(60),
        );
        let renew_every = c.duration(
            "failover.renew_every",
            fo.renew_every.as_ref(),
            defaults::RENEW_EVERY,
            ms(200),
            s(20),
        );
        let tick = c.duration(
            "failover.tick",
            fo.tick.as_ref(),
            defaults::TICK,
            ms(50),
            s(5),
        );
        let quiet_period = c.duration(
            "failover.quiet_period",
            fo.quiet_period.as_ref(),
            defaults::QUIET_PERIOD,
            s(0),
            s(86_400),
        );
        let degrade_after = c.duration(
            "failover.degrade_after",
            fo.degrade_after.as_ref(),
            defaults::DEGRADE_AFTER,
            s(1),
            s(3600),
        );
        let unresponsive_after = c.duration(
            "failover.unresponsive_after",
            fo.unresponsive_after.as_ref(),
            defaults::UNRESPONSIVE_AFTER,
            s(1),
            s(60),
        );
        let request_timeout = c.duration(
            "failover.request_timeout",
            fo.request_timeout.as_ref(),
            defaults::REQUEST_TIMEOUT,
            ms(100),
            s(10),
        );
        if renew_every + request_timeout * 2 > lease_ttl {
            c.err(
                "failover.renew_every",
                format!(
                    "{renew_every:?} plus two request timeouts ({request_timeout:?} each) exceeds lease_ttl {lease_ttl:?}; \
                     a leader could lose its lease between two renewals"
                ),
            );
        }
        let semi_sync_fallback = match fo.semi_sync_fallback.as_deref() {
            None | Some("off") => None,
            Some(v) => Some(c.duration(
                "failover.semi_sync_fallback",
                Some(&v.to_owned()),
                s(2),
                ms(100),
                s(3600),
            )),
        };
        let backup = f.backup.as_ref().map(|b| {
            let listen = match b.listen.as_deref() {
                Some(v) => c.addr("backup.listen", v),
                None => {
                    c.err(
                        "backup.listen",
                        "missing; expected the backup source's IP:PORT",
                    );
                    None
                }
            }
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
            let clients = b.clients.clone().unwrap_or_default();
            if clients.is_empty() || clients.iter().any(|n| !name_like(n)) {
                c.err(
                    "backup.clients",
                    "expected the backup host's certificate names, such as [\"backup\"]",
                );
            }
            BackupSource {
                listen,
                allow_from: listen::allow_list(
                    &mut c,
                    "backup.allow_from",
                    b.allow_from.as_deref(),
                ),
                cert: path(
                    &mut c,
                    "backup.cert",
                    b.cert.as_ref(),
                    "this host's certificate",
                ),
                key: path(&mut c, "backup.key", b.key.as_ref(), "its private key"),
                ca: path(
                    &mut c,
                    "backup.ca",
                    b.ca.as_ref(),
                    "the CA of the backup host's client certificate",
                ),
                clients,
                socket: path(
                    &mut c,
                    "backup.socket",
                    b.socket.as_ref(),
                    "the local server's unix socket",
                ),
                datadir: path(
                    &mut c,
                    "backup.datadir",
                    b.datadir.as_ref(),
                    "the local server's data directory",
                ),
                workdir: path(
                    &mut c,
                    "backup.workdir",
                    b.workdir.as_ref(),
                    "a private directory for mariadb-backup's files",
                ),
            }
        });
        c.finish(Config {
            backup,
            file: file.to_owned(),
            host: host.to_owned(),
            server_id,
            bootstrap: f.bootstrap.unwrap_or(false),
            status,
            allow_from,
            addr,
            user,
            password_file,
            repl_user,
            repl_password_file,
            ca,
            app_users,
            peers,
            etcd_endpoints,
            etcd_ca,
            etcd_cert,
            etcd_key,
            prefix,
            lease_ttl,
            renew_every,
            tick,
            quiet_period,
            degrade_after,
            unresponsive_after,
            request_timeout,
            semi_sync_fallback,
        })
    }
}

impl Config {
    /// The peer named `host`.
    pub fn peer(&self, host: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.host == host)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
host = "db1"
server_id = 1
bootstrap = true
[listen]
status = "127.0.0.1:9104"
[mariadb]
addr = "127.0.0.1:3306"
user = "rampart_keeper"
password_file = "keeper.pw"
repl_user = "rampart_repl"
repl_password_file = "repl.pw"
ca = "ca.crt"
app_users = ["foobar_app"]
[[peers]]
host = "db2"
server_id = 2
addr = "127.0.0.2:3306"
[etcd]
endpoints = ["https://127.0.0.1:2379"]
ca = "ca.crt"
cert = "etcd.crt"
key = "etcd.key"
"#;

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(Path::new("/x/keeper.toml"), GOOD).unwrap();
        assert_eq!(c.host, "db1");
        assert_eq!(c.peers[0].server_id, 2);
        assert_eq!(c.lease_ttl, defaults::LEASE_TTL);
        assert_eq!(c.password_file, Path::new("/x/keeper.pw"));
        assert_eq!(c.semi_sync_fallback, None);
        assert_eq!(c.prefix, "/rampart/db/");
    }

    #[test]
    fn errors_name_the_key_and_what_is_valid() {
        let bad = GOOD
            .replace("server_id = 2", "server_id = 1")
            .replace("https://127.0.0.1:2379", "http://127.0.0.1:2379")
            .replace("[etcd]", "[failover]\nlease_ttl = \"2s\"\n[etcd]");
        let e = Config::parse(Path::new("/x/keeper.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/keeper.toml: peers[0].server_id"), "{e}");
        assert!(
            e.contains("etcd.endpoints[0]: `http://127.0.0.1:2379` must be an https://"),
            "{e}"
        );
        assert!(e.contains("failover.renew_every"), "{e}");
        let e = Config::parse(Path::new("k.toml"), "host = \"db1\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.toml: line 2"), "{e}");
    }

    #[test]
    fn the_backup_source_is_optional_and_checked() {
        assert!(Config::parse(Path::new("/x/keeper.toml"), GOOD)
            .unwrap()
            .backup
            .is_none());
        let with = format!(
            "{GOOD}[backup]\nlisten = \"127.0.0.1:9108\"\nallow_from = [\"127.0.0.9\"]\ncert = \"db1.pem\"\n\
             key = \"db1.key\"\nca = \"ca.pem\"\nclients = [\"backup\"]\nsocket = \"/run/m.sock\"\n\
             datadir = \"data\"\nworkdir = \"backup-work\"\n"
        );
        let b = Config::parse(Path::new("/x/keeper.toml"), &with)
            .unwrap()
            .backup
            .unwrap();
        assert_eq!(b.clients, ["backup"]);
        assert_eq!(b.datadir, Path::new("/x/data"));
        let e = Config::parse(
            Path::new("/x/keeper.toml"),
            &with.replace("clients = [\"backup\"]", "clients = []"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("backup.clients"), "{e}");
    }
}
