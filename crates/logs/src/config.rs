//! `rampart logs`'s configuration: `File*` structs that mirror the TOML (unknown keys
//! refused) and the validated [`Config`]; every problem names the file, the key and
//! what would be valid; relative paths resolve against the config file's directory.
//!
//! Secure defaults: TLS with a client certificate required (`[tls]` is mandatory: on a
//! site, only the monitoring plane's certificates, the gate's and the dashboard's), a
//! connection cap, header and request deadlines, bounded bodies, and a bound on
//! requests handled at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_telemetry::config::{Checker, ConfigErrors, ConfigFile};
use rampart_telemetry::listen::{self, AllowList};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: FileListen,
    pub tls: Option<FileTls>,
    pub store: Option<FileStore>,
    #[serde(default)]
    pub limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub addr: Option<String>,
    pub allow_from: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    /// The plain-HTTP listener of the store's own `/metrics`, or `off`.
    pub metrics: Option<String>,
    pub metrics_allow_from: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    /// The SQLite database file.
    pub path: PathBuf,
    pub max_age: Option<String>,
    pub max_bytes: Option<u64>,
    pub retention_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_body_bytes: Option<usize>,
    pub max_in_flight: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub addr: SocketAddr,
    pub allow_from: AllowList,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub metrics: Option<SocketAddr>,
    pub metrics_allow_from: AllowList,
    pub tls: Tls,
    pub db: PathBuf,
    pub max_age: Duration,
    pub max_bytes: u64,
    pub retention_every: Duration,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
}

pub mod defaults {
    use std::time::Duration;
    pub const ADDR: &str = "127.0.0.1:3100";
    pub const MAX_CONNECTIONS: usize = 256;
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const METRICS: &str = "off";
    /// Two weeks, as Loki's own default table period suggests for a small site.
    pub const MAX_AGE: Duration = Duration::from_secs(14 * 86_400);
    pub const MAX_BYTES: u64 = 2 << 30;
    pub const RETENTION_EVERY: Duration = Duration::from_secs(60);
    pub const MAX_BODY_BYTES: usize = 16 << 20;
    pub const MAX_IN_FLIGHT: usize = 4;
}

impl ConfigFile for Config {
    type File = FileConfig;

    fn validate(path: &Path, f: &FileConfig) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path);
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let l = &f.listen;
        let addr = listen::addr(&mut c, "addr", l.addr.as_deref(), defaults::ADDR);
        let allow_from = listen::allow_list(&mut c, "allow_from", l.allow_from.as_deref());
        let metrics =
            listen::optional_addr(&mut c, "metrics", l.metrics.as_deref(), defaults::METRICS);
        let metrics_allow_from = listen::allow_list(
            &mut c,
            "metrics_allow_from",
            l.metrics_allow_from.as_deref(),
        );
        let max_connections = c.range(
            "listen.max_connections",
            l.max_connections,
            defaults::MAX_CONNECTIONS,
            1,
            100_000,
        );
        let header_timeout = c.duration(
            "listen.header_timeout",
            l.header_timeout.as_ref(),
            defaults::HEADER_TIMEOUT,
            ms(100),
            s(300),
        );
        let request_timeout = c.duration(
            "listen.request_timeout",
            l.request_timeout.as_ref(),
            defaults::REQUEST_TIMEOUT,
            ms(100),
            s(600),
        );
        let shutdown_grace = c.duration(
            "listen.shutdown_grace",
            l.shutdown_grace.as_ref(),
            defaults::SHUTDOWN_GRACE,
            ms(0),
            s(600),
        );
        let tls = match &f.tls {
            Some(t) => Tls {
                cert: c.resolve(&t.cert),
                key: c.resolve(&t.key),
                client_ca: c.resolve(&t.client_ca),
            },
            None => {
                c.err(
                    "tls",
                    "missing; the log store takes only clients with a certificate: set tls.cert, tls.key and tls.client_ca",
                );
                Tls {
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                    client_ca: PathBuf::new(),
                }
            }
        };
        let (db, max_age, max_bytes, retention_every) = match &f.store {
            Some(st) => (
                c.resolve(&st.path),
                c.duration(
                    "store.max_age",
                    st.max_age.as_ref(),
                    defaults::MAX_AGE,
                    s(60),
                    s(3650 * 86_400),
                ),
                c.range(
                    "store.max_bytes",
                    st.max_bytes,
                    defaults::MAX_BYTES,
                    1 << 20,
                    1 << 50,
                ),
                c.duration(
                    "store.retention_every",
                    st.retention_every.as_ref(),
                    defaults::RETENTION_EVERY,
                    s(1),
                    s(86_400),
                ),
            ),
            None => {
                c.err(
                    "store",
                    "missing; set store.path to the database file, such as \"/var/lib/rampart/logs/logs.db\"",
                );
                (
                    PathBuf::new(),
                    defaults::MAX_AGE,
                    defaults::MAX_BYTES,
                    defaults::RETENTION_EVERY,
                )
            }
        };
        let max_body_bytes = c.range(
            "limits.max_body_bytes",
            f.limits.max_body_bytes,
            defaults::MAX_BODY_BYTES,
            1024,
            1 << 30,
        );
        let max_in_flight = c.range(
            "limits.max_in_flight",
            f.limits.max_in_flight,
            defaults::MAX_IN_FLIGHT,
            1,
            1024,
        );
        c.finish(Config {
            file: path.to_owned(),
            addr,
            allow_from,
            max_connections,
            header_timeout,
            request_timeout,
            shutdown_grace,
            metrics,
            metrics_allow_from,
            tls,
            db,
            max_age,
            max_bytes,
            retention_every,
            max_body_bytes,
            max_in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("/etc/rampart/logs.toml"), text)
    }

    const MINIMAL: &str = "[tls]\ncert = \"monitor.pem\"\nkey = \"monitor.key\"\nclient_ca = \"plane/ca.pem\"\n[store]\npath = \"logs.db\"\n";

    #[test]
    fn minimal_config_takes_every_default_and_resolves_paths() {
        let c = parse(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.addr.to_string(), defaults::ADDR);
        assert_eq!(c.db, Path::new("/etc/rampart/logs.db"));
        assert_eq!(c.tls.client_ca, Path::new("/etc/rampart/plane/ca.pem"));
        assert_eq!(
            (c.max_age, c.max_bytes),
            (defaults::MAX_AGE, defaults::MAX_BYTES)
        );
    }

    #[test]
    fn each_error_names_its_key() {
        for (text, key) in [
            ("", "tls"),
            ("", "store"),
            ("[store]\npath = \"x\"\nmax_age = \"1s\"\n", "store.max_age"),
            ("[store]\npath = \"x\"\nmax_bytes = 5\n", "store.max_bytes"),
            ("[limits]\nmax_in_flight = 0\n", "limits.max_in_flight"),
            ("[listen]\naddr = \"nowhere\"\n", "listen.addr"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.0.iter().any(|e| e.key == key), "{key}: {err}");
            assert!(err.to_string().contains("/etc/rampart/logs.toml"), "{err}");
        }
    }
}
