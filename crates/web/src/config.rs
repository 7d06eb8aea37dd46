//! The web server's configuration in two layers: `File*` structs that mirror the TOML
//! (unknown keys refused) and the validated [`Config`] the server runs on. Every problem
//! is collected and names the file, the key and what would be valid. Relative paths are
//! resolved against the config file's directory. Reading and parsing are
//! `rampart_telemetry::config::ConfigFile`'s, as for every service.
//!
//! The database's servers come one of two ways: the static `database.primary` (and
//! `database.replica`), or every server as `[[database.servers]]` (`host`, `addr`,
//! `server_id`) with `[database.etcd]`, whose leader key names the primary among them.
//!
//! Secure defaults: the app listener binds loopback unless told otherwise, the metrics
//! listener is loopback-only, bodies are capped at 16 KiB, every connection has a header
//! timeout (which also bounds idle keep-alive) and there is a connection cap. Database passwords are read from
//! files (never from the config itself), and `X-Db-Role` is off unless asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_telemetry::access_log::LogTarget;
use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// This server's name, for logs and the `X-Served-By`-style header of the page.
    pub name: Option<String>,
    #[serde(default)]
    pub listen: FileListen,
    pub tls: Option<FileTls>,
    #[serde(default)]
    pub site: FileSite,
    pub database: Option<FileDatabase>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub runtime: FileRuntime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRuntime {
    /// Tokio worker threads; 0 (the default) is one per core.
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub app: Option<String>,
    pub admin: Option<String>,
    /// Source addresses allowed to connect to the app listener (defence in depth: the
    /// firewall says the same). Empty or absent: anyone.
    pub allow_from: Option<Vec<String>>,
    /// Source addresses allowed to connect to the admin listener. Empty or absent: anyone.
    pub admin_allow_from: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// If set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSite {
    pub root: Option<PathBuf>,
    pub cache_control: Option<String>,
    /// Install the built-in default site into `root` if files are missing.
    pub install_default: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDatabase {
    /// Without `etcd`: the one primary, fixed.
    pub primary: Option<String>,
    /// Without `etcd`: the one replica, fixed.
    pub replica: Option<String>,
    /// With `etcd`: every database server; the leader key names the primary among them
    /// and the others serve reads.
    pub servers: Option<Vec<FileServer>>,
    /// Where the leader key lives: with it, writes follow the key's holder.
    pub etcd: Option<FileEtcd>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub password_file: PathBuf,
    pub migrate_user: Option<String>,
    pub migrate_password_file: Option<PathBuf>,
    pub pool_size: Option<u32>,
    pub replica_pool_size: Option<u32>,
    pub max_replica_lag: Option<String>,
    pub gtid_wait: Option<String>,
    pub connect_timeout: Option<String>,
    pub query_timeout: Option<String>,
    pub write_wait: Option<String>,
    pub check_interval: Option<String>,
    pub role_header: Option<bool>,
    /// The CA that signed the database servers' certificates: with it every connection
    /// uses TLS and verifies the server's certificate and address; without it, plain TCP.
    pub ca: Option<PathBuf>,
}

/// One database server of `[[database.servers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Its name: the `host` of the leader key's value, and a metric label.
    pub host: String,
    /// Where the web servers connect to it, IP:PORT. (No server id: a keeper gives its
    /// server a new one at each start; the write fence compares `@@server_id` with the
    /// one the leader key carries.)
    pub addr: String,
}

/// `[database.etcd]`: the etcd cluster holding the leader key, over mutual TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEtcd {
    /// Client URLs of the members, `https://IP:PORT`.
    pub endpoints: Vec<String>,
    /// The CA that signed the members' certificates.
    pub ca: PathBuf,
    /// This web server's client certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The key the primary's keeper holds; default `/rampart/leader`.
    pub leader_key: Option<String>,
    /// How long one request to a member may take before the next is tried.
    pub request_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_body_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub header_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub access_log: Option<String>,
}

/// Mutual or one-way TLS on the app listener.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A database server the web servers may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Its name in logs, metrics and the leader key (`primary`/`replica` for the static
    /// `database.primary`/`database.replica`).
    pub host: String,
    pub addr: SocketAddr,
    /// Its `@@server_id`; unknown (`None`) for the static primary and replica, whose
    /// write connections then check `@@read_only` only.
    pub server_id: Option<u32>,
}

/// Where the leader key lives (`[database.etcd]`).
#[derive(Clone, Debug)]
pub struct Etcd {
    /// `https://IP:PORT` of each member.
    pub endpoints: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub leader_key: String,
    pub request_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Database {
    /// Every server. Without `etcd`: the static primary first, then the replica if any.
    pub servers: Vec<Server>,
    /// With it the primary is whoever holds the leader key; without it, `servers[0]`.
    pub etcd: Option<Etcd>,
    pub name: String,
    pub user: String,
    pub password_file: PathBuf,
    /// The user schema migrations run as; without one they run as `user`.
    pub migrate_user: Option<(String, PathBuf)>,
    pub pool_size: u32,
    pub replica_pool_size: u32,
    pub max_replica_lag: Duration,
    pub gtid_wait: Duration,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// How long a write waits for a writable leader (a switchover or failover in
    /// progress) before it is refused with 503.
    pub write_wait: Duration,
    pub check_interval: Duration,
    pub role_header: bool,
    /// Verified TLS to the databases with this CA (`database.ca`); `None`: plain TCP.
    pub ca: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// A validated web server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub name: String,
    pub app: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// Who may connect to the app listener; empty: anyone.
    pub allow_from: AllowList,
    /// Who may connect to the admin listener; empty: anyone.
    pub admin_allow_from: AllowList,
    pub tls: Option<Tls>,
    pub site_root: Option<PathBuf>,
    pub cache_control: String,
    pub install_default_site: bool,
    pub database: Option<Database>,
    pub limits: Limits,
    pub access_log: LogTarget,
    /// Tokio worker threads; 0 is one per core.
    pub worker_threads: usize,
}

/// Every default in one place.
pub mod defaults {
    use std::time::Duration;
    pub const APP: &str = "127.0.0.1:8443";
    pub const ADMIN: &str = "127.0.0.1:9181";
    pub const CACHE_CONTROL: &str = "public, max-age=300";
    pub const DB_NAME: &str = "foobar";
    pub const DB_USER: &str = "foobar_app";
    pub const POOL: u32 = 16;
    pub const MAX_REPLICA_LAG: Duration = Duration::from_secs(2);
    pub const GTID_WAIT: Duration = Duration::from_millis(250);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
    /// A planned switchover makes the leader unwritable for well under a second; a
    /// failover after a crash takes a few. Writes wait this long for a writable leader
    /// before they are refused, so a switchover pauses writes instead of failing them.
    pub const WRITE_WAIT: Duration = Duration::from_secs(3);
    pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
    pub const LEADER_KEY: &str = "/rampart/leader";
    pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
    pub const MAX_BODY: usize = 16 * 1024;
    pub const MAX_HEADER: usize = 16 * 1024;
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_CONNECTIONS: usize = 4096;
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
}

impl ConfigFile for Config {
    type File = FileConfig;

    /// Turns the raw file into a validated config, collecting every problem.
    fn validate(path: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path);
        let name = f.name.clone().unwrap_or_else(|| "web".to_owned());
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            c.err("name", "expected 1-64 letters, digits, '-' or '_'");
        }
        let l = &f.listen;
        let app = listen::addr(&mut c, "app", l.app.as_deref(), defaults::APP);
        let admin = listen::optional_addr(&mut c, "admin", l.admin.as_deref(), defaults::ADMIN);
        let allow_from = listen::allow_list(&mut c, "allow_from", l.allow_from.as_deref());
        let admin_allow_from =
            listen::allow_list(&mut c, "admin_allow_from", l.admin_allow_from.as_deref());
        let tls = f.tls.as_ref().map(|t| Tls {
            cert: c.resolve(&t.cert),
            key: c.resolve(&t.key),
            client_ca: t.client_ca.as_deref().map(|p| c.resolve(p)),
        });
        let site_root = f.site.root.as_deref().map(|p| c.resolve(p));
        let cache_control = f
            .site
            .cache_control
            .clone()
            .unwrap_or_else(|| defaults::CACHE_CONTROL.to_owned());
        if http::HeaderValue::from_str(&cache_control).is_err() {
            c.err("site.cache_control", "not a valid header value");
        }
        let install_default_site = f.site.install_default.unwrap_or(false);
        if install_default_site && site_root.is_none() {
            c.err("site.install_default", "needs site.root to install into");
        }

        let database = f.database.as_ref().map(|d| {
            let (servers, etcd) = servers_and_etcd(&mut c, d);
            let migrate_user = match (&d.migrate_user, &d.migrate_password_file) {
                (Some(u), Some(p)) => Some((u.clone(), c.resolve(p))),
                (None, None) => None,
                _ => {
                    c.err(
                        "database.migrate_user",
                        "migrate_user and migrate_password_file go together",
                    );
                    None
                }
            };
            let ms = Duration::from_millis;
            let s = Duration::from_secs;
            Database {
                servers,
                etcd,
                name: d
                    .name
                    .clone()
                    .unwrap_or_else(|| defaults::DB_NAME.to_owned()),
                user: d
                    .user
                    .clone()
                    .unwrap_or_else(|| defaults::DB_USER.to_owned()),
                password_file: c.resolve(&d.password_file),
                migrate_user,
                pool_size: c.range("database.pool_size", d.pool_size, defaults::POOL, 1, 1024),
                replica_pool_size: c.range(
                    "database.replica_pool_size",
                    d.replica_pool_size,
                    defaults::POOL,
                    1,
                    1024,
                ),
                max_replica_lag: c.duration(
                    "database.max_replica_lag",
                    d.max_replica_lag.as_ref(),
                    defaults::MAX_REPLICA_LAG,
                    ms(100),
                    s(3600),
                ),
                gtid_wait: c.duration(
                    "database.gtid_wait",
                    d.gtid_wait.as_ref(),
                    defaults::GTID_WAIT,
                    ms(0),
                    s(10),
                ),
                connect_timeout: c.duration(
                    "database.connect_timeout",
                    d.connect_timeout.as_ref(),
                    defaults::CONNECT_TIMEOUT,
                    ms(100),
                    s(60),
                ),
                query_timeout: c.duration(
                    "database.query_timeout",
                    d.query_timeout.as_ref(),
                    defaults::QUERY_TIMEOUT,
                    ms(100),
                    s(300),
                ),
                write_wait: c.duration(
                    "database.write_wait",
                    d.write_wait.as_ref(),
                    defaults::WRITE_WAIT,
                    Duration::ZERO,
                    s(30),
                ),
                check_interval: c.duration(
                    "database.check_interval",
                    d.check_interval.as_ref(),
                    defaults::CHECK_INTERVAL,
                    ms(50),
                    s(60),
                ),
                role_header: d.role_header.unwrap_or(false),
                ca: d.ca.as_deref().map(|p| c.resolve(p)),
            }
        });
        if let Some(d) = &database {
            if d.gtid_wait >= d.query_timeout {
                c.err(
                    "database.gtid_wait",
                    format!(
                        "{:?} must be shorter than database.query_timeout ({:?}), which bounds the whole read",
                        d.gtid_wait, d.query_timeout
                    ),
                );
            }
            if d.user == "root" {
                c.err(
                    "database.user",
                    "root must not serve the application; use the least-privilege application user",
                );
            }
        }

        let l = &f.limits;
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let limits = Limits {
            max_body_bytes: c.range(
                "limits.max_body_bytes",
                l.max_body_bytes,
                defaults::MAX_BODY,
                256,
                64 << 20,
            ),
            max_header_bytes: c.range(
                "limits.max_header_bytes",
                l.max_header_bytes,
                defaults::MAX_HEADER,
                8192,
                1 << 20,
            ),
            header_timeout: c.duration(
                "limits.header_timeout",
                l.header_timeout.as_ref(),
                defaults::HEADER_TIMEOUT,
                ms(100),
                s(300),
            ),
            max_connections: c.range(
                "limits.max_connections",
                l.max_connections,
                defaults::MAX_CONNECTIONS,
                1,
                1_000_000,
            ),
            shutdown_grace: c.duration(
                "limits.shutdown_grace",
                l.shutdown_grace.as_ref(),
                defaults::SHUTDOWN_GRACE,
                ms(0),
                s(600),
            ),
        };
        let access_log = c.log_target("log.access_log", f.log.access_log.as_deref());
        let worker_threads = c.range(
            "runtime.worker_threads",
            f.runtime.worker_threads,
            0,
            0,
            1024,
        );
        let config = Config {
            worker_threads,
            file: path.to_owned(),
            name,
            app,
            admin,
            allow_from,
            admin_allow_from,
            tls,
            site_root,
            cache_control,
            install_default_site,
            database,
            limits,
            access_log,
        };
        c.finish(config)
    }
}

/// The database servers and where the primary comes from: `database.primary` (and
/// `database.replica`) fixed, or `[[database.servers]]` with `[database.etcd]`, whose
/// leader key names the primary among them. One or the other, never a mix.
fn servers_and_etcd(c: &mut Checker, d: &FileDatabase) -> (Vec<Server>, Option<Etcd>) {
    let Some(e) = &d.etcd else {
        if d.servers.is_some() {
            c.err(
                "database.servers",
                "needs [database.etcd], whose leader key says which server is the primary; \
                 without etcd use database.primary and database.replica",
            );
        }
        let mut servers = Vec::new();
        match &d.primary {
            None => c.err(
                "database.primary",
                "required: the primary's IP:PORT (or set [database.etcd] and list every \
                 server as [[database.servers]])",
            ),
            Some(p) => {
                if let Some(addr) = c.addr("database.primary", p) {
                    servers.push(Server {
                        host: "primary".to_owned(),
                        addr,
                        server_id: None,
                    });
                }
            }
        }
        if let Some(r) = &d.replica {
            if let Some(addr) = c.addr("database.replica", r) {
                if servers.iter().any(|p| p.addr == addr) {
                    c.err(
                        "database.replica",
                        format!("`{r}` is also database.primary; expected another server"),
                    );
                }
                servers.push(Server {
                    host: "replica".to_owned(),
                    addr,
                    server_id: None,
                });
            }
        }
        return (servers, None);
    };
    for (key, given) in [
        ("database.primary", d.primary.is_some()),
        ("database.replica", d.replica.is_some()),
    ] {
        if given {
            c.err(
                key,
                "not with [database.etcd], whose leader key names the primary; list every \
                 server as [[database.servers]] instead",
            );
        }
    }
    let listed = d.servers.as_deref().unwrap_or_default();
    if listed.is_empty() {
        c.err(
            "database.servers",
            "required with [database.etcd]: every database server as [[database.servers]] \
             with host and addr",
        );
    }
    let mut servers: Vec<Server> = Vec::new();
    for (i, s) in listed.iter().enumerate() {
        let key = |k: &str| format!("database.servers[{i}].{k}");
        let mut ok = true;
        if !valid_host(&s.host) {
            c.err(
                key("host"),
                "expected 1-64 letters, digits, '.', '-' or '_'",
            );
            ok = false;
        } else if servers.iter().any(|x| x.host == s.host) {
            c.err(key("host"), format!("`{}` is listed twice", s.host));
            ok = false;
        }
        let addr = c.addr(&key("addr"), &s.addr);
        if let Some(a) = addr.filter(|a| servers.iter().any(|x| x.addr == *a)) {
            c.err(key("addr"), format!("`{a}` is listed twice"));
            ok = false;
        }
        if let (Some(addr), true) = (addr, ok) {
            servers.push(Server {
                host: s.host.clone(),
                addr,
                server_id: None,
            });
        }
    }
    if e.endpoints.is_empty() {
        c.err(
            "database.etcd.endpoints",
            "empty; expected the members' client URLs such as \"https://198.18.9.11:2379\"",
        );
    }
    for (i, url) in e.endpoints.iter().enumerate() {
        let valid = url
            .strip_prefix("https://")
            .is_some_and(|a| a.parse::<SocketAddr>().is_ok());
        if !valid {
            c.err(
                format!("database.etcd.endpoints[{i}]"),
                format!("`{url}` is not a member URL; expected https://IP:PORT such as https://198.18.9.11:2379"),
            );
        }
    }
    let leader_key = e
        .leader_key
        .clone()
        .unwrap_or_else(|| defaults::LEADER_KEY.to_owned());
    if leader_key.is_empty()
        || leader_key.len() > 256
        || !leader_key.bytes().all(|b| b.is_ascii_graphic())
    {
        c.err(
            "database.etcd.leader_key",
            "expected 1-256 visible ASCII characters such as \"/rampart/leader\"",
        );
    }
    let request_timeout = c.duration(
        "database.etcd.request_timeout",
        e.request_timeout.as_ref(),
        defaults::ETCD_REQUEST_TIMEOUT,
        Duration::from_millis(100),
        Duration::from_secs(60),
    );
    let etcd = Etcd {
        endpoints: e.endpoints.clone(),
        ca: c.resolve(&e.ca),
        cert: c.resolve(&e.cert),
        key: c.resolve(&e.key),
        leader_key,
        request_timeout,
    };
    (servers, Some(etcd))
}

/// A database server's name: it becomes a metric label and is compared with the leader
/// key's `host`.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &str) {
        let got = match Config::parse(Path::new("/etc/rampart/web.toml"), text) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected, "config:\n{text}");
    }

    #[test]
    fn empty_config_is_valid_with_secure_defaults() {
        let c = Config::parse(Path::new("/x/web.toml"), "").unwrap();
        assert_eq!(c.app.to_string(), defaults::APP);
        assert_eq!(
            c.admin.map(|a| a.to_string()).as_deref(),
            Some(defaults::ADMIN)
        );
        assert_eq!(c.limits.max_body_bytes, 16 * 1024);
        assert!(c.database.is_none());
        assert!(c.tls.is_none());
    }

    #[test]
    fn database_defaults_keep_the_role_header_off() {
        let c = Config::parse(
            Path::new("/x/web.toml"),
            "[database]\nprimary = \"127.0.0.1:3306\"\npassword_file = \"app.pw\"\n",
        )
        .unwrap();
        let d = c.database.unwrap();
        assert!(!d.role_header);
        assert_eq!(d.user, "foobar_app");
        assert_eq!(d.password_file, Path::new("/x/app.pw"));
        assert_eq!(d.max_replica_lag, Duration::from_secs(2));
    }

    const ETCD: &str = "[database.etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\n\
                        ca = \"ca.pem\"\ncert = \"web1.pem\"\nkey = \"web1.key\"\n";

    fn server(host: &str, addr: &str, _id: u32) -> String {
        format!("[[database.servers]]\nhost = \"{host}\"\naddr = \"{addr}\"\n")
    }

    #[test]
    fn static_primary_and_replica_are_the_servers_in_order() {
        let c = Config::parse(
            Path::new("/x/web.toml"),
            "[database]\nprimary = \"127.0.0.1:3306\"\nreplica = \"127.0.0.1:3307\"\n\
             password_file = \"app.pw\"\n",
        )
        .unwrap();
        let d = c.database.unwrap();
        assert!(d.etcd.is_none());
        let servers: Vec<_> = d
            .servers
            .iter()
            .map(|s| (s.host.as_str(), s.addr.to_string(), s.server_id))
            .collect();
        assert_eq!(
            servers,
            [
                ("primary", "127.0.0.1:3306".to_owned(), None),
                ("replica", "127.0.0.1:3307".to_owned(), None)
            ]
        );
    }

    #[test]
    fn etcd_mode_lists_every_server_and_names_the_leader_key() {
        let text = format!(
            "[database]\npassword_file = \"app.pw\"\n{}{}{ETCD}",
            server("db1", "198.18.8.11:3306", 1),
            server("db2", "198.18.8.12:3306", 2)
        );
        let c = Config::parse(Path::new("/x/web.toml"), &text).unwrap();
        let d = c.database.unwrap();
        let e = d.etcd.unwrap();
        assert_eq!(e.leader_key, "/rampart/leader");
        assert_eq!(e.request_timeout, Duration::from_secs(1));
        assert_eq!(e.ca, Path::new("/x/ca.pem"));
        assert_eq!(e.cert, Path::new("/x/web1.pem"));
        assert_eq!(d.servers.len(), 2);
        assert_eq!(d.servers[1].server_id, None);
        assert_eq!(d.servers[1].host, "db2");
    }

    #[test]
    fn database_config_errors() {
        let f = "/etc/rampart/web.toml";
        let db = "[database]\npassword_file = \"p\"\n";
        check(
            db,
            &format!("{f}: database.primary: required: the primary's IP:PORT (or set [database.etcd] and list every server as [[database.servers]])"),
        );
        check(
            &format!("{db}primary = \"127.0.0.1:1\"\nreplica = \"127.0.0.1:1\"\n"),
            &format!("{f}: database.replica: `127.0.0.1:1` is also database.primary; expected another server"),
        );
        check(
            &format!("{db}primary = \"127.0.0.1:1\"\n{}", server("db1", "127.0.0.1:1", 1)),
            &format!("{f}: database.servers: needs [database.etcd], whose leader key says which server is the primary; without etcd use database.primary and database.replica"),
        );
        check(
            &format!("{db}primary = \"127.0.0.1:1\"\n{ETCD}"),
            &format!("{f}: database.primary: not with [database.etcd], whose leader key names the primary; list every server as [[database.servers]] instead\n\
                      {f}: database.servers: required with [database.etcd]: every database server as [[database.servers]] with host and addr"),
        );
        check(
            &format!(
                "{db}{}{}{}{}{}{ETCD}",
                server("db 1", "127.0.0.1:1", 1),
                server("db2", "127.0.0.1:2", 0),
                server("db3", "somewhere", 3),
                server("db4", "127.0.0.1:4", 4),
                server("db4", "127.0.0.1:4", 4),
            ),
            &format!("{f}: database.servers[0].host: expected 1-64 letters, digits, '.', '-' or '_'\n\
                      {f}: database.servers[2].addr: `somewhere` is not an address; expected IP:PORT such as 0.0.0.0:443\n\
                      {f}: database.servers[4].host: `db4` is listed twice\n\
                      {f}: database.servers[4].addr: `127.0.0.1:4` is listed twice"),
        );
        check(
            &format!(
                "{db}{}[database.etcd]\nendpoints = [\"http://127.0.0.1:2379\", \"https://etcd1:2379\"]\n\
                 ca = \"a\"\ncert = \"b\"\nkey = \"c\"\nleader_key = \"a key\"\nrequest_timeout = \"1ms\"\n",
                server("db1", "127.0.0.1:1", 1)
            ),
            &format!("{f}: database.etcd.endpoints[0]: `http://127.0.0.1:2379` is not a member URL; expected https://IP:PORT such as https://198.18.9.11:2379\n\
                      {f}: database.etcd.endpoints[1]: `https://etcd1:2379` is not a member URL; expected https://IP:PORT such as https://198.18.9.11:2379\n\
                      {f}: database.etcd.leader_key: expected 1-256 visible ASCII characters such as \"/rampart/leader\"\n\
                      {f}: database.etcd.request_timeout: `1ms` is out of range; expected between 100ms and 60s"),
        );
        check(
            &format!("{db}{}[database.etcd]\nendpoints = []\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n", server("db1", "127.0.0.1:1", 1)),
            &format!("{f}: database.etcd.endpoints: empty; expected the members' client URLs such as \"https://198.18.9.11:2379\""),
        );
        check(
            &format!("{db}{ETCD}[[database.servers]]\nhost = \"db1\"\naddr = \"127.0.0.1:1\"\nserver_id = 1\n"),
            &format!("{f}: line 11: unknown field `server_id`, expected `host` or `addr`"),
        );
    }

    #[test]
    fn config_errors() {
        check("nonsense = 1", "/etc/rampart/web.toml: line 1: unknown field `nonsense`, expected one of `name`, `listen`, `tls`, `site`, `database`, `limits`, `log`, `runtime`");
        check(
            "[listen]\napp = \"localhost\"",
            "/etc/rampart/web.toml: listen.app: `localhost` is not an address; expected IP:PORT such as 0.0.0.0:443",
        );
        check(
            "[limits]\nmax_body_bytes = 1",
            "/etc/rampart/web.toml: limits.max_body_bytes: 1 is out of range; expected between 256 and 67108864",
        );
        check(
            "[database]\nprimary = \"127.0.0.1:3306\"\npassword_file = \"p\"\nuser = \"root\"\nmax_replica_lag = \"soon\"",
            "/etc/rampart/web.toml: database.max_replica_lag: `soon` is not a duration; expected a number with ms, s, m, h or d, such as \"10s\"\n/etc/rampart/web.toml: database.user: root must not serve the application; use the least-privilege application user",
        );
        check(
            "[listen]\nallow_from = [\"198.18.1.0/33\"]",
            "/etc/rampart/web.toml: listen.allow_from[0]: `198.18.1.0/33` is not an address or network; expected 198.18.1.10 or 198.18.1.0/24",
        );
        check(
            "[site]\ninstall_default = true",
            "/etc/rampart/web.toml: site.install_default: needs site.root to install into",
        );
        check(
            "name = \"web 1\"",
            "/etc/rampart/web.toml: name: expected 1-64 letters, digits, '-' or '_'",
        );
    }
}
